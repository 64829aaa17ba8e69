"""The agent's HTTP face (docs/DESIGN.md §10): one FastAPI app (app.py) served by uvicorn in the
agent's event loop (server.py). One router per front end: health.py and metrics.py today; REST
and the schema registry add theirs in app.py. Errors in one JSON model (errors.py), limits on
requests (limits.py, protocol.py)."""

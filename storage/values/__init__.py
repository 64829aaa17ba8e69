"""A topic's declared value columns: the SQL <-> Arrow type map (types.py), the schema
(schema.py), decoding JSON values into them whole buffers at a time (json_decode.py), the
produce-time check (check.py) and why a value does not fit (errors.py).
"""

"""SQL over topics on DataFusion: statements/, the ad-hoc query path (query/), window TVFs (windows/) and the
continuous-query runtime (streaming/); engine.py runs one statement. Imports storage only (docs/DESIGN.md §1)."""

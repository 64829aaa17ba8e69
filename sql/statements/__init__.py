"""What a statement says before anything runs: topic DDL and metadata statements (ddl.py), a continuous
query's WITH options (job_options.py) and splitting a script into statements (split.py)."""

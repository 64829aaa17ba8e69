"""What a statement says before anything runs: the dialect (dialect.py), topic DDL and metadata statements
(ddl.py) and a continuous query's WITH options (job_options.py).
"""

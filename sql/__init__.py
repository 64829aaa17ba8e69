"""SQL over topics (DataFusion). Filled in by the SQL issue."""

"""Test services (DESIGN §9) are plugins: a real PostgreSQL and a real S3 server started here."""

pytest_plugins = [
    "tests.services.postgres",
    "tests.services.seaweedfs",
    "tests.services.stores",
]

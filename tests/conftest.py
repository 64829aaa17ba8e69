"""Test services (docs/DESIGN.md §9) are plugins: a real PostgreSQL and a real S3 server started here,
and the SDK over both transports."""

pytest_plugins = [
    "tests.services.postgres",
    "tests.services.sdk",
    "tests.services.seaweedfs",
    "tests.services.stores",
]

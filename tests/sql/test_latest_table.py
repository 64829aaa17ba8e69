"""`latest.<topic>` (sql/query/latest.py): a topic as its latest value per key, across segments and
the unflushed buffer, tombstones hiding their key, compared with a brute-force changelog."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamhouse
from streamhouse import Client
from streamhouse.sql.errors import SqlError


@pytest.fixture(scope="module")
def sh(tmp_path_factory: pytest.TempPathFactory) -> Client:
    client = streamhouse.open(str(tmp_path_factory.mktemp("latest")))
    yield client  # type: ignore[misc]
    client.close()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    writes=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.one_of(st.none(), st.integers(0, 99))), max_size=25
    ),
    flush_at=st.integers(0, 25),
)
def test_latest_equals_the_changelog_applied(sh: Client, writes: list[tuple[str, int | None]], flush_at: int) -> None:
    name = f"kv{abs(hash((tuple(writes), flush_at))) % 10**9}"
    sh.sql(f"CREATE TOPIC IF NOT EXISTS {name} (n BIGINT) WITH (partitions = 2, 'cleanup.policy' = 'compact')")
    for i, (key, n) in enumerate(writes):
        # Some records committed in segments (acks=durable rolls), the rest in the buffer.
        sh.produce(name, None if n is None else {"n": n}, key=key, acks="durable" if i < flush_at else "leader")
    state: dict[str, int | None] = {}
    for key, n in writes:
        state[key] = n
    expected = sorted((k.encode(), n) for k, n in state.items() if n is not None)
    got = sh.sql(f"SELECT _key, n FROM latest.{name} ORDER BY _key").to_pylist()
    assert [(r["_key"], r["n"]) for r in got] == expected
    sh.delete_topic(name)


def test_latest_reads_declared_and_raw_topics_and_joins(sh: Client) -> None:
    sh.create_topic("prices", partitions=1)
    for key, value in [("x", b"1"), ("y", b"2"), ("x", b"3"), ("y", None)]:
        sh.produce("prices", value, key=key)
    rows = sh.sql("SELECT _key, _value, _offset FROM latest.prices").to_pylist()
    assert rows == [{"_key": b"x", "_value": b"3", "_offset": 2}]
    # Qualified by the topic's name, aliased, and joined with the topic itself.
    joined = sh.sql(
        "SELECT count(*) AS n FROM prices JOIN latest.prices AS l ON prices._key = l._key "
        "WHERE prices._offset < l._offset"
    ).to_pylist()
    assert joined == [{"n": 1}]
    with pytest.raises(SqlError, match="unknown topic 'nope'"):
        sh.sql("SELECT * FROM latest.nope")

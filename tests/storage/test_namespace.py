"""Org namespaces (storage/namespace.py): stored names round-trip, never collide across orgs,
pass storage's name check, and a name with the separator is no way into another org's."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.storage import namespace as ns
from streamhouse.storage.errors import InvalidInputError, TopicNotFoundError
from streamhouse.storage.metadata.validate import validate_topic_name
from streamhouse.storage.model import TopicInfo

ORGS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
NAMES = st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True).filter(lambda n: n not in (".", ".."))


@settings(max_examples=60, deadline=None)
@given(ORGS, ORGS, NAMES)
def test_stored_names_round_trip_and_stay_in_their_org(org: str, other: str, name: str) -> None:
    stored = ns.inner(name, org)
    assert validate_topic_name(stored) == stored
    assert ns.outer(stored, org) == name and ns.org_of(stored) == org
    if other != org:
        assert ns.outer(stored, other) is None  # `acme~` is never a prefix of `acme2~`'s names
        assert ns.inner(name, other) != stored
    assert ns.inner(name, None) == name and ns.outer(name, None) == name
    with pytest.raises(InvalidInputError, match="not allowed"):
        ns.inner(f"{other}~{name}", org)


def test_namespaces_errors_and_topics() -> None:
    assert ns.namespace_of("acme") == "acme"
    assert ns.namespace_of("acme", admin=True) is None and ns.namespace_of("") is None
    assert ns.namespace_of("streamhouse-agents") is None
    topics = [TopicInfo("acme~orders", 1, 1), TopicInfo("beta~orders", 2, 1), TopicInfo("plain", 3, 1)]
    assert {n: t.topic_id for n, t in ns.scoped(topics, "beta").items()} == {"orders": 2}
    assert set(ns.scoped(topics, None)) == {"acme~orders", "beta~orders", "plain"}
    error = ns.scrub(TopicNotFoundError("beta~orders"), "beta")
    assert "beta" not in str(error) and "orders" in str(error)
    for bad in ("a~b~c", "~x", "acme~", "acme~..", "ac me~x"):
        with pytest.raises(InvalidInputError):
            validate_topic_name(bad)


def test_free_text_names_no_other_org() -> None:
    reason = "flushes of acme~orders/0 and beta~clicks/1 keep failing; plain/0 too"
    assert ns.scrub_text(reason, "beta") == (
        "flushes of (another organisation's resource)/0 and clicks/1 keep failing; plain/0 too"
    )
    assert ns.scrub_text(reason, None) == reason

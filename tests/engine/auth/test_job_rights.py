"""A job runs with its creator's rights (issue 15, engine/jobs/rights.py): under auth the creating
principal is recorded with the job; when its rule to read the source is removed the job stops
before committing anything more and says why in SHOW JOBS; once the rule is back it resumes from
its checkpoint and the view holds every row exactly once."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

import streamhouse
from streamhouse.auth.admin import AuthAdmin
from streamhouse.auth.authorizer import CACHE_TTL_S
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata.acl_sql import OPERATIONS, RESOURCE_TYPES, AclRule
from tests.engine.auth.conftest import AuthAgent


def wait_for(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_job_stops_when_its_creator_may_no_longer_read_and_resumes_exactly_once(auth_agent: AuthAgent) -> None:
    metadata = auth_agent.server.service.manager.metadata
    admin = AuthAdmin(metadata)
    auth_agent.run(admin.create_org("gamma"))
    for rtype in RESOURCE_TYPES:
        for op in OPERATIONS:
            if (rtype, op) != ("topic", "read"):
                auth_agent.run(metadata.acl_add(AclRule("gamma", "dave", rtype, "prefixed", "", op)))
    read = AclRule("gamma", "dave", "topic", "literal", "src", "read")
    auth_agent.run(metadata.acl_add(read))
    auth_agent.run(metadata.acl_add(AclRule("gamma", "dave", "topic", "literal", "copy", "read")))
    token = auth_agent.run(admin.create_key("gamma", "dave")).token
    with streamhouse.connect(auth_agent.grpc, api_key=token) as dave:
        dave.sql("CREATE TOPIC src (n BIGINT)")
        dave.produce_batch("src", [{"n": 1}, {"n": 2}], acks="durable")
        with pytest.raises(InvalidInputError, match="set by the agent"):
            dave.sql("CREATE MATERIALIZED VIEW forged WITH ('creator' = 'gamma/root') AS SELECT n FROM src")
        dave.sql("CREATE MATERIALIZED VIEW copy WITH ('checkpoint-interval' = '100ms') AS SELECT n FROM src")

        def rows() -> list[int]:
            return sorted(r["n"] for r in dave.sql("SELECT n FROM copy").to_pylist())

        wait_for(lambda: rows() == [1, 2])
        [job] = dave.sql("SHOW JOBS").to_pylist()
        assert '"creator": "gamma/dave"' in job["options"]

        auth_agent.run(metadata.acl_remove(read))  # dave may write src but no longer read it
        time.sleep(CACHE_TTL_S + 0.3)  # a rule change reaches a running job as any request: within the TTL
        dave.produce("src", {"n": 3}, acks="durable")
        wait_for(lambda: "may no longer read topic 'src'" in dave.sql("SHOW JOBS").to_pylist()[0]["state"])
        assert rows() == [1, 2]  # nothing read without the right was committed

        auth_agent.run(metadata.acl_add(read))
        wait_for(lambda: rows() == [1, 2, 3])  # resumed from its checkpoint: each row once

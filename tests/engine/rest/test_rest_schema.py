"""Schemathesis against the OpenAPI document a real agent serves (issue 13): every REST
operation is called with generated requests (boundary values, random fuzzing, and chains
that follow the document's links), and every answer must be no 5xx, a documented status and
content type, and a body matching its schema (errors: the one error body). The run is kept to
about a minute or two: few examples per operation, a time budget, a fixed seed.

The event stream (/events) is left out: it never ends by design, so a generic client would
wait on it forever; tests/engine/rest/test_rest_records.py drives it."""

from __future__ import annotations

import subprocess
import sys

from tests.agent_process import AgentProcess

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
# schemathesis has no `python -m` entry: call its command-line function (what its `st` script does).
CLI = "from schemathesis.cli import schemathesis; schemathesis()"


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(rest_agent: AgentProcess) -> None:
    url = f"http://127.0.0.1:{rest_agent.http_port}/openapi.json"
    command = [
        sys.executable,
        "-c",
        CLI,
        "run",
        url,
        *("--include-path-regex", "^/v1/"),
        *("--exclude-path-regex", "/events$"),
        *("--checks", CHECKS),
        *("--mode", "positive"),
        *("--max-examples", "5"),
        *("--seed", "13"),
        # Long-polls may wait up to 30 s (MAX_WAIT_MS) on a topic the run itself created.
        *("--request-timeout", "40"),
        *("--max-time", "40"),
        *("--warnings", "off"),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout[-12_000:] + run.stderr[-4_000:]
    assert "passed" in run.stdout
    assert rest_agent.running

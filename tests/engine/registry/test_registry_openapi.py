"""Schemathesis against the registry's part of the OpenAPI document a real agent serves: every
registry operation called with generated requests; every answer must be no 5xx, a documented
status and content type, and a body matching its schema (errors: Confluent's error body). Kept
to about a minute: few examples per operation, a time budget, a fixed seed."""

from __future__ import annotations

import subprocess
import sys

from tests.engine.registry.conftest import RegistryAgents

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
CLI = "from schemathesis.cli import schemathesis; schemathesis()"  # it has no `python -m` entry


def test_schemathesis_on_the_registry_routes(agents: RegistryAgents) -> None:
    url = f"http://127.0.0.1:{agents.b.http_port}/openapi.json"
    command = [
        sys.executable,
        "-c",
        CLI,
        "run",
        url,
        *("--include-path-regex", "^/registry"),
        *("--checks", CHECKS),
        *("--max-examples", "8"),
        *("--seed", "13"),
        *("--request-timeout", "20"),
        *("--max-time", "30"),
        *("--warnings", "off"),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout[-12_000:] + run.stderr[-4_000:]
    assert "passed" in run.stdout
    assert agents.b.running

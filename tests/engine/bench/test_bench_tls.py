"""`streamhouse bench tls` end to end, as a user runs it with stdout piped: four real agent
children (plain, TLS, API key, API key + TLS), each driven over gRPC (SDK) and Kafka
(confluent-kafka: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL). Tiny sizes, one round, so it
proves the wiring (certificates, keys, SASL, the table), not the figures."""

from __future__ import annotations

import re
import subprocess
import sys

from streamhouse.bench.tls import CONFIGS, PATHS


def test_bench_tls_prints_every_path_and_configuration() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamhouse.cli", "bench", "tls", "--records", "2000", "--rounds", "1",
         "--partitions", "2"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("produce, 2,000 x 100 B per run") and "median of 1 rounds" in lines[0]
    assert lines[1].split()[:3] == ["path", "config", "records/s"]
    assert "│" not in done.stdout and "\x1b" not in done.stdout  # plain text when piped
    rows = lines[2:]
    assert len(rows) == len(PATHS) * len(CONFIGS), done.stdout
    for row, (path, config) in zip(rows, [(p, c) for p in PATHS for c in CONFIGS], strict=True):
        match = re.match(rf"{path}\s+{re.escape(config)}\s+([\d,]+)\s", row)
        assert match is not None, row
        assert int(match.group(1).replace(",", "")) > 0
    # One progress line per run on stderr, every configuration over both paths.
    progress = [line for line in done.stderr.splitlines() if line.startswith("round 1/1 ")]
    assert len(progress) == len(PATHS) * len(CONFIGS), done.stderr
    assert "grpc: api key + tls vs plain: throughput" in done.stderr and "kafka: api key + tls vs plain" in done.stderr

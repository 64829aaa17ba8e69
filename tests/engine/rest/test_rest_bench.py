"""`streamhouse bench rest` end to end, as a user runs it: a temporary agent, gRPC and both
REST rows in one table, every record stored (the bench checks the end offsets)."""

from __future__ import annotations

import re
import subprocess
import sys


def test_bench_rest_prints_grpc_and_rest_rows() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamhouse.cli", "bench", "rest", "--records", "5500", "--batch-size", "1000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for label in (r"gRPC \(SDK, Arrow\)", r"REST BINARY \(base64\)", "REST JSON"):
        row = re.search(rf"{label}\s*│\s*5,500\s*│\s*([\d,]+)\s*│", done.stdout)
        assert row is not None, done.stdout
        assert int(row.group(1).replace(",", "")) > 0
    assert "batches of 1,000" in done.stdout

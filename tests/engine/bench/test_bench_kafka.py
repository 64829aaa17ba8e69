"""`streamhouse bench kafka --no-reference` end to end, as a user runs it: a real agent
subprocess with its Kafka listener, driven by confluent-kafka, prints the side-by-side table
(StreamHouse only here; the Apache Kafka broker is left out so the suite downloads nothing)."""

from __future__ import annotations

import re
import subprocess
import sys


def test_bench_kafka_prints_the_table_for_both_acks_levels() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamhouse.cli", "bench", "kafka", "--records", "20000", "--no-reference",
         "--latency-seconds", "1"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "1 (= leader)" in out and "all (= durable)" in out
    assert "acks=all is StreamHouse acks=durable" in out
    for acks in ("1 \\(= leader\\)", "all \\(= durable\\)"):
        row = re.search(rf"StreamHouse\s*│\s*{acks}\s*│\s*([\d,]+)\s*│\s*([\d.]+)\s*│\s*([\d,]+)\s*│\s*([\d.]+)", out)
        assert row is not None, out
        produce, consume = (int(row.group(i).replace(",", "")) for i in (1, 3))
        assert produce > 0 and consume > 0 and float(row.group(4)) > 0
    assert "Kafka 4" not in out  # --no-reference: no broker was started

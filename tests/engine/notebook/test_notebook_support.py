"""The notebook helpers outside a kernel: option parsing, HTML rendering, progress bars,
describe_job / wait_for_job and the DataFrame round trip."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from IPython.core.error import UsageError

import streamhouse
from streamhouse.api import html
from streamhouse.api.types import GroupDescription, GroupOffset, JobDescription, PartitionState, TopicDescription
from streamhouse.client.progress import in_notebook, progress
from streamhouse.notebook.magics import parse_options
from streamhouse.storage.model import TopicInfo


def test_options_come_first_and_the_sql_stays_verbatim() -> None:
    parsed = parse_options("-c sh -o out --arrow SELECT '-o x' AS s, -1 AS n")
    assert (parsed.client, parsed.out, parsed.arrow) == ("sh", "out", True)
    assert parsed.sql == "SELECT '-o x' AS s, -1 AS n"
    assert parse_options("").sql == ""
    assert parse_options("  --out  r  ").out == "r"
    with pytest.raises(UsageError, match="variable name"):
        parse_options("-o 1x SELECT 1")
    with pytest.raises(UsageError, match="unknown option"):
        parse_options("--limit 3 SELECT 1")


def test_html_escapes_names_and_values() -> None:
    table = pa.table({"<b>": ["<script>alert(1)</script>"], "n": [1]})
    rendered = html.arrow_table(table)
    assert "<script>" not in rendered and "&lt;script&gt;" in rendered and "&lt;b&gt;: string" in rendered
    assert "1 rows × 2 columns" in rendered
    long = html.arrow_table(pa.table({"i": list(range(100))}), max_rows=5)
    assert long.count("<tr>") == 6 and "first 5 shown" in long  # header + 5 rows


def test_topic_group_and_job_cards() -> None:
    schema = (
        '{"format":"json","columns":[{"name":"ts","type":"TIMESTAMP"}],"watermark":{"column":"ts","delay_ms":5000}}'
    )
    info = TopicInfo("clicks", 1, 2, {"retention": "1d"}, schema)
    card = TopicDescription(info, (PartitionState(0, 3, 5, "h:1", 2, 1), PartitionState(1, 0, 4, "", 0, 0)))
    rendered = card._repr_html_()
    assert "9 records" in rendered and "ts TIMESTAMP" in rendered and "ts - 5000 ms" in rendered
    assert "retention=1d" in rendered and "(none)" in rendered
    assert "raw bytes" in html.topic_info(TopicInfo("raw", 2, 1))
    assert "clicks" in html.topic_infos([info, TopicInfo("raw", 2, 1)])
    group = GroupDescription("g", (GroupOffset("clicks", 0, 3, 5, 2),))._repr_html_()
    assert "lag 2" in group
    row = {
        "job": "v", "output_topic": "v", "state": "running here", "source_lag": 0, "watermark": None,
        "rows_in": 7, "rows_out": 2, "late_rows": 1, "checkpoints": 3, "last_checkpoint": "2026-01-01T00:00:00",
        "sql": "SELECT a < b FROM t", "options": '{"emit": "final"}',
    }  # fmt: skip
    job = JobDescription.from_row(row)
    assert job.caught_up and job.options == {"emit": "final"}
    assert "SELECT a &lt; b FROM t" in job._repr_html_() and "emit=final" in job._repr_html_()


def test_progress_is_quiet_outside_notebooks_unless_asked(capsys: pytest.CaptureFixture[str]) -> None:
    assert not in_notebook()
    with progress(10, "quiet") as advance:
        advance(10)
    assert capsys.readouterr().err == ""
    with progress(10, "loud", enabled=True) as advance:
        advance(4)
        advance(6)
    assert "loud" in capsys.readouterr().err and "10/10" in capsys.readouterr().err + "10/10"


def test_produce_table_in_chunks_with_a_bar_and_the_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.DataFrame({
        "id": range(250_000),
        "name": [f"n{i % 7}" for i in range(250_000)],
        "ts": pd.Timestamp("2026-01-01") + pd.to_timedelta(range(250_000), unit="s"),
        "ok": [i % 2 == 0 for i in range(250_000)],
        "x": [None if i % 5 == 0 else i / 4 for i in range(250_000)],
    })  # fmt: skip
    with streamhouse.open(tmp_path / "data") as sh:
        sh.sql("CREATE TOPIC t (id BIGINT, name STRING, ts TIMESTAMP, ok BOOLEAN, x DOUBLE) WITH (partitions = 2)")
        results = sh.produce_table("t", frame, key_column="id", progress=True)
        assert sum(r.record_count for r in results) == 250_000
        assert "produce t" in capsys.readouterr().err
        back = sh.sql("SELECT id, name, ts, ok, x FROM t ORDER BY id").to_pandas()
        pd.testing.assert_frame_equal(back, frame, check_dtype=False)
        assert sh.produce_table("t", frame.iloc[:0]) == []
        # sh.table(): a topic's rows as pandas, appended to another topic, read back equal.
        table = sh.table("t")
        assert len(table) == 250_000 and "t" in table._repr_html_()
        rows = table.to_pandas()
        assert list(rows.columns) == ["id", "name", "ts", "ok", "x"]
        sh.sql("CREATE TOPIC copy (id BIGINT, name STRING, ts TIMESTAMP, ok BOOLEAN, x DOUBLE) WITH (partitions = 1)")
        sh.table("copy").append(rows)
        assert sh.table("copy").to_arrow().equals(table.to_arrow())
        assert sh.table("copy").to_arrow(system_columns=True).column_names[:4] == [
            "_partition",
            "_offset",
            "_timestamp",
            "_key",
        ]
        sh.create_topic("raw")
        sh.produce("raw", b"bytes")
        assert sh.table("raw").to_arrow().column("_value").to_pylist() == [b"bytes"]
        with pytest.raises(streamhouse.TopicNotFoundError):
            sh.table("nope")


def test_wait_for_job_returns_once_caught_up_and_times_out_clearly(tmp_path: Path) -> None:
    with streamhouse.open(tmp_path / "data") as sh:
        sh.sql("CREATE TOPIC src (a BIGINT) WITH (partitions = 2)")
        sh.sql(
            "CREATE MATERIALIZED VIEW big WITH ('checkpoint-interval' = '100ms', 'start' = 'earliest') "
            "AS SELECT a FROM src WHERE a >= 50"
        )
        sh.produce_batch("src", [{"a": i} for i in range(100)])
        job = sh.wait_for_job("big", timeout=60)
        assert (job.rows_in, job.source_lag) == (100, 0)
        assert sh.sql("SELECT count(*) AS n FROM big").column("n")[0].as_py() == 50
        with pytest.raises(streamhouse.JobNotFoundError):
            sh.describe_job("nope")
        sh.sql("CREATE TOPIC other (a BIGINT) WITH (partitions = 1)")
        sh.sql("CREATE MATERIALIZED VIEW slow WITH ('checkpoint-interval' = '1h') AS SELECT a FROM other")
        sh.produce("other", {"a": 1})
        with pytest.raises(streamhouse.JobLagTimeoutError, match="slow") as caught:
            sh.wait_for_job("slow", timeout=0.3)
        assert isinstance(caught.value, TimeoutError)

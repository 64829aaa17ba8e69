"""`%load_ext streamhouse` in a real IPython kernel (jupyter_client, as Jupyter runs it):
the %sql / %%sql magics, their options and errors, and the HTML reprs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel


class Kernel:
    def __init__(self, client: BlockingKernelClient) -> None:
        self.client = client

    def run(self, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Execute `code`; its reply content and every output message's content (with its type)."""
        outputs: list[dict[str, Any]] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] in ("stream", "execute_result", "display_data", "error"):
                outputs.append({"type": msg["msg_type"], **msg["content"]})

        reply = self.client.execute_interactive(code, timeout=120, output_hook=hook)
        return reply["content"], outputs

    def ok(self, code: str) -> list[dict[str, Any]]:
        reply, outputs = self.run(code)
        assert reply["status"] == "ok", (reply.get("ename"), reply.get("evalue"), outputs)
        return outputs

    def value(self, expression: str) -> Any:
        """A JSON-able value computed in the kernel."""
        outputs = self.ok(f"import json as _json; print(_json.dumps({expression}, default=str))")
        text = "".join(o["text"] for o in outputs if o["type"] == "stream" and o["name"] == "stdout")
        return json.loads(text)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    workdir = tmp_path_factory.mktemp("kernel")
    manager: KernelManager
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(workdir))
    try:
        k = Kernel(client)
        k.ok(f"import streamhouse\n%load_ext streamhouse\nsh = streamhouse.open({str(workdir / 'data')!r})")
        yield k
        k.ok("sh.close()")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_cell_magic_runs_ddl_and_line_magic_returns_a_dataframe(kernel: Kernel) -> None:
    kernel.ok("%%sql\nCREATE TOPIC clicks (user_id BIGINT, page STRING) WITH (partitions = 2)")
    kernel.ok("sh.produce_batch('clicks', [{'user_id': i, 'page': 'a;b' if i % 2 else \"it's\"} for i in range(10)])")
    # Quotes and a `;` inside a string literal reach the engine untouched.
    kernel.ok("%sql -o odd SELECT user_id FROM clicks WHERE page = 'a;b' ORDER BY user_id")
    assert kernel.value("type(odd).__name__") == "DataFrame"
    assert kernel.value("odd.user_id.tolist()") == [1, 3, 5, 7, 9]
    kernel.ok("quoted = %sql SELECT count(*) AS n FROM clicks WHERE page = 'it''s'")
    assert kernel.value("int(quoted.n[0])") == 5


def test_cell_with_several_statements_returns_the_last_and_shows_it(kernel: Kernel) -> None:
    outputs = kernel.ok("%%sql -o both\nCREATE TOPIC pairs (k BIGINT) WITH (partitions = 1);\nSHOW TOPICS")
    assert sorted(kernel.value("both.topic.tolist()")) == ["clicks", "pairs"]
    shown = [o for o in outputs if o["type"] == "execute_result"]
    assert shown and "text/html" in shown[0]["data"]  # a DataFrame, rendered as a table


def test_arrow_option_and_a_client_by_name(kernel: Kernel, tmp_path: Path) -> None:
    kernel.ok("%%sql --arrow -o t\nSELECT count(*) AS n FROM clicks")
    assert kernel.value("type(t).__name__") == "Table"
    assert kernel.value("t.column('n')[0].as_py()") == 10
    # A second client, opened later: %sql now uses it; -c picks the first one back.
    kernel.ok(f"other = streamhouse.open({str(tmp_path / 'other')!r})")
    kernel.ok("shown = %sql SHOW TOPICS")
    assert kernel.value("len(shown)") == 0
    kernel.ok("named = %sql -c sh SHOW TOPICS")
    assert kernel.value("len(named)") == 2
    kernel.ok("other.close()")
    kernel.ok("again = %sql SHOW TOPICS")  # the closed client is skipped
    assert kernel.value("len(again)") == 2


def test_errors_are_one_line_and_change_nothing(kernel: Kernel) -> None:
    reply, _ = kernel.run("%sql SELEC 1")
    assert reply["status"] == "error" and reply["ename"] == "UsageError"
    assert "SqlError" in reply["evalue"]
    reply, _ = kernel.run("%%sql\nCREATE TOPIC clicks (a BIGINT)")
    assert reply["ename"] == "UsageError" and "TopicExistsError" in reply["evalue"]
    reply, _ = kernel.run("%sql -c nope SHOW TOPICS")
    assert reply["ename"] == "UsageError" and "nope" in reply["evalue"]
    reply, _ = kernel.run("%sql -x SHOW TOPICS")
    assert reply["ename"] == "UsageError" and "unknown option" in reply["evalue"]
    reply, _ = kernel.run("%sql")
    assert reply["ename"] == "UsageError" and "no SQL" in reply["evalue"]
    kernel.ok("after = %sql SELECT count(*) AS n FROM clicks")
    assert kernel.value("int(after.n[0])") == 10


def test_topics_groups_jobs_and_results_render_as_html(kernel: Kernel) -> None:
    def html(code: str) -> str:
        outputs = kernel.ok(code)
        results = [o for o in outputs if o["type"] == "execute_result"]
        assert results, outputs
        return str(results[-1]["data"]["text/html"])

    topic = html("sh.describe('clicks')")
    assert "clicks" in topic and "user_id BIGINT" in topic and "end offset" in topic and "10 records" in topic
    result = html("sh.sql(\"SELECT user_id, page FROM clicks WHERE page = 'it''s' ORDER BY user_id\")")
    assert "user_id: int64" in result and "it&#x27;s" in result and "5 rows × 2 columns" in result
    kernel.ok("with sh.consumer('clicks', group='g', start='earliest') as c: c.poll(timeout=1.0)")
    assert "lag" in html("sh.describe_group('g')")
    kernel.ok(
        "sh.sql(\"CREATE MATERIALIZED VIEW per_page WITH ('checkpoint-interval' = '100ms', 'start' = 'earliest') "
        'AS SELECT page, user_id FROM clicks WHERE user_id > 4")\n'
        "job = sh.wait_for_job('per_page', timeout=60)"
    )
    card = html("job")
    assert "per_page" in card and "source lag" in card and "rows in / out" in card
    assert kernel.value("(job.rows_in, job.source_lag, job.caught_up)") == [10, 0, True]
    kernel.ok("out = %sql SELECT count(*) AS n FROM per_page")
    assert kernel.value("int(out.n[0])") == 5

"""`streamhouse sql`: one statement in every output format, the interactive shell (multi-line
statements, \\d, errors that do not end the session) and one-line errors, on the embedded engine."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from streamhouse.cli.main import main

CREATE = "CREATE TOPIC bids (auction BIGINT, price DOUBLE) WITH (partitions = 1)"


def run(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> tuple[int, str, str]:
    code = main(["sql", *args, "--data-dir", str(data)])
    out = capsys.readouterr()
    return code, out.out, out.err


def fill(capsys: pytest.CaptureFixture[str], data: Path, tmp_path: Path) -> None:
    assert run(capsys, data, CREATE)[0] == 0
    lines = tmp_path / "bids.jsonl"
    lines.write_text("".join(json.dumps({"auction": i % 2, "price": i}) + "\n" for i in range(5)))
    assert main(["produce", "bids", "--file", str(lines), "--data-dir", str(data)]) == 0
    capsys.readouterr()


def test_formats(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "d"
    fill(capsys, data, tmp_path)
    query = "SELECT auction, sum(price) AS total FROM bids GROUP BY auction ORDER BY auction"
    code, out, _ = run(capsys, data, query, "--format", "json")
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {"auction": 0, "total": 6.0},
        {"auction": 1, "total": 4.0},
    ]
    code, out, _ = run(capsys, data, query, "--format", "csv")
    assert out.splitlines() == ['"auction","total"', "0,6", "1,4"]
    code, out, err = run(capsys, data, query)
    assert "auction" in out and "total" in out and "(2 rows)" in err


def test_errors_are_one_line_without_a_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "d"
    fill(capsys, data, tmp_path)
    for statement, fragment in [
        ("SELEC 1", "SELEC"),
        ("SELECT * FROM nowhere", "nowhere"),
        ("SELECT nope FROM bids", "nope"),
    ]:
        code, out, err = run(capsys, data, statement)
        assert code == 1 and out == ""
        assert err.startswith("error: ") and fragment in err and "Traceback" not in err


def test_shell_runs_multiline_statements_and_survives_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "d"
    fill(capsys, data, tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # history file goes here
    script = (
        "\\d\n\\d bids\nSELECT count(*)\n  AS n FROM bids;\nSELECT oops FROM bids;\nSELECT 41 + 1 AS answer;\n\\q\n"
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    code, out, err = run(capsys, data, "--format", "json")
    assert code == 0
    assert '{"n": 5}' in out and '{"answer": 42}' in out
    assert '"topic": "bids"' in out  # \d
    assert '"column": "auction"' in out  # \d bids
    assert "error: " in err and "oops" in err
    # Piped stdin is a script, not a session: no banner, no prompts, no readline history
    # (tests/engine/cli/test_cli_behaviour.py checks all three on a terminal).
    assert "sql>" not in out and "shell" not in out
    assert not (tmp_path / ".streamhouse_history").exists()

"""The README's Python examples must keep working as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import streamhouse

README = Path(__file__).resolve().parent.parent / "README.md"


def _example(marker: str) -> str:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S) if marker in b]
    assert len(blocks) == 1, f"README should have exactly one Python example using {marker}"
    return blocks[0]


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_storage_example_runs(tmp_path: Path) -> None:
    stdout = _run(_example("/tmp/demo").replace("/tmp/demo", str(tmp_path / "demo")))
    assert '{"a": 1}' in stdout and '{"a": 2}' in stdout


def test_sdk_example_runs(tmp_path: Path) -> None:
    stdout = _run(_example("/tmp/sdk-demo").replace("/tmp/sdk-demo", str(tmp_path / "sdk")))
    assert stdout.split("\n")[:2] == ["4 records", "0"]


# --- the quick start and the one-example-per-surface section ------------------------------------

ROOT = README.parent


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _blocks(text: str, *languages: str) -> list[tuple[str, str]]:
    pattern = rf"```({'|'.join(languages)})\n(.*?)```"
    return [(m.group(1), m.group(2)) for m in re.finditer(pattern, text, flags=re.S)]


def _shell(line: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{line}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _without_comments(sql: str) -> str:
    """SQL with `--` comments removed (outside quotes), for splitting into statements."""
    lines = []
    for line in sql.splitlines():
        quote = ""
        for i, ch in enumerate(line):
            if quote:
                quote = "" if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif line.startswith("--", i):
                line = line[:i]
                break
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.timeout(1200)
def test_quick_start_runs_as_written_on_a_fresh_virtualenv(tmp_path: Path) -> None:
    section = _section("Quick start").split("**Run the whole test suite**")[0]
    repo = tmp_path / "repo"
    shutil.copytree(
        ROOT,
        repo,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", ".typecheck", "__pycache__", "*.egg-info", ".*_cache", "*-data", "build"
        ),
    )
    outputs = []
    blocks = _blocks(section, "sh", "python")
    assert [lang for lang, _ in blocks] == ["sh", "python", "sh"]
    for lang, code in blocks:
        if lang == "python":
            run = subprocess.run(
                [".venv/bin/python"], input=code, cwd=repo, capture_output=True, text=True, timeout=300
            )
            assert run.returncode == 0, run.stderr
            outputs.append(run.stdout)
        else:
            outputs.extend(_shell(line, repo) for line in code.splitlines() if line.strip())
    pages, windows = outputs[1].split("window_start")
    assert all(page in pages for page in ("/docs", "/pricing", "/blog")) and "views" in pages
    assert windows.count("2026-01-01 00:") == 10  # ten one-minute TUMBLE windows
    assert "5000" in outputs[2] and "49" in outputs[2]  # the CLI sees the same 5,000 clicks of 49 users


def test_cli_example_runs(tmp_path: Path) -> None:
    (_, code), *_ = _blocks(_section("One example per surface"), "sh")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = [_shell(line.replace("/tmp/cli-demo", str(tmp_path / "cli")), tmp_path, env) for line in code.splitlines()]
    record = json.loads(out[2])
    assert (record["key"], json.loads(record["value"])) == ("ada", {"user": "ada", "page": "/docs"})
    assert out[3].split() == ["n", "-", "1"]  # piped: a plain table (a rich one only on a terminal)


def test_sql_and_job_examples_run(tmp_path: Path) -> None:
    from streamhouse.cli.sql import split_statements

    blocks = _blocks(_section("SQL over topics"), "sql") + _blocks(_section("Continuous queries"), "sql")
    assert len(blocks) == 4  # SQL over topics; jobs; joins of two topics
    with streamhouse.open(tmp_path / "data") as sh:
        for _, code in blocks:
            for statement in split_statements(_without_comments(code)):
                sh.sql(statement)
        # The view was dropped at the end of the block; the INSERT INTO job stays.
        assert sh.jobs().column("job").to_pylist() == ["archive"]
        assert {"bids", "archive"} <= set(sh.sql("SHOW TOPICS").column("topic").to_pylist())


def test_notebook_example_runs_in_a_kernel(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    cells = [code for _, code in _blocks(_section("Notebooks"), "ipython")]
    assert len(cells) == 3
    demo = str(tmp_path / "nb")
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c.replace("/tmp/notebook-demo", demo)) for c in cells]
    )
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    card = nb.cells[2].outputs[-1]["data"]["text/html"]
    assert "pages" in card and "2 records" in card

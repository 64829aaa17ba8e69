"""The README's Python examples must keep working as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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

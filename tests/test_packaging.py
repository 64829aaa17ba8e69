"""The folder → package mapping of docs/DESIGN.md §1: every module ships, under `streamhouse` only."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {
    "engine": "streamhouse",
    "storage": "streamhouse/storage",
    "sql": "streamhouse/sql",
    "proto": "streamhouse/proto",
}


def test_every_source_folder_is_a_package() -> None:
    for folder in FOLDERS:
        for directory in (ROOT / folder).rglob("*"):
            if directory.is_dir() and "__pycache__" not in directory.parts and any(directory.glob("*.py")):
                assert (directory / "__init__.py").exists(), f"{directory} has modules but no __init__.py"


def test_wheel_holds_every_module_under_streamhouse(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("streamhouse-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    top_levels = {n.split("/")[0] for n in names if not n.startswith("streamhouse-")}
    assert top_levels == {"streamhouse"}, f"unexpected top-level packages {top_levels}"
    for folder, package in FOLDERS.items():
        for module in (ROOT / folder).rglob("*.py"):
            if ".typecheck" in module.parts:
                continue
            expected = f"{package}/{module.relative_to(ROOT / folder).as_posix()}"
            assert expected in names, f"{module} missing from the wheel as {expected}"
    assert any(n.startswith("streamhouse/storage/metadata/migrations/") and n.endswith(".sql") for n in names)

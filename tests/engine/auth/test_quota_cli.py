"""`streamhouse auth quota set | list` in process (issue 15): rates parsed with units, a row
replaced whole, bad input refused with one line and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamhouse.cli.main import main


def test_set_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = ["--data-dir", str(tmp_path)]
    assert main(["auth", "create-org", "acme", *where]) == 0
    assert main(["auth", "quota", "set", "--org", "acme", "--produce-bytes-per-s", "10MB", *where]) == 0
    assert (
        main(
            [
                "auth",
                "quota",
                "set",
                "--org",
                "acme",
                "--fetch-bytes-per-s",
                "1MiB",
                "--requests-per-s",
                "50",
                "--storage-bytes",
                "2GB",
                "--partitions",
                "12",
                *where,
            ]
        )
        == 0
    )
    assert "requests/s 50" in capsys.readouterr().out
    bad = (["--produce-bytes-per-s", "10XB"], ["--partitions", "0"], ["--storage-bytes", "-1"])
    for argv in (*(["--org", "acme", *b] for b in bad), ["--org", "ghost", "--requests-per-s", "5"]):
        assert main(["auth", "quota", "set", *argv, *where]) != 0
        assert capsys.readouterr().err.count("\n") == 1
    assert main(["auth", "quota", "list", "--format", "json", *where]) == 0
    row = json.loads(capsys.readouterr().out)  # one JSON object a line
    assert row == {
        "org": "acme",
        "produce_bytes_per_s": "default",
        "fetch_bytes_per_s": "1048576",
        "requests_per_s": "50",
        "storage_bytes": "2000000000",
        "partitions": "12",
    }

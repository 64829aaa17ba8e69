"""`streamhouse bench registry` runs end to end on a small input, both paths decode the same
records to the same columns (the bench checks that itself), and it reports both rates."""

from __future__ import annotations

import json

import pytest

from streamhouse.cli.main import main


@pytest.mark.parametrize("ids", ["1", "2"])
def test_bench_registry_small(ids: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "registry", "--records", "3000", "--batch", "1000", "--repeat", "1", "--ids", ids]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["avro_rec_s"] > 0 and figures["json_rec_s"] > 0
    assert figures["protobuf_cpu_rec_s"] > 0 and figures["json_schema_cpu_rec_s"] > 0
    assert figures["avro_collections_cpu_rec_s"] > 0

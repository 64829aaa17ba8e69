"""A WAL whose disk fills up (found by `streamhouse chaos`, issue 19): the failed append is a
StorageUnavailableError, not a bare OSError (which the gRPC face answered as an unexpected
servicer exception), nothing of the entry stays in the file, and a replay returns exactly the
entries that were acknowledged. The full disk is the file-size limit (RLIMIT_FSIZE) of a child
process, which every Unix has without privileges."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from streamhouse.storage.wal.log import WriteAheadLog

CHILD = r"""
import asyncio, json, resource, signal, sys
from pathlib import Path
from streamhouse.storage.errors import StorageUnavailableError
from streamhouse.storage.wal.log import WriteAheadLog

async def main(directory):
    wal = await WriteAheadLog.open(directory, fsync="always", file_bytes=1 << 26)
    await wal.replay()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
    acked, error = 0, None
    for i in range(1000):
        try:
            await wal.append(1, 0, 1, acked * 10, 10, bytes([i % 251]) * 3000)
        except Exception as exc:
            error = (type(exc).__name__, str(exc), isinstance(exc, StorageUnavailableError))
            break
        acked += 1
    # After the failure the WAL still takes entries that fit (here: none, the limit is hit).
    print(json.dumps({"acked": acked, "error": error}))
    await wal.close()

asyncio.run(main(Path(sys.argv[1])))
"""


async def test_a_full_disk_is_a_typed_error_and_keeps_nothing_half_written(tmp_path: Path) -> None:
    directory = tmp_path / "wal"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["acked"] >= 5 and report["error"] is not None
    name, message, typed = report["error"]
    assert typed, f"{name}: {message}"
    assert "write failed" in message and str(directory) in message
    wal = await WriteAheadLog.open(directory)
    result = await wal.replay()
    await wal.close()
    assert result.errors == () and result.torn_bytes == 0
    assert [e.base_offset for e in result.entries] == [i * 10 for i in range(report["acked"])]

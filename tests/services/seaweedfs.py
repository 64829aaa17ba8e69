"""Session fixtures for a real S3 server (docs/DESIGN.md §9); the launcher is streamhouse.devservices."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from streamhouse.devservices.seaweedfs import S3Server, credentials_env, s3_client, start_seaweedfs

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    workdir = Path(tempfile.mkdtemp(prefix="sh-weed-"))  # short: unix socket paths live here
    try:
        started = time.monotonic()
        weed = start_seaweedfs(workdir)
        print(f"SeaweedFS ready at {weed.server.endpoint} in {time.monotonic() - started:.2f}s")
        try:
            with pytest.MonkeyPatch.context() as env:
                # Code under test gets credentials the way production does: boto3's chain.
                for name, value in credentials_env(weed.server).items():
                    env.setenv(name, value)
                for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
                    env.delenv(name, raising=False)
                yield weed.server
        finally:
            weed.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_admin(s3_server: S3Server) -> Iterator[S3Client]:
    client = s3_client(s3_server)
    yield client
    client.close()


@pytest.fixture(scope="session")
def s3_bucket(s3_admin: S3Client) -> str:
    """One bucket for the session. SeaweedFS makes every bucket a collection whose first
    write must grow a volume (~0.2 s, ~1 s when writes race), so tests get a fresh prefix
    in a warmed bucket rather than a fresh bucket each."""
    bucket = f"sh-test-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=bucket)
    s3_admin.put_object(Bucket=bucket, Key="warm-up", Body=b"")
    return bucket


@pytest.fixture
def s3_url(s3_server: S3Server, s3_bucket: str) -> tuple[str, str]:
    """`(s3://bucket/<fresh prefix>, endpoint)`: an empty store nobody else writes to."""
    return f"s3://{s3_bucket}/{uuid.uuid4().hex[:16]}", s3_server.endpoint

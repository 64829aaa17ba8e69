"""Object store on S3 or an S3-compatible server (docs/DESIGN.md §4, §5), through boto3.

Put-if-absent is S3's conditional write, `If-None-Match: *`: the server decides atomically,
so of N racing writers exactly one succeeds and the rest get 412 PreconditionFailed. Verified
against SeaweedFS 4.48 (the test server, tests/services/seaweedfs.py), including 8 concurrent
writers, so no fallback is implemented; a server that ignored the header would let a second
put overwrite, which the contract suite catches.

boto3 is blocking, so every call runs in the bounded IO pool; the client is thread-safe and
created lazily on first use (in the pool: it loads JSON models and reads credential files).
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from streamhouse.storage.errors import (
    InvalidInputError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageUnavailableError,
)
from streamhouse.storage.executor import pool, run_blocking
from streamhouse.storage.model import ObjectInfo
from streamhouse.storage.object_store.keys import check_key, check_prefix, check_range

if TYPE_CHECKING:
    import boto3
    from botocore.exceptions import ClientError
    from botocore.loaders import Loader
    from mypy_boto3_s3 import S3Client

DEFAULT_REGION = "us-east-1"
# How long one socket read or write may make no progress before the attempt is given up and
# retried on a new connection (botocore's default is 60 s). A request caught by a dead route
# hangs until then, and an acks=all produce waits on its segment's upload: at 60 s a Kafka
# client's delivery timeout (librdkafka's message.timeout.ms, 30 s in many deployments) ran out
# first, and an idempotent client's epoch bump then wrote its retried records again (issue 19).
# 10 s is still far above any healthy S3 pause between bytes, large objects included.
READ_TIMEOUT_S = 10.0
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_PRECONDITION_FAILED = {"PreconditionFailed", "412"}
# AWS answers 409 while another conditional write of the same key is in flight; the winner
# is not decided yet (that write may still fail), so try again before giving up.
_CONFLICT = {"ConditionalRequestConflict", "409"}
_CONFLICT_ATTEMPTS = 5
_BAD_REQUEST = {"InvalidArgument", "KeyTooLongError", "EntityTooLarge", "InvalidObjectName"}


_loader_lock = threading.Lock()
_loader: Loader | None = None


def _new_session() -> boto3.session.Session:
    """A fresh session per store, so credentials and region come from the boto3 chain as it
    is now, but one shared model loader: parsing the S3 service model costs ~0.2 s per
    session and the loader caches it (a client then takes ~30 ms)."""
    global _loader
    import boto3
    import botocore.session

    core = botocore.session.Session()
    with _loader_lock:
        if _loader is None:
            _loader = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _loader)
    return boto3.session.Session(botocore_session=core)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3ObjectStore:
    """`s3://bucket/prefix`; keys are stored as `prefix/key`. Credentials and region come
    from the usual boto3 chain (env, config files, instance role); region defaults to
    us-east-1, which S3-compatible servers accept."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        max_attempts: int = 5,
        connect_timeout: float = 5.0,
        read_timeout: float = READ_TIMEOUT_S,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise InvalidInputError(f"not an S3 URL: {url!r} (use s3://bucket/prefix)")
        self._url = url
        self._bucket = parsed.netloc
        self._prefix = parsed.path.strip("/")
        self._endpoint_url = endpoint_url
        self._region = region
        self._max_attempts = max_attempts
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._client: S3Client | None = None
        self._client_lock = threading.Lock()

    @property
    def url(self) -> str:
        return self._url

    @property
    def bucket(self) -> str:
        return self._bucket

    def _full_key(self, key: str) -> str:
        check_key(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    def _s3(self) -> S3Client:
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> S3Client:
        from botocore.config import Config

        session = _new_session()
        config = Config(
            retries={"max_attempts": self._max_attempts, "mode": "standard"},
            connect_timeout=self._connect_timeout,
            read_timeout=self._read_timeout,
            # One connection per pool thread, so no call waits for a socket.
            max_pool_connections=pool()._max_workers,
            # S3-compatible servers on an IP or plain host name only do path style.
            s3={"addressing_style": "path" if self._endpoint_url else "auto"},
        )
        return session.client(
            "s3",
            endpoint_url=self._endpoint_url,
            region_name=self._region or session.region_name or DEFAULT_REGION,
            config=config,
        )

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Translate boto3's exceptions into the StreamHouse tree."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            code = _code(exc)
            if code in _NOT_FOUND:
                raise ObjectNotFoundError(key) from None
            if code in _BAD_REQUEST:
                raise InvalidInputError(f"S3 rejected object {key!r}: {exc}") from exc
            where = f"s3://{self._bucket} at {self._endpoint_url or 'AWS'}"
            if code == "NoSuchBucket":
                raise StorageUnavailableError(f"bucket {self._bucket!r} does not exist ({where})") from exc
            raise StorageUnavailableError(f"S3 request for {key!r} failed ({where}): {exc}") from exc
        except BotoCoreError as exc:  # connection refused/reset, timeouts, no credentials
            raise StorageUnavailableError(
                f"S3 unreachable ({self._endpoint_url or 'AWS'}, bucket {self._bucket!r}): {exc}"
            ) from exc

    async def put(self, key: str, data: bytes, *, if_absent: bool = True) -> None:
        await run_blocking(self._put, key, self._full_key(key), data, if_absent)

    async def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        first, end = check_range(start, end)
        return await run_blocking(self._get, key, self._full_key(key), first, end)

    async def head(self, key: str) -> ObjectInfo:
        return await run_blocking(self._head, key, self._full_key(key))

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        check_prefix(prefix)
        full = f"{self._prefix}/{prefix}" if self._prefix else prefix
        return await run_blocking(self._list, full)

    async def list_page(self, prefix: str = "", *, after: str = "", limit: int = 1000) -> builtins.list[ObjectInfo]:
        check_prefix(prefix)
        full = f"{self._prefix}/{prefix}" if self._prefix else prefix
        start = (f"{self._prefix}/{after}" if self._prefix else after) if after else ""
        return await run_blocking(self._list_page, full, start, max(limit, 0))

    async def delete(self, key: str) -> None:
        await run_blocking(self._delete, key, self._full_key(key))

    async def close(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _put(self, key: str, full: str, data: bytes, if_absent: bool) -> None:
        from botocore.exceptions import ClientError

        with self._errors(key):
            client = self._s3()
            if not if_absent:
                client.put_object(Bucket=self._bucket, Key=full, Body=data)
                return
            for attempt in range(_CONFLICT_ATTEMPTS):
                try:
                    client.put_object(Bucket=self._bucket, Key=full, Body=data, IfNoneMatch="*")
                    return
                except ClientError as exc:
                    code = _code(exc)
                    if code in _CONFLICT and attempt + 1 < _CONFLICT_ATTEMPTS:
                        time.sleep(0.05 * 2**attempt)
                        continue
                    if code not in _PRECONDITION_FAILED | _CONFLICT:
                        raise
                    # A conflict that outlasts the retries is reported like a lost race.
                    if self._retried_own_write(exc, full, data):
                        return
                    raise ObjectExistsError(key) from None

    def _retried_own_write(self, exc: ClientError, full: str, data: bytes) -> bool:
        """A 412 after boto3 retried may mean our own first attempt landed and only its
        response was lost; the object then holds exactly our bytes, and the put succeeded."""
        if not exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0):
            return False
        body = self._s3().get_object(Bucket=self._bucket, Key=full)["Body"].read()
        return body == data

    def _get(self, key: str, full: str, start: int, end: int | None) -> bytes:
        from botocore.exceptions import ClientError

        with self._errors(key):
            client = self._s3()
            if end is not None and start >= end:
                # An empty range still has to say whether the object exists.
                client.head_object(Bucket=self._bucket, Key=full)
                return b""
            if start == 0 and end is None:
                return client.get_object(Bucket=self._bucket, Key=full)["Body"].read()
            last = "" if end is None else str(end - 1)  # HTTP ranges are inclusive
            try:
                response = client.get_object(Bucket=self._bucket, Key=full, Range=f"bytes={start}-{last}")
            except ClientError as exc:
                # 416: the range starts at or past the end (or the object is empty). The
                # object exists, and [start, end) clamped to its size is empty.
                if _code(exc) == "InvalidRange":
                    return b""
                raise
            return response["Body"].read()

    def _head(self, key: str, full: str) -> ObjectInfo:
        with self._errors(key):
            response = self._s3().head_object(Bucket=self._bucket, Key=full)
            return ObjectInfo(key, response["ContentLength"], _ms(response.get("LastModified")))

    def _list(self, full_prefix: str) -> builtins.list[ObjectInfo]:  # `list` is a method here
        strip = len(self._prefix) + 1 if self._prefix else 0
        found: builtins.list[ObjectInfo] = []
        with self._errors(full_prefix):
            paginator = self._s3().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self._bucket, Prefix=full_prefix):
                for item in page.get("Contents", []):
                    found.append(ObjectInfo(item["Key"][strip:], item["Size"], _ms(item.get("LastModified"))))
        # S3 returns keys in UTF-8 byte order already; S3-compatible servers that walk
        # directories may not, and callers rely on the order.
        found.sort(key=lambda info: info.key)
        return found

    def _list_page(self, full_prefix: str, start_after: str, limit: int) -> builtins.list[ObjectInfo]:
        strip = len(self._prefix) + 1 if self._prefix else 0
        found: builtins.list[ObjectInfo] = []
        with self._errors(full_prefix):
            # One request per page, resumed by key (StartAfter), so memory stays at one page.
            # An S3-compatible server may return fewer than asked: pages until full or done.
            token: str | None = None
            while len(found) < limit:
                want = min(limit - len(found), 1000)
                args: dict[str, Any] = {"Bucket": self._bucket, "Prefix": full_prefix, "MaxKeys": want}
                if token is not None:
                    args["ContinuationToken"] = token
                elif start_after:
                    args["StartAfter"] = start_after
                page = self._s3().list_objects_v2(**args)
                for item in page.get("Contents", []):
                    found.append(ObjectInfo(item["Key"][strip:], item["Size"], _ms(item.get("LastModified"))))
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or token is None:
                    break
        # Not re-sorted: the next page starts after this page's last key in the server's order
        # (see ObjectStore.list_page), so sorting here could skip or repeat keys.
        return found[:limit]

    def _delete(self, key: str, full: str) -> None:
        from botocore.exceptions import ClientError

        with self._errors(key):
            try:
                self._s3().delete_object(Bucket=self._bucket, Key=full)
            except ClientError as exc:
                # S3 answers 204 for a missing key; some compatible servers say 404.
                if _code(exc) not in _NOT_FOUND:
                    raise


def _ms(when: object) -> int | None:
    """S3's LastModified (a datetime from botocore) in ms since the epoch."""
    stamp = getattr(when, "timestamp", None)
    return None if stamp is None else int(stamp() * 1000)

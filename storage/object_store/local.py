"""Object store on a local directory (docs/DESIGN.md §5): one file per key, published atomically.

A reader never sees a partial object: bytes go to a temp file in the destination directory,
are fsynced, and only then become visible under the key (a hard link for put-if-absent, a
rename otherwise), after which the directory itself is fsynced so the new name survives a
crash. The temp file lives in the same directory because link/rename are only atomic within
one filesystem.
"""

from __future__ import annotations

import builtins
import errno
import mmap
import os
import uuid
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from streamhouse.storage.errors import InvalidInputError, ObjectExistsError, ObjectNotFoundError
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.fsutil import fsync_dir
from streamhouse.storage.model import ObjectInfo
from streamhouse.storage.object_store.keys import TEMP_PREFIX, check_key, check_prefix, check_range


def _root_of(url: str) -> Path:
    parsed = urlparse(url)
    if parsed.scheme == "":
        return Path(url).absolute()
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost") or not parsed.path:
        raise InvalidInputError(f"not a local object store URL: {url!r} (use file:///absolute/path)")
    return Path(url2pathname(parsed.path))


def _make_dirs(path: Path) -> None:
    """mkdir -p, fsyncing each new directory's parent so the chain survives a crash."""
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            if not directory.is_dir():  # a concurrent put may have created it; a file is a clash
                raise
        fsync_dir(directory.parent)


def _walk(root: Path, start: Path, prefix: str) -> list[ObjectInfo]:
    found: list[ObjectInfo] = []
    for dirpath, _dirnames, filenames in os.walk(start):
        relative = Path(dirpath).relative_to(root).as_posix()
        base = "" if relative == "." else f"{relative}/"
        for name in filenames:
            key = base + name
            if name.startswith(TEMP_PREFIX) or not key.startswith(prefix):
                continue
            try:
                st = os.stat(os.path.join(dirpath, name))
            except FileNotFoundError:  # deleted while we walked
                continue
            found.append(ObjectInfo(key, st.st_size, st.st_mtime_ns // 1_000_000))
    # Python orders str by code point, which is the same order as S3's UTF-8 byte order.
    found.sort(key=lambda info: info.key)
    return found


def _walk_page(root: Path, start: Path, prefix: str, after: str, limit: int) -> list[ObjectInfo]:
    """Up to `limit` objects under `start` with keys starting with `prefix` and after `after`, in
    key order, visiting only what a page needs: directories are entered in key order (a
    directory's keys sort as its name + "/") and skipped whole when all their keys sort at or
    before `after`, and the walk stops once the page is full. Stats only the keys it returns."""
    found: list[ObjectInfo] = []
    pending: list[tuple[str, str, bool]] = []  # (key, path, is a directory), last = next in order

    def enter(key_prefix: str, directory: str) -> None:
        try:
            with os.scandir(directory) as entries:
                listed = [(key_prefix + e.name + ("/" if e.is_dir() else ""), e.path, e.is_dir()) for e in entries]
        except (FileNotFoundError, NotADirectoryError):
            return
        listed.sort(key=lambda item: item[0], reverse=True)
        pending.extend(listed)

    base = start.relative_to(root).as_posix()
    enter("" if base == "." else f"{base}/", str(start))
    while pending and len(found) < limit:
        key, path, is_dir = pending.pop()
        if is_dir:
            # Every key inside starts with `key`: all sort before `after` when `key` does and
            # `after` does not continue inside it; none matches unless `key` and `prefix` agree.
            skipped = key < after and not after.startswith(key)
            if not skipped and (key.startswith(prefix) or prefix.startswith(key)):
                enter(key, path)
            continue
        if key <= after or not key.startswith(prefix) or os.path.basename(path).startswith(TEMP_PREFIX):
            continue
        try:
            st = os.stat(path)
        except FileNotFoundError:  # deleted while we walked
            continue
        found.append(ObjectInfo(key, st.st_size, st.st_mtime_ns // 1_000_000))
    return found


def _prefix_clash(key: str) -> InvalidInputError:
    # A file cannot also be a directory, so unlike S3 "a" and "a/b" cannot both exist here.
    return InvalidInputError(f"object key {key!r} is a prefix of existing objects")


MMAP_BYTES = 1 << 20


class LocalObjectStore:
    """`file:///abs/path` or a plain path. Every filesystem call runs in the IO pool."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._root = _root_of(url)

    @property
    def url(self) -> str:
        return self._url

    @property
    def root(self) -> Path:
        return self._root

    def _path(self, key: str) -> Path:
        return self._root.joinpath(*check_key(key))

    async def put(self, key: str, data: bytes, *, if_absent: bool = True) -> None:
        await run_blocking(self._put, key, self._path(key), data, if_absent)

    async def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes | memoryview:
        first, end = check_range(start, end)
        return await run_blocking(self._get, key, self._path(key), first, end)

    async def head(self, key: str) -> ObjectInfo:
        return await run_blocking(self._head, key, self._path(key))

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        # Walk only the deepest directory the prefix names; the rest is a string filter.
        start = self._root.joinpath(*check_prefix(prefix))
        return await run_blocking(_walk, self._root, start, prefix)

    async def list_page(self, prefix: str = "", *, after: str = "", limit: int = 1000) -> builtins.list[ObjectInfo]:
        start = self._root.joinpath(*check_prefix(prefix))
        return await run_blocking(_walk_page, self._root, start, prefix, after, max(limit, 0))

    async def delete(self, key: str) -> None:
        await run_blocking(self._delete, self._path(key))

    async def close(self) -> None:
        return None

    @staticmethod
    def _put(key: str, path: Path, data: bytes, if_absent: bool) -> None:
        try:
            _make_dirs(path.parent)
        except (FileExistsError, NotADirectoryError) as exc:
            raise InvalidInputError(f"object key {key!r} runs through an existing object") from exc
        tmp = path.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            with open(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if if_absent:
                # link() fails atomically if the name exists, so of N racing writers exactly
                # one publishes and the others see FileExistsError; O_EXCL on the final name
                # would expose a half-written object instead.
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    if path.is_dir():
                        raise _prefix_clash(key) from None
                    raise ObjectExistsError(key) from None
            else:
                try:
                    os.replace(tmp, path)
                except IsADirectoryError:
                    raise _prefix_clash(key) from None
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)

    @staticmethod
    def _get(key: str, path: Path, start: int, end: int | None) -> bytes | memoryview:
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                stop = size if end is None else min(end, size)
                if start >= stop:
                    return b""
                if stop - start >= MMAP_BYTES:
                    # Large reads (whole segments) map the page cache instead of copying it:
                    # a 48 MB read() costs ~30 ms here, a mapping ~0.02 ms. Objects are
                    # immutable and unlinked files stay mapped, so the view stays valid.
                    mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                    return memoryview(mapped)[start:stop]
                f.seek(start)
                return f.read(stop - start)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFoundError(key) from None

    @staticmethod
    def _head(key: str, path: Path) -> ObjectInfo:
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(key) from None
        if not path.is_file():
            raise ObjectNotFoundError(key)
        return ObjectInfo(key, st.st_size, st.st_mtime_ns // 1_000_000)

    @staticmethod
    def _delete(path: Path) -> None:
        # Empty parent directories are left in place: removing them would race with a
        # concurrent put that has just created the directory for its temp file.
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        except PermissionError as exc:  # unlink() of a directory is EPERM on some systems
            if exc.errno == errno.EPERM and path.is_dir():
                return
            raise
        fsync_dir(path.parent)

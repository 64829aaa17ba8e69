"""Key and range rules shared by every ObjectStore backend, so a key that works on one
backend works on all and none can escape its root."""

from __future__ import annotations

from streamhouse.storage.errors import InvalidInputError

# Names starting with this are in-flight writes: never listed, never accepted as key parts.
TEMP_PREFIX = ".streamhouse-tmp-"
# S3's limit; enforced everywhere so a key that works on one backend works on all.
MAX_KEY_BYTES = 1024


def check_key(key: str) -> list[str]:
    """Split a key into its '/'-separated parts, rejecting anything that is not a plain
    relative path: keys must not escape the store's root on any backend."""
    if not key:
        raise InvalidInputError("object key must not be empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidInputError(f"object key longer than {MAX_KEY_BYTES} bytes: {key[:64]!r}…")
    if "\x00" in key:
        raise InvalidInputError(f"object key contains NUL: {key!r}")
    parts = key.split("/")
    for part in parts:
        if part in ("", ".", "..") or part.startswith(TEMP_PREFIX):
            raise InvalidInputError(f"invalid object key {key!r}: not a relative path without ., .. or //")
    return parts


def check_prefix(prefix: str) -> list[str]:
    """The directory parts of a list() prefix (its last part may be partial or empty),
    held to the same rules as keys so no backend lists outside its root."""
    directory, _, _ = prefix.rpartition("/")
    return check_key(directory) if directory else []


def check_range(start: int | None, end: int | None) -> tuple[int, int | None]:
    """Normalise a [start, end) request; negative bounds are a caller bug, not a clamp."""
    first = 0 if start is None else start
    if first < 0 or (end is not None and end < 0):
        raise InvalidInputError(f"invalid byte range [{start}, {end})")
    return first, end

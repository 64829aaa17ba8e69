"""StreamHouse: a streaming SQL engine on S3 segment storage.

Kept light on purpose: importing `streamhouse.storage` runs this module, so heavy
exports are resolved lazily on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_ERRORS = "streamhouse.storage.errors"
# name -> (module, attribute)
_LAZY: dict[str, tuple[str, str]] = {
    "open": ("streamhouse.client.client", "open_embedded"),
    "connect": ("streamhouse.client.client", "connect"),
    "Client": ("streamhouse.client.client", "Client"),
    "Consumer": ("streamhouse.client.consumer", "Consumer"),
    **{
        name: (_ERRORS, name)
        for name in (
            "StreamHouseError",
            "CorruptDataError",
            "InvalidInputError",
            "OffsetOutOfRangeError",
            "NotFoundError",
            "TopicNotFoundError",
            "TopicExistsError",
            "FencedError",
            "BackpressureError",
            "NotLeaderError",
            "StorageUnavailableError",
            "JobNotFoundError",
            "JobExistsError",
            "JobLagTimeoutError",
            "TopicSettingError",
            "UnknownTopicSettingError",
            "UnsupportedTopicSettingError",
            "PartitionCountError",
            "QueryLimitError",
            "QueryMemoryExceededError",
            "QueryTimeoutError",
            "QueryCancelledError",
        )
    },
}

__all__ = ["__version__", "load_ipython_extension", *_LAZY]


def load_ipython_extension(shell: Any) -> None:
    """`%load_ext streamhouse` in IPython/Jupyter: the `%sql`/`%%sql` magics and HTML reprs."""
    from streamhouse.notebook import load_ipython_extension as load

    load(shell)


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'streamhouse' has no attribute {name!r}")
    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value

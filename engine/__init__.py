"""StreamHouse: a streaming SQL engine on S3 segment storage.

Kept light on purpose: importing `streamhouse.storage` runs this module, so heavy
exports are resolved lazily on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "StreamHouseError": "streamhouse.storage.errors",
    "CorruptDataError": "streamhouse.storage.errors",
    "InvalidInputError": "streamhouse.storage.errors",
    "NotFoundError": "streamhouse.storage.errors",
    "TopicNotFoundError": "streamhouse.storage.errors",
    "TopicExistsError": "streamhouse.storage.errors",
    "FencedError": "streamhouse.storage.errors",
    "BackpressureError": "streamhouse.storage.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'streamhouse' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

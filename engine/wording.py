"""Words for counts in messages people read: the CLI, the SDK's errors, notebook cards."""

from __future__ import annotations


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """'1 record', '2 records', '1,000 records'."""
    word = noun if count == 1 else (plural_noun or noun + "s")
    return f"{count:,} {word}"

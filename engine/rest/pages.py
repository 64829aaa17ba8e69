"""Pagination for REST lists: `page_size` items after `page_token`, sorted by name. The token
is the last name of the previous page (URL-safe base64, so clients treat it as opaque): a
page boundary holds even when items are created or deleted between two calls, which an
offset would not (a deleted topic would shift every later one back a page)."""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Callable, Sequence
from typing import Annotated, TypeVar

from fastapi import Query

from streamhouse.rest.models import MAX_PAGE_SIZE
from streamhouse.storage.errors import InvalidInputError

T = TypeVar("T")

PageToken = Annotated[str | None, Query(max_length=1024, description="next_page_token of the previous page")]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="items per page")]


def page(items: Sequence[T], name: Callable[[T], str], token: str | None, size: int) -> tuple[list[T], str | None]:
    ordered = sorted(items, key=name)
    start = 0
    if token:
        try:
            after = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode("utf-8")
            if not after:
                raise ValueError("empty")
        except (binascii.Error, UnicodeError, ValueError) as e:
            raise InvalidInputError(f"page_token {token!r} is not a token this API gave out") from e
        start = bisect.bisect_right([name(item) for item in ordered], after)
    chosen = ordered[start : start + size]
    more = start + size < len(ordered)
    next_token = base64.urlsafe_b64encode(name(chosen[-1]).encode()).decode() if more and chosen else None
    return chosen, next_token

"""Waiting and stopping that never lose a cancellation.

On Python 3.11, `asyncio.wait_for(event.wait(), t)` returns normally when the task is
cancelled in the same loop iteration the event is set, swallowing the CancelledError (fixed
in 3.12). A loop that waits that way can then outlive the `cancel()` meant to stop it, and a
shutdown that awaits it hangs forever. These helpers use `asyncio.wait`, which always lets a
cancellation through, and stopping re-cancels a task that shrugged one off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """True once `event` is set, False after `timeout` seconds; a cancellation always propagates."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=max(timeout, 0.0))
    finally:
        if not waiter.done():
            waiter.cancel()
    return bool(done)


def retrieve(task: asyncio.Future[Any]) -> None:
    """A done callback for a task nobody awaits: its outcome is marked seen, so a failure whose
    caller has moved on (a cancelled long-poll whose database call then failed in its cleanup)
    is not logged by asyncio as "Task exception was never retrieved"."""
    if not task.cancelled():
        task.exception()


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], *, recancel_every: float = 1.0) -> None:
    """Cancel `tasks` and wait until every one has finished, cancelling again any that keep going.

    Their outcome (cancelled, failed or returned) is not reported: the caller is stopping them.
    """
    tasks = list(tasks)
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=recancel_every)
        if pending:
            log.warning("%d task(s) ignored cancellation; cancelling again", len(pending))
    for task in tasks:
        if task.done():
            retrieve(task)  # so asyncio does not log "never retrieved"

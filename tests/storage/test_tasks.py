"""storage/tasks.py: waits that never swallow a cancellation, stops that outlast a stubborn task."""

from __future__ import annotations

import asyncio

import pytest

from streamhouse.storage.tasks import cancel_and_wait, wait_event


async def test_wait_event_reports_set_and_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True


async def test_cancel_while_the_event_is_set_in_the_same_iteration_still_cancels() -> None:
    # The 3.11 asyncio.wait_for race: the event fires and the cancel lands in one iteration.
    event = asyncio.Event()
    for _ in range(50):
        event.clear()
        task = asyncio.create_task(wait_event(event, 10))
        await asyncio.sleep(0)
        event.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_cancel_and_wait_recancels_a_task_that_ignores_one_cancellation() -> None:
    shrugged = 0

    async def stubborn() -> None:
        nonlocal shrugged
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                shrugged += 1
                if shrugged > 1:
                    raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task], recancel_every=0.05), 5)
    assert task.cancelled() and shrugged == 2


async def test_cancel_and_wait_accepts_finished_and_failed_tasks() -> None:
    async def fail() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(fail())
    await asyncio.sleep(0)
    await cancel_and_wait([failed])
    assert isinstance(failed.exception(), RuntimeError)

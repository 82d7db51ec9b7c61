"""Timeouts measured on an injectable :class:`~kapmonitor.clock.Clock` (so a demo running at
60x speed and a test on a fast clock time out in *their* seconds)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from kapmonitor.clock import Clock

T = TypeVar("T")


async def wait_for(clock: Clock, aw: Awaitable[T], within: float | None) -> T:
    """Like :func:`asyncio.wait_for` but on ``clock``; raises :class:`TimeoutError`."""
    task = asyncio.ensure_future(aw)
    if within is None:
        return await task
    timer = asyncio.ensure_future(clock.sleep(within))
    try:
        done, _ = await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        timer.cancel()
        raise
    timer.cancel()
    if task in done:
        return task.result()
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):  # noqa: BLE001
        pass  # the task we just cancelled: its outcome is superseded by the timeout below
    raise TimeoutError(f"no result within {within:g} s")

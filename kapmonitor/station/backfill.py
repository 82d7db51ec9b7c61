"""A bed's past, from its node: a station started (or a bed first seen) mid-session still shows
the whole 30-minute trend and the session's timeline.

What belongs here: asking the bed's node for ``history/recent`` (the node's history store answers
it; see ``docs/history.md``) when a page first shows a bed or opens its timeline, once per bed,
a few requests at a time, and not again for a while from a node that did not answer (a node
without a history store answers with an error at once; one that is down times out). The answer
is merged by :meth:`~kapmonitor.station.state.StationState.backfill`. What does not: the MQTT
request itself (:meth:`~kapmonitor.station.bridge.StationBridge.command`) and the page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kapmonitor.station.state import SPARK_WINDOW_S, StationState

log = logging.getLogger("kapmonitor.station")

Command = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]
# What the sparklines and the timeline's BP entries are drawn from.
METRICS = ["spo2", "pulse_rate", "heart_rate", "resp_rate", "nibp_sys", "nibp_dia"]


class Backfill:
    def __init__(self, state: StationState, command: Command, station_id: str, *,
                 concurrency: int = 4, retry_after_s: float = 300.0) -> None:
        self.state = state
        self.command = command
        self.station_id = station_id
        self.retry_after_s = retry_after_s
        self._slots = asyncio.Semaphore(concurrency)
        self._done: set[str] = set()  # bed keys filled (or answered with an error)
        self._running: dict[str, asyncio.Task[bool]] = {}
        self._quiet_nodes: dict[str, float] = {}  # node base → monotonic time to retry after
        self._tasks: set[asyncio.Task[Any]] = set()

    async def ensure(self, key: str) -> bool:
        """Fill the bed ``key`` from its node unless done already; True when it merged now."""
        if key in self._done or key not in self.state.beds:
            return False
        task = self._running.get(key)
        if task is None:
            task = self._running[key] = asyncio.create_task(self._fill(key))
            task.add_done_callback(lambda _: self._running.pop(key, None))
        return await asyncio.shield(task)

    def start(self, keys: list[str], merged: Callable[[list[str]], Awaitable[None]]) -> None:
        """Fill ``keys`` in the background; then ``merged(keys that were filled)``."""
        todo = [k for k in keys if k not in self._done and k in self.state.beds]
        if not todo:
            return

        async def run() -> None:
            results = await asyncio.gather(*(self.ensure(k) for k in todo))
            filled = [k for k, ok in zip(todo, results, strict=True) if ok]
            if filled:
                await merged(filled)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fill(self, key: str) -> bool:
        bed = self.state.beds[key]
        async with self._slots:
            if self._quiet_nodes.get(bed.base, 0.0) > time.monotonic():
                return False
            body = {"bed": bed.bed, "minutes": SPARK_WINDOW_S / 60.0, "metrics": METRICS,
                    "by": f"station {self.station_id}"}
            try:
                resp = await self.command(bed.base, "history/recent", body)
            except Exception as exc:  # noqa: BLE001 - any failure: try this node later
                log.info("history of %s bed %s not available (%s); asking again in %.0f s",
                         bed.node_id, bed.bed, exc, self.retry_after_s)
                self._quiet_nodes[bed.base] = time.monotonic() + self.retry_after_s
                return False
        self._done.add(key)
        data = resp.get("data")
        if resp.get("status") != "ok" or not isinstance(data, dict):
            log.info("history of %s bed %s: %s", bed.node_id, bed.bed, resp.get("error"))
            return False
        return self.state.backfill(key, data)

    async def stop(self) -> None:
        for task in [*self._tasks, *self._running.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._running.values(), return_exceptions=True)

"""Injectable clocks.

Everything that waits or stamps time takes a :class:`Clock`. The daemon uses
:class:`SystemClock`; the demo uses :class:`ScaledClock` to run a 3-hour session in minutes;
tests and ``replay`` use :class:`ManualClock`, which only moves when told to.
:func:`system_clock_synchronized` tells whether the host's clock has been set by NTP yet.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

TIMESYNC_DIR = Path("/run/systemd/timesync")


def iso_time(epoch: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds, e.g. ``2026-03-02T13:05:09.123Z``:
    the form every retained payload carries beside the epoch number."""
    text = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


# Keys that hold epoch seconds in kapmonitor's payloads (readings, statuses, alarm and session
# snapshots); each gets a ``<key>_iso`` sibling in every retained payload.
TIME_KEYS = frozenset({
    "t", "ts", "since", "last_seen", "started_at", "ended_at", "onset_t", "t0", "due_at",
    "overdue_at", "done_at", "not_before", "audio_paused_until", "escalate_at", "stale_since",
})


def with_iso_times(body: Any) -> Any:
    """``body`` with an ISO 8601 ``<key>_iso`` beside every epoch time under a
    :data:`TIME_KEYS` key, at any depth (a new object; ``body`` is not changed)."""
    if isinstance(body, dict):
        out: dict[str, Any] = {}
        for k, v in body.items():
            out[k] = with_iso_times(v)
            if (k in TIME_KEYS and isinstance(v, int | float) and not isinstance(v, bool)
                    and f"{k}_iso" not in body):
                out[f"{k}_iso"] = iso_time(v)
        return out
    if isinstance(body, list):
        return [with_iso_times(v) for v in body]
    return body


def system_clock_synchronized(run_dir: Path = TIMESYNC_DIR) -> bool | None:
    """Whether systemd-timesyncd has synchronised the clock since boot (it creates
    ``/run/systemd/timesync/synchronized`` then); None when timesyncd is not in use (another
    NTP client, a container), so nothing can be said."""
    if not run_dir.is_dir():
        return None
    return (run_dir / "synchronized").exists()


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time, epoch seconds (what readings are stamped with)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds for timeouts and watchdogs (same scale as ``now``)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Time that runs ``speed`` times faster than the real clock, starting at ``start``."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self._real0 = time.monotonic()
        self._start = time.time() if start is None else start

        self._mono0 = 0.0  # this clock's monotonic time at _real0

    def now(self) -> float:
        return self._start + self.monotonic()

    def monotonic(self) -> float:
        return self._mono0 + (time.monotonic() - self._real0) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    def set_speed(self, speed: float) -> None:
        """Change the speed from now on; time stays continuous (the demo fast-forwards
        through the start of its sessions this way). Sleeps already begun keep the speed
        they started with."""
        if speed <= 0:
            raise ValueError("speed must be > 0")
        mono = self.monotonic()
        self._real0 = time.monotonic()
        self._mono0 = mono
        self.speed = speed


class ManualClock:
    """A clock that moves only through :meth:`advance`; sleepers wake when their time comes."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._t = start
        self._start = start
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._t

    def monotonic(self) -> float:
        return self._t - self._start

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._t + seconds, fut))
        await fut

    def advance(self, seconds: float) -> None:
        self._t += seconds
        due = [w for w in self._waiters if w[0] <= self._t]
        self._waiters = [w for w in self._waiters if w[0] > self._t]
        for _, fut in due:
            if not fut.done():
                fut.set_result(None)

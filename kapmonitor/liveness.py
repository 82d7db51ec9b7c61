"""Liveness: the systemd watchdog is fed only while every internal task makes progress.

What belongs here: the heartbeat registry (:class:`Liveness`), the check that decides whether
the daemon is alive, and the task that sends ``WATCHDOG=1`` while it is. Nothing else of the
systemd protocol (``READY``, ``STATUS`` and the unit file belong to the service setup).

A part of the daemon is *alive* when

- its task (registered with :meth:`Liveness.watch_task`) has not ended, and
- its heartbeat (:meth:`Liveness.beat`) is younger than its ``max_age``, unless its ``idle``
  predicate says that it has nothing to do (the outbox drain with an empty outbox).

When anything is not alive, the watchdog is no longer fed (systemd then kills and restarts
the daemon after ``WatchdogSec``), a critical line names the part, and after ``fail_after``
seconds :meth:`Liveness.run` raises :class:`LivenessError`, which stops the daemon with a
non-zero exit even without systemd. A hang therefore always ends in a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("kapmonitor.liveness")

Notify = Callable[[str], None]


class LivenessError(RuntimeError):
    """A part of the daemon stopped making progress."""


@dataclass
class _Heartbeat:
    max_age: float
    idle: Callable[[], bool] | None
    last: float = field(default_factory=time.monotonic)


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Half the watchdog period systemd asks for (``WATCHDOG_USEC``), or None without one.
    ``WATCHDOG_PID``, when set, must be this process."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        period = int(usec) / 1e6
    except ValueError:
        return None
    return period / 2 if period > 0 else None


class Liveness:
    """Heartbeats and watched tasks; see the module docstring."""

    def __init__(
        self,
        notify: Notify,
        *,
        interval: float | None = None,
        fail_after: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._notify = notify
        self.interval = interval if interval is not None else (watchdog_interval() or 5.0)
        self.fail_after = fail_after
        self._now = monotonic
        self._beats: dict[str, _Heartbeat] = {}
        self._tasks: dict[str, asyncio.Task[object]] = {}
        self.fed = 0  # WATCHDOG=1 messages sent
        self._failing_since: float | None = None

    # -- registration ----------------------------------------------------------------------
    def heartbeat(
        self, name: str, max_age: float, idle: Callable[[], bool] | None = None
    ) -> Callable[[], None]:
        """Register a heartbeat; returns the function that beats it."""
        self._beats[name] = _Heartbeat(max_age, idle, self._now())

        def beat() -> None:
            self._beats[name].last = self._now()

        return beat

    def beat(self, name: str) -> None:
        hb = self._beats.get(name)
        if hb is not None:
            hb.last = self._now()

    def watch_task(self, task: asyncio.Task[object]) -> None:
        self._tasks[task.get_name()] = task

    # -- the check -------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """What is not alive right now (empty: everything is)."""
        now = self._now()
        out = [f"task {name} has ended" for name, t in self._tasks.items() if t.done()]
        for name, hb in self._beats.items():
            age = now - hb.last
            if age > hb.max_age and not (hb.idle is not None and hb.idle()):
                out.append(f"{name} made no progress for {age:.1f} s")
        return out

    def check(self) -> list[str]:
        """One round: feed the watchdog when alive; return the problems otherwise."""
        problems = self.problems()
        if not problems:
            self._failing_since = None
            self._notify("WATCHDOG=1")
            self.fed += 1
            return []
        now = self._now()
        if self._failing_since is None:
            self._failing_since = now
            log.critical("not alive, the watchdog is no longer fed: %s", "; ".join(problems))
        return problems

    async def run(self) -> None:
        """Check every ``interval`` seconds; raise :class:`LivenessError` after ``fail_after``
        seconds of continuous failure."""
        while True:
            problems = self.check()
            if (
                problems
                and self._failing_since is not None
                and self._now() - self._failing_since >= self.fail_after
            ):
                raise LivenessError("; ".join(problems))
            await asyncio.sleep(self.interval)

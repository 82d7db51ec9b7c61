"""One supervisor per device: connect, watch, back off, reconnect — the same for every driver.

It runs the driver's :meth:`~kapmonitor.driver_api.Driver.session` again and again. Between
sessions it waits a capped exponential backoff with jitter (reset once a session has been up
long enough to count as stable). A watchdog marks the device ``stale`` when no reading arrived
for ``stale_after`` seconds and, after twice that, cancels the session and reconnects: BLE
disconnect callbacks on BlueZ can be late or missing, and a half-dead serial port just goes
quiet. Measurements are stamped into :class:`~kapmonitor.model.Reading` with the device's
*current* bed (``device/assign`` can move a device) and handed to the reading sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kapmonitor.clock import Clock
from kapmonitor.driver_api import DeviceState, Driver, Routed, Status
from kapmonitor.model import NIBP_METRICS, Measurement, Reading

log = logging.getLogger("kapmonitor.supervisor")


@dataclass
class Backoff:
    """Capped exponential backoff with equal jitter: half fixed, half random."""

    initial: float = 1.0
    cap: float = 60.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class DeviceStatus:
    """What ``device/<id>/status`` shows."""

    device: str
    bed: str
    state: DeviceState = "disconnected"
    detail: str = ""
    since: float = 0.0
    last_seen: float | None = None
    battery: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "bed": self.bed,
            "state": self.state,
            "detail": self.detail,
            "since": self.since,
            "last_seen": self.last_seen,
            "battery": self.battery,
            **self.info,
        }


ReadingSink = Callable[[Reading], None]
StatusSink = Callable[[DeviceStatus], None]


class Supervisor:
    def __init__(
        self,
        driver: Driver,
        clock: Clock,
        bed_of: Callable[[str], str],
        on_reading: ReadingSink,
        on_status: StatusSink,
        *,
        backoff: Backoff | None = None,
        stable_after: float = 30.0,
    ) -> None:
        self.driver = driver
        self.device_id = driver.config.id
        self.clock = clock
        self._bed_of = bed_of
        self._on_reading = on_reading
        self._on_status = on_status
        self.backoff = backoff or Backoff()
        self.stable_after = stable_after
        self.stale_after = driver.config.stale_after
        self.status = DeviceStatus(
            self.device_id, bed_of(self.device_id), since=clock.now(), info=driver.info()
        )
        self._last_data = clock.monotonic()
        self._stale_cancel = False
        # (shared ts, monotonic start, parts seen, group id) of the NIBP measurement under way
        self._nibp_group: tuple[float, float, set[str], str | None] | None = None
        self.sessions = 0

    # -- status --------------------------------------------------------------------------
    def _set_state(self, state: DeviceState | None, detail: str | None = None) -> None:
        st = self.status
        changed = False
        if state is not None and state != st.state:
            st.state = state
            st.since = self.clock.now()
            changed = True
        if detail is not None and detail != st.detail:
            st.detail = detail
            changed = True
        if changed:
            self._publish_status()

    def _publish_status(self) -> None:
        self.status.bed = self._bed_of(self.device_id)
        self._on_status(self.status)

    def rebed(self) -> None:
        """The device was moved to another bed: publish the new status."""
        self._publish_status()

    # -- running -------------------------------------------------------------------------
    async def run(self) -> None:
        """Run forever (until cancelled)."""
        while True:
            started = self.clock.monotonic()
            self._set_state("connecting", "")
            failed = False
            try:
                await self._one_session()
            except asyncio.CancelledError:
                raise
            except _StaleSession:
                self._set_state("disconnected", "no data; reconnecting")
                failed = True
            except Exception as exc:  # noqa: BLE001 - logged; a driver failure must not stop the daemon
                log.warning("device %s: session failed: %s", self.device_id, _describe(exc))
                self._set_state("error", _describe(exc))
                failed = True
            else:
                self._set_state("disconnected", "session ended")
            if self.clock.monotonic() - started >= self.stable_after:
                self.backoff.reset()
            delay = self.backoff.next_delay() if failed else min(1.0, self.backoff.initial)
            await self.clock.sleep(delay)

    async def _one_session(self) -> None:
        self.sessions += 1
        self._last_data = self.clock.monotonic()
        self._stale_cancel = False
        consume = asyncio.ensure_future(self._consume())
        watchdog = asyncio.ensure_future(self._watch(consume))
        try:
            await asyncio.wait([consume])
        finally:
            watchdog.cancel()
            if not consume.done():  # we are being cancelled ourselves: let the driver clean up
                consume.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await consume
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        if consume.cancelled():
            if self._stale_cancel:
                raise _StaleSession()
            raise asyncio.CancelledError()
        consume.result()  # re-raises the driver's failure

    async def _consume(self) -> None:
        agen = self.driver.session()
        try:
            async for ev in agen:
                if isinstance(ev, Measurement):
                    self._emit(ev, self._bed_of(self.device_id), None)
                elif isinstance(ev, Routed):
                    self._emit(ev.measurement, ev.bed, ev.ts, ev.device)
                elif isinstance(ev, Status):
                    if ev.info:
                        self.status.info.update(ev.info)
                    if ev.state == "connected":
                        self._last_data = self.clock.monotonic()
                    self._set_state(ev.state, ev.detail)
                    if ev.info and ev.state is None:
                        self._publish_status()
        finally:
            aclose = getattr(agen, "aclose", None)  # drivers' sessions are async generators
            if aclose is not None:
                await aclose()

    async def _watch(self, consume: asyncio.Future[None]) -> None:
        if not self.stale_after:
            return
        check = max(0.05, min(1.0, self.stale_after / 4))
        while not consume.done():
            await self.clock.sleep(check)
            quiet = self.clock.monotonic() - self._last_data
            if self.status.state == "connected" and quiet >= self.stale_after:
                self._set_state("stale", f"no reading for {quiet:.0f} s")
            if self.status.state == "stale" and quiet >= 2 * self.stale_after:
                self._stale_cancel = True
                consume.cancel()
                return

    def _emit(
        self, m: Measurement, bed: str, ts: float | None, device: str | None = None
    ) -> None:
        now = self.clock.now()
        if ts is None and m.device_time is not None:
            ts = m.device_time.timestamp()
        if ts is None and m.metric in NIBP_METRICS:
            ts = self._nibp_stamp(m, now)
        reading = Reading.from_measurement(
            m, bed=bed, device=device or self.device_id, received=now, ts=ts
        )
        self._last_data = self.clock.monotonic()
        self.status.last_seen = now
        if self.status.state == "stale":
            self._set_state("connected", "")
        if (
            reading.metric == "battery"
            and reading.value is not None
            and self.status.battery != reading.value
        ):
            self.status.battery = reading.value
            self._publish_status()
        self._on_reading(reading)

    def _nibp_stamp(self, m: Measurement, now: float) -> float:
        """One NIBP measurement arrives as sys/dia/mean parts; parts a device sends without a
        measurement time get one shared timestamp so consumers can tell they belong together.
        The parts' group id (set by the codec that split the measurement) says which belong
        together; only for parts without one (a driver yielding them one by one) a repeated part
        or a pause of 2 s starts a new measurement."""
        mono = self.clock.monotonic()
        g = self._nibp_group
        if m.group is not None:
            if g is None or g[3] != m.group:
                g = self._nibp_group = (now, mono, set(), m.group)
        elif g is None or g[3] is not None or m.metric in g[2] or mono - g[1] > 2.0:
            g = self._nibp_group = (now, mono, set(), None)
        g[2].add(m.metric)
        return g[0]

    async def command(self, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        return await self.driver.command(name, args)


class _StaleSession(Exception):
    pass


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text

"""The alarm service: the alarm engine's I/O. It feeds the engine, ticks it, publishes and
persists what it says, and answers the engine's commands.

What lives here (everything around the pure engine of :mod:`kapmonitor.alerts` that does I/O):

- device status changes go into the engine as they arrive (the
  :class:`~kapmonitor.ports.StatusFeed` port); readings (the
  :class:`~kapmonitor.ports.ReadingFeed` port) are held until the tick they belong to: before
  the tick at time *k* the engine gets exactly the readings received at or before *k* (in
  arrival order; the parts of one NIBP measurement together), and a command at *now* acts on
  an engine that has run every tick up to *now*. That is how ``kapmonitor replay`` feeds a
  trace, so replaying a recorded session (``kapmonitor report``'s CSV) gives the alerts the
  daemon raised;
- a task ticks it once per second of the daemon's clock, on the engine's grid (k·dt);
- an NIBP measurement is evaluated as it arrives (:meth:`AlarmEngine.evaluate_nibp` at its
  arrival time, by a second task woken by the reading), not at the next tick, and a command
  acts when it arrives: an at-once alarm is on its way to MQTT within the same few
  milliseconds as the reading itself (``bench/latency.py``);
- every event goes through the durable outbox to ``bed/<id>/alert`` (QoS 1, not retained) and
  into the append-only alarm log ``alarm-log.jsonl`` in the state directory;
- the active set and the session go to the retained ``bed/<id>/alarms`` and ``bed/<id>/session``;
- sessions and latched alerts are committed together with every event that changes them
  (one outbox transaction, :meth:`~kapmonitor.ports.DurablePublish.commit_alerts`), so an event
  is on MQTT only once the state behind it is on disk, and a restart restores exactly what was
  committed. The state is stored per bed (key ``alarm-state/<bed>``): a transaction writes the
  beds it changes, not the whole clinic. What changes without an event (a session's pre-dose
  samples) is committed every 10 s. The one document of earlier versions (``alarm-state``,
  older still ``alarm-state.json``) is read once, for the upgrade;
- the engine's commands (names and models from :data:`~kapmonitor.alerts.commands.ENGINE_COMMANDS`)
  and ``bp/measure`` arrive on ``bridge/request/…`` already validated.

What does not: alarm semantics (rules, lifecycle, sessions: :mod:`kapmonitor.alerts`), the
topic spelling and encoding (:mod:`kapmonitor.topics`), and the daemon itself: the service
gets :class:`~kapmonitor.ports.ServicePorts` and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict, Field

from kapmonitor.alerts import AlarmEngine, Event, load_rules
from kapmonitor.alerts.commands import ENGINE_COMMANDS, EngineArgs
from kapmonitor.errors import CommandError
from kapmonitor.model import NIBP_METRICS, Reading
from kapmonitor.ports import ServicePorts
from kapmonitor.supervisor import DeviceStatus
from kapmonitor.topics import encode

log = logging.getLogger("kapmonitor.alarms")


STATE_KEY = "alarm-state"  # the engine's state in the outbox's state table
SNAPSHOT_EVERY = 10.0  # refresh retained alarms/session (timers in them move)


class MeasureArgs(BaseModel):
    """Start a blood-pressure measurement on a bed's remote-start cuff."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    bed: str = Field(description="Bed to measure.")
    device: str | None = Field(default=None, description="A specific cuff; default: any.")
    by: str | None = Field(default=None, description="Who asked (logged).")


class AlarmService:
    """See the module docstring. Construct, then :meth:`run` as a task (:func:`attach`)."""

    def __init__(self, ports: ServicePorts, rules_path: Path | None) -> None:
        self.ports = ports
        self.clock = ports.clock
        self.topics = ports.topics
        self.devices = ports.devices
        self.engine = AlarmEngine(
            load_rules(rules_path), beds=list(ports.devices.beds), id_prefix=f"{ports.boot_id}-"
        )
        self.state_path = ports.state_dir / "alarm-state.json"
        self.log_path = ports.state_dir / "alarm-log.jsonl"
        try:
            self._log_file: TextIO = self.log_path.open("a", encoding="utf-8")
        except OSError as exc:  # a read-only state directory: the outbox reports it
            log.critical("cannot open the alarm log %s (%s); events go to MQTT only",
                         self.log_path, exc)
            self._log_file = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
        # Called on every engine tick (the daemon's liveness heartbeat).
        self.tick_beat: Callable[[], None] = lambda: None
        self._held: deque[Reading] = deque()  # received, not yet given to the engine
        self._nibp_latest: float | None = None  # newest NIBP part not yet evaluated
        self._nibp_wake = asyncio.Event()
        self._dirty: set[str] = set()  # beds whose state changed without an event yet
        self.log_max_bytes = 0  # rotate alarm-log.jsonl above this size (0: never)
        self.log_keep = 5  # rotated logs kept (alarm-log.jsonl.1 … .N)
        self.event_listeners: list[Callable[[dict[str, Any]], None]] = []
        self._restore()
        ports.readings.subscribe(self._on_reading)
        ports.statuses.subscribe(self._on_status)
        self._register_commands()

    # -- persistence -----------------------------------------------------------------------
    def _state_key(self, bed: str) -> str:
        return f"{STATE_KEY}/{bed}"

    def _restore(self) -> None:
        """Each bed's state from its own key; else the one document of earlier versions (in
        the outbox, or older still in ``alarm-state.json``), rewritten per bed at once."""
        found = False
        for bed in self.devices.beds:
            stored = self.ports.alerts.load_state(self._state_key(bed))
            if not stored:
                continue
            found = True
            try:
                self.engine.restore_state(json.loads(stored))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("the stored alarm state of %s is not restorable (%s); that bed "
                          "starts without it", bed, exc)
        if not found and self._restore_legacy():
            self.save(legacy=True)
        active = [b for b in self.devices.beds if self.engine.session_state(b).get("active")]
        log.info("restored alarm state: sessions on %s", ", ".join(active) or "no bed")

    def _restore_legacy(self) -> bool:
        stored = self.ports.alerts.load_state(STATE_KEY)
        if stored:
            try:
                self.engine.restore_state(json.loads(stored))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("the stored alarm state is not restorable (%s); starting without it",
                          exc)
                return False
            return True
        try:  # the state file of earlier versions
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as exc:
            self._quarantine(f"unreadable: {exc}")
            return False
        try:
            self.engine.restore_state(data)
        except (ValueError, KeyError, TypeError) as exc:
            self._quarantine(f"not restorable: {exc}")
            return False
        return True

    def _quarantine(self, why: str) -> None:
        bad = self.state_path.with_suffix(".bad")
        self.state_path.replace(bad)
        log.error("alarm state %s is %s; moved to %s and starting without it",
                  self.state_path, why, bad)

    def _states(self, beds: Iterable[str]) -> dict[str, bytes]:
        return {self._state_key(bed): encode(self.engine.export_state((bed,)))
                for bed in sorted(set(beds))}

    def save(self, *, legacy: bool = False) -> None:
        """Commit every bed's state now (no events); ``legacy``: and empty the one document of
        earlier versions, which is then read no more."""
        state = self._states(self.devices.beds)
        if legacy:
            state[STATE_KEY] = b""
        self.ports.alerts.commit_alerts([], state)
        self._dirty.clear()

    # -- events ----------------------------------------------------------------------------
    def _emit(self, events: Iterable[Event], *, save: Iterable[str] = ()) -> None:
        """Commit the events together with the state they leave behind (the state of their
        beds, of ``save`` and of the beds changed since the last commit), then log them, pass
        them to the event listeners and refresh the retained snapshots. Nothing is published
        before the commit."""
        bodies = [(e.bed, e.to_json()) for e in events]
        beds = {bed for bed, _ in bodies}.union(save)
        if not beds:
            return
        beds |= self._dirty
        self.ports.alerts.commit_alerts(bodies, self._states(beds))
        self._dirty.clear()
        if not bodies:
            return
        if not self._log_file.closed:  # closed only at shutdown
            try:
                for _, body in bodies:
                    self._log_file.write(encode(body).decode() + "\n")
                self._log_file.flush()
                if self.log_max_bytes and self._log_file.tell() > self.log_max_bytes:
                    self._rotate_log()
            except OSError as exc:  # a full disk: the events are on MQTT, the log misses them
                log.error("alarm log %s: %s", self.log_path, exc)
        for _, body in bodies:
            for listener in self.event_listeners:
                listener(body)
        self.publish_snapshots({bed for bed, _ in bodies})

    def _rotate_log(self) -> None:
        """alarm-log.jsonl → .1 → .2 … (the oldest beyond ``log_keep`` is removed)."""
        self._log_file.close()
        name = self.log_path.name
        for i in range(self.log_keep - 1, 0, -1):
            older = self.log_path.with_name(f"{name}.{i}")
            if older.exists():
                older.replace(self.log_path.with_name(f"{name}.{i + 1}"))
        self.log_path.replace(self.log_path.with_name(f"{name}.1"))
        self._log_file = self.log_path.open("a", encoding="utf-8")
        log.info("alarm log rotated (over %d bytes; %d kept)", self.log_max_bytes, self.log_keep)

    def _feed(self, upto: float) -> None:
        """Give the engine the held readings received at or before ``upto``, and the rest of
        an NIBP measurement whose first part is among them (its parts arrive one after the
        other; they are one measurement, which a tick must not split)."""
        held, on_reading = self._held, self.engine.on_reading
        last: Reading | None = None
        while held and held[0].received <= upto:
            last = held.popleft()
            on_reading(last)
        if last is not None and last.metric in NIBP_METRICS:
            key = (last.device, last.group or last.ts)  # the engine's NIBP grouping
            while held and held[0].metric in NIBP_METRICS and (
                    held[0].device, held[0].group or held[0].ts) == key:
                on_reading(held.popleft())

    def _on_reading(self, r: Reading) -> None:
        self._held.append(r)
        if r.metric in NIBP_METRICS:
            self._dirty.add(r.bed)  # its evaluation records the BP in the bed's state
            latest = self._nibp_latest
            self._nibp_latest = r.received if latest is None else max(latest, r.received)
            # the other parts of the measurement are delivered in the same turn of the event
            # loop; the evaluation task runs after them
            self._nibp_wake.set()

    def _nibp_due(self, now: float) -> list[Event]:
        """Evaluate the NIBP measurements that arrived up to ``now``, each at its arrival time,
        after the ticks before it (a late ticker has not run them yet)."""
        latest = self._nibp_latest
        if latest is None or latest > now:
            return []
        self._nibp_latest = None
        events = self.tick(latest)
        self._feed(latest)
        return events + self.engine.evaluate_nibp(latest)

    def tick(self, now: float) -> list[Event]:
        """Run the ticks due up to ``now`` one at a time, each after the readings it covers
        (an NIBP measurement that arrived before a tick is evaluated at its arrival first)."""
        engine = self.engine
        events = self._nibp_due(now)
        if engine.tick_k is not None:
            dt = engine.dt
            limit = engine.catch_up_limit_s
            if limit is not None and now - engine.tick_k * dt > limit:
                self._feed(now)  # a stall: the engine skips ahead; keep the data anyway
                return events + engine.tick(now)
            while engine.tick_k * dt <= now:
                k_t = engine.tick_k * dt
                self._feed(k_t)
                events += engine.tick(k_t)
            return events
        self._feed(math.ceil(now / engine.dt - 1e-9) * engine.dt)
        return events + engine.tick(now)

    def publish_snapshots(self, beds: Iterable[str] | None = None) -> None:
        retained = self.ports.retained
        for bed in self.devices.beds if beds is None else beds:
            retained.set_retained(self.topics.alarms(bed), self.engine.active_alarms(bed))
            retained.set_retained(self.topics.session(bed), self.engine.session_state(bed))

    def _on_status(self, st: DeviceStatus) -> None:
        state = st.state
        if self.devices.is_episodic(st.device) and state != "error":
            # An episodic device (a cuff that connects only to deliver a measurement) is
            # disconnected most of the time by design; a missing measurement is the BP
            # checklist's business (bp_due / bp_overdue), not a "device disconnected" alarm.
            state = "connected"
        self.engine.on_device_status(st.device, st.bed, state, self.clock.now())

    async def run(self) -> None:
        """Tick the engine on the daemon's clock; refresh retained snapshots; save state."""
        self.publish_snapshots()
        last_snapshot = self.clock.monotonic()
        dt = self.engine.dt
        while True:
            # Wake at the engine's next grid instant (k·dt of the daemon's clock), not 1 s
            # after the previous wake-up: no drift, and a reading is evaluated at most one
            # tick after it arrived.
            now = self.clock.now()
            await self.clock.sleep((math.floor(now / dt + 1e-9) + 1) * dt - now)
            now = self.clock.now()
            last = self.engine.last_tick
            if last is not None and now < last - 2 * dt:
                # The wall clock stepped back (NTP): the engine's grid would wait for the old
                # future and evaluate nothing meanwhile. Re-anchor it at the present.
                log.warning("the clock stepped back %.1f s; the alarm engine goes on from now",
                            last - now)
                self.engine.tick_k = math.floor(now / dt + 1e-9)
            self._emit(self.tick(now))
            self.tick_beat()
            mono = self.clock.monotonic()
            if mono - last_snapshot >= SNAPSHOT_EVERY:
                self.publish_snapshots()
                # what changes without events (a session's pre-dose samples) is kept too
                self._emit([], save=[b for b, sess in self.engine.sessions.items()
                                     if sess.phase != "ended"])
                last_snapshot = mono

    async def run_nibp(self) -> None:
        """Evaluate each NIBP measurement as it arrives (woken by :meth:`_on_reading`)."""
        while True:
            await self._nibp_wake.wait()
            self._nibp_wake.clear()
            self._emit(self._nibp_due(self.clock.now()))

    def close(self) -> None:
        self.save()
        self._log_file.close()

    # -- commands --------------------------------------------------------------------------
    def _register_commands(self) -> None:
        for name, model in ENGINE_COMMANDS.items():
            self.ports.commands.add(name, model, self._engine_command)
        self.ports.commands.add("bp/measure", MeasureArgs, self._measure)

    async def _engine_command(self, args: EngineArgs) -> dict[str, Any]:
        """Run a validated engine command; a refusal raises :class:`CommandError`."""
        # The command acts at `now` on an engine that has seen every tick and reading up to
        # `now` (as in replay), even when the ticker is late.
        now = self.clock.now()
        self._emit(self.tick(now))
        self._feed(now)
        result = self.engine.execute(args, now)
        # Commands change what must survive a restart: committed even without events.
        self._emit(result.events, save=[args.bed])
        self.publish_snapshots([args.bed])
        return {k: v for k, v in result.response.items() if k != "status"}

    async def _measure(self, args: MeasureArgs) -> dict[str, Any]:
        if args.bed not in self.devices.beds:
            raise CommandError(f"unknown bed {args.bed!r}")
        candidates = [dev for dev in self.devices.devices_on(args.bed)
                      if args.device is None or dev == args.device]
        refusals: list[str] = []
        for dev in candidates:
            try:
                result = await self.devices.command(dev, "bp/measure", {})
            except CommandError as exc:
                refusals.append(f"{dev}: {exc}")
                continue
            log.warning("remote BP measurement started on %s (bed %s)%s", dev, args.bed,
                        f" by {args.by}" if args.by else "")
            return {"device": dev, **result}
        detail = "; ".join(refusals) if refusals else "no device"
        raise CommandError(
            f"no cuff on bed {args.bed} can be started remotely ({detail}); measure by hand"
        )


def attach(ports: ServicePorts, rules_path: Path | None) -> AlarmService:
    """Create the service, subscribe it to readings and status, and start its ticker."""
    service = AlarmService(ports, rules_path)
    ports.spawn(service.run(), "alarms")
    ports.spawn(service.run_nibp(), "alarms-nibp")
    return service

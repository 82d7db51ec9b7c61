"""The daemon side of the alarm engine: feeds it, ticks it, publishes and persists what it says.

The engine (:mod:`kapmonitor.alerts`) is pure; everything with I/O is here:

- readings and device status changes go into the engine as they arrive;
- a task ticks it once per second of the daemon's clock;
- every event goes through the durable outbox to ``bed/<id>/alert`` (QoS 1, not retained) and
  into the append-only alarm log ``alarm-log.jsonl`` in the state directory;
- the active set and the session go to the retained ``bed/<id>/alarms`` and ``bed/<id>/session``;
- sessions and latched alerts are saved to ``alarm-state.json`` and restored after a restart;
- the session, alert and ``bp/measure`` commands arrive on ``bridge/request/…``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from kapmonitor.alerts import AlarmEngine, Event, load_rules
from kapmonitor.alerts.engine import (
    AlertArgs,
    DoseArgs,
    EndArgs,
    PauseArgs,
    StartArgs,
    SymptomArgs,
    SymptomClearArgs,
)
from kapmonitor.drivers.base import CommandError as DriverCommandError
from kapmonitor.mqtt import CommandError
from kapmonitor.supervisor import DeviceStatus

if TYPE_CHECKING:
    from kapmonitor.daemon import Daemon

log = logging.getLogger("kapmonitor.alarms")

SAVE_EVERY = 5.0  # seconds of daemon time between state saves while events flow
SNAPSHOT_EVERY = 10.0  # refresh retained alarms/session (timers in them move)


class MeasureArgs(BaseModel):
    """Start a blood-pressure measurement on a bed's remote-start cuff."""

    model_config = ConfigDict(extra="forbid")

    bed: str = Field(description="Bed to measure.")
    device: str | None = Field(default=None, description="A specific cuff; default: any.")
    by: str | None = Field(default=None, description="Who asked (logged).")


class AlarmService:
    def __init__(self, daemon: Daemon, rules_path: Path | None) -> None:
        self.daemon = daemon
        self.clock = daemon.clock
        self.engine = AlarmEngine(
            load_rules(rules_path), beds=list(daemon.beds), id_prefix=f"{daemon.boot_id}-"
        )
        self.state_path = daemon.state_dir / "alarm-state.json"
        self.log_path = daemon.state_dir / "alarm-log.jsonl"
        self._log_file = self.log_path.open("a", encoding="utf-8")
        self._dirty = False
        self._last_save = 0.0
        self._restore()
        daemon.reading_listeners.append(self.engine.on_reading)
        daemon.status_listeners.append(self._on_status)
        self._register_commands()

    # -- persistence -----------------------------------------------------------------------
    def _restore(self) -> None:
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self._quarantine(f"unreadable: {exc}")
            return
        try:
            self.engine.restore_state(data)
        except (ValueError, KeyError, TypeError) as exc:
            self._quarantine(f"not restorable: {exc}")
            return
        active = [b for b in self.daemon.beds if self.engine.session_state(b).get("active")]
        log.info("restored alarm state: sessions on %s", ", ".join(active) or "no bed")

    def _quarantine(self, why: str) -> None:
        bad = self.state_path.with_suffix(".bad")
        self.state_path.replace(bad)
        log.error("alarm state %s is %s; moved to %s and starting without it",
                  self.state_path, why, bad)

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(self.engine.export_state(), fh)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.state_path)
        self._dirty = False
        self._last_save = self.clock.monotonic()

    # -- events ----------------------------------------------------------------------------
    def _emit(self, events: Iterable[Event]) -> None:
        beds: set[str] = set()
        for e in events:
            body = e.to_json()
            self.daemon.publish_alert(e.bed, body)
            if not self._log_file.closed:  # closed only at shutdown
                self._log_file.write(json.dumps(body, separators=(",", ":")) + "\n")
            beds.add(e.bed)
        if beds and not self._log_file.closed:
            self._log_file.flush()
            self._dirty = True
            self.publish_snapshots(beds)

    def publish_snapshots(self, beds: Iterable[str] | None = None) -> None:
        for bed in self.daemon.beds if beds is None else beds:
            self.daemon.set_retained(f"bed/{bed}/alarms", self.engine.active_alarms(bed))
            self.daemon.set_retained(f"bed/{bed}/session", self.engine.session_state(bed))

    def _on_status(self, st: DeviceStatus) -> None:
        state = st.state
        sup = self.daemon.supervisors.get(st.device)
        if sup is not None and not sup.stale_after and state != "error":
            # An episodic device (a cuff that connects only to deliver a measurement) is
            # disconnected most of the time by design; a missing measurement is the BP
            # checklist's business (bp_due / bp_overdue), not a "device disconnected" alarm.
            state = "connected"
        self.engine.on_device_status(st.device, st.bed, state, self.clock.now())

    async def run(self) -> None:
        """Tick the engine on the daemon's clock; refresh retained snapshots; save state."""
        self.publish_snapshots()
        last_snapshot = self.clock.monotonic()
        while True:
            await self.clock.sleep(1.0)
            self._emit(self.engine.tick(self.clock.now()))
            mono = self.clock.monotonic()
            if mono - last_snapshot >= SNAPSHOT_EVERY:
                self.publish_snapshots()
                last_snapshot = mono
            if self._dirty and mono - self._last_save >= SAVE_EVERY:
                self.save()

    def close(self) -> None:
        self.save()
        self._log_file.close()

    # -- commands --------------------------------------------------------------------------
    def _register_commands(self) -> None:
        for name, model in (
            ("session/start", StartArgs),
            ("session/dose", DoseArgs),
            ("session/end", EndArgs),
            ("alert/ack", AlertArgs),
            ("alert/pause", PauseArgs),
            ("session/symptom", SymptomArgs),
            ("session/symptom_clear", SymptomClearArgs),
        ):
            self.daemon.add_command(name, model, self._engine_command(name))
        self.daemon.add_command("bp/measure", MeasureArgs, self._measure)

    def _engine_command(self, name: str) -> Callable[[BaseModel], Awaitable[dict[str, Any]]]:
        async def handle(args: BaseModel) -> dict[str, Any]:
            result = self.engine.command(
                name, args.model_dump(exclude_unset=True), self.clock.now()
            )
            if not result.ok:
                raise CommandError(str(result.response.get("error", "refused")))
            self._emit(result.events)
            self.publish_snapshots([str(getattr(args, "bed", ""))])
            self.save()  # commands change what must survive a restart
            return {k: v for k, v in result.response.items() if k != "status"}

        return handle

    async def _measure(self, args: MeasureArgs) -> dict[str, Any]:
        if args.bed not in self.daemon.beds:
            raise CommandError(f"unknown bed {args.bed!r}")
        candidates = [
            dev for dev, bed in self.daemon.bed_of.items()
            if bed == args.bed and dev in self.daemon.supervisors
            and (args.device is None or dev == args.device)
        ]
        refusals: list[str] = []
        for dev in candidates:
            try:
                result = await self.daemon.supervisors[dev].command("bp/measure", {})
            except DriverCommandError as exc:
                refusals.append(f"{dev}: {exc}")
                continue
            log.warning("remote BP measurement started on %s (bed %s)%s", dev, args.bed,
                        f" by {args.by}" if args.by else "")
            return {"device": dev, **result}
        detail = "; ".join(refusals) if refusals else "no device"
        raise CommandError(
            f"no cuff on bed {args.bed} can be started remotely ({detail}); measure by hand"
        )


def attach(daemon: Daemon, rules_path: Path | None) -> AlarmService:
    service = AlarmService(daemon, rules_path)
    daemon.spawn(service.run(), "alarms")
    return service

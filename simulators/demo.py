"""``kapmonitor demo``: a virtual clinic — simulated patients and devices, a broker, the daemon,
and a live terminal view fed from MQTT exactly as a dashboard would be.

What belongs here is the command itself (arguments, start-up order, the view); the clinic's
layout and its simulator processes are in :mod:`kapmonitor_simulators.demo_clinic`, the broker
in :mod:`kapmonitor_simulators.broker`. The command reaches ``kapmonitor`` through the
``kapmonitor.commands`` entry-point group. It needs the ``demo`` extra (rich for the view,
amqtt for the embedded broker): both are imported when this module loads, so without them the
entry point fails to load and ``kapmonitor demo`` says to install the extra.

Safety: the demo publishes only to its own private broker, unless ``--broker`` names one; its
temporary folder (state, outbox, logs) is removed at the end unless ``--keep``; log records are
printed through the live view's console, above the table; while the daemon cannot reach the
broker the view shows an alarm line, and a private broker that died makes the exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import amqtt  # noqa: F401  (the demo extra; the broker module imports it when it is used)
from kapmonitor_simulators.broker import BrokerInfo, demo_broker
from kapmonitor_simulators.demo_clinic import (
    DEMO_DIR,
    DOSE_AT,
    SimProcess,
    demo_layout,
    process_only_beds,
    sim_processes,
    simulators_for,
)
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kapmonitor.clock import ScaledClock
from kapmonitor.config import Config, load_config_or_report, parse_config

log = logging.getLogger("kapmonitor_simulators.demo")

# -- the view's model, fed from MQTT ------------------------------------------------------
@dataclass
class BedView:
    label: str
    vitals: dict[str, dict[str, Any]] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    phase: str | None = None
    news2: int | None = None
    readings: int = 0
    alerts: int = 0


@dataclass
class ClinicView:
    base: str
    beds: dict[str, BedView]
    bridge: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    readings: int = 0
    last_alerts: list[str] = field(default_factory=list)
    # Set by the demo while the daemon cannot reach the broker (shown as an alarm line).
    broker_alarm: str | None = None
    fast_forward: bool = False  # the demo is fast-forwarding through the sessions' start

    def feed(self, topic: str, payload: Any) -> None:
        parts = topic[len(self.base) + 1:].split("/")
        if parts[:2] == ["bridge", "state"] and isinstance(payload, dict):
            self.bridge = payload
        elif parts[:2] == ["bridge", "health"] and isinstance(payload, dict):
            self.health = payload
        elif len(parts) == 3 and parts[0] == "device" and parts[2] == "status":
            bed = self.beds.get(payload.get("bed", ""))
            for b in self.beds.values():
                b.devices.pop(parts[1], None)
            if bed is not None:
                bed.devices[parts[1]] = payload.get("state", "?")
        elif len(parts) == 3 and parts[0] == "bed" and parts[1] in self.beds:
            bed = self.beds[parts[1]]
            kind = parts[2]
            if kind == "vitals":
                bed.vitals = payload.get("metrics", {})
            elif kind == "reading":
                bed.readings += 1
                self.readings += 1
            elif kind == "alarms":
                bed.alarms = list(payload.get("active", payload.get("alarms", [])))
            elif kind == "session":
                bed.phase = payload.get("phase")
                news2 = payload.get("news2")
                bed.news2 = news2.get("total") if isinstance(news2, dict) else None
            elif kind == "alert":
                bed.alerts += 1
                self.last_alerts.append(
                    f"{parts[1]} {payload.get('event', '?')} {payload.get('priority', '')} "
                    f"{payload.get('text') or payload.get('rule', '')}"
                )
                del self.last_alerts[:-6]


def _fmt(vitals: dict[str, dict[str, Any]], name: str, digits: int = 0) -> str:
    v = vitals.get(name)
    if v is None:
        return "–"
    if v.get("value") is None:
        flags = v.get("quality") or []
        return "--" + (f" ({flags[0]})" if flags else "")
    text = f"{v['value']:.{digits}f}"
    if v.get("quality"):
        text += "*"
    return text


def render_rich(view: ClinicView, sim_minutes: float, info: BrokerInfo) -> Any:
    title = f"kapmonitor virtual clinic — simulated time {sim_minutes:5.1f} min"
    if view.fast_forward:
        title += " (fast-forwarding to the dose)"
    table = Table(title=title, expand=True)
    for col in ("Bed", "Phase", "SpO2 %", "PR /min", "HR /min", "NIBP mmHg", "RR /min",
                "NEWS2", "Alarms", "Devices"):
        table.add_column(col)
    for bed_id, b in view.beds.items():
        v = b.vitals
        nibp = "–"
        if "nibp_sys" in v:
            nibp = f"{_fmt(v, 'nibp_sys')}/{_fmt(v, 'nibp_dia')} ({_fmt(v, 'nibp_mean')})"
        alarms = ", ".join(
            f"{a.get('priority', '?')[0].upper()}:{a.get('rule', '?')}" for a in b.alarms
        ) or "–"
        devs = " ".join(f"{d.split('-')[-1]}:{s}" for d, s in sorted(b.devices.items()))
        style = "bold red" if any(a.get("priority") == "high" for a in b.alarms) else (
            "yellow" if b.alarms else "")
        table.add_row(f"{bed_id} {b.label}", b.phase or "–", _fmt(v, "spo2"),
                      _fmt(v, "pulse_rate"), _fmt(v, "heart_rate"), nibp, _fmt(v, "resp_rate"),
                      "–" if b.news2 is None else str(b.news2), alarms, devs, style=style)
    bridge = view.bridge
    footer = Text(
        f"broker {info.host}:{info.port} ({info.kind}) · bridge {bridge.get('state', '?')} · "
        f"outbox {view.health.get('outbox', '?')} · readings seen {view.readings}"
    )
    parts: list[Any] = [table, footer]
    if view.broker_alarm:
        parts.append(Text(f"ALARM: {view.broker_alarm}", style="bold white on red"))
    if view.last_alerts:
        parts.append(Text("recent alerts:\n  " + "\n  ".join(view.last_alerts)))
    return Group(*parts)


def render_plain(view: ClinicView, sim_minutes: float) -> str:
    lines = [f"[t={sim_minutes:5.1f} min] readings={view.readings} "
             f"outbox={view.health.get('outbox', '?')}"]
    if view.broker_alarm:
        lines.append(f"  ALARM: {view.broker_alarm}")
    for bed_id, b in view.beds.items():
        v = b.vitals
        alarms = ",".join(a.get("rule", "?") for a in b.alarms) or "-"
        lines.append(
            f"  {bed_id}: phase={b.phase or '-'} SpO2={_fmt(v, 'spo2')} "
            f"PR={_fmt(v, 'pulse_rate')} HR={_fmt(v, 'heart_rate')} "
            f"NIBP={_fmt(v, 'nibp_sys')}/{_fmt(v, 'nibp_dia')} "
            f"NEWS2={'-' if b.news2 is None else b.news2} alarms={alarms} "
            f"devices={','.join(f'{d}:{s}' for d, s in sorted(b.devices.items()))}"
        )
    return "\n".join(lines)


async def _watch(info: BrokerInfo, view: ClinicView, ready: asyncio.Event) -> None:
    """The dashboard side: subscribe like any consumer would."""
    proto = aiomqtt.ProtocolVersion.V5 if info.protocol == "5" else aiomqtt.ProtocolVersion.V311
    while True:
        try:
            async with aiomqtt.Client(info.host, info.port, protocol=proto) as client:
                await client.subscribe(f"{view.base}/#", qos=1)
                ready.set()
                async for m in client.messages:
                    if not isinstance(m.payload, bytes) or not m.payload:
                        continue
                    with contextlib.suppress(ValueError):
                        view.feed(str(m.topic), json.loads(m.payload))
        except aiomqtt.MqttError:
            await asyncio.sleep(0.5)


async def _virtual_clinician(daemon: Any, clock: ScaledClock, sim0: float,
                             begins: dict[str, float] | None = None) -> None:
    """What the provider does in the demo, through the same command path as a nurse tablet:
    start a session on every bed, take a baseline blood pressure every 2.5 minutes until the
    dose (asking again soon when a cuff is still connecting), give the dose when the
    virtual patients get it, and answer every "BP due" prompt with ``bp/measure`` (beds whose
    cuff cannot be started remotely keep the prompt: someone must press the button). A patient
    whose blood pressure alarms complains of a headache, which the clinician enters
    (``session/symptom``) and clears once the BP alarms are gone.

    ``begins`` gives a bed's session start in simulated seconds (default 0): the beds fed by
    simulator processes begin when the fast-forward is over, since those processes cannot
    fast-forward with the rest of the clinic."""

    clinician = _Clinician(daemon, begins or {})
    while True:
        now = clock.now() - sim0
        for n, bed in enumerate(clinician.beds, 1):
            t = now - clinician.begins.get(bed, 0.0)  # this bed's session time
            if t >= 0:
                await clinician.session_step(n, bed, t)
        await asyncio.sleep(0.1 if clock.speed > 20 else 0.5)
        if daemon.alarms is not None:
            for bed in clinician.beds:
                await clinician.respond(bed)


class _Clinician:
    """The virtual clinician's memory and actions (see :func:`_virtual_clinician`)."""

    def __init__(self, daemon: Any, begins: dict[str, float]) -> None:
        self.daemon = daemon
        self.beds = list(daemon.beds)
        self.begins = begins
        self.started: set[str] = set()
        self.last_bp: dict[str, float] = {}  # bed → when its last baseline BP was started
        self.tried: dict[str, float] = {}
        self.dosed: set[str] = set()
        self.answered: set[tuple[str, str, float]] = set()
        self.headache: set[str] = set()

    async def say(self, command: str, body: dict[str, Any]) -> bool:
        reply = await self.daemon.router.handle(command, json.dumps(body).encode(), False)
        if reply["status"] != "ok" and command != "bp/measure":
            log.warning("demo: %s %s: %s", command, body.get("bed"), reply.get("error"))
        return bool(reply["status"] == "ok")

    async def session_step(self, n: int, bed: str, t: float) -> None:
        """Start the session, take the baseline BPs and give the dose, as ``t`` comes."""
        if bed not in self.started:
            self.started.add(bed)
            profile = "esketamine" if n % 3 == 0 else "ketamine"
            await self.say("session/start", {
                "bed": bed, "profile": profile,
                "route": "in" if profile == "esketamine" else "im",
                "risk_flags": ["hypertension"] if n % 4 == 0 else []})
        # Baseline: a BP every 2.5 min before the dose (again 20 s later when the cuff is
        # not ready yet), so that two measurements ≥5 min apart arrive even when one fails.
        # As a clinician would, the dose waits (up to DOSE_WAIT) for a complete baseline: on a
        # busy machine a remote-started cuff can take longer than the schedule allows.
        ready = self._baseline_ready(bed)
        wait = 150.0 if bed in self.last_bp else 20.0
        if bed not in self.dosed and (t < DOSE_AT - 30 or not ready) and (
                t - self.tried.get(bed, -1e9) >= wait):
            self.tried[bed] = t
            if await self.say("bp/measure", {"bed": bed}):
                self.last_bp[bed] = t
        if bed not in self.dosed and t >= DOSE_AT and (ready or t >= DOSE_AT + DOSE_WAIT):
            self.dosed.add(bed)
            await self.say("session/dose", {"bed": bed, "dose_mg": 56.0 if n % 3 == 0 else 50.0})

    def _baseline_ready(self, bed: str) -> bool:
        """The pre-dose NIBPs the engine needs for a complete baseline have arrived."""
        engine = self.daemon.alarms.engine if self.daemon.alarms is not None else None
        if engine is None or bed not in engine.sessions:
            return True  # nothing to wait for
        cfg = engine.rules.baseline
        bps = engine.sessions[bed].nibp
        return bool(len(bps) >= cfg.nibp_min_count
                    and bps[-1].t - bps[0].t >= cfg.nibp_min_span_s)

    async def respond(self, bed: str) -> None:
        """Enter (and clear) the headache of a BP alarm; answer every announced BP due."""
        engine = self.daemon.alarms.engine
        bp_alarm = any(a["metric"] == "nibp_sys" and a["kind"] == "physiological"
                       and a["rule"] != "bp_with_symptom"
                       for a in engine.active_alarms(bed)["alarms"])
        if bp_alarm and bed not in self.headache:
            self.headache.add(bed)
            await self.say("session/symptom", {"bed": bed, "symptom": "severe_headache",
                                               "by": "demo clinician"})
        elif not bp_alarm and bed in self.headache:
            self.headache.discard(bed)
            await self.say("session/symptom_clear", {"bed": bed, "all": True,
                                                     "by": "demo clinician"})
        for item in engine.session_state(bed).get("bp_checklist", []):
            key = (bed, item["name"], item["due_at"])
            if item.get("announced") and not item.get("done_at") and key not in self.answered:
                self.answered.add(key)
                await self.say("bp/measure", {"bed": bed})


# Speed of the fast-forward through the start of the sessions (start, two baseline BPs, dose).
WARP = 100.0
# How long past DOSE_AT the virtual clinician waits for a complete baseline before dosing.
DOSE_WAIT = 600.0


def fast_forward_target(args: argparse.Namespace) -> float:
    """Simulated seconds the demo fast-forwards through before the view starts (0: none)."""
    if args.start_at is None or args.start_at < 0:
        return 0.0
    return DOSE_AT + 60.0 * args.start_at


def fast_forward_plan(args: argparse.Namespace, cfg: Config
                      ) -> tuple[dict[str, float], dict[str, float]]:
    """Per bed, when its session begins (simulated seconds) and how far its patient's
    timeline is ahead of a simulator process's clock (which runs at --speed from its start and
    cannot fast-forward). Beds with an in-process device fast-forward: their session begins at
    0 and their simulator processes are told the patient is already that far ahead. Beds fed
    only by simulator processes begin when the fast-forward is over, with baseline and dose
    still to come, their patients' timelines starting then."""
    target = fast_forward_target(args)
    if not target or args.speed >= WARP:
        return {}, {}
    behind = args.speed * target / WARP  # a process's own time when the fast-forward ends
    late = process_only_beds(cfg)
    begins = {bed: target for bed in late}
    ahead = {b.id: (-behind if b.id in late else target - behind) for b in cfg.beds}
    return begins, ahead


def _load_demo_config(
    args: argparse.Namespace, workdir: Path
) -> tuple[Config | None, list[SimProcess]]:
    if args.config:
        loaded = load_config_or_report(args.config)
        if loaded is None:
            return None, []
        cfg = loaded
    else:
        layout = demo_layout(args.beds, args.seed, str(workdir / "state"), workdir,
                             sim_only=args.sim_only)
        cfg = parse_config(layout, "<demo>")
    _, ahead = fast_forward_plan(args, cfg)
    return cfg, simulators_for(cfg, args.seed, args.speed, [workdir, DEMO_DIR], ahead)


async def run_demo(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="kapmonitor-demo-"))
    try:
        return await _run_in(args, workdir)
    finally:
        if args.keep:
            print(f"kapmonitor demo: kept {workdir} (state, outbox, alarm log, simulator logs)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def route_logs_to(console: Any) -> Callable[[], None]:
    """Send log records through the live view's console (printed above the table instead of
    over it) until the returned function restores the previous handlers."""
    from rich.logging import RichHandler

    root = logging.getLogger()
    before = root.handlers[:]
    handler = RichHandler(console=console, show_path=False, markup=False)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root.handlers[:] = [handler]

    def restore() -> None:
        root.handlers[:] = before

    return restore


def _broker_alarm(daemon: Any, info: BrokerInfo, view: ClinicView, lost_since: float | None,
                  now: float) -> float | None:
    """Raise or clear the view's broker alarm; returns since when the link is down."""
    connected = daemon.mqtt is not None and daemon.mqtt.connected.is_set()
    if connected:
        view.broker_alarm = None
        return None
    lost_since = now if lost_since is None else lost_since
    if now - lost_since >= 2.0:
        what = "has STOPPED" if not info.alive() else "is unreachable"
        depth = daemon.outbox.depth() if daemon.outbox is not None else "?"
        view.broker_alarm = (f"the broker {info.host}:{info.port} {what} for "
                             f"{now - lost_since:.0f} s; kapmonitor keeps {depth} messages in "
                             "its outbox")
    return lost_since



async def _view(args: argparse.Namespace, interactive: bool, daemon: Any,
                daemon_task: asyncio.Task[Any], clock: ScaledClock, sim0: float, target: float,
                warping: bool, info: BrokerInfo, view: ClinicView, stop: asyncio.Event) -> bool:
    """Show the clinic until --for, Ctrl-C or the daemon's end; ends the fast-forward when its
    target is reached; returns whether the private broker died meanwhile."""
    live_ctx: Any = contextlib.nullcontext()
    if interactive:
        live_ctx = Live(render_rich(view, 0.0, info), refresh_per_second=4, screen=False)
    broker_died = False
    lost_since: float | None = None
    started = time.monotonic()
    with live_ctx as live:
        restore_logs = route_logs_to(live.console) if live is not None else None
        try:
            next_plain = 0.0
            while not stop.is_set() and not daemon_task.done():
                elapsed = time.monotonic() - started
                if args.duration is not None and elapsed >= args.duration and not warping:
                    break
                if warping and clock.now() - sim0 >= target:
                    clock.set_speed(args.speed)
                    warping = False
                    started = time.monotonic()  # --for counts from here
                    if live is None:
                        print(f"now {args.start_at:g} min after the dose; speed "
                              f"x{args.speed:g}", flush=True)
                view.fast_forward = warping
                lost_since = _broker_alarm(daemon, info, view, lost_since, elapsed)
                broker_died = broker_died or not info.alive()
                sim_minutes = (clock.now() - sim0) / 60
                if live is not None:
                    live.update(render_rich(view, sim_minutes, info))
                elif elapsed >= next_plain:
                    print(render_plain(view, sim_minutes), flush=True)
                    next_plain = elapsed + 5.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.25)
        finally:
            if restore_logs is not None:
                restore_logs()
    return broker_died

async def _run_in(args: argparse.Namespace, workdir: Path) -> int:
    from kapmonitor.daemon import Daemon

    cfg, procs = _load_demo_config(args, workdir)
    if cfg is None:
        return 2
    interactive = sys.stdout.isatty() and not args.no_view
    async with demo_broker(args.broker) as info, \
            sim_processes(procs, workdir) as start_sims:
        if info.protocol != cfg.mqtt.protocol:
            cfg = cfg.model_copy(update={"mqtt": cfg.mqtt.model_copy(
                update={"protocol": info.protocol})})
        print(f"kapmonitor demo: {len(cfg.beds)} beds, speed x{args.speed:g}, broker "
              f"{info.host}:{info.port} ({info.kind})")
        print(f"watch the topics:  mosquitto_sub -h {info.host} -p {info.port} "
              f"-t '{cfg.base_topic}/#' -v")
        sys.stdout.flush()
        target = fast_forward_target(args)
        warping = bool(target) and args.speed < WARP
        clock = ScaledClock(WARP if warping else args.speed)
        sim0 = clock.now()
        if warping:
            print(f"fast-forwarding x{WARP:g} through the start of the sessions (baseline BPs, "
                  f"dose) to {args.start_at:g} min after the dose", flush=True)
        daemon = Daemon(cfg, clock=clock, broker=(info.host, info.port))
        view = ClinicView(cfg.base_topic,
                          {b.id: BedView(b.label or b.id) for b in cfg.beds})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        ready = asyncio.Event()
        watcher = asyncio.create_task(_watch(info, view, ready))
        await asyncio.wait_for(ready.wait(), 10)
        if procs:
            print(f"starting {len(procs)} device simulators (logs in {workdir})", flush=True)
        await start_sims(False)
        daemon_task = asyncio.create_task(daemon.run(stop))
        started_wait = asyncio.create_task(daemon.started.wait())
        await asyncio.wait({daemon_task, started_wait}, timeout=15,
                           return_when=asyncio.FIRST_COMPLETED)
        if not daemon.started.is_set():
            started_wait.cancel()
            if daemon_task.done() and daemon_task.exception() is not None:
                raise RuntimeError(f"the daemon did not start: {daemon_task.exception()}")
            raise RuntimeError("the daemon did not start within 15 s")
        await start_sims(True)
        begins, _ = fast_forward_plan(args, cfg)
        station = await _demo_station(args, info, workdir, cfg)
        clinician = asyncio.create_task(_virtual_clinician(daemon, clock, sim0, begins))
        broker_died = False
        try:
            broker_died = await _view(args, interactive, daemon, daemon_task, clock, sim0,
                                      target, warping, info, view, stop)
        finally:
            clinician.cancel()  # no commands into a daemon that is shutting down
            with contextlib.suppress(asyncio.CancelledError):
                await clinician
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(daemon_task, 10)
            await asyncio.sleep(0.3)  # let the view see the final messages
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await station.stop()
        print(render_plain(view, (clock.now() - sim0) / 60))
        published = daemon.mqtt.published if daemon.mqtt is not None else 0
        print(f"kapmonitor demo: done; {published} messages acknowledged by the broker, "
              f"{view.readings} readings seen by the watcher")
        if daemon.fatal is not None:
            print(f"kapmonitor demo: FAILED — the daemon stopped with an error: {daemon.fatal!r}",
                  file=sys.stderr)
            return 1
        if broker_died:
            print(f"kapmonitor demo: FAILED — the broker {info.host}:{info.port} stopped during "
                  "the demo", file=sys.stderr)
            return 1
        if published == 0 or view.readings == 0:
            print("kapmonitor demo: FAILED — nothing reached the broker", file=sys.stderr)
            return 1
        return 0


class _NoStation:
    async def stop(self) -> None:
        return None


async def _demo_station(args: argparse.Namespace, info: BrokerInfo, workdir: Path,
                        cfg: Config) -> Any:
    """The central station on the demo's broker (its URL and demo login are printed), or a
    stand-in with nothing to stop (``--no-station``, or the station extra not installed)."""
    if args.no_station:
        return _NoStation()
    try:
        from kapmonitor.station.demo import DEMO_PASSWORD, DEMO_USER, start_demo_station
    except ImportError as exc:  # the station extra is not installed
        print(f"central station not started ({exc}); pip install 'kapmonitor[station]'")
        return _NoStation()
    station = await start_demo_station(info.host, info.port, workdir, cfg.base_topic)
    print(f"central station:  {station.url}  (log in as {DEMO_USER} / {DEMO_PASSWORD})",
          flush=True)
    return station


def build_parser() -> argparse.ArgumentParser:
    from kapmonitor.cli import parse_hostport

    d = argparse.ArgumentParser(prog="kapmonitor demo",
                                description="Run a virtual clinic with a live view.")
    d.add_argument("--beds", type=int, default=4, help="number of beds (default 4)")
    d.add_argument("--speed", type=float, default=10.0, help="time acceleration (default 10)")
    d.add_argument("--for", dest="duration", type=float, default=None,
                   help="stop by itself after this many real seconds")
    d.add_argument("--seed", type=int, default=1, help="seed of the virtual patients")
    d.add_argument("--config", help="use this config instead of the generated clinic")
    d.add_argument("--broker", type=parse_hostport,
                   help="HOST:PORT of a broker to use; default: a private broker of the demo's "
                   "own on a free port (never one it happens to find)")
    d.add_argument("--start-at", type=float, default=3.0, metavar="MIN",
                   help="begin the view this many simulated minutes after the dose, "
                   "fast-forwarding through session start, baseline BPs and dose (default 3; "
                   "-1: watch everything from the start)")
    d.add_argument("--keep", action="store_true",
                   help="keep the demo's temporary folder (state, logs) and print its name")
    d.add_argument("--no-view", action="store_true", help="log instead of the live view")
    d.add_argument("--no-station", action="store_true",
                   help="do not start the central station (web page)")
    d.add_argument("--sim-only", action="store_true",
                   help="only in-process simulated devices (no serial/HL7 simulator processes)")
    return d


def main(argv: Sequence[str]) -> int:
    """``kapmonitor demo`` (registered in the ``kapmonitor.commands`` entry-point group)."""
    from kapmonitor.cli import setup_logging

    args = build_parser().parse_args(list(argv))
    setup_logging("warning")
    if args.beds < 1 or args.beds > 64:
        print("--beds must be between 1 and 64", file=sys.stderr)
        return 2
    if args.speed <= 0:
        print("--speed must be > 0", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run_demo(args))
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:  # a simulator or the broker did not come up
        print(f"kapmonitor demo: {exc}", file=sys.stderr)
        return 1

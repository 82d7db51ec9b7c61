"""``kapmonitor demo``: a virtual clinic — simulated patients and devices, a broker, the daemon,
and a live terminal view fed from MQTT exactly as a dashboard would be.

What belongs here is the command itself (arguments, start-up order, the view); the clinic's
layout and its simulator processes are in :mod:`kapmonitor_simulators.demo_clinic`, the broker
in :mod:`kapmonitor_simulators.broker`. The command reaches ``kapmonitor`` through the
``kapmonitor.commands`` entry-point group. It needs the ``demo`` extra (rich for the view,
amqtt for the embedded broker): both are imported when this module loads, so without them the
entry point fails to load and ``kapmonitor demo`` says to install the extra.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
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
    sim_processes,
    simulators_for,
)
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kapmonitor.clock import ScaledClock
from kapmonitor.config import Config, ConfigError, load_config, parse_config

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
    readings: int = 0
    last_alerts: list[str] = field(default_factory=list)

    def feed(self, topic: str, payload: Any) -> None:
        parts = topic[len(self.base) + 1:].split("/")
        if parts[:2] == ["bridge", "state"] and isinstance(payload, dict):
            self.bridge = payload
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
    table = Table(title=f"kapmonitor virtual clinic — simulated time {sim_minutes:5.1f} min",
                  expand=True)
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
        f"outbox {bridge.get('outbox', '?')} · readings seen {view.readings}"
    )
    parts: list[Any] = [table, footer]
    if view.last_alerts:
        parts.append(Text("recent alerts:\n  " + "\n  ".join(view.last_alerts)))
    return Group(*parts)


def render_plain(view: ClinicView, sim_minutes: float) -> str:
    lines = [f"[t={sim_minutes:5.1f} min] readings={view.readings} "
             f"outbox={view.bridge.get('outbox', '?')}"]
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


async def _virtual_clinician(daemon: Any, clock: ScaledClock, sim0: float) -> None:  # noqa: C901
    """What the provider does in the demo, through the same command path as a nurse tablet:
    start a session on every bed, take two baseline blood pressures 5 minutes apart, give the
    dose when the virtual patients get it, and answer every "BP due" prompt with ``bp/measure``
    (beds whose cuff cannot be started remotely keep the prompt: someone must press the
    button). A patient whose blood pressure alarms complains of a headache, which the clinician
    enters (``session/symptom``) and clears once the BP alarms are gone."""

    async def say(command: str, body: dict[str, Any]) -> bool:
        reply = await daemon.router.handle(command, json.dumps(body).encode(), False)
        if reply["status"] != "ok" and command != "bp/measure":
            log.warning("demo: %s %s: %s", command, body.get("bed"), reply.get("error"))
        return bool(reply["status"] == "ok")

    def sim_t() -> float:
        return clock.now() - sim0

    beds = list(daemon.beds)
    for n, bed in enumerate(beds, 1):
        profile = "esketamine" if n % 3 == 0 else "ketamine"
        flags = ["hypertension"] if n % 4 == 0 else []
        await say("session/start", {"bed": bed, "profile": profile,
                                    "route": "in" if profile == "esketamine" else "im",
                                    "risk_flags": flags})
        await say("bp/measure", {"bed": bed})
    answered: set[tuple[str, str, float]] = set()
    headache: set[str] = set()
    second_baseline = dosed = False
    while True:
        await asyncio.sleep(0.5)
        if not second_baseline and sim_t() >= 330:
            second_baseline = True
            for bed in beds:
                await say("bp/measure", {"bed": bed})
        if not dosed and sim_t() >= DOSE_AT:
            dosed = True
            for n, bed in enumerate(beds, 1):
                await say("session/dose", {"bed": bed, "dose_mg": 56.0 if n % 3 == 0 else 50.0})
        if daemon.alarms is None:
            continue
        for bed in beds:
            bp_alarm = any(a["metric"] == "nibp_sys" and a["kind"] == "physiological"
                           and a["rule"] != "bp_with_symptom"
                           for a in daemon.alarms.engine.active_alarms(bed)["alarms"])
            if bp_alarm and bed not in headache:
                headache.add(bed)
                await say("session/symptom", {"bed": bed, "symptom": "severe_headache",
                                              "by": "demo clinician"})
            elif not bp_alarm and bed in headache:
                headache.discard(bed)
                await say("session/symptom_clear", {"bed": bed, "all": True,
                                                    "by": "demo clinician"})
            for item in daemon.alarms.engine.session_state(bed).get("bp_checklist", []):
                key = (bed, item["name"], item["due_at"])
                if item.get("announced") and not item.get("done_at") and key not in answered:
                    answered.add(key)
                    await say("bp/measure", {"bed": bed})


def _load_demo_config(
    args: argparse.Namespace, workdir: Path
) -> tuple[Config | None, list[SimProcess]]:
    if args.config:
        try:
            cfg = load_config(args.config)
        except ConfigError as exc:
            for line in exc.problems:
                print(line, file=sys.stderr)
            return None, []
    else:
        layout = demo_layout(args.beds, args.seed, str(workdir / "state"), workdir,
                             sim_only=args.sim_only)
        cfg = parse_config(layout, "<demo>")
    return cfg, simulators_for(cfg, args.seed, args.speed, [workdir, DEMO_DIR])


async def run_demo(args: argparse.Namespace) -> int:
    from kapmonitor.daemon import Daemon

    workdir = Path(tempfile.mkdtemp(prefix="kapmonitor-demo-"))
    cfg, procs = _load_demo_config(args, workdir)
    if cfg is None:
        return 2
    host, port = args.broker or (cfg.mqtt.host, cfg.mqtt.port)
    interactive = sys.stdout.isatty() and not args.no_view
    async with demo_broker(host, port, prefer_configured=True) as info, \
            sim_processes(procs, workdir) as start_sims:
        if info.protocol != cfg.mqtt.protocol:
            cfg = cfg.model_copy(update={"mqtt": cfg.mqtt.model_copy(
                update={"protocol": info.protocol})})
        print(f"kapmonitor demo: {len(cfg.beds)} beds, speed x{args.speed:g}, broker "
              f"{info.host}:{info.port} ({info.kind})")
        print(f"watch the topics:  mosquitto_sub -h {info.host} -p {info.port} "
              f"-t '{cfg.base_topic}/#' -v")
        sys.stdout.flush()
        clock = ScaledClock(args.speed)
        sim0 = clock.now()
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
        station = await _demo_station(args, info, workdir, cfg)
        clinician = asyncio.create_task(_virtual_clinician(daemon, clock, sim0))
        started = time.monotonic()
        live_ctx: Any = contextlib.nullcontext()
        if interactive:
            live_ctx = Live(render_rich(view, 0.0, info), refresh_per_second=4, screen=False)
        try:
            with live_ctx as live:
                next_plain = 0.0
                while not stop.is_set():
                    elapsed = time.monotonic() - started
                    if args.duration is not None and elapsed >= args.duration:
                        break
                    if daemon_task.done():
                        break
                    sim_minutes = (clock.now() - sim0) / 60
                    if live is not None:
                        live.update(render_rich(view, sim_minutes, info))
                    elif elapsed >= next_plain:
                        print(render_plain(view, sim_minutes), flush=True)
                        next_plain = elapsed + 5.0
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.25)
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
    d.add_argument("--broker", type=parse_hostport, help="HOST:PORT of a broker to use")
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

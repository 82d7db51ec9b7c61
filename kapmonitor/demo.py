"""``kapmonitor demo``: a virtual clinic — simulated patients and devices, a broker, the daemon,
and a live terminal view fed from MQTT exactly as a dashboard would be."""

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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from kapmonitor.broker import BrokerInfo, demo_broker, free_port, reachable
from kapmonitor.clock import ScaledClock
from kapmonitor.config import Config, ConfigError, load_config, parse_config

log = logging.getLogger("kapmonitor.demo")

# Scripted events per bed (seconds of simulated time after start; the dose is at 600 s) so the
# demo shows the interesting cases: bed 1 is a typical session, the others get one event each.
DEMO_EVENTS: list[list[dict[str, Any]]] = [
    [],
    [{"kind": "desaturation", "at": 1500, "duration": 180}],
    [{"kind": "artifact", "at": 900, "duration": 180}],
    [{"kind": "surge", "at": 2100, "duration": 900}],
    [{"kind": "tachycardia", "at": 1800, "duration": 600}],
    [{"kind": "sensor_off", "at": 1200, "duration": 120}],
    [{"kind": "bradycardia", "at": 2400, "duration": 120}],
    [{"kind": "device_drop", "at": 1000, "duration": 90}],
]


BED_KINDS = ("sim", "serial", "intellivue", "hl7")


@dataclass
class SimProcess:
    """A stand-alone device simulator the demo runs next to the daemon."""

    name: str
    argv: list[str]
    wait_path: Path | None = None  # a pty link that exists once the device is up
    wait_port: int | None = None  # a TCP port that accepts once the device is up
    after_daemon: bool = False  # senders that connect to the daemon start after it


def _event_args(events: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for e in events:
        out += ["--event", f"{e['kind']}:{e['at']}:{e.get('duration', 300)}"]
    return out


def demo_layout(
    beds: int, seed: int, state_dir: str, workdir: Path | None = None, speed: float = 1.0
) -> tuple[dict[str, Any], list[SimProcess]]:
    """The virtual clinic. Beds cycle through four set-ups so every device family is exercised:
    in-process simulated devices; a Masimo oximeter on a serial pty (plus a cuff); a Philips
    IntelliVue monitor on a serial pty; an HL7 central-station feed plus a Nonin oximeter behind a
    ser2net-style TCP port. All devices of a bed sample the same simulated patient (same seed,
    dose time and events). Without ``workdir`` every bed uses in-process devices only."""
    py = sys.executable
    devices: list[dict[str, Any]] = []
    procs: list[SimProcess] = []
    routes: list[dict[str, Any]] = []
    hl7_port = free_port()
    for i in range(1, beds + 1):
        bed = f"bed{i}"
        events = DEMO_EVENTS[(i - 1) % len(DEMO_EVENTS)]
        pseed = seed * 100 + i
        patient = ["--seed", str(pseed), "--dose-at", "600", "--speed", f"{speed:g}",
                   *_event_args(events)]
        kind = BED_KINDS[(i - 1) % len(BED_KINDS)] if workdir is not None else "sim"
        sim_patient = {"seed": pseed, "events": events}
        if kind == "sim":
            devices.append({"id": f"{bed}-ox", "driver": "sim", "bed": bed, "kind": "oximeter",
                            "label": "virtual pulse oximeter", **sim_patient})
            devices.append({"id": f"{bed}-ecg", "driver": "sim", "bed": bed, "kind": "monitor",
                            "label": "virtual ECG monitor", **sim_patient})
        if kind in ("sim", "serial"):
            devices.append({"id": f"{bed}-cuff", "driver": "sim", "bed": bed, "kind": "cuff",
                            "label": "virtual BP cuff", "stale_after": 0, "nibp_every": 300,
                            **sim_patient})
        assert workdir is not None or kind == "sim"
        if kind == "serial":
            link = workdir / f"{bed}-masimo"  # type: ignore[operator]
            procs.append(SimProcess(f"{bed} Masimo", [
                py, "-m", "simulators", "serial", "--protocol", "masimo-ascii", "--pty",
                "--link", str(link), *patient], wait_path=link))
            devices.append({"id": f"{bed}-masimo", "driver": "serial-masimo", "bed": bed,
                            "label": "Masimo Rad-8 (serial pty)", "port": str(link),
                            "min_interval": 1.0})
        elif kind == "intellivue":
            link = workdir / f"{bed}-intellivue"  # type: ignore[operator]
            procs.append(SimProcess(f"{bed} IntelliVue", [
                py, "-m", "simulators", "intellivue", "--pty", str(link), "--nibp-every", "300",
                *patient], wait_path=link))
            devices.append({"id": f"{bed}-mp50", "driver": "serial-intellivue", "bed": bed,
                            "label": "Philips IntelliVue (serial pty)", "port": str(link)})
        elif kind == "hl7":
            eui = f"0A0000000000{i:04X}"
            routes.append({"bed": bed, "device": f"{bed}-monitor", "equipment_id": eui})
            procs.append(SimProcess(f"{bed} HL7 monitor", [
                py, "-m", "simulators", "hl7", "--port", str(hl7_port), "--style", "ge",
                "--equipment-id", eui, "--interval", "30", "--nibp-every", "300", *patient],
                after_daemon=True))
            nonin_port = free_port()
            procs.append(SimProcess(f"{bed} Nonin", [
                py, "-m", "simulators", "serial", "--protocol", "nonin-fmt7", "--tcp",
                str(nonin_port), *patient], wait_port=nonin_port))
            devices.append({"id": f"{bed}-nonin", "driver": "serial-nonin", "bed": bed,
                            "label": "Nonin (ser2net TCP)", "format": "fmt7",
                            "port": f"socket://127.0.0.1:{nonin_port}"})
    if routes:
        devices.append({"id": "hl7-listener", "driver": "hl7-mllp", "bed": routes[0]["bed"],
                        "label": "HL7 MLLP listener", "port": hl7_port, "routes": routes})
    cfg = {
        "state_dir": state_dir,
        "node": {"site": "Virtual clinic", "node_id": "demo"},
        "mqtt": {"host": "127.0.0.1", "port": 1883},
        "metrics": {"enabled": True, "port": 0},
        "beds": [{"id": f"bed{i}", "label": f"Chair {i}"} for i in range(1, beds + 1)],
        "devices": devices,
    }
    return cfg, procs


def demo_config_dict(beds: int, seed: int, state_dir: str) -> dict[str, Any]:
    """The in-process-only clinic (no simulator processes)."""
    return demo_layout(beds, seed, state_dir)[0]


@contextlib.asynccontextmanager
async def sim_processes(procs: list[SimProcess], log_dir: Path) -> AsyncIterator[
        Callable[[bool], Awaitable[None]]]:
    """Start the simulators; yields ``start(after_daemon)`` and stops them all on exit."""
    running: list[asyncio.subprocess.Process] = []

    async def start(after_daemon: bool) -> None:
        for p in procs:
            if p.after_daemon != after_daemon:
                continue
            logf = (log_dir / (p.name.replace(" ", "-") + ".log")).open("ab")
            proc = await asyncio.create_subprocess_exec(
                *p.argv, stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=logf)
            running.append(proc)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if p.wait_path is not None and p.wait_path.exists():
                    break
                if p.wait_port is not None and reachable("127.0.0.1", p.wait_port, 0.1):
                    break
                if p.wait_path is None and p.wait_port is None:
                    break
                if proc.returncode is not None:
                    raise RuntimeError(f"simulator {p.name} exited; see {logf.name}")
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"simulator {p.name} did not come up; see {logf.name}")

    try:
        yield start
    finally:
        for proc in running:
            if proc.returncode is None:
                proc.terminate()
        for proc in running:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()


# -- the view's model, fed from MQTT ------------------------------------------------------
@dataclass
class BedView:
    label: str
    vitals: dict[str, dict[str, Any]] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    phase: str | None = None
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
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"kapmonitor virtual clinic — simulated time {sim_minutes:5.1f} min",
                  expand=True)
    for col in ("Bed", "Phase", "SpO2 %", "PR /min", "HR /min", "NIBP mmHg", "RR /min",
                "Alarms", "Devices"):
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
                      alarms, devs, style=style)
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
            f"NIBP={_fmt(v, 'nibp_sys')}/{_fmt(v, 'nibp_dia')} alarms={alarms} "
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


def _load_demo_config(
    args: argparse.Namespace, workdir: Path
) -> tuple[Config | None, list[SimProcess]]:
    if args.config:
        try:
            return load_config(args.config), []
        except ConfigError as exc:
            for line in exc.problems:
                print(line, file=sys.stderr)
            return None, []
    layout, procs = demo_layout(
        args.beds, args.seed, str(workdir / "state"),
        None if args.sim_only else workdir, args.speed,
    )
    return parse_config(layout, "<demo>"), procs


async def run_demo(args: argparse.Namespace) -> int:
    from kapmonitor.cli import _attach_extensions
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
        daemon = Daemon(cfg, clock=clock, broker=(info.host, info.port))
        _attach_extensions(daemon)
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
        await asyncio.wait_for(daemon.started.wait(), 15)
        await start_sims(True)
        started = time.monotonic()
        sim0 = clock.now()
        live_ctx: Any = contextlib.nullcontext()
        if interactive:
            from rich.live import Live

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
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(daemon_task, 10)
            await asyncio.sleep(0.3)  # let the view see the final messages
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        print(render_plain(view, (clock.now() - sim0) / 60))
        published = daemon.mqtt.published if daemon.mqtt is not None else 0
        print(f"kapmonitor demo: done; {published} messages acknowledged by the broker, "
              f"{view.readings} readings seen by the watcher")
        if daemon.fatal is not None or published == 0 or view.readings == 0:
            print("kapmonitor demo: FAILED — nothing reached the broker", file=sys.stderr)
            return 1
        return 0


def main(args: argparse.Namespace) -> int:
    from kapmonitor.cli import setup_logging

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

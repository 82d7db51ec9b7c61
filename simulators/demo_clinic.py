"""The virtual clinic of ``kapmonitor demo``: its device layout, and the device simulators that
stand in for the hardware a configuration names.

A configuration is turned into simulator processes by :func:`simulators_for`: every serial
device whose port is a pty link in the demo directory or a loopback ``socket://`` port gets a
byte-accurate simulator of its protocol there, and every loopback ``hl7-mllp`` listener gets one
HL7 monitor per route. BLE devices need no process: ``[ble] backend = "simulated"`` gives each
one a virtual twin inside the daemon. So the generated layout and a hand-written file such as
config/demo.toml run the same way.

All devices of a bed sample one simulated patient: bed number ``i`` (1-based, in the order of
``[[beds]]``) is seeded ``seed * 100 + i`` and gets the scripted events ``DEMO_EVENTS[i - 1]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kapmonitor_simulators.broker import free_port, reachable

from kapmonitor.config import Config

DEMO_DIR = Path("/tmp/kapmonitor-demo")  # where config/demo.toml's pty links live
DOSE_AT = 600.0  # simulated seconds after start when every virtual patient gets the dose

# Scripted events per bed (seconds of simulated time after start; the dose is at 600 s): bed 1
# is a typical session, the others each get one event the alarm engine must catch.
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

# The set-up of bed N is BED_KINDS[(N - 1) % 6]: BLE devices on most beds, and every serial,
# IntelliVue and HL7 path somewhere in the first five.
BED_KINDS = ("ble", "serial", "ble-proprietary", "intellivue", "hl7", "ble-ring")

# serial driver → the simulator protocol it talks to
SERIAL_SIMULATORS = {
    "serial-masimo": lambda d: "masimo-ascii",
    "serial-nonin": lambda d: f"nonin-{getattr(d, 'format', 'fmt7')}",
    "serial-contec": lambda d: (
        "contec-5" if getattr(d, "protocol", "") == "contec-5" else "contec-9"
    ),
    "serial-berrymed": lambda d: "berrymed",
}


def patient_of(bed_index: int, seed: int) -> dict[str, Any]:
    return {"seed": seed * 100 + bed_index, "dose_at": DOSE_AT,
            "events": DEMO_EVENTS[(bed_index - 1) % len(DEMO_EVENTS)]}


def demo_layout(
    beds: int, seed: int, state_dir: str, workdir: Path | None, *, sim_only: bool = False
) -> dict[str, Any]:
    """The generated clinic; bed N gets the set-up ``BED_KINDS[(N - 1) % 6]``:

    - ``ble``: a BLE (PLX) pulse oximeter and a BLE cuff (Blood Pressure Service);
    - ``serial``: a Masimo oximeter on a serial pty and a BLE cuff;
    - ``ble-proprietary``: a BerryMed oximeter and a Lepu BP2 cuff that can be started remotely;
    - ``intellivue``: a Philips IntelliVue monitor on a serial pty;
    - ``hl7``: an HL7 central-station feed and a Nonin oximeter behind a ser2net-style TCP port;
    - ``ble-ring``: an O2Ring (Viatom) oximeter and a BLE cuff.

    BLE beds also get an in-process ECG monitor (``sim``) that carries the patient. BLE devices
    run against the simulated bleak backend. ``sim_only`` keeps every bed in-process."""
    devices: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    uses_ble = False
    for i in range(1, beds + 1):
        bed = f"bed{i}"
        kind = "sim" if sim_only or workdir is None else BED_KINDS[(i - 1) % len(BED_KINDS)]
        patient = patient_of(i, seed)

        def add(suffix: str, driver: str, label: str, bed: str = bed, **extra: Any) -> None:
            devices.append({"id": f"{bed}-{suffix}", "driver": driver, "bed": bed,
                            "label": label, **extra})

        def ble(suffix: str, driver: str, label: str, n: int, i: int = i, **extra: Any) -> None:
            # Every BLE device gets an address: its virtual twin takes it, and no bed can
            # connect to another bed's twin of the same kind.
            add(suffix, driver, label, address=f"C0:FF:EE:00:{i:02X}:{n:02X}", **extra)

        if kind in ("sim", "ble", "serial", "ble-proprietary", "ble-ring"):
            # The ECG monitor also carries the bed's patient (seed, events) for the BLE twins.
            add("ecg", "sim", "virtual ECG monitor", kind="monitor", **patient)
        if kind == "sim":
            add("ox", "sim", "virtual pulse oximeter", kind="oximeter", **patient)
            add("cuff", "sim", "virtual BP cuff", kind="cuff", stale_after=0, nibp_every=300,
                **patient)
        elif kind == "ble":
            ble("plx", "ble-plx", "BLE pulse oximeter (PLX)", 1)
            ble("cuff", "ble-bps", "BLE BP cuff", 2)
        elif kind == "ble-proprietary":
            ble("berrymed", "ble-berrymed", "BerryMed BLE oximeter", 1)
            ble("bp2", "ble-lepu-bp2", "Lepu BP2 cuff (remote start)", 2, stale_after=0,
                allow_remote_start=True)
        elif kind == "ble-ring":
            ble("o2ring", "ble-viatom-oxy", "O2Ring (Viatom oxy)", 1)
            ble("cuff", "ble-bps", "BLE BP cuff", 2)
        elif kind == "serial":
            assert workdir is not None
            add("masimo", "serial-masimo", "Masimo Rad-8 (serial pty)",
                port=str(workdir / f"{bed}-masimo"), min_interval=1.0)
            ble("cuff", "ble-bps", "BLE BP cuff", 2)
        elif kind == "intellivue":
            assert workdir is not None
            add("mp50", "serial-intellivue", "Philips IntelliVue (serial pty)",
                port=str(workdir / f"{bed}-intellivue"))
        elif kind == "hl7":
            routes.append({"bed": bed, "device": f"{bed}-monitor",
                           "equipment_id": f"0A0000000000{i:04X}"})
            add("nonin", "serial-nonin", "Nonin (ser2net TCP)", format="fmt7",
                port=f"socket://127.0.0.1:{free_port()}")
        uses_ble = uses_ble or kind.startswith("ble") or kind == "serial"
    if routes:
        devices.append({"id": "hl7-listener", "driver": "hl7-mllp", "bed": routes[0]["bed"],
                        "label": "HL7 MLLP listener", "port": free_port(), "routes": routes})
    return {
        "state_dir": state_dir,
        "node": {"site": "Virtual clinic", "node_id": "demo"},
        "mqtt": {"host": "127.0.0.1", "port": 1883},
        "metrics": {"enabled": True, "port": 0},
        # The simulated radio never goes deaf, and under an accelerated clock the scanner
        # watchdog would only restart it for nothing.
        **({"ble": {"backend": "simulated", "scanner_watchdog": 0}} if uses_ble else {}),
        "beds": [{"id": f"bed{i}", "label": f"Chair {i}"} for i in range(1, beds + 1)],
        "devices": devices,
    }


@dataclass
class SimProcess:
    """A stand-alone device simulator the demo runs next to the daemon."""

    name: str
    argv: list[str]
    wait_path: Path | None = None  # a pty link that exists once the device is up
    wait_port: int | None = None  # a TCP port that accepts once the device is up
    after_daemon: bool = False  # senders that connect to the daemon start after it


def _patient_args(bed_index: int, seed: int, speed: float) -> list[str]:
    p = patient_of(bed_index, seed)
    out = ["--seed", str(p["seed"]), "--dose-at", f"{DOSE_AT:g}", "--speed", f"{speed:g}"]
    for e in p["events"]:
        out += ["--event", f"{e['kind']}:{e['at']}:{e.get('duration', 300)}"]
    return out


def _loopback_port(port: str) -> int | None:
    for prefix in ("socket://127.0.0.1:", "socket://localhost:"):
        if port.startswith(prefix) and port[len(prefix):].isdigit():
            return int(port[len(prefix):])
    return None


def simulators_for(cfg: Config, seed: int, speed: float, demo_dirs: list[Path]
                   ) -> list[SimProcess]:
    """Simulator processes for the devices of ``cfg`` that point at the demo's own places."""
    py = [sys.executable, "-m", "kapmonitor_simulators"]
    index = {b.id: n for n, b in enumerate(cfg.beds, 1)}
    procs: list[SimProcess] = []
    for dev in cfg.devices:
        if not dev.enabled:
            continue
        i = index[dev.bed]
        patient = _patient_args(i, seed, speed)
        port = str(getattr(dev, "port", ""))
        tcp = _loopback_port(port)
        in_demo_dir = any(Path(port).parent == d for d in demo_dirs)
        if dev.driver in SERIAL_SIMULATORS and (tcp or in_demo_dir):
            protocol = SERIAL_SIMULATORS[dev.driver](dev)
            where = ["--tcp", str(tcp)] if tcp else ["--pty", "--link", port]
            procs.append(SimProcess(f"{dev.id} ({protocol})",
                                    [*py, "serial", "--protocol", protocol, *where, *patient],
                                    wait_path=None if tcp else Path(port), wait_port=tcp))
        elif dev.driver == "serial-intellivue" and (tcp or in_demo_dir):
            where = ["--tcp", f"127.0.0.1:{tcp}"] if tcp else ["--pty", port]
            procs.append(SimProcess(f"{dev.id} (IntelliVue)",
                                    [*py, "intellivue", *where, "--nibp-every", "300",
                                     *patient],
                                    wait_path=None if tcp else Path(port), wait_port=tcp))
        elif dev.driver == "hl7-mllp" and getattr(dev, "host", "") in ("127.0.0.1", "localhost"):
            for route in dev.routes:  # type: ignore[attr-defined]
                if not route.equipment_id:
                    continue
                procs.append(SimProcess(
                    f"{route.device or route.bed} (HL7 monitor)",
                    [*py, "hl7", "--port", str(dev.port), "--style", "ge",  # type: ignore[attr-defined]
                     "--equipment-id", route.equipment_id, "--interval", "30",
                     "--nibp-every", "300", *_patient_args(index[route.bed], seed, speed)],
                    after_daemon=True))
    return procs


@contextlib.asynccontextmanager
async def sim_processes(
    procs: list[SimProcess], log_dir: Path
) -> AsyncIterator[Callable[[bool], Awaitable[None]]]:
    """Start the simulators; yields ``start(after_daemon)`` and stops them all on exit."""
    running: list[asyncio.subprocess.Process] = []

    async def start(after_daemon: bool) -> None:
        for p in procs:
            if p.after_daemon != after_daemon:
                continue
            if p.wait_path is not None:
                p.wait_path.parent.mkdir(parents=True, exist_ok=True)
            log_path = log_dir / (p.name.split(" ")[0] + ".log")
            with log_path.open("ab") as logf:
                proc = await asyncio.create_subprocess_exec(
                    *p.argv, stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=logf)
            running.append(proc)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if p.wait_path is None and p.wait_port is None:
                    break
                if p.wait_path is not None and p.wait_path.exists():
                    break
                if p.wait_port is not None and reachable("127.0.0.1", p.wait_port, 0.1):
                    break
                if proc.returncode is not None:
                    raise RuntimeError(f"simulator {p.name} exited; see {log_path}")
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"simulator {p.name} did not come up; see {log_path}")

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

"""Footprint of the daemon: peak RSS and CPU share of one core with a simulated clinic.

    .venv/bin/python bench/footprint.py [--seconds 60] [--beds 12]

Runs ``kapmonitor run`` as a subprocess (so it is measured alone) against a private Mosquitto,
with per bed a simulated oximeter at 1 Hz and a simulated cuff (NIBP every 5 min), at real-time
speed, with the metrics listener on. Peak RSS is the daemon's VmHWM (/proc/<pid>/status) at the
end; CPU share is utime+stime (/proc/<pid>/stat) over the window after a warm-up (start-up
imports excluded), divided by the window's wall time. A subscriber counts the readings so the
numbers belong to a daemon that was doing its job. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import daemon, vm_kb  # noqa: E402
from _mosquitto import cpu_seconds, mosquitto  # noqa: E402

NODE = "bench"


def clinic_toml(state_dir: Path, addr: tuple[str, int], beds: int) -> str:
    lines = [
        f'state_dir = "{state_dir}"',
        "[node]", f'node_id = "{NODE}"', 'site = "footprint bench"',
        "[mqtt]", f'host = "{addr[0]}"', f"port = {addr[1]}",
        "[metrics]", "enabled = true", "port = 0",
        "[logging]", 'level = "warning"',
    ]
    for i in range(1, beds + 1):
        lines += ["[[beds]]", f'id = "bed{i}"']
    for i in range(1, beds + 1):
        lines += ["[[devices]]", f'id = "ox{i}"', 'driver = "sim"', f'bed = "bed{i}"',
                  'kind = "oximeter"', f"seed = {i}", "interval = 1.0"]
        lines += ["[[devices]]", f'id = "cuff{i}"', 'driver = "sim"', f'bed = "bed{i}"',
                  'kind = "cuff"', f"seed = {i}", "nibp_every = 300.0", "stale_after = 0"]
    return "\n".join(lines) + "\n"


async def count_readings(addr: tuple[str, int], counter: dict[str, int],
                         ready: asyncio.Event) -> None:
    async with aiomqtt.Client(*addr, identifier="kapbench-footprint-sub") as client:
        await client.subscribe(f"kapmonitor/{NODE}/bed/+/reading", qos=1)
        ready.set()
        async for _ in client.messages:
            counter["readings"] += 1


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    warmup = min(args.warmup, args.seconds / 2)
    with mosquitto() as broker, tempfile.TemporaryDirectory(prefix="kapbench-fp-") as tmp:
        config = Path(tmp) / "clinic.toml"
        config.write_text(clinic_toml(Path(tmp) / "state", broker.address, args.beds))
        counter = {"readings": 0}
        ready = asyncio.Event()
        sub = asyncio.create_task(count_readings(broker.address, counter, ready))
        await asyncio.wait_for(ready.wait(), 10)
        argv = [sys.executable, "-m", "kapmonitor.cli", "run", "--config", str(config)]
        try:
            async with daemon(argv, Path(tmp) / "daemon.log") as proc:
                started = time.monotonic()
                # The daemon is up (signal handlers installed) once its first reading arrives;
                # a SIGTERM before that would kill it rather than stop it, and the warm-up
                # counts from here, not from the spawn (start-up takes seconds on a loaded
                # machine).
                while counter["readings"] == 0:
                    if proc.exited() or time.monotonic() - started > 60:
                        raise RuntimeError("daemon exited or sent nothing within 60 s")
                    await asyncio.sleep(0.1)
                await asyncio.sleep(warmup)
                if proc.exited():
                    raise RuntimeError("daemon exited early")
                c0, t0, n0 = cpu_seconds(proc.pid), time.monotonic(), counter["readings"]
                await asyncio.sleep(args.seconds - warmup)
                c1, t1, n1 = cpu_seconds(proc.pid), time.monotonic(), counter["readings"]
                hwm, rss = vm_kb(proc.pid, "VmHWM"), vm_kb(proc.pid, "VmRSS")
                total_cpu = c1
                code = await proc.stop(10)
                stop_secs = proc.stop_seconds
        finally:
            sub.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await sub
    window = t1 - t0
    result = {
        "rss_mb": round(hwm / 1024, 1),
        "cpu_percent": round(100 * (c1 - c0) / window, 2),
        "rss_end_mb": round(rss / 1024, 1),
        "readings_per_s": round((n1 - n0) / window, 1),
        "window_s": round(window, 1),
        "beds": args.beds,
        "startup_cpu_s": round(total_cpu - (c1 - c0), 2),
        "shutdown_s": round(stop_secs, 2),
    }
    print(f"kapmonitor run, {args.beds} beds (oximeter 1 Hz + cuff), real time, "
          f"{os.cpu_count()} CPUs, {time.monotonic() - started:.0f} s")
    print(f"peak RSS (VmHWM)     {result['rss_mb']:>7} MB   (RSS at end {result['rss_end_mb']} MB)")
    print(f"CPU, share of a core {result['cpu_percent']:>7} %    over {window:.0f} s after a "
          f"{warmup:.0f} s warm-up (start-up used {result['startup_cpu_s']} s CPU)")
    print(f"readings seen        {result['readings_per_s']:>7} /s")
    print(f"SIGTERM to exit      {result['shutdown_s']:>7} s    (exit code {code})")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="how long the daemon runs")
    p.add_argument("--warmup", type=float, default=10.0,
                   help="seconds excluded from the CPU window (at most half the run)")
    p.add_argument("--beds", type=int, default=12, help="simulated beds")
    args = p.parse_args()
    print(json.dumps(asyncio.run(measure(args))))


if __name__ == "__main__":
    main()

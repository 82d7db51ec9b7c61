"""Soak: 24 hours of a 12-bed clinic, time-accelerated, with the daemon's RSS growth measured.

    .venv/bin/python bench/soak.py [--hours 24] [--speed 96] [--beds 12] [--interval 5]

Runs the daemon in a child process (so that its memory is measured alone) with a
:class:`~kapmonitor.clock.ScaledClock` at ``--speed`` simulated seconds per real second against
a private Mosquitto. Per bed a simulated oximeter (one sample every ``--interval`` simulated
seconds) and a cuff (NIBP every 5 simulated minutes). A virtual clinician runs back-to-back
3-hour sessions on every bed (start, dose, end) through ``bridge/request``, so sessions, alarms,
the alarm log and retained state turn over all day. A subscriber counts readings and alert
events, so the figures belong to a daemon that did its job.

RSS (``VmRSS`` of the child) is sampled every simulated 10 minutes. Growth is measured from the
end of the warm-up (the first ``--warmup`` fraction of the run: imports, caches, SQLite page
cache and numpy buffers settle) to the end: ``rss_growth_percent`` = (RSS at end − RSS after
warm-up) / RSS after warm-up. The target is ≤ 5 % (docs/reliability.md). The last line of
output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import daemon, vm_kb  # noqa: E402
from _mosquitto import mosquitto  # noqa: E402

NODE = "soak"
SESSION_HOURS = 3.0


def clinic(state_dir: Path, addr: tuple[str, int], beds: int, interval: float,
           speed: float) -> dict[str, Any]:
    devices: list[dict[str, Any]] = []
    for i in range(1, beds + 1):
        devices.append({"id": f"ox{i}", "driver": "sim", "bed": f"bed{i}", "kind": "oximeter",
                        "seed": i, "interval": interval, "dose_at": None,
                        "stale_after": max(30.0, 10 * interval)})
        devices.append({"id": f"cuff{i}", "driver": "sim", "bed": f"bed{i}", "kind": "cuff",
                        "seed": i, "nibp_every": 300.0, "stale_after": 0, "dose_at": None})
    return {
        "state_dir": str(state_dir),
        "node": {"node_id": NODE, "site": "soak bench"},
        "mqtt": {"host": addr[0], "port": addr[1]},
        "metrics": {"enabled": False},
        "logging": {"level": "warning"},
        "outbox": {"historical_after": 60.0 * speed},
        "beds": [{"id": f"bed{i}"} for i in range(1, beds + 1)],
        "devices": devices,
    }


def child(config_path: str, speed: float) -> None:
    """The daemon under test (``--child``): runs until SIGTERM."""
    from kapmonitor.cli import setup_logging
    from kapmonitor.clock import ScaledClock
    from kapmonitor.config import parse_config
    from kapmonitor.daemon import Daemon

    setup_logging("warning")
    cfg = parse_config(json.loads(Path(config_path).read_text()))

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        daemon = Daemon(cfg, clock=ScaledClock(speed))
        await daemon.run(stop)
        return 1 if daemon.fatal is not None else 0

    sys.exit(asyncio.run(main()))


async def request(client: aiomqtt.Client, command: str, body: dict[str, Any]) -> None:
    await client.publish(f"kapmonitor/{NODE}/bridge/request/{command}",
                         json.dumps(body).encode(), qos=1)


async def clinician(addr: tuple[str, int], beds: int, speed: float, counter: dict[str, int],
                    stop: asyncio.Event) -> None:
    """Back-to-back sessions on every bed: start, dose after 10 min, end after 3 h."""
    async with aiomqtt.Client(*addr, identifier="kapbench-soak-clinician") as client:
        while not stop.is_set():
            for i in range(1, beds + 1):
                await request(client, "session/start", {"bed": f"bed{i}", "profile": "ketamine"})
            counter["sessions"] += beds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 600 / speed)
            for i in range(1, beds + 1):
                await request(client, "session/dose", {"bed": f"bed{i}", "dose_mg": 50})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), (SESSION_HOURS * 3600 - 600) / speed)
            for i in range(1, beds + 1):
                await request(client, "session/end", {"bed": f"bed{i}"})


async def subscriber(addr: tuple[str, int], counter: dict[str, int],
                     ready: asyncio.Event, online: asyncio.Event) -> None:
    async with aiomqtt.Client(*addr, identifier="kapbench-soak-sub") as client:
        await client.subscribe(f"kapmonitor/{NODE}/bed/+/reading", qos=0)
        await client.subscribe(f"kapmonitor/{NODE}/bed/+/alert", qos=0)
        await client.subscribe(f"kapmonitor/{NODE}/bridge/#", qos=0)
        ready.set()
        async for m in client.messages:
            topic = str(m.topic)
            if topic.endswith("/bridge/state"):
                pass
            elif "/bridge/response/" in topic:
                online.set()  # answering requests (bridge/state comes before the subscription)
                if isinstance(m.payload, bytes) and b'"ok"' not in m.payload:
                    counter["refused"] += 1
                    print(f"refused: {topic}: {m.payload[:200]!r}", file=sys.stderr)
            elif topic.endswith("/alert"):
                counter["alerts"] += 1
            else:
                counter["readings"] += 1


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    real_seconds = args.hours * 3600 / args.speed
    sample_every = 600 / args.speed
    with mosquitto() as broker, tempfile.TemporaryDirectory(prefix="kapbench-soak-") as tmp:
        cfg = Path(tmp) / "clinic.json"
        cfg.write_text(json.dumps(clinic(Path(tmp) / "state", broker.address, args.beds,
                                         args.interval, args.speed)))
        counter = {"readings": 0, "alerts": 0, "sessions": 0, "refused": 0}
        ready, online = asyncio.Event(), asyncio.Event()
        stop = asyncio.Event()
        sub = asyncio.create_task(subscriber(broker.address, counter, ready, online))
        await asyncio.wait_for(ready.wait(), 10)
        argv = [sys.executable, __file__, "--child", str(cfg), "--speed", str(args.speed)]
        samples: list[tuple[float, int]] = []
        clin: asyncio.Task[None] | None = None
        try:
            async with daemon(argv, Path(tmp) / "daemon.log") as proc:
                async with aiomqtt.Client(*broker.address,
                                          identifier="kapbench-soak-ping") as c:
                    for _ in range(300):  # until the daemon answers requests
                        await request(c, "republish", {})
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(online.wait(), 0.1)
                        if online.is_set():
                            break
                clin = asyncio.create_task(
                    clinician(broker.address, args.beds, args.speed, counter, stop))
                t0 = time.monotonic()
                while (elapsed := time.monotonic() - t0) < real_seconds:
                    if proc.exited():
                        raise RuntimeError(f"daemon exited early with {proc.proc.returncode}")
                    samples.append((elapsed * args.speed / 3600, vm_kb(proc.pid, "VmRSS")))
                    await asyncio.sleep(min(sample_every, real_seconds - elapsed))
                samples.append((args.hours, vm_kb(proc.pid, "VmRSS")))
                stop.set()
                await proc.stop(20)
        finally:
            stop.set()
            for task in (sub, clin):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                        await task
    warm = next(kb for h, kb in samples if h >= args.hours * args.warmup)
    end = samples[-1][1]
    result = {
        "beds": args.beds,
        "simulated_hours": args.hours,
        "speed": args.speed,
        "real_seconds": round(real_seconds, 1),
        "rss_after_warmup_mb": round(warm / 1024, 1),
        "rss_end_mb": round(end / 1024, 1),
        "rss_peak_mb": round(max(kb for _, kb in samples) / 1024, 1),
        "rss_growth_percent": round(100 * (end - warm) / warm, 2),
        "readings": counter["readings"],
        "alert_events": counter["alerts"],
        "sessions": counter["sessions"],
        "refused_requests": counter["refused"],
    }
    print(f"soak: {args.beds} beds, {args.hours:g} simulated h at x{args.speed:g} "
          f"({real_seconds:.0f} s real), {os.cpu_count()} CPUs")
    print("simulated h   RSS MB")
    step = max(1, len(samples) // 24)
    for h, kb in samples[::step]:
        print(f"{h:11.1f}  {kb / 1024:7.1f}")
    print(f"RSS growth after the {args.warmup:.0%} warm-up: {result['rss_growth_percent']} % "
          f"({result['rss_after_warmup_mb']} → {result['rss_end_mb']} MB); readings "
          f"{result['readings']}, alert events {result['alert_events']}, sessions "
          f"{result['sessions']}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=24.0, help="simulated hours")
    p.add_argument("--speed", type=float, default=96.0, help="simulated s per real s")
    p.add_argument("--beds", type=int, default=12)
    p.add_argument("--interval", type=float, default=5.0,
                   help="oximeter sample period, simulated s")
    p.add_argument("--warmup", type=float, default=0.1,
                   help="fraction of the run before the RSS baseline")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.speed)
        return
    print(json.dumps(asyncio.run(soak(args))))


if __name__ == "__main__":
    main()

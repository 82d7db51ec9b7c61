"""Alarm latency: how much the alarm path adds to the reading path, end to end.

    .venv/bin/python bench/latency.py [--beds 12,200] [--rounds 10] [--seconds-per-round 4]

Per bed count: a private Mosquitto; ``kapmonitor run`` as a child process with per bed a
simulated oximeter at 1 Hz (the background traffic) and one ``hl7-mllp`` listener routing each
bed's monitor by its equipment id; a subscriber in *another process* (``--subscriber``) that
stamps the arrival of every ``nibp_sys`` reading and every ``bp_crisis`` alert event with the
wall clock; and a real HL7 sender here, one MLLP connection per bed. Every bed has a running
session. Each round sends every bed one crisis NIBP (≥ 200/120: the at-once ``bp_crisis`` rule)
at a random moment of the round, then acknowledges the alarms and sends a normal NIBP that
clears them, so that the next round raises anew.

For each crisis NIBP: ``reading_ms`` = its ``nibp_sys`` reading's arrival − the moment the
sender wrote the message; ``alarm_ms`` = the ``bp_crisis`` ``raised`` event's arrival − the same
moment; ``alarm_extra_ms`` = alarm_ms − reading_ms (what the alarm path adds). Sender and
subscriber run on this machine, so both stamps come from one clock. Percentiles are
nearest-rank. The last line of output is one JSON object for the largest bed count, with
``beds``, ``alarm_extra_ms_p99``, ``reading_ms_p99`` and more, plus ``runs`` for every count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import aiomqtt
import tomli_w

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))
from _mosquitto import free_port, mosquitto  # noqa: E402

if TYPE_CHECKING:
    from kapmonitor_simulators.hl7_sender import Hl7Sender

NODE = "lat"
BASE = f"kapmonitor/{NODE}"


def equipment(i: int) -> str:
    return f"{i:016X}"


def config(state: Path, addr: tuple[str, int], beds: int, hl7_port: int) -> dict[str, Any]:
    devices: list[dict[str, Any]] = [
        {"id": f"ox{i}", "driver": "sim", "bed": f"bed{i}", "kind": "oximeter", "seed": i,
         "interval": 1.0}
        for i in range(1, beds + 1)
    ]
    devices.append({
        "id": "hl7", "driver": "hl7-mllp", "bed": "bed1", "port": hl7_port,
        "max_connections": beds + 8,
        "routes": [{"equipment_id": equipment(i), "bed": f"bed{i}"} for i in range(1, beds + 1)],
    })
    return {
        "state_dir": str(state),
        "node": {"node_id": NODE, "site": "latency bench"},
        "mqtt": {"host": addr[0], "port": addr[1]},
        "metrics": {"enabled": False},
        "logging": {"level": "warning"},
        "beds": [{"id": f"bed{i}"} for i in range(1, beds + 1)],
        "devices": devices,
    }


# -- the subscriber process ------------------------------------------------------------------
async def subscriber(host: str, port: int) -> None:
    """Print one JSON line per nibp_sys reading and per bp_crisis alert event, stamped."""
    async with aiomqtt.Client(host, port, identifier=f"kapbench-lat-sub-{free_port()}") as c:
        await c.subscribe(f"{BASE}/bed/+/reading", qos=1)
        await c.subscribe(f"{BASE}/bed/+/alert", qos=1)
        print(json.dumps({"ready": True}), flush=True)
        async for m in c.messages:
            now = time.time()
            assert isinstance(m.payload, bytes)
            p = json.loads(m.payload)
            if str(m.topic).endswith("/reading"):
                if p.get("metric") == "nibp_sys" and not p.get("historical"):
                    print(json.dumps({"k": "reading", "bed": p["bed"], "value": p["value"],
                                      "at": now}), flush=True)
            elif p.get("type") == "session" and p.get("event") == "started":
                print(json.dumps({"k": "session", "bed": p["bed"]}), flush=True)
            elif p.get("type") == "alert" and p.get("rule") == "bp_crisis":
                print(json.dumps({"k": "alert", "bed": p["bed"], "event": p["event"],
                                  "at": now, "t": p.get("t")}), flush=True)


# -- the run ---------------------------------------------------------------------------------
def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def request(client: aiomqtt.Client, command: str, body: dict[str, Any]) -> None:
    await client.publish(f"{BASE}/bridge/request/{command}", json.dumps(body).encode(), qos=1)


async def _connect_senders(beds: int, hl7_port: int, log: IO[str]) -> list[Hl7Sender]:
    """One MLLP connection per bed (the simulators' sender, opened now so that no send waits
    for a connection); on failure, show the daemon's log tail and re-raise."""
    from kapmonitor_simulators.hl7_sender import Hl7Sender

    senders = [Hl7Sender("127.0.0.1", hl7_port, equipment_id=equipment(i))
               for i in range(1, beds + 1)]
    deadline = time.monotonic() + 30
    try:
        for s in senders:
            while True:
                try:
                    await s.connect()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
        return senders
    except OSError:
        log.seek(0)
        sys.stderr.write(log.read()[-3000:])
        raise


async def _await_daemon(req: aiomqtt.Client) -> None:
    """Ask until the daemon answers requests (up to 600 tries of 0.1 s)."""
    await req.subscribe(f"{BASE}/bridge/response/#", qos=1)
    for _ in range(600):  # until the daemon answers requests
        await request(req, "republish", {})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.1):
                async for _m in req.messages:
                    break
                break
    await req.unsubscribe(f"{BASE}/bridge/response/#")


class _Rounds:
    """The send loop: per round, one crisis NIBP per bed at a random moment, ack, clear."""

    def __init__(self, req: aiomqtt.Client, senders: list[Hl7Sender], arrivals:
                 list[dict[str, Any]], beds: int, seconds: float) -> None:
        self.req = req
        self.senders = senders
        self.arrivals = arrivals
        self.beds = beds
        self.seconds = seconds
        self.sent: list[tuple[int, int, float]] = []  # (bed, sys value, sent at)
        self.rng = random.Random(7)
        self.n = 0

    async def crisis(self, i: int, delay: float, value: int) -> None:
        from kapmonitor_simulators.hl7_oru import nibp_report

        await asyncio.sleep(delay)
        self.n += 1
        msg = nibp_report(f"x{self.n}", value, 125, 150, equipment_id=equipment(i))
        at = time.time()
        await self.senders[i - 1].send(msg)
        self.sent.append((i, value, at))

    async def normal(self, i: int) -> None:
        from kapmonitor_simulators.hl7_oru import nibp_report

        self.n += 1
        await self.senders[i - 1].send(nibp_report(f"n{self.n}", 120, 80, 93,
                                                   equipment_id=equipment(i)))

    async def one(self, r: int) -> None:
        beds, seconds = self.beds, self.seconds
        value = 200 + (r % 50)
        await asyncio.gather(*(self.crisis(i, self.rng.uniform(0, seconds * 0.6), value)
                               for i in range(1, beds + 1)))
        await asyncio.sleep(seconds * 0.4)
        # Acknowledge only once this round's alarms are raised: an ack that comes before its
        # alarm finds nothing open, and the latched alarm would then never clear.
        for _ in range(100):
            raised = sum(1 for a in self.arrivals if a.get("k") == "alert"
                         and a["event"] == "raised")
            if raised >= beds * (r + 1):
                break
            await asyncio.sleep(0.1)
        for i in range(1, beds + 1):
            await request(self.req, "alert/ack", {"bed": f"bed{i}", "all": True})
        await asyncio.sleep(0.3)
        await asyncio.gather(*(self.normal(i) for i in range(1, beds + 1)))
        # The next round raises anew only once every alarm of this one cleared.
        for _ in range(300):
            cleared = sum(1 for a in self.arrivals if a.get("k") == "alert"
                          and a["event"] == "cleared")
            if cleared >= beds * (r + 1):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)


async def _send_rounds(broker_address: tuple[str, int], senders: list[Hl7Sender],
                       arrivals: list[dict[str, Any]], beds: int, rounds: int,
                       seconds: float) -> list[tuple[int, int, float]]:
    """Wait for the daemon, start every bed's session, run the rounds; what was sent, when."""
    async with aiomqtt.Client(*broker_address, identifier="kapbench-lat-req") as req:
        await _await_daemon(req)
        for i in range(1, beds + 1):
            await request(req, "session/start", {"bed": f"bed{i}", "profile": "ketamine"})
        await asyncio.sleep(2.0)
        loop = _Rounds(req, senders, arrivals, beds, seconds)
        for r in range(rounds):
            await loop.one(r)
        return loop.sent


async def _await_arrivals(arrivals: list[dict[str, Any]], sent: list[tuple[int, int, float]],
                          ) -> None:
    """Wait (up to 60 s) until every crisis has its reading and its raised alarm."""
    for _ in range(600):
        got_r = sum(1 for a in arrivals if a.get("k") == "reading" and a["value"] >= 200)
        got_a = sum(1 for a in arrivals if a.get("k") == "alert"
                    and a["event"] == "raised")
        if got_r >= len(sent) and got_a >= len(sent):
            break
        await asyncio.sleep(0.1)


async def _shut_down(senders: list[Hl7Sender], daemon: subprocess.Popen[bytes],
                     sub: asyncio.subprocess.Process, collector: asyncio.Task[None],
                     log: IO[str]) -> str:
    """Close the senders, stop the daemon and the subscriber; the daemon's log."""
    for s in senders:
        with contextlib.suppress(OSError):
            await s.close()
    daemon.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        await asyncio.to_thread(daemon.wait, 15)
    if daemon.poll() is None:
        daemon.kill()
    sub.kill()
    await sub.wait()
    collector.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await collector
    log.seek(0)
    daemon_log = log.read()
    log.close()
    return daemon_log


def _summary(beds: int, arrivals: list[dict[str, Any]], sent: list[tuple[int, int, float]],
             daemon_log: str) -> dict[str, Any]:
    """Pair each crisis NIBP with its reading and its raised alarm; the percentiles."""
    readings = [a for a in arrivals if a.get("k") == "reading"]
    raised = [a for a in arrivals if a.get("k") == "alert" and a["event"] == "raised"]
    reading_ms, alarm_ms, extra_ms = [], [], []
    missing = 0
    for bed, value, at in sent:
        rd = next((a for a in readings if a["bed"] == f"bed{bed}" and a["value"] == value
                   and a["at"] >= at), None)
        al = next((a for a in raised if a["bed"] == f"bed{bed}" and a["at"] >= at), None)
        if rd is None or al is None:
            missing += 1
            continue
        raised.remove(al)
        reading_ms.append(1000 * (rd["at"] - at))
        alarm_ms.append(1000 * (al["at"] - at))
        extra_ms.append(1000 * (al["at"] - rd["at"]))
    if not extra_ms:
        sys.stderr.write(daemon_log[-3000:])
        kinds: dict[str, int] = {}
        for a in arrivals:
            kinds[str(a.get("k"))] = kinds.get(str(a.get("k")), 0) + 1
        sys.stderr.write(f"arrivals: {kinds}; sent {len(sent)}\n")

        raise RuntimeError("no crisis NIBP produced both a reading and an alarm")
    return {
        "beds": beds,
        "samples": len(extra_ms),
        "missing": missing,
        "reading_ms_p50": round(nearest_rank(reading_ms, 50), 1),
        "reading_ms_p99": round(nearest_rank(reading_ms, 99), 1),
        "alarm_ms_p50": round(nearest_rank(alarm_ms, 50), 1),
        "alarm_ms_p99": round(nearest_rank(alarm_ms, 99), 1),
        "alarm_extra_ms_p50": round(nearest_rank(extra_ms, 50), 1),
        "alarm_extra_ms_p99": round(nearest_rank(extra_ms, 99), 1),
        "alarm_extra_ms_max": round(max(extra_ms), 1),
    }


async def run(beds: int, rounds: int, seconds: float) -> dict[str, Any]:
    hl7_port = free_port()
    with mosquitto() as broker, tempfile.TemporaryDirectory(prefix="kapbench-lat-") as tmp:
        toml = Path(tmp) / "clinic.toml"
        toml.write_text(tomli_w.dumps(config(Path(tmp) / "state", broker.address, beds,
                                             hl7_port)))
        log = (Path(tmp) / "daemon.log").open("w+")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "kapmonitor.cli", "run", "--config", str(toml)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        sub = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--subscriber", f"{broker.host}:{broker.port}",
            stdout=asyncio.subprocess.PIPE,
        )
        arrivals: list[dict[str, Any]] = []

        async def collect() -> None:
            assert sub.stdout is not None
            async for line in sub.stdout:
                arrivals.append(json.loads(line))

        collector = asyncio.create_task(collect())
        senders: list[Hl7Sender] = []
        try:
            while not any(a.get("ready") for a in arrivals):
                await asyncio.sleep(0.05)
            senders = await _connect_senders(beds, hl7_port, log)
            sent = await _send_rounds(broker.address, senders, arrivals, beds, rounds, seconds)
            await _await_arrivals(arrivals, sent)
            if daemon.poll() is not None:
                raise RuntimeError(f"daemon exited with {daemon.returncode}")
        finally:
            daemon_log = await _shut_down(senders, daemon, sub, collector, log)
    return _summary(beds, arrivals, sent, daemon_log)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results = []
    for beds in [int(b) for b in args.beds.split(",")]:
        rounds = args.rounds if beds <= 50 else max(1, args.rounds // 5)
        r = await run(beds, rounds, args.seconds_per_round)
        results.append(r)
        print(f"{beds:4d} beds: {r['samples']} crisis NIBP, reading p50 {r['reading_ms_p50']} "
              f"p99 {r['reading_ms_p99']} ms; alarm p50 {r['alarm_ms_p50']} p99 "
              f"{r['alarm_ms_p99']} ms; alarm path adds p50 {r['alarm_extra_ms_p50']} p99 "
              f"{r['alarm_extra_ms_p99']} ms (max {r['alarm_extra_ms_max']}); missing "
              f"{r['missing']}", flush=True)
    return {**results[-1], "runs": results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--beds", default="12,200", help="comma-separated bed counts")
    p.add_argument("--rounds", type=int, default=10, help="crisis rounds (÷5 above 50 beds)")
    p.add_argument("--seconds-per-round", type=float, default=4.0)
    p.add_argument("--subscriber", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.subscriber:
        host, port = args.subscriber.rsplit(":", 1)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(subscriber(host, int(port)))
        return
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()

"""Durable-path throughput: readings/s from the daemon's ``ReadingPipeline`` to a subscriber,
against a bare aiomqtt QoS 1 publish loop of the same payloads to the same Mosquitto, in the same
run.

    .venv/bin/python bench/throughput.py [--readings 50000] [--repeats 3]

Durable path: a producer task pushes synthetic Readings through ``daemon.pipeline`` the way a
driver's supervisor does (in batches, yielding to the event loop between batches); each one is
serialised, written to the SQLite WAL outbox, published with QoS 1 by the MQTT owner and
deleted after the PUBACK. Bare loop: the identical JSON payloads, pre-encoded, published by one
aiomqtt client with QoS 1 from ``inflight`` concurrent publisher tasks (the same number of
in-flight publishes the daemon allows), nothing else. Both are timed from the first reading
handed over to the moment a separate subscriber process (aiomqtt, QoS 1) has the last one.
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mosquitto import RunningBroker, cpu_seconds, mosquitto  # noqa: E402

from kapmonitor.config import Config, OutboxConfig, parse_config  # noqa: E402
from kapmonitor.daemon import Daemon  # noqa: E402
from kapmonitor.model import METRICS, Reading  # noqa: E402

BEDS = 12
# What a bed produces: an oximeter's three numerics and a cuff's three.
BED_METRICS = ("spo2", "pulse_rate", "perfusion_index", "nibp_sys", "nibp_dia", "nibp_mean")
VALUES = {"spo2": 97.0, "pulse_rate": 72.0, "perfusion_index": 3.1,
          "nibp_sys": 124.0, "nibp_dia": 81.0, "nibp_mean": 95.0}
ALARMS = False  # --alarms: keep the alarm engine attached to the daemon
PRODUCER_BATCH = 200  # readings per loop iteration; a 12-bed clinic makes ~40/s in real life


def synthetic(i: int, now: float) -> Reading:
    bed = i % BEDS + 1
    name = BED_METRICS[(i // BEDS) % len(BED_METRICS)]
    info = METRICS[name]
    dev = "ox" if name in ("spo2", "pulse_rate", "perfusion_index") else "cuff"
    return Reading(
        bed=f"bed{bed}", device=f"{dev}{bed}", metric=name, value=VALUES[name] + (i % 7) * 0.5,
        unit=info.unit, ts=now, received=now, mdc=info.mdc, loinc=info.loinc,
    )


# -- the subscribers: separate processes, so they do not share the publisher's core -------
async def aiomqtt_subscriber(host: str, port: int, expect: int) -> None:
    """Count readings per run (topic ``kapbench/<run>/bed/<bed>/reading``); print
    ``done <run> <monotonic time of the last one>`` when a run reaches ``expect``."""
    counts: dict[str, int] = {}
    async with aiomqtt.Client(host, port, identifier=f"kapbench-sub-{port}",
                              max_queued_incoming_messages=0) as client:
        await client.subscribe("kapbench/+/bed/+/reading", qos=1)
        print("ready", flush=True)
        async for m in client.messages:
            run = m.topic.value.split("/", 2)[1]
            n = counts.get(run, 0) + 1
            counts[run] = n
            if n == expect:
                print(f"done {run} {time.monotonic():.6f}", flush=True)


class AiomqttSubscriber:
    """One long-running aiomqtt subscriber process (QoS 1) for all runs."""

    describe = "an aiomqtt client (QoS 1) in its own process"

    def __init__(self, addr: tuple[str, int], expect: int) -> None:
        self.addr, self.expect = addr, expect
        self.proc: asyncio.subprocess.Process | None = None
        self.done: dict[str, float] = {}

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--aiomqtt-subscriber", self.addr[0], str(self.addr[1]),
            str(self.expect), stdout=asyncio.subprocess.PIPE,
        )
        line = await asyncio.wait_for(self._line(), 20)
        if line != "ready":
            raise RuntimeError(f"subscriber did not start: {line!r}")

    async def _line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        raw = await self.proc.stdout.readline()
        if not raw:
            raise RuntimeError("subscriber exited")
        return raw.decode().strip()

    async def prepare(self, run: str) -> None:
        pass  # subscribed to every run's topics already

    async def finished(self, run: str, timeout: float) -> float:
        async with asyncio.timeout(timeout):
            while run not in self.done:
                _, name, t = (await self._line()).split()
                self.done[name] = float(t)
        return self.done[run]

    def cpu(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


class MosquittoSubSubscriber:
    """Per run, ``mosquitto_sub -q 1 -C N``: Mosquitto's own C client, which keeps the
    measuring instrument's CPU use small on a machine with few cores."""

    describe = "mosquitto_sub -q 1 -C N (C client) in its own process"

    def __init__(self, addr: tuple[str, int], expect: int) -> None:
        self.addr, self.expect = addr, expect
        self.runs: dict[str, tuple[asyncio.subprocess.Process, asyncio.Task[bytes]]] = {}
        self.exe = shutil.which("mosquitto_sub")
        if self.exe is None:
            raise SystemExit("mosquitto_sub not found (apt-get install mosquitto-clients)")

    async def start(self) -> None:
        pass

    async def prepare(self, run: str) -> None:
        """Subscribe before the run starts. A retained marker message tells us when the
        subscription is active (the broker sends it right after the SUBACK)."""
        marker = f"kapbench/{run}/ready"
        async with aiomqtt.Client(*self.addr, identifier=f"kapbench-mark-{run}") as c:
            await c.publish(marker, b"1", qos=1, retain=True)
        assert self.exe is not None
        proc = await asyncio.create_subprocess_exec(
            self.exe, "-h", self.addr[0], "-p", str(self.addr[1]), "-i", f"kapbench-sub-{run}",
            "-q", "1", "-t", marker, "-t", f"kapbench/{run}/bed/+/reading",
            "-C", str(self.expect + 1), "-F", "%t", stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        first = await asyncio.wait_for(proc.stdout.readline(), 20)
        if first.strip() != marker.encode():
            raise RuntimeError(f"mosquitto_sub did not subscribe: {first!r}")
        # Drain its output as it comes (in large reads) so it never blocks on the pipe.
        self.runs[run] = (proc, asyncio.create_task(proc.stdout.read()))

    async def finished(self, run: str, timeout: float) -> float:
        proc, output = self.runs.pop(run)
        async with asyncio.timeout(timeout):
            topics = await output  # EOF: it has exited after the N-th reading
            end = time.monotonic()
            await proc.wait()
        got = topics.count(b"/reading\n")
        if proc.returncode != 0 or got != self.expect:
            raise RuntimeError(f"mosquitto_sub: exit {proc.returncode}, {got} readings")
        return end

    def cpu(self) -> float:
        # The per-run mosquitto_sub processes have exited and been waited for by then.
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    async def stop(self) -> None:
        for proc, output in self.runs.values():
            output.cancel()
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()


Subscriber = AiomqttSubscriber | MosquittoSubSubscriber


# -- the two contenders --------------------------------------------------------------------
async def durable_run(
    run: str, addr: tuple[str, int], n: int, sub: Subscriber, cpu: CpuMeter, timeout: float,
    history: bool = False,
) -> tuple[float, dict[str, float], list[tuple[str, bytes]]]:
    """Returns (seconds, CPU seconds used, the payloads as the daemon serialised them).
    ``history``: with the session history recording every message (its writer thread and the
    outbox holding acknowledged rows until they are stored)."""
    with tempfile.TemporaryDirectory(prefix="kapbench-state-") as state:
        raw: dict[str, Any] = {
            "state_dir": state,
            "node": {"node_id": run, "site": "bench"},
            "mqtt": {"host": addr[0], "port": addr[1], "base_topic": f"kapbench/{run}"},
            "metrics": {"enabled": False},
            "beds": [{"id": f"bed{i}"} for i in range(1, BEDS + 1)],
        }
        if "alarms" in Config.model_fields and not ALARMS:
            # The alarm engine is another consumer of readings, not part of this path
            # (bench/detector.py measures it); --alarms includes it.
            raw["alarms"] = {"enabled": False}
        if "history" in Config.model_fields:
            raw["history"] = {"enabled": history}
        cfg = parse_config(raw)
        daemon = Daemon(cfg, broker=addr)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await asyncio.wait_for(daemon.started.wait(), 10)
        assert daemon.mqtt is not None
        await asyncio.wait_for(daemon.mqtt.connected.wait(), 10)
        captured: list[tuple[str, bytes]] = []
        assert daemon.outbox is not None
        put = daemon.outbox.put

        def keep(lane: int, topic: str, payload: bytes, created: float) -> None:
            captured.append((topic, payload))
            put(lane, topic, payload, created)

        daemon.outbox.put = keep  # type: ignore[method-assign]
        assert daemon.pipeline is not None
        on_reading = daemon.pipeline
        c0, t0 = cpu.snapshot(), time.monotonic()
        for start in range(0, n, PRODUCER_BATCH):
            now = time.time()
            for i in range(start, min(n, start + PRODUCER_BATCH)):
                on_reading(synthetic(i, now))
            await asyncio.sleep(0)  # a driver yields to the loop between its readings
        t_end = await sub.finished(run, timeout)
        used = cpu.delta(c0, cpu.snapshot())
        stop.set()
        await asyncio.wait_for(task, 10)
        if daemon.fatal is not None:
            raise RuntimeError(f"daemon failed: {daemon.fatal!r}")
    return t_end - t0, used, captured


async def bare_run(
    run: str, addr: tuple[str, int], payloads: list[tuple[str, bytes]], inflight: int,
    sub: Subscriber, cpu: CpuMeter, timeout: float,
) -> tuple[float, dict[str, float]]:
    old_prefix = payloads[0][0].split("/", 2)[:2]
    prefix = "/".join(old_prefix)
    # Same bytes, only the run segment of the topic differs; add the field the drain adds.
    msgs = [(f"kapbench/{run}" + t[len(prefix):], p[:-1] + b',"historical":false}')
            for t, p in payloads]
    async with aiomqtt.Client(addr[0], addr[1], identifier=f"kapbench-bare-{run}",
                              max_inflight_messages=inflight, max_queued_outgoing_messages=0,
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        client.pending_calls_threshold = inflight + 16
        it: Iterator[tuple[str, bytes]] = iter(msgs)

        async def worker() -> None:
            for topic, payload in it:
                await client.publish(topic, payload, qos=1)

        c0, t0 = cpu.snapshot(), time.monotonic()
        async with asyncio.TaskGroup() as tg:
            for _ in range(inflight):
                tg.create_task(worker())
        t_end = await sub.finished(run, timeout)
        used = cpu.delta(c0, cpu.snapshot())
    return t_end - t0, used


class CpuMeter:
    """CPU seconds of the three processes involved, to show who is the bottleneck."""

    def __init__(self, broker: RunningBroker, sub: Subscriber) -> None:
        self.broker, self.sub = broker, sub

    def snapshot(self) -> dict[str, float]:
        return {"pub": time.process_time(), "broker": cpu_seconds(self.broker.pid),
                "sub": self.sub.cpu()}

    @staticmethod
    def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {k: b[k] - a[k] for k in a}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    inflight = OutboxConfig().inflight
    began = time.monotonic()
    deadline = began + args.budget
    rows: list[tuple[int, str, float, dict[str, float]]] = []
    skipped = 0
    last_rep = 0.0
    with mosquitto() as broker:
        addr = broker.address
        sub: Subscriber = (AiomqttSubscriber if args.subscriber == "aiomqtt"
                           else MosquittoSubSubscriber)(addr, args.readings)
        await sub.start()
        cpu = CpuMeter(broker, sub)
        try:
            for r in range(1, args.repeats + 1):
                rep_start = time.monotonic()
                if r > 1 and rep_start + last_rep > deadline:
                    skipped = args.repeats - r + 1  # stay within the time budget
                    break
                timeout = max(10.0, deadline - rep_start)
                await sub.prepare(f"d{r}")
                secs, used, payloads = await durable_run(
                    f"d{r}", addr, args.readings, sub, cpu, timeout,
                    history=args.history == "on")
                if args.only != "bare":
                    rows.append((r, "durable", secs, used))
                if args.history == "compare":
                    await sub.prepare(f"h{r}")
                    secs, used, _ = await durable_run(
                        f"h{r}", addr, args.readings, sub, cpu, timeout, history=True)
                    rows.append((r, "history", secs, used))
                if args.only == "durable":
                    last_rep = time.monotonic() - rep_start
                    continue
                await sub.prepare(f"b{r}")
                secs, used = await bare_run(f"b{r}", addr, payloads, inflight, sub, cpu, timeout)
                rows.append((r, "bare", secs, used))
                last_rep = time.monotonic() - rep_start
        finally:
            await sub.stop()
    n = args.readings
    rates = {kind: statistics.median(n / s for _, k, s, _ in rows if k == kind)
             for kind in ("durable", "history", "bare") if any(k == kind for _, k, _, _ in rows)}
    durable, bare = rates.get("durable", 0.0), rates.get("bare", 0.0)
    # Publisher CPU per reading: less sensitive than wall time to other load on the machine.
    cpu_us = {kind: round(statistics.median(c["pub"] / n * 1e6 for _, k, _, c in rows
                                            if k == kind), 1)
              for kind in rates}
    ratio = durable / bare if durable and bare else 0.0
    with_history = rates.get("history", 0.0)
    history_ratio = with_history / durable if with_history and durable else 0.0
    print(f"{n} readings per run, {BEDS} beds, Mosquitto on loopback, QoS 1 both ways, "
          f"{os.cpu_count()} CPUs")
    print(f"durable: ReadingPipeline -> SQLite WAL outbox -> MqttOwner (inflight {inflight})"
          f" -> subscriber; alarm engine {'on' if args.alarms else 'off'}; session history "
          f"{args.history}")
    if args.history == "compare":
        print("history: the durable path again with the session history on (readings and "
              "events batched into history.sqlite3 on a writer thread)")
    print(f"bare:    pre-encoded identical payloads, one aiomqtt client, {inflight} concurrent "
          "publisher tasks awaiting QoS 1 publish -> subscriber")
    print(f"subscriber: {sub.describe}; time runs from the first reading handed over to the "
          "subscriber having the last one")
    print("cpu: CPU seconds used within the timed span by the publishing process (daemon start "
          "and stop excluded), Mosquitto and the subscriber process")
    print(f"{'run':>4} {'path':<8} {'seconds':>8} {'readings/s':>11} "
          f"{'cpu pub':>8} {'broker':>7} {'sub':>7}")
    for r, kind, s, c in rows:
        print(f"{r:>4} {kind:<8} {s:>8.3f} {n / s:>11.0f} "
              f"{c['pub']:>8.2f} {c['broker']:>7.2f} {c['sub']:>7.2f}")
    if skipped:
        print(f"({skipped} of {args.repeats} repetitions skipped to stay within "
              f"--budget {args.budget:.0f} s)")
    print(f"median durable {durable:.0f}/s, bare {bare:.0f}/s, ratio {ratio:.2f}; publisher CPU "
          + ", ".join(f"{k} {v:.0f} us" for k, v in cpu_us.items()) + " per reading")
    if args.history == "compare":
        print(f"median with the session history {with_history:.0f}/s: "
              f"{history_ratio:.2f}x the durable path without it")
    return {"readings_per_s": round(durable, 1), "bare_per_s": round(bare, 1),
            "ratio": round(ratio, 3),
            "durable_cpu_us": cpu_us.get("durable"), "bare_cpu_us": cpu_us.get("bare"),
            "readings": n, "repeats": args.repeats - skipped,
            "inflight": inflight, "subscriber": args.subscriber,
            "alarms": args.alarms, "history": args.history,
            **({"history_per_s": round(with_history, 1),
                "history_ratio": round(history_ratio, 3),
                "history_cpu_us": cpu_us.get("history")} if args.history == "compare" else {})}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--aiomqtt-subscriber":
        host, port, expect = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(aiomqtt_subscriber(host, port, expect))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--readings", type=int, default=50_000, help="readings per run")
    p.add_argument("--repeats", type=int, default=3, help="runs of each path; median reported")
    p.add_argument("--budget", type=float, default=100.0,
                   help="seconds; no new repetition starts that would likely end after it")
    p.add_argument("--subscriber", choices=("mosquitto_sub", "aiomqtt"),
                   default="mosquitto_sub" if shutil.which("mosquitto_sub") else "aiomqtt",
                   help="the counting subscriber (default mosquitto_sub when installed, from "
                   "mosquitto-clients: it uses far less CPU than a Python client and so "
                   "disturbs the measurement less)")
    p.add_argument("--alarms", action="store_true",
                   help="keep the alarm engine on in the daemon (off by default: it is not part "
                   "of the durable path)")
    p.add_argument("--history", choices=("off", "on", "compare"), default="off",
                   help="session history on the durable path: off (default), on, or compare "
                   "(each repetition also runs the durable path with the history on; "
                   "history_ratio = with / without)")
    p.add_argument("--only", choices=("durable", "bare"),
                   help="report one path only (for profiling; the other's ratio is then 0)")
    args = p.parse_args()
    global ALARMS
    ALARMS = args.alarms
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = asyncio.run(bench(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

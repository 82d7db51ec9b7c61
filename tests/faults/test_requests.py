"""Malformed and oversized requests sprayed at a running ``kapmonitor run``: every request is
answered with an error (or refused by the limits), the process never exits or hangs, and
readings keep flowing."""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path
from typing import Any

import aiomqtt

from kapmonitor.commands import MAX_REQUEST_BYTES
from tests.faults.conftest import answering
from tests.helpers.daemon import clinic_config
from tests.helpers.mqtt import Broker, free_port, request, subscribe

BASE = "kapmonitor/t1"
COMMANDS = ["republish", "device/assign", "device/command", "session/start", "session/dose",
            "session/end", "alert/ack", "alert/pause", "session/symptom", "bp/measure"]


def bad_requests(rng: random.Random) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for _ in range(120):
        out.append((rng.choice(COMMANDS), rng.randbytes(rng.randint(0, 300))))
    values: list[Any] = ["x", -1, 1e308, [], {}, None, True, "\u0000", "😀" * 50]
    for cmd in COMMANDS:
        out.append((cmd, b'{"bed": "bed1", "dose_mg": Infinity}'))
        out.append((cmd, b'{"bed": "bed1", "seconds": NaN}'))
        out.append((cmd, b'{"bed": "bed1", "dose_mg": 1e999}'))
        out.append((cmd, b"[" * 5000))
        out.append((cmd, b'{"a": "' + b"z" * (MAX_REQUEST_BYTES + 1) + b'"}'))
        out.append((cmd, json.dumps({"bed": rng.choice(values), "device": rng.choice(values),
                                     "extra": rng.choice(values)}).encode()))
        out.append((cmd, b"\xff\xfe{}"))
    out.append(("x" * 60_000, b"{}"))
    out.append(("no/such/" * 30, b"{}"))
    return out


async def test_request_spray_never_stops_the_daemon(
    broker: Broker, tmp_path: Path, daemon_process: Any
) -> None:
    cfg = clinic_config(tmp_path / "state", broker.address)
    d = daemon_process(cfg)
    d.start()
    d.wait_line("started")
    addr = broker.address
    await answering(addr, BASE)  # requests sent before it subscribed are not for it
    sent = bad_requests(random.Random(11))
    async with subscribe(addr, f"{BASE}/bridge/response/#") as responses:
        async with aiomqtt.Client(*addr, identifier=f"spray-{free_port()}") as client:
            for cmd, payload in sent:
                await client.publish(f"{BASE}/bridge/request/{cmd}", payload, qos=1)
        try:
            await responses.wait_for(lambda m: len(m) >= len(sent), timeout=30)
        except AssertionError:
            from collections import Counter
            want = Counter(c if len(c) <= 64 else "_rejected" for c, _ in sent)
            got = Counter(t.split("/bridge/response/")[1] for t, _, _ in responses.messages)
            raise AssertionError(f"missing responses: {want - got}") from None
        statuses = [p.get("status") for _, p, _ in responses.messages if isinstance(p, dict)]
        assert len(statuses) == len(sent)
        assert set(statuses) <= {"error", "ok"}
        assert statuses.count("error") >= len(sent) - 10  # random bytes may be empty → ok
    assert d.alive(), "the daemon exited"
    # Still answering and still publishing readings.
    ok = await request(addr, BASE, "republish", {})
    assert ok["status"] == "ok"
    async with subscribe(addr, f"{BASE}/bed/+/reading") as readings:
        await readings.wait_for(lambda m: len(m) >= 5)
    assert d.stop(signal.SIGTERM) == 0

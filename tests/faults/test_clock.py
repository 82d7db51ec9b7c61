"""Clock jumps: the wall clock steps an hour forward and an hour back (NTP after a boot without
a real-time clock) while the daemon runs. Readings keep flowing, nothing crashes, the alarm
engine keeps evaluating on the new time line (it neither stalls for the hour nor replays it),
and a crisis NIBP after the forward step still raises its alarm at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from kapmonitor.topics import Topics
from tests.helpers.daemon import clinic_config, running
from tests.helpers.hl7 import connect_sender, nibp_oru
from tests.helpers.mqtt import Broker, free_port, request, subscribe

BASE = "kapmonitor/t1"
TOPICS = Topics(BASE)



class JumpingClock:
    """System time plus an offset the test changes; monotonic time is untouched."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def raised(msgs: list[Any], after: int) -> list[Any]:
    return [p for t, p, _ in msgs[after:] if t.endswith("bed/bed1/alert")
            and p.get("event") == "raised" and p.get("rule") == "bp_crisis"]


async def test_alarms_survive_clock_jumps(broker: Broker, tmp_path: Path) -> None:
    port = free_port()
    cfg = clinic_config(tmp_path / "state", broker.address)
    cfg["devices"].append({"id": "mon1", "driver": "hl7-mllp", "bed": "bed1", "port": port,
                           "unrouted": "bed"})
    clock = JumpingClock()
    addr = broker.address
    async with subscribe(addr, f"{BASE}/#") as sub, running(cfg, clock=clock) as daemon:
        r = await request(addr, BASE, "session/start", {"bed": "bed1", "profile": "ketamine"})
        assert r["status"] == "ok", r
        sender = await connect_sender("127.0.0.1", port)
        try:
            await asyncio.sleep(1.5)
            clock.offset += 3600.0  # forward: the engine skips ahead, no hour of catch-up
            mark = len(sub.messages)
            await sub.wait_for(lambda m: any(t.endswith("/reading") for t, _, _ in m[mark:]))
            ack = await sender.send(nibp_oru("j1", 210, 125, 150))
            assert ack.code == "AA", ack
            await sub.wait_for(lambda m: raised(m, mark), timeout=10)
            assert daemon.alarms is not None
            engine = daemon.alarms.engine
            assert engine.last_tick is not None and abs(engine.last_tick - clock.now()) < 3
            clock.offset -= 7200.0  # back, an hour behind real time
            await asyncio.sleep(3.0)
            # Still evaluating, on the new time line (not waiting for the old one to return).
            assert engine.last_tick is not None and abs(engine.last_tick - clock.now()) < 3
            mark = len(sub.messages)
            await sub.wait_for(lambda m: any(t.endswith("/reading") for t, _, _ in m[mark:]))
        finally:
            await sender.close()
        assert daemon.fatal is None

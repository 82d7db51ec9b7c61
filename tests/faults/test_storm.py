"""A reconnect storm: 12 beds × 3 devices drop off the link at the same moment and come back.
Every device reconnects on its own backoff, the daemon lives, and the reading sequence has no
gap (what was produced was queued and published)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import Broker, request, subscribe

BASE = "kapmonitor/t1"
BEDS = 12


async def test_twelve_beds_three_devices_drop_and_return(
    broker: Broker, tmp_path: Path
) -> None:
    extra: list[dict[str, Any]] = [
        {"id": f"mon{i}", "driver": "sim", "bed": f"bed{i}", "kind": "monitor", "seed": i,
         "interval": 0.5, "stale_after": 5} for i in range(1, BEDS + 1)
    ]
    cfg = clinic_config(tmp_path / "state", broker.address, beds=BEDS, interval=0.5,
                        extra_devices=extra)
    for d in cfg["devices"]:
        d["dose_at"] = None
    devices = [d["id"] for d in cfg["devices"]]
    assert len(devices) == BEDS * 3
    async with subscribe(broker.address, f"{BASE}/#") as sub, running(cfg) as daemon:

        def states(msgs: list[Any]) -> dict[str, str]:
            out: dict[str, str] = {}
            for t, p, _ in msgs:
                if t.endswith("/status") and isinstance(p, dict):
                    out[p["device"]] = p["state"]
            return out

        await sub.wait_for(lambda m: all(states(m).get(d) == "connected"
                                         for d in devices if not d.startswith("cuff")))
        # One patient per bed: a device_drop on it takes every device of the bed off the link.
        for i in range(1, BEDS + 1):
            r = await request(broker.address, BASE, "device/command", {
                "device": f"ox{i}", "command": "inject",
                "args": {"kind": "device_drop", "duration": 3}})
            assert r["status"] == "ok", r
        n = len(sub.messages)
        await sub.wait_for(lambda m: sum(1 for s in states(m[n:]).values()
                                         if s in ("disconnected", "error", "connecting"))
                           >= BEDS * 2, timeout=20)
        await sub.wait_for(lambda m: all(states(m).get(d) == "connected"
                                         for d in devices if not d.startswith("cuff")),
                           timeout=60)
        assert daemon.fatal is None
        await asyncio.sleep(1.0)
        seqs = sorted({p["seq"] for t, p, _ in sub.messages
                       if t.endswith("/reading") or t.endswith("/alert")})
        missing = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
        assert not missing, f"{len(missing)} messages lost"

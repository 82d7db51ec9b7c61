"""A simulated clinic session recorded by a real daemon, for the history and report tests."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kapmonitor.clock import ScaledClock
from kapmonitor.daemon import Daemon
from tests.helpers.daemon import running

DOSE_AT = 240.0  # simulated seconds after start
# Scripted patient events (simulated seconds after start) that make alarms to acknowledge.
EVENTS: dict[int, list[dict[str, Any]]] = {
    2: [{"kind": "desaturation", "at": 420, "duration": 240, "magnitude": 14}],
    5: [{"kind": "bradycardia", "at": 480, "duration": 180}],
    7: [{"kind": "sensor_off", "at": 500, "duration": 60}],
}
NURSE = "nurse Okafor"


def clinic(state_dir: Path, broker: tuple[str, int], beds: int, **history: Any
           ) -> dict[str, Any]:
    devices: list[dict[str, Any]] = []
    for i in range(1, beds + 1):
        common = {"bed": f"bed{i}", "seed": 40 + i, "dose_at": DOSE_AT,
                  "events": EVENTS.get(i, [])}
        devices.append({"id": f"ox{i}", "driver": "sim", "interval": 2.0, "stale_after": 30,
                        **common})
        devices.append({"id": f"cuff{i}", "driver": "sim", "kind": "cuff", "nibp_every": 60.0,
                        "stale_after": 0, **common})
    return {
        "state_dir": str(state_dir),
        "node": {"node_id": "hist", "site": "test"},
        "mqtt": {"host": broker[0], "port": broker[1], "keepalive": 5, "reconnect_max": 1.0},
        "metrics": {"enabled": False},
        "beds": [{"id": f"bed{i}"} for i in range(1, beds + 1)],
        "devices": devices,
        "history": {"flush_interval": 0.2, **history},
    }


@dataclass
class Recorded:
    state_dir: Path
    sessions: dict[str, str]  # bed → session id
    acked: list[tuple[str, str]]  # (bed, rule) acknowledged by NURSE
    daemon_alerts: list[dict[str, Any]]  # every alert event the daemon emitted


async def record_session(state_dir: Path, broker: tuple[str, int], *, beds: int = 12,
                         speed: float = 60.0, end_at: float = 1200.0,
                         reports_within: float = 180.0) -> Recorded:
    """Run a clinic of ``beds`` beds at ``speed``×: sessions start, baseline BPs, the dose,
    scripted events; every high/medium alarm is acknowledged by NURSE; sessions end at
    ``end_at`` simulated seconds."""
    clock = ScaledClock(speed)
    sim0 = clock.now()
    cfg = clinic(state_dir, broker, beds)
    emitted: list[dict[str, Any]] = []
    sessions: dict[str, str] = {}
    acked: list[tuple[str, str]] = []

    async def say(d: Daemon, command: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = await d.router.handle(command, json.dumps(body).encode(), False)
        return dict(reply)

    async with running(cfg, clock=clock) as d:
        assert d.alarms is not None
        d.alarms.event_listeners.append(emitted.append)
        for i in range(1, beds + 1):
            bed = f"bed{i}"
            sid = f"S{i:02d}-{int(sim0)}"
            reply = await say(d, "session/start", {
                "bed": bed, "profile": "esketamine" if i % 3 == 0 else "ketamine",
                "route": "in" if i % 3 == 0 else "im",
                "risk_flags": ["hypertension"] if i % 4 == 0 else [], "session_id": sid,
                "transaction": "dr Amsel"})
            assert reply["status"] == "ok", reply
            sessions[bed] = sid
        dosed = False
        while clock.now() - sim0 < end_at:
            await asyncio.sleep(0.1)
            if not dosed and clock.now() - sim0 >= DOSE_AT:
                dosed = True
                for i in range(1, beds + 1):
                    reply = await say(d, "session/dose", {"bed": f"bed{i}", "dose_mg": 50.0})
                    assert reply["status"] == "ok", reply
            for bed in sessions:
                for a in d.alarms.engine.active_alarms(bed)["alarms"]:
                    if (a["priority"] in ("high", "medium") and not a["acknowledged"]
                            and a["kind"] == "physiological"):
                        reply = await say(d, "alert/ack", {"bed": bed, "alert_id": a["alert_id"],
                                                           "by": NURSE})
                        if reply["status"] == "ok":
                            acked.append((bed, a["rule"]))
        for bed in sessions:
            reply = await say(d, "session/end", {"bed": bed, "transaction": "dr Amsel"})
            assert reply["status"] == "ok", reply
        # The daemon writes each session's report by itself when the session ends.
        pdfs = [state_dir / "reports" / sid / "report.pdf" for sid in sessions.values()]
        for _ in range(int(reports_within / 0.25)):
            if all(p.exists() for p in pdfs):
                break
            await asyncio.sleep(0.25)
    return Recorded(state_dir, sessions, acked,
                    [e for e in emitted if e.get("type") == "alert"])

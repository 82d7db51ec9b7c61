"""The history's MQTT commands: ``report`` (a path, or the PDF itself) and ``history/recent``
(the last minutes of a bed, for a station that starts in the middle of a session)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from kapmonitor.clock import ScaledClock
from kapmonitor.history.store import HistoryReader
from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import Broker, request


async def test_report_and_recent_over_mqtt(broker: Broker, tmp_path: Path) -> None:
    cfg = clinic_config(tmp_path / "state", broker.address, beds=2, interval=1.0,
                        history={"flush_interval": 0.2})
    base = "kapmonitor/t1"
    async with running(cfg, clock=ScaledClock(20)) as d:
        reply = await request(broker.address, base, "session/start",
                              {"bed": "bed1", "profile": "ketamine", "session_id": "M1"})
        assert reply["status"] == "ok", reply
        await asyncio.sleep(3.0)  # a minute of simulated time
        recent = await request(broker.address, base, "history/recent",
                               {"bed": "bed1", "minutes": 10, "by": "station-1",
                                "transaction": 7})
        assert recent["status"] == "ok" and recent["transaction"] == 7, recent
        data = recent["data"]
        assert data["bed"] == "bed1" and data["to"] - data["from"] == 600
        spo2 = data["readings"]["spo2"]
        assert len(spo2) > 20 and all(row[2] == "ox1" for row in spo2)
        assert [s["session_id"] for s in data["sessions"]] == ["M1"]
        assert any(e["type"] == "session" and e["event"] == "started" for e in data["events"])

        reply = await request(broker.address, base, "report",
                              {"session_id": "M1", "inline": True, "by": "dr Amsel"},
                              timeout=120)
        assert reply["status"] == "ok", reply
        (item,) = reply["data"]["reports"]
        assert Path(item["pdf"]).is_file() and item["bed"] == "bed1"
        assert base64.b64decode(item["pdf_base64"])[:5] == b"%PDF-"
        bad = await request(broker.address, base, "report", {"bed": "bed9"})
        assert bad["status"] == "error" and "unknown bed" in bad["error"]
        none = await request(broker.address, base, "report", {"session_id": "nope"})
        assert none["status"] == "error" and "no session" in none["error"]
        assert d.history is not None
    with HistoryReader(tmp_path / "state" / "history.sqlite3") as r:
        logged = {(c["name"], c["by"], c["status"]) for c in r.commands(0, 1e12)}
    assert ("report", "dr Amsel", "ok") in logged
    assert ("history/recent", "station-1", "ok") in logged
    assert ("report", None, "error") in logged

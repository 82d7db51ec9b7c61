"""SIGKILL during alarm transitions: the alarm state behind every published event is already
on disk, so a daemon killed right after a high alarm was raised restores exactly that alarm
(and the session) on restart, with no periodic-save window."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiomqtt

from kapmonitor.topics import Topics
from tests.faults.conftest import answering
from tests.helpers.daemon import clinic_config
from tests.helpers.hl7 import connect_sender, nibp_oru
from tests.helpers.mqtt import Broker, free_port, request, subscribe

BASE = "kapmonitor/t1"
TOPICS = Topics(BASE)


def crisis_config(tmp_path: Path, broker: Broker, port: int) -> dict[str, Any]:
    cfg = clinic_config(tmp_path / "state", broker.address)
    cfg["devices"] = [{"id": "mon1", "driver": "hl7-mllp", "bed": "bed1", "port": port,
                       "unrouted": "bed"}]
    return cfg


async def test_sigkill_right_after_a_raised_alarm_keeps_it(
    broker: Broker, tmp_path: Path, daemon_process: Any
) -> None:
    port = free_port()
    addr = broker.address
    cfg = crisis_config(tmp_path, broker, port)
    for attempt in range(3):
        d = daemon_process(cfg)
        d.start()
        d.wait_line("started")
        await answering(addr, BASE)
        if attempt == 0:
            started = await request(addr, BASE, "session/start",
                                    {"bed": "bed1", "profile": "ketamine"})
            assert started["status"] == "ok", started
        async with subscribe(addr, TOPICS.alert("bed1")) as alerts:
            sender = await connect_sender("127.0.0.1", port)
            ack = await sender.send(nibp_oru(f"c{attempt}", 205 + attempt, 125, 150))
            assert ack.code == "AA", ack

            def raised(msgs: list[Any]) -> Any:
                return [p for _, p, _ in msgs if p.get("type") == "alert"
                        and p.get("event") in ("raised", "escalated") and
                        p.get("rule") == "bp_crisis"]

            if attempt == 0:
                await alerts.wait_for(raised, timeout=15)
            else:  # already latched: a second crisis reading raises nothing new
                await asyncio.sleep(0.3)
            # Killed at once: no clean shutdown, no chance for a periodic save.
            assert d.stop(signal.SIGKILL) == -signal.SIGKILL
            await sender.close()
        # Only the restarted daemon may put the retained alarm set back.
        async with aiomqtt.Client(*addr, identifier=f"clear-{free_port()}") as client:
            await client.publish(TOPICS.alarms("bed1"), b"", qos=1, retain=True)
            await client.publish(TOPICS.session("bed1"), b"", qos=1, retain=True)
        restarted = daemon_process(cfg)
        restarted.start()
        restarted.wait_line("started")
        async with subscribe(addr, TOPICS.alarms("bed1")) as retained:
            msgs = await retained.wait_for(lambda m: [p for _, p, _ in m if isinstance(p, dict)])
            rules = [a["rule"] for a in msgs[-1]["alarms"]]
            assert "bp_crisis" in rules, msgs[-1]
        async with subscribe(addr, TOPICS.session("bed1")) as session:
            msgs = await session.wait_for(lambda m: [p for _, p, _ in m if isinstance(p, dict)])
            assert msgs[-1]["active"] is True
        assert restarted.stop(signal.SIGKILL) == -signal.SIGKILL

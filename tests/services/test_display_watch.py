"""The node's watch over the central stations: ``no_alarm_display`` when no heartbeat comes
or a medium/high alert is not confirmed in time; through the whole daemon when a real
station stops (heartbeat gone → alarm published, logged critical, annunciator run)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kapmonitor.clock import ManualClock
from kapmonitor.commands import CommandRouter
from kapmonitor.pipeline import Listeners
from kapmonitor.ports import ServicePorts
from kapmonitor.services.display_watch import DisplayWatch, DisplayWatchConfig
from kapmonitor.topics import Topics
from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import Broker, subscribe
from tests.helpers.station import running_station, station_config

BASE = "kapmonitor/t1"
TOPICS = Topics(BASE)


class Fake:
    """Durable publish, retained state, subscriptions and the directory, in lists."""

    def __init__(self) -> None:
        self.alerts: list[tuple[str, dict[str, Any]]] = []
        self.retained: dict[str, Any] = {}
        self.subs: dict[str, Callable[[str, bytes], None]] = {}
        self.mono = 1000.0
        self.spawned: list[str] = []

    def publish_alert(self, bed: str, event: Mapping[str, Any]) -> None:
        self.alerts.append((bed, dict(event)))

    def commit_alerts(
        self, events: Sequence[tuple[str, Mapping[str, Any]]], state: Mapping[str, bytes]
    ) -> None:
        self.alerts += [(bed, dict(event)) for bed, event in events]

    def load_state(self, key: str) -> bytes | None:
        return None

    def set_retained(self, topic: str, body: Mapping[str, Any] | bytes) -> None:
        self.retained[topic] = body

    def add_subscription(self, topic_filter: str, cb: Callable[[str, bytes], None]) -> None:
        self.subs[topic_filter] = cb

    def ports(self) -> ServicePorts:
        def spawn(coro: Coroutine[Any, Any, Any], name: str) -> Any:
            self.spawned.append(name)
            coro.close()

        devices: Any = SimpleNamespace(beds=["bed1", "bed2"])
        return ServicePorts(
            clock=ManualClock(5.0), boot_id="b", state_dir=Path("."), topics=TOPICS,
            readings=Listeners(), statuses=Listeners(), alerts=self, retained=self,
            commands=CommandRouter(), spawn=spawn, devices=devices,
        )


def watch(fake: Fake, **cfg: Any) -> DisplayWatch:
    return DisplayWatch(DisplayWatchConfig(required=True, **cfg), fake.ports(), fake,
                        monotonic=lambda: fake.mono)


def alert(event: str, priority: str = "high", aid: str = "a1", **kw: Any) -> dict[str, Any]:
    return {"type": "alert", "event": event, "priority": priority, "alert_id": aid,
            "rule": "spo2_below_88", "acknowledged": False, **kw}


def test_heartbeat_timeout_raises_and_a_heartbeat_clears() -> None:
    fake = Fake()
    w = watch(fake, heartbeat_timeout_s=20)
    assert set(fake.subs) == {"kapmonitor-station/+/heartbeat", TOPICS.display_confirm}
    fake.mono += 19
    w.evaluate()
    assert w.reason is None and not fake.alerts
    fake.mono += 2
    w.evaluate()
    assert w.reason is not None and "since start" in w.reason
    raised = [e for _, e in fake.alerts if e["event"] == "raised"]
    assert {b for b, _ in fake.alerts} == {"bed1", "bed2"} and len(raised) == 2
    assert raised[0]["rule"] == "no_alarm_display" and raised[0]["kind"] == "technical"
    assert raised[0]["priority"] == "high"
    assert fake.retained[TOPICS.display_state]["state"] == "no_alarm_display"
    fake.subs["kapmonitor-station/+/heartbeat"]("kapmonitor-station/desk/heartbeat", b"{}")
    w.evaluate()
    assert w.reason is None
    assert [e["event"] for _, e in fake.alerts][-2:] == ["cleared", "cleared"]
    assert fake.retained[TOPICS.display_state] == {
        "state": "ok", "reason": None, "required": True, "stations": ["desk"], "pending": 0}
    fake.mono += 21
    w.evaluate()
    assert w.reason is not None and "for 21 s" in w.reason


def test_unconfirmed_medium_or_high_alert_raises_until_confirmed() -> None:
    fake = Fake()
    w = watch(fake, heartbeat_timeout_s=600, confirm_timeout_s=15)
    w.on_alert("bed1", alert("raised", "low", "l1"))
    w.on_alert("bed1", alert("raised", "medium", "m1"))
    w.on_alert("bed1", alert("raised", "high", "h1"))
    w.on_alert("bed1", alert("raised", "high", "h2"))
    w.on_alert("bed1", alert("acknowledged", "high", "h2", acknowledged=True))
    assert set(w.pending) == {"m1", "h1"}
    fake.subs[TOPICS.display_confirm](TOPICS.display_confirm,
                                         json.dumps({"alert_id": "h1", "station": "s"}).encode())
    fake.mono += 16
    w.evaluate()
    assert w.reason is not None and "medium" in w.reason and "m1" in w.reason
    fake.subs[TOPICS.display_confirm](TOPICS.display_confirm,
                                         json.dumps({"alert_id": "m1"}).encode())
    w.evaluate()
    assert w.reason is None
    # A confirmed alert that escalates needs no second confirmation; its own events do not
    # start a watch either.
    w.on_alert("bed1", alert("escalated", "high", "m1"))
    w.on_alert("bed1", alert("raised", "high", "x", rule="no_alarm_display"))
    assert not w.pending
    fake.subs[TOPICS.display_confirm](TOPICS.display_confirm, b"not json")


async def test_station_stops_node_raises_no_alarm_display(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "annunciator.txt"
    script = tmp_path / "annunciate.py"
    script.write_text("import sys\nopen(sys.argv[1], 'a').write(' '.join(sys.argv[2:]) + '\\n')\n")
    cfg = clinic_config(tmp_path / "state", broker.address, beds=1, interval=0.5,
                        display_watch={
                            "required": True, "heartbeat_timeout_s": 3, "confirm_timeout_s": 30,
                            "annunciator_command": [sys.executable, str(script), str(marker)]})
    caplog.set_level(logging.CRITICAL, logger="kapmonitor.display_watch")
    async with subscribe(broker.address, TOPICS.everything) as sub, running(cfg) as daemon:
        assert daemon.display_watch is not None
        async with running_station(station_config(tmp_path, broker.address)):
            await sub.wait_for(lambda m: [p for t, p, _ in m if t == TOPICS.display_state
                                          and p.get("stations")])
            await asyncio.sleep(4)  # longer than the timeout: heartbeats keep it quiet
            assert daemon.display_watch.reason is None
        # The station is gone: within the timeout (+1 s evaluation) the node raises.
        raised = await sub.wait_for(lambda m: [
            p for t, p, _ in m if t == TOPICS.alert("bed1")
            and p.get("rule") == "no_alarm_display" and p.get("event") == "raised"], timeout=10)
        assert raised[0]["priority"] == "high" and "heartbeat" in raised[0]["text"]
        await sub.wait_for(lambda m: [p for t, p, r in m if t == TOPICS.display_state
                                      and p.get("state") == "no_alarm_display"])
        for _ in range(50):
            if marker.exists():
                break
            await asyncio.sleep(0.1)
        assert marker.read_text().startswith("raised no central station heartbeat")
        assert any("NO ALARM DISPLAY" in r.getMessage() for r in caplog.records
                   if r.levelno == logging.CRITICAL)

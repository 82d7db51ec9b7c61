"""Remote escalation: when rules fire (unit, manual clock), delivery with retries through
Apprise's ``json://`` target to a local HTTP receiver, and end to end in the daemon."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from kapmonitor.clock import ManualClock, ScaledClock, SystemClock
from kapmonitor.config import EscalationConfig, EscalationRule
from kapmonitor.services.escalation import AppriseNotifier, EscalationService, NotifyError
from kapmonitor.supervisor import DeviceStatus
from tests.helpers.daemon import clinic_config, running
from tests.helpers.http import Receiver
from tests.helpers.mqtt import Broker, free_port, request

BASE = "kapmonitor/t1"


class FakeNotifier:
    def __init__(self, fail: int = 0) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.fail = fail

    async def send(self, title: str, body: str, priority: str) -> None:
        if self.fail:
            self.fail -= 1
            raise NotifyError("receiver down")
        self.sent.append((title, body, priority))


def alert(event: str, alert_id: str = "a1", priority: str = "high", rule: str = "spo2_low",
          **kw: Any) -> dict[str, Any]:
    return {"type": "alert", "event": event, "alert_id": alert_id, "priority": priority,
            "rule": rule, "text": "SpO2 low", "acknowledged": event == "acknowledged", **kw}


def service(tmp_path: Path, *rules: EscalationRule, fail: int = 0
            ) -> tuple[EscalationService, FakeNotifier, ManualClock]:
    clock = ManualClock(1000.0)
    cfg = EscalationConfig(enabled=True, urls=["json://localhost"], retry_delay=0.01)
    if rules:
        cfg.rules = list(rules)
    notifier = FakeNotifier(fail)
    svc = EscalationService(cfg, notifier, clock, tmp_path / "esc.jsonl", node="n1",
                            site="clinic")
    return svc, notifier, clock


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_unacknowledged_high_alarm_fires_after_60_s(tmp_path: Path) -> None:
    svc, notifier, clock = service(tmp_path)
    svc.on_event("bed1", alert("raised"))
    svc.on_event("bed1", alert("raised", alert_id="m1", priority="medium"))
    clock.advance(59)
    assert svc.check() == []
    clock.advance(1)
    fired = svc.check()
    assert [p.key for p in fired] == ["alert:a1"]
    await settle()
    assert len(notifier.sent) == 1
    title, body, priority = notifier.sent[0]
    assert "bed bed1" in title and "not acknowledged" in title and priority == "high"
    clock.advance(600)
    assert svc.check() == []  # once per alarm


async def test_acknowledged_or_cleared_in_time_does_not_fire(tmp_path: Path) -> None:
    svc, notifier, clock = service(tmp_path)
    svc.on_event("bed1", alert("raised", alert_id="a1"))
    svc.on_event("bed1", alert("raised", alert_id="a2"))
    clock.advance(30)
    svc.on_event("bed1", alert("acknowledged", alert_id="a1"))
    svc.on_event("bed1", alert("cleared", alert_id="a2"))
    clock.advance(120)
    assert svc.check() == []


async def test_device_offline_during_a_session_only(tmp_path: Path) -> None:
    rule = EscalationRule(when="device_offline", after=120, beds=["home1"])
    svc, notifier, clock = service(tmp_path, rule)
    svc.on_status(DeviceStatus("ox9", "home1", "disconnected"))
    clock.advance(200)
    assert svc.check() == []  # no session on the bed
    svc.on_event("home1", {"type": "session", "event": "started", "patient_id": "PAT-1"})
    # Offline for 200 s already: fires as soon as a session makes it matter.
    assert [p.key for p in svc.check()] == ["device:ox9"]
    await settle()
    assert "PAT-1" not in json.dumps(notifier.sent)
    svc2, notifier2, clock2 = service(tmp_path, rule)
    svc2.on_event("home1", {"type": "session", "event": "started"})
    svc2.on_status(DeviceStatus("ox9", "home1", "stale"))
    clock2.advance(100)
    svc2.on_status(DeviceStatus("ox9", "home1", "connected"))
    clock2.advance(100)
    assert svc2.check() == []
    svc2.on_status(DeviceStatus("ox9", "home1", "disconnected"))
    svc2.on_status(DeviceStatus("ox8", "chair1", "disconnected"))  # not an at-home bed
    clock2.advance(121)
    assert [p.key for p in svc2.check()] == ["device:ox9"]
    await settle()
    assert notifier2.sent and "offline" in notifier2.sent[0][0]


async def test_alert_rule_fires_at_once(tmp_path: Path) -> None:
    rule = EscalationRule(when="alert", rule="no_alarm_display", after=0)
    svc, notifier, clock = service(tmp_path, rule)
    svc.on_event("bed1", alert("raised", rule="spo2_low"))
    svc.on_event("bed2", alert("raised", alert_id="t1", rule="no_alarm_display",
                               priority="medium"))
    assert [p.key for p in svc.check()] == ["alert:t1"]


async def test_retries_and_a_record_of_every_attempt(tmp_path: Path) -> None:
    svc, notifier, clock = service(tmp_path, EscalationRule(when="unacknowledged", after=0),
                                   fail=2)
    svc.clock = SystemClock()  # real sleeps between retries (10 ms, 20 ms)
    svc.on_event("bed1", alert("raised"))
    svc.check()
    await asyncio.wait_for(svc.wait_deliveries(), 10)
    lines = [json.loads(x) for x in (tmp_path / "esc.jsonl").read_text().splitlines()]
    assert [(x["attempt"], x["ok"]) for x in lines] == [(1, False), (2, False), (3, True)]
    assert lines[0]["error"] == "receiver down" and svc.delivered == 1


async def test_apprise_json_target_with_retries(tmp_path: Path) -> None:
    pytest.importorskip("apprise")
    with Receiver(fail_first=1) as rx:
        cfg = EscalationConfig(enabled=True, urls=[rx.url], retry_delay=0.05,
                               rules=[EscalationRule(when="unacknowledged", after=0)])
        svc = EscalationService(cfg, AppriseNotifier(cfg.all_urls()), SystemClock(),
                                tmp_path / "esc.jsonl", node="n1", site="clinic")
        svc.on_event("bed1", {"type": "session", "event": "started", "patient_id": "PAT-4711",
                              "session_id": "S-42"})
        svc.on_event("bed1", alert("raised"))
        assert len(svc.check()) == 1
        await asyncio.wait_for(svc.wait_deliveries(), 30)
        assert svc.delivered == 1
        assert rx.requests == 2 and len(rx.bodies) == 1
        body = rx.bodies[0]
        assert "bed bed1" in body["title"] and "SpO2 low" in body["message"]
        assert body["type"] == "failure"  # a high alarm
        text = json.dumps(rx.bodies)
        assert "PAT-4711" not in text and "S-42" not in text
    lines = (tmp_path / "esc.jsonl").read_text().splitlines()
    assert [json.loads(x)["ok"] for x in lines] == [False, True]


async def test_apprise_unreachable_target_is_recorded_as_failed(tmp_path: Path) -> None:
    pytest.importorskip("apprise")
    cfg = EscalationConfig(enabled=True, urls=[f"json://127.0.0.1:{free_port()}/x"],
                           retries=1, retry_delay=0.05,
                           rules=[EscalationRule(when="unacknowledged", after=0)])
    svc = EscalationService(cfg, AppriseNotifier(cfg.all_urls()), SystemClock(),
                            tmp_path / "esc.jsonl", node="n1", site="clinic")
    svc.on_event("bed1", alert("raised"))
    assert len(svc.check()) == 1
    await asyncio.wait_for(svc.wait_deliveries(), 60)
    lines = [json.loads(x) for x in (tmp_path / "esc.jsonl").read_text().splitlines()]
    assert [x["ok"] for x in lines] == [False, False] and svc.failed == 1


async def test_daemon_escalates_an_unacknowledged_alarm(broker: Broker, tmp_path: Path) -> None:
    pytest.importorskip("apprise")
    speed = 20.0
    with Receiver() as rx:
        cfg = clinic_config(tmp_path / "state", broker.address, interval=1.0)
        for d in cfg["devices"]:
            d["dose_at"] = None
        cfg["outbox"]["historical_after"] = 10 * speed
        cfg["escalation"] = {"enabled": True, "urls": [rx.url], "rules": [
            {"when": "unacknowledged", "priority": "high", "after": 20.0}]}
        async with running(cfg, clock=ScaledClock(speed)):
            addr = broker.address
            r = await request(addr, BASE, "session/start", {
                "bed": "bed1", "profile": "ketamine", "patient_id": "PAT-0815"})
            assert r["status"] == "ok", r
            inj = await request(addr, BASE, "device/command", {
                "device": "ox1", "command": "inject",
                "args": {"kind": "desaturation", "duration": 300, "magnitude": 25}})
            assert inj["status"] == "ok", inj
            for _ in range(400):
                if rx.bodies:
                    break
                await asyncio.sleep(0.1)
        assert rx.bodies, "no escalation arrived"
        assert "bed bed1" in rx.bodies[0]["title"]
        assert "PAT-0815" not in json.dumps(rx.bodies)
    record = (tmp_path / "state" / "escalation-log.jsonl").read_text().splitlines()
    assert json.loads(record[0])["ok"] is True

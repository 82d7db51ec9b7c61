"""PUBACK reason codes, against a real Mosquitto whose ACL denies the node one topic: a reading
the broker refuses (MQTT 5 PUBACK 0x87 Not authorized) is not counted as delivered, is kept as
a dead letter and made visible, and the other readings keep flowing. Transient refusals are
sent again after a back-off."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from kapmonitor.clock import ManualClock
from kapmonitor.commands import CommandRouter
from kapmonitor.metrics import Metrics
from kapmonitor.mqtt import BrokerSettings, MqttOwner
from kapmonitor.outbox import LANE_READING, Outbox
from kapmonitor.topics import Topics
from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import Broker, subscribe

BASE = "kapmonitor/t1"
DENIED = f"{BASE}/bed/bed2/reading"


@pytest.fixture
def acl_broker(tmp_path: Path) -> Any:
    """Anonymous clients read everything and write the node's tree except bed2's readings."""
    (tmp_path / "broker").mkdir()
    b = Broker(tmp_path / "broker")
    acl = tmp_path / "broker" / "acl"
    acl.write_text("topic read #\n"
                   f"topic write {BASE}/bridge/#\n"
                   f"topic write {BASE}/device/#\n"
                   f"topic write {BASE}/bed/bed1/#\n"
                   + "".join(f"topic write {BASE}/bed/bed2/{t}\n"
                             for t in ("vitals", "alert", "alarms", "session"))
                   + "topic write homeassistant/#\n")
    b.conf.write_text(b.conf.read_text() + f"acl_file {acl}\n")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def _value(daemon: Any, name: str, **labels: str) -> float:
    return float(daemon.metrics.registry.get_sample_value(name, labels) or 0.0)


async def test_a_denied_topic_is_not_delivered_but_visible_and_the_rest_flows(
    tmp_path: Path, acl_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = clinic_config(tmp_path / "state", acl_broker.address, beds=2)
    assert cfg["mqtt"].get("protocol", "5") == "5"  # Mosquitto sends 0x87 only with MQTT 5
    caplog.set_level(logging.CRITICAL, "kapmonitor.mqtt")
    async with subscribe(acl_broker.address, f"{BASE}/#") as sub, running(cfg) as daemon:
        assert daemon.outbox is not None and daemon.mqtt is not None
        outbox = daemon.outbox
        async with asyncio.timeout(15):
            while outbox.rejected < 5:
                await asyncio.sleep(0.1)
        before = len(sub.on("bed/bed1/reading"))
        rejected = outbox.rejected
        # Other readings keep flowing, and bed2's keep being refused (and only those).
        await sub.wait_for(lambda m: len(sub.on("bed/bed1/reading")) >= before + 20)
        async with asyncio.timeout(10):
            while outbox.rejected < rejected + 5:
                await asyncio.sleep(0.1)
        health = await sub.wait_for(
            lambda m: [p for p in sub.on("bridge/health") if p.get("rejected", 0) > 0])
        published = _value(daemon, "kapmonitor_mqtt_published_total", lane="reading",
                           historical="false")
        dead = _value(daemon, "kapmonitor_mqtt_rejected_total", lane="reading",
                      outcome="dead_letter")
    assert sub.on("bed/bed2/reading") == []
    assert health[-1]["rejected"] > 0
    assert dead >= rejected + 5
    # Not counted as delivered: every reading counted as published reached the subscriber.
    seen = len(sub.on("bed/bed1/reading"))
    assert 0 < published <= seen + 64  # (at most a window of acks still on their way to us)
    again = Outbox(tmp_path / "state" / "outbox.sqlite3")
    letters = again.dead_letters()
    again.close()
    assert len(letters) >= rejected + 5
    assert {(row.topic, code) for row, code, _, _ in letters} == {(DENIED, 0x87)}
    refusals = [r for r in caplog.records if "REFUSED" in r.getMessage()]
    assert refusals and refusals[0].levelno == logging.CRITICAL
    assert DENIED in refusals[0].getMessage() and "0x87" in refusals[0].getMessage()


def _owner(tmp_path: Path) -> tuple[MqttOwner, Outbox, Metrics]:
    outbox = Outbox(tmp_path / "o.db")
    metrics = Metrics()
    owner = MqttOwner(BrokerSettings("127.0.0.1", 1, "x"), outbox, ManualClock(100.0), metrics,
                      CommandRouter(), lambda s, r: {"state": s}, Topics(BASE))
    return owner, outbox, metrics


def _puback(code: int) -> ReasonCode:
    return ReasonCode(PacketTypes.PUBACK, identifier=code)


@pytest.mark.parametrize(("code", "retried"), [
    (0x80, True), (0x83, True), (0x97, True),
    (0x87, False), (0x90, False), (0x99, False),
])
def test_transient_refusals_are_retried_permanent_ones_kept_aside(
    tmp_path: Path, code: int, retried: bool
) -> None:
    owner, outbox, metrics = _owner(tmp_path)
    outbox.put(LANE_READING, f"{BASE}/bed/b/reading", b'{"i":1}', 99.0)
    (row,) = outbox.fetch(LANE_READING, 0, 10)
    delay = owner._settle(row, False, _puback(code))  # noqa: SLF001 - the PUBACK handler
    outbox.commit_acks()
    assert owner.published == 0
    outcome = "retry" if retried else "dead_letter"
    assert metrics.registry.get_sample_value(
        "kapmonitor_mqtt_rejected_total", {"lane": "reading", "outcome": outcome}) == 1.0
    if retried:
        assert delay is not None and delay > 0
        assert outbox.fetch(LANE_READING, 0, 10) == [row] and outbox.rejected == 0
        # A second refusal backs off further; a success then delivers it.
        later = owner._settle(row, False, _puback(code))  # noqa: SLF001
        assert later is not None and later > delay
        assert owner._settle(row, False, _puback(0)) is None  # noqa: SLF001
        outbox.commit_acks()
        assert owner.published == 1 and outbox.depth() == 0
    else:
        assert delay is None
        assert outbox.fetch(LANE_READING, 0, 10) == [] and outbox.rejected == 1
        assert [(r.id, c) for r, c, _, _ in outbox.dead_letters()] == [(row.id, code)]


def test_no_matching_subscribers_is_a_delivery(tmp_path: Path) -> None:
    owner, outbox, _ = _owner(tmp_path)
    outbox.put(LANE_READING, f"{BASE}/bed/b/reading", b'{"i":1}', 99.0)
    (row,) = outbox.fetch(LANE_READING, 0, 10)
    assert owner._settle(row, False, _puback(0x10)) is None  # noqa: SLF001
    outbox.commit_acks()
    assert owner.published == 1 and outbox.depth() == 0 and outbox.rejected == 0

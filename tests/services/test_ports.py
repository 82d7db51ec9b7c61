"""Services run on ports alone: the alarm service and Home Assistant discovery with in-memory
fakes of every port, no daemon, no broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from kapmonitor.alerts import AlarmEngine, Event
from kapmonitor.alerts.commands import StartArgs
from kapmonitor.clock import ManualClock
from kapmonitor.commands import CommandRouter
from kapmonitor.config import parse_config
from kapmonitor.errors import CommandError
from kapmonitor.pipeline import Listeners
from kapmonitor.ports import ServicePorts
from kapmonitor.services.alarms import AlarmService
from kapmonitor.services.homeassistant import publish_discovery
from kapmonitor.supervisor import DeviceStatus
from kapmonitor.topics import Kind, Topics
from tests.helpers.alerts import reading

TOPICS = Topics("kapmonitor/t1")


class FakeDevices:
    def __init__(self, beds: Sequence[str], on: dict[str, str], episodic: set[str]) -> None:
        self._beds = list(beds)
        self.on = on
        self.episodic = episodic
        self.commands: list[tuple[str, str]] = []

    @property
    def beds(self) -> Sequence[str]:
        return self._beds

    def bed_of(self, device: str) -> str | None:
        return self.on.get(device)

    def devices_on(self, bed: str) -> list[str]:
        return [d for d, b in self.on.items() if b == bed]

    def is_episodic(self, device: str) -> bool:
        return device in self.episodic

    async def command(self, device: str, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        self.commands.append((device, name))
        if device == "ox1":
            raise CommandError("driver 'sim' does not support command 'bp/measure'")
        return {"started": True}


class FakeOut:
    """Durable publish and retained state into lists."""

    def __init__(self) -> None:
        self.alerts: list[tuple[str, dict[str, Any]]] = []
        self.retained: dict[str, Any] = {}
        self.state: dict[str, bytes] = {}

    def publish_alert(self, bed: str, event: Mapping[str, Any]) -> None:
        self.alerts.append((bed, dict(event)))

    def commit_alerts(
        self, events: Sequence[tuple[str, Mapping[str, Any]]], state: Mapping[str, bytes]
    ) -> None:
        self.alerts.extend((bed, dict(event)) for bed, event in events)
        self.state.update(state)

    def load_state(self, key: str) -> bytes | None:
        return self.state.get(key)

    def set_retained(self, topic: str, body: Mapping[str, Any] | bytes) -> None:
        self.retained[topic] = body


def _ports(tmp_path: Path) -> tuple[ServicePorts, Listeners[Any], Listeners[DeviceStatus],
                                     FakeOut, CommandRouter, FakeDevices, list[str]]:
    readings: Listeners[Any] = Listeners()
    statuses: Listeners[DeviceStatus] = Listeners()
    out = FakeOut()
    router = CommandRouter()
    devices = FakeDevices(["bed1", "bed2"], {"ox1": "bed1", "cuff1": "bed1"}, {"cuff1"})
    spawned: list[str] = []

    def spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        spawned.append(name)
        coro.close()
        return asyncio.get_running_loop().create_future()  # type: ignore[return-value]

    ports = ServicePorts(
        clock=ManualClock(1000.0), boot_id="b00t", state_dir=tmp_path, topics=TOPICS,
        readings=readings, statuses=statuses, alerts=out, retained=out, commands=router,
        spawn=spawn, devices=devices,
    )
    return ports, readings, statuses, out, router, devices, spawned


async def _request(router: CommandRouter, name: str, body: dict[str, Any]) -> dict[str, Any]:
    return await router.handle(name, json.dumps(body).encode(), False)


async def test_alarm_service_runs_on_ports_alone(tmp_path: Path) -> None:
    ports, readings, statuses, out, router, devices, _ = _ports(tmp_path)
    service = AlarmService(ports, None)
    try:
        # Commands: every engine command and bp/measure, through the one router.
        assert set(router.names) >= {"session/start", "alert/ack", "bp/measure"}
        ok = await _request(router, "session/start", {"bed": "bed1", "profile": "ketamine"})
        assert ok["status"] == "ok" and ok["data"]["session"]["bed"] == "bed1"
        assert [e["event"] for b, e in out.alerts if b == "bed1"][:2] == ["started", "phase"]
        assert all(e["type"] == "session" for _, e in out.alerts)
        assert out.retained[TOPICS.session("bed1")]["active"] is True
        assert TOPICS.alarms("bed1") in out.retained
        bad = await _request(router, "session/start", {"bed": "bed9", "profile": "ketamine"})
        assert bad == {"status": "error", "error": "unknown bed 'bed9'"}

        # Readings and status arrive through the feeds.
        statuses(DeviceStatus(device="cuff1", bed="bed1", state="disconnected"))
        statuses(DeviceStatus(device="ox1", bed="bed1", state="disconnected"))
        for t in range(1000, 1120):
            readings(reading("bed1", "spo2", 80.0, float(t)))
            service._emit(service.tick(float(t)))  # noqa: SLF001 - the tick loop's step
        alerts = [e for _, e in out.alerts if e["type"] == "alert"]
        assert any(e["metric"] == "spo2" for e in alerts), {e["rule"] for e in alerts}
        # The episodic cuff is never "disconnected"; the oximeter is.
        texts = " ".join(str(e.get("text")) for e in alerts)
        assert "Device ox1" in texts and "Device cuff1" not in texts

        # bp/measure asks the directory, which refuses for the oximeter and starts the cuff.
        measure = await _request(router, "bp/measure", {"bed": "bed1"})
        assert measure == {"status": "ok", "data": {"device": "cuff1", "started": True}}
        assert devices.commands == [("ox1", "bp/measure"), ("cuff1", "bp/measure")]
    finally:
        service.close()
    logged = (tmp_path / "alarm-log.jsonl").read_text().splitlines()
    assert logged and all(json.loads(line)["bed"] for line in logged)
    assert json.loads(out.state["alarm-state/bed1"])["sessions"]["bed1"]
    assert not json.loads(out.state["alarm-state/bed2"])["sessions"]


async def test_attach_spawns_the_ticker_through_the_spawn_port(tmp_path: Path) -> None:
    from kapmonitor.services.alarms import attach

    ports, *_, spawned = _ports(tmp_path)
    service = attach(ports, None)
    service.close()
    assert spawned == ["alarms", "alarms-nibp"]


def test_discovery_publishes_and_removes_through_retained_state(tmp_path: Path) -> None:
    raw: dict[str, Any] = {
        "node": {"node_id": "t1"}, "homeassistant": {"enabled": True},
        "beds": [{"id": "bed1"}, {"id": "bed2"}],
    }
    out = FakeOut()
    publish_discovery(parse_config(raw), "1.0", TOPICS, out, tmp_path)
    first = set(out.retained)
    assert {TOPICS.parse(t).kind for t in first} == {Kind.HA_DISCOVERY}  # type: ignore[union-attr]
    assert len(first) == 3
    raw["beds"] = [{"id": "bed1"}]
    again = FakeOut()
    publish_discovery(parse_config(raw), "1.0", TOPICS, again, tmp_path)
    removed = [t for t, body in again.retained.items() if body == b""]
    assert removed == [TOPICS.discovery("kapmonitor_t1_bed2")]


@pytest.mark.parametrize("feed", ["readings", "statuses"])
def test_feeds_call_listeners_in_order(feed: str) -> None:
    listeners: Listeners[int] = Listeners()
    got: list[tuple[str, int]] = []
    first: Callable[[int], None] = lambda x: got.append(("a", x))  # noqa: E731
    listeners.subscribe(first)
    listeners.subscribe(lambda x: got.append(("b", x)))
    listeners(1)
    listeners(2)
    assert got == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]


async def test_an_nibp_measurement_is_evaluated_as_it_arrives(tmp_path: Path) -> None:
    """No tick runs (the manual clock stands still between whole seconds): the evaluation task,
    woken by the reading, raises the at-once alarm with the measurement's arrival time, and
    commits it with the state behind it."""
    ports, readings, _, out, router, _, _ = _ports(tmp_path)
    clock = ports.clock
    assert isinstance(clock, ManualClock)
    service = AlarmService(ports, None)
    task = asyncio.create_task(service.run_nibp())
    try:
        await _request(router, "session/start", {"bed": "bed1", "profile": "ketamine"})
        clock.advance(0.37)
        arrival = clock.now()
        for metric, value in (("nibp_sys", 212.0), ("nibp_dia", 126.0), ("nibp_mean", 155.0)):
            readings(reading("bed1", metric, value, arrival))
        assert not [e for _, e in out.alerts if e["type"] == "alert"]  # not yet: next turn
        for _ in range(3):
            await asyncio.sleep(0)
        raised = [e for _, e in out.alerts if e["type"] == "alert" and e["rule"] == "bp_crisis"]
        assert [(e["event"], e["t"]) for e in raised] == [("raised", arrival)]
        assert "bp_crisis" in out.state["alarm-state/bed1"].decode()
        assert out.retained[TOPICS.alarms("bed1")]["alarms"][0]["rule"] == "bp_crisis"
        # the tick at the next whole second does not take the measurement again
        clock.advance(1.0)
        service._emit(service.tick(clock.now()))  # noqa: SLF001 - the tick loop's step
        assert len([e for _, e in out.alerts if e.get("rule") == "bp_crisis"
                    and e["type"] == "alert"]) == 1
    finally:
        task.cancel()
        service.close()


async def test_the_one_state_document_of_earlier_versions_is_split_per_bed(tmp_path: Path
                                                                         ) -> None:
    ports, *_, router, _, _ = _ports(tmp_path)
    first = AlarmService(ports, None)
    await _request(router, "session/start", {"bed": "bed1", "profile": "ketamine"})
    await _request(router, "session/start", {"bed": "bed2", "profile": "esketamine"})
    whole = first.engine.export_state()
    first.close()
    again, *_, out, router2, _, _ = _ports(tmp_path)
    out.state["alarm-state"] = json.dumps(whole).encode()  # what an earlier version stored
    upgraded = AlarmService(again, None)
    try:
        assert upgraded.engine.session_state("bed2")["profile"] == "esketamine"
        assert out.state["alarm-state"] == b""  # read once
        assert json.loads(out.state["alarm-state/bed1"])["sessions"]["bed1"]
        assert json.loads(out.state["alarm-state/bed2"])["sessions"]["bed2"]
        refused = await _request(router2, "session/start", {"bed": "bed1", "profile": "ketamine"})
        assert refused["status"] == "error"
    finally:
        upgraded.close()
    last, *_, out3, _, _, _ = _ports(tmp_path)
    out3.state.update(out.state)
    third = AlarmService(last, None)  # from the per-bed keys now
    assert third.engine.session_state("bed1")["active"] is True
    third.close()


async def test_the_ticker_runs_on_the_engine_grid_without_drift(tmp_path: Path) -> None:
    """Started between two seconds and woken late every time, the ticker still ticks at
    every whole second (k·dt), one tick each, and a condition with a 15-s delay is declared
    at the tick its delay expires, however late the ticker woke."""
    ports, readings, _, out, router, _, _ = _ports(tmp_path)
    clock = ports.clock
    assert isinstance(clock, ManualClock)
    clock.advance(0.3)  # 1000.3
    service = AlarmService(ports, None)
    beats: list[float] = []
    service.tick_beat = lambda: beats.append(clock.now())
    task = asyncio.create_task(service.run())
    try:
        await _request(router, "session/start", {"bed": "bed1", "profile": "ketamine"})
        for _ in range(300):  # 30 s in steps of 0.1 s; each wake-up comes up to 0.1 s late
            clock.advance(0.1)
            if abs(clock.now() % 1.0 - 0.5) < 0.05:
                readings(reading("bed1", "spo2", 80.0, clock.now()))
            for _ in range(5):
                await asyncio.sleep(0)
        assert service.engine.last_tick == 1030.0
        assert len(beats) == 30  # one tick per second: none skipped, none doubled
        raised = [e for _, e in out.alerts if e["type"] == "alert" and e["event"] == "raised"
                  and e["rule"] == "spo2_below_88"]
        # the same data on an ideal grid (the engine alone, ticked at every whole second)
        ideal = AlarmEngine(service.engine.rules, ["bed1", "bed2"])
        ideal.start_session(StartArgs(bed="bed1", profile="ketamine"), 1000.3)
        expected: list[Event] = []
        for k in range(1001, 1031):
            ideal.on_reading(reading("bed1", "spo2", 80.0, k - 0.5))
            expected += ideal.tick(float(k))
        (want,) = [e.to_json()["t"] for e in expected
                   if e.to_json().get("rule") == "spo2_below_88" and e.event == "raised"]
        assert [e["t"] for e in raised] == [want]
    finally:
        task.cancel()
        service.close()

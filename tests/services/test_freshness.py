"""Freshness: ISO 8601 beside every epoch time in retained payloads, ``last_seen`` kept right
while a device streams, stale vitals marked in ``bed/<id>/vitals`` (and shown as unknown by
Home Assistant) when a device dies, HA ``expire_after`` from the stale limits, the HA alert event
entity and the optional buttons, which go through the ordinary command validation."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from kapmonitor import __version__
from kapmonitor.clock import ManualClock, with_iso_times
from kapmonitor.config import parse_config
from kapmonitor.daemon import Daemon
from kapmonitor.driver_api import DriverContext
from kapmonitor.model import Reading, measurement
from kapmonitor.services.homeassistant import discovery
from kapmonitor.supervisor import Backoff, DeviceStatus, Supervisor
from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import Broker, request, subscribe
from tests.services.test_homeassistant import render
from tests.test_supervisor import ScriptConfig, ScriptDriver, spin

BASE = "kapmonitor/t1"
BED1 = "homeassistant/device/kapmonitor_t1_bed1/config"


def test_with_iso_times_at_any_depth() -> None:
    body = {"t": 1772456709.5, "metrics": {"spo2": {"ts": 1772456709.0, "value": 97}},
            "alarms": [{"onset_t": 0, "text": "x"}], "count": 3, "flag": True}
    out = with_iso_times(body)
    assert out["t_iso"] == "2026-03-02T13:05:09.500Z"
    assert out["metrics"]["spo2"]["ts_iso"] == "2026-03-02T13:05:09.000Z"
    assert out["alarms"][0]["onset_t_iso"] == "1970-01-01T00:00:00.000Z"
    assert "count_iso" not in out and "flag_iso" not in out
    assert "t_iso" not in body  # a copy


async def test_last_seen_is_published_while_a_device_streams(tmp_path: Path) -> None:
    """The field case: a streaming device whose retained status kept last_seen null."""
    clock = ManualClock()
    driver = ScriptDriver(ScriptConfig(id="d1", bed="bed1", stale_after=5.0),
                          DriverContext(clock=clock, state_dir=tmp_path), ["stream"])
    published: list[dict[str, Any]] = []

    def on_status(st: DeviceStatus) -> None:
        published.append(st.to_json())

    sup = Supervisor(driver, clock, lambda _d: "bed1", lambda _r: None, on_status,
                     backoff=Backoff(initial=1.0, cap=8.0))
    task = asyncio.create_task(sup.run())
    await spin(clock, 40.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    connected = [p for p in published if p["state"] == "connected"]
    assert connected[-1]["last_seen"] is not None
    assert clock.now() - connected[-1]["last_seen"] <= 16.0  # refreshed, not only once
    assert len(published) < 10  # …but not with every reading
    assert datetime.fromisoformat(connected[-1]["last_seen_iso"]).timestamp() == \
        round(connected[-1]["last_seen"], 3)


def test_sweep_marks_quiet_continuous_values_but_not_nibp(tmp_path: Path) -> None:
    clock = ManualClock()
    cfg = parse_config(clinic_config(tmp_path, ("127.0.0.1", 1883)))  # ox1: stale_after 5
    daemon = Daemon(cfg, clock=clock)  # no supervisors: the bed's devices give the limit
    cache = daemon.vitals
    for metric, device in (("spo2", "ox1"), ("heart_rate", "mon7"), ("nibp_sys", "mon7")):
        cache.update(Reading.from_measurement(measurement(metric, 90), bed="bed1",
                                              device=device, received=clock.now()))
    vitals = cache.vitals["bed1"]
    clock.advance(4.0)
    cache.mark_stale(clock.now())
    assert not any(e["stale"] for e in vitals.values())
    clock.advance(2.0)
    cache.mark_stale(clock.now())
    # mon7 is not configured (a monitor behind a feed): the bed's largest stale_after applies.
    assert vitals["spo2"]["stale"] and vitals["heart_rate"]["stale"]
    assert not vitals["nibp_sys"]["stale"]
    assert vitals["spo2"]["stale_since"] == clock.now()
    cache.mark_stale(clock.now(), device="mon7")  # its link is lost: NIBP too
    assert vitals["nibp_sys"]["stale"]


async def test_retained_payloads_carry_iso_times(broker: Broker, tmp_path: Path) -> None:
    cfg = clinic_config(tmp_path / "state", broker.address)
    async with subscribe(broker.address, f"{BASE}/#") as sub, running(cfg):
        r = await request(broker.address, BASE, "session/start",
                          {"bed": "bed1", "profile": "ketamine", "route": "im"})
        assert r["status"] == "ok", r
        await sub.wait_for(lambda m: any(
            t.endswith("bed/bed1/session") and p.get("active") for t, p, _ in m))
        await sub.wait_for(lambda m: any(
            t.endswith("device/ox1/status") and p.get("last_seen") for t, p, _ in m))
        await sub.wait_for(lambda m: sub.on("bed/bed1/vitals") and sub.on("bed/bed1/alarms"))
    latest = {t: p for t, p, _ in sub.messages if not t.endswith(("/reading", "/alert"))}
    vitals = latest[f"{BASE}/bed/bed1/vitals"]
    assert vitals["t_iso"].endswith("Z") and vitals["metrics"]["spo2"]["ts_iso"].endswith("Z")
    status = latest[f"{BASE}/device/ox1/status"]
    assert status["since_iso"] and status["last_seen_iso"]
    session = latest[f"{BASE}/bed/bed1/session"]
    assert session["started_at_iso"].endswith("Z")
    alarms = latest[f"{BASE}/bed/bed1/alarms"]
    assert alarms["t"] is None or alarms["t_iso"].endswith("Z")
    for t in (vitals["t"], status["since"], session["started_at"]):
        assert abs(t - datetime.now().timestamp()) < 120


async def test_stale_vitals_after_a_device_dies(broker: Broker, tmp_path: Path) -> None:
    cfg = clinic_config(tmp_path / "state", broker.address, homeassistant={"enabled": True})
    cfg["devices"][0]["stale_after"] = 2.0  # ox1
    addr = broker.address
    async with subscribe(addr, "#") as sub, running(cfg):
        await sub.wait_for(lambda m: any(
            t == f"{BASE}/bed/bed1/vitals" and "spo2" in p["metrics"] for t, p, _ in m))
        comps = sub.on(BED1)[-1]["components"]
        live = sub.on("bed/bed1/vitals")[-1]
        assert float(render(comps["spo2"]["value_template"], live)) > 80
        r = await request(addr, BASE, "device/command", {
            "device": "ox1", "command": "inject", "args": {"kind": "device_drop",
                                                           "duration": 120}})
        assert r["status"] == "ok", r
        stale = await sub.wait_for(lambda m: [
            p for t, p, _ in m if t == f"{BASE}/bed/bed1/vitals"
            and p["metrics"]["spo2"].get("stale")])
        spo2 = stale[-1]["metrics"]["spo2"]
        assert spo2["value"] is not None and spo2["stale_since_iso"].endswith("Z")
        # Home Assistant shows "unknown" for it, and says why in the attributes.
        assert render(comps["spo2"]["value_template"], stale[-1]) == "None"
        attrs = json.loads(render(comps["spo2"]["json_attributes_template"], stale[-1]))
        assert attrs["stale"] is True and attrs["device"] == "ox1"
        assert attrs["measured_at"] == spo2["ts_iso"]
        # The cuff's spot measurement is not made stale by the oximeter's death.
        assert not stale[-1]["metrics"].get("nibp_sys", {}).get("stale")


def test_expire_after_from_stale_limits(tmp_path: Path) -> None:
    raw = clinic_config(tmp_path, ("127.0.0.1", 1883), beds=2,
                        homeassistant={"enabled": True})
    raw["devices"] = [d for d in raw["devices"] if d["id"] != "ox2"]  # bed2: a cuff only
    raw["devices"][0]["stale_after"] = 12.5
    configs = {t: json.loads(p) for t, p in discovery(parse_config(raw), __version__).items()}
    bed1 = configs[BED1]["components"]
    assert bed1["spo2"]["expire_after"] == 13 and bed1["pulse_rate"]["expire_after"] == 13
    assert "expire_after" not in bed1["nibp_sys"]
    bed2 = configs["homeassistant/device/kapmonitor_t1_bed2/config"]["components"]
    assert not any("expire_after" in c for c in bed2.values())


def alert_event(**kw: Any) -> dict[str, Any]:
    body = {"type": "alert", "event": "raised", "priority": "high", "kind": "physiological",
            "text": "SpO2 84 %", "alert_id": "b-1", "metric": "spo2", "value": 84.0,
            "historical": False, "bed": "bed1"}
    body.update(kw)
    return body


def test_alert_event_entity_and_controls(tmp_path: Path) -> None:
    off = parse_config(clinic_config(tmp_path, ("127.0.0.1", 1883),
                                     homeassistant={"enabled": True}))
    comps = json.loads(discovery(off, __version__)[BED1])["components"]
    assert not [c for c in comps.values() if c["platform"] == "button"]  # off by default
    event = comps["alarm_event"]
    assert event["platform"] == "event" and event["state_topic"] == f"{BASE}/bed/bed1/alert"
    fired = json.loads(render(event["value_template"], alert_event()))
    assert fired["event_type"] == "raised" and fired["event_type"] in event["event_types"]
    assert fired["text"] == "SpO2 84 %" and fired["priority"] == "high"
    # Session events on the same topic and replayed history do not fire it.
    assert render(event["value_template"], {"type": "session", "event": "dose"}) == ""
    assert render(event["value_template"], alert_event(historical=True)) == ""

    on = parse_config(clinic_config(tmp_path, ("127.0.0.1", 1883),
                                    homeassistant={"enabled": True, "controls": True}))
    comps = json.loads(discovery(on, __version__)[BED1])["components"]
    buttons = {cid: c for cid, c in comps.items() if c["platform"] == "button"}
    assert set(buttons) == {"ack_all", "pause_audio", "measure_bp"}
    assert all(b["retain"] is False for b in buttons.values())


async def test_buttons_pass_the_command_validation(broker: Broker, tmp_path: Path) -> None:
    cfg = clinic_config(tmp_path / "state", broker.address,
                        homeassistant={"enabled": True, "controls": True})
    async with subscribe(broker.address, "homeassistant/#") as sub, running(cfg):
        await sub.wait_for(lambda m: sub.on(BED1))
        buttons = [c for c in sub.on(BED1)[-1]["components"].values()
                   if c["platform"] == "button"]
        assert len(buttons) == 3
        for b in buttons:
            command = b["command_topic"].removeprefix(f"{BASE}/bridge/request/")
            r = await request(broker.address, BASE, command, json.loads(b["payload_press"]))
            assert r["status"] == "ok", (command, r)

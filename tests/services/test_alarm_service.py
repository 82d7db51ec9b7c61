"""The alarm engine inside the daemon, against a real Mosquitto: simulator event → alert on
``bed/<id>/alert``, ack command → acknowledged event, retained alarms/session, persistence."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiomqtt

from kapmonitor.clock import ManualClock, ScaledClock
from kapmonitor.topics import Kind, Topics
from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import Broker, request, subscribe

BASE = "kapmonitor/t1"
TOPICS = Topics(BASE)
SPEED = 20.0  # simulated seconds per real second: alarm delays of 10-60 s take a few seconds


def alerts(msgs: list[tuple[str, Any, bool]], bed: str = "bed1") -> list[dict[str, Any]]:
    return [p for t, p, _ in msgs if t == TOPICS.alert(bed) and p.get("type") == "alert"]


def config(tmp_path: Path, broker: Broker) -> dict[str, Any]:
    cfg = clinic_config(tmp_path / "state", broker.address, beds=2, interval=1.0)
    for d in cfg["devices"]:
        d["dose_at"] = None
        if d["driver"] == "sim" and d.get("kind") == "cuff":
            d["nibp_every"] = 60.0
    cfg["outbox"]["historical_after"] = 10 * SPEED
    return cfg


async def test_desaturation_alert_and_ack_end_to_end(broker: Broker, tmp_path: Path) -> None:
    addr = broker.address
    async with subscribe(addr, TOPICS.everything) as sub, running(
        config(tmp_path, broker), clock=ScaledClock(SPEED)
    ):
        for bed in ("bed1", "bed2"):
            r = await request(addr, BASE, "session/start",
                              {"bed": bed, "profile": "ketamine", "route": "im"})
            assert r["status"] == "ok", r
            assert r["data"]["session"]["phase"] == "pre_dose"
        await sub.wait_for(lambda m: any(
            t.endswith("bed/bed1/session") and p.get("phase") == "pre_dose" for t, p, _ in m))
        dose = await request(addr, BASE, "session/dose", {"bed": "bed1", "dose_mg": 50})
        assert dose["status"] == "ok", dose

        # The simulated patient on bed 1 desaturates deeply for 3 simulated minutes.
        inj = await request(addr, BASE, "device/command", {
            "device": "ox1", "command": "inject",
            "args": {"kind": "desaturation", "duration": 180, "magnitude": 20}})
        assert inj["status"] == "ok", inj

        def high_spo2(msgs: list) -> list[dict[str, Any]]:
            return [a for a in alerts(msgs) if a["event"] == "raised"
                    and a["priority"] == "high" and a["metric"] == "spo2"]

        raised = (await sub.wait_for(high_spo2, timeout=30))[0]
        assert raised["kind"] == "physiological" and raised["value"] < 88
        assert raised["historical"] is False and "seq" in raised and raised["bed"] == "bed1"
        assert not alerts(sub.messages, "bed2") or all(
            a["metric"] != "spo2" for a in alerts(sub.messages, "bed2"))

        # The retained active set shows it.
        def in_active_set(msgs: list) -> bool:
            return any(t.endswith("bed/bed1/alarms") and any(
                a["alert_id"] == raised["alert_id"] for a in p["alarms"]) for t, p, _ in msgs)

        await sub.wait_for(in_active_set)

        ack = await request(addr, BASE, "alert/ack",
                            {"bed": "bed1", "alert_id": raised["alert_id"], "by": "nurse-1",
                             "transaction": "a1"})
        assert ack["status"] == "ok" and ack["transaction"] == "a1"
        assert raised["alert_id"] in ack["data"]["acknowledged"]
        acked = await sub.wait_for(lambda m: [
            a for a in alerts(m) if a["event"] == "acknowledged"
            and a["alert_id"] == raised["alert_id"]])
        assert acked[0]["acknowledged"] is True

        bad = await request(addr, BASE, "alert/ack", {"bed": "bed1", "alert_id": "nope"})
        assert bad["status"] == "error" and "no open alert" in bad["error"]
        bad = await request(addr, BASE, "session/start", {"bed": "bed1", "profile": "lsd"})
        assert bad["status"] == "error"
        bad = await request(addr, BASE, "alert/ack", {"bed": "bed1", "all": True, "x": 1})
        assert bad["status"] == "error" and "x: unknown field" in bad["error"]


async def test_session_survives_restart_and_log_is_appended(
    broker: Broker, tmp_path: Path
) -> None:
    addr = broker.address
    cfg = config(tmp_path, broker)
    async with running(cfg, clock=ScaledClock(SPEED)):
        r = await request(addr, BASE, "session/start",
                          {"bed": "bed2", "profile": "esketamine", "route": "in",
                           "risk_flags": ["first_session"]})
        session_id = r["data"]["session"]["session_id"]
        await request(addr, BASE, "session/dose", {"bed": "bed2"})
    # The state is committed in the outbox database together with the events, per bed.
    with contextlib.closing(sqlite3.connect(tmp_path / "state" / "outbox.sqlite3")) as db:
        (raw,) = db.execute("SELECT value FROM state WHERE key = 'alarm-state/bed2'").fetchone()
        other = db.execute("SELECT value FROM state WHERE key = 'alarm-state/bed1'").fetchone()
    assert session_id in json.dumps(json.loads(raw))
    assert other is None or session_id not in other[0].decode()
    log_lines = (tmp_path / "state" / "alarm-log.jsonl").read_text().splitlines()
    assert any(json.loads(ln).get("event") == "phase" for ln in log_lines)

    # Drop the first run's retained session so only the restarted daemon can put one back.
    async with aiomqtt.Client(*addr, identifier="test-clear-retained") as client:
        await client.publish(TOPICS.session("bed2"), b"", qos=1, retain=True)

    async with running(cfg, clock=ScaledClock(SPEED)), \
            subscribe(addr, TOPICS.session("bed2")) as sub:
        msgs = await sub.wait_for(lambda m: [p for _, p, _ in m
                                             if isinstance(p, dict) and p.get("active")])
        assert msgs[-1]["session_id"] == session_id
        assert msgs[-1]["profile"] == "esketamine" and msgs[-1]["t0"] is not None
        assert msgs[-1]["risk_flags"] == ["first_session"]
        # The restored session is live in the engine: it refuses a second start and counts on.
        again_start = await request(addr, BASE, "session/start",
                                    {"bed": "bed2", "profile": "ketamine"})
        assert again_start["status"] == "error" and "already has an active session" in (
            again_start["error"])
        second = await request(addr, BASE, "session/dose", {"bed": "bed2"})
        assert second["status"] == "ok", second
        assert len(second["data"]["session"]["doses"]) == 2
    again = (tmp_path / "state" / "alarm-log.jsonl").read_text().splitlines()
    assert again[: len(log_lines)] == log_lines  # append-only


async def test_bp_measure(broker: Broker, tmp_path: Path) -> None:
    addr = broker.address
    cfg = config(tmp_path, broker)
    cfg["devices"] = [d for d in cfg["devices"] if d["id"] != "cuff2"]
    async with running(cfg, clock=ScaledClock(SPEED)) as daemon:
        seen: list[Any] = []
        daemon.readings.subscribe(seen.append)
        await asyncio.sleep(0.5)
        seen.clear()
        ok = await request(addr, BASE, "bp/measure", {"bed": "bed1"})
        assert ok["status"] == "ok" and ok["data"]["device"] == "cuff1"
        for _ in range(50):
            if any(r.metric == "nibp_sys" for r in seen):
                break
            await asyncio.sleep(0.05)
        assert any(r.metric == "nibp_sys" and r.bed == "bed1" for r in seen)
        no = await request(addr, BASE, "bp/measure", {"bed": "bed2"})
        assert no["status"] == "error" and "measure by hand" in no["error"]
        unknown = await request(addr, BASE, "bp/measure", {"bed": "bed9"})
        assert unknown["status"] == "error" and "unknown bed" in unknown["error"]


async def test_staff_entered_symptom_end_to_end(broker: Broker, tmp_path: Path) -> None:
    """session/symptom over MQTT: advisory and a BP request at once; a raised BP from the
    remote-start cuff → high bp_with_symptom; session/symptom_clear then ack ends it."""
    addr = broker.address
    async with subscribe(addr, TOPICS.everything) as sub, running(
        config(tmp_path, broker), clock=ScaledClock(SPEED)
    ):
        await request(addr, BASE, "session/start", {"bed": "bed1", "profile": "ketamine"})
        sym = await request(addr, BASE, "session/symptom",
                            {"bed": "bed1", "symptom": "chest_pain", "by": "nurse-2"})
        assert sym["status"] == "ok" and sym["data"]["bp_requested"] is True, sym
        await sub.wait_for(lambda m: [a for a in alerts(m) if a["rule"] == "symptom_reported"])
        await sub.wait_for(lambda m: [
            p for t, p, _ in m if t == TOPICS.alert("bed1")
            and p.get("event") == "bp_due" and p.get("item") == "symptom"])
        await sub.wait_for(lambda m: [p for t, p, _ in m if t == TOPICS.session("bed1")
                                      and p.get("symptoms")])
        bad = await request(addr, BASE, "session/symptom", {"bed": "bed1", "symptom": "itch"})
        assert bad["status"] == "error" and "unknown symptom" in bad["error"]

        # A hypertensive surge on the simulated patient, measured on request.
        inj = await request(addr, BASE, "device/command", {
            "device": "cuff1", "command": "inject",
            "args": {"kind": "surge", "duration": 3600, "magnitude": 70}})
        assert inj["status"] == "ok", inj
        assert (await request(addr, BASE, "bp/measure", {"bed": "bed1"}))["status"] == "ok"
        high = await sub.wait_for(lambda m: [
            a for a in alerts(m) if a["rule"] == "bp_with_symptom" and a["event"] == "raised"],
            timeout=20)
        assert high[0]["priority"] == "high" and high[0]["value"] >= 160

        clear = await request(addr, BASE, "session/symptom_clear", {"bed": "bed1", "all": True})
        assert clear["status"] == "ok" and clear["data"]["cleared"] == ["chest_pain"]
        await sub.wait_for(lambda m: [a for a in alerts(m) if a["rule"] == "bp_with_symptom"
                                      and a["event"] == "latched"])
        await request(addr, BASE, "alert/ack", {"bed": "bed1", "alert_id": "bp_with_symptom"})
        await sub.wait_for(lambda m: [a for a in alerts(m) if a["rule"] == "bp_with_symptom"
                                      and a["event"] == "cleared"])


async def advance(clock: ManualClock, seconds: float) -> None:
    """Run simulated time second by second, letting every task react in between."""
    for _ in range(int(seconds)):
        clock.advance(1.0)
        for _ in range(3):
            await asyncio.sleep(0)
        await asyncio.sleep(0.001)


async def test_simulator_events_produce_the_expected_alerts(
    broker: Broker, tmp_path: Path
) -> None:
    """Desaturation → high SpO2 alarm; 1-4 s motion-artefact dips → no physiological SpO2
    alarm; hypertensive surge → BP crisis alarm (per bed, through the whole daemon, on a
    simulated clock so the result does not depend on how busy the machine is)."""
    cfg = clinic_config(tmp_path / "state", broker.address, beds=3, interval=1.0)
    events = {"bed1": [{"kind": "desaturation", "at": 120, "duration": 150, "magnitude": 18}],
              "bed2": [{"kind": "artifact", "at": 60, "duration": 420}],
              "bed3": [{"kind": "surge", "at": 60, "duration": 900, "magnitude": 90}]}
    for d in cfg["devices"]:
        cuff = d["id"].startswith("cuff")
        d.update(dose_at=0.0, events=events[d["bed"]], stale_after=0 if cuff else 120)
        if cuff:
            d["nibp_every"] = 60.0
    cfg["outbox"]["historical_after"] = 1e6
    addr = broker.address
    clock = ManualClock(start=1_800_000_000.0)
    async with subscribe(addr, TOPICS.wildcard(Kind.BED_ALERT)) as sub, running(cfg, clock=clock):
        for bed in ("bed1", "bed2", "bed3"):
            for cmd, body in (("session/start", {"profile": "ketamine", "route": "im"}),
                              ("session/dose", {})):
                r = await request(addr, BASE, cmd, {"bed": bed, **body})
                assert r["status"] == "ok", r
        await advance(clock, 600)

        def done(msgs: list) -> bool:
            b1 = [a for a in alerts(msgs, "bed1") if a["metric"] == "spo2"
                  and a["priority"] == "high"]
            b3 = [a for a in alerts(msgs, "bed3") if a["rule"].startswith("bp_crisis")]
            return bool(b1 and b3)

        await sub.wait_for(done, timeout=20)
        b2 = [a for a in alerts(sub.messages, "bed2")
              if a["kind"] == "physiological" and a["metric"] in ("spo2", "pulse_rate")
              and a["priority"] in ("high", "medium")]
        assert not b2, [(a["event"], a["rule"], a["value"], a["text"]) for a in b2]
        crisis = next(a for a in alerts(sub.messages, "bed3") if a["rule"].startswith("bp_crisis"))
        assert crisis["priority"] == "high" and crisis["value"] >= 180
        desat = next(a for a in alerts(sub.messages, "bed1") if a["metric"] == "spo2")
        assert clock.now() - 600 + 120 <= desat["t"] <= clock.now() - 600 + 270


async def test_events_after_the_log_closed_do_not_kill_the_daemon(
    broker: Broker, tmp_path: Path
) -> None:
    """At shutdown the alarm log closes while a command may still produce events (a
    regression: writing them to the closed log raised and stopped the daemon with a fatal
    error). The events must still be published."""
    async with subscribe(broker.address, TOPICS.alert("bed1")) as sub, running(
        config(tmp_path, broker), clock=ScaledClock(SPEED)
    ) as daemon:
        assert daemon.alarms is not None
        daemon.alarms._log_file.close()  # noqa: SLF001 - break the log on purpose
        r = await request(broker.address, BASE, "session/start",
                          {"bed": "bed1", "profile": "ketamine"})
        assert r["status"] == "ok", r
        await sub.wait_for(lambda m: any(p.get("event") == "started" for _, p, _ in m))
        await asyncio.sleep(1.5)  # the ticker keeps running too
    assert daemon.fatal is None

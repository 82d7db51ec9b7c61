"""The daemon against a real Mosquitto: topics, payloads, retained state, outages, commands."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kapmonitor.topics import Kind, Topics
from tests.helpers.daemon import clinic_config, kill, running, spawn_daemon, write_toml
from tests.helpers.mqtt import Broker, request, subscribe

BASE = "kapmonitor/t1"
TOPICS = Topics(BASE)


async def test_topics_and_payloads(broker: Broker, tmp_path: Path) -> None:
    async with subscribe(broker.address, TOPICS.everything) as sub, running(
        clinic_config(tmp_path / "state", broker.address)
    ) as daemon:
        def have_all(msgs: list) -> bool:
            readings = [p for t, p, _ in msgs if t.endswith("/reading")]
            metrics = {r["metric"] for r in readings}
            return {"spo2", "pulse_rate", "nibp_sys", "nibp_dia", "nibp_mean"} <= metrics and any(
                t.endswith("/vitals") for t, _, _ in msgs)

        await sub.wait_for(have_all)
        state = sub.on("bridge/state")[0]
        assert state["state"] == "online" and state["version"] and "outbox" in state

        status = sub.on("device/ox1/status")[-1]
        assert status["state"] == "connected" and status["bed"] == "bed1"
        assert status["battery"] == 100.0 and status["grade"] == "simulated"

        readings = [p for t, p, r in sub.messages if t == TOPICS.reading("bed1")]
        assert all(not r for t, _, r in sub.messages if t.endswith("/reading"))
        spo2 = next(r for r in readings if r["metric"] == "spo2")
        assert spo2["unit"] == "%" and spo2["mdc"] == 150456 and spo2["loinc"] == "59408-5"
        assert spo2["bed"] == "bed1" and spo2["device"] == "ox1"
        assert isinstance(spo2["value"], float) and 80 < spo2["value"] <= 100
        assert spo2["quality"] == [] and spo2["boot_id"] == daemon.boot_id
        assert spo2["msg_id"] == f"{daemon.boot_id}-{spo2['seq']}"
        assert isinstance(spo2["ts"], float) and spo2["historical"] is False
        sys_ = next(r for r in readings if r["metric"] == "nibp_sys")
        assert sys_["unit"] == "mm[Hg]" and sys_["mdc"] == 150021 and sys_["loinc"] == "8480-6"
        seqs = [r["seq"] for r in readings]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

        vitals = sub.on("bed/bed1/vitals")[-1]
        assert vitals["bed"] == "bed1" and vitals["metrics"]["spo2"]["unit"] == "%"

    # Retained state is there for a late joiner.
    async with subscribe(broker.address, TOPICS.everything) as late:
        await late.wait_for(lambda m: any(t.endswith("bridge/state") for t, _, _ in m))
        await asyncio.sleep(0.3)
        retained = {t for t, _, r in late.messages if r}
        assert {TOPICS.bridge_state, TOPICS.device_status("ox1"),
                TOPICS.device_status("cuff1"), TOPICS.vitals("bed1")} <= retained
        assert not any(t.endswith("/reading") for t in retained)
        states = late.on("bridge/state")
        assert states[-1]["reason"] == "shutdown", (states, broker.log_tail())


async def test_stop_during_reconnect_still_ends_with_shutdown(
    broker: Broker, tmp_path: Path
) -> None:
    """A clean stop while the owner is between connections must not leave the will's
    offline/lost (or a stale online) as the retained bridge state."""
    cfg = clinic_config(tmp_path / "state", broker.address)
    cfg["mqtt"]["reconnect_max"] = 30.0  # without the shutdown retry, the next try is far off
    async with running(cfg) as daemon:
        assert daemon.mqtt is not None
        broker.stop()
        for _ in range(200):
            if not daemon.mqtt.connected.is_set():
                break
            await asyncio.sleep(0.05)
        assert not daemon.mqtt.connected.is_set()
        await asyncio.sleep(1.5)  # let a retry fail against the dead broker; backoff grows
        broker.start()
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5.0
    async with subscribe(broker.address, TOPICS.bridge_state) as late:
        await late.wait_for(lambda m: m)
        await asyncio.sleep(0.2)
        assert late.messages[-1][1]["reason"] == "shutdown", (late.messages, broker.log_tail())


async def test_broker_outage_loses_nothing(broker: Broker, tmp_path: Path) -> None:
    cfg = clinic_config(tmp_path / "state", broker.address)
    readings = TOPICS.wildcard(Kind.BED_READING)
    async with subscribe(broker.address, readings, reconnect=True) as sub, running(cfg) as daemon:
        await sub.wait_for(lambda m: len(m) > 20)
        broker.stop()
        outage_start = time.time()
        await asyncio.sleep(3.0)
        assert daemon.publisher is not None
        produced_during = daemon.publisher.seq
        assert daemon.outbox is not None and daemon.outbox.depth() > 20  # backlog visible
        broker.start()
        restarted = time.time()
        # Wait until every seq produced so far has arrived.
        target = daemon.publisher.seq + 5

        def complete(msgs: list) -> bool:
            seqs = {p["seq"] for _, p, _ in msgs}
            return max(seqs, default=0) >= target

        await sub.wait_for(complete, timeout=30)
        await sub.wait_for(lambda m: any(p["received"] > restarted + 2.5 for _, p, _ in m))
        payloads = [p for _, p, _ in sub.messages]
        seqs = sorted({p["seq"] for p in payloads})
        assert seqs == list(range(1, seqs[-1] + 1)), "gap in seq: a reading was lost"
        backlog = [p for p in payloads if outage_start + 0.5 < p["received"] < restarted - 0.5]
        assert backlog and all(p["historical"] for p in backlog)
        assert any(p["seq"] <= produced_during and p["historical"] for p in payloads)
        live = [p for p in payloads if p["received"] > restarted + 2]
        assert live and not any(p["historical"] for p in live)

    # Retained vitals are live values, never the replayed backlog.
    async with subscribe(broker.address, TOPICS.vitals("bed1")) as late:
        msgs = await late.wait_for(lambda m: m)
        assert msgs[-1][1]["metrics"]["spo2"]["ts"] > restarted


async def test_commands_and_errors(broker: Broker, tmp_path: Path) -> None:
    cfg = clinic_config(tmp_path / "state", broker.address, beds=2)
    async with running(cfg) as daemon, subscribe(broker.address, TOPICS.everything) as sub:
        addr = broker.address
        ok = await request(addr, BASE, "device/assign",
                           {"device": "ox1", "bed": "bed2", "transaction": "t-1"})
        assert ok == {"status": "ok", "transaction": "t-1",
                      "data": {"device": "ox1", "bed": "bed2", "previous": "bed1"}}
        await sub.wait_for(lambda m: any(
            t.endswith("bed/bed2/reading") and p["device"] == "ox1" for t, p, _ in m))
        await sub.wait_for(lambda m: any(
            t.endswith("device/ox1/status") and p["bed"] == "bed2" for t, p, _ in m))
        assert daemon.devices.bed_of("ox1") == "bed2"

        n = len(sub.messages)
        rep = await request(addr, BASE, "republish", {"transaction": 7})
        assert rep["status"] == "ok" and rep["transaction"] == 7 and rep["data"]["topics"] >= 5
        await sub.wait_for(lambda m: any(
            t.endswith("device/cuff2/status") for t, _, _ in m[n:]))

        cases: list[tuple[str, dict[str, Any], str]] = [
            ("device/assign", {"device": "nope", "bed": "bed1"}, "unknown device"),
            ("device/assign", {"device": "ox1", "bed": "bed9"}, "unknown bed"),
            ("device/assign", {"device": "ox1", "bed": "bed1", "colour": 1},
             "colour: unknown field"),
            ("device/assign", {"device": "ox1"}, "bed: required field is missing"),
            ("no/such", {}, "unknown command"),
            ("device/command", {"device": "ox1", "command": "fly"}, "does not support"),
        ]
        for command, body, expect in cases:
            resp = await request(addr, BASE, command, {**body, "transaction": "x"})
            assert resp["status"] == "error" and expect in resp["error"], (command, resp)
            assert resp["transaction"] == "x"
        bad = await request(addr, BASE, "republish", None, raw=b"{not json")
        assert bad["status"] == "error" and "malformed JSON" in bad["error"]
        arr = await request(addr, BASE, "republish", [1, 2])
        assert arr["status"] == "error" and "JSON object" in arr["error"]
        ret = await request(addr, BASE, "republish", {"transaction": 1}, retain=True)
        assert ret["status"] == "error" and "retain" in ret["error"]
        # Still alive and publishing after all that.
        n = len(sub.messages)
        await sub.wait_for(lambda m: any(t.endswith("/reading") for t, _, _ in m[n:]))


async def test_device_command_reaches_driver(broker: Broker, tmp_path: Path) -> None:
    cfg = clinic_config(tmp_path / "state", broker.address)
    async with running(cfg) as daemon:
        resp = await request(broker.address, BASE, "device/command",
                             {"device": "ox1", "command": "inject",
                              "args": {"kind": "sensor_off", "duration": 60}})
        assert resp["status"] == "ok" and resp["data"]["kind"] == "sensor_off"
        seen: list = []
        daemon.readings.subscribe(seen.append)
        for _ in range(100):
            if any(r.metric == "spo2" for r in seen):
                break
            await asyncio.sleep(0.05)
        spo2 = [r for r in seen if r.metric == "spo2"]
        assert spo2 and spo2[-1].value is None and "sensor_off" in spo2[-1].quality


async def test_metrics_endpoint(broker: Broker, tmp_path: Path) -> None:
    async with running(clinic_config(tmp_path / "state", broker.address)) as daemon:
        await asyncio.sleep(1.0)
        url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        body = text.decode()
        assert 'kapmonitor_readings_total{device="ox1",metric="spo2"}' in body
        assert "kapmonitor_mqtt_connected 1.0" in body
        assert 'kapmonitor_device_state{device="ox1",state="connected"} 1.0' in body
        assert 'kapmonitor_outbox_messages{lane="reading"}' in body
        assert "kapmonitor_publish_latency_seconds_bucket" in body


async def test_outbox_survives_restart_without_broker(broker: Broker, tmp_path: Path) -> None:
    """Readings taken while no broker was reachable are replayed by the next run."""
    broker.stop()
    cfg = clinic_config(tmp_path / "state", broker.address)
    async with running(cfg, connected=False) as first:
        await asyncio.sleep(1.0)
        assert first.publisher is not None
        queued = first.publisher.seq
        first_boot = first.boot_id
    assert queued > 10
    broker.start()
    async with subscribe(broker.address, TOPICS.wildcard(Kind.BED_READING)) as sub, running(cfg):
        def old_done(msgs: list) -> bool:
            return {p["seq"] for _, p, _ in msgs if p["boot_id"] == first_boot} == set(
                range(1, queued + 1))

        await sub.wait_for(old_done, timeout=20)
        old = [p for _, p, _ in sub.messages if p["boot_id"] == first_boot]
        assert all(p["historical"] for p in old)


def _wait_line(proc, needle: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if needle in line:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}")
    raise AssertionError(f"no {needle!r} in daemon output")


@pytest.mark.parametrize("sig,state,reason", [(signal.SIGKILL, "offline", "lost"),
                                              (signal.SIGTERM, "offline", "shutdown")])
async def test_bridge_state_on_kill_and_term(
    broker: Broker, tmp_path: Path, sig: int, state: str, reason: str
) -> None:
    path = write_toml(tmp_path / "k.toml", clinic_config(tmp_path / "state", broker.address))
    proc = spawn_daemon(path)
    try:
        await asyncio.to_thread(_wait_line, proc, "connected to broker")
        async with subscribe(broker.address, TOPICS.bridge_state) as sub:
            await sub.wait_for(lambda m: m and m[-1][1]["state"] == "online")
            t0 = time.monotonic()
            kill(proc, sig)
            rc = await asyncio.to_thread(proc.wait, 10)
            took = time.monotonic() - t0
            msgs = await sub.wait_for(
                lambda m: [p for _, p, _ in m if p["state"] == "offline"], timeout=15)
            assert msgs[-1]["reason"] == reason
        if sig == signal.SIGTERM:
            assert rc == 0 and took < 5.0
        # The offline state is retained for late joiners.
        async with subscribe(broker.address, TOPICS.bridge_state) as late:
            msgs = await late.wait_for(lambda m: m)
            assert msgs[-1][1]["state"] == state and msgs[-1][2] is True
    finally:
        kill(proc)
        proc.wait(5)


def test_second_instance_refused(tmp_path: Path) -> None:
    """Two daemons on one state directory would corrupt each other's outbox."""

    async def main() -> None:
        cfg = clinic_config(tmp_path / "state", ("127.0.0.1", 1))
        async with running(cfg, connected=False):
            with pytest.raises(RuntimeError, match="another kapmonitor"):
                async with running(cfg, connected=False):
                    pass

    asyncio.run(main())

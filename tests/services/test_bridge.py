"""The zigbee2mqtt-style bridge topics against a real Mosquitto: ``bridge/state`` only on change,
``bridge/info`` without secrets, ``bridge/devices``, ``bridge/health``, ``bridge/event`` (device
joined/left, config changed), and ``kapmonitor status`` reading them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from kapmonitor.services.bridge import redact
from kapmonitor.status import render
from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import Broker, request, subscribe

BASE = "kapmonitor/t1"
KAPMONITOR = str(Path(sys.executable).parent / "kapmonitor")


def events(msgs: list[tuple[str, Any, bool]], kind: str) -> list[dict[str, Any]]:
    return [p for t, p, _ in msgs if t == f"{BASE}/bridge/event" and p["type"] == kind]


def test_redact_hides_secret_fields_at_any_depth() -> None:
    data = {"mqtt": {"password": "s3cret", "username": "u", "password_file": None},
            "devices": [{"id": "x", "passkey": 123456}]}
    assert redact(data) == {"mqtt": {"password": "***", "username": "u",
                                     "password_file": None},
                            "devices": [{"id": "x", "passkey": "***"}]}


async def test_bridge_topics(broker: Broker, tmp_path: Path) -> None:
    cfg = clinic_config(tmp_path / "state", broker.address)
    cfg["mqtt"]["username"] = "kap"
    cfg["mqtt"]["password"] = "s3cret-pw"
    async with subscribe(broker.address, f"{BASE}/bridge/#") as sub, running(cfg):
        await asyncio.sleep(3.0)  # readings flow and the outbox depth moves meanwhile
        states = sub.on("bridge/state")
        assert len(states) == 1 and states[0]["state"] == "online"  # once, not every 2-3 s
        assert "outbox" not in states[0]
        assert abs(datetime.fromisoformat(states[0]["t_iso"]).timestamp() - states[0]["t"]) < 0.01

        info = sub.on("bridge/info")[-1]
        assert info["node"] == "t1" and info["version"] and len(info["config_hash"]) == 16
        assert info["config"]["beds"] == [{"id": "bed1", "label": None}]
        assert info["config"]["mqtt"]["password"] == "***"
        assert "s3cret-pw" not in str(sub.messages)

        devices = {d["id"]: d for d in sub.on("bridge/devices")[-1]}
        assert set(devices) == {"ox1", "cuff1"}
        assert devices["ox1"]["driver"] == "sim" and devices["ox1"]["bed"] == "bed1"
        assert devices["ox1"]["state"] == "connected"
        assert devices["ox1"]["since_iso"].endswith("Z")

        health = sub.on("bridge/health")[-1]
        assert health["beds"] == 1 and "outbox" in health

        joined = {e["data"]["id"] for e in events(sub.messages, "device_joined")}
        assert joined == {"ox1", "cuff1"}
        assert events(sub.messages, "started")
        assert not events(sub.messages, "config_changed")  # the first run has nothing to compare

        # The oximeter drops off the link: it leaves, and bridge/devices says so at once.
        r = await request(broker.address, BASE, "device/command", {
            "device": "ox1", "command": "inject",
            "args": {"kind": "device_drop", "duration": 60}})
        assert r["status"] == "ok", r
        left = await sub.wait_for(lambda m: events(m, "device_left"))
        assert left[0]["data"]["id"] == "ox1" and left[0]["data"]["state"] == "error"
        assert left[0]["t_iso"].endswith("Z")
        await sub.wait_for(lambda m: any(
            d["id"] == "ox1" and d["state"] == "error" for d in sub.on("bridge/devices")[-1]))
        assert len(sub.on("bridge/state")) == 1

    # A restart with another config announces what changed.
    cfg2 = clinic_config(tmp_path / "state", broker.address, beds=2)
    async with subscribe(broker.address, f"{BASE}/bridge/event") as sub, running(cfg2):
        changed = await sub.wait_for(lambda m: events(m, "config_changed"))
        assert changed[0]["data"]["beds_added"] == ["bed2"]
        assert changed[0]["data"]["devices_added"] == ["cuff2", "ox2"]


def status(broker: Broker, *args: str) -> subprocess.CompletedProcess[str]:
    host, port = broker.address
    return subprocess.run([KAPMONITOR, "status", "--broker", f"{host}:{port}",
                           "--timeout", "2", *args], capture_output=True, text=True,
                          timeout=60)


async def test_kapmonitor_status(broker: Broker, tmp_path: Path) -> None:
    none = await asyncio.to_thread(status, broker, "--base", BASE)
    assert none.returncode == 3 and "no kapmonitor" in none.stderr
    cfg = clinic_config(tmp_path / "state", broker.address)
    async with running(cfg):
        await asyncio.sleep(1.5)
        up = await asyncio.to_thread(status, broker, "--base", BASE)
    assert up.returncode == 0, up.stderr
    lines = up.stdout.splitlines()
    assert lines[0].startswith("kapmonitor t1 (test): online (connected) since ")
    assert "1 beds; devices: 2 connected; outbox" in up.stdout
    assert any(line.split()[:4] == ["ox1", "sim", "bed1", "connected"] for line in lines)
    down = await asyncio.to_thread(status, broker, "--base", BASE)
    assert down.returncode == 1 and "offline (shutdown)" in down.stdout


def test_render_relative_times() -> None:
    got = {"state": {"state": "online", "node": "n", "reason": "connected"},
           "devices": [{"id": "ox1", "driver": "ble-plx", "bed": "b", "state": "stale",
                        "last_seen": 940.0, "detail": "no reading for 60 s"},
                       {"id": "cuff1", "driver": "ble-bps", "bed": "b", "state": "connecting",
                        "last_seen": None, "detail": ""}]}
    out = render(got, now=1000.0)
    assert out[0] == "kapmonitor n: online (connected)"
    assert out[2].split() == ["ox1", "ble-plx", "b", "stale", "60", "s", "ago", "no",
                              "reading", "for", "60", "s"]
    assert out[3].split() == ["cuff1", "ble-bps", "b", "connecting", "never"]

"""End to end: serial simulators (pty and TCP) → daemon → real Mosquitto → bed/<id>/reading."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from kapmonitor_simulators.physiology import Patient
from kapmonitor_simulators.serial.devices import make_model
from kapmonitor_simulators.serial.links import Link, PtyLink, TcpLink
from kapmonitor_simulators.serial.runner import Scenario, SerialSimulator

from kapmonitor.topics import Topics
from tests.helpers.daemon import running
from tests.helpers.mqtt import Broker, subscribe
from tests.helpers.serial import simulator

BASE = "kapmonitor/t1"
TOPICS = Topics(BASE)


def device(protocol: str, link: Link, scenario: Scenario
           ) -> contextlib.AbstractAsyncContextManager[SerialSimulator]:
    return simulator(make_model(protocol, Patient(seed=3, dose_at=None)), link, scenario, 10)


async def test_serial_devices_publish_coded_readings(broker: Broker, tmp_path: Path) -> None:
    pty = PtyLink(tmp_path / "masimo")
    tcp = TcpLink(0)
    dropouts = Scenario(dropout_every=5.0, dropout_for=2.0)
    async with device("masimo-ascii", pty, dropouts), device("nonin-fmt7", tcp, Scenario()):
        cfg: dict[str, Any] = {
            "state_dir": str(tmp_path / "state"),
            "node": {"node_id": "t1", "site": "test"},
            "mqtt": {"host": broker.host, "port": broker.port, "keepalive": 5},
            "metrics": {"enabled": False},
            "beds": [{"id": "bed1"}, {"id": "bed2"}],
            "devices": [
                {"id": "masimo1", "driver": "serial-masimo", "bed": "bed1",
                 "port": pty.address, "stale_after": 5},
                {"id": "nonin1", "driver": "serial-nonin", "bed": "bed2",
                 "port": tcp.address, "format": "fmt7", "min_interval": 0.5, "stale_after": 5},
            ],
        }
        async with subscribe(broker.address, TOPICS.everything) as sub, running(cfg):
            def done(msgs: list[tuple[str, Any, bool]]) -> bool:
                r1 = [p for t, p, _ in msgs if t == TOPICS.reading("bed1")]
                r2 = [p for t, p, _ in msgs if t == TOPICS.reading("bed2")]
                off = [r for r in r1 if "sensor_off" in r["quality"]]
                return bool(off) and len(r2) >= 4 and any(r["value"] for r in r1)

            await sub.wait_for(done, timeout=20)

    r1 = [p for t, p, _ in sub.messages if t == TOPICS.reading("bed1")]
    r2 = [p for t, p, _ in sub.messages if t == TOPICS.reading("bed2")]
    spo2 = next(r for r in r1 if r["metric"] == "spo2" and r["value"] is not None)
    assert spo2["device"] == "masimo1" and spo2["unit"] == "%"
    assert spo2["mdc"] == 150456 and spo2["loinc"] == "59408-5"
    pr = next(r for r in r2 if r["metric"] == "pulse_rate" and r["value"] is not None)
    assert pr["device"] == "nonin1" and pr["mdc"] == 149530 and pr["unit"] == "/min"
    off = [r for r in r1 if "sensor_off" in r["quality"]]
    assert off and all(r["value"] is None for r in off)  # dropout published as "no value"
    status = [p for t, p, _ in sub.messages if t == TOPICS.device_status("masimo1")]
    assert any(s["state"] == "connected" and s["grade"] == "medical" for s in status)
    assert any(s.get("protocol") == "masimo-ascii" for s in status)

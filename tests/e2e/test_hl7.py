"""End to end: HL7 sender simulators (separate processes) → hl7-mllp listener in the daemon →
real Mosquitto → readings with NIBP codes on ``bed/<id>/reading``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from kapmonitor.topics import Topics
from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import Broker, free_port, subscribe

BASE = "kapmonitor/t1"
TOPICS = Topics(BASE)
pytestmark = pytest.mark.timeout(90)


async def run_sender(port: int, style: str, equipment: str, location: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kapmonitor_simulators", "hl7", "--port", str(port), "--style", style,
        "--count", "3", "--interval", "0.5", "--equipment-id", equipment,
        "--location", location, "--seed", "3", "--ack-timeout", "5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(errors="replace")


async def test_hl7_monitors_to_mqtt(broker: Broker, tmp_path: Path) -> None:
    port = free_port()
    listener: dict[str, Any] = {
        "id": "hl7", "driver": "hl7-mllp", "bed": "bed1", "port": port,
        "routes": [
            {"equipment_id": "0A000000000000A1", "bed": "bed1"},  # GE B40-style monitor
            {"point_of_care": "KAP", "location_bed": "2", "bed": "bed2"},  # Efficia by PV1-3
        ],
    }
    cfg = clinic_config(tmp_path / "state", broker.address, beds=2, extra_devices=[listener])
    cfg["devices"] = [d for d in cfg["devices"] if d["driver"] != "sim"]  # only the monitors

    async with subscribe(broker.address, TOPICS.everything) as sub, running(cfg):
        results = await asyncio.gather(
            run_sender(port, "ge", "0A000000000000A1", "ICU^1^1"),
            run_sender(port, "philips", "0A000000000000B2", "KAP^^2"),
        )
        for code, out in results:
            assert code == 0, out
            assert "sender: AE for" not in out and "sender: AR for" not in out, out
            assert "no ACK" not in out, out

        def nibp_on_both(msgs: list[Any]) -> bool:
            beds = {p["bed"] for t, p, _ in msgs
                    if t.endswith("/reading") and p["metric"] == "nibp_sys"}
            return beds == {"bed1", "bed2"}

        await sub.wait_for(nibp_on_both, timeout=20)
        await asyncio.sleep(0.3)
        for bed in ("bed1", "bed2"):
            readings = [p for t, p, _ in sub.messages if t == TOPICS.reading(bed)]
            by_metric: dict[str, list[dict[str, Any]]] = {}
            for r in readings:
                by_metric.setdefault(r["metric"], []).append(r)
            sys_, dia, mean = by_metric["nibp_sys"], by_metric["nibp_dia"], by_metric["nibp_mean"]
            # One NIBP measurement, repeated in each of the 3 reports, published once.
            assert len(sys_) == len(dia) == len(mean) == 1
            assert (sys_[0]["mdc"], sys_[0]["loinc"], sys_[0]["unit"]) == (150021, "8480-6",
                                                                           "mm[Hg]")
            assert (dia[0]["mdc"], dia[0]["loinc"]) == (150022, "8462-4")
            assert (mean[0]["mdc"], mean[0]["loinc"]) == (150023, "8478-0")
            assert 60 < sys_[0]["value"] < 220 and sys_[0]["value"] > dia[0]["value"]
            assert sys_[0]["device"] == "hl7" and sys_[0]["quality"] == []
            # The NIBP time comes from OBX-14 (start of the simulation), not from receipt.
            assert sys_[0]["ts"] <= sys_[0]["received"]
            assert by_metric["heart_rate"][0]["mdc"] == 147842
            assert by_metric["spo2"][0]["unit"] == "%"
        status = sub.on("device/hl7/status")[-1]
        assert status["state"] == "connected" and status["bed"] == "bed1"

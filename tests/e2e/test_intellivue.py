"""End to end: the IntelliVue simulator (a separate process on a pty) → ``serial-intellivue`` in
the daemon → real Mosquitto → readings with NIBP codes on ``bed/<id>/reading``."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

import pytest

from kapmonitor.topics import Topics
from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import Broker, subscribe

BASE = "kapmonitor/t1"
TOPICS = Topics(BASE)
pytestmark = pytest.mark.timeout(90)


async def test_intellivue_monitor_to_mqtt(broker: Broker, tmp_path: Path) -> None:
    link = tmp_path / "ivue"
    # Cuff cycles of 2 s starting at 1 s, every 4 s: results at about 3, 7, 11 s.
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kapmonitor_simulators", "intellivue", "--pty", str(link),
        "--seed", "4",
        "--nibp-first", "1", "--nibp-every", "4", "--nibp-duration", "2", "--mtu", "200",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert sim.stdout is not None
        banner = await asyncio.wait_for(sim.stdout.readline(), 20)
        assert b"IntelliVue simulator on /dev/pts/" in banner, banner
        monitor: dict[str, Any] = {
            "id": "ivue", "driver": "serial-intellivue", "bed": "bed1", "port": str(link),
            "poll_period": 0.5,
        }
        cfg = clinic_config(tmp_path / "state", broker.address, extra_devices=[monitor])
        cfg["devices"] = [d for d in cfg["devices"] if d["driver"] != "sim"]

        async with subscribe(broker.address, TOPICS.everything) as sub, running(cfg):

            def nibp(msgs: list[Any]) -> list[dict[str, Any]]:
                return [p for t, p, _ in msgs
                        if t == TOPICS.reading("bed1") and p["metric"] == "nibp_sys"]

            await sub.wait_for(lambda m: len(nibp(m)) >= 2, timeout=30)
            await asyncio.sleep(1.5)  # three more polls repeat the last result
            readings = [p for t, p, _ in sub.messages if t == TOPICS.reading("bed1")]
            by: dict[str, list[dict[str, Any]]] = {}
            for r in readings:
                by.setdefault(r["metric"], []).append(r)
            sys_, dia, mean = by["nibp_sys"], by["nibp_dia"], by["nibp_mean"]
            # Each cuff measurement published once, however many polls carried it.
            assert len({r["ts"] for r in sys_}) == len(sys_) and 2 <= len(sys_) <= 3
            assert len(dia) == len(mean) == len(sys_)
            assert (sys_[0]["mdc"], sys_[0]["loinc"], sys_[0]["unit"]) == (150021, "8480-6",
                                                                           "mm[Hg]")
            assert (dia[0]["mdc"], mean[0]["mdc"]) == (150022, 150023)
            assert all(60 < s["value"] < 220 and s["value"] > d["value"]
                       for s, d in zip(sys_, dia, strict=True))
            # Stamped with when the cuff measured (monitor's relative clock), before receipt.
            assert all(s["ts"] <= s["received"] for s in sys_)
            assert 3.0 < sys_[1]["ts"] - sys_[0]["ts"] < 5.0
            assert by["heart_rate"][0]["mdc"] == 147842 and by["spo2"][0]["unit"] == "%"
            assert len(by["heart_rate"]) >= 8 and by["resp_rate"][0]["value"] is not None
            assert all(r["device"] == "ivue" and r["quality"] == [] for r in readings)
            status = sub.on("device/ivue/status")[-1]
            assert status["state"] == "connected" and status["monitor_bed_label"] == "BED 1"
    finally:
        with contextlib.suppress(ProcessLookupError):
            sim.terminate()
        await asyncio.wait_for(sim.wait(), 10)

"""The virtual clinic end to end, and the embedded-broker fallback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kapmonitor_simulators.broker import _amqtt
from kapmonitor_simulators.demo import BedView, ClinicView, render_plain
from kapmonitor_simulators.demo_clinic import demo_layout

from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import subscribe
from tests.helpers.paths import ROOT

pytestmark = pytest.mark.broker  # the demo starts its own broker


def test_demo_runs_from_any_directory(tmp_path: Path) -> None:
    """`kapmonitor demo --for N` starts a broker, the daemon and the view, and stops by itself
    with exit 0 after readings went through the broker."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-m", "kapmonitor.cli", "demo", "--for", "6", "--speed", "60",
         "--beds", "3", "--seed", "2", "--no-view"],
        cwd=tmp_path, capture_output=True, text=True, timeout=90, env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "mosquitto_sub -h 127.0.0.1 -p" in out and "-t 'kapmonitor/demo/#'" in out
    assert "bed3:" in out and "SpO2=9" in out
    assert "messages acknowledged by the broker" in out
    assert "Traceback" not in proc.stderr, proc.stderr[proc.stderr.find("Traceback") - 500:]
    # The central station runs too, with its URL and a demo login.
    assert "central station:  http://127.0.0.1:" in out and "(log in as demo / demo-clinic)" in out


def test_demo_config_is_valid_for_many_beds() -> None:
    from kapmonitor.config import parse_config

    cfg = parse_config(demo_layout(12, 1, "/tmp/x", Path("/tmp/y")))
    assert len(cfg.beds) == 12 and len({d.id for d in cfg.devices}) == len(cfg.devices)


def test_view_model_follows_topics() -> None:
    view = ClinicView("kapmonitor/demo", {"bed1": BedView("x")})
    view.feed("kapmonitor/demo/device/ox/status", {"bed": "bed1", "state": "stale"})
    view.feed("kapmonitor/demo/bed/bed1/vitals", {"metrics": {"spo2": {"value": 91.0}}})
    view.feed("kapmonitor/demo/bed/bed1/reading", {"metric": "spo2"})
    assert view.beds["bed1"].devices == {"ox": "stale"}
    assert view.beds["bed1"].vitals["spo2"]["value"] == 91.0 and view.readings == 1
    view.feed("kapmonitor/demo/bed/bed1/session", {"phase": "peak", "news2": {"total": 4}})
    assert view.beds["bed1"].phase == "peak" and view.beds["bed1"].news2 == 4
    assert "NEWS2=4" in render_plain(view, 1.0)


async def test_embedded_broker_fallback(tmp_path: Path) -> None:
    """Without Mosquitto the demo uses amqtt (MQTT 3.1.1 only): the daemon still works."""
    async with _amqtt() as info:
        assert info.kind == "amqtt" and info.protocol == "3.1.1"
        cfg = clinic_config(tmp_path / "s", (info.host, info.port))
        cfg["mqtt"]["protocol"] = "3.1.1"
        async with subscribe((info.host, info.port), "kapmonitor/t1/bed/+/reading") as sub, \
                running(cfg):
            await sub.wait_for(lambda m: len(m) >= 5, timeout=15)
        await asyncio.sleep(0)


def test_demo_on_shipped_config_starts_its_simulators(tmp_path: Path) -> None:
    """config/demo.toml's serial and HL7 devices get simulators; readings arrive from each."""
    root = ROOT
    proc = subprocess.run(
        [sys.executable, "-m", "kapmonitor.cli", "demo", "--config",
         str(root / "config" / "demo.toml"), "--for", "12", "--speed", "10", "--no-view"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Every snapshot the demo printed (one every 5 s and one at the end): each device must have
    # been up and each bed must have shown an SpO2 at some point; a device reconnecting at the
    # very end on a busy machine is not a failure.
    snapshots = proc.stdout.split("[t=")[1:]
    seen = "\n".join(snapshots)
    for dev in ("bed1-plx:connected", "bed2-masimo:connected", "bed3-berrymed:connected",
                "bed4-mp50:connected", "bed5-nonin:connected", "hl7-listener:connected",
                "bed6-o2ring:connected"):
        assert dev in seen, seen
    for bed in ("bed1", "bed2", "bed3", "bed4", "bed5", "bed6"):
        lines = [ln for ln in seen.splitlines() if ln.strip().startswith(f"{bed}:")]
        assert any("SpO2=9" in ln or "SpO2=8" in ln for ln in lines), lines

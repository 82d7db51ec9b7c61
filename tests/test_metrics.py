"""Prometheus metrics: names and zero baselines, no ``_created`` series, alarm metrics from a
real desaturation alarm and its acknowledge, device restarts and last-reading ages, decode
errors, and the whole exposition checked by ``promtool check metrics`` when it is installed."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from kapmonitor.clock import ManualClock, ScaledClock
from kapmonitor.driver_api import DriverContext
from kapmonitor.metrics import Metrics
from kapmonitor.outbox import LANE_NAMES
from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import Broker, request, subscribe
from tests.services.test_alarm_service import BASE, SPEED, alerts
from tests.services.test_alarm_service import config as alarm_config
from tests.test_supervisor import ScriptConfig, ScriptDriver

PROMTOOL = shutil.which("promtool")
ROOT = Path(__file__).resolve().parents[1]


def sample(body: str, name: str, **labels: str) -> float | None:
    """The value of one series in an exposition, None when it is absent."""
    for line in body.splitlines():
        if not line.startswith(name + ("{" if labels else " ")):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if got == labels:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_names_baselines_and_no_created_series() -> None:
    m = Metrics()
    m.declare(lanes=LANE_NAMES.values(), devices=["ox1"], beds=["bed1"],
              commands=["alert/ack"])
    body = generate_latest(m.registry).decode()
    assert "_created" not in body
    assert sample(body, "kapmonitor_outbox_dropped_total", lane="reading") == 0
    assert sample(body, "kapmonitor_mqtt_published_total", lane="alert",
                  historical="true") == 0
    assert sample(body, "kapmonitor_mqtt_publish_latency_seconds_count", lane="alert") == 0
    assert sample(body, "kapmonitor_device_restarts_total", device="ox1", reason="stale") == 0
    assert sample(body, "kapmonitor_decode_errors_total", device="ox1") == 0
    assert sample(body, "kapmonitor_alarms_raised_total", priority="high",
                  kind="technical") == 0
    assert sample(body, "kapmonitor_alarms_active", bed="bed1", priority="medium",
                  kind="advisory") == 0
    assert sample(body, "kapmonitor_commands_total", command="alert/ack", status="error") == 0
    assert "kapmonitor_publish_latency_seconds" not in body  # renamed with the mqtt_ prefix


def alert(event: str, t: float, state: str = "active", priority: str = "high",
          alert_id: str = "a1", onset_t: float = 95.0) -> dict[str, Any]:
    return {"type": "alert", "event": event, "alert_id": alert_id, "bed": "bed1",
            "priority": priority, "kind": "physiological", "t": t, "state": state,
            "onset_t": onset_t}


def test_alarm_metrics_follow_the_alert_events() -> None:
    m = Metrics()
    m.declare(lanes=(), devices=(), beds=["bed1"])

    def active(priority: str) -> float | None:
        body = generate_latest(m.registry).decode()
        return sample(body, "kapmonitor_alarms_active", bed="bed1", priority=priority,
                      kind="physiological")

    m.on_alert_event(alert("raised", 100.0, priority="medium"))
    assert active("medium") == 1
    m.on_alert_event(alert("escalated", 130.0, priority="high"))
    assert (active("medium"), active("high")) == (0, 1)
    m.on_alert_event(alert("acknowledged", 142.0))
    m.on_alert_event(alert("raised", 150.0, alert_id="a2"))
    m.on_alert_event({"type": "session", "event": "phase", "bed": "bed1", "t": 151.0})
    assert active("high") == 2
    m.on_alert_event(alert("cleared", 160.0, state="cleared"))
    assert active("high") == 1
    body = generate_latest(m.registry).decode()
    assert sample(body, "kapmonitor_alarms_raised_total", priority="medium",
                  kind="physiological") == 1
    assert sample(body, "kapmonitor_alarms_acknowledged_total", priority="high",
                  kind="physiological") == 1
    # From the raise (t=100), not from the escalation or the condition's onset.
    assert sample(body, "kapmonitor_alarm_acknowledge_seconds_sum", priority="high") == 42.0


def test_decode_problems_are_counted(tmp_path: Path) -> None:
    seen: list[str] = []
    ctx = DriverContext(clock=ManualClock(), state_dir=tmp_path, on_decode_error=seen.append)
    driver = ScriptDriver(ScriptConfig(id="d1", bed="bed1"), ctx, [])
    driver.decode_problem("bad checksum")
    driver.decode_problem("bad checksum")
    assert seen == ["d1", "d1"]


async def scrape(port: int | None) -> str:
    url = f"http://127.0.0.1:{port}/metrics"
    data = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    return data.decode()


def promtool_problems(body: str) -> str:
    assert PROMTOOL is not None
    out = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                         text=True, timeout=60)
    return "" if out.returncode == 0 else out.stdout + out.stderr


async def test_device_restarts_and_last_reading_age(broker: Broker, tmp_path: Path) -> None:
    missing = {"id": "masimo9", "driver": "serial-masimo", "bed": "bed1",
               "port": str(tmp_path / "no-such-tty"), "stale_after": 5}
    cfg = clinic_config(tmp_path / "state", broker.address, extra_devices=[missing])
    async with running(cfg) as daemon:
        await asyncio.sleep(2.5)
        body = await scrape(daemon.metrics_port)
    assert (sample(body, "kapmonitor_device_restarts_total", device="masimo9",
                   reason="error") or 0) >= 1
    assert sample(body, "kapmonitor_device_restarts_total", device="ox1", reason="error") == 0
    ox_age = sample(body, "kapmonitor_device_last_reading_age_seconds", device="ox1")
    missing_age = sample(body, "kapmonitor_device_last_reading_age_seconds", device="masimo9")
    assert ox_age is not None and ox_age < 1.0
    assert missing_age is not None and missing_age >= 2.0
    if PROMTOOL is not None:
        assert promtool_problems(body) == ""


async def test_alarm_metrics_from_a_real_alarm(broker: Broker, tmp_path: Path) -> None:
    addr = broker.address
    async with subscribe(addr, f"{BASE}/bed/bed1/alert") as sub, running(
        alarm_config(tmp_path, broker), clock=ScaledClock(SPEED)
    ) as daemon:
        r = await request(addr, BASE, "session/start",
                          {"bed": "bed1", "profile": "ketamine", "route": "im"})
        assert r["status"] == "ok", r
        assert (await request(addr, BASE, "session/dose",
                              {"bed": "bed1", "dose_mg": 50}))["status"] == "ok"
        await request(addr, BASE, "device/command", {
            "device": "ox1", "command": "inject",
            "args": {"kind": "desaturation", "duration": 180, "magnitude": 20}})
        raised = (await sub.wait_for(lambda m: [
            a for a in alerts(m) if a["event"] == "raised" and a["metric"] == "spo2"
            and a["priority"] == "high"], timeout=30))[0]
        body = await scrape(daemon.metrics_port)
        assert (sample(body, "kapmonitor_alarms_active", bed="bed1", priority="high",
                       kind="physiological") or 0) >= 1
        assert (sample(body, "kapmonitor_alarms_raised_total", priority="high",
                       kind="physiological") or 0) >= 1
        assert sample(body, "kapmonitor_alarms_active", bed="bed2", priority="high",
                      kind="physiological") == 0
        ack = await request(addr, BASE, "alert/ack",
                            {"bed": "bed1", "alert_id": raised["alert_id"], "by": "n"})
        assert ack["status"] == "ok", ack
        body = await scrape(daemon.metrics_port)
        assert sample(body, "kapmonitor_alarms_acknowledged_total", priority="high",
                      kind="physiological") == 1
        assert sample(body, "kapmonitor_alarm_acknowledge_seconds_count", priority="high") == 1
        assert sample(body, "kapmonitor_commands_total", command="alert/ack", status="ok") == 1
        if PROMTOOL is not None:
            assert promtool_problems(body) == ""


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: prometheus)")
def test_promtool_would_catch_a_bad_name() -> None:
    bad = ("# HELP kapmonitor_things Things\n# TYPE kapmonitor_things counter\n"
           "kapmonitor_things 1\n")
    assert "_total" in promtool_problems(bad)


def exposed_names(m: Metrics) -> set[str]:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",)}
    return {mf.name + s for mf in m.registry.collect() for s in suffixes[mf.type]}


def test_grafana_dashboard_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads((ROOT / "config/grafana/kapmonitor-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for subject in ("bed", "alarm", "device", "outbox", "latency"):
        assert subject in titles
    used = {n for e in exprs for n in re.findall(r"\bkapmonitor_[a-z_]+", e)}
    exposed = exposed_names(Metrics())
    assert used - exposed == set()
    assert {"kapmonitor_alarms_active", "kapmonitor_device_last_reading_age_seconds",
            "kapmonitor_mqtt_publish_latency_seconds_bucket",
            "kapmonitor_outbox_messages"} <= used
    assert "kapmonitor_publish_latency_seconds_bucket" not in exposed


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: prometheus)")
def test_scrape_example_is_a_valid_prometheus_config() -> None:
    out = subprocess.run([PROMTOOL or "", "check", "config",
                          str(ROOT / "config/grafana/prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr

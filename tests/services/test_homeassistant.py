"""Home Assistant discovery: the configs, their templates rendered by Jinja2 (HA's template
engine, sandboxed as in HA) against the daemon's real retained payloads at a real Mosquitto,
HA's birth message, and the removal of configs a new config no longer has."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from kapmonitor import __version__
from kapmonitor.config import ConfigError, parse_config
from kapmonitor.services.homeassistant import BED_METRICS, discovery, object_id
from kapmonitor.topics import Topics
from tests.helpers.daemon import clinic_config, running
from tests.helpers.mqtt import Broker, request, subscribe

BASE = "kapmonitor/t1"
TOPICS = Topics(BASE)
JINJA = ImmutableSandboxedEnvironment()


def render(template: str, payload: Any) -> str:
    return JINJA.from_string(template).render(value_json=payload).strip()


def ha_config(tmp_path: Path, broker: Broker, **ha: Any) -> dict[str, Any]:
    cfg = clinic_config(tmp_path / "state", broker.address, beds=2)
    cfg["beds"][0]["label"] = "Chair 1"
    cfg["homeassistant"] = {"enabled": True, "republish_delay_max": 0.2, **ha}
    return cfg


def test_discovery_configs_are_complete_and_unique(tmp_path: Path) -> None:
    cfg = parse_config(clinic_config(tmp_path, ("127.0.0.1", 1883), beds=3,
                                     homeassistant={"enabled": True}))
    configs = {t: json.loads(p) for t, p in discovery(cfg, __version__).items()}
    assert set(configs) == {f"homeassistant/device/kapmonitor_t1{s}/config"
                            for s in ("", "_bed1", "_bed2", "_bed3")}
    unique_ids: list[str] = []
    for body in configs.values():
        assert body["origin"]["name"] == "kapmonitor" and body["device"]["identifiers"]
        assert body["availability"][0]["topic"] == TOPICS.bridge_state
        for cid, comp in body["components"].items():
            assert comp["platform"] in ("sensor", "binary_sensor"), cid
            assert TOPICS.parse(comp["state_topic"]) is not None
            unique_ids.append(comp["unique_id"])
    assert len(unique_ids) == len(set(unique_ids))
    bed = configs["homeassistant/device/kapmonitor_t1_bed1/config"]
    assert bed["device"]["via_device"] == "kapmonitor_t1"
    assert set(BED_METRICS) <= set(bed["components"])
    assert bed["components"]["nibp_sys"]["unit_of_measurement"] == "mmHg"
    node = configs["homeassistant/device/kapmonitor_t1/config"]
    assert {"ox1_battery", "cuff3_state"} <= set(node["components"])
    assert object_id("kapmonitor", "clinic a", "bed/1") == "kapmonitor_clinic_a_bed_1"


def test_templates_give_none_for_missing_values_never_a_number() -> None:
    cfg = parse_config({"beds": [{"id": "b"}], "homeassistant": {"enabled": True}})
    comps = json.loads(discovery(cfg, "x")["homeassistant/device/kapmonitor_"
                                            f"{cfg.node.node_id}_b/config"])["components"]
    vitals = {"bed": "b", "metrics": {
        "spo2": {"value": None, "unit": "%", "quality": ["sensor_off"]},
        "pulse_rate": {"value": 0.0, "unit": "/min"},
    }}
    assert render(comps["spo2"]["value_template"], vitals) == "None"  # HA: unknown
    assert render(comps["pulse_rate"]["value_template"], vitals) == "0.0"  # 0 is a value
    assert render(comps["heart_rate"]["value_template"], vitals) == "None"  # never measured
    idle = {"bed": "b", "active": False, "phase": "idle", "symptoms": []}
    assert render(comps["news2"]["value_template"], idle) == "None"
    assert render(comps["phase"]["value_template"], idle) == "idle"


async def test_daemon_publishes_discovery_whose_templates_read_its_own_payloads(
    broker: Broker, tmp_path: Path
) -> None:
    addr = broker.address
    async with subscribe(addr, "#") as sub, running(ha_config(tmp_path, broker)):
        await request(addr, BASE, "session/start", {"bed": "bed1", "profile": "ketamine"})

        def ready(msgs: list) -> bool:
            vit = [p for t, p, _ in msgs if t == TOPICS.vitals("bed1")]
            return bool(vit) and {"spo2", "nibp_sys"} <= set(vit[-1]["metrics"]) and any(
                t == TOPICS.session("bed1") and p.get("news2") for t, p, _ in msgs)

        await sub.wait_for(ready, timeout=20)
        latest: dict[str, Any] = {}
        for t, p, _ in sub.messages:
            latest[t] = p
        bed = latest["homeassistant/device/kapmonitor_t1_bed1/config"]
        assert bed["device"]["name"] == "Chair 1"
        comps = bed["components"]
        vitals = latest[TOPICS.vitals("bed1")]
        for metric in BED_METRICS:
            got = render(comps[metric]["value_template"], vitals)
            value = vitals["metrics"].get(metric, {}).get("value")
            if value is None:
                assert got == "None", metric
            else:
                assert math.isclose(float(got), value), metric
        alarms = latest[TOPICS.alarms("bed1")]
        assert render(comps["alarm"]["value_template"], alarms) == (alarms["highest"] or "none")
        attrs = json.loads(render(comps["alarm"]["json_attributes_template"], alarms))
        assert attrs["count"] == alarms["count"] and len(attrs["alarms"]) == alarms["count"]
        assert render(comps["alarm_sounding"]["value_template"], alarms) in ("ON", "OFF")
        session = latest[TOPICS.session("bed1")]
        assert render(comps["phase"]["value_template"], session) == "pre_dose"
        assert int(render(comps["news2"]["value_template"], session)) == session["news2"]["total"]

        node = latest["homeassistant/device/kapmonitor_t1/config"]["components"]
        status = latest[TOPICS.device_status("ox1")]
        assert render(node["ox1_state"]["value_template"], status) == status["state"]
        assert float(render(node["ox1_battery"]["value_template"], status)) == status["battery"]
        avail = bed["availability"][0]
        assert render(avail["value_template"], latest[TOPICS.bridge_state]) == "online"

        # HA restarts (its birth message): discovery is sent again, after the jitter.
        n = len(sub.messages)
        async with aiomqtt.Client(*addr, identifier="fake-ha") as ha:
            await ha.publish("homeassistant/status", b"online", qos=1)
        def resent(m: list) -> set[str]:
            return {t for t, _, _ in m[n:] if t.startswith("homeassistant/device/")}

        await sub.wait_for(lambda m: len(resent(m)) == 3)


async def test_removed_configs_are_deleted_and_disabled_means_none(
    broker: Broker, tmp_path: Path
) -> None:
    addr = broker.address
    async with running(ha_config(tmp_path, broker)), subscribe(addr, "homeassistant/#") as sub:
        await sub.wait_for(lambda m: len({t for t, _, _ in m}) == 3)

    one_bed = ha_config(tmp_path, broker)
    one_bed["beds"] = one_bed["beds"][:1]
    one_bed["devices"] = [d for d in one_bed["devices"] if d["bed"] == "bed1"]
    async with running(one_bed):
        await asyncio.sleep(0.5)
    async with subscribe(addr, "homeassistant/#") as late:
        await late.wait_for(lambda m: m)
        await asyncio.sleep(0.3)
        assert {t for t, _, _ in late.messages} == {
            "homeassistant/device/kapmonitor_t1/config",
            "homeassistant/device/kapmonitor_t1_bed1/config"}

    off = clinic_config(tmp_path / "state", addr)
    async with running(off):
        await asyncio.sleep(0.5)
    async with subscribe(addr, "#") as late:
        await late.wait_for(lambda m: any(t.endswith("bridge/state") for t, _, _ in m))
        await asyncio.sleep(0.3)
        assert not [t for t, _, _ in late.messages if t.startswith("homeassistant/")]


@pytest.mark.parametrize("prefix", ["home/#", "a/+/b"])
def test_wildcards_in_ha_topics_are_config_errors(prefix: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"homeassistant": {"enabled": True, "discovery_prefix": prefix}})
    (line,) = err.value.problems
    assert line.startswith("<config>: homeassistant.discovery_prefix: ") and "wildcards" in line

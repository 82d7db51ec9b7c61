"""Home Assistant MQTT discovery (device-based): the service that tells HA what to show.

What lives here: :func:`discovery`, which builds the discovery configs from the config (pure,
no I/O), and :func:`publish_discovery`, the service step the daemon runs at start: it publishes
them retained through the :class:`~kapmonitor.ports.RetainedState` port and removes the configs
an earlier run published that this config no longer has (so HA keeps no ghost beds). HA's birth
message (re-sending everything) is handled by the MQTT owner, which re-publishes all retained
state including these configs.

What does not: the topics themselves (:class:`~kapmonitor.topics.Topics` builds the discovery
topic and every state topic a config points at), the payload contents of those state topics
(the daemon, the pipeline and the alarm service publish them).

HA's device-based discovery takes one retained JSON config per HA device on
``<discovery_prefix>/device/<object_id>/config`` with a ``device``, an ``origin`` and a map
of ``components`` (each with a ``platform`` and a ``unique_id``). kapmonitor publishes:

* one HA device per bed: a sensor per vital sign, read from the retained ``bed/<id>/vitals``;
  the alarm state (highest open priority, with count and texts as attributes) and an "alarm
  sounding" problem sensor from ``bed/<id>/alarms``; the session phase and NEWS2 from
  ``bed/<id>/session``;
* one HA device for the node: each medical device's link state and battery (diagnostic),
  from ``device/<id>/status``.

Every entity is available while ``bridge/state`` says ``online``. The templates use plain
Jinja (``dict.get``, ``tojson``) so the tests can render them with Jinja2 against real payloads;
a template that yields ``None`` makes HA show "unknown", never a made-up number.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from kapmonitor.config import Config
from kapmonitor.model import METRICS
from kapmonitor.ports import RetainedState
from kapmonitor.topics import Topics, encode

__all__ = ["BED_METRICS", "discovery", "object_id", "publish_discovery", "topics_of"]

# The bed's vital signs shown in HA (cuff pressure, RR intervals and battery are not vitals
# a dashboard needs per bed; battery is on the node device).
BED_METRICS = ("spo2", "pulse_rate", "heart_rate", "nibp_sys", "nibp_dia", "nibp_mean",
               "resp_rate", "perfusion_index")
_DISPLAY_UNIT = {"mm[Hg]": "mmHg"}


def object_id(*parts: str) -> str:
    """An id from the characters HA allows in discovery topics and unique ids."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", "_".join(parts))


def vital_template(metric: str) -> str:
    return (f"{{% set m = value_json.metrics.get('{metric}') %}}"
            "{{ m.value if m and m.value is not none else none }}")


ALARM_STATE_TEMPLATE = "{{ value_json.highest or 'none' }}"
ALARM_ATTRIBUTES_TEMPLATE = (
    "{{ {'count': value_json.count, 'phase': value_json.phase, "
    "'alarms': value_json.alarms | map(attribute='text') | list} | tojson }}"
)
AUDIBLE_TEMPLATE = "{{ 'ON' if value_json.audible else 'OFF' }}"
PHASE_TEMPLATE = "{{ value_json.phase }}"
NEWS2_TEMPLATE = "{% set n = value_json.get('news2') %}{{ n.total if n else none }}"
DEVICE_STATE_TEMPLATE = "{{ value_json.state }}"
BATTERY_TEMPLATE = "{{ value_json.battery if value_json.battery is not none else none }}"


def topics_of(cfg: Config) -> Topics:
    """The topic tree of a configuration (base topic and HA discovery prefix)."""
    return Topics(cfg.base_topic, cfg.homeassistant.discovery_prefix)


def discovery(cfg: Config, version: str, topics: Topics | None = None) -> dict[str, bytes]:
    """Discovery topic → retained payload for every bed and for the node."""
    topics = topics or topics_of(cfg)
    node = cfg.node.node_id
    origin = {"name": "kapmonitor", "sw_version": version}
    availability = [{
        "topic": topics.bridge_state,
        "value_template": "{{ value_json.state }}",
        "payload_available": "online",
        "payload_not_available": "offline",
    }]
    node_ids = object_id("kapmonitor", node)
    out: dict[str, Any] = {}

    for bed in cfg.beds:
        bed_ids = object_id("kapmonitor", node, bed.id)
        components: dict[str, dict[str, Any]] = {}
        for metric in BED_METRICS:
            info = METRICS[metric]
            components[metric] = {
                "platform": "sensor",
                "unique_id": object_id(bed_ids, metric),
                "name": info.label,
                "state_topic": topics.vitals(bed.id),
                "value_template": vital_template(metric),
                "unit_of_measurement": _DISPLAY_UNIT.get(info.unit, info.unit),
                "state_class": "measurement",
            }
        alarms_topic = topics.alarms(bed.id)
        session_topic = topics.session(bed.id)
        components["alarm"] = {
            "platform": "sensor",
            "unique_id": object_id(bed_ids, "alarm"),
            "name": "Alarm",
            "state_topic": alarms_topic,
            "value_template": ALARM_STATE_TEMPLATE,
            "json_attributes_topic": alarms_topic,
            "json_attributes_template": ALARM_ATTRIBUTES_TEMPLATE,
            "device_class": "enum",
            "options": ["none", "info", "low", "medium", "high"],
        }
        components["alarm_sounding"] = {
            "platform": "binary_sensor",
            "unique_id": object_id(bed_ids, "alarm_sounding"),
            "name": "Alarm sounding",
            "state_topic": alarms_topic,
            "value_template": AUDIBLE_TEMPLATE,
            "device_class": "problem",
        }
        components["phase"] = {
            "platform": "sensor",
            "unique_id": object_id(bed_ids, "phase"),
            "name": "Session phase",
            "state_topic": session_topic,
            "value_template": PHASE_TEMPLATE,
        }
        components["news2"] = {
            "platform": "sensor",
            "unique_id": object_id(bed_ids, "news2"),
            "name": "NEWS2 (partial)",
            "state_topic": session_topic,
            "value_template": NEWS2_TEMPLATE,
            "state_class": "measurement",
        }
        out[topics.discovery(bed_ids)] = {
            "device": {
                "identifiers": [bed_ids],
                "name": bed.label or bed.id,
                "manufacturer": "kapmonitor",
                "model": "KAP bed",
                "sw_version": version,
                "via_device": node_ids,
            },
            "origin": origin,
            "availability": availability,
            "qos": 1,
            "components": components,
        }

    node_components: dict[str, dict[str, Any]] = {}
    for dev in cfg.devices:
        status_topic = topics.device_status(dev.id)
        node_components[object_id(dev.id, "state")] = {
            "platform": "sensor",
            "unique_id": object_id(node_ids, dev.id, "state"),
            "name": f"{dev.id} link",
            "state_topic": status_topic,
            "value_template": DEVICE_STATE_TEMPLATE,
            "entity_category": "diagnostic",
        }
        node_components[object_id(dev.id, "battery")] = {
            "platform": "sensor",
            "unique_id": object_id(node_ids, dev.id, "battery"),
            "name": f"{dev.id} battery",
            "state_topic": status_topic,
            "value_template": BATTERY_TEMPLATE,
            "device_class": "battery",
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "entity_category": "diagnostic",
        }
    out[topics.discovery(node_ids)] = {
        "device": {
            "identifiers": [node_ids],
            "name": " ".join(part for part in ("kapmonitor", cfg.node.site, node) if part),
            "manufacturer": "kapmonitor",
            "model": "vitals bridge",
            "sw_version": version,
        },
        "origin": origin,
        "availability": availability,
        "qos": 1,
        "components": node_components,
    }
    return {topic: encode(body) for topic, body in out.items()}


def publish_discovery(
    cfg: Config, version: str, topics: Topics, retained: RetainedState, state_dir: Path
) -> None:
    """Publish HA discovery (when enabled) and remove what an earlier config published that
    this one no longer has (beds or the whole feature gone), so HA keeps no ghosts. The topics
    published are remembered in ``ha-discovery.json`` in the state directory."""
    path = state_dir / "ha-discovery.json"
    try:
        before = set(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        before = set()
    now = discovery(cfg, version, topics) if cfg.homeassistant.enabled else {}
    for topic in sorted(before - set(now)):
        retained.set_retained(topic, b"")  # an empty retained config removes it
    for topic, payload in now.items():
        retained.set_retained(topic, payload)
    if now or before:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(now)))
        os.replace(tmp, path)

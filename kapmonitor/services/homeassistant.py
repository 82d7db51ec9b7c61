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
  from ``device/<id>/status``;
* per bed an event entity "Alarm event" that fires on every live alert event (``raised``,
  ``escalated``, ``acknowledged``, …) of ``bed/<id>/alert``, with priority, kind and text;
* with ``controls = true`` (off by default), per bed the buttons "Acknowledge alarms", "Pause
  alarm audio" and "Measure BP", which publish ordinary requests on ``bridge/request/…``: the
  same command validation as any other client, and nothing HA could not send anyway.

Freshness: a vital sign value marked ``stale`` in ``bed/<id>/vitals`` (its device went quiet)
renders as "unknown", and every continuous vital sensor has ``expire_after`` equal to the bed's
stale limit (the largest ``stale_after`` of the devices feeding the bed), so HA also shows
"unavailable" when the topic itself stops (a hung node). NIBP values are spot measurements:
they do not expire, and their attributes say when they were measured.

Every entity is available while ``bridge/state`` says ``online``. The templates use plain
Jinja (``dict.get``, ``tojson``) so the tests can render them with Jinja2 against real payloads;
a template that yields ``None`` makes HA show "unknown", never a made-up number.
"""

from __future__ import annotations

import json
import math
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
            "{{ m.value if m and m.value is not none and not m.get('stale') else none }}")


def vital_attributes_template(metric: str) -> str:
    return (f"{{% set m = value_json.metrics.get('{metric}') %}}"
            "{{ {'measured_at': m.get('ts_iso') if m else none, "
            "'device': m.get('device') if m else none, "
            "'stale': m.get('stale', false) if m else none, "
            "'quality': m.get('quality', []) if m else []} | tojson }}")


ALERT_EVENT_TYPES = ("raised", "escalated", "acknowledged", "latched", "reactivated",
                     "cleared", "audio_paused", "audio_pause_expired")
# Session events share the topic and replayed backlog is history: both render empty, which HA
# ignores.
ALERT_EVENT_TEMPLATE = (
    "{% if value_json.type == 'alert' and not value_json.get('historical') %}"
    "{{ {'event_type': value_json.event, 'priority': value_json.priority, "
    "'kind': value_json.kind, 'text': value_json.text, 'alert_id': value_json.alert_id, "
    "'metric': value_json.metric, 'value': value_json.value} | tojson }}{% endif %}"
)
# (component id, name, command, body without the bed) of the optional HA buttons
CONTROLS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("ack_all", "Acknowledge alarms", "alert/ack", {"all": True, "by": "home-assistant"}),
    ("pause_audio", "Pause alarm audio", "alert/pause", {"all": True, "by": "home-assistant"}),
    ("measure_bp", "Measure BP", "bp/measure", {}),
)


def stale_limits(cfg: Config) -> dict[str, float]:
    """Per bed, the largest ``stale_after`` of the continuous devices that feed it (0: only
    episodic devices such as cuffs)."""
    return {bed.id: max((d.stale_after or 0.0 for d in cfg.devices
                         if d.enabled and bed.id in d.referenced_beds()), default=0.0)
            for bed in cfg.beds}


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

    limits = stale_limits(cfg)
    for bed in cfg.beds:
        bed_ids = object_id("kapmonitor", node, bed.id)
        components: dict[str, dict[str, Any]] = {}
        vitals_topic = topics.vitals(bed.id)
        for metric in BED_METRICS:
            info = METRICS[metric]
            components[metric] = {
                "platform": "sensor",
                "unique_id": object_id(bed_ids, metric),
                "name": info.label,
                "state_topic": vitals_topic,
                "value_template": vital_template(metric),
                "json_attributes_topic": vitals_topic,
                "json_attributes_template": vital_attributes_template(metric),
                "unit_of_measurement": _DISPLAY_UNIT.get(info.unit, info.unit),
                "state_class": "measurement",
            }
            if limits[bed.id] and not metric.startswith("nibp_"):
                components[metric]["expire_after"] = math.ceil(limits[bed.id])
        components["alarm_event"] = {
            "platform": "event",
            "unique_id": object_id(bed_ids, "alarm_event"),
            "name": "Alarm event",
            "state_topic": topics.alert(bed.id),
            "value_template": ALERT_EVENT_TEMPLATE,
            "event_types": list(ALERT_EVENT_TYPES),
        }
        if cfg.homeassistant.controls:
            for cid, name, command, body in CONTROLS:
                components[cid] = {
                    "platform": "button",
                    "unique_id": object_id(bed_ids, cid),
                    "name": name,
                    "command_topic": topics.request(command),
                    "payload_press": encode({"bed": bed.id, **body}).decode(),
                    "retain": False,
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

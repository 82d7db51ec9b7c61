"""The MQTT topic tree and the payload encoding, in one place.

What lives here:

* :class:`Topics`: built from the base topic (default ``kapmonitor/<node_id>``) and Home
  Assistant's discovery prefix, it *builds* every topic kapmonitor publishes or subscribes to
  and *parses* a topic back into a typed :class:`Topic` (a :class:`Kind` and the bed, device,
  command or object id in it). A topic that is not ours, or is malformed, parses to ``None``.
  The daemon, the MQTT owner, the services, the tests and the coming central station all go
  through it; nothing else in ``kapmonitor/`` spells a topic;
* :func:`encode`: the one payload encoder: strict JSON (``NaN``/``Infinity`` are never sent),
  compact, UTF-8. Every JSON payload kapmonitor publishes is encoded here.

The tree under the base topic:

===============================  ========  ================================================
topic                            retained  content
===============================  ========  ================================================
``bridge/state``                 yes       online/offline, reason, version (on change only)
``bridge/info``                  yes       version, node, config summary without secrets
``bridge/devices``               yes       every device: driver, bed, state, last seen
``bridge/health``                yes       device counts, outbox depth, clock synchronisation
``bridge/event``                 no        started, device joined/left, config changed
``bridge/request/<cmd>``         no        commands in (``<cmd>`` may contain ``/``)
``bridge/response/<cmd>``        no        the answer, echoing ``transaction``
``device/<id>/status``           yes       link state, last_seen, battery, driver facts
``bed/<id>/vitals``              yes       latest *live* value per metric
``bed/<id>/reading``             no        every reading, from the outbox
``bed/<id>/alert``               no        alert events, from the outbox
``bed/<id>/alarms``              yes       the active alarm set
``bed/<id>/session``             yes       the dosing session state
``display/state``                yes       the node's watch over the central stations
``display/confirm``              no        a central station: "I displayed this alert"
===============================  ========  ================================================

and, outside it, ``<discovery_prefix>/device/<object_id>/config`` (Home Assistant discovery,
retained) and the central stations' own tree (:class:`StationTopics`):
``<station_prefix>/<station_id>/heartbeat`` (not retained) and ``…/state`` (retained, last
will). A station reads many nodes: :class:`NodePatterns` turns base-topic patterns such as
``kapmonitor/+`` into subscription filters and finds the node base of a topic. Home
Assistant's birth topic is configured as a whole topic and is not parsed here.

What does not live here: what the payloads contain (the reading model, the engine's snapshots,
:mod:`kapmonitor.services.homeassistant`), QoS and retain decisions (the MQTT owner and the
publishers), and the connection itself (:mod:`kapmonitor.mqtt`).
"""

from __future__ import annotations

import enum
import json
import logging
import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_TOPIC_BYTES", "BedChannel", "Kind", "NodePatterns", "StationTopics", "Topic", "Topics",
    "encode",
]

log = logging.getLogger("kapmonitor.topics")

MAX_TOPIC_BYTES = 65535  # MQTT: a topic is a UTF-8 string of at most 65535 bytes
# Ids in topics: the configuration's id pattern (beds, devices, node) and HA object ids.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_OBJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
# Command names: one or more path segments, e.g. ``session/symptom_clear``. Unknown but
# well-formed names parse, so that the requester gets an "unknown command" response.
_COMMAND = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")
_COMMAND_MAX = 128


class Kind(enum.Enum):
    """What a topic is."""

    BRIDGE_STATE = "bridge/state"
    BRIDGE_INFO = "bridge/info"
    BRIDGE_DEVICES = "bridge/devices"
    BRIDGE_HEALTH = "bridge/health"
    BRIDGE_EVENT = "bridge/event"
    REQUEST = "bridge/request"
    RESPONSE = "bridge/response"
    DEVICE_STATUS = "device/status"
    BED_VITALS = "bed/vitals"
    BED_READING = "bed/reading"
    BED_ALERT = "bed/alert"
    BED_ALARMS = "bed/alarms"
    BED_SESSION = "bed/session"
    HA_DISCOVERY = "homeassistant/discovery"
    DISPLAY_STATE = "display/state"
    DISPLAY_CONFIRM = "display/confirm"


class BedChannel(enum.Enum):
    """The per-bed topics (``bed/<id>/<channel>``)."""

    VITALS = "vitals"
    READING = "reading"
    ALERT = "alert"
    ALARMS = "alarms"
    SESSION = "session"


_BED_KIND = {
    BedChannel.VITALS: Kind.BED_VITALS,
    BedChannel.READING: Kind.BED_READING,
    BedChannel.ALERT: Kind.BED_ALERT,
    BedChannel.ALARMS: Kind.BED_ALARMS,
    BedChannel.SESSION: Kind.BED_SESSION,
}
_KIND_BED = {kind: channel for channel, kind in _BED_KIND.items()}
# The node's own topics without an id (``bridge/<leaf>``).
_BRIDGE_LEAF = {Kind.BRIDGE_STATE: "state", Kind.BRIDGE_INFO: "info",
                Kind.BRIDGE_DEVICES: "devices", Kind.BRIDGE_HEALTH: "health",
                Kind.BRIDGE_EVENT: "event"}
_LEAF_BRIDGE = {leaf: kind for kind, leaf in _BRIDGE_LEAF.items()}


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: its kind and the id in it (bed, device, command, HA object id; ``None``
    for the node's own ``bridge/<leaf>`` topics)."""

    kind: Kind
    id: str | None = None

    @property
    def bed(self) -> str | None:
        return self.id if self.kind in _KIND_BED else None

    @property
    def device(self) -> str | None:
        return self.id if self.kind is Kind.DEVICE_STATUS else None

    @property
    def command(self) -> str | None:
        return self.id if self.kind in (Kind.REQUEST, Kind.RESPONSE) else None


def _check(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"{what} {value!r} cannot be used in a topic")
    return value


def _check_prefix(prefix: str, what: str) -> str:
    parts = prefix.split("/")
    if not prefix or any(not p or "+" in p or "#" in p for p in parts):
        raise ValueError(f"{what} {prefix!r} must be a topic without wildcards or empty levels")
    if len(prefix.encode()) > MAX_TOPIC_BYTES // 2:
        raise ValueError(f"{what} is too long for an MQTT topic")
    return prefix


class Topics:
    """Builds and parses kapmonitor's topics; see the module docstring for the tree."""

    def __init__(self, base: str, discovery_prefix: str = "homeassistant") -> None:
        self.base = _check_prefix(base, "base topic")
        self.discovery_prefix = _check_prefix(discovery_prefix, "discovery prefix")
        self._base_slash = base + "/"
        self._ha_slash = discovery_prefix + "/device/"
        self._bed_cache: dict[tuple[str, BedChannel], str] = {}
        self.bridge_state = f"{base}/bridge/state"
        self.bridge_info = f"{base}/bridge/info"
        self.bridge_devices = f"{base}/bridge/devices"
        self.bridge_health = f"{base}/bridge/health"
        self.bridge_event = f"{base}/bridge/event"
        self.everything = f"{base}/#"  # the filter for every topic under the base
        self.display_state = f"{base}/display/state"
        self.display_confirm = f"{base}/display/confirm"

    # -- building ----------------------------------------------------------------------------
    def request(self, command: str) -> str:
        return f"{self.base}/bridge/request/{self._command(command)}"

    def response(self, command: str) -> str:
        return f"{self.base}/bridge/response/{self._command(command)}"

    def device_status(self, device: str) -> str:
        return f"{self.base}/device/{_check(device, _ID, 'device id')}/status"

    def bed(self, bed: str, channel: BedChannel) -> str:
        """``bed/<bed>/<channel>`` (cached: readings build it on the hot path)."""
        key = (bed, channel)
        topic = self._bed_cache.get(key)
        if topic is None:
            topic = f"{self.base}/bed/{_check(bed, _ID, 'bed id')}/{channel.value}"
            self._bed_cache[key] = topic
        return topic

    def vitals(self, bed: str) -> str:
        return self.bed(bed, BedChannel.VITALS)

    def reading(self, bed: str) -> str:
        return self.bed(bed, BedChannel.READING)

    def alert(self, bed: str) -> str:
        return self.bed(bed, BedChannel.ALERT)

    def alarms(self, bed: str) -> str:
        return self.bed(bed, BedChannel.ALARMS)

    def session(self, bed: str) -> str:
        return self.bed(bed, BedChannel.SESSION)

    def discovery(self, object_id: str) -> str:
        """Home Assistant's device-based discovery config topic."""
        return f"{self._ha_slash}{_check(object_id, _OBJECT_ID, 'HA object id')}/config"

    def wildcard(self, kind: Kind) -> str:
        """A subscription filter for every topic of ``kind`` (e.g. ``bed/+/reading``)."""
        if kind in _BRIDGE_LEAF:
            return f"{self.base}/bridge/{_BRIDGE_LEAF[kind]}"
        if kind in (Kind.REQUEST, Kind.RESPONSE):
            return f"{self.base}/{kind.value}/#"
        if kind is Kind.DEVICE_STATUS:
            return f"{self.base}/device/+/status"
        if kind is Kind.HA_DISCOVERY:
            return f"{self._ha_slash}+/config"
        if kind is Kind.DISPLAY_STATE:
            return self.display_state
        if kind is Kind.DISPLAY_CONFIRM:
            return self.display_confirm
        return f"{self.base}/bed/+/{_KIND_BED[kind].value}"

    def build(self, topic: Topic) -> str:
        """The inverse of :meth:`parse`."""
        kind, ident = topic.kind, topic.id or ""
        if kind in _BRIDGE_LEAF:
            return f"{self.base}/bridge/{_BRIDGE_LEAF[kind]}"
        if kind is Kind.REQUEST:
            return self.request(ident)
        if kind is Kind.RESPONSE:
            return self.response(ident)
        if kind is Kind.DEVICE_STATUS:
            return self.device_status(ident)
        if kind is Kind.HA_DISCOVERY:
            return self.discovery(ident)
        if kind in (Kind.DISPLAY_STATE, Kind.DISPLAY_CONFIRM):
            return self.wildcard(kind)
        return self.bed(ident, _KIND_BED[kind])

    @staticmethod
    def _command(command: str) -> str:
        if len(command) > _COMMAND_MAX:
            raise ValueError(f"command name of {len(command)} characters is too long")
        return _check(command, _COMMAND, "command name")

    # -- parsing ---------------------------------------------------------------------------
    def parse(self, topic: str) -> Topic | None:
        """The kind and id of one of our topics; ``None`` for anything else (another base,
        an unknown level, an invalid id, wildcards, a topic too long for MQTT)."""
        if len(topic) > MAX_TOPIC_BYTES or len(topic.encode()) > MAX_TOPIC_BYTES:
            return None
        if topic.startswith(self._base_slash):
            parsed = self._parse_ours(topic[len(self._base_slash):])
            if parsed is not None:
                return parsed
        if topic.startswith(self._ha_slash):  # (the prefix may lie under the base topic)
            rest = topic[len(self._ha_slash):]
            object_id, sep, tail = rest.partition("/")
            if sep and tail == "config" and _OBJECT_ID.fullmatch(object_id):
                return Topic(Kind.HA_DISCOVERY, object_id)
        return None

    def _parse_ours(self, rest: str) -> Topic | None:
        if rest == "display/state":
            return Topic(Kind.DISPLAY_STATE)
        if rest == "display/confirm":
            return Topic(Kind.DISPLAY_CONFIRM)
        head, _, tail = rest.partition("/")
        if head == "bridge" and tail in _LEAF_BRIDGE:
            return Topic(_LEAF_BRIDGE[tail])
        if head == "bridge":
            which, _, command = tail.partition("/")
            kind = {"request": Kind.REQUEST, "response": Kind.RESPONSE}.get(which)
            if kind is None or len(command) > _COMMAND_MAX or not _COMMAND.fullmatch(command):
                return None
            return Topic(kind, command)
        ident, _, leaf = tail.partition("/")
        if not _ID.fullmatch(ident):
            return None
        if head == "device":
            return Topic(Kind.DEVICE_STATUS, ident) if leaf == "status" else None
        if head == "bed":
            try:
                return Topic(_BED_KIND[BedChannel(leaf)], ident)
            except ValueError:
                return None
        return None


class StationTopics:
    """The central stations' tree: ``<prefix>/<station_id>/heartbeat`` and ``…/state``."""

    def __init__(self, prefix: str = "kapmonitor-station") -> None:
        self.prefix = _check_prefix(prefix, "station topic prefix")
        self.heartbeats = f"{prefix}/+/heartbeat"  # every station's heartbeat

    def heartbeat(self, station: str) -> str:
        return f"{self.prefix}/{_check(station, _ID, 'station id')}/heartbeat"

    def state(self, station: str) -> str:
        return f"{self.prefix}/{_check(station, _ID, 'station id')}/state"

    def station_of(self, topic: str) -> str | None:
        """The station id of a heartbeat or state topic."""
        head, sep, rest = topic.partition(self.prefix + "/")
        station, _, leaf = rest.partition("/")
        if head or not sep or leaf not in ("heartbeat", "state") or not _ID.fullmatch(station):
            return None
        return station


class NodePatterns:
    """Base topics of many nodes, as a station reads them: each pattern is a base topic whose
    levels may be ``+`` (one node id), e.g. ``kapmonitor/+``."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[list[str]] = []
        for pat in patterns:
            levels = pat.split("/")
            if not pat or any(not lv or "#" in lv or ("+" in lv and lv != "+") for lv in levels):
                raise ValueError(f"node pattern {pat!r}: levels separated by '/', each a name "
                                 "or '+'; '#' is not allowed")
            self.patterns.append(levels)
        self._topics: dict[str, Topics] = {}

    def filters(self, kinds: list[Kind]) -> list[str]:
        """Subscription filters for ``kinds`` under every pattern."""
        probe = Topics("x")
        out = []
        for pat in self.patterns:
            for kind in kinds:
                out.append("/".join(pat) + probe.wildcard(kind)[1:])
        return out

    def topics(self, topic: str) -> Topics | None:
        """The :class:`Topics` of the node that ``topic`` belongs to (None: no pattern)."""
        levels = topic.split("/")
        for pat in self.patterns:
            n = len(pat)
            head = levels[:n]
            if len(levels) > n and all(a in ("+", b) for a, b in zip(pat, head, strict=True)):
                base = "/".join(head)
                t = self._topics.get(base)
                if t is None:
                    try:
                        t = self._topics[base] = Topics(base)
                    except ValueError:
                        return None
                return t
        return None


# -- payloads ----------------------------------------------------------------------------------
# One encoder object for the hot path (a reading per call): compact, strict, UTF-8 text.
_STRICT = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def encode(body: Any) -> bytes:
    """The payload bytes of a JSON body: compact, UTF-8, and never ``NaN``/``Infinity``
    (which are not JSON and which consumers such as Home Assistant reject).

    A non-finite float that reached a payload is a bug upstream; it is sent as ``null`` (the
    way an invalid value is published anyway) and logged, rather than crashing the publisher
    of an alarm."""
    try:
        return _STRICT.encode(body).encode()
    except ValueError:
        log.error("payload with a non-finite number; sent as null: %.200r", body)
        return _STRICT.encode(_finite(body)).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value

"""Which node topics the station reads, on which of its two connections, and what a topic
means to it.

What belongs here: the station's view of the topic tree, built on :mod:`kapmonitor.topics`
(``Topics`` per node, ``NodePatterns`` for ``kapmonitor/+``, ``StationTopics`` for the
heartbeat); no topic is spelled here.
"""

from __future__ import annotations

from dataclasses import dataclass

from kapmonitor.topics import BedChannel, Kind, StationTopics, Topics
from kapmonitor.topics import NodePatterns as _Patterns

__all__ = ["ALARM_KINDS", "DATA_KINDS", "NodePatterns", "NodeTopic", "StationTopics"]

# Two connections: the alarm path (small, urgent) and the bulk data, so that an alert never
# waits in the broker's queue behind a thousand beds' vitals.
ALARM_KINDS = [Kind.BRIDGE_STATE, Kind.BED_ALARMS, Kind.BED_ALERT, Kind.RESPONSE,
               Kind.DISPLAY_STATE]
DATA_KINDS = [Kind.DEVICE_STATUS, Kind.BED_VITALS, Kind.BED_SESSION]
_BED_KINDS = {Kind.BED_VITALS: BedChannel.VITALS, Kind.BED_ALARMS: BedChannel.ALARMS,
              Kind.BED_SESSION: BedChannel.SESSION, Kind.BED_ALERT: BedChannel.ALERT}
_SIMPLE = {Kind.BRIDGE_STATE: "bridge_state", Kind.DISPLAY_STATE: "display_state",
           Kind.DEVICE_STATUS: "device_status", Kind.RESPONSE: "response"}


@dataclass(frozen=True)
class NodeTopic:
    base: str  # the node's base topic, e.g. kapmonitor/clinic-1
    kind: str  # bridge_state | device_status | bed | response | display_state
    ident: str | None = None  # bed id, device id or command
    leaf: str | None = None  # for bed topics: vitals | alarms | session | alert


class NodePatterns:
    """The configured node base topics (``kapmonitor/+`` style patterns)."""

    def __init__(self, patterns: list[str]) -> None:
        self._patterns = _Patterns(patterns)
        # topic → parsed: a station sees the same few thousand topics again every second.
        self._parsed: dict[str, NodeTopic | None] = {}

    def filters(self, kinds: list[Kind] | None = None) -> list[str]:
        return self._patterns.filters(kinds if kinds is not None else ALARM_KINDS + DATA_KINDS)

    def node(self, base: str) -> Topics:
        t = self._patterns.topics(base + "/x")
        return t if t is not None and t.base == base else Topics(base)

    def parse(self, topic: str) -> NodeTopic | None:
        try:
            return self._parsed[topic]
        except KeyError:
            pass
        if len(self._parsed) >= 100_000:
            self._parsed.clear()
        parsed = self._parsed[topic] = self._parse(topic)
        return parsed

    def _parse(self, topic: str) -> NodeTopic | None:
        node = self._patterns.topics(topic)
        parsed = node.parse(topic) if node is not None else None
        if node is None or parsed is None:
            return None
        channel = _BED_KINDS.get(parsed.kind)
        if channel is not None:
            return NodeTopic(node.base, "bed", parsed.id, channel.value)
        kind = _SIMPLE.get(parsed.kind)
        return None if kind is None else NodeTopic(node.base, kind, parsed.id)

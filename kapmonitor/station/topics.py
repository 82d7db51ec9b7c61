"""Which node topics the station reads and how it takes their names apart.

What belongs here: topic names only (no payloads, no I/O). The node's topic tree is the one
documented in the README (``bridge/state``, ``device/<id>/status``, ``bed/<id>/vitals|alarms|
session|alert``, ``bridge/response/<cmd>``); the station's own heartbeat and the display
confirmations are defined here too. When ``kapmonitor/topics.py`` (the project-wide
``Topics(base)``) lands, this module delegates to it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Suffixes (below a node's base topic) the station subscribes to, on two connections: the
# alarm path (small, urgent) and the bulk data, so an alert never waits in the broker's queue
# behind a thousand beds' vitals.
ALARM_SUFFIXES = (
    "bridge/state",
    "bed/+/alarms",
    "bed/+/alert",
    "bridge/response/#",
    "display/state",
)
DATA_SUFFIXES = (
    "device/+/status",
    "bed/+/vitals",
    "bed/+/session",
)
NODE_SUFFIXES = ALARM_SUFFIXES + DATA_SUFFIXES
BED_LEAVES = frozenset({"vitals", "alarms", "session", "alert"})


@dataclass(frozen=True)
class NodeTopic:
    base: str  # the node's base topic, e.g. kapmonitor/clinic-1
    kind: str  # bridge_state | device_status | bed | response | display_state
    ident: str | None = None  # bed id, device id or command
    leaf: str | None = None  # for bed topics: vitals | alarms | session | alert


class NodePatterns:
    """The configured node base topics (``kapmonitor/+`` style patterns)."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = [p.split("/") for p in patterns]

    def filters(self, suffixes: tuple[str, ...] = NODE_SUFFIXES) -> list[str]:
        return [f"{'/'.join(p)}/{s}" for p in self.patterns for s in suffixes]

    def split(self, topic: str) -> tuple[str, list[str]] | None:
        levels = topic.split("/")
        for pat in self.patterns:
            n = len(pat)
            head = levels[:n]
            if len(levels) > n and all(a in ("+", b) for a, b in zip(pat, head, strict=True)):
                return "/".join(levels[:n]), levels[n:]
        return None

    def parse(self, topic: str) -> NodeTopic | None:
        found = self.split(topic)
        if found is None:
            return None
        base, rest = found
        if rest == ["bridge", "state"]:
            return NodeTopic(base, "bridge_state")
        if rest == ["display", "state"]:
            return NodeTopic(base, "display_state")
        if len(rest) == 3 and rest[0] == "device" and rest[2] == "status":
            return NodeTopic(base, "device_status", rest[1])
        if len(rest) == 3 and rest[0] == "bed" and rest[2] in BED_LEAVES:
            return NodeTopic(base, "bed", rest[1], rest[2])
        if len(rest) >= 3 and rest[:2] == ["bridge", "response"]:
            return NodeTopic(base, "response", "/".join(rest[2:]))
        return None


def request_topic(base: str, command: str) -> str:
    return f"{base}/bridge/request/{command}"


def confirm_topic(base: str) -> str:
    return f"{base}/display/confirm"


def heartbeat_topic(prefix: str, station_id: str) -> str:
    return f"{prefix}/{station_id}/heartbeat"


def station_state_topic(prefix: str, station_id: str) -> str:
    return f"{prefix}/{station_id}/state"

"""What the engine emits: alert events and session events (also the append-only alarm log).

``to_json()`` gives the public shape (issue 3, replay output contract):

* alert: ``{"t", "bed", "type": "alert", "event", "alert_id", "rule", "priority", "kind",
  "metric", "value", "text", ...}`` with ``event`` one of ``raised``, ``escalated``,
  ``acknowledged``, ``latched`` (condition over, alert kept until acknowledged),
  ``reactivated`` (a latched alert's condition returned), ``cleared``, ``audio_paused``,
  ``audio_pause_expired``, ``resounded`` (an acknowledged high physiological alarm sounds again:
  ``reason`` ``ack_expired`` or ``worsened``). Extra fields: ``state`` (active|latched|cleared),
  ``acknowledged``, ``audio_paused_until``, ``escalation_level``, ``phase``, ``onset_t``,
  ``by``, ``reason``.
* session: ``{"t", "bed", "type": "session", "event", "phase", ...}`` with ``event`` one of
  ``started``, ``dose``, ``baseline``, ``phase``, ``bp_due``, ``discharge_ready``,
  ``discharge_not_ready``, ``ended``.

Every event is also an alarm-log entry: the daemon appends ``to_json()`` lines to its log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

AlertEventName = str
SessionEventName = str


@dataclass(frozen=True)
class AlertEvent:
    t: float
    bed: str
    event: AlertEventName
    alert_id: str
    rule: str
    priority: str
    kind: str
    metric: str | None
    value: float | None
    text: str
    state: str
    acknowledged: bool
    escalation_level: int
    phase: str
    onset_t: float
    audio_paused_until: float | None = None
    by: str | None = None
    reason: str | None = None

    type = "alert"

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "bed": self.bed,
            "type": "alert",
            "event": self.event,
            "alert_id": self.alert_id,
            "rule": self.rule,
            "priority": self.priority,
            "kind": self.kind,
            "metric": self.metric,
            "value": self.value,
            "text": self.text,
            "state": self.state,
            "acknowledged": self.acknowledged,
            "audio_paused_until": self.audio_paused_until,
            "escalation_level": self.escalation_level,
            "phase": self.phase,
            "onset_t": self.onset_t,
            "by": self.by,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class SessionEvent:
    t: float
    bed: str
    event: SessionEventName
    phase: str
    detail: dict[str, Any] = field(default_factory=dict)

    type = "session"

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "bed": self.bed,
            "type": "session",
            "event": self.event,
            "phase": self.phase,
            **self.detail,
        }


Event = AlertEvent | SessionEvent

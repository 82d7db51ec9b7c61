"""Alarm lifecycle after IEC 60601-1-8 ideas: one :class:`Alert` per open alarm condition.

* An alert is keyed per bed by its *channel*: the rule id for rule alarms, ``bp_overdue``,
  ``device_disconnected:<device>`` and so on for engine technical alarms. Every channel is
  independent: acknowledging or pausing one never touches another, nor another bed.
* ``condition_on`` raises (or reactivates a latched alert); ``condition_off`` clears a
  non-latching alert, or keeps a latching one as ``latched`` until it is acknowledged.
* Acknowledge: the alert stops sounding until its condition ends (then it clears); a latched
  alert clears at once.
* Audio pause: time-limited per alert (expiry event); a new alert always sounds.
* Escalation: an unacknowledged medium becomes high after ``escalate_medium_after_s``; an
  unacknowledged high steps up ``escalation_level`` every ``escalate_high_after_s`` (to call a
  second responder) up to ``max_escalation_level``. Paused alerts escalate only when the pause
  ends. Advisory and low/info alerts do not escalate by time.
* Any priority increase (``raise_priority``: a third confirming NIBP reading, a phase with a
  higher priority) re-annunciates: the alert becomes unacknowledged, unpaused and sounds again,
  and its event carries the current value.
* Acknowledgement of a high physiological alarm is time-limited (``ack_step``): while the
  condition persists it sounds again ``ack_resound_after_s`` after the acknowledgement, and at
  once when its signal moved ``ack_worsen_step`` further beyond the limit than at the
  acknowledgement (event ``resounded`` with ``reason`` ``ack_expired`` / ``worsened``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from typing import Any

from kapmonitor.alerts.events import AlertEvent
from kapmonitor.alerts.rules import PRIORITIES, Lifecycle


@dataclass
class Alert:
    alert_id: str
    bed: str
    channel: str  # rule id or engine channel; one open alert per (bed, channel)
    rule: str
    kind: str
    priority: str
    metric: str | None
    value: float | None
    text: str
    onset_t: float
    latch: bool
    condition: bool = True
    acknowledged: bool = False
    acked_by: str | None = None
    audio_paused_until: float | None = None
    escalation_level: int = 0
    escalate_at: float | None = None
    watch: str | None = None  # signal whose worsening re-sounds an acknowledged alert
    worse_sign: float = 0.0  # +1: higher is worse, -1: lower is worse, 0: not watched
    current: float | None = None  # latest value of ``watch``
    acked_at: float | None = None
    acked_value: float | None = None

    @property
    def state(self) -> str:
        return "active" if self.condition else "latched"

    @property
    def audible(self) -> bool:
        return (
            self.kind != "advisory"
            and self.priority != "info"
            and not self.acknowledged
            and self.audio_paused_until is None
        )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = self.state
        out["audible"] = self.audible
        return out


class AlertBook:
    """All open alerts of all beds, with the lifecycle rules above."""

    def __init__(self, cfg: Lifecycle, phase_of: Callable[[str], str], id_prefix: str = "") -> None:
        self.cfg = cfg
        self.phase_of = phase_of
        self.id_prefix = id_prefix
        self.open: dict[str, dict[str, Alert]] = {}
        self.counter: dict[str, int] = {}

    # -- helpers ------------------------------------------------------------------------------
    def _event(self, t: float, a: Alert, event: str, *, state: str | None = None,
               by: str | None = None, reason: str | None = None) -> AlertEvent:
        return AlertEvent(
            t=t, bed=a.bed, event=event, alert_id=a.alert_id, rule=a.rule, priority=a.priority,
            kind=a.kind, metric=a.metric, value=a.value, text=a.text,
            state=state or a.state, acknowledged=a.acknowledged,
            escalation_level=a.escalation_level, phase=self.phase_of(a.bed),
            onset_t=a.onset_t, audio_paused_until=a.audio_paused_until, by=by, reason=reason,
        )

    def _schedule_escalation(self, a: Alert, t: float) -> None:
        if a.acknowledged or a.kind == "advisory":
            a.escalate_at = None
        elif a.priority == "medium":
            a.escalate_at = t + self.cfg.escalate_medium_after_s
        elif a.priority == "high" and a.escalation_level < self.cfg.max_escalation_level:
            a.escalate_at = t + self.cfg.escalate_high_after_s
        else:
            a.escalate_at = None

    def _close(self, a: Alert) -> None:
        self.open[a.bed].pop(a.channel, None)

    def get(self, bed: str, channel: str) -> Alert | None:
        return self.open.get(bed, {}).get(channel)

    def alerts(self, bed: str) -> list[Alert]:
        """Open alerts, most urgent first, then by onset."""
        return sorted(
            self.open.get(bed, {}).values(),
            key=lambda a: (-PRIORITIES.index(a.priority), a.onset_t, a.alert_id),
        )

    def find(self, bed: str, ref: str) -> Alert | None:
        """An open alert of the bed by alert id, or by channel/rule id."""
        for a in self.open.get(bed, {}).values():
            if a.alert_id == ref:
                return a
        return self.get(bed, ref)

    # -- conditions ---------------------------------------------------------------------------
    def condition_on(
        self, t: float, bed: str, channel: str, *, rule: str, kind: str, priority: str,
        metric: str | None, value: float | None, text: str, latch: bool,
        watch: str | None = None, worse_sign: float = 0.0,
    ) -> list[AlertEvent]:
        a = self.get(bed, channel)
        if a is not None:
            if PRIORITIES.index(priority) > PRIORITIES.index(a.priority):
                a.condition = True  # the condition holds (again), at a higher priority
                return self.raise_priority(t, bed, channel, priority, value=value, text=text)
            if a.condition:
                return []
            a.condition = True
            a.value, a.text = value, text
            return [self._event(t, a, "reactivated")]
        n = self.counter.get(bed, 0) + 1
        self.counter[bed] = n
        a = Alert(
            alert_id=f"{self.id_prefix}{bed}-{n}", bed=bed, channel=channel, rule=rule, kind=kind,
            priority=priority, metric=metric, value=value, text=text, onset_t=t, latch=latch,
            watch=watch, worse_sign=worse_sign, current=value,
        )
        self.open.setdefault(bed, {})[channel] = a
        self._schedule_escalation(a, t)
        return [self._event(t, a, "raised")]

    def condition_off(
        self, t: float, bed: str, channel: str, value: float | None = None
    ) -> list[AlertEvent]:
        a = self.get(bed, channel)
        if a is None or not a.condition:
            return []
        a.condition = False
        if value is not None:
            a.value = value
        if a.latch and not a.acknowledged:
            return [self._event(t, a, "latched")]
        self._close(a)
        return [self._event(t, a, "cleared", state="cleared")]

    def escalate(self, t: float, bed: str, channel: str, text: str | None = None,
                 value: float | None = None) -> list[AlertEvent]:
        """Escalate to high now (e.g. a third confirming NIBP reading)."""
        return self.raise_priority(t, bed, channel, "high", value=value, text=text)

    def raise_priority(self, t: float, bed: str, channel: str, priority: str, *,
                       value: float | None = None, text: str | None = None) -> list[AlertEvent]:
        """A priority increase re-annunciates: unacknowledged, unpaused, sounding again, with
        the current value. Nothing happens unless ``priority`` is higher than the alert's."""
        a = self.get(bed, channel)
        if a is None or PRIORITIES.index(priority) <= PRIORITIES.index(a.priority):
            return []
        a.priority = priority
        if value is not None:
            a.value = a.current = value
        if text:
            a.text = text
        self._unacknowledge(a)
        self._schedule_escalation(a, t)
        return [self._event(t, a, "escalated")]

    def _unacknowledge(self, a: Alert) -> None:
        a.acknowledged = False
        a.acked_by = None
        a.acked_at = None
        a.acked_value = None
        a.audio_paused_until = None

    def ack_step(self, t: float, current: Callable[[Alert], float | None],
                 describe: Callable[[Alert], str | None] | None = None, *,
                 expiry: bool = True) -> list[AlertEvent]:
        """Time-limited acknowledgement of high physiological alarms (see the module doc).

        ``current(alert)`` is the latest value of the alert's ``watch`` signal (None: no new
        value this tick); it is recorded for every open high physiological alert so that an
        acknowledgement knows the value it was given at. ``describe(alert)`` gives the text
        for the current value when the alert sounds again (None: keep the text). Without
        ``expiry`` only a worsened value sounds an alarm again (an evaluation between ticks;
        the acknowledgement's time limit is checked on the tick)."""
        cfg = self.cfg
        out: list[AlertEvent] = []
        for bed in sorted(self.open):
            for a in self.alerts(bed):
                if a.priority != "high" or a.kind != "physiological" or not a.condition:
                    continue
                value = current(a) if a.watch is not None else None
                if value is not None:
                    a.current = value
                if not a.acknowledged or a.acked_at is None:
                    continue
                reason = None
                step = cfg.ack_worsen_step.get(a.watch or "")
                if (
                    value is not None and step is not None and a.worse_sign
                    and a.acked_value is not None
                    and (value - a.acked_value) * a.worse_sign >= step
                ):
                    reason = "worsened"
                elif expiry and 0 < cfg.ack_resound_after_s <= t - a.acked_at:
                    reason = "ack_expired"
                if reason is None:
                    continue
                if a.current is not None:
                    a.value = a.current
                text = describe(a) if describe is not None and value is not None else None
                if text:
                    a.text = text
                self._unacknowledge(a)
                self._schedule_escalation(a, t)
                out.append(self._event(t, a, "resounded", reason=reason))
        return out

    # -- operator actions ---------------------------------------------------------------------
    def acknowledge(self, t: float, bed: str, ref: str | None, by: str | None = None
                    ) -> list[AlertEvent]:
        """Acknowledge one alert (``ref``: alert id or rule id) or, with None, all of the bed."""
        targets = self.alerts(bed) if ref is None else [a for a in [self.find(bed, ref)] if a]
        out: list[AlertEvent] = []
        for a in targets:
            if a.acknowledged:
                continue
            a.acknowledged = True
            a.acked_by = by
            a.acked_at = t
            a.acked_value = a.current if a.current is not None else a.value
            a.audio_paused_until = None
            a.escalate_at = None
            out.append(self._event(t, a, "acknowledged", by=by))
            if not a.condition:
                self._close(a)
                out.append(self._event(t, a, "cleared", state="cleared", by=by))
        return out

    def pause(self, t: float, bed: str, ref: str | None, seconds: float | None,
              by: str | None = None) -> list[AlertEvent]:
        """AUDIO PAUSED for one alert or every open alert of the bed (time-limited)."""
        s = self.cfg.audio_pause_s if seconds is None else seconds
        s = max(0.0, min(s, self.cfg.max_audio_pause_s))
        targets = self.alerts(bed) if ref is None else [a for a in [self.find(bed, ref)] if a]
        out = []
        for a in targets:
            if a.acknowledged or a.kind == "advisory":
                continue
            a.audio_paused_until = t + s
            out.append(self._event(t, a, "audio_paused", by=by))
        return out

    # -- time ---------------------------------------------------------------------------------
    def tick(self, t: float) -> list[AlertEvent]:
        out: list[AlertEvent] = []
        for bed in sorted(self.open):
            for a in self.alerts(bed):
                if a.audio_paused_until is not None and t >= a.audio_paused_until:
                    a.audio_paused_until = None
                    out.append(self._event(t, a, "audio_pause_expired"))
                if a.escalate_at is None or t < a.escalate_at or a.audio_paused_until is not None:
                    continue
                if a.priority == "medium":
                    a.priority = "high"
                else:
                    a.escalation_level += 1
                self._schedule_escalation(a, t)
                out.append(self._event(t, a, "escalated"))
        return out

    def close_channel(self, t: float, bed: str, channel: str) -> list[AlertEvent]:
        """End an engine channel unconditionally (e.g. the session it belonged to ended)."""
        a = self.get(bed, channel)
        if a is None:
            return []
        a.condition = False
        self._close(a)
        return [self._event(t, a, "cleared", state="cleared")]

    # -- persistence --------------------------------------------------------------------------
    def export(self, beds: Collection[str] | None = None) -> dict[str, Any]:
        """The alert id counters and the unacknowledged latched alerts (of ``beds``: default
        every bed)."""
        return {
            "counter": {b: n for b, n in self.counter.items() if beds is None or b in beds},
            "latched": [
                asdict(a) for bed in self.open if beds is None or bed in beds
                for a in self.open[bed].values() if a.latch and not a.acknowledged
            ],
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Add what :meth:`export` gave (several exports of different beds add up)."""
        self.counter.update({str(k): int(v) for k, v in data.get("counter", {}).items()})
        for raw in data.get("latched", []):
            a = Alert(**raw)
            # After a restart the condition is unknown: keep it latched until data says otherwise.
            a.condition = False
            self.open.setdefault(a.bed, {})[a.channel] = a

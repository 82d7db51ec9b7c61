"""Alarm lifecycle (IEC 60601-1-8 ideas) on the AlertBook directly."""

from __future__ import annotations

from typing import Any

from kapmonitor.alerts.lifecycle import AlertBook
from kapmonitor.alerts.rules import Lifecycle

CFG = Lifecycle()


def book() -> AlertBook:
    return AlertBook(CFG, phase_of=lambda bed: "peak")


def raise_(b: AlertBook, t: float, bed: str, channel: str, priority: str = "high",
           kind: str = "physiological", latch: bool = True) -> Any:
    (ev,) = b.condition_on(t, bed, channel, rule=channel, kind=kind, priority=priority,
                           metric="spo2", value=85.0, text="x", latch=latch)
    return ev


def names(events: list[Any]) -> list[tuple[str, str]]:
    return [(e.event, e.rule) for e in events]


def test_raise_is_idempotent_and_ids_are_per_bed_sequences() -> None:
    b = book()
    assert raise_(b, 0, "bed1", "a").alert_id == "bed1-1"
    assert b.condition_on(1, "bed1", "a", rule="a", kind="physiological", priority="high",
                          metric=None, value=None, text="", latch=True) == []
    assert raise_(b, 2, "bed2", "a").alert_id == "bed2-1"
    assert raise_(b, 3, "bed1", "b").alert_id == "bed1-2"


def test_non_latching_clears_with_its_condition() -> None:
    b = book()
    raise_(b, 0, "bed1", "m", priority="medium", latch=False)
    assert names(b.condition_off(5, "bed1", "m")) == [("cleared", "m")]
    assert b.alerts("bed1") == []


def test_latching_stays_latched_until_acknowledged() -> None:
    b = book()
    a = raise_(b, 0, "bed1", "h")
    assert names(b.condition_off(5, "bed1", "h")) == [("latched", "h")]
    assert b.alerts("bed1")[0].state == "latched"
    assert names(b.acknowledge(9, "bed1", a.alert_id, by="nurse")) == [
        ("acknowledged", "h"), ("cleared", "h")
    ]
    assert b.alerts("bed1") == []


def test_latched_condition_returning_reactivates_the_same_alert() -> None:
    b = book()
    a = raise_(b, 0, "bed1", "h")
    b.condition_off(5, "bed1", "h")
    (ev,) = b.condition_on(8, "bed1", "h", rule="h", kind="physiological", priority="high",
                           metric="spo2", value=84.0, text="y", latch=True)
    assert (ev.event, ev.alert_id, ev.state) == ("reactivated", a.alert_id, "active")


def test_acknowledged_active_alert_is_silent_and_clears_when_condition_ends() -> None:
    b = book()
    raise_(b, 0, "bed1", "h")
    b.acknowledge(1, "bed1", "h")
    a = b.alerts("bed1")[0]
    assert a.acknowledged and not a.audible and a.state == "active"
    assert names(b.condition_off(5, "bed1", "h")) == [("cleared", "h")]


def test_ack_one_alert_leaves_the_others_and_other_beds() -> None:
    b = book()
    raise_(b, 0, "bed1", "spo2_below_88")
    stale = raise_(b, 0, "bed1", "vitals_stale", priority="medium", kind="technical",
                   latch=False)
    raise_(b, 0, "bed2", "spo2_below_88")
    assert names(b.acknowledge(1, "bed1", stale.alert_id)) == [("acknowledged", "vitals_stale")]
    assert [a.acknowledged for a in b.alerts("bed1")] == [False, True]  # high first
    assert names(b.acknowledge(2, "bed1", None)) == [("acknowledged", "spo2_below_88")]
    assert not b.alerts("bed2")[0].acknowledged


def test_audio_pause_expires_and_a_new_alert_still_sounds() -> None:
    b = book()
    raise_(b, 0, "bed1", "a")
    (ev,) = b.pause(10, "bed1", None, 30)
    assert ev.event == "audio_paused" and ev.audio_paused_until == 40
    raise_(b, 15, "bed1", "b")
    by_rule = {a.rule: a for a in b.alerts("bed1")}
    assert not by_rule["a"].audible and by_rule["b"].audible
    assert [e.event for e in b.tick(39) if e.rule == "a"] == []
    assert [e.event for e in b.tick(40) if e.rule == "a"] == ["audio_pause_expired"]
    assert by_rule["a"].audible


def test_pause_is_capped() -> None:
    b = book()
    raise_(b, 0, "bed1", "a")
    (ev,) = b.pause(0, "bed1", "a", 10_000)
    assert ev.audio_paused_until == CFG.max_audio_pause_s


def test_unacknowledged_medium_escalates_to_high_then_levels() -> None:
    b = book()
    raise_(b, 0, "bed1", "m", priority="medium", latch=False)
    assert b.tick(CFG.escalate_medium_after_s - 1) == []
    (ev,) = b.tick(CFG.escalate_medium_after_s)
    assert (ev.event, ev.priority, ev.escalation_level) == ("escalated", "high", 0)
    t = CFG.escalate_medium_after_s
    levels = []
    for _ in range(5):
        t += CFG.escalate_high_after_s
        levels += [e.escalation_level for e in b.tick(t)]
    assert levels == list(range(1, CFG.max_escalation_level + 1))


def test_acknowledge_stops_escalation_and_pause_defers_it() -> None:
    b = book()
    raise_(b, 0, "bed1", "a")
    raise_(b, 0, "bed1", "p")
    b.acknowledge(10, "bed1", "a")
    b.pause(10, "bed1", "p", 120)
    assert b.tick(CFG.escalate_high_after_s) == []
    evs = b.tick(130)
    assert [(e.event, e.rule) for e in evs] == [("audio_pause_expired", "p"), ("escalated", "p")]


def test_low_and_advisory_alerts_do_not_escalate() -> None:
    b = book()
    raise_(b, 0, "bed1", "l", priority="low", latch=False)
    raise_(b, 0, "bed1", "adv", priority="medium", kind="advisory", latch=False)
    assert b.tick(10_000) == []
    by_rule = {a.rule: a for a in b.alerts("bed1")}
    assert by_rule["l"].audible
    assert not by_rule["adv"].audible  # advisories are shown, not sounded


def test_export_restore_keeps_unacknowledged_latched_alerts_only() -> None:
    b = book()
    raise_(b, 0, "bed1", "h")
    b.condition_off(5, "bed1", "h")
    raise_(b, 0, "bed1", "m", priority="medium", latch=False)
    data = b.export()
    b2 = book()
    b2.restore(data)
    (a,) = b2.alerts("bed1")
    assert (a.rule, a.state) == ("h", "latched")
    assert raise_(b2, 10, "bed1", "new").alert_id == "bed1-3"  # ids keep counting


def test_a_priority_increase_re_annunciates_an_acknowledged_or_paused_alert() -> None:
    b = book()
    raise_(b, 0, "bed1", "m", priority="medium", latch=False)
    b.acknowledge(10, "bed1", "m")
    (esc,) = b.raise_priority(20, "bed1", "m", "high", value=80.0, text="worse")
    assert (esc.event, esc.priority, esc.acknowledged, esc.value, esc.text) == (
        "escalated", "high", False, 80.0, "worse"
    )
    assert b.raise_priority(21, "bed1", "m", "medium") == []  # never a decrease
    raise_(b, 0, "bed1", "p", priority="low", kind="technical", latch=False)
    b.pause(5, "bed1", "p", 120)
    (esc,) = b.condition_on(30, "bed1", "p", rule="p", kind="technical", priority="medium",
                            metric=None, value=None, text="p", latch=False)
    assert esc.event == "escalated" and esc.audio_paused_until is None
    assert b.get("bed1", "p") is not None and b.get("bed1", "p").audible  # type: ignore[union-attr]


def test_a_latched_alert_keeps_its_ended_condition_when_its_priority_rises() -> None:
    b = book()
    raise_(b, 0, "bed1", "x", priority="medium", latch=True)
    b.condition_off(5, "bed1", "x")
    (esc,) = b.raise_priority(6, "bed1", "x", "high")
    assert (esc.event, esc.state) == ("escalated", "latched")


def test_acknowledgement_of_a_high_physiological_alarm_is_time_limited() -> None:
    b = book()
    (ev,) = b.condition_on(0, "bed1", "s", rule="s", kind="physiological", priority="high",
                           metric="spo2", value=85.0, text="x", latch=True, watch="spo2",
                           worse_sign=-1.0)
    value = {"now": 84.0}
    assert b.ack_step(1, lambda a: value["now"]) == []
    b.acknowledge(2, "bed1", "s")
    value["now"] = 80.1  # 3.9 worse than at the acknowledgement: not yet
    assert b.ack_step(3, lambda a: value["now"]) == []
    value["now"] = 80.0
    (again,) = b.ack_step(4, lambda a: value["now"], lambda a: f"SpO2 {a.current:g}")
    assert (again.event, again.reason, again.value, again.text, again.acknowledged) == (
        "resounded", "worsened", 80.0, "SpO2 80", False
    )
    b.acknowledge(10, "bed1", "s")
    assert b.ack_step(10 + CFG.ack_resound_after_s - 1, lambda a: None) == []
    (timed,) = b.ack_step(10 + CFG.ack_resound_after_s, lambda a: None)
    assert timed.reason == "ack_expired"
    # medium and technical alerts keep their acknowledgement
    raise_(b, 0, "bed1", "m", priority="medium", latch=False)
    raise_(b, 0, "bed1", "t", priority="high", kind="technical", latch=False)
    for channel in ("m", "t", "s"):
        b.acknowledge(400, "bed1", channel)
    assert [e.rule for e in b.ack_step(10_000, lambda a: None)] == ["s"]

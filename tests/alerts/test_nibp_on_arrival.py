"""An NIBP measurement is evaluated when it arrives (``AlarmEngine.evaluate_nibp``), between two
ticks, with the semantics of the tick that would otherwise have taken it: the at-once rule is
raised at the arrival time, a confirm-by-repeat rule counts the measurement once, and the next
tick does not take it again."""

from __future__ import annotations

from typing import Any

import pytest

from kapmonitor.alerts import Event
from tests.helpers.alerts import Clinic


def _arrive(c: Clinic, t: float, sys_: float, dia: float) -> list[dict[str, Any]]:
    """An NIBP measurement arriving at ``t`` (between ticks), evaluated at once."""
    c.t = t
    c.nibp(sys_, dia)
    events: list[Event] = c.engine.evaluate_nibp(t)
    c.events += events
    c.t = float(int(t))  # the clinic's next whole-second tick follows
    return [e.to_json() for e in events]


def _session(c: Clinic) -> None:
    c.cmd("session/start", bed="bed1", profile="ketamine")
    c.run(10, spo2=97.0, pulse_rate=70.0)


def test_a_crisis_bp_is_raised_at_its_arrival_not_at_the_next_tick() -> None:
    c = Clinic(beds=("bed1",))
    _session(c)
    events = _arrive(c, 10.4, 210, 125)
    (raised,) = [e for e in events if e["type"] == "alert" and e["rule"] == "bp_crisis"]
    assert raised["event"] == "raised" and raised["t"] == pytest.approx(10.4)
    assert raised["priority"] == "high" and "210/125" in raised["text"]
    # the high NIBP alarm asks for a re-measurement at the same moment
    assert any(e.get("event") == "bp_due" and e.get("item") == "re_measure" for e in events)
    c.run(5, spo2=97.0, pulse_rate=70.0)
    # the next ticks do not take the measurement again: raised once, never escalated by it
    assert [a["event"] for a in c.alerts(rule="bp_crisis")] == ["raised"]
    last = c.engine.session_state("bed1")["last_nibp"]
    assert (last["t"], last["sys"], last["dia"]) == (pytest.approx(10.4), 210, 125)


def test_a_confirm_by_repeat_rule_counts_each_measurement_once() -> None:
    c = Clinic(beds=("bed1",))
    _session(c)
    first = _arrive(c, 10.5, 185, 100)
    # a repeat is asked for once (each pre-dose confirm-by-repeat rule asks once)
    asked = [e["rule"] for e in first if e.get("event") == "bp_due"]
    assert asked.count("bp_severe") == 1 and all(e["item"] == "confirm" for e in first
                                                 if e.get("event") == "bp_due")
    c.run(60, spo2=97.0, pulse_rate=70.0)
    assert not c.alerts(rule="bp_severe")  # one reading does not confirm, ticks or not
    second = _arrive(c, 70.25, 186, 101)
    assert [(e["rule"], e["event"], e["t"]) for e in second
            if e.get("type") == "alert" and e["rule"].startswith("bp_")] == [
        ("bp_severe", "raised", 70.25)]
    c.run(30, spo2=97.0, pulse_rate=70.0)
    third = _arrive(c, 100.75, 184, 100)
    assert [(e["rule"], e["event"]) for e in third
            if e.get("type") == "alert" and e["rule"].startswith("bp_")] == [
        ("bp_severe", "escalated")]
    assert [a["event"] for a in c.alerts(rule="bp_severe")] == ["raised", "escalated"]


def test_a_worse_bp_resounds_an_acknowledged_alarm_at_its_arrival() -> None:
    c = Clinic(beds=("bed1",))
    _session(c)
    _arrive(c, 10.5, 205, 100)
    c.cmd("alert/ack", bed="bed1", alert_id="bp_crisis")
    c.run(20, spo2=97.0, pulse_rate=70.0)
    same = _arrive(c, 30.5, 206, 100)  # not worse by 20 mmHg: stays acknowledged
    assert not [e for e in same if e.get("event") == "resounded"]
    worse = _arrive(c, 40.5, 228, 110)
    (resounded,) = [e for e in worse if e.get("event") == "resounded"]
    assert resounded["reason"] == "worsened" and resounded["t"] == pytest.approx(40.5)
    assert "228/110" in resounded["text"]


def test_the_acknowledgement_time_limit_is_kept_on_the_tick() -> None:
    """Between ticks only a worse value sounds an acknowledged alarm again; its time limit
    (300 s) expires on the tick grid."""
    c = Clinic(beds=("bed1",))
    _session(c)
    _arrive(c, 10.2, 205, 100)
    c.t = 10.5  # acknowledged between two ticks: the limit ends at 310.5
    c.cmd("alert/ack", bed="bed1", alert_id="bp_crisis")
    c.t = 10.0
    c.run(300, spo2=97.0, pulse_rate=70.0)  # ticks up to 310
    assert not c.alerts(rule="bp_crisis", event="resounded")
    _arrive(c, 310.7, 205, 100)  # past the limit, not worse
    assert not c.alerts(rule="bp_crisis", event="resounded")
    c.run(1, spo2=97.0, pulse_rate=70.0)
    (resounded,) = c.alerts(rule="bp_crisis", event="resounded")
    assert resounded["reason"] == "ack_expired" and resounded["t"] == 311.0


def test_on_arrival_and_at_the_tick_raise_the_same_alerts() -> None:
    """The same session with NIBP evaluated on arrival and with NIBP left to the next tick:
    the same alerts in the same order, each on-arrival one at most one tick earlier."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for mode in ("arrival", "tick"):
        c = Clinic(beds=("bed1",))
        _session(c)
        for k, (sys_, dia) in enumerate([(150, 90), (185, 112), (190, 115), (160, 95),
                                         (212, 118), (175, 100), (150, 90)]):
            t = 20.0 + 120 * k + 0.3
            if mode == "arrival":
                _arrive(c, t, sys_, dia)
            else:
                c.t = t
                c.nibp(sys_, dia)
                c.t = float(int(t))
            c.run(119, spo2=97.0, pulse_rate=70.0)
        runs[mode] = [a for a in c.alerts() if a["rule"].startswith("bp_")]
    arrival, tick = runs["arrival"], runs["tick"]
    assert [(a["rule"], a["event"]) for a in arrival] == [(a["rule"], a["event"]) for a in tick]
    assert {a["rule"] for a in arrival} >= {"bp_severe", "bp_crisis"}
    for a, b in zip(arrival, tick, strict=True):
        assert 0 <= b["t"] - a["t"] <= 1.0
        assert a["t"] != b["t"] or a["event"] != "raised"


def test_nothing_waiting_evaluates_nothing() -> None:
    c = Clinic(beds=("bed1",))
    _session(c)
    assert c.engine.evaluate_nibp(10.5) == []

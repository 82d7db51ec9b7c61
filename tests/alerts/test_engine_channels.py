"""The engine channels bp_with_symptom (a staff-entered symptom with BP ≥160/100 → high at
once, latched, staff reset) and news2_* (NEWS2 on the fly)."""

from __future__ import annotations

import json

import pytest

from kapmonitor.alerts import AlarmEngine
from kapmonitor.alerts.rules import parse_rules
from tests.helpers.alerts import RULES, Clinic


def started(bed: str = "bed1") -> Clinic:
    c = Clinic()
    c.cmd("session/start", bed=bed, profile="ketamine")
    c.run(5, spo2=97.0, pulse_rate=72.0)
    return c


def test_symptom_with_a_recent_raised_bp_is_high_at_once_and_latched() -> None:
    c = started()
    c.nibp(166, 94)  # 160/100 is an "or": SBP alone qualifies; below every other BP rule
    c.run(120, spo2=97.0, pulse_rate=72.0)
    assert not c.alerts(priority="high")
    resp = c.cmd("session/symptom", bed="bed1", symptom="severe_headache", by="nurse-a",
                 note="worst headache of my life")
    assert resp["status"] == "ok" and resp["bp_requested"] is False and resp["alert_id"]
    (raised,) = c.alerts(rule="bp_with_symptom", event="raised")
    assert raised["t"] == c.t and raised["priority"] == "high"
    assert raised["kind"] == "physiological" and raised["value"] == 166
    assert "166/94" in raised["text"] and "severe headache" in raised["text"]
    (advisory,) = c.alerts(rule="symptom_reported", event="raised")
    assert advisory["kind"] == "advisory" and advisory["priority"] == "low"
    (entry,) = c.sessions("symptom")
    assert entry["symptom"] == "severe_headache" and entry["by"] == "nurse-a"
    assert c.engine.session_state("bed1")["symptoms"][0]["note"] == "worst headache of my life"

    # Normal BP afterwards does not clear it: the rule's clear is a staff reset.
    c.nibp(128, 82)
    c.run(60, spo2=97.0, pulse_rate=72.0)
    assert not c.alerts(rule="bp_with_symptom", event="cleared")
    c.cmd("alert/ack", bed="bed1", alert_id="bp_with_symptom")
    assert c.engine.book.get("bed1", "bp_with_symptom") is not None  # acked, still open
    cleared = c.cmd("session/symptom_clear", bed="bed1", all=True, by="dr-b")
    assert cleared["cleared"] == ["severe_headache"] and cleared["symptoms"] == []
    assert c.alerts(rule="bp_with_symptom", event="cleared")
    assert c.alerts(rule="symptom_reported", event="cleared")
    assert c.engine.active_alarms("bed1")["count"] == 0


def test_symptom_without_a_reading_asks_for_bp_and_fires_on_the_next_qualifying_one() -> None:
    c = started()
    resp = c.cmd("session/symptom", bed="bed1", symptom="chest_pain")
    assert resp["bp_requested"] is True and resp["alert_id"] is None
    (due,) = [e for e in c.sessions("bp_due") if e["item"] == "symptom"]
    assert due["rule"] == "bp_with_symptom"
    c.nibp(150, 92)  # below 160/100: no alarm, the symptom stays on record
    c.run(10, spo2=97.0, pulse_rate=72.0)
    assert not c.alerts(rule="bp_with_symptom")
    c.nibp(158, 101)  # DBP alone qualifies
    c.run(2, spo2=97.0, pulse_rate=72.0)
    (raised,) = c.alerts(rule="bp_with_symptom", event="raised")
    assert raised["priority"] == "high" and "chest pain" in raised["text"]
    # Clearing without an ack leaves the high latched until someone acknowledges it.
    c.cmd("session/symptom_clear", bed="bed1", symptom="chest_pain")
    assert c.alerts(rule="bp_with_symptom", event="latched")
    c.cmd("alert/ack", bed="bed1", all=True)
    assert c.alerts(rule="bp_with_symptom", event="cleared")


def test_an_old_reading_does_not_qualify_and_beds_are_independent() -> None:
    c = started()
    c.nibp(170, 104, bed="bed2")
    c.nibp(170, 104)
    c.run(RULES.symptoms.bp_within_s + 60, spo2=97.0, pulse_rate=72.0)
    assert not c.alerts(rule="bp_with_symptom")
    resp = c.cmd("session/symptom", bed="bed1", symptom="visual_change")
    assert resp["bp_requested"] is True and not c.alerts(rule="bp_with_symptom")
    c.cmd("session/symptom", bed="bed2", symptom="dyspnoea")  # bed2's reading is old too
    c.nibp(172, 98, bed="bed2")
    c.run(2, spo2=97.0, pulse_rate=72.0)
    (raised,) = c.alerts(rule="bp_with_symptom", event="raised")
    assert raised["bed"] == "bed2"
    c.cmd("session/symptom_clear", bed="bed1", all=True)
    assert c.engine.book.get("bed2", "symptom_reported") is not None


@pytest.mark.parametrize(("args", "error"), [
    ({"bed": "bed1", "symptom": "hiccups"}, "unknown symptom 'hiccups'; known: severe_headache"),
    ({"bed": "bed9", "symptom": "chest_pain"}, "unknown bed 'bed9'"),
    ({"bed": "bed1"}, "symptom: required field is missing"),
    ({"bed": "bed1", "symptom": "chest_pain", "colour": 1}, "colour: unknown field"),
])
def test_bad_symptom_commands_get_an_error(args: dict[str, object], error: str) -> None:
    r = AlarmEngine(RULES, ["bed1"]).command("session/symptom", args, 0.0)
    assert r.response["status"] == "error" and error in r.response["error"]


def test_symptom_clear_needs_an_active_symptom_or_all() -> None:
    e = AlarmEngine(RULES, ["bed1"])
    r = e.command("session/symptom_clear", {"bed": "bed1", "symptom": "chest_pain"}, 0.0)
    assert "not active on bed bed1" in r.response["error"]
    r = e.command("session/symptom_clear", {"bed": "bed1"}, 0.0)
    assert "give either symptom or all=true" in r.response["error"]
    assert e.command("session/symptom_clear", {"bed": "bed1", "all": True}, 0.0).ok


def test_clinic_can_switch_symptom_entry_off_or_change_limits() -> None:
    data = RULES.model_dump()
    data["symptoms"]["enabled"] = False
    off = AlarmEngine(parse_rules(data), ["bed1"])
    r = off.command("session/symptom", {"bed": "bed1", "symptom": "chest_pain"}, 0.0)
    assert "switched off" in r.response["error"]

    data["symptoms"].update(enabled=True, sys_at_or_above=150.0)
    c = Clinic(rules=parse_rules(data))
    c.nibp(152, 80)
    c.run(2, spo2=97.0)
    c.cmd("session/symptom", bed="bed1", symptom="confusion")
    assert c.alerts(rule="bp_with_symptom", event="raised")


def test_symptoms_survive_a_restart() -> None:
    c = started()
    c.nibp(175, 100)
    c.run(3, spo2=97.0, pulse_rate=72.0)
    c.cmd("session/symptom", bed="bed1", symptom="neuro_change")
    saved = json.loads(json.dumps(c.engine.export_state()))

    fresh = AlarmEngine(RULES, ["bed1", "bed2"])
    fresh.restore_state(saved)
    events = [e.to_json() for e in fresh.tick(c.t + 30)]
    assert [e["rule"] for e in events if e["type"] == "alert"] == ["symptom_reported"]
    assert fresh.session_state("bed1")["symptoms"][0]["symptom"] == "neuro_change"
    (high,) = [a for a in fresh.active_alarms("bed1")["alarms"] if a["rule"] == "bp_with_symptom"]
    assert high["priority"] == "high"
    # Acknowledged after the restart it stays open while the symptom is on record.
    fresh.command("alert/ack", {"bed": "bed1", "all": True}, c.t + 31)
    assert fresh.book.get("bed1", "bp_with_symptom") is not None
    r = fresh.command("session/symptom_clear", {"bed": "bed1", "all": True}, c.t + 32)
    assert [e.to_json()["rule"] for e in r.events if e.type == "alert"] == [
        "symptom_reported", "bp_with_symptom"]
    assert fresh.active_alarms("bed1")["count"] == 0


# -- news2_total / news2_parameter: NEWS2 on the fly ---------------------------------------------

def dosed(c: Clinic, **vitals: float) -> None:
    c.cmd("session/start", bed="bed1", profile="ketamine")
    c.run(5, **vitals)
    c.cmd("session/dose", bed="bed1")


def test_news2_is_scored_every_minute_into_the_session_state() -> None:
    c = Clinic(beds=("bed1",))
    dosed(c, spo2=97.0, pulse_rate=72.0, resp_rate=14.0)
    c.nibp(128, 80)
    c.run(130, spo2=97.0, pulse_rate=72.0, resp_rate=14.0)
    state = c.engine.session_state("bed1")["news2"]
    assert state["total"] == 0 and state["complete"] is False
    assert state["parts"] == {"resp_rate": 0, "spo2": 0, "air_or_oxygen": 0, "sbp": 0,
                              "pulse": 0}
    assert state["missing"] == ["consciousness", "temperature"]
    # One event per change of score, not one a minute.
    scores = c.sessions("news2")
    assert [e["total"] for e in scores] == [0] * len(scores)
    assert scores[0]["missing"] == ["sbp", "consciousness", "temperature"]  # before the NIBP
    assert scores[-1]["missing"] == ["consciousness", "temperature"]
    times = [e["t"] for e in scores]
    c.run(300, spo2=97.0, pulse_rate=72.0, resp_rate=14.0)
    assert [e["t"] for e in c.sessions("news2")] == times


def test_news2_total_of_7_is_high_and_a_single_3_is_an_advisory() -> None:
    c = Clinic(beds=("bed1",))
    dosed(c, spo2=97.0, pulse_rate=72.0, resp_rate=14.0)
    c.run(120, spo2=97.0, pulse_rate=72.0, resp_rate=14.0)
    # RR 26 (3) alone: no rule of its own fires below 30, NEWS2 shows it.
    c.run(120, spo2=97.0, pulse_rate=72.0, resp_rate=26.0)
    assert not c.alerts(rule="news2_total")
    (single,) = c.alerts(rule="news2_parameter", event="raised")
    assert single["kind"] == "advisory" and single["priority"] == "medium"
    assert "resp_rate" in single["text"] and "partial" in single["text"]
    # + SpO2 93 (2) + pulse 115 (2) = 7 → high.
    c.run(120, spo2=93.0, pulse_rate=115.0, resp_rate=26.0)
    (total,) = c.alerts(rule="news2_total", event="raised")
    assert total["priority"] == "high" and total["value"] == 7
    c.run(120, spo2=97.0, pulse_rate=72.0, resp_rate=14.0)
    assert c.alerts(rule="news2_total", event="cleared")
    assert c.alerts(rule="news2_parameter", event="cleared")


def test_news2_alerts_only_in_their_phases_and_never_on_missing_data() -> None:
    c = Clinic(beds=("bed1",))
    c.cmd("session/start", bed="bed1", profile="ketamine")
    c.run(200, spo2=90.0, pulse_rate=135.0, resp_rate=26.0)  # pre-dose: scored, no alert
    assert c.engine.session_state("bed1")["news2"]["total"] == 9
    assert not c.alerts(rule="news2_total") and not c.alerts(rule="news2_parameter")
    c.cmd("session/dose", bed="bed1")
    c.run(200)  # no data at all: nothing scores, nothing fires
    news2 = c.engine.session_state("bed1")["news2"]
    assert news2["total"] == 0 and {"spo2", "pulse", "resp_rate", "sbp"} <= set(news2["missing"])
    assert not c.alerts(rule="news2_total")


def test_news2_can_be_switched_off() -> None:
    data = RULES.model_dump()
    data["news2"]["enabled"] = False
    c = Clinic(beds=("bed1",), rules=parse_rules(data))
    dosed(c, spo2=88.5, pulse_rate=135.0, resp_rate=26.0)
    c.run(200, spo2=88.5, pulse_rate=135.0, resp_rate=26.0)
    assert c.engine.session_state("bed1")["news2"] is None
    assert not c.alerts(rule="news2_total") and not c.sessions("news2")

"""Issue 9 "How it must be shown": the clinical traces (tests/traces, made by generate.py) run
through ``kapmonitor replay``'s engine run, each with a negative twin that must stay silent.
Expected times are derived from the trace and the rules, not copied from the output."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from kapmonitor.alerts import RuleSet
from kapmonitor.alerts.rules import parse_rules
from tests.alerts.test_scenarios import RULES, alerts, dose_times, replay, rows, rule
from tests.helpers.alerts import Clinic
from tests.helpers.paths import ROOT, TRACES


def sessions(events: tuple[dict[str, Any], ...], name: str, **match: Any
             ) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "session" and e["event"] == name
            and all(e.get(k) == v for k, v in match.items())]


def values(name: str, bed: str, metric: str) -> dict[float, str]:
    return {float(r["t"]): r["value"] for r in rows(name) if r["bed"] == bed
            and r["name"] == metric}


def with_rules(**sections: dict[str, Any]) -> RuleSet:
    update = {k: getattr(RULES, k).model_copy(update=v) for k, v in sections.items()}
    return RULES.model_copy(update=update)


def loud(events: tuple[dict[str, Any], ...], bed: str) -> list[dict[str, Any]]:
    """Raised alarms of medium or high priority (advisories are never sounded)."""
    return [e for e in alerts(events, bed=bed, event="raised")
            if e["priority"] in ("medium", "high") and e["kind"] != "advisory"]


# -- 1. short gaps hold the alarm-condition delay; dropouts are a technical problem -----------


def test_empty_samples_inside_a_desaturation_no_longer_restart_its_delay() -> None:
    name = "dropout_desaturation"
    spo2 = values(name, "bed1", "spo2")
    below = min(t for t, v in spo2.items() if v and float(v) < 88)
    empty = sorted(t for t, v in spo2.items() if not v)
    assert len(empty) >= 15 and max(b - a for a, b in zip(empty, empty[1:], strict=False)) <= 14
    events = replay(name)
    (raised,) = alerts(events, bed="bed1", rule="spo2_below_88", event="raised")
    r = rule("spo2_below_88")
    # within the (artefact-gated: the drop is a spike) delay plus the held gap ticks
    gaps = sum(1 for t in empty if below <= t <= raised["t"])
    assert below <= raised["t"] <= below + r.delay_s * RULES.artefact.delay_factor + gaps
    assert raised["priority"] == "high" and raised["value"] < 88
    assert alerts(events, bed="bed1", rule="spo2_at_or_below_91", event="raised")
    # the old semantics (every gap restarts the delay and the area) never alarmed
    reset = with_rules(gaps={"hold_ticks": 0})
    assert not alerts(replay(name, reset), bed="bed1", rule="spo2_below_88")


def test_frequent_dropouts_during_a_pending_condition_raise_signal_dropouts() -> None:
    name = "dropout_desaturation"
    events = replay(name)
    spo2 = values(name, "bed2", "spo2")
    empty = sorted(t for t, v in spo2.items() if not v)
    (raised,) = alerts(events, bed="bed2", rule="signal_dropouts", event="raised")
    window = RULES.gaps.dropout_window_s
    missing = sum(1 for t in empty if raised["t"] - window < t <= raised["t"])
    assert missing / window > RULES.gaps.dropout_share
    assert missing - 1 <= RULES.gaps.dropout_share * window  # the first tick over the share
    assert (raised["kind"], raised["priority"], raised["metric"]) == ("technical", "low", "spo2")
    assert "spo2" in raised["text"] and "60 s" in raised["text"]
    # the desaturation under the dropouts still alarms
    assert alerts(events, bed="bed2", rule="spo2_below_88", event="raised")
    (cleared,) = alerts(events, bed="bed2", rule="signal_dropouts", event="cleared")
    assert cleared["t"] > max(empty)


def test_motion_storm_with_dropouts_raises_no_medium_or_high_alarm() -> None:
    name = "dropout_motion_storm"
    spo2 = values(name, "bed1", "spo2")
    assert sum(1 for v in spo2.values() if not v) > 200, "the trace really drops samples"
    assert sum(1 for v in spo2.values() if v and float(v) < 85) > 50, "…and has deep dips"
    events = replay(name)
    assert loud(events, "bed1") == []
    assert alerts(events, kind="physiological") == []


# -- 2. discharge readiness counts quiet time from the end; symptoms block it ------------------


def test_discharge_quiet_time_counts_from_the_end_of_the_spo2_alert() -> None:
    events = replay("discharge_quiet")
    spo2_alerts = [e for e in alerts(events, bed="bed1", kind="physiological")
                   if e["metric"] == "spo2"]
    assert spo2_alerts, "the desaturation raised SpO2 alerts"
    ended = max(e["t"] for e in spo2_alerts if e["event"] == "cleared")
    ready = [e["t"] for e in sessions(events, "discharge_ready", bed="bed1")]
    quiet = RULES.discharge.spo2_alarm_quiet_s
    assert [t for t in ready if spo2_alerts[0]["t"] <= t < ended + quiet] == []
    assert ended + quiet in ready


def test_an_uncleared_symptom_blocks_discharge_and_the_advisory_says_why() -> None:
    events = replay("discharge_quiet")
    (cleared,) = [float(r["t"]) for r in rows("discharge_quiet") if r["name"] == "symptom_clear"]
    (not_ready,) = sessions(events, "discharge_not_ready", bed="bed2")
    assert not_ready["unmet"] == ["symptom"]
    assert any("confusion" in r and "symptom" in r for r in not_ready["reasons"])
    assert [e["t"] for e in sessions(events, "discharge_ready", bed="bed2")] == [cleared]
    # the negative twin: the same session without symptom or desaturation is ready at once
    (t0,) = {t for t in dose_times("discharge_quiet")}
    recovery = t0 + RULES.profiles["ketamine"].peak_end_min * 60
    assert [e["t"] for e in sessions(events, "discharge_ready", bed="bed3")] == [recovery]
    assert sessions(events, "discharge_not_ready", bed="bed3") == []
    assert alerts(events, bed="bed3", kind="physiological") == []


# -- 3. an escalation re-annunciates with the current value ------------------------------------


def test_escalation_of_an_acknowledged_alert_sounds_again_with_the_current_value() -> None:
    events = replay("escalation_ack")
    sys_ = values("escalation_ack", "bed1", "nibp_sys")
    third = max(sys_)
    severe = [e for e in alerts(events, bed="bed1", rule="bp_severe")]
    assert [e["event"] for e in severe][:3] == ["raised", "acknowledged", "escalated"]
    esc = severe[2]
    assert (esc["t"], esc["priority"], esc["acknowledged"]) == (third, "high", False)
    assert esc["value"] == float(sys_[third]) != severe[0]["value"]
    assert f"{float(sys_[third]):g}/" in esc["text"]
    remeasure = sessions(events, "bp_due", bed="bed1", item="re_measure")
    assert [e["t"] for e in remeasure] == [third]
    # the escalated alert sounds: it escalates further by time, being unacknowledged
    assert severe[3]["event"] == "escalated" and severe[3]["escalation_level"] == 1
    # negative twin: acknowledged the same way, the next reading is normal: nothing sounds
    twin = alerts(events, bed="bed2", rule="bp_severe")
    assert [e["event"] for e in twin] == ["raised", "acknowledged", "cleared"]
    assert sessions(events, "bp_due", bed="bed2", item="re_measure") == []


def test_a_phase_that_raises_an_open_alerts_priority_re_annunciates_it() -> None:
    c = Clinic(beds=("bed1",))
    c.cmd("session/start", bed="bed1", profile="ketamine")
    c.run(5, spo2=97.0, pulse_rate=72.0)
    c.run(70)  # silent oximeter: vitals_stale, low before the dose
    (stale,) = c.alerts(rule="vitals_stale", event="raised")
    assert stale["priority"] == "low"
    c.cmd("alert/ack", bed="bed1", alert_id="vitals_stale")
    c.cmd("session/dose", bed="bed1")
    c.run(2)
    (esc,) = c.alerts(rule="vitals_stale", event="escalated")
    assert (esc["priority"], esc["acknowledged"], esc["phase"]) == ("medium", False, "onset")


def test_a_bp_alarm_that_becomes_high_by_time_asks_for_a_re_measurement() -> None:
    c = Clinic(beds=("bed1",))
    c.cmd("session/start", bed="bed1", profile="ketamine")
    for _ in range(2):
        c.nibp(186, 112)
        c.run(300, spo2=97.0, pulse_rate=72.0)
    (raised,) = c.alerts(rule="bp_severe", event="raised")
    assert raised["priority"] == "medium"
    (esc,) = c.alerts(rule="bp_severe", event="escalated", escalation_level=0)
    assert (esc["priority"], esc["t"]) == (
        "high", raised["t"] + RULES.lifecycle.escalate_medium_after_s
    )
    assert [e["t"] for e in c.sessions("bp_due") if e.get("item") == "re_measure"] == [esc["t"]]


# -- 4. acknowledgement of a high physiological alarm is time-limited ---------------------------


def test_acknowledged_high_alarm_sounds_again_when_worse_or_after_five_minutes() -> None:
    name = "ack_time_limit"
    events = replay(name)
    (ack_t,) = {float(r["t"]) for r in rows(name) if r["name"] == "ack"}
    step = RULES.lifecycle.ack_worsen_step["spo2"]
    spo2 = {t: float(v) for t, v in values(name, "bed1", "spo2").items()}
    at_ack = spo2[ack_t - 1]  # the value the last tick before the acknowledgement saw
    worse = min(t for t, v in spo2.items() if t > ack_t and v <= at_ack - step)
    (again,) = alerts(events, bed="bed1", rule="spo2_below_88", event="resounded")
    assert (again["t"], again["reason"], again["acknowledged"]) == (worse, "worsened", False)
    assert again["value"] == spo2[worse] and f"{spo2[worse]:g} %" in again["text"]
    assert worse - ack_t < RULES.lifecycle.ack_resound_after_s
    (timed,) = alerts(events, bed="bed2", rule="spo2_below_88", event="resounded")
    assert (timed["t"], timed["reason"]) == (ack_t + RULES.lifecycle.ack_resound_after_s,
                                             "ack_expired")
    # medium alarms keep their acknowledgement; the negative twin recovers and never re-sounds
    assert [e for e in alerts(events, event="resounded") if e["priority"] != "high"] == []
    assert alerts(events, bed="bed3", event="resounded") == []
    assert [e["event"] for e in alerts(events, bed="bed3", rule="spo2_below_88")] == [
        "raised", "acknowledged", "cleared"
    ]


def test_time_limit_zero_disables_the_timed_re_sounding() -> None:
    events = replay("ack_time_limit", with_rules(lifecycle={"ack_resound_after_s": 0.0}))
    assert alerts(events, bed="bed2", event="resounded") == []
    assert alerts(events, bed="bed1", event="resounded")  # worsening still re-sounds


# -- 5. a probe streaming zeros is sensor-off --------------------------------------------------


def test_zero_streaming_probe_is_treated_like_sensor_off() -> None:
    events = replay("zero_probe")
    zeros = values("zero_probe", "bed1", "spo2")
    first = min(t for t, v in zeros.items() if v == "0.0")
    off = {}
    for bed in ("bed1", "bed2"):
        (raised,) = alerts(events, bed=bed, rule="spo2_sensor_off", event="raised")
        off[bed] = (raised["t"], raised["priority"], raised["kind"])
        assert alerts(events, bed=bed, kind="physiological") == []
        assert alerts(events, bed=bed, rule="signal_poor") == []
    assert off["bed1"] == off["bed2"] == (first + rule("spo2_sensor_off").delay_s, "medium",
                                          "technical")
    assert [e for e in alerts(events, bed="bed3")] == []  # 5 s of zeros: nothing


def test_zero_pulse_alone_is_sensor_off_too() -> None:
    c = Clinic(beds=("bed1",))
    c.cmd("session/start", bed="bed1", profile="ketamine")
    c.run(30, spo2=97.0, pulse_rate=0.0)
    (raised,) = c.alerts(rule="spo2_sensor_off", event="raised")
    assert raised["t"] == 1 + rule("spo2_sensor_off").delay_s
    assert not c.alerts(rule="signal_poor") and not c.alerts(kind="physiological")


# -- 6. BP cadence after a BP alarm ---------------------------------------------------------


def test_after_a_bp_crisis_the_next_bp_is_due_in_5_and_overdue_at_10_min() -> None:
    events = replay("bp_cadence")
    sched = RULES.bp_schedule
    crisis = max(t for t, v in values("bp_cadence", "bed1", "nibp_sys").items()
                 if float(v) >= 200)
    due = sessions(events, "bp_due", bed="bed1", item="while_active")
    assert [e["t"] for e in due] == [crisis + sched.after_alarm_every_s]
    (overdue,) = alerts(events, bed="bed1", rule="bp_overdue", event="raised")
    assert overdue["t"] == crisis + sched.after_alarm_overdue_s
    assert (sched.after_alarm_every_s, sched.after_alarm_overdue_s) == (300.0, 600.0)
    # negative twin: the repeat came within 5 min, nothing is overdue
    assert alerts(events, bed="bed2", rule="bp_overdue") == []


def test_a_bp_alarm_outside_the_after_alarm_rules_keeps_the_15_20_min_cadence() -> None:
    c = Clinic(beds=("bed1",))
    c.cmd("session/start", bed="bed1", profile="ketamine")
    c.run(5, spo2=97.0, pulse_rate=72.0)
    c.cmd("session/dose", bed="bed1")
    c.nibp(88, 55)  # bp_low (medium, latched): not a crisis
    c.run(1)
    (low,) = c.alerts(rule="bp_low", event="raised")
    c.run(1300)
    sched = RULES.bp_schedule
    due = [e["t"] for e in c.sessions("bp_due") if e.get("item") == "while_active"]
    assert due == [low["t"] + sched.while_active_every_s]
    (overdue,) = c.alerts(rule="bp_overdue", event="raised")
    assert overdue["t"] == low["t"] + sched.while_active_overdue_s


# -- 7. NEWS2 5–6: urgent response ------------------------------------------------------------


def test_news2_five_is_a_sounded_medium_urgent_response_alert() -> None:
    events = replay("news2_urgent")
    start = min(t for t, v in values("news2_urgent", "bed1", "resp_rate").items()
                if float(v) >= 21)
    (raised,) = alerts(events, bed="bed1", rule="news2_urgent", event="raised")
    assert start <= raised["t"] <= start + RULES.news2.every_s
    assert (raised["priority"], raised["kind"], raised["value"]) == ("medium", "physiological",
                                                                      5.0)
    assert [e["rule"] for e in loud(events, "bed1")] == ["news2_urgent"]
    assert alerts(events, bed="bed1", rule="news2_total") == []
    # negative twin: NEWS2 4 raises nothing
    assert loud(events, "bed2") == [] and alerts(events, bed="bed2", rule="news2_urgent") == []


# -- 8. texts state the limits in force ------------------------------------------------------


def test_alert_texts_state_the_limits_in_force_after_risk_flags() -> None:
    events = replay("risk_flag_texts")
    (spo2,) = alerts(events, bed="bed1", rule="predose_spo2_low", event="raised")
    assert "at or below 97 %" in spo2["text"] and "95" not in spo2["text"]
    (hr,) = alerts(events, bed="bed2", rule="hr_at_or_above_140", event="raised")
    assert "at or above 130 /min" in hr["text"] and "140" not in hr["text"]
    # negative twin without risk flags: the same vitals raise neither
    assert alerts(events, bed="bed3", rule="predose_spo2_low") == []
    assert alerts(events, bed="bed3", rule="hr_at_or_above_140") == []


def test_no_alert_text_of_any_trace_shows_an_unfilled_limit() -> None:
    for trace in sorted(TRACES.glob("*.csv")):
        for e in alerts(replay(trace.stem)):
            assert "{" not in e["text"], (trace.stem, e["text"])


def test_untightened_texts_keep_the_published_limits() -> None:
    events = replay("escalation_ack")
    (severe,) = alerts(events, bed="bed1", rule="bp_severe", event="raised")
    assert severe["text"].startswith("Blood pressure at or above 180/110 on repeat readings")
    (rise,) = alerts(events, bed="bed1", rule="bp_rise_over_baseline", event="raised")
    assert rise["text"].startswith("Blood pressure 40/25 mmHg above baseline")


# -- the command itself -----------------------------------------------------------------------


def test_kapmonitor_replay_command_runs_the_new_traces() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "kapmonitor.cli", "replay", str(TRACES / "zero_probe.csv")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    assert [e["bed"] for e in events if e.get("rule") == "spo2_sensor_off"
            and e["event"] == "raised"] == ["bed1", "bed2"]


def test_docs_disclose_the_new_channels_and_defaults() -> None:
    doc = (ROOT / "docs/alarms.md").read_text()
    for text in ("`signal_dropouts`", "`news2_urgent`", "`resounded`", "hold_ticks",
                 "gap_ticks", "dropout_share", "zero_is_off", "ack_resound_after_s",
                 "ack_worsen_step", "after_alarm_every_s", "symptoms_block", "kapmonitor default"):
        assert text in doc, text



def test_a_title_placeholder_must_name_a_value_term_of_the_rule() -> None:
    data = RULES.model_dump()
    spo2 = next(r for r in data["rules"] if r["id"] == "spo2_below_88")
    spo2["title"] = "SpO2 below {hr} %"
    with pytest.raises(ValidationError, match="placeholder"):
        parse_rules(data)
    spo2["title"] = "SpO2 below {spo2.2} %"
    with pytest.raises(ValidationError, match="placeholder"):
        parse_rules(data)


def test_stale_text_states_the_phase_limit() -> None:
    c = Clinic(beds=("bed1",))
    c.cmd("session/start", bed="bed1", profile="ketamine")
    c.run(5, spo2=97.0, pulse_rate=72.0)
    c.cmd("session/dose", bed="bed1")
    c.run(40)
    (stale,) = c.alerts(rule="vitals_stale", event="raised")
    assert "more than 30 s" in stale["text"]  # the onset limit, not the 60 s of other phases


def test_worsening_steps_for_heart_rate_and_systolic_pressure() -> None:
    c = Clinic(beds=("bed1",))
    c.cmd("session/start", bed="bed1", profile="ketamine")
    c.run(60, spo2=97.0, pulse_rate=145.0)
    assert c.alerts(rule="hr_at_or_above_140", event="raised")
    c.cmd("alert/ack", bed="bed1", alert_id="hr_at_or_above_140")
    step = RULES.lifecycle.ack_worsen_step
    c.run(20, spo2=97.0, pulse_rate=145.0 + step["hr"] - 1)
    assert not c.alerts(event="resounded")
    c.run(2, spo2=97.0, pulse_rate=145.0 + step["hr"])
    (hr,) = c.alerts(event="resounded")
    assert (hr["rule"], hr["reason"], hr["value"]) == ("hr_at_or_above_140", "worsened", 165.0)
    c.nibp(206, 118)
    c.run(2, spo2=97.0, pulse_rate=80.0)
    c.cmd("alert/ack", bed="bed1", alert_id="bp_crisis")
    c.run(60, spo2=97.0, pulse_rate=80.0)
    c.nibp(206 + step["nibp_sys"], 118)
    c.run(2, spo2=97.0, pulse_rate=80.0)
    (bp,) = c.alerts(rule="bp_crisis", event="resounded")
    assert (bp["reason"], bp["value"]) == ("worsened", 226.0) and "226/118" in bp["text"]

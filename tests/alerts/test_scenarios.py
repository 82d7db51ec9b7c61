"""Issue 3 "How it must be shown": hand-made traces (tests/traces, made by generate.py) through
``kapmonitor replay``'s engine run. Expected times are derived from the trace and the rules, not
copied from the output."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from kapmonitor.alerts import RuleSet, load_rules
from kapmonitor.replay import run
from tests.helpers.paths import TRACES

RULES = load_rules()


def rule(rule_id: str) -> Any:
    return next(r for r in RULES.rules if r.id == rule_id)


def replay(name: str, rules: RuleSet | None = None) -> tuple[dict[str, Any], ...]:
    return _replay(name) if rules is None else _run(name, rules)


@cache
def _replay(name: str) -> tuple[dict[str, Any], ...]:
    return _run(name, RULES)


def _run(name: str, rules: RuleSet) -> tuple[dict[str, Any], ...]:
    out = io.StringIO()
    run(TRACES / f"{name}.csv", rules, out)
    return tuple(json.loads(line) for line in out.getvalue().splitlines())


def rows(name: str) -> list[dict[str, str]]:
    with (TRACES / f"{name}.csv").open() as f:
        return list(csv.DictReader(f))


def alerts(events: Sequence[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "alert"
            and all(e.get(k) == v for k, v in match.items())]


def first_t(name: str, metric: str, pred: Any) -> float:
    return next(float(r["t"]) for r in rows(name)
                if r["name"] == metric and r["value"] and pred(float(r["value"])))


def dose_times(name: str) -> list[float]:
    return [float(r["t"]) for r in rows(name) if r["name"] == "dose"]


@pytest.mark.parametrize("name", sorted(p.stem for p in TRACES.glob("*.csv")))
def test_events_are_json_lines_in_time_order(name: str) -> None:
    events = replay(name)
    assert events, "every scenario produces at least its session events"
    ts = [e["t"] for e in events]
    assert ts == sorted(ts)
    for e in events:
        assert e["type"] in ("alert", "session")
        if e["type"] == "alert":
            assert e["priority"] in ("high", "medium", "low", "info")
            assert e["kind"] in ("physiological", "technical", "advisory")
            assert {"alert_id", "rule", "metric", "value", "text", "event", "bed"} <= e.keys()


def test_sustained_desaturation_raises_high_within_its_delay() -> None:
    events = replay("desaturation")
    below = first_t("desaturation", "spo2", lambda v: v < 88)
    raised = alerts(events, rule="spo2_below_88", event="raised")
    assert len(raised) == 1
    assert raised[0]["priority"] == "high" and raised[0]["kind"] == "physiological"
    assert below <= raised[0]["t"] <= below + rule("spo2_below_88").delay_s
    assert raised[0]["value"] < 88 and raised[0]["metric"] == "spo2"
    assert not [e for e in alerts(events, priority="high") if e["t"] < below]


def test_brief_artefact_dips_raise_no_physiological_alarm() -> None:
    events = replay("artefact_dips")
    dips = [r for r in rows("artefact_dips") if r["name"] == "spo2" and float(r["value"]) < 85]
    assert len(dips) > 50, "the trace really has deep dips"
    assert alerts(events, kind="physiological") == []


def test_artefact_gating_is_what_keeps_the_dips_quiet() -> None:
    # Same trace with the spike gating off: the deepest dips now declare the high SpO2 alarm
    # by depth × duration. Gating lengthens the delay; it does not hide the data.
    ungated = RULES.model_copy(
        update={"artefact": RULES.artefact.model_copy(update={"delay_factor": 1.0})}
    )
    events = replay("artefact_dips", ungated)
    assert alerts(events, rule="spo2_below_88", event="raised")


def test_single_crisis_bp_is_high_at_once() -> None:
    events = replay("bp_crisis")
    t_crisis = first_t("bp_crisis", "nibp_sys", lambda v: v >= 200)
    raised = alerts(events, rule="bp_crisis", event="raised")
    assert [(e["t"], e["priority"], e["value"]) for e in raised] == [(t_crisis, "high", 206.0)]
    assert "206/118" in raised[0]["text"]
    remeasure = [e for e in events if e["type"] == "session" and e["event"] == "bp_due"
                 and e.get("item") == "re_measure"]
    assert [e["t"] for e in remeasure] == [t_crisis]


def test_staff_entered_symptom_with_raised_bp_is_high_at_once_until_staff_reset() -> None:
    events = replay("symptom_bp")
    (entered,) = [r for r in rows("symptom_bp") if r["name"] == "symptom"]
    (reset,) = [r for r in rows("symptom_bp") if r["name"] == "symptom_clear"]
    (ack,) = [r for r in rows("symptom_bp") if r["name"] == "ack"]
    sym = alerts(events, rule="bp_with_symptom")
    escalated = [e for e in sym if e["event"] == "escalated"]  # unacknowledged high: 60 s
    assert escalated[0]["t"] == float(entered["t"]) + RULES.lifecycle.escalate_high_after_s
    sym = [e for e in sym if e["event"] != "escalated"]
    assert [(e["event"], e["t"], e["priority"]) for e in sym] == [
        ("raised", float(entered["t"]), "high"),
        ("latched", float(reset["t"]), "high"),
        ("acknowledged", float(ack["t"]), "high"),
        ("cleared", float(ack["t"]), "high"),
    ]
    assert "164/96" in sym[0]["text"] and "severe headache" in sym[0]["text"]
    # 164/96 alone raises nothing above low: the symptom makes the difference.
    before = [e for e in alerts(events, event="raised") if e["t"] < float(entered["t"])]
    assert all(e["priority"] in ("low", "info") for e in before)


def test_expected_ketamine_rise_raises_no_medium_or_high() -> None:
    sys_ = [float(r["value"]) for r in rows("ketamine_rise") if r["name"] == "nibp_sys"]
    assert 15 <= max(sys_) - sys_[0] <= 25, "the trace carries the expected +15–25 mmHg rise"
    events = replay("ketamine_rise")
    assert [e for e in alerts(events) if e["priority"] in ("medium", "high")] == []
    phases = [e["phase"] for e in events if e["type"] == "session" and e["event"] == "phase"]
    assert phases == ["pre_dose", "onset", "peak", "recovery"]


def test_sustained_tachycardia_is_medium() -> None:
    events = replay("tachycardia")
    onset = first_t("tachycardia", "heart_rate", lambda v: v > 120)
    raised = alerts(events, event="raised", kind="physiological")
    assert [(e["rule"], e["priority"], e["metric"]) for e in raised] == [
        ("hr_above_120", "medium", "heart_rate")
    ]
    delay = rule("hr_above_120").delay_s
    assert onset + delay - 5 <= raised[0]["t"] <= onset + delay  # noise may cross early
    assert alerts(events, rule="hr_above_120", event="cleared")


def test_bradycardia_is_high() -> None:
    events = replay("bradycardia")
    below = first_t("bradycardia", "pulse_rate", lambda v: v <= 40)
    raised = alerts(events, rule="hr_at_or_below_40", event="raised")
    assert len(raised) == 1 and raised[0]["priority"] == "high"
    assert below <= raised[0]["t"] <= below + rule("hr_at_or_below_40").delay_s
    assert raised[0]["metric"] == "pulse_rate"


def test_stale_spo2_is_a_technical_alarm() -> None:
    events = replay("stale_spo2")
    t_spo2 = [float(r["t"]) for r in rows("stale_spo2") if r["name"] == "spo2"]
    last_before_gap = max(t for t in t_spo2 if t < 1300)
    back = min(t for t in t_spo2 if t > 1300)
    raised = alerts(events, rule="vitals_stale", event="raised")
    assert len(raised) == 1
    e = raised[0]
    assert e["kind"] == "technical" and e["phase"] == "onset" and e["priority"] == "medium"
    limit = 30.0  # the rule's onset/peak value (60 s in the other phases)
    assert e["t"] == last_before_gap + limit + 1  # first tick where the age exceeds the limit
    assert [c["t"] for c in alerts(events, rule="vitals_stale", event="cleared")] == [back]
    assert alerts(events, kind="physiological") == []


def test_missing_40_min_bp_is_due_then_overdue() -> None:
    events = replay("bp_overdue")
    (t0,) = dose_times("bp_overdue")
    due = [e for e in events if e["type"] == "session" and e["event"] == "bp_due"
           and e.get("item") == "post_dose"]
    assert [e["t"] for e in due] == [t0 + 35 * 60]
    overdue = alerts(events, rule="bp_overdue", event="raised")
    assert [(e["t"], e["kind"]) for e in overdue] == [(t0 + 45 * 60, "technical")]


def test_bp_taken_at_40_min_is_not_overdue() -> None:
    events = replay("ketamine_rise")
    assert alerts(events, rule="bp_overdue") == []


def test_acknowledging_one_bed_or_one_technical_alarm_leaves_the_others() -> None:
    events = replay("two_beds_ack")
    acks = [(e["t"], e["bed"], e["rule"]) for e in alerts(events, event="acknowledged")]
    assert (1100.0, "bed1", "battery_low") in acks
    assert [a for a in acks if a[1] == "bed1"] == [(1100.0, "bed1", "battery_low")]
    assert {a[2] for a in acks if a[1] == "bed2"} >= {"spo2_below_88"}
    # bed1's desaturation alarms keep sounding and escalating after both acknowledgements
    later = [e for e in alerts(events, bed="bed1", kind="physiological") if e["t"] > 1150]
    assert later and all(not e["acknowledged"] for e in later)
    assert any(e["event"] == "escalated" for e in later)


def test_latching_high_stays_until_acknowledged_medium_clears_itself() -> None:
    events = replay("latching")
    high = alerts(events, rule="spo2_below_88")
    assert [e["event"] for e in high if e["event"] != "escalated"] == [
        "raised", "latched", "acknowledged", "cleared"
    ]
    latched_t = next(e["t"] for e in high if e["event"] == "latched")
    assert next(e["t"] for e in high if e["event"] == "cleared") == 1300.0 > latched_t
    medium = alerts(events, rule="spo2_at_or_below_91")
    assert [e["event"] for e in medium] == ["raised", "cleared"]


def test_unacknowledged_alarms_escalate() -> None:
    events = replay("escalation")
    lc = RULES.lifecycle
    high = alerts(events, rule="spo2_below_88")
    raised_t = high[0]["t"]
    esc = [(e["t"], e["escalation_level"]) for e in high if e["event"] == "escalated"]
    assert esc == [
        (raised_t + lc.escalate_high_after_s * n, n)
        for n in range(1, lc.max_escalation_level + 1)
    ]
    severe = alerts(events, rule="bp_severe")
    (t0,) = dose_times("escalation")
    nibp_t = sorted({float(r["t"]) for r in rows("escalation")
                     if r["name"] == "nibp_sys" and float(r["t"]) > t0})
    assert (severe[0]["event"], severe[0]["t"], severe[0]["priority"]) == (
        "raised", nibp_t[1], "medium"
    )
    assert (severe[1]["event"], severe[1]["t"], severe[1]["priority"]) == (
        "escalated", nibp_t[2], "high"
    )
    # a medium left alone escalates to high by time
    med = alerts(events, rule="spo2_at_or_below_91")
    assert med[1]["event"] == "escalated" and med[1]["priority"] == "high"
    assert med[1]["t"] - med[0]["t"] == lc.escalate_medium_after_s
    # two parameters in medium (SpO2 and NIBP) → the multi-parameter high
    multi = alerts(events, rule="multi_parameter", event="raised")
    assert [e["t"] for e in multi] == [nibp_t[1]]


@pytest.mark.parametrize(
    ("name", "minimum_from_dose"),
    [("discharge_ketamine", ("last", 60)), ("discharge_esketamine", ("first", 120))],
)
def test_discharge_readiness_not_before_the_profiles_minimum(
    name: str, minimum_from_dose: tuple[str, int]
) -> None:
    which, minutes = minimum_from_dose
    doses = dose_times(name)
    ref = doses[-1] if which == "last" else doses[0]
    events = replay(name)
    ready = [e for e in events if e["type"] == "session" and e["event"] == "discharge_ready"]
    assert len(ready) == 1
    assert ready[0]["t"] >= ref + minutes * 60
    if name == "discharge_ketamine":
        # recovery began at t0 + 90 min with every other criterion met: the repeat dose's
        # minimum observation is what held readiness back, to the tick
        assert ready[0]["t"] == ref + minutes * 60 > doses[0] + 90 * 60 + 300
    assert ready[0]["phase"] == "recovery" and ready[0]["advisory"] is True
    ended = [e for e in events if e["type"] == "session" and e["event"] == "ended"]
    assert ended and ended[0]["discharge_ready"] is True
    assert alerts(events, kind="physiological") == []


def test_discharge_readiness_waits_for_open_alarms_and_lapses_with_a_new_one(
    tmp_path: Path,
) -> None:
    """The uneventful ketamine session, with a low-battery technical alarm open from before the
    minimum observation until later: readiness comes only when it clears, and a new alarm after
    that withdraws it."""
    last_dose = dose_times("discharge_ketamine")[-1]
    minimum = last_dose + RULES.profiles["ketamine"].min_observation_min * 60
    low = RULES.rules[[r.id for r in RULES.rules].index("battery_low")].when_all[0].value
    battery_on, battery_off, battery_again = minimum - 600, minimum + 1200, minimum + 1800
    extra = [(battery_on, low - 5), (battery_off, 80.0), (battery_again, low - 5)]
    body = [f"{r['t']},{r['bed']},{r['name']},{r['value']}" for r in rows("discharge_ketamine")]
    body += [f"{t:g},bed1,battery,{v:g}" for t, v in extra]
    trace = tmp_path / "discharge_with_alarm.csv"
    trace.write_text("t,bed,name,value\n" + "\n".join(
        sorted(body, key=lambda line: float(line.split(",")[0]))) + "\n")
    out = io.StringIO()
    run(trace, RULES, out)
    events = [json.loads(line) for line in out.getvalue().splitlines()]

    battery = [(e["event"], e["t"]) for e in alerts(events, rule="battery_low")]
    assert battery[:2] == [("raised", battery_on), ("cleared", battery_off)]
    assert battery[2] == ("raised", battery_again)
    advisories = [(e["event"], e["t"], e.get("unmet")) for e in events
                  if e["type"] == "session" and e["event"].startswith("discharge_")]
    # without the battery alarm the same trace is ready while the alarm would be open
    (plain,) = [e["t"] for e in replay("discharge_ketamine") if e["event"] == "discharge_ready"]
    assert battery_on < plain < battery_off
    # at the minimum observation the advisory says why it is not ready yet
    assert advisories[:3] == [
        ("discharge_not_ready", minimum, ["open_alarms"]),
        ("discharge_ready", battery_off, None),
        ("discharge_not_ready", battery_again, ["open_alarms"]),
    ]

"""AlarmEngine facade: commands, sessions, baseline, technical channels, gating, persistence."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest
from pydantic import ValidationError

from kapmonitor.alerts import AlarmEngine
from kapmonitor.alerts.rules import parse_rules
from tests.helpers.alerts import RULES, Clinic
from tests.helpers.paths import ROOT


def test_shipped_rules_file_and_config_copy_are_identical() -> None:
    assert (ROOT / "config/rules.toml").read_text() == (
        ROOT / "kapmonitor/data/rules.toml"
    ).read_text()


def test_every_default_rule_names_its_source() -> None:
    assert all(r.source for r in RULES.rules)
    assert all(p.source for p in RULES.profiles.values())


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"bogus": 1}, "Extra inputs"),
        ({"rules": [{"id": "x", "title": "t", "kind": "physiological", "priority": "high",
                     "when_any": [{"signal": "sp02", "op": "<", "value": 1}]}]}, "unknown signal"),
        ({"rules": [{"id": "x", "title": "t", "kind": "physiological", "priority": "high",
                     "when_any": [{"signal": "spo2", "op": "<", "value": 1},
                                  {"signal": "nibp_sys", "op": ">", "value": 1}]}]}, "mix"),
        ({"rules": [{"id": "x", "title": "t", "kind": "physiological", "priority": "urgent",
                     "when_any": [{"signal": "spo2", "op": "<", "value": 1}]}]}, "priority"),
    ],
)
def test_invalid_rule_sets_are_rejected(patch: dict[str, Any], message: str) -> None:
    data = tomllib.loads((ROOT / "kapmonitor/data/rules.toml").read_text())
    data.update(patch)
    with pytest.raises(ValidationError, match=message):
        parse_rules(data)


@pytest.mark.parametrize(
    ("name", "args", "error"),
    [
        ("session/start", {"bed": "nope", "profile": "ketamine"}, "unknown bed"),
        ("session/start", {"bed": "bed1", "profile": "lsd"}, "unknown profile"),
        ("session/start", {"bed": "bed1", "profile": "ketamine", "color": 1}, "color"),
        ("session/start", {"bed": "bed1", "profile": "ketamine", "risk_flags": ["x"]},
         "unknown risk flag"),
        ("session/start", {"bed": "bed1", "profile": "esketamine", "route": "iv"}, "route"),
        ("session/dose", {"bed": "bed1"}, "no active session"),
        ("alert/ack", {"bed": "bed1"}, "either alert_id or all"),
        ("alert/ack", {"bed": "bed1", "alert_id": "bed1-9"}, "no open alert"),
        ("alert/pause", {"bed": "bed1", "all": True, "seconds": -1}, "greater than 0"),
        ("bp/fly", {"bed": "bed1"}, "unknown command"),
    ],
)
def test_bad_commands_get_an_error_response(name: str, args: dict[str, Any], error: str) -> None:
    engine = AlarmEngine(RULES, ["bed1"])
    r = engine.command(name, args, 0.0)
    assert r.response["status"] == "error" and error in r.response["error"]
    assert r.events == []


def test_session_lifecycle_baseline_and_phases() -> None:
    c = Clinic()
    assert c.cmd("session/start", bed="bed1", profile="esketamine", route="in",
                 risk_flags=["first_session"])["status"] == "ok"
    assert c.cmd("session/start", bed="bed1", profile="ketamine")["status"] == "error"
    c.run(10, spo2=97.0, pulse_rate=70.0)
    c.nibp(130, 80)
    c.run(200, spo2=97.0, pulse_rate=70.0)
    c.nibp(120, 76)
    c.run(200, spo2=96.0, pulse_rate=74.0)
    c.nibp(124, 79)
    c.run(10, spo2=96.0, pulse_rate=74.0)
    r = c.cmd("session/dose", bed="bed1", dose_mg=56)
    assert r["session"]["t0"] == c.t and r["session"]["phase"] == "onset"
    (bl,) = c.sessions("baseline")
    assert bl["complete"] is True
    assert (bl["baseline"]["nibp_sys"], bl["baseline"]["nibp_dia"]) == (124, 79)  # medians
    assert bl["baseline"]["spo2"] == 96.0 and bl["baseline"]["hr"] == 74.0
    c.cmd("session/dose", bed="bed1", dose_mg=28)  # a second device 5 min later
    c.run(15 * 60, spo2=97.0, pulse_rate=72.0)
    phases = [e["phase"] for e in c.sessions("phase")]
    assert phases == ["pre_dose", "onset", "peak"]
    state = c.engine.session_state("bed1")
    assert state["risk_flags"] == ["first_session"] and len(state["doses"]) == 2
    assert c.engine.session_state("bed2") == {
        "bed": "bed2", "active": False, "phase": "idle", "symptoms": []}
    c.cmd("session/end", bed="bed1")
    assert c.engine.session_state("bed1")["phase"] == "ended"


def test_incomplete_baseline_is_a_technical_alarm() -> None:
    c = Clinic()
    c.cmd("session/start", bed="bed1", profile="ketamine")
    c.run(30, spo2=97.0, pulse_rate=70.0)
    c.nibp(120, 80)
    c.run(5, spo2=97.0, pulse_rate=70.0)
    c.cmd("session/dose", bed="bed1")
    (a,) = c.alerts(rule="baseline_incomplete", event="raised")
    assert a["kind"] == "technical" and "nibp" in a["text"]
    c.cmd("session/end", bed="bed1")
    assert c.alerts(rule="baseline_incomplete", event="cleared")


def test_risk_flag_tightens_limits() -> None:
    hypertensive = Clinic(beds=("bed1",))
    normal = Clinic(beds=("bed1",))
    for c, flags in ((hypertensive, ["hypertension"]), (normal, [])):
        c.cmd("session/start", bed="bed1", profile="ketamine", risk_flags=flags)
        c.run(5, spo2=97.0)
        c.nibp(194, 100)  # ≥ 200 − 10 mmHg tightening
        c.run(3, spo2=97.0)
    assert hypertensive.alerts(rule="bp_crisis", event="raised")
    assert not normal.alerts(rule="bp_crisis")


def test_invalid_nibp_is_technical_and_never_physiological() -> None:
    c = Clinic()
    c.run(3, spo2=97.0)
    c.nibp(90, 95)  # systolic below diastolic
    c.run(2, spo2=97.0)
    c.nibp(250, 130, flags=["measurement_error"])
    c.run(2, spo2=97.0)
    assert [a["rule"] for a in c.alerts(event="raised")] == ["nibp_invalid"]
    c.nibp(120, 80)
    c.run(2, spo2=97.0)
    assert c.alerts(rule="nibp_invalid", event="cleared")


def test_poor_signal_lengthens_the_delay_and_raises_a_technical_alarm() -> None:
    clean, poor = Clinic(beds=("bed1",)), Clinic(beds=("bed1",))
    poor.cmd("session/start", bed="bed1", profile="ketamine")  # technical rules need a session
    clean.run(100, spo2=85.0)
    poor.run(100, spo2=(85.0, ("low_perfusion",)))
    delay = next(r.delay_s for r in RULES.rules if r.id == "spo2_below_88")
    (a,) = clean.alerts(rule="spo2_below_88", event="raised")
    (b,) = poor.alerts(rule="spo2_below_88", event="raised")
    assert a["t"] == 1 + delay
    assert b["t"] == 1 + delay * RULES.artefact.delay_factor  # later, not suppressed
    assert poor.alerts(rule="signal_poor", event="raised", kind="technical")


def test_sensor_off_is_technical_and_separate_from_stale() -> None:
    c = Clinic(beds=("bed1",))
    c.cmd("session/start", bed="bed1", profile="ketamine")
    c.run(20, spo2=97.0, heart_rate=70.0)
    c.run(30, spo2=None, heart_rate=70.0)  # device keeps talking: "no value"
    (a,) = c.alerts(rule="spo2_sensor_off", event="raised")
    assert a["kind"] == "technical" and a["t"] == 21 + 10
    assert not c.alerts(rule="vitals_stale")
    c.run(3, spo2=97.0, heart_rate=70.0)
    assert c.alerts(rule="spo2_sensor_off", event="cleared")


def test_device_disconnected_is_its_own_channel() -> None:
    c = Clinic()
    c.run(5, spo2=97.0)
    c.engine.on_device_status("ox1", "bed1", "disconnected", c.t)
    c.engine.on_device_status("cuff1", "bed1", "disconnected", c.t)
    c.run(RULES.devices.disconnected_delay_s + 1)
    raised = c.alerts(rule="device_disconnected", event="raised")
    assert sorted(a["text"].split()[1] for a in raised) == ["cuff1", "ox1"]
    ox = next(a for a in raised if "ox1" in a["text"])
    c.cmd("alert/ack", bed="bed1", alert_id=ox["alert_id"])
    snapshot = c.engine.active_alarms("bed1")
    assert [(a["rule"], a["acknowledged"]) for a in snapshot["alarms"]] == [
        ("device_disconnected", False), ("device_disconnected", True)
    ] or [(a["rule"], a["acknowledged"]) for a in snapshot["alarms"]] == [
        ("device_disconnected", True), ("device_disconnected", False)
    ]
    assert snapshot["audible"] is True
    c.engine.on_device_status("ox1", "bed1", "connected", c.t)
    c.run(1)
    assert len(c.engine.active_alarms("bed1")["alarms"]) == 1


def test_active_alarms_snapshot_is_sorted_by_priority() -> None:
    c = Clinic()
    c.run(2, spo2=97.0, battery=15.0)
    c.run(40, spo2=85.0, battery=15.0)
    snap = c.engine.active_alarms("bed1")
    assert snap["highest"] == "high" and snap["count"] >= 2
    prios = [a["priority"] for a in snap["alarms"]]
    order = ["high", "medium", "low", "info"]
    assert prios == sorted(prios, key=order.index)
    assert c.engine.active_alarms("bed2")["count"] == 0


def test_state_round_trips_through_json_and_restores_after_restart() -> None:
    c = Clinic()
    c.cmd("session/start", bed="bed1", profile="ketamine", risk_flags=["age_60_plus"])
    c.run(5, spo2=97.0, pulse_rate=72.0)
    c.nibp(120, 80)
    c.run(400, spo2=97.0, pulse_rate=72.0)
    c.nibp(122, 78)
    c.run(5, spo2=97.0, pulse_rate=72.0)
    c.cmd("session/dose", bed="bed1", dose_mg=30)
    c.run(60, spo2=84.0, pulse_rate=72.0)  # a latched high
    c.run(40, spo2=97.0, pulse_rate=72.0)
    assert c.engine.active_alarms("bed1")["alarms"][0]["state"] == "latched"
    saved = json.loads(json.dumps(c.engine.export_state()))

    fresh = AlarmEngine(RULES, ["bed1", "bed2"])
    fresh.restore_state(saved)
    before = c.engine.session_state("bed1")
    restored_events = fresh.tick(c.t + 20 * 60)  # back after 20 min: now in the peak
    after = fresh.session_state("bed1")
    for key in ("session_id", "profile", "t0", "doses", "baseline", "risk_flags"):
        assert after[key] == before[key]
    assert after["phase"] == "peak"
    assert [e.to_json()["phase"] for e in restored_events if e.type == "session"
            and e.event == "phase"] == ["peak"]
    (latched,) = fresh.active_alarms("bed1")["alarms"]
    assert latched["rule"] == "spo2_below_88" and latched["state"] == "latched"
    r = fresh.command("alert/ack", {"bed": "bed1", "all": True}, c.t + 20 * 60)
    assert [e.event for e in r.events] == ["acknowledged", "cleared"]


def test_stale_alarm_clears_when_data_returns_even_without_a_second_source() -> None:
    c = Clinic(beds=("bed1",))
    c.cmd("session/start", bed="bed1", profile="ketamine")
    c.run(10, spo2=97.0)  # an oximeter without pulse rate, no ECG
    c.run(70)
    (a,) = c.alerts(rule="vitals_stale", event="raised")
    assert a["t"] == 10 + 61 and a["metric"] == "spo2"
    c.run(2, spo2=97.0)
    assert c.alerts(rule="vitals_stale", event="cleared")


def test_docs_list_every_default_rule() -> None:
    doc = (ROOT / "docs/alarms.md").read_text()
    for r in RULES.rules:
        assert f"`{r.id}`" in doc, r.id
    for channel in ("nibp_invalid", "bp_overdue", "baseline_incomplete", "device_disconnected",
                    "bp_with_symptom", "symptom_reported", "news2_total", "news2_parameter"):
        assert f"`{channel}`" in doc


def test_ack_of_a_physiological_alarm_leaves_technical_ones_and_pause_is_per_bed() -> None:
    c = Clinic()
    c.cmd("session/start", bed="bed1", profile="ketamine")
    c.run(40, spo2=85.0, battery=15.0, bed2__spo2=85.0)
    (phys,) = c.alerts(bed="bed1", rule="spo2_below_88", event="raised")
    (tech,) = c.alerts(bed="bed1", rule="battery_low", event="raised")
    assert tech["kind"] == "technical"
    assert c.cmd("alert/ack", bed="bed1", alert_id=phys["alert_id"])["acknowledged"] == [
        phys["alert_id"]
    ]
    bed1 = {a["rule"]: a for a in c.engine.active_alarms("bed1")["alarms"]}
    assert bed1["spo2_below_88"]["acknowledged"] and not bed1["spo2_below_88"]["audible"]
    assert not bed1["battery_low"]["acknowledged"] and bed1["battery_low"]["audible"]
    assert not bed1["spo2_at_or_below_91"]["acknowledged"]  # same signal, other rule

    # AUDIO PAUSED on bed2 silences bed2 only, and ends by itself.
    paused_at = c.t
    r = c.cmd("alert/pause", bed="bed2", all=True, seconds=30)
    bed2_ids = {a["alert_id"] for a in c.engine.active_alarms("bed2")["alarms"]}
    assert set(r["paused"]) == bed2_ids and bed2_ids
    assert not c.engine.active_alarms("bed2")["audible"]
    assert all(a["audio_paused_until"] is None for a in c.engine.active_alarms("bed1")["alarms"])
    assert c.engine.active_alarms("bed1")["audible"]
    c.run(29, spo2=85.0, battery=15.0, bed2__spo2=85.0)
    assert not c.alerts(event="audio_pause_expired")
    c.run(1, spo2=85.0, battery=15.0, bed2__spo2=85.0)
    expired = c.alerts(event="audio_pause_expired")
    assert {e["alert_id"] for e in expired} == bed2_ids
    assert {e["t"] for e in expired} == {paused_at + 30}
    assert c.engine.active_alarms("bed2")["audible"]


def test_a_sudden_sustained_drop_is_gated_later_not_suppressed() -> None:
    """A one-tick fall of 17 % is a spike (artefact-suspect), but the SpO2 stays down: the
    high alarm comes, later than without gating, and within the lengthened delay."""
    ungated_rules = RULES.model_copy(
        update={"artefact": RULES.artefact.model_copy(update={"delay_factor": 1.0})}
    )
    gated, ungated = Clinic(beds=("bed1",)), Clinic(beds=("bed1",), rules=ungated_rules)
    for c in (gated, ungated):
        c.run(20, spo2=97.0)
        c.run(60, spo2=80.0)
    (g,) = gated.alerts(rule="spo2_below_88", event="raised")
    (u,) = ungated.alerts(rule="spo2_below_88", event="raised")
    rule = next(r for r in RULES.rules if r.id == "spo2_below_88")
    drop = 21.0
    assert u["t"] < g["t"] <= drop + rule.delay_s * RULES.artefact.delay_factor
    assert g["value"] == 80.0


def test_implausible_values_are_artefact_with_a_technical_alarm() -> None:
    c = Clinic(beds=("bed1",))
    c.cmd("session/start", bed="bed1", profile="ketamine")
    lo = RULES.artefact.plausible["spo2"][0]
    c.run(60, spo2=lo - 10, pulse_rate=70.0)
    assert not c.alerts(kind="physiological")
    (poor,) = c.alerts(rule="signal_poor", event="raised")
    delay = next(r.delay_s for r in RULES.rules if r.id == "signal_poor")
    assert poor["kind"] == "technical" and poor["t"] == 1 + delay
    assert not c.alerts(rule="spo2_sensor_off")  # poor signal, not "sensor off"


@pytest.mark.parametrize(
    ("flags", "spo2", "fires"),
    [
        ([], 89.5, False),
        (["cns_depressant"], 89.5, True),  # lower limits move up by 2: < 90
        (["cns_depressant"], 90.5, False),
    ],
)
def test_risk_flag_raises_lower_limits(flags: list[str], spo2: float, fires: bool) -> None:
    c = Clinic(beds=("bed1",))
    c.cmd("session/start", bed="bed1", profile="ketamine", risk_flags=flags)
    c.run(60, spo2=spo2, pulse_rate=70.0)
    assert bool(c.alerts(rule="spo2_below_88", event="raised")) is fires


@pytest.mark.parametrize(("sys_", "fires"), [(189.0, False), (191.0, True)])
def test_risk_flags_tighten_by_the_largest_amount_not_the_sum(sys_: float, fires: bool) -> None:
    c = Clinic(beds=("bed1",))
    c.cmd("session/start", bed="bed1", profile="ketamine",
          risk_flags=["first_session", "hypertension", "age_60_plus"])  # 10 mmHg each
    c.run(3, spo2=97.0)
    c.nibp(sys_, 95)
    c.run(3, spo2=97.0)
    assert bool(c.alerts(rule="bp_crisis", event="raised")) is fires


def test_while_a_bp_alarm_is_open_a_reading_is_due_then_overdue() -> None:
    c = Clinic(beds=("bed1",))
    vitals = {"spo2": 97.0, "pulse_rate": 72.0}
    c.cmd("session/start", bed="bed1", profile="ketamine")
    c.run(5, **vitals)
    c.nibp(120, 78)
    c.run(400, **vitals)
    c.nibp(122, 80)
    c.run(5, **vitals)
    c.cmd("session/dose", bed="bed1")
    t0 = c.t
    c.run(600, **vitals)
    c.nibp(185, 112)  # first reading of bp_severe: a repeat is asked for
    c.run(300, **vitals)
    c.nibp(185, 112)  # confirmed: bp_severe open, BP readings now due every 5 min
    c.run(1, **vitals)
    (severe,) = c.alerts(rule="bp_severe", event="raised")
    last = severe["t"]
    sched = RULES.bp_schedule
    assert "bp_severe" in sched.after_alarm_rules
    c.run(sched.after_alarm_overdue_s + 5, **vitals)
    due = [e for e in c.sessions("bp_due") if e["item"] == "while_active"]
    assert [e["t"] for e in due] == [last + sched.after_alarm_every_s]
    (overdue,) = c.alerts(rule="bp_overdue", event="raised")
    assert overdue["t"] == last + sched.after_alarm_overdue_s < t0 + 45 * 60  # not post_dose
    assert overdue["kind"] == "technical" and "while_active" in overdue["text"]
    assert overdue["priority"] == "medium"  # peak phase
    c.nibp(184, 111)
    c.run(1, **vitals)
    (cleared,) = c.alerts(rule="bp_overdue", event="cleared")
    assert cleared["t"] == c.t
    assert [e["event"] for e in c.alerts(rule="bp_severe")][-1] == "escalated"  # third reading

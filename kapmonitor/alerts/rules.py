"""The alarm rule set as data: pydantic models (the field descriptions are the reference).

A rule set is loaded from TOML (``load_rules``); the shipped defaults live in
``kapmonitor/data/rules.toml`` (``config/rules.toml`` is an identical copy for clinics to edit).

A rule compares *signals* with limits. Signal names (see ``signal_names()``):

* continuous values sampled on the engine tick: ``spo2``, ``heart_rate``, ``pulse_rate``,
  ``resp_rate``, ``perfusion_index``, ``battery`` and ``hr`` (ECG ``heart_rate`` when present,
  else the oximeter's ``pulse_rate``);
* data-health signals: ``<metric>_age`` (seconds since the last reading of that metric, with or
  without a value; ``hr_age`` is the fresher of heart_rate/pulse_rate), ``<metric>_off`` (1 while
  the latest reading says "no value" / sensor off), ``<metric>_poor`` (1 while the latest
  reading carries a poor-signal flag);
* episodic NIBP values ``nibp_sys``, ``nibp_dia``, ``nibp_mean``: a rule that uses them is
  evaluated once per new validated NIBP measurement instead of every tick.

A term may compare the value itself, the value relative to the bed's pre-dose baseline
(``baseline_delta``: limit = baseline + value; ``baseline_ratio``: limit = baseline × value), or
(with ``trend_window_s``) the least-squares slope of the signal in units per minute.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kapmonitor.model import NIBP_GROUP

Phase = Literal["idle", "pre_dose", "onset", "peak", "recovery", "ended"]
PHASES: tuple[Phase, ...] = ("idle", "pre_dose", "onset", "peak", "recovery", "ended")
SESSION_PHASES: tuple[Phase, ...] = ("pre_dose", "onset", "peak", "recovery")
Priority = Literal["high", "medium", "low", "info"]
PRIORITIES: tuple[Priority, ...] = ("info", "low", "medium", "high")  # ascending urgency
Kind = Literal["physiological", "technical", "advisory"]
Op = Literal["<", "<=", ">", ">="]
Reference = Literal["absolute", "baseline_delta", "baseline_ratio"]

CONTINUOUS_METRICS: tuple[str, ...] = (
    "spo2",
    "heart_rate",
    "pulse_rate",
    "resp_rate",
    "perfusion_index",
    "battery",
)
NIBP_SIGNALS: tuple[str, ...] = NIBP_GROUP
# Signals with a pre-dose baseline (relative terms may only use these).
BASELINE_SIGNALS: tuple[str, ...] = ("spo2", "hr", "resp_rate", *NIBP_SIGNALS)
# The physiological parameter a signal belongs to (multi-parameter escalation counts these).
PARAMETER_OF: dict[str, str] = {
    "spo2": "spo2",
    "heart_rate": "hr",
    "pulse_rate": "hr",
    "hr": "hr",
    "resp_rate": "resp_rate",
    "perfusion_index": "perfusion_index",
    "battery": "battery",
    "nibp_sys": "nibp",
    "nibp_dia": "nibp",
    "nibp_mean": "nibp",
}


def signal_names() -> tuple[str, ...]:
    """Every signal a rule term may name."""
    base = (*CONTINUOUS_METRICS, "hr")
    health = tuple(f"{m}_{s}" for m in base for s in ("age", "off", "poor"))
    return (*base, *health, *NIBP_SIGNALS)


def base_signal(signal: str) -> str:
    """``spo2_age`` → ``spo2``; a value signal maps to itself."""
    for suffix in ("_age", "_off", "_poor"):
        if signal.endswith(suffix):
            return signal[: -len(suffix)]
    return signal


_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)(?:\.([1-9]))?\}")


def title_placeholders(title: str) -> list[tuple[str, int]]:
    """`{spo2}` → ("spo2", 1); `{resp_rate.2}` → ("resp_rate", 2)."""
    return [(m.group(1), int(m.group(2) or 1)) for m in _PLACEHOLDER.finditer(title)]


def _medium_in_peak() -> dict[Phase, Priority]:
    return {"onset": "medium", "peak": "medium"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Term(_Model):
    """One comparison: ``signal op limit``. Missing data (NaN) never satisfies a term."""

    signal: str = Field(description="Signal name (see the module docstring), e.g. `spo2`.")
    op: Op = Field(description="Comparison of the signal against the limit.")
    value: float = Field(
        description=(
            "The limit: absolute units, or with `reference` the offset/ratio to the baseline, or "
            "with `trend_window_s` a slope in units per minute."
        )
    )
    reference: Reference = Field(
        default="absolute",
        description=(
            "`absolute`; `baseline_delta` (limit = baseline + value); `baseline_ratio` (limit = "
            "baseline × value). Without a captured baseline a relative term is never true."
        ),
    )
    value_by_phase: dict[Phase, float] = Field(
        default_factory=dict, description="Phase-dependent limits overriding `value`."
    )
    trend_window_s: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Compare the windowed least-squares slope (units/min) over this many seconds instead "
            "of the value. Needs at least `min_valid_fraction` of the window present."
        ),
    )
    min_valid_fraction: float = Field(
        default=0.5, gt=0, le=1, description="Share of the trend window that must hold samples."
    )

    @model_validator(mode="after")
    def _check(self) -> Term:
        if self.signal not in signal_names():
            raise ValueError(f"unknown signal {self.signal!r}; known: {', '.join(signal_names())}")
        if self.reference != "absolute" and self.signal not in BASELINE_SIGNALS:
            raise ValueError(f"signal {self.signal!r} has no baseline; relative term impossible")
        if self.trend_window_s is not None:
            if self.signal in NIBP_SIGNALS or base_signal(self.signal) != self.signal:
                raise ValueError("trends are only computed for continuous value signals")
            if self.reference != "absolute":
                raise ValueError("a trend term compares the slope itself (reference = absolute)")
        return self

    @property
    def is_episodic(self) -> bool:
        return self.signal in NIBP_SIGNALS


class Concurrent(_Model):
    """Multi-parameter escalation: fire while N different parameters have an active condition."""

    min_parameters: int = Field(default=2, ge=2, description="Distinct parameters needed.")
    of_priority: Priority = Field(default="medium", description="Priority counted.")
    of_kind: Kind = Field(default="physiological", description="Kind of condition counted.")


class Rule(_Model):
    """One alarm rule. Condition = any(`when_any`) and all(`when_all`) (an empty list is true).

    Continuous rules are declared after `delay_s` of uninterrupted condition, or earlier when the
    depth × duration area reaches `area_threshold`; NIBP rules after `confirm_count` qualifying
    readings. A declared condition ends when the condition is false and the clear terms hold
    (`clear_all`: every term; `clear_any`: at least one) for `clear_delay_s`. Missing data
    never clears a condition.
    """

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="Stable rule id.")
    title: str = Field(
        description=(
            "Short human text, used in the alert `text`. `{signal}` (e.g. `{spo2}`) stands for "
            "the limit in force of the rule's first `when_any`/`when_all` value term on that "
            "signal (`{signal.2}`: the second), after phase and risk-flag tightening; for a "
            "`baseline_delta` term the offset in force."
        )
    )
    kind: Kind = Field(description="physiological, technical or advisory.")
    priority: Priority = Field(description="Priority when declared.")
    priority_by_phase: dict[Phase, Priority] = Field(
        default_factory=dict, description="Phase-dependent priority overriding `priority`."
    )
    phases: list[Phase] = Field(
        default_factory=lambda: list(PHASES),
        description="Phases in which the rule runs; leaving them ends its condition.",
    )
    when_any: list[Term] = Field(default_factory=list, description="At least one must hold.")
    when_all: list[Term] = Field(default_factory=list, description="All must hold.")
    clear_all: list[Term] = Field(default_factory=list, description="Hysteresis: all must hold.")
    clear_any: list[Term] = Field(default_factory=list, description="Hysteresis: one must hold.")
    delay_s: float = Field(default=0.0, ge=0, description="Alarm-condition delay (persistence).")
    clear_delay_s: float = Field(default=0.0, ge=0, description="How long the clear must hold.")
    area_threshold: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Depth × duration: declare as soon as the area beyond the first `when_any` limit "
            "(units × s, accumulated while the condition holds) reaches this, even before "
            "`delay_s`."
        ),
    )
    gap_ticks: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Continuous rules: a run of at most this many consecutive ticks without a value of "
            "the rule's signal holds the persistence timer and the depth × duration area "
            "(neither advance nor reset); a longer gap resets them. Default: `[gaps] "
            "hold_ticks`."
        ),
    )
    artefact_gated: bool = Field(
        default=True,
        description=(
            "While the rule's signal is artefact-suspect (device poor-signal flags or a spike), "
            "multiply `delay_s` and `area_threshold` by `artefact.delay_factor` (never suppress)."
        ),
    )
    confirm_count: int = Field(
        default=1, ge=1, description="NIBP rules: qualifying readings in a row needed."
    )
    confirm_window_s: float = Field(
        default=900.0, gt=0, description="NIBP rules: max gap between confirming readings."
    )
    escalate_at_count: int | None = Field(
        default=None, ge=2, description="NIBP rules: escalate to high at this many readings."
    )
    concurrent: Concurrent | None = Field(
        default=None, description="Makes this a multi-parameter escalation rule (no terms)."
    )
    latch: bool = Field(
        default=False, description="Alert stays (latched) after the condition ends, until ack."
    )
    source: str = Field(default="", description="Where the number comes from (alarms.md tag).")
    enabled: bool = Field(default=True, description="Set false to switch the rule off.")

    @model_validator(mode="after")
    def _check(self) -> Rule:
        terms = [*self.when_any, *self.when_all, *self.clear_all, *self.clear_any]
        if self.concurrent is not None:
            if terms:
                raise ValueError("a concurrent rule has no terms")
            return self
        if not self.when_any and not self.when_all:
            raise ValueError("a rule needs when_any or when_all terms")
        episodic = {t.is_episodic for t in terms}
        if len(episodic) > 1:
            raise ValueError("a rule cannot mix NIBP signals with continuous signals")
        if self.area_threshold is not None and not self.when_any:
            raise ValueError("area_threshold measures beyond the first when_any term")
        if self.episodic:
            if self.area_threshold is not None or self.delay_s or self.clear_delay_s:
                raise ValueError("NIBP rules use confirm_count, not delays or areas")
        elif self.confirm_count != 1 or self.escalate_at_count is not None:
            raise ValueError("confirm_count/escalate_at_count apply to NIBP rules only")
        if self.escalate_at_count is not None and self.escalate_at_count <= self.confirm_count:
            raise ValueError("escalate_at_count must exceed confirm_count")
        if self.gap_ticks is not None and self.episodic:
            raise ValueError("gap_ticks applies to continuous rules only")
        for signal, nth in title_placeholders(self.title):
            terms = [t for t in (*self.when_any, *self.when_all)
                     if t.signal == signal and t.trend_window_s is None]
            if len(terms) < nth:
                raise ValueError(
                    f"title placeholder {{{signal}{'' if nth == 1 else f'.{nth}'}}}: the rule has "
                    f"{len(terms)} value term(s) on {signal!r}"
                )
        return self

    def title_terms(self) -> list[tuple[str, Term]]:
        """(placeholder text, term) for each `{signal}` / `{signal.N}` in the title."""
        out = []
        for signal, nth in title_placeholders(self.title):
            terms = [t for t in (*self.when_any, *self.when_all)
                     if t.signal == signal and t.trend_window_s is None]
            out.append((f"{{{signal}}}" if nth == 1 else f"{{{signal}.{nth}}}", terms[nth - 1]))
        return out

    @property
    def episodic(self) -> bool:
        return any(t.is_episodic for t in (*self.when_any, *self.when_all))

    @property
    def primary_signal(self) -> str | None:
        terms = [*self.when_any, *self.when_all]
        return terms[0].signal if terms else None

    def priority_in(self, phase: Phase) -> Priority:
        return self.priority_by_phase.get(phase, self.priority)


class Artefact(_Model):
    """Artefact gating: how a signal becomes artefact-suspect, and what that does."""

    poor_flags: list[str] = Field(
        default=["low_perfusion", "low_signal_quality", "motion", "artifact", "out_of_track",
                 "implausible", "body_movement"],
        description="Reading quality flags that mark the signal poor (device says so).",
    )
    off_flags: list[str] = Field(
        default=["sensor_off", "no_signal"],
        description="Quality flags that mean the sensor is off (as does a reading without value).",
    )
    spike_jump: dict[str, float] = Field(
        default_factory=lambda: {"spo2": 8.0, "hr": 30.0, "resp_rate": 12.0},
        description="A tick-to-tick change at least this large is a spike (artefact-suspect).",
    )
    hold_s: float = Field(default=10.0, ge=0, description="How long a spike keeps the suspicion.")
    delay_factor: float = Field(
        default=2.0, ge=1, description="Multiplier on delays/areas of gated rules while suspect."
    )
    plausible: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {
            "spo2": (50.0, 100.0),
            "heart_rate": (20.0, 250.0),
            "pulse_rate": (20.0, 250.0),
            "resp_rate": (0.0, 80.0),
        },
        description="Values outside are treated as artefact: no value, signal marked poor.",
    )
    zero_is_off: list[str] = Field(
        default=["spo2", "pulse_rate"],
        description=(
            "Metrics whose value 0 streamed as a number means the sensor is off (some oximeters "
            "send SpO2 0 % / pulse 0 /min when the finger is out): treated exactly like a "
            "reading without value (sensor off), not as poor signal."
        ),
    )


class NibpCheck(_Model):
    """Validation of an NIBP measurement before any rule sees it."""

    sys_range: tuple[float, float] = Field(default=(40.0, 300.0), description="Plausible SBP.")
    dia_range: tuple[float, float] = Field(default=(15.0, 200.0), description="Plausible DBP.")
    min_pulse_pressure: float = Field(default=10.0, ge=0, description="SBP − DBP at least this.")
    error_flags: list[str] = Field(
        default=["measurement_error", "cuff_fit", "implausible", "artifact", "body_movement"],
        description="Quality flags that make the measurement invalid (technical alarm).",
    )
    priority: Priority = Field(default="low", description="Priority of `nibp_invalid`.")


class Lifecycle(_Model):
    """Acknowledge, audio pause and escalation timing."""

    audio_pause_s: float = Field(default=120.0, gt=0, description="Default AUDIO PAUSED length.")
    max_audio_pause_s: float = Field(default=600.0, gt=0, description="Longest pause allowed.")
    escalate_medium_after_s: float = Field(
        default=180.0, gt=0, description="Unacknowledged medium → high after this."
    )
    escalate_high_after_s: float = Field(
        default=60.0, gt=0, description="Unacknowledged high → next escalation level after this."
    )
    max_escalation_level: int = Field(default=2, ge=0, description="Escalation levels for high.")
    ack_resound_after_s: float = Field(
        default=300.0,
        ge=0,
        description=(
            "An acknowledged high physiological alarm whose condition persists sounds again "
            "(unacknowledged) this long after the acknowledgement; 0 disables."
        ),
    )
    ack_worsen_step: dict[str, float] = Field(
        default_factory=lambda: {"spo2": 4.0, "hr": 20.0, "nibp_sys": 20.0},
        description=(
            "An acknowledged high physiological alarm sounds again at once when its signal "
            "(`spo2`, `hr`, `resp_rate`, `nibp_sys`, `nibp_dia`, …) moves this far further "
            "beyond its limit from the value at acknowledgement."
        ),
    )


class Profile(_Model):
    """A dosing profile: phase timing and observation minimum, from the first dose (t0)."""

    onset_end_min: float = Field(default=15.0, gt=0, description="Onset ends at t0 + this.")
    peak_end_min: float = Field(description="Peak ends (recovery starts) at t0 + this.")
    min_observation_min: float = Field(description="Minimum observation before discharge.")
    observation_from: Literal["first_dose", "last_dose"] = Field(
        description="Whether the minimum counts from the first or the last dose."
    )
    routes: list[str] = Field(description="Allowed routes of administration.")
    source: str = Field(default="", description="Where the timing comes from.")


class Baseline(_Model):
    """Pre-dose baseline capture."""

    nibp_min_count: int = Field(default=2, ge=1, description="Valid NIBP readings needed.")
    nibp_min_span_s: float = Field(default=300.0, ge=0, description="First to last reading span.")
    continuous_window_s: float = Field(
        default=300.0, gt=0, description="SpO2/HR/RR baseline = median over this before the dose."
    )
    continuous_min_s: float = Field(
        default=120.0, ge=0, description="Seconds of samples needed in that window."
    )
    incomplete_priority: Priority = Field(
        default="low", description="Priority of `baseline_incomplete` (technical) at the dose."
    )


class BpSchedule(_Model):
    """The scheduled-BP checklist."""

    post_dose_at_min: float = Field(default=40.0, description="Post-dose BP due at t0 + this.")
    post_dose_window_min: float = Field(default=5.0, description="± window around it.")
    while_active_every_s: float = Field(
        default=900.0, gt=0, description="While a BP alert is open: a reading due this often."
    )
    while_active_overdue_s: float = Field(
        default=1200.0, gt=0, description="…and overdue (technical alarm) after this gap."
    )
    after_alarm_rules: list[str] = Field(
        default=["bp_crisis", "bp_severe"],
        description="While one of these alerts is open, the shorter cadence below applies.",
    )
    after_alarm_every_s: float = Field(
        default=300.0, gt=0, description="After a BP alarm of those rules: next reading due."
    )
    after_alarm_overdue_s: float = Field(
        default=600.0, gt=0, description="…and overdue (technical alarm) after this gap."
    )
    overdue_priority: Priority = Field(default="low", description="`bp_overdue` priority.")
    overdue_priority_by_phase: dict[Phase, Priority] = Field(
        default_factory=lambda: _medium_in_peak(),
        description="Phase-dependent priority of `bp_overdue`.",
    )


class Discharge(_Model):
    """Discharge-readiness advisory criteria (never discharges by itself)."""

    spo2_above: float = Field(default=92.0, description="SpO2 must stay above this…")
    spo2_for_s: float = Field(default=300.0, ge=0, description="…for this long.")
    spo2_alarm_quiet_s: float = Field(
        default=900.0,
        ge=0,
        description="No SpO2 alert open at any moment this long (counted from the alert's end).",
    )
    bp_within_fraction: float = Field(default=0.20, gt=0, description="SBP/DBP within ±x of BL.")
    bp_below: tuple[float, float] = Field(default=(160.0, 100.0), description="And below this.")
    bp_rise_tolerance: float = Field(
        default=5.0, ge=0, description="Last two SBP readings count as non-rising within this."
    )
    hr_within_fraction: float = Field(default=0.20, gt=0, description="HR within ±x of BL.")
    data_fresh_s: float = Field(default=60.0, gt=0, description="SpO2/HR data at most this old.")
    nibp_fresh_s: float = Field(default=1200.0, gt=0, description="Last NIBP at most this old.")
    symptoms_block: bool = Field(
        default=True, description="A staff-entered symptom not yet cleared blocks readiness."
    )


class Gaps(_Model):
    """Missing samples: how long a gap holds an alarm-condition delay, and dropouts as a
    technical problem."""

    hold_ticks: int = Field(
        default=3,
        ge=0,
        description=(
            "Default for each continuous rule's `gap_ticks`: up to this many consecutive ticks "
            "without a value hold the persistence timer and area; a longer gap resets them."
        ),
    )
    dropout_window_s: float = Field(
        default=60.0, gt=0, description="Window over which the missing share is measured."
    )
    dropout_share: float = Field(
        default=0.10,
        gt=0,
        le=1,
        description=(
            "`signal_dropouts` is raised when more than this share of the window is missing "
            "for a parameter with an active or pending physiological condition."
        ),
    )
    dropout_parameters: list[Literal["spo2", "hr", "resp_rate"]] = Field(
        default=["spo2", "hr", "resp_rate"], description="Parameters watched for dropouts."
    )
    dropout_priority: Priority = Field(default="low", description="`signal_dropouts` priority.")


class Devices(_Model):
    """Technical alarm for a device reported disconnected by its supervisor."""

    disconnected_states: list[str] = Field(
        default=["disconnected", "error"], description="Device states that count as lost."
    )
    disconnected_delay_s: float = Field(default=10.0, ge=0, description="Persistence first.")
    priority: Priority = Field(default="low", description="`device_disconnected` priority.")
    priority_by_phase: dict[Phase, Priority] = Field(
        default_factory=lambda: _medium_in_peak(),
        description="Phase-dependent priority.",
    )


class RiskFlag(_Model):
    """How a session risk flag tightens limits (the largest tightening of all flags applies)."""

    upper: dict[str, float] = Field(
        default_factory=dict, description="Lower every upper limit (`>`, `>=`) of these signals."
    )
    lower: dict[str, float] = Field(
        default_factory=dict, description="Raise every lower limit (`<`, `<=`) of these signals."
    )
    source: str = Field(default="", description="Why.")


class Symptoms(_Model):
    """``bp_with_symptom``: a staff-entered symptom together with a raised blood pressure.

    A dissociated patient may not report a hypertensive emergency by themselves; staff enter
    what they observe or hear (``session/symptom``). The engine raises ``bp_with_symptom`` when
    the bed's latest validated NIBP (at most ``bp_within_s`` old) or any later one is at or above
    the limits while a symptom is active; without such a reading it asks for one (``bp_due``).
    The condition ends only when staff clear the symptoms (``session/symptom_clear``): a staff
    reset, as the rule asks. Every entered symptom is also shown as the advisory
    ``symptom_reported`` until it is cleared.
    """

    enabled: bool = Field(default=True, description="Set false to refuse symptom entries.")
    symptoms: list[str] = Field(
        default=["severe_headache", "chest_pain", "dyspnoea", "visual_change", "neuro_change",
                 "confusion"],
        min_length=1,
        description="Symptom names staff may enter (the command refuses others).",
    )
    sys_at_or_above: float = Field(default=160.0, gt=0, description="SBP limit (mmHg).")
    dia_at_or_above: float = Field(default=100.0, gt=0, description="DBP limit (mmHg).")
    bp_within_s: float = Field(
        default=1800.0, ge=0, description="An NIBP at most this old when the symptom is entered."
    )
    priority: Priority = Field(default="high", description="`bp_with_symptom` priority.")
    reported_priority: Priority = Field(
        default="low", description="Priority of the `symptom_reported` advisory."
    )
    source: str = Field(default="", description="Where the rule comes from.")


class News2Rule(_Model):
    """NEWS2 channels: NEWS2 computed on the fly (room air, SpO2 scale 1) as a secondary
    composite (``kapmonitor/alerts/news2.py``).

    Every ``every_s`` during a session the engine scores the current SpO2, HR (pulse), RR and
    the last NIBP systolic (at most ``nibp_fresh_s`` old). Consciousness and temperature are not
    measured by the devices, so the score is partial (a lower bound) and says which parameters
    are missing. The score is in the session state and a ``news2`` session event reports each
    change. In ``phases``: a total at or above ``total_at_or_above`` raises ``news2_total``; a
    total from ``urgent_at_or_above`` up to that raises ``news2_urgent`` (NEWS2 "urgent
    response", 5–6); a 3 in any single parameter raises ``news2_parameter``.
    """

    enabled: bool = Field(default=True, description="Set false to stop computing NEWS2.")
    every_s: float = Field(default=60.0, gt=0, description="Computed this often per bed.")
    phases: list[Phase] = Field(
        default_factory=lambda: list[Phase](("onset", "peak")),
        description="Phases in which the NEWS2 alerts run (the score is computed in all).",
    )
    total_at_or_above: int = Field(default=7, ge=1, description="`news2_total` threshold.")
    total_priority: Priority = Field(default="high", description="`news2_total` priority.")
    total_kind: Kind = Field(default="physiological", description="`news2_total` kind.")
    urgent_at_or_above: int = Field(
        default=5,
        ge=1,
        description="`news2_urgent` (RCP urgent response) from this total up to the high one.",
    )
    urgent_priority: Priority = Field(default="medium", description="`news2_urgent` priority.")
    urgent_kind: Kind = Field(default="physiological", description="`news2_urgent` kind.")
    single_priority: Priority = Field(default="medium", description="`news2_parameter` priority.")
    single_kind: Kind = Field(
        default="advisory",
        description=(
            "`news2_parameter` kind. Advisory by default: nearly every 3-point value already "
            "has its own audible rule, and a second sounding alarm for it is alarm fatigue."
        ),
    )
    nibp_fresh_s: float = Field(default=1200.0, gt=0, description="Oldest SBP that is scored.")
    source: str = Field(default="", description="Where the rule comes from.")


class RuleSet(_Model):
    """The whole alarm configuration."""

    tick_s: float = Field(default=1.0, gt=0, description="Evaluation tick (sampling grid).")
    hold_s: dict[str, float] = Field(
        default_factory=lambda: {m: 5.0 for m in CONTINUOUS_METRICS} | {"battery": 3600.0},
        description="A reading stands for the signal this long (sample-and-hold).",
    )
    artefact: Artefact = Field(default_factory=Artefact)
    nibp: NibpCheck = Field(default_factory=NibpCheck)
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)
    profiles: dict[str, Profile] = Field(description="Dosing profiles by name.")
    baseline: Baseline = Field(default_factory=Baseline)
    bp_schedule: BpSchedule = Field(default_factory=BpSchedule)
    discharge: Discharge = Field(default_factory=Discharge)
    devices: Devices = Field(default_factory=Devices)
    symptoms: Symptoms = Field(default_factory=Symptoms)
    news2: News2Rule = Field(default_factory=News2Rule)
    gaps: Gaps = Field(default_factory=Gaps)
    risk_flags: dict[str, RiskFlag] = Field(default_factory=dict, description="By flag name.")
    rules: list[Rule] = Field(description="The rules, evaluated in this order.")

    @model_validator(mode="after")
    def _check(self) -> RuleSet:
        ids = [r.id for r in self.rules]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate rule ids: {', '.join(sorted(dup))}")
        for m in self.hold_s:
            if m not in CONTINUOUS_METRICS:
                raise ValueError(f"hold_s: unknown metric {m!r}")
        for flag in self.risk_flags.values():
            for s in (*flag.upper, *flag.lower):
                if s not in signal_names():
                    raise ValueError(f"risk flag: unknown signal {s!r}")
        if not self.profiles:
            raise ValueError("at least one profile is needed")
        return self

    def hold_for(self, metric: str) -> float:
        return self.hold_s.get(metric, 5.0)


def parse_rules(data: dict[str, Any]) -> RuleSet:
    return RuleSet.model_validate(data)


def default_rules_text() -> str:
    return resources.files("kapmonitor").joinpath("data/rules.toml").read_text(encoding="utf-8")


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Load a rule set from TOML; ``None`` loads the defaults shipped with the package."""
    text = default_rules_text() if path is None else Path(path).read_text(encoding="utf-8")
    return parse_rules(tomllib.loads(text))

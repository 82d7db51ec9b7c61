"""The dosing session of one bed: profile, doses, phases, baseline, BP checklist, discharge.

Phases: ``pre_dose`` (session started, no dose yet) → ``onset`` (first dose t0 → t0 +
``onset_end_min``) → ``peak`` (→ t0 + ``peak_end_min``) → ``recovery`` → ``ended`` (session/end).
A bed without a session is ``idle``.

Baseline: NIBP = median of the valid pre-dose readings (complete with ≥ ``nibp_min_count``
readings spanning ≥ ``nibp_min_span_s``); SpO2/HR/RR = median of the samples of the last
``continuous_window_s`` before the dose (complete with ≥ ``continuous_min_s`` of samples). It is
frozen at the first dose; an incomplete baseline raises the technical alarm
``baseline_incomplete`` (the engine does that).

BP checklist: ``pre_dose`` (due at start), ``post_dose`` (due t0 + 40 − 5 min, overdue at
t0 + 40 + 5 min), ``while_active`` (while a BP alert is open: due ``while_active_every_s``
after the last reading, overdue after ``while_active_overdue_s``; while an alert of
``after_alarm_rules`` — ``bp_crisis``, ``bp_severe`` — is open, ``after_alarm_every_s`` /
``after_alarm_overdue_s`` instead). A due item is announced once
(``bp_due``); an overdue one is a technical alarm until a valid NIBP arrives.

Discharge readiness is advisory only: ``discharge_ready`` when every criterion holds,
``discharge_not_ready`` (with ``unmet`` and a ``reasons`` text per criterion) if one lapses
afterwards, or once when the minimum observation is over and a criterion is still unmet;
nothing is ever discharged automatically. Look-back criteria count from the end of what they
look back at: "no SpO2 alert in the last 15 min" means none was open at any moment of them.
A staff-entered symptom that has not been cleared blocks readiness.

The state round-trips through ``to_json``/``from_json`` (the daemon persists it); the
continuous baseline samples are not persisted, a restart during pre-dose re-collects them.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from kapmonitor.alerts.events import SessionEvent
from kapmonitor.alerts.rules import Phase, RuleSet

CONTINUOUS_BASELINE = ("spo2", "hr", "resp_rate")


def discharge_reason(criterion: str, rules: RuleSet, symptoms: list[str]) -> str:
    """Why discharge readiness is not met, in words, for one unmet criterion."""
    d = rules.discharge
    texts = {
        "min_observation": "the profile's minimum observation time is not over",
        "spo2": f"SpO2 not above {d.spo2_above:g} % for {d.spo2_for_s / 60:g} min",
        "spo2_alarm_recent": (
            f"an SpO2 alert was open within the last {d.spo2_alarm_quiet_s / 60:g} min"
        ),
        "bp": (
            f"last post-dose blood pressure not within ±{100 * d.bp_within_fraction:g} % of "
            f"baseline, below {d.bp_below[0]:g}/{d.bp_below[1]:g} and non-rising"
        ),
        "bp_fresh": f"no blood pressure in the last {d.nibp_fresh_s / 60:g} min",
        "hr": f"heart rate not within ±{100 * d.hr_within_fraction:g} % of baseline",
        "data_fresh": f"SpO2/heart-rate data older than {d.data_fresh_s:g} s",
        "open_alarms": "an alert is open",
        "symptom": (
            "staff-entered symptom not cleared: "
            + ", ".join(x.replace("_", " ") for x in symptoms)
            + " (session/symptom_clear)"
        ),
    }
    return texts.get(criterion, criterion)


@dataclass
class Dose:
    t: float
    dose_mg: float | None = None
    route: str | None = None


@dataclass
class NibpRecord:
    t: float
    sys: float
    dia: float
    mean: float | None


@dataclass
class BpItem:
    name: str
    due_at: float
    overdue_at: float | None
    announced: bool = False
    done_at: float | None = None


@dataclass
class Session:
    bed: str
    session_id: str
    profile: str
    started_at: float
    route: str | None = None
    risk_flags: list[str] = field(default_factory=list)
    patient_id: str | None = None
    doses: list[Dose] = field(default_factory=list)
    ended_at: float | None = None
    nibp: list[NibpRecord] = field(default_factory=list)
    baseline: dict[str, float] = field(default_factory=dict)
    baseline_complete: bool = False
    baseline_missing: list[str] = field(default_factory=list)
    bp_items: list[BpItem] = field(default_factory=list)
    phase: Phase = "pre_dose"
    discharge_ready: bool = False
    discharge_unmet: list[str] = field(default_factory=list)
    discharge_announced: bool = False
    spo2_ok_since: float | None = None
    samples: deque[tuple[float, float, float, float]] = field(
        default_factory=lambda: deque(maxlen=7200)
    )

    # -- time and phases ----------------------------------------------------------------------
    @property
    def t0(self) -> float | None:
        return self.doses[0].t if self.doses else None

    def phase_at(self, now: float, rules: RuleSet) -> Phase:
        if self.ended_at is not None:
            return "ended"
        t0 = self.t0
        if t0 is None:
            return "pre_dose"
        p = rules.profiles[self.profile]
        minutes = (now - t0) / 60.0
        if minutes < p.onset_end_min:
            return "onset"
        if minutes < p.peak_end_min:
            return "peak"
        return "recovery"

    def update_phase(self, now: float, rules: RuleSet) -> list[SessionEvent]:
        phase = self.phase_at(now, rules)
        if phase == self.phase:
            return []
        self.phase = phase
        return [SessionEvent(now, self.bed, "phase", phase, {"session_id": self.session_id})]

    def observation_until(self, rules: RuleSet) -> float | None:
        """Earliest time the profile's minimum observation allows discharge."""
        if not self.doses:
            return None
        p = rules.profiles[self.profile]
        ref = self.doses[0].t if p.observation_from == "first_dose" else self.doses[-1].t
        return ref + 60.0 * p.min_observation_min

    # -- baseline -----------------------------------------------------------------------------
    def add_sample(self, t: float, spo2: float, hr: float, rr: float) -> None:
        """Pre-dose continuous samples for the baseline (NaN = none)."""
        self.samples.append((t, spo2, hr, rr))

    def freeze_baseline(self, now: float, rules: RuleSet) -> None:
        cfg = rules.baseline
        missing: list[str] = []
        pre = [r for r in self.nibp if r.t <= now]
        if pre:
            self.baseline["nibp_sys"] = statistics.median(r.sys for r in pre)
            self.baseline["nibp_dia"] = statistics.median(r.dia for r in pre)
            means = [r.mean for r in pre if r.mean is not None]
            if means:
                self.baseline["nibp_mean"] = statistics.median(means)
        span = pre[-1].t - pre[0].t if pre else 0.0
        if len(pre) < cfg.nibp_min_count or span < cfg.nibp_min_span_s:
            missing.append(
                f"nibp: {len(pre)} reading(s) over {span:.0f} s (need {cfg.nibp_min_count} "
                f"over ≥{cfg.nibp_min_span_s:.0f} s)"
            )
        window = [s for s in self.samples if now - cfg.continuous_window_s <= s[0] <= now]
        for i, name in enumerate(CONTINUOUS_BASELINE, start=1):
            vals = [s[i] for s in window if not math.isnan(s[i])]
            if vals:
                self.baseline[name] = statistics.median(vals)
            if name != "resp_rate" and len(vals) * rules.tick_s < cfg.continuous_min_s:
                missing.append(f"{name}: {len(vals) * rules.tick_s:.0f} s of samples")
        self.baseline_missing = missing
        self.baseline_complete = not missing
        self.samples.clear()

    # -- NIBP and the BP checklist ------------------------------------------------------------
    def add_nibp(self, rec: NibpRecord) -> None:
        self.nibp.append(rec)
        del self.nibp[:-50]  # enough history for baseline and trends
        for item in self.bp_items:
            # pre-dose and while-active items take any new reading; post-dose needs its window
            if item.done_at is None and (item.name != "post_dose" or rec.t >= item.due_at):
                item.done_at = rec.t

    def start_schedule(self, now: float) -> None:
        self.bp_items.append(BpItem("pre_dose", now, None))

    def dose_schedule(self, rules: RuleSet) -> None:
        t0 = self.t0
        assert t0 is not None
        s = rules.bp_schedule
        self.bp_items = [i for i in self.bp_items if i.name != "pre_dose"]
        due = t0 + 60.0 * (s.post_dose_at_min - s.post_dose_window_min)
        overdue = t0 + 60.0 * (s.post_dose_at_min + s.post_dose_window_min)
        self.bp_items.append(BpItem("post_dose", due, overdue))

    def schedule_step(self, now: float, rules: RuleSet, bp_alert_open: bool, *,
                      urgent: bool = False) -> tuple[list[SessionEvent], list[str]]:
        """Announce due items; return (events, names of overdue items). ``urgent``: an alert
        of ``after_alarm_rules`` is open, so the shorter cadence applies."""
        s = rules.bp_schedule
        if self.phase == "ended":
            return [], []
        active = next((i for i in self.bp_items if i.name == "while_active"), None)
        if bp_alert_open and self.doses:
            every, overdue = (
                (s.after_alarm_every_s, s.after_alarm_overdue_s) if urgent
                else (s.while_active_every_s, s.while_active_overdue_s)
            )
            last = self.nibp[-1].t if self.nibp else now
            if active is None or active.done_at is not None:
                self.bp_items = [i for i in self.bp_items if i.name != "while_active"]
                self.bp_items.append(BpItem("while_active", last + every, last + overdue))
            elif (active.due_at, active.overdue_at) != (last + every, last + overdue):
                # the cadence changed while the reading is pending (a BP alarm raised or over)
                active.due_at, active.overdue_at = last + every, last + overdue
        elif active is not None:
            self.bp_items.remove(active)
        events = []
        overdue_names = []
        for item in self.bp_items:
            if item.done_at is not None:
                continue
            if not item.announced and now >= item.due_at:
                item.announced = True
                detail = {"item": item.name, "due_at": item.due_at, "session_id": self.session_id}
                if item.overdue_at is not None:
                    detail["overdue_at"] = item.overdue_at
                events.append(SessionEvent(now, self.bed, "bp_due", self.phase, detail))
            if item.overdue_at is not None and now >= item.overdue_at:
                overdue_names.append(item.name)
        return events, overdue_names

    # -- discharge readiness -----------------------------------------------------------------
    def discharge_step(
        self, now: float, rules: RuleSet, *, spo2: float, hr: float, spo2_age: float,
        hr_age: float, open_alarms: list[str], last_spo2_alert: float | None,
        symptoms: list[str] | None = None,
    ) -> list[SessionEvent]:
        d = rules.discharge
        # "SpO2 above the limit for 5 min" looks back across the phase change into recovery
        if self.t0 is not None and not math.isnan(spo2) and spo2 > d.spo2_above:
            if self.spo2_ok_since is None:
                self.spo2_ok_since = now
        else:
            self.spo2_ok_since = None
        if self.phase != "recovery":
            return []
        unmet: list[str] = []
        until = self.observation_until(rules)
        if until is None or now < until:
            unmet.append("min_observation")
        if self.spo2_ok_since is None or now - self.spo2_ok_since < d.spo2_for_s:
            unmet.append("spo2")
        # last_spo2_alert: the last tick an SpO2 alert was open (quiet counts from its end)
        if last_spo2_alert is not None and now - last_spo2_alert <= d.spo2_alarm_quiet_s:
            unmet.append("spo2_alarm_recent")
        unmet += self._bp_unmet(now, rules)
        bl_hr = self.baseline.get("hr")
        if bl_hr is None or math.isnan(hr) or abs(hr - bl_hr) > d.hr_within_fraction * bl_hr:
            unmet.append("hr")
        if not (spo2_age <= d.data_fresh_s and hr_age <= d.data_fresh_s):  # NaN → stale
            unmet.append("data_fresh")
        if open_alarms:
            unmet.append("open_alarms")
        if symptoms and d.symptoms_block:
            unmet.append("symptom")
        self.discharge_unmet = unmet
        ready = not unmet
        due = until is not None and now >= until and not self.discharge_announced
        if ready == self.discharge_ready and not (due and not ready):
            return []
        self.discharge_ready = ready
        self.discharge_announced = True
        name = "discharge_ready" if ready else "discharge_not_ready"
        detail: dict[str, Any] = {"session_id": self.session_id, "advisory": True}
        if not ready:
            detail["unmet"] = unmet
            detail["reasons"] = [discharge_reason(u, rules, symptoms or []) for u in unmet]
        return [SessionEvent(now, self.bed, name, self.phase, detail)]

    def _bp_unmet(self, now: float, rules: RuleSet) -> list[str]:
        d = rules.discharge
        post = [r for r in self.nibp if self.t0 is not None and r.t > self.t0]
        bl_s, bl_d = self.baseline.get("nibp_sys"), self.baseline.get("nibp_dia")
        if not post or bl_s is None or bl_d is None:
            return ["bp"]
        last = post[-1]
        if now - last.t > d.nibp_fresh_s:
            return ["bp_fresh"]
        ok = (
            abs(last.sys - bl_s) <= d.bp_within_fraction * bl_s
            and abs(last.dia - bl_d) <= d.bp_within_fraction * bl_d
            and last.sys < d.bp_below[0]
            and last.dia < d.bp_below[1]
            and (len(post) < 2 or last.sys <= post[-2].sys + d.bp_rise_tolerance)
        )
        return [] if ok else ["bp"]

    # -- snapshot / persistence ---------------------------------------------------------------
    def snapshot(self, now: float, rules: RuleSet) -> dict[str, Any]:
        until = self.observation_until(rules)
        return {
            "bed": self.bed,
            "active": self.ended_at is None,
            "session_id": self.session_id,
            "profile": self.profile,
            "route": self.route,
            "risk_flags": list(self.risk_flags),
            "patient_id": self.patient_id,
            "phase": self.phase,
            "started_at": self.started_at,
            "t0": self.t0,
            "doses": [d.__dict__.copy() for d in self.doses],
            "ended_at": self.ended_at,
            "baseline": dict(self.baseline),
            "baseline_complete": self.baseline_complete,
            "baseline_missing": list(self.baseline_missing),
            "last_nibp": self.nibp[-1].__dict__.copy() if self.nibp else None,
            "bp_checklist": [i.__dict__.copy() for i in self.bp_items],
            "discharge": {
                "ready": self.discharge_ready,
                "unmet": list(self.discharge_unmet),
                "not_before": until,
                "advisory": True,
            },
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "bed": self.bed,
            "session_id": self.session_id,
            "profile": self.profile,
            "started_at": self.started_at,
            "route": self.route,
            "risk_flags": list(self.risk_flags),
            "patient_id": self.patient_id,
            "doses": [d.__dict__.copy() for d in self.doses],
            "ended_at": self.ended_at,
            "nibp": [r.__dict__.copy() for r in self.nibp],
            "baseline": dict(self.baseline),
            "baseline_complete": self.baseline_complete,
            "baseline_missing": list(self.baseline_missing),
            "bp_items": [i.__dict__.copy() for i in self.bp_items],
            "phase": self.phase,
            "discharge_ready": self.discharge_ready,
            "discharge_unmet": list(self.discharge_unmet),
            "discharge_announced": self.discharge_announced,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Session:
        d = dict(data)
        d["doses"] = [Dose(**x) for x in d.get("doses", [])]
        d["nibp"] = [NibpRecord(**x) for x in d.get("nibp", [])]
        d["bp_items"] = [BpItem(**x) for x in d.get("bp_items", [])]
        return cls(**d)

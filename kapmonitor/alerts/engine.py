"""The facade the daemon (and ``kapmonitor replay``) calls: :class:`AlarmEngine`.

Usage::

    engine = AlarmEngine(load_rules(path), beds=["bed1", "bed2"], id_prefix="")
    engine.on_reading(reading)                  # kapmonitor.model.Reading, any time
    engine.on_device_status("ox1", "bed1", "disconnected", now)
    events = engine.tick(now)                   # runs every tick due up to `now`
    response, events = engine.ack(AlertArgs(bed="bed1", all=True), now)  # typed commands
    result = engine.execute(parse_command("alert/ack", body), now)      # by name (the router)
    result.response, result.events              # response body and events to publish
    engine.active_alarms("bed1")                # retained `bed/<id>/alarms` payload
    engine.session_state("bed1")                # retained `bed/<id>/session` payload
    state = engine.export_state(); engine.restore_state(state)   # persistence across restarts

Time is whatever the caller passes (epoch seconds in the daemon, trace seconds in replay); the
engine never reads a clock. Ticks fall on multiples of ``tick_s``. Readings are placed by their
host ``received`` time; NIBP parts (sys/dia/mean) with the same device and group id (without
one: the same source timestamp) form one measurement, validated and evaluated at the first tick
after they arrived, or earlier, at their arrival, by :meth:`AlarmEngine.evaluate_nibp` (what the
daemon and ``kapmonitor replay`` do)::

    engine.on_reading(sys_part); engine.on_reading(dia_part)
    events = engine.evaluate_nibp(now)          # every NIBP measurement received by `now`

Commands (argument models and the name table in :mod:`kapmonitor.alerts.commands`; a refused
command raises :class:`~kapmonitor.errors.CommandError`; ``command(name, mapping, now)`` is the
compatibility entry point that validates and returns an error response instead):

* ``session/start`` {bed, profile, route?, risk_flags?, session_id?, patient_id?}
* ``session/dose`` {bed, dose_mg?, route?} — the first dose is t0 and freezes the baseline
* ``session/end`` {bed}
* ``alert/ack`` {bed, alert_id? | all: true, by?} — ``alert_id`` may also be a rule id
* ``alert/pause`` {bed, alert_id? | all: true, seconds?, by?} — AUDIO PAUSED, time-limited
* ``session/symptom`` {bed, symptom, note?, by?} — a staff-entered symptom (``bp_with_symptom``)
* ``session/symptom_clear`` {bed, symptom? | all: true, by?} — the staff reset of that rule

Engine technical channels (besides the rule set): ``nibp_invalid``, ``bp_overdue``,
``baseline_incomplete``, ``device_disconnected:<device>``, ``signal_dropouts``,
``bp_with_symptom`` and the advisory ``symptom_reported``, ``news2_total``, ``news2_urgent`` and
``news2_parameter``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from kapmonitor.alerts.commands import (
    AlertArgs,
    DoseArgs,
    EndArgs,
    EngineArgs,
    PauseArgs,
    StartArgs,
    SymptomArgs,
    SymptomClearArgs,
    parse_command,
)
from kapmonitor.alerts.compiled import CompiledRules
from kapmonitor.alerts.detector import TickInput, Transition, VectorDetector
from kapmonitor.alerts.events import AlertEvent, Event, SessionEvent
from kapmonitor.alerts.lifecycle import Alert, AlertBook
from kapmonitor.alerts.news2 import News2Inputs, News2Score
from kapmonitor.alerts.news2 import score as news2_score
from kapmonitor.alerts.rules import (
    CONTINUOUS_METRICS,
    NIBP_SIGNALS,
    PARAMETER_OF,
    PHASES,
    PRIORITIES,
    Phase,
    Priority,
    RuleSet,
    base_signal,
)
from kapmonitor.alerts.session import Dose, NibpRecord, Session
from kapmonitor.alerts.signals import SignalSampler
from kapmonitor.errors import CommandError
from kapmonitor.model import METRICS, Reading

STATE_VERSION = 1
CATCH_UP_LIMIT_S = 120.0  # after a longer stall, skip ahead instead of replaying every tick


@dataclass
class CommandResult:
    response: dict[str, Any]
    events: list[Event] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.response.get("status") == "ok"


def _fmt(x: float) -> str:
    return f"{round(x, 1):g}"


def _watch(rule: Any, column: str | None) -> tuple[str | None, float]:
    """The signal an acknowledged alert of ``rule`` watches for worsening, and its direction
    (+1: higher is worse), from the value term that matched (``column``)."""
    if column is None:
        return None, 0.0
    for term in (*rule.when_any, *rule.when_all):
        if term.signal == column and term.trend_window_s is None:
            return column, 1.0 if term.op in (">", ">=") else -1.0
    return None, 0.0


def _symptom_text(symptoms: Mapping[str, Any]) -> str:
    return ", ".join(name.replace("_", " ") for name in sorted(symptoms))


@dataclass
class _NibpParts:
    first_received: float
    values: dict[str, float | None] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)


_A = TypeVar("_A", bound=EngineArgs)
_Reply = tuple[dict[str, Any], list[Event]]


def _on_known_bed(
    method: Callable[[AlarmEngine, _A, float], _Reply],
) -> Callable[[AlarmEngine, _A, float], _Reply]:
    """A command method runs only for a bed the engine watches."""

    def checked(self: AlarmEngine, a: _A, now: float) -> _Reply:
        if a.bed not in self.bed_index:
            raise CommandError(f"unknown bed {a.bed!r}")
        return method(self, a, now)

    checked.__name__ = method.__name__
    checked.__doc__ = method.__doc__
    return checked


class AlarmEngine:
    def __init__(
        self, rules: RuleSet, beds: Sequence[str], *, id_prefix: str = "",
        catch_up_limit_s: float | None = CATCH_UP_LIMIT_S,
    ) -> None:
        """``catch_up_limit_s``: after a stall longer than this, skip to the present instead of
        running every missed tick (the daemon after a suspend); None runs every tick (replay,
        where a gap in the trace is time in which no data arrived)."""
        if len(set(beds)) != len(beds):
            raise ValueError("duplicate bed ids")
        self.rules = rules
        self.beds = list(beds)
        self.bed_index = {b: i for i, b in enumerate(self.beds)}
        self.compiled = CompiledRules.build(rules)
        self.detector = VectorDetector(self.compiled, len(self.beds))
        self.sampler = SignalSampler(rules, len(self.beds))
        self.sessions: dict[str, Session] = {}
        self.book = AlertBook(rules.lifecycle, self.phase_of, id_prefix)
        self.dt = float(rules.tick_s)
        self.catch_up_limit_s = catch_up_limit_s
        self.tick_k: int | None = None
        self.last_tick: float | None = None
        self._nibp_parts: dict[str, dict[tuple[str, str | float], _NibpParts]] = {}
        self._nibp_ready: dict[str, deque[_NibpParts]] = {b: deque() for b in self.beds}
        self._nibp_now = np.full((3, len(self.beds)), np.nan)
        self._devices: dict[tuple[str, str], tuple[str, float]] = {}
        self._battery: dict[str, dict[str, float]] = {b: {} for b in self.beds}
        self._last_spo2_alert: dict[str, float] = {}
        self._last_nibp: dict[str, tuple[float, float, float]] = {}  # bed → (t, sys, dia)
        self._symptoms: dict[str, dict[str, dict[str, Any]]] = {}  # bed → symptom → entry
        self._advisory_due: set[str] = set()  # beds whose symptom advisory a restore owes
        self._news2: dict[str, tuple[float, News2Score]] = {}  # bed → (t, latest score)
        self._rules_by_id = {r.id: r for r in self.compiled.active_rules}
        self._init_dropouts()

    # -- inputs -------------------------------------------------------------------------------
    def on_reading(self, reading: Reading) -> None:
        """Take one reading (any bed, any metric); unknown beds/metrics are ignored."""
        b = self.bed_index.get(reading.bed)
        if b is None:
            return
        m = reading.metric
        if m == "battery":
            if reading.value is not None:
                levels = self._battery[reading.bed]
                levels[reading.device] = reading.value
                self.sampler.ingest(b, m, min(levels.values()), reading.received, ())
        elif m in CONTINUOUS_METRICS:
            self.sampler.ingest(b, m, reading.value, reading.received, reading.quality)
        elif m in NIBP_SIGNALS:
            parts = self._nibp_parts.setdefault(reading.bed, {})
            key = (reading.device, reading.group or reading.ts)
            p = parts.get(key)
            if p is None:
                p = parts[key] = _NibpParts(reading.received)
            p.values[m] = reading.value
            p.flags |= reading.quality

    def on_device_status(self, device: str, bed: str, state: str, now: float | None = None
                         ) -> None:
        """A device supervisor's status change (connecting/connected/stale/disconnected/error)."""
        if bed not in self.bed_index:
            return
        t = now if now is not None else (self.last_tick if self.last_tick is not None else 0.0)
        prev = self._devices.get((bed, device))
        if prev is None or prev[0] != state:
            self._devices[(bed, device)] = (state, t)

    # -- time ---------------------------------------------------------------------------------
    def tick(self, now: float) -> list[Event]:
        """Run every tick whose time is ≤ ``now``; return the events in time order."""
        if self.tick_k is None:
            self.tick_k = math.ceil(now / self.dt - 1e-9)
        limit = self.catch_up_limit_s
        if limit is not None and now - self.tick_k * self.dt > limit:
            self.tick_k = math.floor(now / self.dt + 1e-9)
        events: list[Event] = []
        while self.tick_k * self.dt <= now:
            events += self._step(self.tick_k * self.dt)
            self.tick_k += 1
        return events

    def _nibp_waiting(self, upto: float) -> float | None:
        """The arrival of the oldest NIBP measurement received by ``upto`` and not yet
        evaluated (None: none)."""
        times = [p.first_received for q in self._nibp_ready.values() for p in q]
        times += [p.first_received for parts in self._nibp_parts.values()
                  for p in parts.values() if p.first_received <= upto]
        return min(times, default=None)

    def evaluate_nibp(self, upto: float) -> list[Event]:
        """Evaluate now, between two ticks, the NIBP measurements received at or before
        ``upto``: each at its arrival time (the time of its first part; never before the last
        tick), oldest first, as the NIBP part of a tick would: validation (``nibp_invalid``),
        the NIBP rules, confirmation requests, ``bp_with_symptom``, the session's BP record and
        the worsening check of acknowledged NIBP alarms. The caller has run every tick up to
        ``upto``. The daemon calls it as a measurement arrives, so an at-once NIBP alarm is
        raised then instead of at the next tick; ``kapmonitor replay`` does the same."""
        out: list[Event] = []
        while (t := self._nibp_waiting(upto)) is not None:
            last = self.last_tick
            out += self._evaluate_nibp_at(t if last is None else max(t, last))
        return out

    def _evaluate_nibp_at(self, t: float) -> list[Event]:
        """One measurement per bed (the oldest waiting) at ``t``; see :meth:`evaluate_nibp`."""
        out = self._take_nibp(t)
        nibp = self._nibp_now
        if not np.isnan(nibp[:2]).all():
            for tr in self.detector.step_nibp(t, nibp):
                out += self._apply(tr, t)
            asked = {e.bed for e in out if isinstance(e, SessionEvent) and e.event == "bp_due"}
            out += [e for e in self._confirm_requests(t) if e.bed not in asked]
            out += self.book.ack_step(t, self._current_nibp, self._describe, expiry=False)
        # evaluated: the next tick must not take it again
        self._nibp_now = np.full((3, len(self.beds)), np.nan)
        return out

    def _current_nibp(self, a: Alert) -> float | None:
        """:meth:`_current_value` for the alerts that watch an NIBP signal (else None)."""
        return self._current_value(a) if a.watch in NIBP_SIGNALS else None

    def _step(self, t: float) -> list[Event]:
        self.last_tick = t
        out: list[Event] = []
        for bed in sorted(self.sessions):
            s = self.sessions[bed]
            ev = s.update_phase(t, self.rules)
            if ev:
                out += ev
                self._push_context(bed)
        for bed in sorted(self.book.open):  # a phase (by time or by a dose) raised a priority
            out += self._reprioritise(bed, t)
        out += self._take_nibp(t)
        value, age, off, poor = self.sampler.sample(t)
        inp = TickInput(t, value, age, off, poor, self._nibp_now)
        for tr in self.detector.step(inp):
            out += self._apply(tr, t)
        out += self._dropout_step(t)
        asked = {e.bed for e in out if isinstance(e, SessionEvent) and e.event == "bp_due"}
        out += [e for e in self._confirm_requests(t) if e.bed not in asked]
        for bed in sorted(self.sessions):
            out += self._session_step(bed, t)
        out += self._device_step(t)
        for bed in sorted(self._advisory_due):  # symptoms restored after a restart
            out += self._symptom_advisory(bed, t)
        self._advisory_due.clear()
        out += self.book.ack_step(t, self._current_value, self._describe)
        timed = self.book.tick(t)
        out += timed
        out += self._remeasure_after_escalation(t, timed)
        return out

    # -- re-annunciation ------------------------------------------------------------------------
    def _reprioritise(self, bed: str, t: float) -> list[Event]:
        """A phase change that raises an open rule alert's priority re-annunciates it."""
        out: list[Event] = []
        phase = self.phase_of(bed)
        for a in self.book.alerts(bed):
            rule = self._rules_by_id.get(a.channel)
            if rule is not None:
                out += self.book.raise_priority(t, bed, a.channel, rule.priority_in(phase))
        return out

    def _current_value(self, a: Alert) -> float | None:
        """The latest value of an alert's watched signal this tick (None: none new)."""
        rule = self._rules_by_id.get(a.channel)
        if rule is None or a.watch is None:
            return None
        b = self.bed_index[a.bed]
        if a.watch in NIBP_SIGNALS:
            v = float(self._nibp_now[NIBP_SIGNALS.index(a.watch), b])
        elif a.watch in self.compiled.col:
            v = float(self.detector.X[self.compiled.col[a.watch], b])
        else:
            return None
        return None if math.isnan(v) else v

    def _describe(self, a: Alert) -> str | None:
        """A rule alert's text for its current value (an acknowledged alarm sounding again)."""
        ri = self.compiled.rule_ids.index(a.channel) if a.channel in self._rules_by_id else -1
        if ri < 0 or a.watch is None:
            return None
        rule = self._rules_by_id[a.channel]
        b = self.bed_index[a.bed]
        return self._text(rule.title, a.watch, a.metric, a.current, b, a.bed, ri)

    def _remeasure_after_escalation(self, t: float, events: Sequence[AlertEvent]
                                    ) -> list[Event]:
        """An NIBP alarm that became high by time asks for a re-measurement, as a raised one."""
        out: list[Event] = []
        for e in events:
            rule = self._rules_by_id.get(e.rule)
            if (
                e.event == "escalated" and e.priority == "high"
                and e.escalation_level == 0 and rule is not None and rule.episodic
                and rule.kind == "physiological"
            ):
                out.append(self._remeasure(t, e.bed, rule.id))
        return out

    def _remeasure(self, t: float, bed: str, rule_id: str) -> SessionEvent:
        return SessionEvent(t, bed, "bp_due", self.phase_of(bed), {
            "item": "re_measure", "rule": rule_id, "due_at": t,
        })

    # -- dropouts -----------------------------------------------------------------------------
    def _init_dropouts(self) -> None:
        cfg = self.rules.gaps
        c = self.compiled
        self._drop_params = list(cfg.dropout_parameters)
        self._drop_cols = np.array([c.col[p] for p in self._drop_params], dtype=np.int64)
        self._drop_age_cols = np.array([c.col[f"{p}_age"] for p in self._drop_params],
                                       dtype=np.int64)
        self._drop_w = max(1, round(cfg.dropout_window_s / self.dt))
        shape = (len(self._drop_params), self._drop_w, len(self.beds))
        self._drop_ring = np.zeros(shape, dtype=bool)
        self._drop_count = np.zeros((len(self._drop_params), len(self.beds)), dtype=np.int64)
        self._drop_k = 0
        physio = c.continuous & (c.kind == 0)
        pidx = {p: i for i, p in enumerate(c.parameters)}
        self._drop_rules = [
            np.flatnonzero(physio & (c.rule_param == pidx[p])) for p in self._drop_params
        ]

    def _dropout_step(self, t: float) -> list[Event]:
        """``signal_dropouts``: more than ``dropout_share`` of the last ``dropout_window_s``
        without a value of a parameter whose physiological condition is active or pending;
        clears when the share is back at or below it."""
        cfg = self.rules.gaps
        X = self.detector.X
        missing = np.isnan(X[self._drop_cols]) & ~np.isnan(X[self._drop_age_cols])
        slot = self._drop_k % self._drop_w
        self._drop_count += missing.astype(np.int64) - self._drop_ring[:, slot]
        self._drop_ring[:, slot] = missing
        self._drop_k += 1
        share = self._drop_count / self._drop_w
        over = share > cfg.dropout_share
        pending = self.detector.pending()
        watched = np.zeros_like(over)
        for i, rules in enumerate(self._drop_rules):
            if len(rules):
                watched[i] = pending[rules].any(axis=0)
        out: list[Event] = []
        candidates = set(np.flatnonzero(over.any(axis=0)).tolist())
        candidates |= {self.bed_index[bed] for bed, chans in self.book.open.items()
                       if "signal_dropouts" in chans}
        for b in sorted(candidates):
            bed = self.beds[b]
            names = [p for i, p in enumerate(self._drop_params) if over[i, b]]
            if (self.book.get(bed, "signal_dropouts") is None
                    and not (over[:, b] & watched[:, b]).any()):
                continue
            if not names:
                out += self.book.condition_off(t, bed, "signal_dropouts")
                continue
            worst = float(share[:, b].max())
            parts = ", ".join(f"{p} {100 * share[self._drop_params.index(p), b]:.0f} %"
                              for p in names)
            out += self.book.condition_on(
                t, bed, "signal_dropouts", rule="signal_dropouts", kind="technical",
                priority=cfg.dropout_priority, metric=self._metric_name(names[0], b, t),
                value=round(100 * worst, 1),
                text=f"Frequent dropouts during an alarm condition: {parts} of the last "
                     f"{cfg.dropout_window_s:g} s without a value",
                latch=False,
            )
        return out


    # -- NIBP ---------------------------------------------------------------------------------
    def _take_nibp(self, t: float) -> list[Event]:
        out: list[Event] = []
        self._nibp_now = np.full((3, len(self.beds)), np.nan)
        for bed, parts in self._nibp_parts.items():
            for key in [k for k, p in parts.items() if p.first_received <= t]:
                self._nibp_ready[bed].append(parts.pop(key))
        for bed in self.beds:
            queue = self._nibp_ready[bed]
            if not queue:
                continue
            p = queue.popleft()  # one measurement per bed per tick; the rest follow
            problem = self._nibp_problem(p)
            if problem:
                out += self.book.condition_on(
                    t, bed, "nibp_invalid", rule="nibp_invalid", kind="technical",
                    priority=self.rules.nibp.priority, metric="nibp_sys",
                    value=p.values.get("nibp_sys"), text=f"NIBP measurement rejected: {problem}",
                    latch=False,
                )
                continue
            out += self.book.condition_off(t, bed, "nibp_invalid")
            sys_, dia = p.values["nibp_sys"], p.values["nibp_dia"]
            assert sys_ is not None and dia is not None
            mean = p.values.get("nibp_mean")
            b = self.bed_index[bed]
            self._nibp_now[:, b] = (sys_, dia, np.nan if mean is None else mean)
            self._last_nibp[bed] = (t, sys_, dia)
            s = self.sessions.get(bed)
            if s is not None and s.phase != "ended":
                s.add_nibp(NibpRecord(t, sys_, dia, mean))
            out += self._symptom_bp(bed, t)
        return out

    def _nibp_problem(self, p: _NibpParts) -> str | None:
        cfg = self.rules.nibp
        bad = sorted(p.flags & set(cfg.error_flags))
        if bad:
            return "device flags " + ", ".join(bad)
        sys_, dia = p.values.get("nibp_sys"), p.values.get("nibp_dia")
        if sys_ is None or dia is None:
            return "systolic and diastolic values needed"
        if not cfg.sys_range[0] <= sys_ <= cfg.sys_range[1]:
            return f"systolic {sys_:g} outside {cfg.sys_range[0]:g}–{cfg.sys_range[1]:g}"
        if not cfg.dia_range[0] <= dia <= cfg.dia_range[1]:
            return f"diastolic {dia:g} outside {cfg.dia_range[0]:g}–{cfg.dia_range[1]:g}"
        if sys_ - dia < cfg.min_pulse_pressure:
            return f"pulse pressure {sys_ - dia:g} below {cfg.min_pulse_pressure:g}"
        return None

    def _confirm_requests(self, t: float) -> list[Event]:
        """A single qualifying NIBP of a confirm-by-repeat rule asks for a repeat reading."""
        out: list[Event] = []
        c, d = self.compiled, self.detector
        new = ~np.isnan(self._nibp_now[0])
        if not new.any():
            return out
        for ri in np.flatnonzero(c.episodic & (c.confirm_count > 1)):
            waiting = new & (d.count[ri] >= 1) & (d.count[ri] < c.confirm_count[ri]) & ~d.active[ri]
            for b in np.flatnonzero(waiting):
                bed = self.beds[int(b)]
                out.append(SessionEvent(t, bed, "bp_due", self.phase_of(bed), {
                    "item": "confirm", "rule": c.rule_ids[ri], "due_at": t,
                }))
        return out

    # -- staff-entered symptoms (bp_with_symptom) ---------------------------------------------
    def _symptom_bp(self, bed: str, t: float) -> list[Event]:
        """Raise ``bp_with_symptom`` when a symptom is active and the last NIBP qualifies."""
        cfg = self.rules.symptoms
        symptoms = self._symptoms.get(bed)
        last = self._last_nibp.get(bed)
        if not symptoms or last is None:
            return []
        entered = min(e["t"] for e in symptoms.values())
        t_bp, sys_, dia = last
        if t_bp < entered - cfg.bp_within_s:
            return []
        if sys_ < cfg.sys_at_or_above and dia < cfg.dia_at_or_above:
            return []
        return list(self.book.condition_on(
            t, bed, "bp_with_symptom", rule="bp_with_symptom", kind="physiological",
            priority=cfg.priority, metric="nibp_sys", value=sys_,
            text=f"Blood pressure {sys_:.0f}/{dia:.0f} mmHg with reported symptom: "
                 f"{_symptom_text(symptoms)}",
            latch=True,
        ))

    def _symptom_advisory(self, bed: str, t: float) -> list[Event]:
        symptoms = self._symptoms.get(bed)
        if not symptoms:
            return list(self.book.close_channel(t, bed, "symptom_reported"))
        text = f"Symptom reported: {_symptom_text(symptoms)}"
        a = self.book.get(bed, "symptom_reported")
        if a is not None:
            a.text = text
            return []
        return list(self.book.condition_on(
            t, bed, "symptom_reported", rule="symptom_reported", kind="advisory",
            priority=self.rules.symptoms.reported_priority, metric=None, value=None,
            text=text, latch=False,
        ))

    def symptoms(self, bed: str) -> list[dict[str, Any]]:
        """The bed's active staff-entered symptoms, oldest first."""
        entries = self._symptoms.get(bed, {})
        return [{"symptom": k, **v} for k, v in sorted(entries.items(), key=lambda kv: kv[1]["t"])]

    # -- transitions → alerts -----------------------------------------------------------------
    def _apply(self, tr: Transition, t: float) -> list[Event]:
        c = self.compiled
        rule = c.active_rules[tr.rule]
        bed = self.beds[tr.bed]
        column = c.columns[tr.column] if tr.column >= 0 else None
        metric = self._metric_name(column, tr.bed, t)
        value = tr.value
        if column is not None and column.endswith(("_off", "_poor")):
            value = None
        if tr.event == "off":
            return list(self.book.condition_off(t, bed, rule.id, value))
        text = self._text(rule.title, column, metric, value, tr.bed, bed, tr.rule)
        phase = self.phase_of(bed)
        remeasure = rule.episodic and rule.kind == "physiological"
        if tr.event == "escalate":
            out: list[Event] = list(self.book.escalate(
                t, bed, rule.id, text + " (repeat reading)", value=value,
            ))
            if remeasure and out:
                out.append(self._remeasure(t, bed, rule.id))
            return out
        watch, sign = _watch(rule, column)
        out = list(self.book.condition_on(
            t, bed, rule.id, rule=rule.id, kind=rule.kind, priority=rule.priority_in(phase),
            metric=metric, value=value, text=text, latch=rule.latch, watch=watch,
            worse_sign=sign,
        ))
        if remeasure and rule.priority_in(phase) == "high":
            out.append(self._remeasure(t, bed, rule.id))
        return out

    def _metric_name(self, column: str | None, b: int, t: float) -> str | None:
        if column is None:
            return None
        base = base_signal(column.split("~")[0])
        if base == "hr":
            ecg = self.sampler.fresh_value(b, "heart_rate", t)
            return "pulse_rate" if math.isnan(ecg) else "heart_rate"
        return base

    def _title(self, ri: int, b: int) -> str:
        """The rule's title with each `{signal}` replaced by the limit in force on this bed."""
        c = self.compiled
        rule = c.active_rules[ri]
        title = rule.title
        terms = [*rule.when_any, *rule.when_all]
        index = [*c.any_terms[ri], *c.all_terms[ri]]
        for text, term in rule.title_terms():
            ti = index[terms.index(term)]
            lim = float(self.detector.lim[ti, b])
            if term.reference == "baseline_delta":
                lim -= float(self.detector.baseline[c.term_baseline_col[ti], b])
            elif term.reference == "baseline_ratio" and lim == lim:
                # a ratio is shown as the ratio while untightened, else as the limit in mmHg
                base = float(self.detector.baseline[c.term_baseline_col[ti], b])
                if lim == base * term.value:
                    lim = term.value
            shown = _fmt(lim) if lim == lim else _fmt(term.value)
            title = title.replace(text, shown)
        return title

    def _text(self, title: str, column: str | None, metric: str | None, value: float | None,
              b: int, bed: str, ri: int | None = None) -> str:
        if ri is not None:
            title = self._title(ri, b)
        if column is None:
            names = [a.rule for a in self.book.alerts(bed)
                     if a.priority == "medium" and a.kind == "physiological"]
            return f"{title}: {', '.join(names)}" if names else title
        if column in NIBP_SIGNALS:
            s, d, m = self._nibp_now[:, b]
            bp = f"{s:.0f}/{d:.0f} mmHg" + ("" if math.isnan(m) else f" (mean {m:.0f})")
            return f"{title}: {bp}"
        if value is None:
            return title
        if column.endswith("_age"):
            return f"{title}: {metric} last received {value:.0f} s ago"
        info = METRICS.get(metric or "")
        label, unit = (info.label, info.unit) if info else (metric, "")
        unit = {"/min": "/min", "%": "%"}.get(unit, unit)
        return f"{title}: {label} {value:g} {unit}".rstrip()

    # -- sessions -----------------------------------------------------------------------------
    def phase_of(self, bed: str) -> Phase:
        s = self.sessions.get(bed)
        return "idle" if s is None else s.phase

    def _push_context(self, bed: str) -> None:
        b = self.bed_index[bed]
        c = self.compiled
        s = self.sessions.get(bed)
        phase = PHASES.index(self.phase_of(bed))
        baseline = np.full(c.n_cols, np.nan)
        risk = np.zeros(len(c.flags), dtype=bool)
        if s is not None:
            if s.t0 is not None:
                for name, v in s.baseline.items():
                    if name in c.col:
                        baseline[c.col[name]] = v
            for f in s.risk_flags:
                if f in c.flags:
                    risk[c.flags.index(f)] = True
        self.detector.set_context(b, phase, baseline, risk)

    def _session_step(self, bed: str, t: float) -> list[Event]:
        s = self.sessions[bed]
        b = self.bed_index[bed]
        X, col = self.detector.X, self.compiled.col
        out: list[Event] = []
        if s.phase == "pre_dose":
            s.add_sample(t, X[col["spo2"], b], X[col["hr"], b], X[col["resp_rate"], b])
        bp_rules = {
            a.rule for a in self.book.alerts(bed)
            if a.kind == "physiological" and a.rule in self._rules_by_id
            and self._rules_by_id[a.rule].episodic
        }
        urgent = bool(bp_rules & set(self.rules.bp_schedule.after_alarm_rules))
        events, overdue = s.schedule_step(t, self.rules, bool(bp_rules), urgent=urgent)
        out += events
        if overdue:
            cfg = self.rules.bp_schedule
            prio = cfg.overdue_priority_by_phase.get(s.phase, cfg.overdue_priority)
            out += self.book.condition_on(
                t, bed, "bp_overdue", rule="bp_overdue", kind="technical", priority=prio,
                metric="nibp_sys", value=None,
                text=f"Scheduled blood pressure overdue ({', '.join(overdue)})", latch=False,
            )
        else:
            out += self.book.condition_off(t, bed, "bp_overdue")
        out += self._news2_step(bed, t)
        open_alarms = [a.alert_id for a in self.book.alerts(bed) if a.kind != "advisory"]
        if any(self._alert_parameter(a.rule) == "spo2" and a.kind == "physiological"
               for a in self.book.alerts(bed)):
            self._last_spo2_alert[bed] = t  # quiet time counts from the alert's end
        symptoms = sorted(self._symptoms.get(bed, {}))
        out += s.discharge_step(
            t, self.rules, spo2=float(X[col["spo2"], b]), hr=float(X[col["hr"], b]),
            spo2_age=float(X[col["spo2_age"], b]), hr_age=float(X[col["hr_age"], b]),
            open_alarms=open_alarms, last_spo2_alert=self._last_spo2_alert.get(bed),
            symptoms=symptoms,
        )
        return out

    def _alert_parameter(self, rule_id: str) -> str | None:
        rule = self._rules_by_id.get(rule_id)
        if rule is None or rule.primary_signal is None:
            return None
        return PARAMETER_OF.get(base_signal(rule.primary_signal))

    def _news2_step(self, bed: str, t: float) -> list[Event]:
        """NEWS2 channels: score NEWS2 every ``every_s``; alerts only in the configured phases."""
        cfg = self.rules.news2
        s = self.sessions[bed]
        if not cfg.enabled or s.phase == "ended":
            self._news2.pop(bed, None)
            return [*self.book.close_channel(t, bed, "news2_total"),
                    *self.book.close_channel(t, bed, "news2_urgent"),
                    *self.book.close_channel(t, bed, "news2_parameter")]
        last = self._news2.get(bed)
        if last is not None and t - last[0] < cfg.every_s - 1e-9:
            return []
        b = self.bed_index[bed]
        X, col = self.detector.X, self.compiled.col
        nibp = self._last_nibp.get(bed)
        sbp = nibp[1] if nibp is not None and t - nibp[0] <= cfg.nibp_fresh_s else None
        result = news2_score(News2Inputs(
            resp_rate=float(X[col["resp_rate"], b]), spo2=float(X[col["spo2"], b]),
            sbp=sbp, pulse=float(X[col["hr"], b]),
        ))
        self._news2[bed] = (t, result)
        out: list[Event] = []
        if last is None or (last[1].total, last[1].missing) != (result.total, result.missing):
            out.append(SessionEvent(t, bed, "news2", s.phase, result.to_json()))
        on = s.phase in cfg.phases
        missing = f" (partial: no {', '.join(result.missing)})" if result.missing else ""
        if on and result.total >= cfg.total_at_or_above:
            out += self.book.condition_on(
                t, bed, "news2_total", rule="news2_total", kind=cfg.total_kind,
                priority=cfg.total_priority, metric=None, value=float(result.total),
                text=f"NEWS2 {result.total}{missing}", latch=False,
            )
        else:
            out += self.book.condition_off(t, bed, "news2_total", float(result.total))
        if on and cfg.urgent_at_or_above <= result.total < cfg.total_at_or_above:
            out += self.book.condition_on(
                t, bed, "news2_urgent", rule="news2_urgent", kind=cfg.urgent_kind,
                priority=cfg.urgent_priority, metric=None, value=float(result.total),
                text=f"NEWS2 {result.total}: urgent response threshold{missing}", latch=False,
            )
        else:
            out += self.book.condition_off(t, bed, "news2_urgent", float(result.total))
        threes = [k for k, v in result.parts.items() if v == 3]
        if on and threes:
            out += self.book.condition_on(
                t, bed, "news2_parameter", rule="news2_parameter", kind=cfg.single_kind,
                priority=cfg.single_priority, metric=None, value=float(result.total),
                text=f"NEWS2 scores 3 for {', '.join(threes)} (total {result.total}{missing})",
                latch=False,
            )
        else:
            out += self.book.condition_off(t, bed, "news2_parameter")
        return out

    def news2(self, bed: str) -> dict[str, Any] | None:
        """The bed's latest NEWS2 (``{"t", "total", "parts", …}``) or None."""
        last = self._news2.get(bed)
        return None if last is None else {"t": last[0], **last[1].to_json()}

    def _device_step(self, t: float) -> list[Event]:
        cfg = self.rules.devices
        out: list[Event] = []
        for (bed, device), (state, since) in sorted(self._devices.items()):
            channel = f"device_disconnected:{device}"
            if state in cfg.disconnected_states and t - since >= cfg.disconnected_delay_s:
                prio: Priority = cfg.priority_by_phase.get(self.phase_of(bed), cfg.priority)
                out += self.book.condition_on(
                    t, bed, channel, rule="device_disconnected", kind="technical",
                    priority=prio, metric=None, value=None,
                    text=f"Device {device} {state} for {t - since:.0f} s", latch=False,
                )
            elif state not in cfg.disconnected_states:
                out += self.book.condition_off(t, bed, channel)
        return out

    # -- commands -----------------------------------------------------------------------------
    def command(self, name: str, args: Mapping[str, Any], now: float) -> CommandResult:
        """Validate and run an operator command given by name and a plain mapping; never
        raises for bad input (an error response instead). A compatibility entry point: the
        daemon validates once and calls :meth:`execute` or the typed methods."""
        try:
            return self.execute(parse_command(name, args), now)
        except CommandError as e:
            return CommandResult({"status": "error", "error": str(e)})

    def execute(self, args: EngineArgs, now: float) -> CommandResult:
        """Run an already validated command; raises :class:`CommandError` when refused."""
        response, events = _HANDLERS[type(args)](self, args, now)
        return CommandResult({"status": "ok", **response}, events)

    @_on_known_bed
    def start_session(self, a: StartArgs, now: float) -> tuple[dict[str, Any], list[Event]]:
        if a.profile not in self.rules.profiles:
            raise CommandError(
                f"unknown profile {a.profile!r}; known: {', '.join(self.rules.profiles)}"
            )
        unknown = [f for f in a.risk_flags if f not in self.rules.risk_flags]
        if unknown:
            raise CommandError(
                f"unknown risk flag(s) {', '.join(unknown)}; known: "
                f"{', '.join(self.rules.risk_flags)}"
            )
        profile = self.rules.profiles[a.profile]
        if a.route is not None and a.route not in profile.routes:
            raise CommandError(f"route {a.route!r} not allowed for {a.profile}: {profile.routes}")
        old = self.sessions.get(a.bed)
        if old is not None and old.ended_at is None:
            raise CommandError(f"bed {a.bed} already has an active session {old.session_id}")
        events: list[Event] = []
        for ch in ("bp_overdue", "baseline_incomplete"):
            events += self.book.close_channel(now, a.bed, ch)
        s = Session(
            bed=a.bed, session_id=a.session_id or f"{a.bed}-{now:.0f}", profile=a.profile,
            started_at=now, route=a.route, risk_flags=sorted(set(a.risk_flags)),
            patient_id=a.patient_id,
        )
        s.start_schedule(now)
        self.sessions[a.bed] = s
        self._push_context(a.bed)
        events.append(SessionEvent(now, a.bed, "started", s.phase, {
            "session_id": s.session_id, "profile": s.profile, "route": s.route,
            "risk_flags": s.risk_flags, "by": a.by,
        }))
        events.append(SessionEvent(now, a.bed, "phase", s.phase, {"session_id": s.session_id}))
        return {"session": s.snapshot(now, self.rules)}, events

    def _active_session(self, bed: str) -> Session:
        s = self.sessions.get(bed)
        if s is None or s.ended_at is not None:
            raise CommandError(f"bed {bed} has no active session")
        return s

    @_on_known_bed
    def dose(self, a: DoseArgs, now: float) -> tuple[dict[str, Any], list[Event]]:
        s = self._active_session(a.bed)
        route = a.route or s.route
        profile = self.rules.profiles[s.profile]
        if route is not None and route not in profile.routes:
            raise CommandError(f"route {route!r} not allowed for {s.profile}: {profile.routes}")
        first = not s.doses
        s.doses.append(Dose(now, a.dose_mg, route))
        events: list[Event] = [SessionEvent(now, a.bed, "dose", s.phase, {
            "session_id": s.session_id, "dose_mg": a.dose_mg, "route": route,
            "dose_index": len(s.doses), "t0": s.t0,
            "observation_until": s.observation_until(self.rules), "by": a.by,
        })]
        if first:
            s.freeze_baseline(now, self.rules)
            s.dose_schedule(self.rules)
            events.append(SessionEvent(now, a.bed, "baseline", s.phase, {
                "session_id": s.session_id, "baseline": dict(s.baseline),
                "complete": s.baseline_complete, "missing": list(s.baseline_missing),
            }))
            if not s.baseline_complete:
                events += self.book.condition_on(
                    now, a.bed, "baseline_incomplete", rule="baseline_incomplete",
                    kind="technical", priority=self.rules.baseline.incomplete_priority,
                    metric=None, value=None,
                    text="Pre-dose baseline incomplete: " + "; ".join(s.baseline_missing),
                    latch=False,
                )
            events += s.update_phase(now, self.rules)
            self._push_context(a.bed)
        return {"session": s.snapshot(now, self.rules)}, events

    @_on_known_bed
    def end_session(self, a: EndArgs, now: float) -> tuple[dict[str, Any], list[Event]]:
        s = self._active_session(a.bed)
        s.ended_at = now
        events: list[Event] = [SessionEvent(now, a.bed, "ended", "ended", {
            "session_id": s.session_id, "discharge_ready": s.discharge_ready, "by": a.by,
        })]
        events += s.update_phase(now, self.rules)
        for ch in ("bp_overdue", "baseline_incomplete"):
            events += self.book.close_channel(now, a.bed, ch)
        self._push_context(a.bed)
        return {"session": s.snapshot(now, self.rules)}, events

    @_on_known_bed
    def ack(self, a: AlertArgs, now: float) -> tuple[dict[str, Any], list[Event]]:
        if a.alert_id is not None and self.book.find(a.bed, a.alert_id) is None:
            raise CommandError(f"no open alert {a.alert_id!r} on bed {a.bed}")
        events = self.book.acknowledge(now, a.bed, a.alert_id, a.by)
        acked = [e.alert_id for e in events if e.event == "acknowledged"]
        return {"acknowledged": acked}, list(events)

    @_on_known_bed
    def pause(self, a: PauseArgs, now: float) -> tuple[dict[str, Any], list[Event]]:
        if a.alert_id is not None and self.book.find(a.bed, a.alert_id) is None:
            raise CommandError(f"no open alert {a.alert_id!r} on bed {a.bed}")
        events = self.book.pause(now, a.bed, a.alert_id, a.seconds, by=a.by)
        return {"paused": [e.alert_id for e in events]}, list(events)

    @_on_known_bed
    def add_symptom(self, a: SymptomArgs, now: float) -> tuple[dict[str, Any], list[Event]]:
        cfg = self.rules.symptoms
        if not cfg.enabled:
            raise CommandError("symptom entry is switched off in the rule set ([symptoms])")
        if a.symptom not in cfg.symptoms:
            raise CommandError(f"unknown symptom {a.symptom!r}; known: {', '.join(cfg.symptoms)}")
        entries = self._symptoms.setdefault(a.bed, {})
        entries.setdefault(a.symptom, {"t": now, "note": a.note, "by": a.by})
        phase = self.phase_of(a.bed)
        events: list[Event] = [SessionEvent(now, a.bed, "symptom", phase, {
            "symptom": a.symptom, "note": a.note, "by": a.by,
        })]
        events += self._symptom_advisory(a.bed, now)
        raised = self._symptom_bp(a.bed, now)
        events += raised
        if self.book.get(a.bed, "bp_with_symptom") is None:
            # No qualifying reading: ask for one now (a remote-start cuff can take it).
            events.append(SessionEvent(now, a.bed, "bp_due", phase, {
                "item": "symptom", "rule": "bp_with_symptom", "due_at": now,
            }))
        alert = self.book.get(a.bed, "bp_with_symptom")
        return {
            "symptoms": self.symptoms(a.bed),
            "alert_id": None if alert is None else alert.alert_id,
            "bp_requested": alert is None,
        }, events

    @_on_known_bed
    def clear_symptom(self, a: SymptomClearArgs, now: float
                           ) -> tuple[dict[str, Any], list[Event]]:
        entries = self._symptoms.get(a.bed, {})
        if a.symptom is not None and a.symptom not in entries:
            raise CommandError(f"symptom {a.symptom!r} is not active on bed {a.bed}")
        cleared = sorted(entries) if a.all else [str(a.symptom)]
        for name in cleared:
            entries.pop(name, None)
        if not entries:
            self._symptoms.pop(a.bed, None)
        phase = self.phase_of(a.bed)
        events: list[Event] = [SessionEvent(now, a.bed, "symptom_cleared", phase, {
            "symptoms": cleared, "by": a.by,
        })]
        events += self._symptom_advisory(a.bed, now)
        if not entries:
            events += self.book.condition_off(now, a.bed, "bp_with_symptom")
        return {"cleared": cleared, "symptoms": self.symptoms(a.bed)}, events

    # -- snapshots ----------------------------------------------------------------------------
    def active_alarms(self, bed: str) -> dict[str, Any]:
        """The retained ``bed/<id>/alarms`` payload: open alerts, most urgent first."""
        alerts = self.book.alerts(bed)
        highest = max((PRIORITIES.index(a.priority) for a in alerts), default=None)
        return {
            "bed": bed,
            "t": self.last_tick,
            "phase": self.phase_of(bed),
            "count": len(alerts),
            "highest": None if highest is None else PRIORITIES[highest],
            "audible": any(a.audible for a in alerts),
            "alarms": [a.to_json() for a in alerts],
        }

    def session_state(self, bed: str) -> dict[str, Any]:
        """The retained ``bed/<id>/session`` payload."""
        s = self.sessions.get(bed)
        if s is None:
            return {"bed": bed, "active": False, "phase": "idle", "symptoms": self.symptoms(bed)}
        snap = s.snapshot(self.last_tick if self.last_tick is not None else 0.0, self.rules)
        snap["symptoms"] = self.symptoms(bed)
        snap["news2"] = self.news2(bed)
        return snap

    # -- persistence --------------------------------------------------------------------------
    def export_state(self, beds: Collection[str] | None = None) -> dict[str, Any]:
        """Sessions, unacknowledged latched alerts, symptoms and last NIBPs of ``beds``
        (default: every bed), as JSON-ready data. The daemon stores one document per bed, so
        that a change on one bed writes only that bed's state."""
        def mine(bed: str) -> bool:
            return beds is None or bed in beds

        return {
            "version": STATE_VERSION,
            "sessions": {bed: s.to_json() for bed, s in self.sessions.items() if mine(bed)},
            "alerts": self.book.export(beds),
            "symptoms": {bed: v for bed, v in self._symptoms.items() if mine(bed)},
            "last_nibp": {bed: v for bed, v in self._last_nibp.items() if mine(bed)},
        }

    def restore_state(self, data: Mapping[str, Any]) -> None:
        """Restore what :meth:`export_state` gave; documents of different beds add up."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported alarm state version {data.get('version')!r}")
        for bed, raw in data.get("sessions", {}).items():
            if bed in self.bed_index:
                self.sessions[bed] = Session.from_json(raw)
                self._push_context(bed)
        self.book.restore(data.get("alerts", {}))
        for bed, entries in data.get("symptoms", {}).items():
            if bed in self.bed_index and entries:
                self._symptoms[bed] = {str(k): dict(v) for k, v in entries.items()}
                self._advisory_due.add(bed)  # not latched, so not in the book: raise it anew
                latched = self.book.get(bed, "bp_with_symptom")
                if latched is not None:
                    latched.condition = True  # ends with the staff reset, not with new data
        for bed, (t, sys_, dia) in data.get("last_nibp", {}).items():
            if bed in self.bed_index:
                self._last_nibp[bed] = (float(t), float(sys_), float(dia))
        for bed in list(self.book.open):
            if bed not in self.bed_index:
                del self.book.open[bed]


# Argument model → the typed method that runs it (``execute``); names live in ENGINE_COMMANDS.
_HANDLERS: dict[type[Any], Callable[[AlarmEngine, Any, float], _Reply]] = {
    StartArgs: AlarmEngine.start_session,
    DoseArgs: AlarmEngine.dose,
    EndArgs: AlarmEngine.end_session,
    AlertArgs: AlarmEngine.ack,
    PauseArgs: AlarmEngine.pause,
    SymptomArgs: AlarmEngine.add_symptom,
    SymptomClearArgs: AlarmEngine.clear_symptom,
}

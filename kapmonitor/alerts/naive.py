"""The naive evaluator: the detector's semantics, one bed and one sample at a time in plain Python.

It exists to check the vectorized detector (a property test asserts both emit the same
transitions on random traces) and as the benchmark's baseline. It reads the same
:class:`~kapmonitor.alerts.compiled.CompiledRules` tables and shares the arithmetic helpers, so
the two agree bit for bit; everything else is written the obvious way (loops, lists, a window
recomputed from scratch for every slope).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from kapmonitor.alerts.compiled import (
    KIND_CODES,
    SLOPE_QUANTUM,
    CompiledRules,
    slope_from_sums,
    term_limit,
)
from kapmonitor.alerts.detector import HR_SOURCES, TickInput, Transition
from kapmonitor.alerts.rules import CONTINUOUS_METRICS, PRIORITIES

NAN = math.nan
M = len(CONTINUOUS_METRICS)

Row = tuple[list[float], list[float], list[bool], list[bool], list[float]]


def rows_from(inp: TickInput) -> list[Row]:
    """Per-bed Python rows (value, age, off, poor, nibp) of one tick."""
    return list(
        zip(
            inp.value.T.tolist(), inp.age.T.tolist(), inp.off.T.tolist(), inp.poor.T.tolist(),
            inp.nibp.T.tolist(), strict=True,
        )
    )


def _isnan(x: float) -> bool:
    return x != x


@dataclass
class _Bed:
    n_rules: int
    n_values: int
    phase: int = 0
    baseline: list[float] = field(default_factory=list)
    risk: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        r = self.n_rules
        self.active = [False] * r
        self.cond_prev = [False] * r
        self.clear_prev = [False] * r
        self.run = [0.0] * r
        self.crun = [0.0] * r
        self.area = [0.0] * r
        self.count = [0] * r
        self.gap = [0] * r
        self.last_qual_t = [NAN] * r
        self.prev_value = [NAN] * self.n_values
        self.last_spike_t = [-math.inf] * self.n_values
        self.windows: list[deque[float]] = []


class NaiveDetector:
    def __init__(self, compiled: CompiledRules, n_beds: int) -> None:
        self.c = compiled
        self.dt = float(compiled.rules.tick_s)
        self.scale = 60.0 / (self.dt * SLOPE_QUANTUM)
        nv = M + 1
        self.beds = [_Bed(compiled.n_rules, nv) for _ in range(n_beds)]
        for b in self.beds:
            b.baseline = [NAN] * compiled.n_cols
            b.risk = [False] * len(compiled.flags)
            b.windows = [deque([NAN] * s.window, maxlen=s.window) for s in compiled.slopes]

    def set_context(
        self, bed: int, phase: int, baseline: list[float] | None, risk: list[bool] | None
    ) -> None:
        b = self.beds[bed]
        b.phase = phase
        b.baseline = [NAN] * self.c.n_cols if baseline is None else list(baseline)
        b.risk = [False] * len(self.c.flags) if risk is None else list(risk)

    def step(self, t: float, rows: list[Row]) -> list[Transition]:
        out: list[Transition] = []
        for i, (bed, row) in enumerate(zip(self.beds, rows, strict=True)):
            out.extend(self._bed_step(i, bed, t, row))
        return out

    def step_nibp(self, t: float, nibp: list[list[float]]) -> list[Transition]:
        """The NIBP rules between ticks (:meth:`VectorDetector.step_nibp`): ``nibp`` per bed
        (sys, dia, mean), NaN where no new measurement."""
        c = self.c
        out: list[Transition] = []
        nb = c.col["nibp_sys"]
        for bi, (bed, values) in enumerate(zip(self.beds, nibp, strict=True)):
            if _isnan(values[0]) and _isnan(values[1]):
                continue
            x = [NAN] * c.n_cols
            x[nb : nb + 3] = values
            tc = self._terms(bed, x)
            for r in range(c.n_rules):
                if c.continuous[r] or c.concurrent[r]:
                    continue
                enabled = bool(c.enabled_by_phase[r, bed.phase])
                cond = enabled and _matches(tc, c.any_terms[r], c.all_terms[r])
                clear_ok = _matches(tc, c.clear_any_terms[r], c.clear_all_terms[r])
                event = self._nibp_event(bed, r, t, cond, bed.active[r], clear_ok)
                if event is None:
                    continue
                if event in ("on", "off"):
                    bed.active[r] = event == "on"
                out.append(self._transition(bi, r, t, event, x, tc))
        return out

    # -- one bed ------------------------------------------------------------------------------
    def _signals(self, bed: _Bed, row: Row) -> list[float]:
        value, age, off, poor, nibp = row
        e, p = HR_SOURCES
        hr = value[e] if not _isnan(value[e]) else value[p]
        x: list[float] = list(value) + [hr]
        for i in range(M):
            x += [age[i], 1.0 if off[i] else 0.0, 1.0 if poor[i] else 0.0]
        if _isnan(age[e]):
            hr_age = age[p]
        elif _isnan(age[p]):
            hr_age = age[e]
        else:
            hr_age = min(age[e], age[p])
        hr_off = _isnan(hr) and (off[e] or off[p])
        hr_poor = poor[e] if not _isnan(value[e]) else poor[p]
        x += [hr_age, 1.0 if hr_off else 0.0, 1.0 if hr_poor else 0.0]
        x += list(nibp)
        for s, window in zip(self.c.slopes, bed.windows, strict=True):
            v = x[s.value_col]
            window.append(NAN if _isnan(v) else float(round(v * SLOPE_QUANTUM)))
            n = sj = sy = sjj = sjy = 0.0
            for j, y in enumerate(window):
                if _isnan(y):
                    continue
                n += 1
                sj += j
                sy += y
                sjj += j * j
                sjy += j * y
            slope = slope_from_sums(n, sj, sy, sjj, sjy, self.scale)
            x.append(slope if n >= s.min_n else NAN)
        return x

    def _limit(self, bed: _Bed, ti: int) -> float:
        c = self.c
        tight = 0.0
        for fi, present in enumerate(bed.risk):
            if present:
                tight = max(tight, float(c.term_tighten[fi, ti]))
        return term_limit(
            int(c.term_ref[ti]),
            float(c.term_value[ti, bed.phase]),
            bed.baseline[int(c.term_baseline_col[ti])],
            tight,
            float(c.term_sign[ti]),
        )

    def _bed_step(self, bi: int, bed: _Bed, t: float, row: Row) -> list[Transition]:
        c = self.c
        x = self._signals(bed, row)
        art = self._artefact(bed, x, t)
        limits = [self._limit(bed, ti) for ti in range(c.n_terms)]
        tc = self._terms(bed, x, limits)
        new_nibp = not _isnan(row[4][0]) or not _isnan(row[4][1])
        events: dict[int, str] = {}
        for r in range(c.n_rules):
            if not c.concurrent[r]:
                event = self._rule_step(bed, r, t, x, tc, limits, art, new_nibp)
                if event:
                    events[r] = event
        for r in range(c.n_rules):
            if c.concurrent[r]:
                ev = self._concurrent(bed, r)
                if ev:
                    events[r] = ev
        return [self._transition(bi, r, t, events[r], x, tc) for r in sorted(events)]

    def _terms(self, bed: _Bed, x: list[float], limits: list[float] | None = None
               ) -> list[bool]:
        """Whether each term holds for the signals ``x``."""
        c = self.c
        if limits is None:
            limits = [self._limit(bed, ti) for ti in range(c.n_terms)]
        tc = []
        for ti in range(c.n_terms):
            sign = float(c.term_sign[ti])
            a = x[int(c.term_col[ti])] * sign
            b = limits[ti] * sign
            tc.append(a > b if c.term_strict[ti] else a >= b)
        return tc

    def _transition(self, bi: int, r: int, t: float, ev: str, x: list[float], tc: list[bool]
                    ) -> Transition:
        c = self.c
        colx = int(c.rule_value_col[r])
        if ev != "off":
            for ti in c.any_terms[r] or c.all_terms[r]:
                if tc[ti]:
                    colx = int(c.term_value_col[ti])
                    break
        val = None if colx < 0 or _isnan(x[colx]) else x[colx]
        return Transition(t, bi, r, ev, val, colx)

    def _artefact(self, bed: _Bed, x: list[float], t: float) -> list[bool]:
        """Artefact suspicion per value column: poor signal, or a spike not long ago."""
        c = self.c
        nv = M + 1
        for col, jump in c.spike_jump.items():
            if abs(x[col] - bed.prev_value[col]) >= jump:
                bed.last_spike_t[col] = t
        bed.prev_value = [p if _isnan(v) else v for v, p in zip(x[:nv], bed.prev_value,
                                                                strict=True)]
        return [
            x[nv + 3 * i + 2] > 0 or (t - bed.last_spike_t[i]) <= c.artefact_hold
            for i in range(nv)
        ]

    def _rule_step(
        self, bed: _Bed, r: int, t: float, x: list[float], tc: list[bool],
        limits: list[float], art: list[bool], new_nibp: bool,
    ) -> str | None:
        """One (non-concurrent) rule on one bed for one tick: its transition, if any."""
        c = self.c
        enabled = bool(c.enabled_by_phase[r, bed.phase])
        cond = enabled and _matches(tc, c.any_terms[r], c.all_terms[r])
        clear_ok = _matches(tc, c.clear_any_terms[r], c.clear_all_terms[r])
        active = bed.active[r]
        # a short gap in the rule's signal that decides nothing holds the state
        gc = int(c.gap_col[r])
        miss = gc >= 0 and _isnan(x[gc])
        bed.gap[r] = bed.gap[r] + 1 if miss else 0
        held = miss and bed.gap[r] <= c.gap_ticks[r] and not cond and not clear_ok and enabled
        clearing = active and not cond and clear_ok
        if not held:  # persistence is computed for every rule, as the vectorized code does
            self._persist(bed, r, x, limits, cond, clearing)
        event = None
        if c.continuous[r]:
            event = self._continuous_event(bed, r, art, cond, active, clearing)
        elif new_nibp:  # NIBP rule with a new measurement
            event = self._nibp_event(bed, r, t, cond, active, clear_ok)
        if not enabled:
            bed.count[r] = 0
            if active:
                event = "off"
        if event == "on":
            bed.active[r] = True
        elif event == "off":
            bed.active[r] = False
        if not held:
            bed.cond_prev[r] = cond
            bed.clear_prev[r] = clearing
        return event

    def _persist(self, bed: _Bed, r: int, x: list[float], limits: list[float], cond: bool,
                 clearing: bool) -> None:
        """Advance (or reset) the condition's run time and depth × duration area, and the
        clear run time."""
        c = self.c
        bed.run[r] = (bed.run[r] + self.dt if bed.cond_prev[r] else 0.0) if cond else 0.0
        at = int(c.area_term[r])
        if at < 0:
            bed.area[r] = 0.0
        else:
            depth = abs(x[int(c.term_col[at])] - limits[at])
            bed.area[r] = bed.area[r] + depth * self.dt if cond else 0.0
        bed.crun[r] = (bed.crun[r] + self.dt if bed.clear_prev[r] else 0.0) if clearing else 0.0

    def _continuous_event(self, bed: _Bed, r: int, art: list[bool], cond: bool, active: bool,
                          clearing: bool) -> str | None:
        c = self.c
        factor = 1.0
        ac = int(c.art_col[r])
        if c.gated[r] and ac >= 0 and art[ac]:
            factor = c.delay_factor
        declared = (
            bed.run[r] >= c.delay[r] * factor or bed.area[r] >= c.area_threshold[r] * factor
        )
        if cond and not active and declared:
            return "on"
        if clearing and bed.crun[r] >= c.clear_delay[r]:
            return "off"
        return None

    def _nibp_event(self, bed: _Bed, r: int, t: float, cond: bool, active: bool,
                    clear_ok: bool) -> str | None:
        c = self.c
        if not cond:
            bed.count[r] = 0
            return "off" if active and clear_ok else None
        within = (t - bed.last_qual_t[r]) <= c.confirm_window[r]
        bed.count[r] = bed.count[r] + 1 if (within and bed.count[r] > 0) else 1
        bed.last_qual_t[r] = t
        if not active and bed.count[r] >= c.confirm_count[r]:
            return "on"
        if active and bed.count[r] == c.escalate_at[r]:
            return "escalate"
        return None

    def _concurrent(self, bed: _Bed, r: int) -> str | None:
        c = self.c
        spec = c.active_rules[r].concurrent
        assert spec is not None
        level = PRIORITIES.index(spec.of_priority)
        kind = KIND_CODES[spec.of_kind]
        params = set()
        for o in range(c.n_rules):
            if (
                bed.active[o]
                and not c.concurrent[o]
                and c.priority_by_phase[o, bed.phase] == level
                and c.kind[o] == kind
                and c.rule_param[o] >= 0
            ):
                params.add(int(c.rule_param[o]))
        enabled = bool(c.enabled_by_phase[r, bed.phase])
        cond = len(params) >= spec.min_parameters and enabled
        active = bed.active[r]
        bed.run[r] = (bed.run[r] + self.dt if bed.cond_prev[r] else 0.0) if cond else 0.0
        clearing = active and not cond
        bed.crun[r] = (bed.crun[r] + self.dt if bed.clear_prev[r] else 0.0) if clearing else 0.0
        bed.cond_prev[r] = cond
        bed.clear_prev[r] = clearing
        if cond and not active and bed.run[r] >= c.delay[r]:
            bed.active[r] = True
            return "on"
        if clearing and (bed.crun[r] >= c.clear_delay[r] or not enabled):
            bed.active[r] = False
            return "off"
        return None


def _matches(tc: list[bool], any_terms: list[int], all_terms: list[int]) -> bool:
    """Any of ``any_terms`` (or none given) and all of ``all_terms`` hold."""
    return (not any_terms or any(tc[i] for i in any_terms)) and all(tc[i] for i in all_terms)

"""Vectorized detector: every bed × every rule evaluated with numpy on each tick.

Input per tick (:class:`TickInput`): the sampled continuous metrics of all beds (NaN = no value),
their data ages, sensor-off and poor-signal masks, and the NIBP measurements that arrived since
the previous tick (NaN where none). Arrays are feature-major: one row per metric, one column
per bed, so gathering a signal for all beds is a contiguous row copy. Context per bed
(:meth:`VectorDetector.set_context`): session phase, pre-dose baselines and risk flags. Output:
:class:`Transition` s — a rule's condition was declared (``on``), ended (``off``) or reached its
NIBP escalation count (``escalate``).

The detector knows nothing about acknowledgement, latching or priorities over time: that is the
alarm lifecycle (``lifecycle.py``). It is deterministic and pure; ``naive.py`` implements the
same semantics one bed and one sample at a time, and tests assert both agree.

State per (rule, bed): how long the condition has held (persistence), the depth × duration
area, how long the clear has held (hysteresis), NIBP confirmation counts, and the length of the
current run of ticks without a value of the rule's signal. A tick on which that signal is
missing and neither the condition nor the clear holds is *held* while the run is at most the
rule's ``gap_ticks``: persistence, area, hysteresis and the previous-tick state stay as they
were (neither advance nor reset); a longer gap resets them as a false condition does. Missing
data alone therefore never raises or clears. State per (signal, bed): the last sample with a
value and the last spike time (artefact gating), and per trend signal a ring buffer with exact
running sums (windowed least-squares slope, values quantised to 0.1 so every
sum is an exact integer and the result does not depend on summation order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kapmonitor.alerts.compiled import B8, F64, I64, KIND_CODES, SLOPE_QUANTUM, CompiledRules
from kapmonitor.alerts.rules import CONTINUOUS_METRICS, PRIORITIES

M = len(CONTINUOUS_METRICS)
NV = M + 1  # value columns: the metrics plus the derived "hr"
HR_SOURCES = (CONTINUOUS_METRICS.index("heart_rate"), CONTINUOUS_METRICS.index("pulse_rate"))


@dataclass(frozen=True)
class TickInput:
    """One tick of sampled data for all beds. Shapes: (M, B) with M = CONTINUOUS_METRICS."""

    t: float
    value: F64  # NaN where no fresh value
    age: F64  # seconds since the last reading of the metric; NaN if never seen
    off: B8  # latest fresh reading says "no value" / sensor off
    poor: B8  # latest fresh reading carries a poor-signal flag
    nibp: F64  # (3, B) sys/dia/mean of a new validated NIBP measurement; NaN where none


@dataclass(frozen=True, order=True)
class Transition:
    """A change of one rule's condition on one bed at tick time ``t``."""

    t: float
    bed: int
    rule: int
    event: str  # "on" | "off" | "escalate"
    value: float | None  # value of the matched signal (None when missing)
    column: int  # signal column ``value`` comes from (-1: none)


def _group_count(cs: I64, bounds: tuple[I64, I64]) -> I64:
    start, end = bounds
    return cs[end] - cs[start]


class VectorDetector:
    def __init__(self, compiled: CompiledRules, n_beds: int) -> None:
        c = compiled
        self.c = c
        self.B = n_beds
        b, r = n_beds, c.n_rules
        self.dt = float(c.rules.tick_s)
        self.k = 0
        self.phase = np.zeros(b, dtype=np.int64)
        self.baseline = np.full((c.n_cols, b), np.nan)
        self.risk = np.zeros((len(c.flags), b), dtype=bool)
        self.active = np.zeros((r, b), dtype=bool)
        self.cond_prev = np.zeros((r, b), dtype=bool)
        self.clear_prev = np.zeros((r, b), dtype=bool)
        self.run = np.zeros((r, b))
        self.crun = np.zeros((r, b))
        self.area = np.zeros((r, b))
        self.count = np.zeros((r, b), dtype=np.int64)
        self.gap = np.zeros((r, b), dtype=np.int64)
        self.last_qual_t = np.full((r, b), np.nan)
        self.prev_value = np.full((NV, b), np.nan)
        self.last_spike_t = np.full((NV, b), -np.inf)
        self.spike_cols = np.array(sorted(c.spike_jump), dtype=np.int64)
        self.spike_jump = np.array([c.spike_jump[i] for i in self.spike_cols])[:, None]
        self.rings = [np.full((s.window, b), np.nan) for s in c.slopes]
        self.sums = [np.zeros((5, b)) for _ in c.slopes]  # n, sj, sy, sjj, sjy
        self.slope_scale = 60.0 / (self.dt * SLOPE_QUANTUM)
        self.X = np.full((c.n_cols, b), np.nan)
        self.conc_idx = np.flatnonzero(c.concurrent)
        self.param_groups = [g for g in c.param_rules if len(g)]
        self.area_rules = np.flatnonzero(c.area_term >= 0)
        self.episodic_rules = np.flatnonzero(c.episodic)
        # per-rule constants as column vectors so they broadcast over beds
        self.delay = c.delay[:, None]
        self.clear_delay = c.clear_delay[:, None]
        self.area_threshold = c.area_threshold[:, None]
        self.gate_col = np.maximum(c.art_col, 0)
        self.gated = (c.gated & (c.art_col >= 0))[:, None]
        self.continuous = c.continuous[:, None]
        self.gap_rule = (c.gap_col >= 0)[:, None]
        self.gap_col = np.maximum(c.gap_col, 0)
        self.gap_ticks = c.gap_ticks[:, None]
        self.not_concurrent = ~c.concurrent[:, None]
        self.strict = c.term_strict[:, None]
        self.sign = c.term_sign[:, None]
        self.no_any = (c.n_any == 0)[:, None]
        self.no_clear_any = (c.n_clear_any == 0)[:, None]
        self.n_all = c.n_all[:, None]
        self.n_clear_all = c.n_clear_all[:, None]
        self._limits_dirty = True
        self._limits()

    # -- context ------------------------------------------------------------------------------
    def set_context(self, bed: int, phase: int, baseline: F64 | None, risk: B8 | None) -> None:
        """Phase index (rules.PHASES), baseline per column (NaN = none), risk flag mask."""
        self.phase[bed] = phase
        self.baseline[:, bed] = np.nan if baseline is None else baseline
        self.risk[:, bed] = False if risk is None else risk
        self._limits_dirty = True

    def _limits(self) -> None:
        if not self._limits_dirty:
            return
        c = self.c
        value = c.term_value[:, self.phase]  # (NT, B)
        bl = self.baseline[c.term_baseline_col]
        ref = c.term_ref[:, None]
        lim = np.where(ref == 0, value, np.where(ref == 1, bl + value, bl * value))
        if len(c.flags):
            tight = (self.risk[:, None, :] * c.term_tighten[:, :, None]).max(axis=0)
        else:
            tight = np.zeros_like(lim)
        self.lim = lim - self.sign * tight
        self.lim_signed = self.lim * self.sign
        self.enabled = c.enabled_by_phase[:, self.phase]  # (R, B)
        self.prio = c.priority_by_phase[:, self.phase]
        self._limits_dirty = False

    # -- signals ------------------------------------------------------------------------------
    def _build_signals(self, inp: TickInput) -> F64:
        c, X = self.c, self.X
        v = inp.value
        e, p = HR_SOURCES
        ecg = ~np.isnan(v[e])
        hr = np.where(ecg, v[e], v[p])
        X[:M] = v
        X[M] = hr
        h = X[NV : NV + 3 * NV].reshape(NV, 3, self.B)  # view: (signal, age/off/poor, bed)
        h[:M, 0] = inp.age
        h[:M, 1] = inp.off
        h[:M, 2] = inp.poor
        h[M, 0] = np.fmin(inp.age[e], inp.age[p])
        h[M, 1] = np.isnan(hr) & (inp.off[e] | inp.off[p])
        h[M, 2] = np.where(ecg, inp.poor[e], inp.poor[p])
        nb = c.col["nibp_sys"]
        X[nb : nb + 3] = inp.nibp
        for s, ring, sums in zip(c.slopes, self.rings, self.sums, strict=True):
            X[s.col] = self._slope_step(X[s.value_col], s.window, s.min_n, ring, sums)
        return X

    def _slope_step(self, x: F64, w: int, min_n: int, ring: F64, sums: F64) -> F64:
        """Push this tick's sample into the ring; update exact window sums; return the slope."""
        n, sj, sy, sjj, sjy = sums
        p = self.k % w
        leave = ring[p]
        m_leave = ~np.isnan(leave)
        n -= m_leave
        sy -= np.where(m_leave, leave, 0.0)
        # every remaining sample moves one position towards the start of the window
        sjj += n - 2.0 * sj
        sjy -= sy
        sj -= n
        y = np.rint(x * SLOPE_QUANTUM)
        m_new = ~np.isnan(y)
        y0 = np.where(m_new, y, 0.0)
        last = float(w - 1)
        n += m_new
        sy += y0
        sj += last * m_new
        sjj += (last * last) * m_new
        sjy += last * y0
        ring[p] = y
        den = n * sjj - sj * sj
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = ((n * sjy - sj * sy) / den) * self.slope_scale
        return np.where((n >= min_n) & (den > 0), slope, np.nan)

    def _artefact(self, X: F64, t: float) -> B8:
        """(value columns, B) artefact-suspect: poor flag now, or a spike within the hold."""
        vals = X[:NV]
        if len(self.spike_cols):
            cols = self.spike_cols
            spike = np.abs(vals[cols] - self.prev_value[cols]) >= self.spike_jump  # NaN → False
            self.last_spike_t[cols] = np.where(spike, t, self.last_spike_t[cols])
        # a missing sample keeps the last value, so a jump across a gap is still a spike
        self.prev_value = np.where(np.isnan(vals), self.prev_value, vals)
        poor = X[NV + 2 : NV + 3 * NV : 3] > 0
        return poor | ((t - self.last_spike_t) <= self.c.artefact_hold)

    # -- the tick -----------------------------------------------------------------------------
    def _conditions(self, X: F64) -> tuple[B8, B8, B8]:
        """Per term whether it holds (T, B); per rule its condition and its clear (R, B)."""
        c = self.c
        xt = X[c.term_col] * self.sign
        tc = np.where(self.strict, xt > self.lim_signed, xt >= self.lim_signed)
        cs = np.zeros((c.n_terms + 1, self.B), dtype=np.int64)
        np.cumsum(tc, axis=0, out=cs[1:])
        any_ok = (_group_count(cs, c.any_bounds) > 0) | self.no_any
        all_ok = _group_count(cs, c.all_bounds) == self.n_all
        cond = any_ok & all_ok & self.enabled & self.not_concurrent
        clear_ok = (_group_count(cs, c.clear_all_bounds) == self.n_clear_all) & (
            (_group_count(cs, c.clear_any_bounds) > 0) | self.no_clear_any
        )
        return tc, cond, clear_ok

    def step(self, inp: TickInput) -> list[Transition]:
        c, dt, t = self.c, self.dt, inp.t
        self._limits()
        conc = self.conc_idx
        saved = (self.cond_prev[conc], self.clear_prev[conc], self.run[conc], self.crun[conc])
        X = self._build_signals(inp)
        art = self._artefact(X, t)
        tc, cond, clear_ok = self._conditions(X)
        active = self.active

        # short gaps: a tick without the rule's signal that decides nothing holds the state
        miss = self.gap_rule & np.isnan(X[self.gap_col])
        self.gap = np.where(miss, self.gap + 1, 0)
        held = miss & (self.gap <= self.gap_ticks) & ~cond & ~clear_ok & self.enabled

        # continuous rules: persistence, depth × duration, hysteresis
        factor = np.where(self.gated & art[self.gate_col], c.delay_factor, 1.0)
        run = np.where(cond, np.where(self.cond_prev, self.run + dt, 0.0), 0.0)
        self.run = np.where(held, self.run, run)
        declared = self.run >= self.delay * factor
        ar = self.area_rules
        if len(ar):
            at = c.area_term[ar]
            depth = np.abs(X[c.term_col[at]] - self.lim[at])
            area = np.where(cond[ar], self.area[ar] + depth * dt, 0.0)
            self.area[ar] = np.where(held[ar], self.area[ar], area)
            declared[ar] |= self.area[ar] >= self.area_threshold[ar] * factor[ar]
        on = self.continuous & cond & ~active & declared
        clearing = active & ~cond & clear_ok
        crun = np.where(clearing, np.where(self.clear_prev, self.crun + dt, 0.0), 0.0)
        self.crun = np.where(held, self.crun, crun)
        off = self.continuous & clearing & (self.crun >= self.clear_delay)
        esc = np.zeros_like(on)

        # NIBP rules: evaluated only where a new measurement arrived
        if len(self.episodic_rules):
            new = ~np.isnan(inp.nibp[0]) | ~np.isnan(inp.nibp[1])
            if new.any():
                self._nibp_rules(t, new, cond, clear_ok, on, off, esc)

        # leaving the rule's phases ends its condition
        off |= active & ~self.enabled & self.not_concurrent
        self.count = np.where(self.enabled, self.count, 0)
        self.active = (active | on) & ~off
        self.cond_prev = np.where(held, self.cond_prev, cond)
        self.clear_prev = np.where(held, self.clear_prev, clearing)

        # multi-parameter escalation: counts the conditions declared above
        if len(conc):
            self._concurrent_step(on, off, saved)

        self.k += 1
        return self._transitions(t, X, tc, on, off, esc)

    def step_nibp(self, t: float, nibp: F64) -> list[Transition]:
        """Evaluate the NIBP rules now, between ticks, on the beds with a new measurement in
        ``nibp`` ((3, B) sys/dia/mean, NaN where none): the NIBP part of :meth:`step` at time
        ``t`` (the measurement's arrival), so an at-once NIBP rule is declared when the
        measurement arrives instead of at the next tick. Nothing else moves: the continuous
        rules' state, the slope windows and the tick counter are untouched, and the next
        :meth:`step` must not be given the same measurement again. Leaving a rule's phases
        still ends its condition at the next tick, as in :meth:`step`."""
        er = self.episodic_rules
        new = ~np.isnan(nibp[0]) | ~np.isnan(nibp[1])
        if not len(er) or not new.any():
            return []
        c = self.c
        self._limits()
        X = np.full_like(self.X, np.nan)  # only the NIBP columns: NIBP rules read nothing else
        nb = c.col["nibp_sys"]
        X[nb : nb + 3] = nibp
        tc, cond, clear_ok = self._conditions(X)
        on = np.zeros_like(self.active)
        off = np.zeros_like(on)
        esc = np.zeros_like(on)
        self._nibp_rules(t, new, cond, clear_ok, on, off, esc)
        self.active = (self.active | on) & ~off
        return self._transitions(t, X, tc, on, off, esc)

    def _nibp_rules(self, t: float, new: B8, cond: B8, clear_ok: B8, on: B8, off: B8,
                    esc: B8) -> None:
        """NIBP rules: counted, declared, escalated or ended where a new measurement arrived
        (``new``); writes into ``on``/``off``/``esc``; updates the confirmation counts."""
        c, er, active = self.c, self.episodic_rules, self.active
        qual = cond[er] & new
        cnt = self.count[er]
        within = (t - self.last_qual_t[er]) <= c.confirm_window[er, None]
        counted = np.where(qual, np.where(within & (cnt > 0), cnt + 1, 1), 0)
        cnt = np.where(new, counted, cnt)
        self.count[er] = cnt
        self.last_qual_t[er] = np.where(qual, t, self.last_qual_t[er])
        act = active[er]
        on[er] |= qual & ~act & (cnt >= c.confirm_count[er, None])
        esc[er] |= qual & act & (cnt == c.escalate_at[er, None])
        off[er] |= new & act & ~cond[er] & clear_ok[er]

    def pending(self) -> B8:
        """(R, B): the rule's condition is declared, or held last tick (pending or in a gap)."""
        return self.active | self.cond_prev

    def _concurrent_step(self, on: B8, off: B8, saved: tuple[B8, B8, F64, F64]) -> None:
        c, dt = self.c, self.dt
        for j, ri in enumerate(self.conc_idx):
            spec = c.active_rules[ri].concurrent
            assert spec is not None
            counted = (
                self.active
                & ~c.concurrent[:, None]
                & (self.prio == PRIORITIES.index(spec.of_priority))
                & (c.kind == KIND_CODES[spec.of_kind])[:, None]
            )
            n_params = np.zeros(self.B, dtype=np.int64)
            if counted.any():
                for rules in self.param_groups:
                    n_params += counted[rules].any(axis=0)
            enabled = self.enabled[ri]
            cond = (n_params >= spec.min_parameters) & enabled
            was, was_clearing, run, crun = (a[j] for a in saved)
            self.run[ri] = np.where(cond, np.where(was, run + dt, 0.0), 0.0)
            act = self.active[ri]
            new_on = cond & ~act & (self.run[ri] >= c.delay[ri])
            clearing = act & ~cond
            self.crun[ri] = np.where(clearing, np.where(was_clearing, crun + dt, 0.0), 0.0)
            new_off = clearing & ((self.crun[ri] >= c.clear_delay[ri]) | ~enabled)
            on[ri] = new_on
            off[ri] = new_off
            self.active[ri] = (act | new_on) & ~new_off
            self.cond_prev[ri] = cond
            self.clear_prev[ri] = clearing

    def _transitions(
        self, t: float, X: F64, tc: B8, on: B8, off: B8, esc: B8
    ) -> list[Transition]:
        any_event = on | off | esc
        if not any_event.any():
            return []
        c = self.c
        rules, beds = np.nonzero(any_event)
        order = np.lexsort((rules, beds))  # bed-major, like the naive evaluator
        out: list[Transition] = []
        for i in order:
            r, b = int(rules[i]), int(beds[i])
            event = "on" if on[r, b] else ("off" if off[r, b] else "escalate")
            colx = int(c.rule_value_col[r])
            if event != "off":
                for ti in c.any_terms[r] or c.all_terms[r]:
                    if tc[ti, b]:
                        colx = int(c.term_value_col[ti])
                        break
            val = None if colx < 0 else float(X[colx, b])
            if val is not None and val != val:
                val = None
            out.append(Transition(t, b, r, event, val, colx))
        return out

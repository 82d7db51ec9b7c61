"""Vectorized detector: every bed × every rule evaluated with numpy on each tick.

Input per tick (:class:`TickInput`): the sampled continuous metrics of all beds (NaN = no value),
their data ages, sensor-off and poor-signal masks, and the NIBP measurements that arrived since
the previous tick (NaN where none). Context per bed (:meth:`VectorDetector.set_context`): session
phase, pre-dose baselines and risk flags. Output: :class:`Transition` s — a rule's condition was
declared (``on``), ended (``off``) or reached its NIBP escalation count (``escalate``).

The detector knows nothing about acknowledgement, latching or priorities over time: that is the
alarm lifecycle (``lifecycle.py``). It is deterministic and pure; ``naive.py`` implements the
same semantics one bed and one sample at a time, and tests assert both agree.

State per (bed, rule): how long the condition has held (persistence), the depth × duration
area, how long the clear has held (hysteresis), NIBP confirmation counts. State per (bed,
signal): the previous sample and the last spike tick (artefact gating), and one ring buffer plus
exact running sums per trend signal (windowed least-squares slope).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kapmonitor.alerts.compiled import B8, F64, KIND_CODES, SLOPE_QUANTUM, CompiledRules
from kapmonitor.alerts.rules import CONTINUOUS_METRICS, PHASES, PRIORITIES

M = len(CONTINUOUS_METRICS)
HR_SOURCES = (CONTINUOUS_METRICS.index("heart_rate"), CONTINUOUS_METRICS.index("pulse_rate"))


@dataclass(frozen=True)
class TickInput:
    """One tick of sampled data for all beds (rows = beds, columns = CONTINUOUS_METRICS)."""

    t: float
    value: F64  # (B, M) NaN where no fresh value
    age: F64  # (B, M) seconds since last reading; NaN if never seen
    off: B8  # (B, M) latest fresh reading says "no value"/sensor off
    poor: B8  # (B, M) latest fresh reading carries a poor-signal flag
    nibp: F64  # (B, 3) sys/dia/mean of a new validated NIBP; NaN where none


@dataclass(frozen=True, order=True)
class Transition:
    """A change of one rule's condition on one bed at tick time ``t``."""

    t: float
    bed: int
    rule: int
    event: str  # "on" | "off" | "escalate"
    value: float | None  # value of the matched signal (None when missing)
    column: int  # signal column ``value`` comes from (-1: none)


class VectorDetector:
    def __init__(self, compiled: CompiledRules, n_beds: int) -> None:
        c = compiled
        self.c = c
        self.B = n_beds
        b, r = n_beds, c.n_rules
        self.dt = float(c.rules.tick_s)
        self.k = 0
        self.phase = np.zeros(b, dtype=np.int64)
        self.baseline = np.full((b, c.n_cols), np.nan)
        self.risk = np.zeros((b, len(c.flags)), dtype=bool)
        self.active = np.zeros((b, r), dtype=bool)
        self.cond_prev = np.zeros((b, r), dtype=bool)
        self.clear_prev = np.zeros((b, r), dtype=bool)
        self.run = np.zeros((b, r))
        self.crun = np.zeros((b, r))
        self.area = np.zeros((b, r))
        self.count = np.zeros((b, r), dtype=np.int64)
        self.last_qual_t = np.full((b, r), np.nan)
        nv = len(CONTINUOUS_METRICS) + 1
        self.prev_value = np.full((b, nv), np.nan)
        self.last_spike_t = np.full((b, nv), -np.inf)
        self.spike_cols = np.array(sorted(c.spike_jump), dtype=np.int64)
        self.spike_jump = np.array([c.spike_jump[i] for i in self.spike_cols])
        self.rings = [np.full((b, s.window), np.nan) for s in c.slopes]
        self.sums = [np.zeros((5, b)) for _ in c.slopes]  # n, sj, sy, sjj, sjy
        self.slope_scale = 60.0 / (self.dt * SLOPE_QUANTUM)
        self._limits_dirty = True
        self.X = np.full((b, c.n_cols), np.nan)
        self.term_cond = np.zeros((b, c.n_terms), dtype=bool)
        self.conc_idx = np.flatnonzero(c.concurrent)

    # -- context ------------------------------------------------------------------------------
    def set_context(self, bed: int, phase: int, baseline: F64 | None, risk: B8 | None) -> None:
        """Phase index (PHASES), baseline row (columns; NaN = none) and risk-flag row."""
        self.phase[bed] = phase
        self.baseline[bed] = np.nan if baseline is None else baseline
        self.risk[bed] = False if risk is None else risk
        self._limits_dirty = True

    def _limits(self) -> F64:
        if self._limits_dirty:
            c = self.c
            value = c.term_value[:, self.phase].T  # (B, NT)
            bl = self.baseline[:, c.term_baseline_col]
            lim = np.where(c.term_ref == 0, value, np.where(c.term_ref == 1, bl + value, bl * value))
            if len(c.flags):
                tight = (self.risk[:, :, None] * c.term_tighten[None, :, :]).max(axis=1)
            else:
                tight = np.zeros_like(lim)
            lim = lim - c.term_sign * tight
            self.lim = lim
            self.lim_signed = lim * c.term_sign
            self.enabled = c.enabled_by_phase[:, self.phase].T  # (B, R)
            self.prio = c.priority_by_phase[:, self.phase].T
            self._limits_dirty = False
        return self.lim

    # -- signals ------------------------------------------------------------------------------
    def _build_signals(self, inp: TickInput) -> F64:
        c, X = self.c, self.X
        v = inp.value
        hr_src_is_ecg = ~np.isnan(v[:, HR_SOURCES[0]])
        hr = np.where(hr_src_is_ecg, v[:, HR_SOURCES[0]], v[:, HR_SOURCES[1]])
        X[:, :M] = v
        X[:, M] = hr
        base = M + 1
        for i in range(M):
            X[:, base + 3 * i] = inp.age[:, i]
            X[:, base + 3 * i + 1] = inp.off[:, i]
            X[:, base + 3 * i + 2] = inp.poor[:, i]
        e, p = HR_SOURCES
        X[:, base + 3 * M] = np.fmin(inp.age[:, e], inp.age[:, p])
        X[:, base + 3 * M + 1] = np.isnan(hr) & (inp.off[:, e] | inp.off[:, p])
        X[:, base + 3 * M + 2] = np.where(hr_src_is_ecg, inp.poor[:, e], inp.poor[:, p])
        nb = c.col["nibp_sys"]
        X[:, nb : nb + 3] = inp.nibp
        for s, ring, sums in zip(c.slopes, self.rings, self.sums, strict=True):
            X[:, s.col] = self._slope_step(s.value_col, s.window, s.min_n, ring, sums)
        return X

    def _slope_step(self, vcol: int, w: int, min_n: int, ring: F64, sums: F64) -> F64:
        """Push this tick's sample into the ring; update exact window sums; return the slope."""
        n, sj, sy, sjj, sjy = sums
        p = self.k % w
        leave = ring[:, p]
        m_leave = ~np.isnan(leave)
        n -= m_leave
        sy -= np.where(m_leave, leave, 0.0)
        # every remaining sample moves one position towards the start of the window
        sjj += n - 2.0 * sj
        sjy -= sy
        sj -= n
        y = np.rint(self.X[:, vcol] * SLOPE_QUANTUM)
        m_new = ~np.isnan(y)
        y0 = np.where(m_new, y, 0.0)
        last = float(w - 1)
        n += m_new
        sy += y0
        sj += last * m_new
        sjj += (last * last) * m_new
        sjy += last * y0
        ring[:, p] = y
        den = n * sjj - sj * sj
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = ((n * sjy - sj * sy) / den) * self.slope_scale
        return np.where((n >= min_n) & (den > 0), slope, np.nan)

    def _artefact(self, X: F64, t: float) -> B8:
        """(B, value columns) artefact-suspect: poor flag now, or a spike within the hold."""
        nv = M + 1
        vals = X[:, :nv]
        if len(self.spike_cols):
            cols = self.spike_cols
            jump = np.abs(vals[:, cols] - self.prev_value[:, cols])
            spike = jump >= self.spike_jump  # NaN → False
            self.last_spike_t[:, cols] = np.where(spike, t, self.last_spike_t[:, cols])
        self.prev_value[:] = vals
        poor = X[:, M + 1 + 2 : M + 1 + 3 * nv : 3] > 0
        return poor | ((t - self.last_spike_t) <= self.c.artefact_hold)

    # -- the tick -----------------------------------------------------------------------------
    def step(self, inp: TickInput) -> list[Transition]:
        c = self.c
        t = inp.t
        self._limits()
        lim_signed = self.lim_signed
        conc = self.conc_idx
        saved = (self.cond_prev[:, conc].copy(), self.clear_prev[:, conc].copy(),
                 self.run[:, conc].copy(), self.crun[:, conc].copy())
        X = self._build_signals(inp)
        art = self._artefact(X, t)
        xt = X[:, c.term_col] * c.term_sign
        tc = np.where(c.term_strict, xt > lim_signed, xt >= lim_signed)
        self.term_cond = tc
        tf = tc.astype(np.float32)
        any_ok = (tf @ c.m_any > 0) | (c.n_any == 0)
        all_ok = (tf @ c.m_all) == c.n_all
        cond = any_ok & all_ok & self.enabled & ~c.concurrent
        clear_ok = ((tf @ c.m_clear_all) == c.n_clear_all) & (
            (tf @ c.m_clear_any > 0) | (c.n_clear_any == 0)
        )
        on = np.zeros_like(cond)
        off = np.zeros_like(cond)
        esc = np.zeros_like(cond)

        # continuous rules: persistence, depth × duration, hysteresis
        factor = np.where(
            c.gated & (c.art_col >= 0) & art[:, np.maximum(c.art_col, 0)], c.delay_factor, 1.0
        )
        self.run = np.where(cond, np.where(self.cond_prev, self.run + self.dt, 0.0), 0.0)
        has_area = c.area_term >= 0
        if has_area.any():
            at = np.maximum(c.area_term, 0)
            depth = np.abs(X[:, c.term_col[at]] - self.lim[:, at])
            self.area = np.where(cond & has_area, self.area + depth * self.dt, 0.0)
        declared = (self.run >= c.delay * factor) | (self.area >= c.area_threshold * factor)
        on |= c.continuous & cond & ~self.active & declared
        clearing = self.active & ~cond & clear_ok
        self.crun = np.where(clearing, np.where(self.clear_prev, self.crun + self.dt, 0.0), 0.0)
        off |= c.continuous & clearing & (self.crun >= c.clear_delay)

        # NIBP rules: evaluated only where a new measurement arrived
        if c.episodic.any():
            new = ~np.isnan(inp.nibp[:, 0]) | ~np.isnan(inp.nibp[:, 1])
            m = c.episodic & new[:, None]
            qual = cond & m
            within = (t - self.last_qual_t) <= c.confirm_window
            self.count = np.where(
                m, np.where(qual, np.where(within & (self.count > 0), self.count + 1, 1), 0),
                self.count,
            )
            self.last_qual_t = np.where(qual, t, self.last_qual_t)
            on |= qual & ~self.active & (self.count >= c.confirm_count)
            esc |= qual & self.active & (self.count == c.escalate_at)
            off |= m & self.active & ~cond & clear_ok

        # leaving the rule's phases ends its condition
        off |= self.active & ~self.enabled & ~c.concurrent
        self.count = np.where(self.enabled, self.count, 0)
        self.active = (self.active | on) & ~off
        self.cond_prev = cond
        self.clear_prev = clearing

        # multi-parameter escalation: counts the conditions declared above
        if len(conc):
            self._concurrent_step(on, off, saved)

        self.k += 1
        return self._transitions(t, X, tc, on, off, esc)

    def _concurrent_step(self, on: B8, off: B8, saved: tuple[B8, B8, F64, F64]) -> None:
        c = self.c
        for j, ri in enumerate(self.conc_idx):
            spec = c.active_rules[ri].concurrent
            assert spec is not None
            counted = (
                self.active
                & ~c.concurrent
                & (self.prio == PRIORITIES.index(spec.of_priority))
                & (c.kind == KIND_CODES[spec.of_kind])
            )
            n_params = ((counted.astype(np.float32) @ c.param_onehot) > 0).sum(axis=1)
            cond = (n_params >= spec.min_parameters) & self.enabled[:, ri]
            was, was_clearing, run, crun = (a[:, j] for a in saved)
            self.run[:, ri] = np.where(cond, np.where(was, run + self.dt, 0.0), 0.0)
            act = self.active[:, ri]
            new_on = cond & ~act & (self.run[:, ri] >= c.delay[ri])
            clearing = act & ~cond
            self.crun[:, ri] = np.where(
                clearing, np.where(was_clearing, crun + self.dt, 0.0), 0.0
            )
            new_off = clearing & ((self.crun[:, ri] >= c.clear_delay[ri]) | ~self.enabled[:, ri])
            on[:, ri] = new_on
            off[:, ri] = new_off
            self.active[:, ri] = (act | new_on) & ~new_off
            self.cond_prev[:, ri] = cond
            self.clear_prev[:, ri] = clearing

    def _transitions(
        self, t: float, X: F64, tc: B8, on: B8, off: B8, esc: B8
    ) -> list[Transition]:
        any_event = on | off | esc
        if not any_event.any():
            return []
        c = self.c
        out: list[Transition] = []
        for b, r in zip(*np.nonzero(any_event), strict=True):
            b, r = int(b), int(r)
            event = "on" if on[b, r] else ("off" if off[b, r] else "escalate")
            colx = int(c.rule_value_col[r])
            if event != "off":
                for ti in c.any_terms[r] or c.all_terms[r]:
                    if tc[b, ti]:
                        colx = int(c.term_value_col[ti])
                        break
            val = None if colx < 0 else float(X[b, colx])
            if val is not None and val != val:
                val = None
            out.append(Transition(t, b, r, event, val, colx))
        return out

    @property
    def phase_names(self) -> list[str]:
        return [PHASES[i] for i in self.phase]

"""A rule set flattened into tables both detectors share.

The vectorized detector (``detector.py``) and the naive evaluator (``naive.py``) read the same
:class:`CompiledRules`: the signal columns, one row per term (column, direction, limit per
phase, reference, tightening per risk flag) and one row per rule. Keeping the arithmetic in one
place (:func:`term_limit`, :func:`slope_from_sums`) is what lets the two produce bit-identical
results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kapmonitor.alerts.rules import (
    CONTINUOUS_METRICS,
    NIBP_SIGNALS,
    PARAMETER_OF,
    PHASES,
    PRIORITIES,
    Rule,
    RuleSet,
    Term,
    base_signal,
)

F64 = npt.NDArray[np.float64]
B8 = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]

VALUE_SIGNALS: tuple[str, ...] = (*CONTINUOUS_METRICS, "hr")
HEALTH_KINDS: tuple[str, ...] = ("age", "off", "poor")
KIND_CODES = {"physiological": 0, "technical": 1, "advisory": 2}
REF_CODES = {"absolute": 0, "baseline_delta": 1, "baseline_ratio": 2}
SLOPE_QUANTUM = 10.0  # slopes are computed on values rounded to 0.1 so sums stay exact integers


def term_limit(ref: int, value: float, baseline: float, tighten: float, sign: float) -> float:
    """Effective limit of one term for one bed (the vectorized code mirrors this exactly)."""
    if ref == 0:
        lim = value
    elif ref == 1:
        lim = baseline + value
    else:
        lim = baseline * value
    return lim - sign * tighten


def slope_from_sums(n: float, sj: float, sy: float, sjj: float, sjy: float, scale: float) -> float:
    """Least-squares slope from exact integer window sums (NaN when undetermined)."""
    den = n * sjj - sj * sj
    if den <= 0:
        return math.nan
    return ((n * sjy - sj * sy) / den) * scale


@dataclass
class SlopeColumn:
    signal: str
    value_col: int
    window: int  # ticks
    min_n: int
    col: int  # the slope's own column


@dataclass
class CompiledRules:
    rules: RuleSet
    columns: list[str]
    col: dict[str, int]
    slopes: list[SlopeColumn]
    flags: list[str]  # risk flag order
    parameters: list[str]
    # terms
    term_col: I64 = field(init=False)
    term_value_col: I64 = field(init=False)  # value column shown / used for depth
    term_sign: F64 = field(init=False)
    term_strict: B8 = field(init=False)
    term_ref: I64 = field(init=False)
    term_value: F64 = field(init=False)  # (NT, NPH)
    term_tighten: F64 = field(init=False)  # (NF, NT)
    # rules
    rule_ids: list[str] = field(init=False)
    any_terms: list[list[int]] = field(init=False)
    all_terms: list[list[int]] = field(init=False)
    clear_all_terms: list[list[int]] = field(init=False)
    clear_any_terms: list[list[int]] = field(init=False)

    @classmethod
    def build(cls, rules: RuleSet) -> CompiledRules:
        columns = list(VALUE_SIGNALS)
        columns += [f"{s}_{k}" for s in VALUE_SIGNALS for k in HEALTH_KINDS]
        columns += list(NIBP_SIGNALS)
        col = {c: i for i, c in enumerate(columns)}
        slopes: list[SlopeColumn] = []
        active = [r for r in rules.rules if r.enabled]
        for r in active:
            for t in _terms(r):
                if t.trend_window_s is None:
                    continue
                name = _slope_name(t)
                if name in col:
                    continue
                w = max(2, round(t.trend_window_s / rules.tick_s))
                col[name] = len(columns)
                columns.append(name)
                min_n = max(3, math.ceil(t.min_valid_fraction * w))
                slopes.append(SlopeColumn(t.signal, col[t.signal], w, min_n, col[name]))
        params = sorted({PARAMETER_OF[base_signal(s)] for s in VALUE_SIGNALS + NIBP_SIGNALS})
        self = cls(rules, columns, col, slopes, sorted(rules.risk_flags), params)
        self._compile(active)
        return self

    def _compile(self, active: list[Rule]) -> None:
        terms: list[Term] = []
        self.rule_ids = [r.id for r in active]
        self.active_rules = active
        self.any_terms, self.all_terms, self.clear_all_terms, self.clear_any_terms = [], [], [], []

        def add(ts: list[Term]) -> list[int]:
            idx = list(range(len(terms), len(terms) + len(ts)))
            terms.extend(ts)
            return idx

        for r in active:
            self.any_terms.append(add(r.when_any))
            self.all_terms.append(add(r.when_all))
            self.clear_all_terms.append(add(r.clear_all))
            self.clear_any_terms.append(add(r.clear_any))
        nt, nr, nph = len(terms), len(active), len(PHASES)
        self.n_terms, self.n_rules = nt, nr
        self.term_col = np.array(
            [self.col[_slope_name(t)] if t.trend_window_s else self.col[t.signal] for t in terms],
            dtype=np.int64,
        )
        self.term_value_col = np.array(
            [self.col[_display_signal(t.signal)] for t in terms], dtype=np.int64
        )
        self.term_sign = np.array([1.0 if t.op in (">", ">=") else -1.0 for t in terms])
        self.term_strict = np.array([t.op in ("<", ">") for t in terms], dtype=bool)
        self.term_ref = np.array([REF_CODES[t.reference] for t in terms], dtype=np.int64)
        self.term_value = np.array(
            [[t.value_by_phase.get(p, t.value) for p in PHASES] for t in terms], dtype=np.float64
        ).reshape(nt, nph)
        tight = np.zeros((len(self.flags), nt))
        for fi, name in enumerate(self.flags):
            flag = self.rules.risk_flags[name]
            for ti, t in enumerate(terms):
                if t.trend_window_s is not None:
                    continue
                table = flag.upper if t.op in (">", ">=") else flag.lower
                tight[fi, ti] = float(table.get(t.signal, 0.0))
        self.term_tighten = tight
        self.term_baseline_col = np.array([self.col.get(t.signal, 0) for t in terms], np.int64)

        def bounds(lists: list[list[int]]) -> tuple[I64, I64]:
            # each rule's terms of one group are contiguous: count them with a cumulative sum
            start = np.array([x[0] if x else 0 for x in lists], dtype=np.int64)
            end = np.array([x[-1] + 1 if x else 0 for x in lists], dtype=np.int64)
            return start, end

        self.any_bounds = bounds(self.any_terms)
        self.all_bounds = bounds(self.all_terms)
        self.clear_all_bounds = bounds(self.clear_all_terms)
        self.clear_any_bounds = bounds(self.clear_any_terms)
        self.n_any = np.array([len(x) for x in self.any_terms], dtype=np.int64)
        self.n_all = np.array([len(x) for x in self.all_terms], dtype=np.int64)
        self.n_clear_all = np.array([len(x) for x in self.clear_all_terms], dtype=np.int64)
        self.n_clear_any = np.array([len(x) for x in self.clear_any_terms], dtype=np.int64)

        art = self.rules.artefact
        self.delay = np.array([r.delay_s for r in active])
        self.clear_delay = np.array([r.clear_delay_s for r in active])
        self.area_threshold = np.array(
            [math.inf if r.area_threshold is None else r.area_threshold for r in active]
        )
        self.area_term = np.array(
            [r_any[0] if r.area_threshold is not None else -1
             for r, r_any in zip(active, self.any_terms, strict=True)],
            dtype=np.int64,
        )
        self.gated = np.array([r.artefact_gated for r in active], dtype=bool)
        self.delay_factor = float(art.delay_factor)
        # Which value column's artefact state gates a rule (-1: none).
        self.art_col = np.array(
            [
                self.col[r.primary_signal]
                if r.primary_signal in VALUE_SIGNALS and r.artefact_gated
                else -1
                for r in active
            ],
            dtype=np.int64,
        )
        self.episodic = np.array([r.episodic for r in active], dtype=bool)
        self.concurrent = np.array([r.concurrent is not None for r in active], dtype=bool)
        self.continuous = ~self.episodic & ~self.concurrent
        # Short gaps: the value column whose missing samples hold a continuous rule's
        # persistence (-1: none, e.g. health-signal and NIBP rules), and the tolerance in ticks.
        self.gap_col = np.array(
            [
                self.col[r.primary_signal]
                if r.primary_signal in VALUE_SIGNALS and cont
                else -1
                for r, cont in zip(active, self.continuous, strict=True)
            ],
            dtype=np.int64,
        )
        hold = self.rules.gaps.hold_ticks
        self.gap_ticks = np.array(
            [hold if r.gap_ticks is None else r.gap_ticks for r in active], dtype=np.int64
        )
        self.confirm_count = np.array([r.confirm_count for r in active], dtype=np.int64)
        self.confirm_window = np.array([r.confirm_window_s for r in active])
        self.escalate_at = np.array([r.escalate_at_count or 0 for r in active], dtype=np.int64)
        self.enabled_by_phase = np.array(
            [[p in r.phases for p in PHASES] for r in active], dtype=bool
        ).reshape(nr, nph)
        self.priority_by_phase = np.array(
            [[PRIORITIES.index(r.priority_in(p)) for p in PHASES] for r in active],
            dtype=np.int64,
        ).reshape(nr, nph)
        self.kind = np.array([KIND_CODES[r.kind] for r in active], dtype=np.int64)
        pidx = {p: i for i, p in enumerate(self.parameters)}
        self.rule_param = np.array(
            [
                pidx[PARAMETER_OF[base_signal(r.primary_signal)]] if r.primary_signal else -1
                for r in active
            ],
            dtype=np.int64,
        )
        # rule indices per parameter (multi-parameter escalation counts parameters)
        self.param_rules = [
            np.flatnonzero(self.rule_param == p) for p in range(len(self.parameters))
        ]
        # value column reported with a transition when no term matched (off events)
        self.rule_value_col = np.array(
            [
                self.col[_display_signal(r.primary_signal)] if r.primary_signal else -1
                for r in active
            ],
            dtype=np.int64,
        )
        self.spike_jump = {self.col[s]: float(v) for s, v in art.spike_jump.items()
                           if s in VALUE_SIGNALS}
        self.artefact_hold = float(art.hold_s)

    @property
    def n_cols(self) -> int:
        return len(self.columns)


def _terms(r: Rule) -> list[Term]:
    return [*r.when_any, *r.when_all, *r.clear_all, *r.clear_any]


def _slope_name(t: Term) -> str:
    assert t.trend_window_s is not None
    return f"{t.signal}~slope{t.trend_window_s:g}s"


def _display_signal(signal: str) -> str:
    """The value column reported with a term: health signals report their own number."""
    return signal

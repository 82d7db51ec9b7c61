"""Property: the vectorized detector and the naive per-bed evaluator emit identical transitions
on random traces (values around the limits, gaps, sensor-off and poor-signal flags, NIBP
arrivals, phase/baseline/risk changes mid-trace), for the shipped rules and for a "twitchy"
variant with short delays and trend windows; and on traces whose missing samples come in runs
of every length around each rule's gap tolerance (``gaps``, with several tolerances)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kapmonitor.alerts.compiled import CompiledRules
from kapmonitor.alerts.detector import TickInput, Transition, VectorDetector
from kapmonitor.alerts.naive import NaiveDetector, rows_from
from kapmonitor.alerts.rules import PHASES, Rule, RuleSet, Term, load_rules

DEFAULT = load_rules()
# centre and spread of each continuous metric's random walk (crosses the default limits)
CENTRE = np.array([90.0, 90.0, 90.0, 14.0, 2.0, 20.0])
SPREAD = np.array([8.0, 45.0, 45.0, 10.0, 1.5, 12.0])


def _twitchy_term(t: Term) -> Term:
    return t.model_copy(update={"trend_window_s": 8.0}) if t.trend_window_s else t


def _twitchy_rule(r: Rule) -> Rule:
    upd: dict[str, object] = {
        "delay_s": min(r.delay_s, 4.0),
        "clear_delay_s": min(r.clear_delay_s, 3.0),
        "area_threshold": None if r.area_threshold is None else r.area_threshold / 8,
        "confirm_window_s": 30.0,
    }
    for group in ("when_any", "when_all", "clear_all", "clear_any"):
        upd[group] = [_twitchy_term(t) for t in getattr(r, group)]
    return r.model_copy(update=upd)


TWITCHY = DEFAULT.model_copy(update={"rules": [_twitchy_rule(r) for r in DEFAULT.rules]})
def _gap_variant(hold: int, per_rule: dict[str, int]) -> RuleSet:
    rules = [r.model_copy(update={"gap_ticks": per_rule[r.id]}) if r.id in per_rule else r
             for r in TWITCHY.rules]
    return TWITCHY.model_copy(update={
        "rules": rules, "gaps": TWITCHY.gaps.model_copy(update={"hold_ticks": hold}),
    })


VARIANTS = {
    "default": DEFAULT,
    "twitchy": TWITCHY,
    "half_second_tick": DEFAULT.model_copy(update={"tick_s": 0.5}),
    "gaps_0": _gap_variant(0, {}),
    "gaps_1_mixed": _gap_variant(1, {"spo2_below_88": 4, "hr_at_or_above_140": 0}),
}
MAX_GAP = 6  # gap runs of 1…MAX_GAP ticks: around every tolerance above (0, 1, 3, 4)


def _context(rng: np.random.Generator, c: CompiledRules) -> tuple[int, np.ndarray, np.ndarray]:
    phase = int(rng.integers(0, len(PHASES)))
    baseline = np.full(c.n_cols, np.nan)
    if rng.random() < 0.8:
        for name, v, sd in (("spo2", 96, 2), ("hr", 72, 10), ("resp_rate", 14, 2),
                            ("nibp_sys", 125, 15), ("nibp_dia", 80, 10), ("nibp_mean", 95, 10)):
            baseline[c.col[name]] = round(rng.normal(v, sd), 1)
    risk = rng.random(len(c.flags)) < 0.3
    return phase, baseline, risk


def simulate(rules: RuleSet, seed: int, n_beds: int, n_ticks: int, gap_runs: bool = False,
             nibp_between: bool = False) -> tuple[list[Transition], list[Transition]]:
    """``gap_runs``: missing samples come in runs of 1…MAX_GAP ticks instead of singly.
    ``nibp_between``: about half the NIBP measurements are evaluated on arrival, between two
    ticks (``step_nibp``), as the daemon does, the rest at the tick."""
    rng = np.random.default_rng(seed)
    c = CompiledRules.build(rules)
    vec, naive = VectorDetector(c, n_beds), NaiveDetector(c, n_beds)

    def set_ctx(b: int) -> None:
        phase, baseline, risk = _context(rng, c)
        vec.set_context(b, phase, baseline, risk)
        naive.set_context(b, phase, baseline.tolist(), risk.tolist())

    for b in range(n_beds):
        set_ctx(b)
    m = len(CENTRE)
    walk = CENTRE[:, None] + rng.normal(0, 1, (m, n_beds)) * SPREAD[:, None] / 2
    age = np.zeros((m, n_beds))
    # sticky regimes, so technical conditions last long enough to be declared
    silent = np.zeros((m, n_beds), dtype=bool)
    off_state = np.zeros((m, n_beds), dtype=bool)
    poor_state = np.zeros((m, n_beds), dtype=bool)
    gap_left = np.zeros((m, n_beds), dtype=np.int64)
    out_v: list[Transition] = []
    out_n: list[Transition] = []
    for k in range(n_ticks):
        t = k * rules.tick_s
        step = rng.normal(0, 1, walk.shape) * SPREAD[:, None] / 6
        jumps = rng.random(walk.shape) < 0.02  # spikes for the artefact gate
        walk = walk + step + jumps * rng.normal(0, 3, walk.shape) * SPREAD[:, None]
        walk += (CENTRE[:, None] - walk) * 0.05
        value = np.round(walk, 1)
        if gap_runs:
            start = (gap_left == 0) & (rng.random(value.shape) < 0.08)
            gap_left = np.where(start, rng.integers(1, MAX_GAP + 1, value.shape), gap_left)
            value[gap_left > 0] = np.nan
            gap_left = np.maximum(gap_left - 1, 0)
        else:
            value[rng.random(value.shape) < 0.05] = np.nan
        silent ^= rng.random(value.shape) < 0.01
        off_state ^= rng.random(value.shape) < 0.01
        poor_state ^= rng.random(value.shape) < 0.02
        arrived = (rng.random(value.shape) < 0.9) & ~silent
        age = np.where(arrived, 0.0, age + rules.tick_s)
        age_in = np.where(rng.random(age.shape) < 0.03, np.nan, age)
        off = off_state ^ (rng.random(value.shape) < 0.02)
        poor = poor_state ^ (rng.random(value.shape) < 0.03)
        nibp = np.full((3, n_beds), np.nan)
        new = rng.random(n_beds) < 0.08
        n_new = int(new.sum())
        nibp[:, new] = np.round(rng.normal([[165.0], [100.0], [110.0]], 35, (3, n_new)))
        if rng.random() < 0.02:
            set_ctx(int(rng.integers(0, n_beds)))
        if nibp_between and n_new:
            now = new & (rng.random(n_beds) < 0.5)
            early = np.where(now, nibp, np.nan)
            nibp = np.where(now, np.nan, nibp)
            t_arrival = t - float(rng.uniform(0.01, 0.99)) * rules.tick_s
            out_v += vec.step_nibp(t_arrival, early)
            out_n += naive.step_nibp(t_arrival, early.T.tolist())
        inp = TickInput(t, value, age_in, off, poor, nibp)
        out_v += vec.step(inp)
        out_n += naive.step(t, rows_from(inp))
    return out_v, out_n


@pytest.mark.parametrize("mode", ["single_gaps", "gap_runs", "nibp_between_ticks"])
@settings(max_examples=25, deadline=None)
@given(
    variant=st.sampled_from(sorted(VARIANTS)),
    seed=st.integers(0, 2**32 - 1),
    n_beds=st.integers(1, 5),
    n_ticks=st.integers(1, 400),
)
def test_vectorized_equals_naive_on_random_traces(
    mode: str, variant: str, seed: int, n_beds: int, n_ticks: int
) -> None:
    """Missing samples singly or in runs of up to MAX_GAP ticks; or about half the NIBP
    measurements evaluated on arrival, between two ticks (``step_nibp``)."""
    vec, naive = simulate(VARIANTS[variant], seed, n_beds, n_ticks,
                          gap_runs=mode == "gap_runs", nibp_between=mode == "nibp_between_ticks")
    assert vec == naive


@pytest.mark.parametrize("gap", range(0, MAX_GAP + 1))
@pytest.mark.parametrize("hold", [0, 1, 3])
def test_a_gap_up_to_the_tolerance_holds_the_delay_a_longer_one_resets_it(
    gap: int, hold: int
) -> None:
    """SpO2 84 % from tick 0 with ``gap`` missing ticks from tick 5: `spo2_below_88` (15 s,
    area 80 %·s = 20 ticks at 4 % below) is declared at tick 15 + gap when the gap is held, or
    15 ticks after the data returns when it was reset — in both detectors."""
    rules = _gap_variant(hold, {})
    rules = DEFAULT.model_copy(update={"gaps": rules.gaps})
    c = CompiledRules.build(rules)
    vec, naive = VectorDetector(c, 1), NaiveDetector(c, 1)
    ri = c.rule_ids.index("spo2_below_88")
    delay = int(DEFAULT.rules[[r.id for r in DEFAULT.rules].index("spo2_below_88")].delay_s)
    on: dict[str, list[int]] = {"vec": [], "naive": []}
    m = len(CENTRE)
    for k in range(60):
        value = np.full((m, 1), np.nan)
        if not 5 <= k < 5 + gap:
            value[0, 0] = 84.0
        inp = TickInput(float(k), value, np.zeros((m, 1)), np.zeros((m, 1), dtype=bool),
                        np.zeros((m, 1), dtype=bool), np.full((3, 1), np.nan))
        for name, trs in (("vec", vec.step(inp)), ("naive", naive.step(float(k),
                                                                          rows_from(inp)))):
            on[name] += [k for tr in trs if tr.rule == ri and tr.event == "on"]
    expected = delay + gap if gap <= hold else 5 + gap + delay
    assert on["vec"] == on["naive"] == [expected]


def test_the_random_traces_exercise_every_kind_of_transition() -> None:
    """Guards the property above against being vacuous."""
    counts: Counter[tuple[str, str]] = Counter()
    for variant in ("default", "twitchy"):
        rules = VARIANTS[variant]
        c = CompiledRules.build(rules)
        for gap_runs in (False, True):
            vec, naive = simulate(rules, 1234, 6, 600, gap_runs=gap_runs)
            assert vec == naive
            for tr in vec:
                counts[(c.rule_ids[tr.rule], tr.event)] += 1
    fired = {rule for rule, ev in counts if ev == "on"}
    assert {"spo2_below_88", "spo2_falling", "hr_at_or_above_140", "bp_crisis", "bp_severe",
            "multi_parameter", "vitals_stale", "spo2_sensor_off", "signal_poor"} <= fired
    assert any(ev == "escalate" for _, ev in counts)
    assert any(ev == "off" for _, ev in counts)
    # the gap runs reach the held state: the tolerance changes what the detectors emit
    # NIBP evaluated between ticks raises, escalates and ends NIBP rules off the tick grid
    between, naive = simulate(VARIANTS["default"], 1234, 6, 600, nibp_between=True)
    assert between == naive
    off_grid = {tr.event for tr in between if tr.t != round(tr.t)}
    assert off_grid == {"on", "off", "escalate"}
    held, _ = simulate(TWITCHY, 1234, 6, 600, gap_runs=True)
    reset, _ = simulate(VARIANTS["gaps_0"], 1234, 6, 600, gap_runs=True)
    assert held != reset

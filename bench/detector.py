"""Alarm detector: the vectorized numpy detector against the naive per-bed, per-sample evaluator.

    .venv/bin/python bench/detector.py [--beds 12,100,1000] [--ticks 600] [--big-ticks 240]

Both evaluate the shipped rule set (kapmonitor/data/rules.toml) on the same generated clinic:
per bed a baseline, measurement noise, the session phase and baselines, and injected episodes
(desaturation ramps, motion-artefact dips, runs of 1–5 empty oximeter samples,
tachy/bradycardia, sensor off, silent oximeters, crisis and repeat NIBP readings, low battery).
Every tick both get the same sampled arrays; the naive evaluator receives them as plain Python
lists per bed (that conversion is done beforehand and not timed, as a pure-Python
implementation would hold Python objects). The two must emit
identical transitions — asserted. Timing is wall-clock per ``step`` call (time.perf_counter),
the whole run divided by the number of ticks. The last line of output is one JSON object for
the largest bed count.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np

from kapmonitor.alerts.compiled import CompiledRules
from kapmonitor.alerts.detector import TickInput, Transition, VectorDetector
from kapmonitor.alerts.naive import NaiveDetector, rows_from
from kapmonitor.alerts.rules import CONTINUOUS_METRICS, PHASES, load_rules

M = len(CONTINUOUS_METRICS)
IDX = {m: i for i, m in enumerate(CONTINUOUS_METRICS)}


@dataclass
class Clinic:
    inputs: list[TickInput]
    phase: np.ndarray
    baseline: np.ndarray
    risk: np.ndarray


def generate(c: CompiledRules, beds: int, ticks: int, seed: int = 42) -> Clinic:
    rng = np.random.default_rng(seed)
    t = np.arange(ticks, dtype=float)
    spo2_b = rng.uniform(95.5, 99.0, beds)
    hr_b = rng.uniform(58, 92, beds)
    rr_b = rng.uniform(11, 18, beds)
    spo2 = spo2_b[:, None] + rng.normal(0, 0.3, (beds, ticks))
    hr = hr_b[:, None] + rng.normal(0, 1.5, (beds, ticks))
    rr = rr_b[:, None] + rng.normal(0, 0.7, (beds, ticks))

    def episode(share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        who = np.flatnonzero(rng.random(beds) < share)
        start = rng.integers(10, max(11, ticks // 2), len(who))
        length = rng.integers(ticks // 4, ticks // 2 + 1, len(who))
        return who, start, length

    for b, s, n in zip(*episode(0.06), strict=True):  # desaturation ramp to ~84 %
        seg = slice(s, min(ticks, s + n))
        spo2[b, seg] -= np.minimum(13.0, 0.25 * (t[seg] - s))
    for b, s, n in zip(*episode(0.05), strict=True):  # tachycardia
        hr[b, s : s + n] = rng.uniform(125, 150) + rng.normal(0, 1.5, len(hr[b, s : s + n]))
    for b, s, n in zip(*episode(0.03), strict=True):  # bradycardia
        hr[b, s : s + n] = rng.uniform(35, 48) + rng.normal(0, 1.0, len(hr[b, s : s + n]))
    art = np.zeros((beds, ticks), dtype=bool)
    for b in np.flatnonzero(rng.random(beds) < 0.10):  # motion dips of 1–4 s
        for s in rng.integers(0, ticks, max(1, ticks // 30)):
            art[b, s : s + rng.integers(1, 5)] = True
    spo2 = np.where(art, rng.uniform(55, 80, (beds, ticks)), spo2)
    drop = np.zeros((beds, ticks), dtype=bool)
    for b in np.flatnonzero(rng.random(beds) < 0.15):  # dropouts: runs of 1–5 empty samples
        for s in rng.integers(0, ticks, max(1, ticks // 12)):
            drop[b, s : s + rng.integers(1, 6)] = True
    off = np.zeros((beds, ticks), dtype=bool)
    for b, s, n in zip(*episode(0.03), strict=True):
        off[b, s : s + n // 3] = True
    silent = np.zeros((beds, ticks), dtype=bool)
    for b, s, n in zip(*episode(0.03), strict=True):
        silent[b, s : s + n // 2] = True
    has_ecg = rng.random(beds) < 0.5
    has_rr = rng.random(beds) < 0.3
    battery = np.where(rng.random(beds) < 0.05, 15.0, 80.0)

    # NIBP every 5 min per bed (staggered); some crisis and some repeated severe readings
    sys_b = rng.uniform(105, 145, beds)
    dia_b = sys_b * 0.62
    crisis = rng.random(beds) < 0.03
    severe = rng.random(beds) < 0.06
    offset = rng.integers(0, 300, beds)

    # per-bed session context
    phase = rng.integers(0, len(PHASES), beds)
    baseline = np.full((c.n_cols, beds), np.nan)
    for name, v in (("spo2", spo2_b), ("hr", hr_b), ("resp_rate", rr_b), ("nibp_sys", sys_b),
                    ("nibp_dia", dia_b), ("nibp_mean", dia_b + (sys_b - dia_b) / 3)):
        baseline[c.col[name]] = np.round(v, 1)
    risk = rng.random((len(c.flags), beds)) < 0.15

    inputs = []
    age_sp = np.zeros(beds)
    for k in range(ticks):
        value = np.full((M, beds), np.nan)
        sp = np.round(spo2[:, k].clip(0, 100), 1)
        gone = off[:, k] | silent[:, k] | drop[:, k]
        value[IDX["spo2"]] = np.where(gone, np.nan, sp)
        pr = np.round(hr[:, k] + rng.normal(0, 1.0, beds), 1)
        value[IDX["pulse_rate"]] = np.where(gone, np.nan, pr)
        value[IDX["heart_rate"]] = np.where(has_ecg, np.round(hr[:, k], 1), np.nan)
        value[IDX["resp_rate"]] = np.where(has_rr, np.round(rr[:, k], 1), np.nan)
        value[IDX["perfusion_index"]] = np.where(off[:, k] | silent[:, k], np.nan, 2.5)
        value[IDX["battery"]] = battery
        age_sp = np.where(silent[:, k], age_sp + 1.0, 0.0)
        age = np.zeros((M, beds))
        age[IDX["spo2"]] = age_sp
        age[IDX["pulse_rate"]] = age_sp
        age[IDX["perfusion_index"]] = age_sp
        age[IDX["heart_rate"]] = np.where(has_ecg, 0.0, np.nan)
        age[IDX["resp_rate"]] = np.where(has_rr, 0.0, np.nan)
        age[IDX["battery"]] = 0.0
        offm = np.zeros((M, beds), dtype=bool)
        offm[IDX["spo2"]] = off[:, k] | drop[:, k]  # an empty sample reads as "no value"
        offm[IDX["pulse_rate"]] = off[:, k] | drop[:, k]
        poor = np.zeros((M, beds), dtype=bool)
        poor[IDX["spo2"]] = art[:, k]
        poor[IDX["pulse_rate"]] = art[:, k]
        nibp = np.full((3, beds), np.nan)
        due = (k + offset) % 300 == 0
        due |= severe & ((k + offset) % 300 == 120)  # a repeat for the severe group
        if due.any():
            s = np.where(crisis, 205.0, np.where(severe, 184.0, sys_b))
            d = np.where(crisis, 118.0, np.where(severe, 104.0, dia_b))
            s = np.round(s + rng.normal(0, 3, beds))
            d = np.round(d + rng.normal(0, 2, beds))
            nibp[0, due], nibp[1, due] = s[due], d[due]
            nibp[2, due] = np.round(d[due] + (s[due] - d[due]) / 3)
        inputs.append(TickInput(float(k), value, age, offm, poor, nibp))
    return Clinic(inputs, phase, baseline, risk)


def run(beds: int, ticks: int) -> dict[str, float | int | bool]:
    rules = load_rules()
    c = CompiledRules.build(rules)
    clinic = generate(c, beds, ticks)
    vec, naive = VectorDetector(c, beds), NaiveDetector(c, beds)
    for b in range(beds):
        vec.set_context(b, int(clinic.phase[b]), clinic.baseline[:, b], clinic.risk[:, b])
        naive.set_context(b, int(clinic.phase[b]), clinic.baseline[:, b].tolist(),
                          clinic.risk[:, b].tolist())
    rows = [rows_from(inp) for inp in clinic.inputs]  # the naive side's Python objects

    out_v: list[Transition] = []
    t0 = time.perf_counter()
    for inp in clinic.inputs:
        out_v += vec.step(inp)
    t_vec = time.perf_counter() - t0

    out_n: list[Transition] = []
    t0 = time.perf_counter()
    for inp, r in zip(clinic.inputs, rows, strict=True):
        out_n += naive.step(inp.t, r)
    t_naive = time.perf_counter() - t0

    assert out_v == out_n, "vectorized and naive detectors disagree"
    if not out_v:  # tiny smoke-test sizes: the comparison is then vacuous, say so
        print(f"warning: {beds} beds × {ticks} ticks produced no transitions", file=sys.stderr)
    vms, nms = 1000 * t_vec / ticks, 1000 * t_naive / ticks
    return {
        "beds": beds,
        "ticks": ticks,
        "transitions": len(out_v),
        "identical": True,
        "vectorized_ms_per_tick": round(vms, 4),
        "naive_ms_per_tick": round(nms, 3),
        "speedup": round(nms / vms, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--beds", default="12,100,1000", help="comma-separated bed counts")
    p.add_argument("--ticks", type=int, default=600, help="ticks for the smaller clinics")
    p.add_argument("--big-ticks", type=int, default=240,
                   help="ticks for clinics of ≥1000 beds (the naive side is slow)")
    args = p.parse_args()
    counts = [int(x) for x in args.beds.split(",")]
    print(f"{'beds':>6} {'ticks':>6} {'transitions':>11} {'vectorized ms/tick':>19} "
          f"{'naive ms/tick':>14} {'speedup':>8}")
    results = []
    for beds in counts:
        r = run(beds, args.big_ticks if beds >= 1000 else args.ticks)
        results.append(r)
        print(f"{r['beds']:>6} {r['ticks']:>6} {r['transitions']:>11} "
              f"{r['vectorized_ms_per_tick']:>19.3f} {r['naive_ms_per_tick']:>14.2f} "
              f"{r['speedup']:>7.1f}x", flush=True)
    print(json.dumps(max(results, key=lambda r: int(r["beds"]))))


if __name__ == "__main__":
    main()

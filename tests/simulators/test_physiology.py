"""The physiology model: ketamine curve shape and injected events."""

from __future__ import annotations

import statistics

import pytest
from kapmonitor_simulators.physiology import Patient, SimEvent

DOSE = 600.0


def rise(p: Patient, minutes: float) -> tuple[float, float, float]:
    """Noise-free rise over baseline (sys, dia, hr) at `minutes` after the dose."""
    t = DOSE + minutes * 60
    sys_, dia, hr, _, _ = p.true_state(t)
    b = p.baseline
    assert b is not None
    return sys_ - b.sys, dia - b.dia, hr - b.hr


@pytest.mark.parametrize("seed", range(12))
def test_ketamine_rise_peaks_near_40_minutes(seed: int) -> None:
    p = Patient(seed=seed, dose_at=DOSE)
    curve = [(m, p.response(DOSE + m * 60)) for m in range(0, 181)]
    peak_minute = max(curve, key=lambda c: c[1])[0]
    assert 35 <= peak_minute <= 45
    assert p.response(DOSE - 60) == 0.0
    assert p.response(DOSE + 180 * 60) < 0.1  # back near baseline by the end of recovery


def test_rise_magnitude_matches_the_literature() -> None:
    """Mean rise about +16/+11 mmHg and HR about +11 ([S6]; HR is ours), with spread."""
    sys_r, dia_r, hr_r = [], [], []
    for seed in range(200):
        p = Patient(seed=seed, dose_at=DOSE)
        sys_r.append(p.rise_sys)
        dia_r.append(p.rise_dia)
        hr_r.append(p.rise_hr)
    assert 13 <= statistics.mean(sys_r) <= 20 and min(sys_r) >= 8 and max(sys_r) <= 25
    assert 8 <= statistics.mean(dia_r) <= 13
    assert 8 <= statistics.mean(hr_r) <= 14
    assert statistics.pstdev(sys_r) > 2  # patients differ


def test_observed_rise_at_40_min_includes_wander() -> None:
    diffs = [rise(Patient(seed=s, dose_at=DOSE), 40)[0] for s in range(50)]
    assert 10 <= statistics.mean(diffs) <= 22


def test_severe_response_is_much_larger() -> None:
    normal = Patient(seed=5, dose_at=DOSE)
    severe = Patient(seed=5, dose_at=DOSE, severe=True)
    assert severe.rise_sys >= 2.5 * normal.rise_sys


def test_esketamine_returns_more_slowly() -> None:
    k = Patient(seed=1, profile="ketamine")
    e = Patient(seed=1, profile="esketamine")
    t = DOSE + 150 * 60
    assert e.response(t) > 2 * k.response(t)


def test_deterministic_for_a_seed() -> None:
    a, b = Patient(seed=9), Patient(seed=9)
    assert [a.vitals(t) for t in range(0, 3000, 97)] == [b.vitals(t) for t in range(0, 3000, 97)]
    assert Patient(seed=10).vitals(100) != a.vitals(100)


def test_events() -> None:
    p = Patient(seed=2, dose_at=None, events=[
        SimEvent("desaturation", 1000, 300, 15), SimEvent("surge", 2000, 600),
        SimEvent("bradycardia", 3000, 120), SimEvent("tachycardia", 4000, 300),
        SimEvent("sensor_off", 5000, 30), SimEvent("device_drop", 6000, 60),
        SimEvent("artifact", 7000, 60),
    ])
    base = p.vitals(500)
    assert base.spo2 is not None and base.spo2 > 94
    low = p.vitals(1150)
    assert low.spo2 is not None and low.spo2 < base.spo2 - 10
    assert p.vitals(1400).spo2 is not None and p.vitals(1400).spo2 > 94  # type: ignore[operator]
    surge = p.vitals(2300)
    assert surge.nibp_sys > base.nibp_sys + 50 and surge.nibp_dia > base.nibp_dia + 25
    assert p.nibp(2300)[0] >= 180
    assert p.vitals(3060).heart_rate < 42
    assert p.vitals(4150).heart_rate > 140
    off = p.vitals(5010)
    assert off.sensor_off and off.spo2 is None and off.pulse_rate is None
    assert not p.vitals(6030).device_present and p.vitals(6100).device_present
    art = [p.vitals(t) for t in range(7000, 7060)]
    spikes = [v for v in art if v.motion]
    assert spikes and all(v.spo2 is not None and v.spo2 < 86 for v in spikes)
    assert len(spikes) < len(art)  # bursts, not a sustained fall

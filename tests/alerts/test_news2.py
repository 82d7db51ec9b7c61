"""NEWS2 scoring (kapmonitor.alerts.news2): chart-1 band edges, rounding, totals, responses."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kapmonitor.alerts.news2 import (
    BANDS,
    PARAMETERS,
    News2Inputs,
    News2Score,
    points,
    round_half_up,
    score,
)

NORMAL = News2Inputs(resp_rate=16, spo2=97, sbp=120, pulse=70, consciousness="alert",
                     temperature=37.0)

# Every band edge of RCP NEWS2 (2017) chart 1, from both sides.
BOUNDARIES = [
    *[("resp_rate", v, p) for v, p in [(8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2),
                                        (24, 2), (25, 3)]],
    *[("spo2", v, p) for v, p in [(91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0)]],
    *[("sbp", v, p) for v, p in [(90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0),
                                  (219, 0), (220, 3)]],
    *[("pulse", v, p) for v, p in [(40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1),
                                    (110, 1), (111, 2), (130, 2), (131, 3)]],
    *[("temperature", v, p) for v, p in [(35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0),
                                          (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2)]],
]


@pytest.mark.parametrize(("parameter", "value", "expected"), BOUNDARIES)
def test_chart_boundaries(parameter: str, value: float, expected: int) -> None:
    assert points(parameter, value) == expected


@pytest.mark.parametrize(
    ("parameter", "value", "expected"),
    [
        ("resp_rate", 8.4, 3),  # -> 8
        ("resp_rate", 8.5, 1),  # -> 9
        ("resp_rate", 20.49, 0),  # -> 20
        ("resp_rate", 20.5, 2),  # -> 21
        ("pulse", 90.4, 0),  # -> 90
        ("pulse", 90.5, 1),  # -> 91
        ("sbp", 219.5, 3),  # -> 220
        ("sbp", 90.5, 2),  # -> 91
        ("spo2", 95.5, 0),  # -> 96
        ("spo2", 91.49, 3),  # -> 91
        ("temperature", 35.04, 3),  # -> 35.0
        ("temperature", 35.05, 1),  # -> 35.1
        ("temperature", 38.05, 1),  # -> 38.1
        ("temperature", 39.049, 1),  # -> 39.0
    ],
)
def test_rounding_half_up_before_banding(parameter: str, value: float, expected: int) -> None:
    assert points(parameter, value) == expected


def test_round_half_up_uses_the_reported_decimal() -> None:
    assert round_half_up(8.5) == 9
    assert round_half_up(2.5) == 3  # not banker's rounding
    assert round_half_up(35.05, 1) == 35.1  # binary 35.05 is just below; the reading is not
    assert round_half_up(1e300) == 1e300


@pytest.mark.parametrize("parameter", sorted(BANDS))
def test_band_tables_tile_the_real_line(parameter: str) -> None:
    table = BANDS[parameter]
    assert table[0].lo == -math.inf
    assert table[-1].hi == math.inf
    for band in table:
        assert band.lo < band.hi
        assert band.points in (0, 1, 2, 3)
    for before, after in zip(table, table[1:], strict=False):
        assert after.lo == before.hi  # no gap, no overlap (lo exclusive, hi inclusive)
        assert after.points != before.points  # no redundant split


def test_all_normal_is_zero_low() -> None:
    result = score(NORMAL)
    assert result.total == 0
    assert result.complete
    assert result.missing == ()
    assert set(result.parts) == set(PARAMETERS)
    assert result.max_single == 0
    assert result.response() == "low"


@pytest.mark.parametrize(
    ("changes", "total", "response"),
    [
        ({"pulse": 95}, 1, "low"),
        ({"on_oxygen": True, "spo2": 93}, 4, "low"),
        ({"consciousness": "cvpu"}, 3, "low_medium"),  # a single 3
        ({"resp_rate": 7}, 3, "low_medium"),
        ({"resp_rate": 22, "spo2": 93, "pulse": 95}, 5, "medium"),
        ({"sbp": 89, "spo2": 93, "pulse": 95}, 6, "medium"),  # 3 inside 5-6 is medium
        ({"resp_rate": 26, "spo2": 90, "pulse": 95}, 7, "high"),
        ({"resp_rate": 30, "spo2": 85, "on_oxygen": True, "sbp": 80, "pulse": 140,
          "consciousness": "cvpu", "temperature": 34.0}, 20, "high"),
    ],
)
def test_totals_and_response(changes: dict[str, Any], total: int, response: str) -> None:
    result = score(replace(NORMAL, **changes))
    assert result.total == total
    assert result.response() == response
    assert result.to_json()["response"] == response


def test_oxygen_is_always_scored() -> None:
    assert score(News2Inputs()).parts == {"air_or_oxygen": 0}
    assert score(News2Inputs(on_oxygen=True)).parts == {"air_or_oxygen": 2}


def test_missing_parameters_are_listed_not_scored() -> None:
    result = score(News2Inputs(resp_rate=30, pulse=70))
    assert result.parts == {"resp_rate": 3, "air_or_oxygen": 0, "pulse": 0}
    assert result.missing == ("spo2", "sbp", "consciousness", "temperature")
    assert not result.complete
    assert result.total == 3
    assert result.max_single == 3
    assert result.to_json() == {
        "total": 3,
        "parts": {"resp_rate": 3, "air_or_oxygen": 0, "pulse": 0},
        "missing": ["spo2", "sbp", "consciousness", "temperature"],
        "max_single": 3,
        "complete": False,
        "response": "low_medium",
    }


def test_nothing_present() -> None:
    result = score(News2Inputs())
    assert result.total == 0
    assert result.max_single == 0
    assert result.missing == tuple(p for p in PARAMETERS if p != "air_or_oxygen")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_missing(bad: float) -> None:
    result = score(News2Inputs(resp_rate=bad, spo2=97, sbp=bad, pulse=70, temperature=bad))
    assert "resp_rate" not in result.parts
    assert result.missing == ("resp_rate", "sbp", "consciousness", "temperature")
    assert result.total == 0


def test_unknown_consciousness_rejected() -> None:
    with pytest.raises(ValueError, match="consciousness"):
        score(News2Inputs(consciousness="drowsy"))  # type: ignore[arg-type]


@pytest.mark.parametrize("parameter", ["heart_rate", "air_or_oxygen", "consciousness", ""])
def test_points_rejects_unknown_parameter(parameter: str) -> None:
    with pytest.raises(ValueError, match="parameter"):
        points(parameter, 80)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_points_rejects_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        points("pulse", bad)


def test_score_is_frozen() -> None:
    result = score(NORMAL)
    assert isinstance(result, News2Score)
    with pytest.raises(AttributeError):
        result.total = 5  # type: ignore[misc]


def _maybe(lo: float, hi: float) -> st.SearchStrategy[float | None]:
    return st.none() | st.just(math.nan) | st.floats(lo, hi, allow_nan=False)


@given(
    resp_rate=_maybe(0, 80),
    spo2=_maybe(50, 100),
    on_oxygen=st.booleans(),
    sbp=_maybe(30, 300),
    pulse=_maybe(0, 250),
    consciousness=st.sampled_from(["alert", "cvpu", None]),
    temperature=_maybe(25, 45),
)
def test_score_invariants(
    resp_rate: float | None,
    spo2: float | None,
    on_oxygen: bool,
    sbp: float | None,
    pulse: float | None,
    consciousness: str | None,
    temperature: float | None,
) -> None:
    inputs = News2Inputs(resp_rate=resp_rate, spo2=spo2, on_oxygen=on_oxygen, sbp=sbp,
                         pulse=pulse, consciousness=consciousness,  # type: ignore[arg-type]
                         temperature=temperature)
    result = score(inputs)
    assert result.total == sum(result.parts.values())
    assert all(p in (0, 1, 2, 3) for p in result.parts.values())
    assert set(result.parts).isdisjoint(result.missing)
    assert set(result.parts) | set(result.missing) == set(PARAMETERS)
    assert result.max_single == max(result.parts.values())
    assert result.complete == (not result.missing)
    assert result.response() in ("low", "low_medium", "medium", "high")


# Chart-1 centre of the normal band: below it lower never scores less, above it higher never does.
CENTRE = {"resp_rate": 16.0, "spo2": math.inf, "sbp": 160.0, "pulse": 70.0, "temperature": 37.0}


@given(
    parameter=st.sampled_from(sorted(CENTRE)),
    a=st.floats(-1e6, 1e6, allow_nan=False),
    b=st.floats(-1e6, 1e6, allow_nan=False),
)
def test_points_monotonic_away_from_normal(parameter: str, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    centre = CENTRE[parameter]
    if hi <= centre:
        assert points(parameter, lo) >= points(parameter, hi)
    elif lo >= centre:
        assert points(parameter, hi) >= points(parameter, lo)


@given(a=st.floats(0, 100, allow_nan=False), b=st.floats(0, 100, allow_nan=False))
def test_spo2_lower_never_scores_fewer(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert points("spo2", lo) >= points("spo2", hi)

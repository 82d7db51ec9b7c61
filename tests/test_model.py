"""The vocabulary model.py owns: the NIBP group, group ids, unit conversions."""

from __future__ import annotations

from kapmonitor.model import (
    MMHG_PER_KPA,
    NIBP_GROUP,
    Reading,
    kpa_to_mmhg,
    measurement,
    nibp_measurements,
)


def test_nibp_measurements_are_one_group_and_each_call_a_new_one() -> None:
    first = nibp_measurements(120, 80, 93, {"historical"})
    second = nibp_measurements(120, 80, 93)
    assert [m.metric for m in first] == list(NIBP_GROUP)
    assert [m.value for m in first] == [120.0, 80.0, 93.0]
    assert all(m.flags == {"historical"} and m.unit == "mm[Hg]" for m in first)
    assert len({m.group for m in first}) == 1 and first[0].group is not None
    assert first[0].group != second[0].group


def test_the_group_id_is_bookkeeping_not_content() -> None:
    a, b = nibp_measurements(120, 80, 93)[0], measurement("nibp_sys", 120)
    assert a == b and a.to_json() == b.to_json() and "group" not in a.to_json()
    r = Reading.from_measurement(a, bed="b", device="d", received=1.0)
    assert r.group == a.group and "group" not in r.payload()


def test_kpa_to_mmhg_uses_the_conventional_millimetre_of_mercury() -> None:
    assert MMHG_PER_KPA == 1000 / 133.322387415
    assert kpa_to_mmhg(16.0) == 120.0 and kpa_to_mmhg(10.7) == 80.3

"""The engine puts NIBP parts back together by the group id the codec set, and falls back to
(device, source timestamp) for readings without one (replayed traces)."""

from __future__ import annotations

from dataclasses import replace

from tests.helpers.alerts import Clinic, reading


def feed_nibp(c: Clinic, sys_: float, dia: float, ts: float, group: str | None) -> None:
    for metric, value in (("nibp_sys", sys_), ("nibp_dia", dia), ("nibp_mean", (sys_ + dia) / 2)):
        r = reading("bed1", metric, value, ts, device="cuff")
        c.engine.on_reading(replace(r, received=c.t, group=group))


def test_two_measurements_with_one_timestamp_stay_two_by_group_id() -> None:
    """Minute-resolution device clocks give two measurements the same source time."""
    c = Clinic(beds=("bed1",))
    c.run(3, spo2=97.0)
    feed_nibp(c, 90, 95, ts=60.0, group="nibp-a")  # systolic below diastolic: rejected
    feed_nibp(c, 120, 80, ts=60.0, group="nibp-b")
    c.run(3, spo2=97.0)
    assert c.alerts(rule="nibp_invalid", event="raised")
    assert c.alerts(rule="nibp_invalid", event="cleared")


def test_without_group_ids_parts_with_one_timestamp_are_one_measurement() -> None:
    c = Clinic(beds=("bed1",))
    c.run(3, spo2=97.0)
    feed_nibp(c, 90, 95, ts=60.0, group=None)
    feed_nibp(c, 120, 80, ts=60.0, group=None)  # the same measurement, corrected values
    c.run(3, spo2=97.0)
    assert not c.alerts(rule="nibp_invalid")

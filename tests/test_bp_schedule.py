"""The scheduled-BP hook: slot states around a dose (pure function, no clock)."""

from __future__ import annotations

import pytest

from kapmonitor.bp_schedule import bp_slots

DOSE = 1_700_000_000.0
MIN = 60.0


def states(now: float, readings: list[float] = []) -> list[str]:  # noqa: B006
    return [s.state for s in bp_slots(DOSE, now, readings)]


def test_default_schedule_before_and_after_dose() -> None:
    assert states(DOSE - 30 * MIN) == ["upcoming", "upcoming"]
    assert states(DOSE - 9 * MIN) == ["due", "upcoming"]  # within 5 min of the -5 min slot
    assert states(DOSE + 6 * MIN) == ["overdue", "upcoming"]
    assert states(DOSE + 36 * MIN) == ["overdue", "due"]
    assert states(DOSE + 51 * MIN) == ["overdue", "overdue"]


def test_readings_satisfy_the_nearest_open_slot_once() -> None:
    pre = DOSE - 6 * MIN
    assert states(DOSE + 60 * MIN, [pre]) == ["done", "overdue"]
    assert states(DOSE + 60 * MIN, [pre, DOSE + 42 * MIN]) == ["done", "done"]
    # A reading in the middle of the session belongs to no slot.
    assert states(DOSE + 60 * MIN, [DOSE + 20 * MIN]) == ["overdue", "overdue"]
    # A future reading (clock skew) does not count yet.
    assert states(DOSE - 8 * MIN, [DOSE - 4 * MIN]) == ["due", "upcoming"]


def test_one_reading_cannot_fill_two_close_slots() -> None:
    slots = bp_slots(DOSE, DOSE + 10 * MIN, [DOSE], offsets=[0.0, 2 * MIN])
    assert [s.state for s in slots] == ["done", "due"]
    assert slots[0].measured_at == DOSE


def test_negative_windows_are_rejected() -> None:
    with pytest.raises(ValueError):
        bp_slots(DOSE, DOSE, lead=-1)

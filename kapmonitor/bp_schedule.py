"""Scheduled blood pressure: which measurements of a dosing session are due or overdue.

Standard cuffs cannot be started remotely, so the dosing window's BP checks (typically just
before the dose and around the 40-minute peak, shared/reference/alarms.md §1.1) become prompts:
"BP due" for the bed, and a technical alarm when one is overdue. This module is the pure core
of that hook: given the dose time, the schedule (offsets relative to the dose) and the times of
the BP readings received, it says what each slot's state is at time ``now``. The session model
and alarm engine own the rest (publishing prompts, raising the alarm, triggering a remote-start
cuff through ``bp/measure``).

All times are epoch seconds; offsets are seconds (negative = before the dose).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

DEFAULT_OFFSETS: tuple[float, ...] = (-5 * 60.0, 40 * 60.0)  # 5 min before, 40 min after dose

SlotState = Literal["upcoming", "due", "overdue", "done"]


@dataclass(frozen=True, slots=True)
class BpSlot:
    offset: float  # seconds relative to the dose
    at: float  # epoch seconds the measurement is wanted
    state: SlotState
    measured_at: float | None = None  # the reading that satisfied the slot


def bp_slots(
    dose_at: float,
    now: float,
    measured_at: Iterable[float] = (),
    offsets: Sequence[float] = DEFAULT_OFFSETS,
    *,
    lead: float = 5 * 60.0,
    grace: float = 10 * 60.0,
) -> list[BpSlot]:
    """The state of every scheduled BP measurement at ``now``.

    A slot wanted at ``T`` is ``upcoming`` before ``T - lead``, ``due`` from then until
    ``T + grace``, ``overdue`` after that, and ``done`` once a reading taken within
    ``[T - lead, T + grace]`` exists. Each reading satisfies at most one slot (the earliest
    open slot whose window holds it), so one measurement cannot tick off two checks.
    """
    if lead < 0 or grace < 0:
        raise ValueError("lead and grace must be >= 0")
    readings = sorted(m for m in measured_at if m <= now)
    used: set[int] = set()
    out: list[BpSlot] = []
    for offset in sorted(offsets):
        at = dose_at + offset
        hit = next(
            (i for i, m in enumerate(readings) if i not in used and at - lead <= m <= at + grace),
            None,
        )
        if hit is not None:
            used.add(hit)
            out.append(BpSlot(offset, at, "done", readings[hit]))
        elif now < at - lead:
            out.append(BpSlot(offset, at, "upcoming"))
        elif now <= at + grace:
            out.append(BpSlot(offset, at, "due"))
        else:
            out.append(BpSlot(offset, at, "overdue"))
    return out

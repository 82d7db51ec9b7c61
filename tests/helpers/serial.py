"""Helpers for the serial codec and driver tests."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Iterable

from kapmonitor_simulators.serial.devices import DeviceModel
from kapmonitor_simulators.serial.links import Link
from kapmonitor_simulators.serial.runner import Scenario, SerialSimulator

from kapmonitor.clock import ScaledClock
from kapmonitor.codecs.base import Decoder, Note, Output, Problem
from kapmonitor.model import METRICS, Measurement


def run(decoder: Decoder, chunks: Iterable[bytes]) -> list[Output]:
    out: list[Output] = []
    for c in chunks:
        out += decoder.feed(c)
    out += decoder.close()
    return out


def measurements(items: Iterable[Output]) -> list[Measurement]:
    return [m for m in items if isinstance(m, Measurement)]


def problems(items: Iterable[Output]) -> list[Problem]:
    return [p for p in items if isinstance(p, Problem)]


def notes(items: Iterable[Output]) -> list[Note]:
    return [n for n in items if isinstance(n, Note)]


def values(items: Iterable[Output]) -> list[tuple[str, float | None, frozenset[str]]]:
    return [(m.metric, m.value, m.flags) for m in measurements(items)]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def random_chunks(data: bytes, rng: random.Random) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, 17)
        out.append(data[i : i + n])
        i += n
    return out


def assert_all_splits_equal(make: Callable[[], Decoder], data: bytes) -> list[Output]:
    """Decoding ``data`` split at every offset into two feeds gives the same measurements."""
    whole = values(run(make(), [data]))
    for cut in range(len(data) + 1):
        assert values(run(make(), [data[:cut], data[cut:]])) == whole, f"split at {cut}"
    return run(make(), [data])


def assert_sane(items: Iterable[Output]) -> None:
    """No invented values: every number is inside its metric's plausible range."""
    for m in measurements(items):
        if m.value is not None:
            lo, hi = METRICS[m.metric].plausible
            assert lo <= m.value <= hi, m


SPEED = 20.0  # simulated seconds per real second for the serial device simulators


@contextlib.asynccontextmanager
async def simulator(
    model: DeviceModel, link: Link, scenario: Scenario | None = None, speed: float = SPEED
) -> AsyncIterator[SerialSimulator]:
    sim = SerialSimulator(model, link, clock=ScaledClock(speed), scenario=scenario)
    await sim.start()
    task = asyncio.ensure_future(sim.run())
    try:
        yield sim
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

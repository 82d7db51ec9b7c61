"""Alarm-engine test helpers: the shipped rules, a Reading maker and :class:`Clinic`, which drives
an engine second by second like the daemon does."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kapmonitor.alerts import AlarmEngine, Event, load_rules
from kapmonitor.model import METRICS, Reading

RULES = load_rules()


def reading(bed: str, metric: str, value: float | None, t: float,
            quality: Iterable[str] = (), device: str = "dev1") -> Reading:
    info = METRICS[metric]
    return Reading(bed=bed, device=device, metric=metric, value=value, unit=info.unit, ts=t,
                   received=t, quality=frozenset(quality), mdc=info.mdc, loinc=info.loinc)


class Clinic:
    """Drives an engine second by second like the daemon would."""

    def __init__(self, beds: tuple[str, ...] = ("bed1", "bed2"), rules: Any = RULES) -> None:
        self.engine = AlarmEngine(rules, list(beds))
        self.t = 0.0
        self.events: list[Event] = []

    def cmd(self, name: str, **args: Any) -> dict[str, Any]:
        r = self.engine.command(name, args, self.t)
        self.events += r.events
        return r.response

    def run(self, seconds: float, **metrics: Any) -> None:
        """Advance ``seconds``, feeding each metric every second (value, (value, flags) or a
        callable of t) for every bed given as ``bed__metric`` or for bed1 as ``metric``."""
        end = self.t + seconds
        while self.t < end:
            self.t += 1.0
            for key, spec in metrics.items():
                bed, metric = key.split("__") if "__" in key else ("bed1", key)
                v = spec(self.t) if callable(spec) else spec
                value, flags = v if isinstance(v, tuple) else (v, ())
                self.engine.on_reading(reading(bed, metric, value, self.t, flags))
            self.events += self.engine.tick(self.t)

    def nibp(self, sys_: float, dia: float, bed: str = "bed1",
             flags: Iterable[str] = ()) -> None:
        for m, v in (("nibp_sys", sys_), ("nibp_dia", dia), ("nibp_mean", (sys_ + 2 * dia) / 3)):
            self.engine.on_reading(reading(bed, m, v, self.t, flags, device="cuff"))

    def alerts(self, **match: Any) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.events if e.type == "alert"
                and all(e.to_json().get(k) == v for k, v in match.items())]

    def sessions(self, event: str) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.events if e.type == "session" and e.event == event]

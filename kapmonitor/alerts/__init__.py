"""The alarm engine: pure (no I/O, no asyncio, no clock reads), readings and time in, events out.

Modules:

* ``rules`` — the rule set as pydantic models, loaded from TOML (defaults in
  ``kapmonitor/data/rules.toml``).
* ``compiled`` — the rule set flattened into the tables both detectors read.
* ``detector`` — the vectorized detector (all beds × rules per tick, numpy).
* ``naive`` — the same semantics one bed and one sample at a time (tests and benchmark).
* ``signals`` — readings → per-tick sample-and-hold arrays.
* ``lifecycle`` — alerts: raise/latch/acknowledge/audio pause/escalate/clear.
* ``session`` — the dosing session: phases, baseline, BP checklist, discharge readiness.
* ``events`` — alert and session events (the public JSON shapes; also the alarm log).
* ``commands`` — the operator commands' argument models and the one table of their names.
* ``engine`` — :class:`AlarmEngine`, the facade the daemon and ``kapmonitor replay`` use; its
  typed command methods raise :class:`kapmonitor.errors.CommandError` to refuse.
"""

from kapmonitor.alerts.engine import AlarmEngine, CommandResult
from kapmonitor.alerts.events import AlertEvent, Event, SessionEvent
from kapmonitor.alerts.rules import RuleSet, load_rules

__all__ = [
    "AlarmEngine",
    "AlertEvent",
    "CommandResult",
    "Event",
    "RuleSet",
    "SessionEvent",
    "load_rules",
]

"""``kapmonitor replay TRACE.csv [--config PATH]``: the alarm engine offline on a trace.

Runs the same :class:`~kapmonitor.alerts.AlarmEngine` the daemon runs, on a simulated clock
that moves with the trace, and prints every event as one JSON object per line, in time order.
Clinics use it to tune limits on their own recordings.

Input: CSV with the header ``t,bed,name,value`` or ``t,bed,name,value,flags``. ``flags`` (optional
column) holds a reading's quality flags separated by spaces (``motion low_perfusion``), as the
device reported them; it is empty for events. ``t`` is seconds from the trace start; rows are
in time order; gaps mean no data arrived. ``name`` is a metric of the reading vocabulary
(``spo2``, ``pulse_rate``, ``heart_rate``, ``nibp_sys``, ``nibp_dia``, ``nibp_mean``,
``resp_rate``, ``perfusion_index``, ``battery``, …; an empty ``value`` means "no value", e.g.
sensor off; NIBP parts with the same ``t`` form one measurement, evaluated at ``t`` as the
daemon evaluates it on arrival) or an event:

* ``session_start`` — ``value`` is the profile (``ketamine``, ``esketamine``), optionally
  followed by risk flags separated by spaces (``ketamine hypertension first_session``);
* ``dose`` — ``value`` is the dose in mg or empty; the first dose is t0;
* ``session_end``;
* ``ack`` — ``value`` is ``all`` (every open alert of the bed), an alert id or a rule id;
* ``pause`` — audio-pause every open alert of the bed; ``value`` is seconds or empty;
* ``symptom`` — a staff-entered symptom (``bp_with_symptom``); ``value`` is its name, e.g.
  ``chest_pain``;
* ``symptom_clear`` — the staff reset; ``value`` is a symptom name, or empty for all.

Exit status: 0 after the whole trace; 2 with one line on stderr naming the row and the problem
when the trace or the config is invalid. An ``ack`` or ``pause`` of an alert that is not open
(a recorded acknowledgement whose alarm no longer fires under the limits being tuned) is
reported on stderr as skipped, and the replay goes on.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from kapmonitor.alerts import AlarmEngine, Event, RuleSet, load_rules
from kapmonitor.alerts.commands import parse_command
from kapmonitor.errors import CommandError, validation_problems
from kapmonitor.model import METRICS, NIBP_METRICS, QUALITY_FLAGS, Reading

HEADER = ["t", "bed", "name", "value"]
HEADER_FLAGS = [*HEADER, "flags"]
EVENTS = ("session_start", "dose", "session_end", "ack", "pause", "symptom", "symptom_clear")
EXIT_INVALID = 2


class TraceError(Exception):
    def __init__(self, row: int, problem: str) -> None:
        super().__init__(f"row {row}: {problem}")


@dataclass(frozen=True)
class Row:
    number: int  # 1-based line number in the file (the header is row 1)
    t: float
    bed: str
    name: str
    value: str
    flags: frozenset[str] = frozenset()


def read_rows(stream: TextIO) -> Iterator[Row]:
    """Parse and validate rows (syntax, names, numbers, time order); raises TraceError."""
    reader = csv.reader(stream)
    header = _next_record(reader)
    columns = None if header is None else [h.strip() for h in header]
    if columns not in (HEADER, HEADER_FLAGS):
        raise TraceError(1, f"header must be {','.join(HEADER)} or {','.join(HEADER_FLAGS)}, "
                         f"got {header!r}")
    assert columns is not None
    width = len(columns)
    last_t = -math.inf
    while (fields := _next_record(reader)) is not None:
        number = reader.line_num  # the physical line (a quoted field may span lines)
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) != width:
            raise TraceError(number, f"expected {width} fields ({','.join(columns)}), "
                             f"got {len(fields)}")
        t_text, bed, name, value = (f.strip() for f in fields[:4])
        flags = _flags(number, name, fields[4] if width == 5 else "")
        t = _time(number, t_text)
        if t < last_t:
            raise TraceError(number, f"t {t:g} goes back in time (previous row {last_t:g})")
        last_t = t
        if not bed:
            raise TraceError(number, "bed is empty")
        _check_name_value(number, name, value)
        yield Row(number, t, bed, name, value, flags)


def _flags(number: int, name: str, text: str) -> frozenset[str]:
    """The row's quality flags (the optional column; empty without it)."""
    flags = frozenset(text.split())
    if flags and name not in METRICS:
        raise TraceError(number, f"flags are for readings, not for the event {name!r}")
    unknown = sorted(flags - QUALITY_FLAGS)
    if unknown:
        raise TraceError(number, f"unknown quality flag(s) {', '.join(unknown)}")
    return flags


def _time(number: int, t_text: str) -> float:
    try:
        t = float(t_text)
    except ValueError:
        raise TraceError(number, f"t {t_text!r} is not a number")
    if not math.isfinite(t) or t < 0:
        raise TraceError(number, f"t {t_text!r} must be a finite number ≥ 0")
    return t


def _check_name_value(number: int, name: str, value: str) -> None:
    if name in METRICS:
        if value:
            try:
                v = float(value)
            except ValueError:
                raise TraceError(number, f"value {value!r} of {name} is not a number")
            if not math.isfinite(v):
                raise TraceError(number, f"value {value!r} of {name} is not finite")
    elif name in EVENTS:
        _check_event(number, name, value)
    else:
        raise TraceError(
            number,
            f"unknown name {name!r}: not a metric ({', '.join(METRICS)}) nor an event "
            f"({', '.join(EVENTS)})",
        )


def _next_record(reader: Any) -> list[str] | None:
    """The next CSV record, None at the end; CSV syntax errors become a TraceError."""
    try:
        return next(reader, None)
    except csv.Error as e:  # e.g. a field over the csv module's size limit
        raise TraceError(reader.line_num, f"not valid CSV: {e}") from None


def _check_event(number: int, name: str, value: str) -> None:
    if name == "session_start" and not value:
        raise TraceError(number, "session_start needs the profile as value")
    if name == "symptom" and not value:
        raise TraceError(number, "symptom needs the symptom name as value")
    if name == "ack" and not value:
        raise TraceError(number, "ack needs a value: all, an alert id or a rule id")
    if name in ("dose", "pause") and value:
        try:
            x = float(value)
        except ValueError:
            raise TraceError(number, f"{name} value {value!r} is not a number")
        if not math.isfinite(x) or x < 0:
            raise TraceError(number, f"{name} value {value!r} must be ≥ 0")


def _command(row: Row) -> tuple[str, dict[str, Any]]:
    if row.name == "session_start":
        profile, *flags = row.value.split()
        return "session/start", {"bed": row.bed, "profile": profile, "risk_flags": flags}
    if row.name == "dose":
        return "session/dose", {"bed": row.bed, "dose_mg": float(row.value) if row.value else None}
    if row.name == "session_end":
        return "session/end", {"bed": row.bed}
    if row.name == "symptom":
        return "session/symptom", {"bed": row.bed, "symptom": row.value, "by": "replay"}
    if row.name == "symptom_clear":
        target = {"symptom": row.value} if row.value else {"all": True}
        return "session/symptom_clear", {"bed": row.bed, **target, "by": "replay"}
    if row.name == "ack":
        if row.value == "all":
            return "alert/ack", {"bed": row.bed, "all": True, "by": "replay"}
        return "alert/ack", {"bed": row.bed, "alert_id": row.value, "by": "replay"}
    args: dict[str, Any] = {"bed": row.bed, "all": True, "by": "replay"}
    if row.value:
        args["seconds"] = float(row.value)
    return "alert/pause", args


def _emit(events: list[Event], out: TextIO) -> None:
    for e in events:
        out.write(json.dumps(e.to_json(), ensure_ascii=False) + "\n")


def run(
    trace: Path, rules: RuleSet, out: TextIO, warn: Callable[[str], None] | None = None
) -> None:
    """Replay ``trace``; raises TraceError on the first bad row or refused command. With
    ``warn``, an ack/pause of an alert that is not open is reported there and skipped."""
    with trace.open(newline="", encoding="utf-8-sig") as f:
        beds = sorted({row.bed for row in read_rows(f)})
    engine = AlarmEngine(rules, beds, catch_up_limit_s=None)  # a gap is time without data
    current: float | None = None
    nibp = False  # NIBP parts given at `current`, not yet evaluated
    with trace.open(newline="", encoding="utf-8-sig") as f:
        for row in read_rows(f):
            part = row.name in NIBP_METRICS
            if nibp and not (part and row.t == current):
                # a measurement is evaluated as it arrives (as in the daemon): once its
                # parts are in, before anything later
                _emit(engine.evaluate_nibp(row.t if current is None else current), out)
                nibp = False
            if current is None or row.t > current:
                # every tick before this row's time sees only the rows before it
                _emit(engine.tick(math.nextafter(row.t, -math.inf)), out)
                current = row.t
            if row.name in METRICS:
                value = float(row.value) if row.value else None
                engine.on_reading(_reading(row, value))
                nibp |= part
                continue
            name, args = _command(row)
            try:
                result = engine.execute(parse_command(name, args), row.t)
            except CommandError as exc:
                if row.name in ("ack", "pause") and warn is not None:
                    # A recorded acknowledgement whose alert no longer fires under the limits
                    # being tuned is expected, not an error in the trace: say so and go on.
                    warn(f"{trace}: row {row.number}: {row.name} skipped: {exc}")
                    continue
                raise TraceError(row.number, f"{row.name} refused: {exc}") from None
            _emit(result.events, out)
        if current is not None:
            if nibp:
                _emit(engine.evaluate_nibp(current), out)
            _emit(engine.tick(current), out)


def _reading(row: Row, value: float | None) -> Reading:
    info = METRICS[row.name]
    return Reading(
        bed=row.bed, device="replay", metric=row.name, value=value, unit=info.unit, ts=row.t,
        received=row.t, quality=row.flags, mdc=info.mdc, loinc=info.loinc,
    )


DAEMON_KEYS = {"node", "mqtt", "beds", "devices", "alarms", "state_dir", "outbox"}


def load_config(path: str | None) -> RuleSet:
    """Load the rule set from a rules TOML, or from the daemon config's ``[alarms] rules`` (so
    a clinic replays with exactly what its daemon runs); raises ValueError with one line per
    problem."""
    if path is None:
        return load_rules()
    try:
        top = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        top = {}
    if DAEMON_KEYS & set(top) and "rules" not in top:
        from kapmonitor.config import ConfigError
        from kapmonitor.config import load_config as load_daemon_config

        try:
            cfg = load_daemon_config(path)
        except ConfigError as exc:
            raise ValueError("\n".join(exc.problems)) from None
        return load_rules(cfg.alarms.rules)
    try:
        return load_rules(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file")
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: invalid TOML: {e}")
    except ValidationError as e:
        raise ValueError(
            "\n".join(f"{path}: {line}" for line in validation_problems(e, top="(top level)"))
        ) from None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="kapmonitor replay",
        description="Run the alarm engine over a CSV trace (t,bed,name,value); print events "
        "as JSON lines.",
    )
    p.add_argument("trace", help="CSV file with header t,bed,name,value")
    p.add_argument("--config", help="alarm rules TOML, or a daemon config (its [alarms] rules); "
                   "default: the shipped rules")
    args = p.parse_args(argv)
    try:
        rules = load_config(args.config)
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return EXIT_INVALID
    trace = Path(args.trace)
    if not trace.is_file():
        print(f"{trace}: no such file", file=sys.stderr)
        return EXIT_INVALID
    try:
        run(trace, rules, sys.stdout, warn=lambda text: print(text, file=sys.stderr))
    except TraceError as e:
        sys.stdout.flush()
        print(f"{trace}: {e}", file=sys.stderr)
        return EXIT_INVALID
    except UnicodeDecodeError as e:
        print(f"{trace}: not UTF-8 text ({e.reason} at byte {e.start})", file=sys.stderr)
        return EXIT_INVALID
    except BrokenPipeError:
        return 0
    except OSError as e:
        print(f"{trace}: cannot read: {e.strerror or e}", file=sys.stderr)
        return EXIT_INVALID
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Masimo serial "ASCII 1" output (Rad-8, Radical-7 and its rainbow variant).

One text record per second: a ``MM/DD/YY HH:MM:SS`` stamp, then space-separated ``KEY=VALUE``
tokens (docs/sources.md [P12]). Field sets differ by model and installed parameters,
so fields are read **by key**, never by position. Any run of ``-`` (``---%``, ``--.--``,
``+--``) means "no value". ``EXC`` is a hex bit field of exceptions (Rad-8 manual p. 4-24),
mapped to quality flags; ``ALARM`` bit meanings are proprietary, so any non-zero value only
means "the device is alarming" (flag ``device_alarm``, raw hex kept in status).

Stream robustness (Iukekini RAD7.py, yahnatan README): the first line after opening is often
partial, Radical-7 lines can start with NUL bytes, records may be followed by blank lines, and
line ends may be CR, LF or CRLF. Lines without the date stamp are skipped and counted.

Link: 9600 baud 8N1, no handshake; the Rad-8 needs a null-modem cable and "SEr" set to AS1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from kapmonitor.codecs._framing import LineSplitter, SkipCounter
from kapmonitor.codecs.base import DecodeError, Output, Problem, ProtocolSpec
from kapmonitor.model import METRICS, Measurement, measurement

_STAMP = re.compile(r"^(\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2})(?:\s+|$)")
_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")

# EXC bits (Rad-8 manual p. 4-24) → (status name, quality flag or None).
EXC_BITS: dict[int, tuple[str, str | None]] = {
    0x001: ("no_sensor", "sensor_off"),
    0x002: ("defective_sensor", "measurement_error"),
    0x004: ("low_perfusion", "low_perfusion"),
    0x008: ("pulse_search", "no_signal"),
    0x010: ("interference", "low_signal_quality"),
    0x020: ("sensor_off", "sensor_off"),
    0x040: ("ambient_light", "low_signal_quality"),
    0x080: ("unrecognized_sensor", "measurement_error"),
    0x400: ("low_signal_iq", "low_signal_quality"),
    0x800: ("set_mode", None),  # Masimo SET active: the normal state with a SET sensor
}

# Keys that become metrics; all other keys are kept verbatim in ``status``.
METRIC_KEYS = {"SPO2": "spo2", "BPM": "pulse_rate", "PI": "perfusion_index"}

Layout = Literal["rad8", "radical7", "rainbow"]


def parse_value(text: str) -> float | None:
    """A field value as a number; None for an invalid marker. Raises DecodeError if garbled."""
    core = text.strip().rstrip("%")
    if core and set(core.lstrip("+")) <= {"-", "."} and "-" in core:
        return None
    if _NUMBER.match(core):
        return float(core)
    raise DecodeError(f"unreadable value {text!r}")


def exc_flags(exc: int) -> tuple[list[str], set[str]]:
    """Exception names and quality flags set in an EXC bit field."""
    names: list[str] = []
    flags: set[str] = set()
    for bit, (name, flag) in EXC_BITS.items():
        if exc & bit:
            names.append(name)
            if flag:
                flags.add(flag)
    unknown = exc & ~sum(EXC_BITS)
    if unknown:
        names.append(f"0x{unknown:X}")
    return names, flags


@dataclass(frozen=True, slots=True)
class MasimoLine:
    """One parsed ASCII-1 record."""

    device_time: datetime | None
    fields: dict[str, str]


def parse_line(line: str) -> MasimoLine:
    """Split one record into its stamp and ``KEY=VALUE`` fields. Raises DecodeError."""
    text = line.replace("\x00", "").strip()
    m = _STAMP.match(text)
    if not m:
        raise DecodeError(f"no MM/DD/YY HH:MM:SS stamp at line start: {text[:40]!r}")
    try:
        when: datetime | None = datetime.strptime(m.group(1), "%m/%d/%y %H:%M:%S")
    except ValueError:
        when = None  # stamp-shaped but not a real date: keep the values, drop the clock
    fields: dict[str, str] = {}
    for token in text[m.end():].split():
        key, sep, value = token.partition("=")
        if sep and key:
            fields[key.upper()] = value
    if not fields:
        raise DecodeError("record has a stamp but no KEY=VALUE fields")
    return MasimoLine(when, fields)


def decode_line(line: str) -> list[Output]:
    """Measurements (and problems with single fields) of one record. Raises DecodeError."""
    rec = parse_line(line)
    out: list[Output] = []
    flags: set[str] = set()
    status: dict[str, Any] = {}
    if rec.device_time is not None:
        status["device_clock"] = rec.device_time.isoformat()
    exc_text = rec.fields.get("EXC")
    if exc_text is not None:
        try:
            exc = int(exc_text.split(":")[0], 16)
        except ValueError:
            out.append(Problem(f"unreadable EXC {exc_text!r}"))
        else:
            names, exc_q = exc_flags(exc)
            flags |= exc_q
            status["exc"] = exc_text
            status["exceptions"] = names
    alarm_text = rec.fields.get("ALARM")
    if alarm_text is not None:
        status["alarm"] = alarm_text
        try:
            if int(alarm_text, 16):
                flags.add("device_alarm")
        except ValueError:
            out.append(Problem(f"unreadable ALARM {alarm_text!r}"))
    for key, raw in rec.fields.items():
        if key not in METRIC_KEYS and key not in {"EXC", "ALARM"}:
            status[key.lower()] = raw
    for key, name in METRIC_KEYS.items():
        if key not in rec.fields:
            continue
        raw = rec.fields[key]
        try:
            value = parse_value(raw)
        except DecodeError as exc_:
            out.append(Problem(f"{key}: {exc_}"))
            value = None
        lo, hi = METRICS[name].plausible
        if value is not None and not lo <= value <= hi:
            out.append(Problem(f"{key}={raw} outside {lo:g}..{hi:g}; dropped (line noise?)"))
            value = None
        # The device clock drifts and ignores DST [P12]: keep it as metadata only,
        # so readings are stamped with host time.
        out.append(measurement(name, value, flags, None, status))
    return out


# -- encoder (used by the simulator and the round-trip tests) -----------------------------------


@dataclass(frozen=True, slots=True)
class MasimoRecord:
    """Values for one ASCII-1 line as a device would print them (None = dashes)."""

    time: datetime
    spo2: int | None
    bpm: int | None
    pi: float | None
    exc: int = 0x800
    alarm: int = 0
    sn: str | None = "0000056661"


def encode_line(rec: MasimoRecord, layout: Layout = "rad8", eol: bytes = b"\r\n") -> bytes:
    """One record in the exact field layout of the given model [P12]."""
    stamp = rec.time.strftime("%m/%d/%y %H:%M:%S")
    sn = "-" * 10 if rec.sn is None else rec.sn
    spo2 = "---" if rec.spo2 is None else f"{rec.spo2:03d}"
    bpm = "---" if rec.bpm is None else f"{rec.bpm:03d}"
    pi = "--.--" if rec.pi is None else f"{rec.pi:05.2f}"
    if layout == "rainbow":
        parts = [
            f"SN={sn}", f"SPO2={spo2}%", f"BPM={bpm}", f"PI={pi}", "SPCO=--%", "SPMET=--.-%",
            "SPHB=--.-", "SPOC=--", "RESVD=---", "DESAT=--", "PIDELTA=+--", "PVI=---",
            f"ALARM={rec.alarm:06X}", f"EXC={rec.exc:07X}", "EXC1=00000000",
        ]
    else:
        parts = [
            f"SN={sn}", f"SPO2={spo2}%", f"BPM={bpm}", f"PI={pi}%", "SPCO=--.-%",
            "SPMET=--.-%", "DESAT=--", "PIDELTA=+--",
        ]
        if layout == "radical7":
            parts.append("PVI=---")
        parts += [f"ALARM={rec.alarm:04X}", f"EXC={rec.exc:06X}"]
    return (stamp + " " + " ".join(parts)).encode("ascii") + eol


# -- decoder -----------------------------------------------------------------------------------


class MasimoDecoder:
    """ASCII-1 decoder. ``framing="line"``: each feed is one line (``kapmonitor decode``);
    ``framing="stream"``: feeds are raw serial chunks split on CR/LF/CRLF."""

    def __init__(self, framing: Literal["line", "stream"] = "stream") -> None:
        self.framing = framing
        self._lines = LineSplitter()
        self.skipped = SkipCounter("non-record text")
        self.records = 0

    @property
    def skipped_bytes(self) -> int:
        return self.skipped.total + self._lines.skipped.total

    def feed(self, chunk: bytes) -> list[Output]:
        if self.framing == "line":
            lines = [chunk.replace(b"\x00", b"")]
            if not lines[0].strip():
                return []
        else:
            lines = self._lines.feed(chunk)
        out: list[Output] = list(self._lines.skipped.flush())
        for raw in lines:
            out += self._line(raw)
        return out

    def close(self) -> list[Output]:
        out: list[Output] = []
        rest = self._lines.close()
        if rest.strip():
            # An unterminated final line may be cut short: report, do not guess.
            self.skipped.skip(len(rest), "unterminated last line")
        out += self._lines.skipped.flush()
        out += self.skipped.flush()
        return out

    def _line(self, raw: bytes) -> list[Output]:
        text = raw.decode("ascii", errors="replace")
        try:
            items = decode_line(text)
        except DecodeError as exc:
            self.skipped.skip(len(raw), str(exc))
            # In line mode each line stands alone: report it now rather than at the next good one.
            return list(self.skipped.flush()) if self.framing == "line" else []
        self.records += 1
        return [*self.skipped.flush(), *items]


def decode(line: bytes) -> list[Measurement]:
    """Convenience: the measurements of one line (problems dropped)."""
    return [m for m in MasimoDecoder("line").feed(line) if isinstance(m, Measurement)]


PROTOCOLS = {
    "masimo-ascii": ProtocolSpec(
        name="masimo-ascii",
        input="line",
        make=lambda: MasimoDecoder("line"),
        summary="Masimo Rad-8 / Radical-7 serial ASCII 1 lines (9600 8N1)",
    ),
}

__all__ = [
    "EXC_BITS",
    "MasimoDecoder",
    "MasimoLine",
    "MasimoRecord",
    "decode",
    "decode_line",
    "encode_line",
    "parse_line",
    "parse_value",
]

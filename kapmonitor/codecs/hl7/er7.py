"""HL7 v2 ER7 ("pipe-and-hat") syntax: a strict small parser, escapes, DTM times, the MSH.

What belongs here is the message syntax every HL7 message shares: delimiters from MSH-1/MSH-2,
segments and fields, escape sequences, the DTM time type, the header facts we route and
acknowledge with (:class:`Header`), the error codes of HL7 table 0357, and
:class:`Hl7Error` (what to answer for a message we refuse). Nothing about ORU content or codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from kapmonitor.codecs.base import DecodeError

AckCode = Literal["AA", "AE", "AR"]

# HL7 table 0357 (message error condition codes) entries we use in ERR-3.
ERR_SEGMENT_SEQUENCE = 100
ERR_REQUIRED_FIELD = 101
ERR_DATA_TYPE = 102
ERR_TABLE_VALUE = 103
ERR_UNSUPPORTED_MESSAGE = 200
ERR_UNSUPPORTED_EVENT = 201
ERR_UNSUPPORTED_PROCESSING_ID = 202
ERR_UNSUPPORTED_VERSION = 203
ERR_UNKNOWN_KEY = 204
ERR_APPLICATION = 207
ERROR_TEXT = {
    ERR_SEGMENT_SEQUENCE: "Segment sequence error",
    ERR_REQUIRED_FIELD: "Required field missing",
    ERR_DATA_TYPE: "Data type error",
    ERR_TABLE_VALUE: "Table value not found",
    ERR_UNSUPPORTED_MESSAGE: "Unsupported message type",
    ERR_UNSUPPORTED_EVENT: "Unsupported event code",
    ERR_UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    ERR_UNSUPPORTED_VERSION: "Unsupported version id",
    ERR_UNKNOWN_KEY: "Unknown key identifier",
    ERR_APPLICATION: "Application internal error",
}

_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent


STANDARD_DELIMITERS = Delimiters()


class Hl7Error(DecodeError):
    """A message-level problem: what to answer (``ack_code``), the HL7 error code (table 0357),
    where (``location`` as ``SEG^seq^field``) and the header when it could be read."""

    def __init__(
        self,
        message: str,
        *,
        ack_code: AckCode = "AR",
        code: int = ERR_APPLICATION,
        location: str = "",
        header: Header | None = None,
    ) -> None:
        super().__init__(message)
        self.ack_code: AckCode = ack_code
        self.code = code
        self.location = location
        self.header = header


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment with its raw (still escaped) fields; ``fields[0]`` is the segment name.

    Field numbers follow HL7: for MSH, MSH-1 is the field separator itself, so ``field(n)``
    shifts by one there.
    """

    name: str
    fields: tuple[str, ...]
    delimiters: Delimiters
    sequence: int = 1  # occurrence number of this segment name in the message (for ERR-2)

    def field(self, n: int) -> str:
        if self.name == "MSH":
            if n == 1:
                return self.delimiters.field
            n -= 1
        return self.fields[n] if 0 < n < len(self.fields) else ""

    def repetitions(self, n: int) -> list[str]:
        raw = self.field(n)
        if self.name == "MSH" and n == 2:
            return [raw]
        return raw.split(self.delimiters.repetition) if raw else []

    def components(self, n: int, rep: int = 0) -> list[str]:
        """Unescaped components of repetition ``rep`` of field ``n`` (subcomponents joined)."""
        reps = self.repetitions(n)
        if rep >= len(reps):
            return []
        d = self.delimiters
        return [unescape(c, d) for c in reps[rep].split(d.component)]

    def value(self, n: int, component: int = 1, rep: int = 0) -> str:
        comps = self.components(n, rep)
        return comps[component - 1].strip() if 0 < component <= len(comps) else ""

    def location(self, n: int | None = None) -> str:
        return f"{self.name}^{self.sequence}" + (f"^{n}" if n is not None else "")


@dataclass(frozen=True, slots=True)
class Message:
    segments: tuple[Segment, ...]
    delimiters: Delimiters

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)


_ESCAPES = {"F": "field", "S": "component", "T": "subcomponent", "R": "repetition", "E": "escape"}


def unescape(text: str, d: Delimiters = STANDARD_DELIMITERS) -> str:
    """Resolve HL7 escape sequences (subcomponent separators are left in place).

    Formatting escapes (``\\H\\``, ``\\N\\``, ``\\.br\\``…) are dropped; unknown or unclosed
    sequences are kept as written rather than guessed at.
    """
    if d.escape not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != d.escape:
            out.append(ch)
            i += 1
            continue
        j = text.find(d.escape, i + 1)
        if j < 0:
            out.append(text[i:])
            break
        seq = text[i + 1 : j]
        if seq in _ESCAPES:
            out.append(getattr(d, _ESCAPES[seq]))
        elif seq.startswith("X") and len(seq) > 1 and len(seq) % 2 == 1:
            try:
                out.append(bytes.fromhex(seq[1:]).decode("latin-1"))
            except ValueError:
                out.append(text[i : j + 1])
        elif seq in ("H", "N") or seq.startswith("."):
            pass
        else:
            out.append(text[i : j + 1])
        i = j + 1
    return "".join(out)


def escape(text: str, d: Delimiters = STANDARD_DELIMITERS) -> str:
    """Escape delimiter characters in a text value; CR/LF become spaces (they end segments)."""
    out: list[str] = []
    names = {v: k for k, v in _ESCAPES.items()}
    for ch in text:
        if ch in ("\r", "\n"):
            out.append(" ")
            continue
        for code, attr in names.items():
            if ch == getattr(d, code):
                out.append(f"{d.escape}{attr}{d.escape}")
                break
        else:
            out.append(ch)
    return "".join(out)


def _decode_text(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # MSH-18 "8859/1" and older monitors


def parse_message(data: bytes | str) -> Message:
    """Split an ER7 message into segments and fields. Raises :class:`Hl7Error` (AR).

    Segment ends may be CR (the standard), LF or CRLF (files from editors).
    """
    text = _decode_text(data)
    lines = [ln for ln in _SEGMENT_SPLIT.split(text) if ln.strip()]
    if not lines:
        raise Hl7Error("empty message", code=ERR_SEGMENT_SEQUENCE)
    head = lines[0].lstrip().lstrip("\ufeff")  # editors may add a byte-order mark
    if head[:3] in ("FHS", "BHS"):
        raise Hl7Error("HL7 batch files are not supported", code=ERR_UNSUPPORTED_MESSAGE)
    if not head.startswith("MSH") or len(head) < 8:
        raise Hl7Error("message does not start with an MSH segment", code=ERR_SEGMENT_SEQUENCE)
    fs = head[3]
    enc_end = head.find(fs, 4)
    enc = head[4:] if enc_end < 0 else head[4:enc_end]
    if (
        len(enc) not in (4, 5)
        or len(set(enc + fs)) != len(enc) + 1
        or any(c.isalnum() or c.isspace() for c in enc + fs)
    ):
        raise Hl7Error(f"invalid MSH delimiters {fs + enc!r}", code=ERR_DATA_TYPE,
                       location="MSH^1^2")
    d = Delimiters(fs, enc[0], enc[1], enc[2], enc[3])
    counts: dict[str, int] = {}
    segments: list[Segment] = []
    for k, line in enumerate([head, *lines[1:]]):
        parts = line.split(fs)
        name = parts[0].strip() if k else "MSH"
        if not _SEGMENT_NAME.match(name):
            raise Hl7Error(f"segment {k + 1} has an invalid name {name[:10]!r}",
                           code=ERR_SEGMENT_SEQUENCE, location=f"{name[:3]}^{k + 1}")
        if name == "MSH" and k:
            raise Hl7Error("more than one MSH segment in a message", code=ERR_SEGMENT_SEQUENCE,
                           location=f"MSH^{counts.get('MSH', 0) + 1}")
        counts[name] = counts.get(name, 0) + 1
        segments.append(Segment(name, tuple([name, *parts[1:]]), d, counts[name]))
    return Message(tuple(segments), d)


# HL7 DTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]
_DTM = re.compile(
    r"^(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?)?)?)?"
    r"(?:([+-])(\d{2})(\d{2}))?$",
    re.ASCII,  # HL7 numbers are ASCII digits; "٣" or "²" are not 3 or 2
)


def parse_dtm(text: str) -> datetime | None:
    """HL7 date/time → datetime (aware when an offset is given, else naive). '' → None."""
    text = text.strip()
    if not text:
        return None
    m = _DTM.match(text)
    if not m:
        raise DecodeError(f"invalid HL7 date/time {text[:30]!r}")
    y, mo, dd, hh, mi, ss, frac, sign, oh, om = m.groups()
    tz = None
    if sign:
        offset = timedelta(hours=int(oh), minutes=int(om))
        if offset >= timedelta(hours=24):
            raise DecodeError(f"invalid HL7 time zone in {text[:30]!r}")
        tz = timezone(-offset if sign == "-" else offset)
    try:
        return datetime(
            int(y), int(mo or 1), int(dd or 1), int(hh or 0), int(mi or 0), int(ss or 0),
            int((frac or "0").ljust(6, "0")), tzinfo=tz,
        )
    except ValueError as exc:
        raise DecodeError(f"invalid HL7 date/time {text[:30]!r}: {exc}") from None


def format_dtm(t: datetime) -> str:
    """datetime → HL7 DTM to the second (with the offset when ``t`` is aware)."""
    s = t.strftime("%Y%m%d%H%M%S")
    if t.tzinfo is not None:
        off = t.utcoffset() or timedelta(0)
        minutes = int(off.total_seconds() // 60)
        sign = "-" if minutes < 0 else "+"
        s += f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return s


@dataclass(frozen=True, slots=True)
class Header:
    """The MSH facts we route and acknowledge with."""

    sending_application: tuple[str, ...]  # HD components (namespace id, universal id, type)
    sending_facility: tuple[str, ...]
    receiving_application: tuple[str, ...]
    receiving_facility: tuple[str, ...]
    message_code: str
    trigger_event: str
    control_id: str
    processing_id: str
    version: str
    timestamp: datetime | None = None
    delimiters: Delimiters = STANDARD_DELIMITERS

    @property
    def message_type(self) -> str:
        return f"{self.message_code}^{self.trigger_event}"


def read_header(msg: Message) -> Header:
    msh = msg.msh
    return Header(
        sending_application=tuple(msh.components(3)),
        sending_facility=tuple(msh.components(4)),
        receiving_application=tuple(msh.components(5)),
        receiving_facility=tuple(msh.components(6)),
        message_code=msh.value(9, 1),
        trigger_event=msh.value(9, 2),
        control_id=msh.value(10),
        processing_id=msh.value(11),
        version=msh.value(12),
        timestamp=_try_dtm(msh.value(7)),
        delimiters=msg.delimiters,
    )


def _try_dtm(text: str) -> datetime | None:
    try:
        return parse_dtm(text)
    except DecodeError:
        return None


def peek_header(data: bytes | str) -> Header | None:
    """Best-effort MSH of a message that failed to parse, to echo MSH-10 in the ACK."""
    text = _decode_text(data).lstrip()
    first = _SEGMENT_SPLIT.split(text, maxsplit=1)[0]
    if not first.startswith("MSH") or len(first) < 8:
        return None
    try:
        return read_header(parse_message(first))
    except DecodeError:
        return None

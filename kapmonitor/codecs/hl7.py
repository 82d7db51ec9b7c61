"""HL7 v2 ORU^R01 vitals (IHE PCD-01) over MLLP, sans-IO.

Bedside and vital-signs monitors (GE B-series, Philips Efficia, Mindray via its gateway) export
periodic ``ORU^R01`` reports over MLLP/TCP (docs/sources.md [P15], [P16]).
This module holds everything that is bytes and text, and nothing that waits or talks:

* :class:`MllpDeframer` — ``0x0B`` … ``0x1C 0x0D`` framing with resync and a size limit;
* :func:`parse_message` — a strict small ER7 parser (delimiters from MSH-1/MSH-2, escapes);
* :func:`read_oru` — ORU^R01 → observations mapped onto kapmonitor metrics, plus routing facts
  (MSH-3/4, PV1-3, OBX-18) and per-segment problems;
* :func:`build_ack` — the ``ACK`` with ``MSA|AA`` or ``AE``/``AR`` and ``ERR`` segments;
* :func:`encode_oru` — an ORU^R01 writer in the GE, Philips Efficia and Mindray styles (simulator).

Why no HL7 library: python-hl7 (last release 2022, "alpha", untyped, raises bare IndexError on
short input) and hl7apy (about 1 MB of version tables, ~10 ms a message, validates against
message structures vendor exports do not follow) both add more than the ~100 lines of ER7
splitting needed here, and the per-vendor mapping is ours either way.

Observation codes: IEEE 11073-10101 32-bit codes (``150456^MDC_PULS_OXIM_SAT_O2^MDC``), their
reference ids, Philips "MDIL" ``partition-term`` hex (``0002-4bb8``; the same term codes as
IntelliVue), and LOINC (``LN``). Units: MDC codes, UCUM and the usual non-UCUM spellings;
pressures in kPa are converted to mm[Hg].
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal

from kapmonitor.codecs.base import DecodeError, Note, Output, Problem, ProtocolSpec
from kapmonitor.model import METRICS, Measurement, measurement

# --------------------------------------------------------------------------------------------
# MLLP framing
# --------------------------------------------------------------------------------------------

MLLP_START = 0x0B  # VT
MLLP_END = 0x1C  # FS, followed by CR
CR = 0x0D
DEFAULT_MAX_MESSAGE = 1 << 20  # 1 MiB: a PCD-01 report is a few kB; more is a broken sender


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete MLLP payload (the HL7 message bytes, without VT/FS/CR)."""

    data: bytes


class MllpDeframer:
    """Incremental MLLP reader: ``feed`` bytes, get :class:`Frame` and :class:`Problem` items.

    Bytes outside a frame are skipped and reported once per run; a new VT inside a frame means
    the previous frame was cut short (reported, dropped); a frame longer than ``max_size`` is
    dropped and the reader waits for the next VT. A CR after FS is optional (some senders omit
    it), so FS alone ends the frame.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._in_frame = False
        self._oversize = False
        self._after_fs = False
        self._garbage = 0

    @property
    def in_frame(self) -> bool:
        return self._in_frame

    def feed(self, chunk: bytes) -> list[Frame | Problem]:
        out: list[Frame | Problem] = []
        i = 0
        n = len(chunk)
        while i < n:
            if self._after_fs:
                self._after_fs = False
                if chunk[i] == CR:
                    i += 1
                    continue
            if not self._in_frame:
                j = chunk.find(MLLP_START, i)
                skipped = (n if j < 0 else j) - i
                self._garbage += skipped
                if j < 0:
                    break
                self._flush_garbage(out)
                self._in_frame = True
                self._oversize = False
                self._buf.clear()
                i = j + 1
                continue
            # Inside a frame: look for the end, or a new start that aborts this frame.
            end = chunk.find(MLLP_END, i)
            restart = chunk.find(MLLP_START, i)
            stop = min(x for x in (end, restart, n) if x >= 0)
            self._append(chunk[i:stop], out)
            if stop == n:
                break
            if stop == restart and (end < 0 or restart < end):
                out.append(Problem(f"MLLP frame cut short after {len(self._buf)} bytes"))
                self._buf.clear()
                self._oversize = False
                i = restart + 1
                continue
            i = end + 1
            self._in_frame = False
            self._after_fs = True
            if self._oversize:
                continue
            out.append(Frame(bytes(self._buf)))
            self._buf.clear()
        return out

    def close(self) -> list[Frame | Problem]:
        out: list[Frame | Problem] = []
        self._flush_garbage(out)
        if self._in_frame and (self._buf or self._oversize):
            out.append(Problem(f"stream ended inside an MLLP frame ({len(self._buf)} bytes)"))
        self._in_frame = False
        self._buf.clear()
        return out

    def _append(self, data: bytes, out: list[Frame | Problem]) -> None:
        if self._oversize:
            return
        if len(self._buf) + len(data) > self.max_size:
            out.append(Problem(f"MLLP frame larger than {self.max_size} bytes dropped"))
            self._oversize = True
            self._buf.clear()
            return
        self._buf += data

    def _flush_garbage(self, out: list[Frame | Problem]) -> None:
        if self._garbage:
            out.append(Problem(f"skipped {self._garbage} bytes outside MLLP frames"))
            self._garbage = 0


def frame(message: bytes) -> bytes:
    """Wrap one HL7 message in MLLP framing."""
    if bytes([MLLP_START]) in message or bytes([MLLP_END]) in message:
        raise ValueError("an HL7 message must not contain the MLLP bytes 0x0B or 0x1C")
    return bytes([MLLP_START]) + message + bytes([MLLP_END, CR])


# --------------------------------------------------------------------------------------------
# ER7 (pipe-and-hat) parsing
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Code and unit tables
# --------------------------------------------------------------------------------------------

MDC_PARTITION_SCADA = 2
MDC_PARTITION_DIM = 4


def mdc32(partition: int, term: int) -> int:
    return partition * 65536 + term


@dataclass(frozen=True, slots=True)
class Nomenclature:
    code: int
    ref_id: str
    metric: str
    note: str = ""


# Observation codes → metric ([P17], [P10], [P16] in docs/sources.md). Several codes may
# map to one metric: vendors pick different pulse/respiration variants for the same vital.
OBSERVATION_CODES: dict[int, Nomenclature] = {
    n.code: n
    for n in (
        Nomenclature(150456, "MDC_PULS_OXIM_SAT_O2", "spo2"),
        Nomenclature(149530, "MDC_PULS_OXIM_PULS_RATE", "pulse_rate"),
        Nomenclature(149538, "MDC_PLETH_PULS_RATE", "pulse_rate",
                     "Philips NOM_PLETH_PULS_RATE 0x4822"),
        Nomenclature(149514, "MDC_PULS_RATE", "pulse_rate",
                     "Philips Efficia 0002-480a 'Pulse'"),
        Nomenclature(147842, "MDC_ECG_HEART_RATE", "heart_rate"),
        Nomenclature(150021, "MDC_PRESS_BLD_NONINV_SYS", "nibp_sys"),
        Nomenclature(150022, "MDC_PRESS_BLD_NONINV_DIA", "nibp_dia"),
        Nomenclature(150023, "MDC_PRESS_BLD_NONINV_MEAN", "nibp_mean"),
        Nomenclature(150301, "MDC_PRESS_CUFF_SYS", "nibp_sys", "cuff-pressure alias"),
        Nomenclature(150302, "MDC_PRESS_CUFF_DIA", "nibp_dia", "cuff-pressure alias (verify)"),
        Nomenclature(150303, "MDC_PRESS_CUFF_MEAN", "nibp_mean", "cuff-pressure alias (verify)"),
        Nomenclature(151562, "MDC_RESP_RATE", "resp_rate"),
        Nomenclature(151552, "MDC_RESP", "resp_rate", "Philips Efficia 0002-5000 'Resp'"),
        Nomenclature(151570, "MDC_AWAY_RESP_RATE", "resp_rate", "airway (capnography) rate"),
        Nomenclature(150488, "MDC_BLD_PERF_INDEX", "perfusion_index"),
        Nomenclature(150448, "MDC_PULS_OXIM_PERF_REL", "perfusion_index",
                     "Philips relative perfusion 0x4BB0"),
    )
}
_BY_REF_ID = {n.ref_id: n for n in OBSERVATION_CODES.values()}

# LOINC → metric [P18]. 8867-4 is generic heart rate.
LOINC_CODES: dict[str, str] = {
    "59408-5": "spo2",
    "2708-6": "spo2",
    "8889-8": "pulse_rate",
    "8867-4": "heart_rate",
    "8480-6": "nibp_sys",
    "8462-4": "nibp_dia",
    "8478-0": "nibp_mean",
    "9279-1": "resp_rate",
    "61006-3": "perfusion_index",
}


@dataclass(frozen=True, slots=True)
class UnitInfo:
    ucum: str  # canonical UCUM unit this converts to
    factor: float = 1.0


_MMHG_PER_KPA = 760.0 / 101.325

# MDC dimension codes (partition 4) → UCUM (IntelliVue NOM_DIM_* term codes = MDC terms).
MDC_UNITS: dict[int, tuple[str, UnitInfo]] = {
    262688: ("MDC_DIM_PERCENT", UnitInfo("%")),
    264864: ("MDC_DIM_BEAT_PER_MIN", UnitInfo("/min")),
    264896: ("MDC_DIM_PULS_PER_MIN", UnitInfo("/min")),
    264928: ("MDC_DIM_RESP_PER_MIN", UnitInfo("/min")),
    264672: ("MDC_DIM_PER_MIN", UnitInfo("/min")),
    266016: ("MDC_DIM_MMHG", UnitInfo("mm[Hg]")),
    265987: ("MDC_DIM_KILO_PASCAL", UnitInfo("mm[Hg]", _MMHG_PER_KPA)),
    265986: ("MDC_DIM_HECTO_PASCAL", UnitInfo("mm[Hg]", _MMHG_PER_KPA / 10)),
}
_UNIT_BY_REF_ID = {ref: info for ref, info in MDC_UNITS.values()}

# UCUM and the common non-UCUM spellings seen in device exports (matched case-sensitively
# first, then case-insensitively for the non-UCUM ones).
UCUM_UNITS: dict[str, UnitInfo] = {
    "%": UnitInfo("%"),
    "mm[Hg]": UnitInfo("mm[Hg]"),
    "mmHg": UnitInfo("mm[Hg]"),
    "kPa": UnitInfo("mm[Hg]", _MMHG_PER_KPA),
    "hPa": UnitInfo("mm[Hg]", _MMHG_PER_KPA / 10),
    "/min": UnitInfo("/min"),
    "1/min": UnitInfo("/min"),
    "min-1": UnitInfo("/min"),
    "{beats}/min": UnitInfo("/min"),
    "{beat}/min": UnitInfo("/min"),
    "{pulse}/min": UnitInfo("/min"),
    "{breaths}/min": UnitInfo("/min"),
    "{breath}/min": UnitInfo("/min"),
    "{resp}/min": UnitInfo("/min"),
    "bpm": UnitInfo("/min"),
    "rpm": UnitInfo("/min"),
    "brpm": UnitInfo("/min"),
}
_UCUM_FOLDED = {k.casefold(): v for k, v in UCUM_UNITS.items()}

_MDIL = re.compile(r"^([0-9A-Fa-f]{4})-([0-9A-Fa-f]{4})$")


def _code_number(identifier: str) -> int | None:
    """A numeric code (``150456``) → int; None unless it is 1–10 ASCII digits (``str.isdigit``
    also accepts "²", which ``int`` rejects, and ``int`` refuses over 4300 digits)."""
    if 0 < len(identifier) <= 10 and identifier.isascii() and identifier.isdigit():
        return int(identifier)
    return None


def _mdil_code(identifier: str) -> int | None:
    """Philips 'MDIL' ``pppp-tttt`` (hex partition-term) → 32-bit MDC code."""
    m = _MDIL.match(identifier)
    return mdc32(int(m.group(1), 16), int(m.group(2), 16)) if m else None


@dataclass(frozen=True, slots=True)
class Coded:
    """A CWE/CE value: identifier^text^coding system (+ the alternate triplet)."""

    identifier: str = ""
    text: str = ""
    system: str = ""
    alt_identifier: str = ""
    alt_text: str = ""
    alt_system: str = ""

    @classmethod
    def from_components(cls, comps: Sequence[str]) -> Coded:
        c = [x.strip() for x in comps] + [""] * 6
        return cls(c[0], c[1], c[2], c[3], c[4], c[5])

    def triplets(self) -> list[tuple[str, str, str]]:
        out = [(self.identifier, self.text, self.system)]
        if self.alt_identifier or self.alt_text:
            out.append((self.alt_identifier, self.alt_text, self.alt_system))
        return out

    def __str__(self) -> str:
        return "^".join((self.identifier, self.text, self.system)).rstrip("^") or "(empty)"


def code_key(system: str, identifier: str) -> str:
    """Key for user code maps: ``SYSTEM:identifier`` (system upper-cased, may be empty)."""
    return f"{system.strip().upper()}:{identifier.strip()}"


def map_observation(coded: Coded, extra: Mapping[str, str] | None = None) -> str | None:
    """OBX-3 → metric name, or None when the code is not one kapmonitor reads.

    ``extra`` maps ``SYSTEM:identifier`` (see :func:`code_key`) or a bare identifier to a
    metric, for vendor-private codes (e.g. Mindray ``99MNDRY``) configured per site.
    """
    for ident, text, system in coded.triplets():
        sysu = system.upper()
        if extra:
            for key in (code_key(system, ident), ident):
                if key in extra:
                    return extra[key]
        if sysu in ("MDC", "MDIL", "") or sysu.startswith("MDC"):
            num = _code_number(ident)
            if num is None and sysu in ("MDIL", ""):
                num = _mdil_code(ident)
            if num is not None and num in OBSERVATION_CODES:
                return OBSERVATION_CODES[num].metric
            for ref in (ident, text):
                if ref in _BY_REF_ID:
                    return _BY_REF_ID[ref].metric
        if sysu in ("LN", "LOINC", "") and ident in LOINC_CODES:
            return LOINC_CODES[ident]
    return None


def map_unit(coded: Coded) -> UnitInfo | None:
    """OBX-6 → the UCUM unit and factor, or None when the unit is unknown."""
    for ident, text, system in coded.triplets():
        sysu = system.upper()
        num = _code_number(ident)
        if num is None:
            num = _mdil_code(ident)
        if num is not None and num in MDC_UNITS and sysu in ("MDC", "MDIL", ""):
            return MDC_UNITS[num][1]
        if num is not None and sysu == "MDIL" and num not in MDC_UNITS:
            continue  # MDIL code we do not know: only the text may still tell
        for cand in (ident, text):
            if cand in _UNIT_BY_REF_ID:
                return _UNIT_BY_REF_ID[cand]
            if cand in UCUM_UNITS:
                return UCUM_UNITS[cand]
            if cand and cand.casefold() in _UCUM_FOLDED:
                return _UCUM_FOLDED[cand.casefold()]
    return None


# --------------------------------------------------------------------------------------------
# ORU^R01 reading
# --------------------------------------------------------------------------------------------

# OBX-11 result status values that carry no result (X = cannot be obtained, N = not asked,
# I = pending, D = deleted, W = wrong/withdrawn).
NO_RESULT_STATUSES = frozenset({"X", "N", "I", "D", "W"})
RESULT_STATUSES = frozenset({"F", "R", "C", "P", "S", "A", "U", ""})
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$", re.ASCII)


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


@dataclass(frozen=True, slots=True)
class Location:
    """PV1-3 assigned patient location (PL): point of care ^ room ^ bed ^ facility."""

    point_of_care: str = ""
    room: str = ""
    bed: str = ""
    facility: str = ""

    def __bool__(self) -> bool:
        return any((self.point_of_care, self.room, self.bed, self.facility))


@dataclass(frozen=True, slots=True)
class SegmentProblem:
    location: str  # ERR-2 style: SEG^sequence^field
    code: int  # HL7 table 0357
    message: str


@dataclass(frozen=True, slots=True)
class Observation:
    """One mapped OBX: the measurement plus where it came from."""

    measurement: Measurement
    segment: str  # e.g. "OBX^3"
    code: str  # OBX-3 as written (identifier^text^system)
    equipment: str  # OBX-18 entity id (EUI-64), inherited within the OBR group if absent
    time: datetime | None  # OBX-14, else OBR-7


@dataclass(frozen=True, slots=True)
class OruReport:
    header: Header
    location: Location
    observations: tuple[Observation, ...]
    unmapped: tuple[str, ...] = ()  # OBX-3 codes with values we do not read
    problems: tuple[SegmentProblem, ...] = ()
    equipment: tuple[str, ...] = field(default=())  # every OBX-18 entity id seen, in order

    @property
    def ack_code(self) -> AckCode:
        return "AE" if self.problems else "AA"


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


def check_oru_header(header: Header) -> None:
    """Raise :class:`Hl7Error` (AR) when the message is not an ORU^R01 we can accept."""
    if not header.control_id:
        raise Hl7Error("MSH-10 message control id missing", code=ERR_REQUIRED_FIELD,
                       location="MSH^1^10", header=header)
    if header.message_code != "ORU":
        raise Hl7Error(f"unsupported message type {header.message_type!r} (only ORU^R01)",
                       code=ERR_UNSUPPORTED_MESSAGE, location="MSH^1^9", header=header)
    if header.trigger_event != "R01":
        raise Hl7Error(f"unsupported event {header.message_type!r} (only ORU^R01)",
                       code=ERR_UNSUPPORTED_EVENT, location="MSH^1^9", header=header)
    if not header.version.startswith("2."):
        raise Hl7Error(f"unsupported HL7 version {header.version!r}",
                       code=ERR_UNSUPPORTED_VERSION, location="MSH^1^12", header=header)
    if header.processing_id not in ("P", "T", "D", ""):
        raise Hl7Error(f"unsupported processing id {header.processing_id!r}",
                       code=ERR_UNSUPPORTED_PROCESSING_ID, location="MSH^1^11", header=header)


def read_oru(data: bytes | str, extra_codes: Mapping[str, str] | None = None) -> OruReport:
    """Parse and map one ORU^R01. Message-level problems raise :class:`Hl7Error`; problems in
    single OBX segments are collected in ``problems`` (the rest of the message still counts).
    """
    msg = parse_message(data)
    header = read_header(msg)
    check_oru_header(header)
    # Training/debug messages are real traffic from a monitor in demo mode: mark, never alarm.
    base_flags = {"demo"} if header.processing_id in ("T", "D") else set()

    pv1 = msg.first("PV1")
    location = Location()
    if pv1 is not None:
        pl = pv1.components(3) + [""] * 4
        location = Location(pl[0].strip(), pl[1].strip(), pl[2].strip(), pl[3].strip())

    observations: list[Observation] = []
    unmapped: list[str] = []
    problems: list[SegmentProblem] = []
    equipment_seen: list[str] = []
    group_equipment = ""
    group_time: datetime | None = None
    for seg in msg.segments[1:]:
        if seg.name == "OBR":
            group_equipment = ""
            try:
                group_time = parse_dtm(seg.value(7))
            except DecodeError as exc:
                group_time = None
                problems.append(SegmentProblem(seg.location(7), ERR_DATA_TYPE, str(exc)))
            continue
        if seg.name != "OBX":
            continue
        equipment = seg.value(18)
        if equipment:
            group_equipment = equipment
            if equipment not in equipment_seen:
                equipment_seen.append(equipment)
        obs, problem, unknown = _read_obx(
            seg, group_equipment, group_time, base_flags, extra_codes
        )
        if problem is not None:
            problems.append(problem)
        if unknown:
            unmapped.append(unknown)
        if obs is not None:
            observations.append(obs)
    return OruReport(
        header, location, tuple(observations), tuple(unmapped), tuple(problems),
        tuple(equipment_seen),
    )


def _read_obx(
    seg: Segment,
    equipment: str,
    group_time: datetime | None,
    base_flags: set[str],
    extra_codes: Mapping[str, str] | None,
) -> tuple[Observation | None, SegmentProblem | None, str]:
    coded = Coded.from_components(seg.components(3))
    value_type = seg.value(2).upper()
    status = seg.value(11).upper()
    raw_values = seg.repetitions(5)
    metric_name = map_observation(coded, extra_codes)
    if metric_name is None:
        # Header OBXs (MDS/VMD/channel, status X, no value) and metrics we do not read.
        has_value = any(v.strip() for v in raw_values)
        return None, None, (str(coded) if has_value else "")
    if metric_name not in METRICS:
        return None, SegmentProblem(seg.location(3), ERR_TABLE_VALUE,
                                    f"code {coded} maps to unknown metric {metric_name!r}"), ""

    def bad(n: int, code: int, text: str) -> tuple[None, SegmentProblem, str]:
        return None, SegmentProblem(seg.location(n), code, f"{seg.location()} {coded}: {text}"), ""

    if status not in NO_RESULT_STATUSES and status not in RESULT_STATUSES:
        return bad(11, ERR_TABLE_VALUE, f"unknown result status {status!r}")
    try:
        obs_time = parse_dtm(seg.value(14)) or group_time
    except DecodeError as exc:
        return bad(14, ERR_DATA_TYPE, str(exc))

    info = METRICS[metric_name]
    units = Coded.from_components(seg.components(6))
    raw_status: dict[str, object] = {"obx": seg.location(), "code": str(coded)}
    if status:
        raw_status["result_status"] = status
    abnormal = seg.value(8)
    if abnormal:
        raw_status["abnormal_flags"] = abnormal
    method = seg.value(17)
    if method:
        raw_status["method"] = method
    if units.identifier or units.text:
        raw_status["unit"] = str(units)

    value: float | None = None
    if status not in NO_RESULT_STATUSES:
        if len([v for v in raw_values if v.strip()]) > 1:
            return bad(5, ERR_DATA_TYPE, "repeated value for a numeric observation")
        raw = seg.value(5) if value_type != "SN" else ""
        if value_type == "SN":
            sn = seg.components(5) + [""] * 4
            comparator, num1, sep, num2 = (x.strip() for x in sn[:4])
            if sep or num2 or comparator not in ("", "="):
                return bad(5, ERR_DATA_TYPE, f"structured value {seg.field(5)!r} is not one number")
            raw = num1
        elif value_type not in ("NM", "ST", "SN", "") and raw:
            return bad(2, ERR_DATA_TYPE, f"value type {value_type!r} is not numeric")
        if raw:
            if not _NUMBER.match(raw):
                return bad(5, ERR_DATA_TYPE, f"value {raw[:20]!r} is not a number")
            unit = map_unit(units) if (units.identifier or units.text) else UnitInfo(info.unit)
            if unit is None:
                return bad(6, ERR_TABLE_VALUE, f"unknown unit {units}")
            if unit.ucum != info.unit:
                return bad(6, ERR_TABLE_VALUE,
                           f"unit {units} does not fit {metric_name} ({info.unit})")
            value = float(raw) * unit.factor
            if unit.factor != 1.0:
                value = round(value, 1)
            if not math.isfinite(value):
                return bad(5, ERR_DATA_TYPE, f"value {raw[:20]!r} is not finite")
            if not (units.identifier or units.text):
                raw_status["unit_assumed"] = True
    m = measurement(metric_name, value, base_flags, obs_time, raw_status)
    return Observation(m, seg.location(), str(coded), equipment, obs_time), None, ""


# --------------------------------------------------------------------------------------------
# ACK
# --------------------------------------------------------------------------------------------


def build_ack(
    header: Header | None,
    code: AckCode,
    *,
    control_id: str,
    timestamp: datetime,
    text: str = "",
    problems: Sequence[SegmentProblem] = (),
    error_code: int | None = None,
    error_location: str = "",
    application: str = "KAPMONITOR",
    facility: str = "",
) -> bytes:
    """The ACK for a received message (ER7 bytes, CR-separated, not MLLP-framed).

    ``header`` is the received MSH (None when it could not be read: then MSA-2 stays empty).
    AE/AR carry the reason in MSA-3 and one ERR segment per problem (v2.5 layout: ERR-2
    location, ERR-3 code from HL7 table 0357, ERR-4 severity, ERR-8 user message).
    """
    d = STANDARD_DELIMITERS
    fs = d.field
    version = header.version if header and header.version.startswith("2.") else "2.6"
    event = header.trigger_event if header and header.trigger_event else "R01"
    processing = header.processing_id if header and header.processing_id else "P"

    def hd(parts: Sequence[str]) -> str:
        return d.component.join(escape(p, d) for p in parts).rstrip(d.component)

    msh = [
        "MSH", d.encoding_characters, escape(application, d), escape(facility, d),
        hd(header.sending_application) if header else "",
        hd(header.sending_facility) if header else "",
        format_dtm(timestamp), "", f"ACK{d.component}{event}{d.component}ACK",
        escape(control_id, d), processing, version,
    ]
    reason = text or (problems[0].message if problems else "")
    msa = ["MSA", code, escape(header.control_id, d) if header else ""]
    if code != "AA" and reason:
        msa.append(escape(reason[:200], d))
    segs = [fs.join(msh), fs.join(msa)]
    errs: list[tuple[str, int, str]] = [(p.location, p.code, p.message) for p in problems]
    if code != "AA" and not errs and (error_code is not None or reason):
        errs.append((error_location, error_code or ERR_APPLICATION, reason))
    for loc, ecode, message in errs:
        err_id = f"{ecode}{d.component}{ERROR_TEXT.get(ecode, 'Error')}{d.component}HL70357"
        segs.append(fs.join(["ERR", "", loc, err_id, "E", "", "", "", escape(message[:200], d)]))
    return ("\r".join(segs) + "\r").encode("utf-8")


def ack_for_error(
    exc: Hl7Error, *, control_id: str, timestamp: datetime, application: str = "KAPMONITOR",
    facility: str = "",
) -> bytes:
    return build_ack(
        exc.header, exc.ack_code, control_id=control_id, timestamp=timestamp, text=str(exc),
        error_code=exc.code, error_location=exc.location, application=application,
        facility=facility,
    )


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


@dataclass(frozen=True, slots=True)
class Ack:
    """A parsed ACK (what a sender reads back)."""

    code: str
    control_id: str  # MSA-2: the acknowledged message's MSH-10
    text: str
    errors: tuple[str, ...]


def parse_ack(data: bytes | str) -> Ack:
    msg = parse_message(data)
    if msg.msh.value(9, 1) != "ACK":
        raise Hl7Error(f"not an ACK: {msg.msh.value(9, 1)!r}", code=ERR_UNSUPPORTED_MESSAGE)
    msa = msg.first("MSA")
    if msa is None:
        raise Hl7Error("ACK without MSA segment", code=ERR_SEGMENT_SEQUENCE)
    errors = tuple(
        f"{'^'.join(e.components(2))} {e.value(3, 1)} {e.value(8)}".strip() for e in msg.all("ERR")
    )
    return Ack(msa.value(1), msa.value(2), msa.value(3), errors)


# --------------------------------------------------------------------------------------------
# ORU^R01 encoder (simulators)
# --------------------------------------------------------------------------------------------

VendorStyle = Literal["ge", "philips", "mindray"]
VENDOR_STYLES: tuple[VendorStyle, ...] = ("ge", "philips", "mindray")

# Metric → (MDC code, ref id, unit code, unit ref id) used by the GE/Mindray (PCD-01) styles.
_PCD_CODES: dict[str, tuple[int, str, int, str]] = {
    "heart_rate": (147842, "MDC_ECG_HEART_RATE", 264864, "MDC_DIM_BEAT_PER_MIN"),
    "spo2": (150456, "MDC_PULS_OXIM_SAT_O2", 262688, "MDC_DIM_PERCENT"),
    "pulse_rate": (149530, "MDC_PULS_OXIM_PULS_RATE", 264864, "MDC_DIM_BEAT_PER_MIN"),
    "perfusion_index": (150488, "MDC_BLD_PERF_INDEX", 262688, "MDC_DIM_PERCENT"),
    "nibp_sys": (150021, "MDC_PRESS_BLD_NONINV_SYS", 266016, "MDC_DIM_MMHG"),
    "nibp_dia": (150022, "MDC_PRESS_BLD_NONINV_DIA", 266016, "MDC_DIM_MMHG"),
    "nibp_mean": (150023, "MDC_PRESS_BLD_NONINV_MEAN", 266016, "MDC_DIM_MMHG"),
    "resp_rate": (151562, "MDC_RESP_RATE", 264928, "MDC_DIM_RESP_PER_MIN"),
}
# PCD-01 containment (MDS.VMD.channel) per metric, as in the GE B40 example (1.5.1 = ECG).
_CONTAINMENT = {
    "heart_rate": "1.5.1", "spo2": "1.3.1", "pulse_rate": "1.3.1", "perfusion_index": "1.3.1",
    "nibp_sys": "1.4.1", "nibp_dia": "1.4.1", "nibp_mean": "1.4.1", "resp_rate": "1.5.2",
}
# Philips Efficia MDIL: partition-term hex, label, unit code, unit label [P16].
_MDIL_CODES: dict[str, tuple[str, str, str, str]] = {
    "spo2": ("0002-4bb8", "SpO2", "0004-0220", "%"),
    "pulse_rate": ("0002-480a", "Pulse", "0004-0aa0", "bpm"),
    "heart_rate": ("0002-4182", "HR", "0004-0aa0", "bpm"),
    "nibp_sys": ("0002-4a05", "NBPs", "0004-0f20", "mmHg"),
    "nibp_dia": ("0002-4a06", "NBPd", "0004-0f20", "mmHg"),
    "nibp_mean": ("0002-4a07", "NBPm", "0004-0f20", "mmHg"),
    "resp_rate": ("0002-5000", "Resp", "0004-0ae0", "rpm"),
}
# Mindray's own codes are not public; the simulator's Mindray style uses MDC for the common
# vitals (as its gateway does) and a vendor-local system for perfusion index, which a site
# maps through the listener's code map. The local code below is a placeholder, not Mindray's.
MINDRAY_LOCAL_SYSTEM = "99MNDRY"
MINDRAY_LOCAL_CODES: dict[str, tuple[str, str]] = {"perfusion_index": ("9001", "MNDRY_PI_SIM")}


@dataclass(frozen=True, slots=True)
class OutObservation:
    metric: str
    value: float | None  # None → empty OBX-5 with OBX-11 = X (device shows "?"/invalid)
    time: datetime | None = None  # OBX-14 (NIBP measurement time)


def _num(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def encode_oru(
    style: VendorStyle,
    observations: Iterable[OutObservation],
    *,
    control_id: str,
    timestamp: datetime,
    application: str,
    equipment_id: str,
    facility: str = "",
    location: Location | None = None,
    processing_id: str = "P",
) -> bytes:
    """One ORU^R01 in a vendor's style (CR-separated ER7 bytes, not MLLP-framed).

    ``ge``: IHE PCD-01 v2.6 as in the GE B40 manual (MDC codes/units, containment OBX-4,
    MDS header OBX, OBX-18 EUI-64 on every OBX). ``philips``: Efficia LAN export v2.4 with
    MDIL ``pppp-tttt`` codes and units, status F. ``mindray``: gateway-style PCD-01 v2.6 with
    fractional seconds and offsets in times, OBX-18 only on the first OBX, one vendor-local code.
    """
    d = STANDARD_DELIMITERS
    obs = list(observations)
    ts = format_dtm(timestamp)
    if style == "mindray" and timestamp.tzinfo is not None:
        ts = timestamp.strftime("%Y%m%d%H%M%S") + ".0000" + format_dtm(timestamp)[14:]
    e_app = escape(application, d)
    e_eq = escape(equipment_id, d)
    if style == "philips":
        msh9, version, app_field = "ORU^R01", "2.4", e_app
    else:
        msh9, version, app_field = "ORU^R01^ORU_R01", "2.6", f"{e_app}^{e_eq}^EUI-64"
    msh = ["MSH", d.encoding_characters, app_field, escape(facility, d), "", "", ts, "",
           msh9, escape(control_id, d), processing_id, version]
    if style != "philips":
        msh += ["", "", "AL", "NE", "", "UNICODE UTF-8", "", "",
                "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"]
    segs = ["|".join(msh)]
    # Synthetic patient: no real identifiers ever leave a simulator.
    segs.append("PID|||SIM-0001^^^KAPSIM^PI||Simulated^Patient")
    loc = location or Location()
    pl = "^".join(escape(x, d) for x in (loc.point_of_care, loc.room, loc.bed, loc.facility))
    segs.append("PV1||I|" + pl.rstrip("^"))
    filler = f"{escape(control_id, d)}^{e_app}^{e_eq}^EUI-64"
    segs.append(f"OBR|1|{filler}|{filler}|182777000^monitoring of patient^SNOMED-CT|||{ts}")
    n = 0
    if style == "ge":
        n += 1
        segs.append(f"OBX|{n}||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X"
                    f"|||||||{e_eq}^{e_app}")
    for o in obs:
        n += 1
        value = "" if o.value is None else _num(o.value)
        status = "X" if o.value is None else ("F" if style == "philips" else "R")
        t = "" if o.time is None else format_dtm(o.time)
        if style == "philips":
            code, label, ucode, ulabel = _MDIL_CODES[o.metric]
            segs.append(f"OBX|{n}|NM|{code}^{label}^MDIL||{value}|{ucode}^{ulabel}^MDIL"
                        f"|||||{status}|||{t}")
            continue
        mdc, ref, unit, unit_ref = _PCD_CODES[o.metric]
        ident = f"{mdc}^{ref}^MDC"
        if style == "mindray" and o.metric in MINDRAY_LOCAL_CODES:
            lc, lref = MINDRAY_LOCAL_CODES[o.metric]
            ident = f"{lc}^{lref}^{MINDRAY_LOCAL_SYSTEM}"
        sub = f"{_CONTAINMENT[o.metric]}.{mdc}"
        if style == "mindray" and o.time is not None and o.time.tzinfo is not None:
            t = o.time.strftime("%Y%m%d%H%M%S") + ".0000" + format_dtm(o.time)[14:]
        tail = ""
        if style == "ge":
            tail = f"|||AMEAS^auto-measurement^MDC|{e_eq}^{e_app}"  # OBX-17, OBX-18
        elif n == 1:
            tail = f"||||{e_eq}^{e_app}^{e_eq}^EUI-64"  # OBX-18 on the first OBX only
        segs.append(f"OBX|{n}|NM|{ident}|{sub}|{value}|{unit}^{unit_ref}^MDC|||||{status}"
                    f"|||{t}{tail}")
    return ("\r".join(segs) + "\r").encode("utf-8")


ENCODABLE_METRICS: dict[VendorStyle, frozenset[str]] = {
    "ge": frozenset(_PCD_CODES),
    "mindray": frozenset(_PCD_CODES),
    "philips": frozenset(_MDIL_CODES),
}


# --------------------------------------------------------------------------------------------
# `kapmonitor decode hl7`
# --------------------------------------------------------------------------------------------


_MESSAGE_START = re.compile(rb"(?:\r\n|\r|\n)(?=MSH)")


class _TextDecoder:
    """Decoder for ``kapmonitor decode hl7``: each chunk is one whole message (text or MLLP)."""

    def __init__(self) -> None:
        self._deframer = MllpDeframer()

    def feed(self, chunk: bytes) -> list[Output]:
        if bytes([MLLP_START]) not in chunk:
            # A text file may hold several messages: each starts at a line beginning "MSH".
            out: list[Output] = []
            for message in _MESSAGE_START.split(chunk):
                if message.strip():
                    out.extend(_describe(message))
            return out
        out = []
        for item in self._deframer.feed(chunk):
            if isinstance(item, Problem):
                out.append(item)
            else:
                out.extend(_describe(item.data))
        return out

    def close(self) -> list[Output]:
        return [p for p in self._deframer.close() if isinstance(p, Problem)]


def _describe(data: bytes) -> list[Output]:
    try:
        report = read_oru(data)
    except Hl7Error as exc:
        where = f" at {exc.location}" if exc.location else ""
        return [Problem(f"{exc.ack_code}: {exc}{where}")]
    h = report.header
    out: list[Output] = [
        Note({
            "message": h.message_type,
            "control_id": h.control_id,
            "version": h.version,
            "sending_application": "^".join(h.sending_application),
            "sending_facility": "^".join(h.sending_facility),
            "location": {
                "point_of_care": report.location.point_of_care,
                "room": report.location.room,
                "bed": report.location.bed,
                "facility": report.location.facility,
            },
            "equipment": list(report.equipment),
            "ack": report.ack_code,
        })
    ]
    out.extend(o.measurement for o in report.observations)
    if report.unmapped:
        out.append(Note({"unmapped": list(report.unmapped)}))
    out.extend(Problem(f"{p.location}: {p.message}") for p in report.problems)
    return out


PROTOCOLS = {
    "hl7": ProtocolSpec(
        name="hl7",
        input="text",
        make=_TextDecoder,
        summary="HL7 v2 ORU^R01 vitals (IHE PCD-01; GE, Philips Efficia, Mindray), text or MLLP",
    )
}

__all__ = [
    "Ack", "Coded", "Delimiters", "Frame", "Header", "Hl7Error", "Location", "Message",
    "MllpDeframer", "Observation", "OruReport", "OutObservation", "PROTOCOLS", "Segment",
    "SegmentProblem", "build_ack", "encode_oru", "frame", "map_observation", "map_unit",
    "parse_ack", "parse_dtm", "parse_message", "peek_header", "read_oru",
]

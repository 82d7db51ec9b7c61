"""HL7 coded values (CWE/CE) → kapmonitor metrics and units.

What belongs here is reading OBX-3 and OBX-6 the ways vendors write them: MDC numeric codes or
reference ids, Philips "MDIL" ``pppp-tttt`` hex, LOINC, UCUM and the usual non-UCUM unit
spellings, plus per-site code maps for vendor-private codes. The code tables themselves are the
shared nomenclature (:mod:`kapmonitor.codecs.nomenclature`), derived from the metric vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kapmonitor.codecs.nomenclature import (
    BY_REF_ID,
    LOINC_CODES,
    MDC_UNITS,
    OBSERVATION_CODES,
    UNIT_BY_REF_ID,
    UnitInfo,
    mdc32,
)
from kapmonitor.model import MMHG_PER_KPA

# UCUM and the common non-UCUM spellings seen in device exports (matched case-sensitively
# first, then case-insensitively for the non-UCUM ones).
UCUM_UNITS: dict[str, UnitInfo] = {
    "%": UnitInfo("%"),
    "mm[Hg]": UnitInfo("mm[Hg]"),
    "mmHg": UnitInfo("mm[Hg]"),
    "kPa": UnitInfo("mm[Hg]", MMHG_PER_KPA),
    "hPa": UnitInfo("mm[Hg]", MMHG_PER_KPA / 10),
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
                if ref in BY_REF_ID:
                    return BY_REF_ID[ref].metric
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
            if cand in UNIT_BY_REF_ID:
                return UNIT_BY_REF_ID[cand]
            if cand in UCUM_UNITS:
                return UCUM_UNITS[cand]
            if cand and cand.casefold() in _UCUM_FOLDED:
                return _UCUM_FOLDED[cand.casefold()]
    return None

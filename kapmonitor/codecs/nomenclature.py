"""The nomenclature table: IEEE 11073-10101 observation and unit codes, and LOINC, → metrics.

What belongs here is the one table that the code-reading codecs (HL7 ORU, Philips IntelliVue)
look codes up in, and nothing protocol-specific. Its primary entries are derived from the
metric vocabulary (:data:`kapmonitor.model.METRICS`: each metric's own MDC code, reference id
and LOINC code), so a code is written down once. The aliases below add the codes vendors use
for the same vital; each alias says which feeds it applies to, because a code that means "the
oximeter's pulse" in one export can be a second pulse source on another device.

IEEE 11073 32-bit codes are partition × 65536 + term. IntelliVue's 16-bit ``NOM_*`` physio ids
are the terms of partition 2 (SCADA), its ``NOM_DIM_*`` unit codes the terms of partition 4
(dimensions); Philips "MDIL" text codes write the same pair as ``pppp-tttt`` hex.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kapmonitor.model import METRICS, MMHG_PER_KPA

MDC_PARTITION_SCADA = 2
MDC_PARTITION_DIM = 4

Feed = Literal["hl7", "intellivue"]
ALL_FEEDS: frozenset[Feed] = frozenset({"hl7", "intellivue"})
HL7_ONLY: frozenset[Feed] = frozenset({"hl7"})


def mdc32(partition: int, term: int) -> int:
    return partition * 65536 + term


@dataclass(frozen=True, slots=True)
class Nomenclature:
    code: int  # 32-bit MDC code
    ref_id: str
    metric: str
    note: str = ""
    feeds: frozenset[Feed] = ALL_FEEDS

    @property
    def partition(self) -> int:
        return self.code >> 16

    @property
    def term(self) -> int:
        return self.code & 0xFFFF


# Codes other than a metric's own that vendors use for the same vital.
ALIASES: tuple[Nomenclature, ...] = (
    Nomenclature(149538, "MDC_PLETH_PULS_RATE", "pulse_rate",
                 "Philips NOM_PLETH_PULS_RATE 0x4822"),
    Nomenclature(149514, "MDC_PULS_RATE", "pulse_rate",
                 "Philips Efficia 0002-480a 'Pulse'", HL7_ONLY),
    Nomenclature(150301, "MDC_PRESS_CUFF_SYS", "nibp_sys", "cuff-pressure alias", HL7_ONLY),
    Nomenclature(150302, "MDC_PRESS_CUFF_DIA", "nibp_dia", "cuff-pressure alias (verify)",
                 HL7_ONLY),
    Nomenclature(150303, "MDC_PRESS_CUFF_MEAN", "nibp_mean", "cuff-pressure alias (verify)",
                 HL7_ONLY),
    Nomenclature(151552, "MDC_RESP", "resp_rate", "Philips Efficia 0002-5000 'Resp'", HL7_ONLY),
    Nomenclature(151570, "MDC_AWAY_RESP_RATE", "resp_rate", "airway (capnography) rate",
                 HL7_ONLY),
    Nomenclature(150448, "MDC_PULS_OXIM_PERF_REL", "perfusion_index",
                 "Philips relative perfusion 0x4BB0", HL7_ONLY),
)

# Observation codes → metric. Several codes may map to one metric: vendors pick different
# pulse/respiration variants for the same vital.
OBSERVATION_CODES: dict[int, Nomenclature] = {
    n.code: n
    for n in (
        *(
            Nomenclature(m.mdc, m.mdc_ref, m.name)
            for m in METRICS.values()
            if m.mdc is not None and m.mdc_ref is not None
        ),
        *ALIASES,
    )
}
BY_REF_ID: dict[str, Nomenclature] = {n.ref_id: n for n in OBSERVATION_CODES.values()}

# LOINC → metric: each metric's own code, plus 2708-6 (SpO2 by any method).
LOINC_CODES: dict[str, str] = {
    **{m.loinc: m.name for m in METRICS.values() if m.loinc is not None},
    "2708-6": "spo2",
}


def physio_terms(feed: Feed) -> dict[int, str]:
    """SCADA term codes (IntelliVue physio ids) → metric, for the codes ``feed`` reads."""
    return {
        n.term: n.metric
        for n in OBSERVATION_CODES.values()
        if n.partition == MDC_PARTITION_SCADA and feed in n.feeds
    }


@dataclass(frozen=True, slots=True)
class UnitInfo:
    ucum: str  # canonical UCUM unit this converts to
    factor: float = 1.0


# MDC dimension codes (partition 4) → reference id and the canonical unit they convert to.
MDC_UNITS: dict[int, tuple[str, UnitInfo]] = {
    262688: ("MDC_DIM_PERCENT", UnitInfo("%")),
    264864: ("MDC_DIM_BEAT_PER_MIN", UnitInfo("/min")),
    264896: ("MDC_DIM_PULS_PER_MIN", UnitInfo("/min")),
    264928: ("MDC_DIM_RESP_PER_MIN", UnitInfo("/min")),
    264672: ("MDC_DIM_PER_MIN", UnitInfo("/min")),
    266016: ("MDC_DIM_MMHG", UnitInfo("mm[Hg]")),
    265987: ("MDC_DIM_KILO_PASCAL", UnitInfo("mm[Hg]", MMHG_PER_KPA)),
    265986: ("MDC_DIM_HECTO_PASCAL", UnitInfo("mm[Hg]", MMHG_PER_KPA / 10)),
}
UNIT_BY_REF_ID: dict[str, UnitInfo] = {ref: info for ref, info in MDC_UNITS.values()}

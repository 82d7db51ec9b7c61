"""The HL7 ORU^R01 *writer* of the simulated monitors (GE, Philips Efficia and Mindray styles).

What belongs here is only message construction in each vendor's style; the product reads ORU
(:mod:`kapmonitor.codecs.hl7`) and never writes it, so the writer lives with the simulators. It
builds on the reader's ER7 helpers (escapes, DTM) so both sides agree on the syntax.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from kapmonitor.codecs.hl7 import STANDARD_DELIMITERS, Location, escape, format_dtm

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
# Philips Efficia MDIL: partition-term hex, label, unit code, unit label (Efficia LAN export).
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


def nibp_report(control_id: str, sys_: float, dia: float, mean: float, *,
                equipment_id: str = "0A000000000000A1", when: datetime | None = None,
                application: str = "B40_SIM") -> bytes:
    """A GE-style (PCD-01) ORU^R01 with one NIBP measurement taken at ``when`` (default now):
    what the fault tests and ``bench/latency.py`` send at a moment of their choosing."""
    at = when or datetime.now(UTC)
    obs = [OutObservation(m, v, at) for m, v in (("nibp_sys", sys_), ("nibp_dia", dia),
                                                  ("nibp_mean", mean))]
    return encode_oru("ge", obs, control_id=control_id, timestamp=at, application=application,
                      equipment_id=equipment_id)

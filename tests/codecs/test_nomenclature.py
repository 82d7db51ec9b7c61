"""The one nomenclature table (derived from the metric vocabulary) and the NIBP group ids the
codecs set on the parts they split a measurement into."""

from __future__ import annotations

from datetime import datetime

from kapmonitor.codecs import hl7
from kapmonitor.codecs.gatt import BloodPressureMeasurement, decode_blood_pressure_measurement
from kapmonitor.codecs.intellivue import numerics as iv
from kapmonitor.codecs.nomenclature import (
    LOINC_CODES,
    MDC_PARTITION_SCADA,
    OBSERVATION_CODES,
    physio_terms,
)
from kapmonitor.model import METRICS, NIBP_METRICS, Measurement


def test_every_coded_metric_is_in_the_table_under_its_own_codes() -> None:
    for info in METRICS.values():
        if info.mdc is not None:
            assert OBSERVATION_CODES[info.mdc].metric == info.name
            assert OBSERVATION_CODES[info.mdc].ref_id == info.mdc_ref
        if info.loinc is not None:
            assert LOINC_CODES[info.loinc] == info.name


def test_hl7_and_intellivue_read_codes_from_the_same_table() -> None:
    assert hl7.OBSERVATION_CODES is OBSERVATION_CODES
    for term, name in iv.PHYSIO_METRIC.items():
        assert OBSERVATION_CODES[MDC_PARTITION_SCADA * 65536 + term].metric == name
    # The IntelliVue ids this codec always read, still read:
    assert {
        iv.NOM_PULS_OXIM_SAT_O2: "spo2", iv.NOM_PLETH_PULS_RATE: "pulse_rate",
        iv.NOM_PULS_OXIM_PULS_RATE: "pulse_rate", iv.NOM_ECG_CARD_BEAT_RATE: "heart_rate",
        iv.NOM_PRESS_BLD_NONINV_SYS: "nibp_sys", iv.NOM_PRESS_BLD_NONINV_DIA: "nibp_dia",
        iv.NOM_PRESS_BLD_NONINV_MEAN: "nibp_mean", iv.NOM_RESP_RATE: "resp_rate",
    }.items() <= iv.PHYSIO_METRIC.items()


def test_hl7_only_aliases_do_not_become_second_sources_on_intellivue() -> None:
    """On an IntelliVue, "Pulse" (0x480A) may come from a pressure line and airway respiration
    rate from capnography: reading them as pulse_rate/resp_rate would interleave two sources."""
    hl7_terms, ivue_terms = physio_terms("hl7"), physio_terms("intellivue")
    assert hl7_terms[iv.NOM_PULS_RATE] == "pulse_rate"
    assert iv.NOM_PULS_RATE not in ivue_terms
    assert 0x5012 in hl7_terms and 0x5012 not in ivue_terms  # MDC_AWAY_RESP_RATE


def nibp(outputs: list[Measurement]) -> list[Measurement]:
    return [m for m in outputs if m.metric in NIBP_METRICS]


def test_gatt_blood_pressure_parts_share_a_group_per_record() -> None:
    data = BloodPressureMeasurement(120.0, 80.0, 93.0, False, None, 70.0, None, None).encode()
    first = decode_blood_pressure_measurement(data).to_measurements()
    second = decode_blood_pressure_measurement(data).to_measurements()
    assert len(nibp(first)) == 3 and len({m.group for m in nibp(first)}) == 1
    assert nibp(first)[0].group is not None and nibp(first)[0].group != nibp(second)[0].group
    assert [m.group for m in first if m.metric == "pulse_rate"] == [None]


def oru(control: str, nibp_time: str) -> str:
    obx = [
        f"OBX|{i}|NM|{code}^{ref}^MDC||{v}|266016^MDC_DIM_MMHG^MDC|||||R|||{nibp_time}"
        for i, (code, ref, v) in enumerate(
            ((150021, "MDC_PRESS_BLD_NONINV_SYS", 131), (150022, "MDC_PRESS_BLD_NONINV_DIA", 84),
             (150023, "MDC_PRESS_BLD_NONINV_MEAN", 100)), 2)
    ]
    return "\r".join([
        f"MSH|^~\\&|MON|ICU|||20260301093000||ORU^R01|{control}|P|2.6",
        "OBR|1|||182777000^monitoring of patient^SNOMED-CT|||20260301093000",
        "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||97|262688^MDC_DIM_PERCENT^MDC|||||R",
        *obx,
    ]) + "\r"


def test_hl7_nibp_parts_of_one_message_share_a_group() -> None:
    a = [o.measurement for o in hl7.read_oru(oru("C1", "20260301092500")).observations]
    b = [o.measurement for o in hl7.read_oru(oru("C2", "20260301092500")).observations]
    assert [m.value for m in nibp(a)] == [131.0, 84.0, 100.0]
    assert len({m.group for m in nibp(a)}) == 1 and nibp(a)[0].group is not None
    assert nibp(a)[0].group != nibp(b)[0].group
    assert [m.group for m in a if m.metric == "spo2"] == [None]


def test_intellivue_compound_nibp_values_share_a_group() -> None:
    poll = iv.nibp_object(0x10, (120.0, 80.0, 93.0), measured_abs=datetime(2026, 3, 1, 9, 30))
    spo2 = iv.numeric_object(0x11, iv.NOM_PULS_OXIM_SAT_O2, 97.0, iv.NOM_DIM_PERCENT)
    numerics = [*iv.observation_numerics(poll), *iv.observation_numerics(spo2)]
    mapped = [m for m in map(iv.to_measurement, numerics) if m is not None]
    assert [m.value for m in nibp(mapped)] == [120.0, 80.0, 93.0]
    assert len({m.group for m in nibp(mapped)}) == 1 and nibp(mapped)[0].group is not None
    assert [m.group for m in mapped if m.metric == "spo2"] == [None]

"""GATT health characteristics: the known-answer vectors of docs/sources.md [P3] (each
test names its public source), SFLOAT specials in every field, encoder→decoder round trips over
all flag combinations, and random-bytes fuzzing."""

# Long lines are the public sources (repository + path) named in test docstrings.
# ruff: noqa: E501
from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kapmonitor.codecs.base import DecodeError, MessageDecoder, Problem
from kapmonitor.codecs.gatt import (
    PROTOCOLS,
    BatteryLevel,
    BloodPressureFeature,
    BloodPressureMeasurement,
    CurrentTime,
    DateTime,
    HeartRateMeasurement,
    IntermediateCuffPressure,
    PlxContinuous,
    PlxFeatures,
    PlxSpotCheck,
    RacpNumberOfRecords,
    RacpRequest,
    RacpResponseCode,
    decode_battery_level,
    decode_blood_pressure_feature,
    decode_blood_pressure_measurement,
    decode_current_time,
    decode_date_time,
    decode_heart_rate_measurement,
    decode_intermediate_cuff_pressure,
    decode_plx_continuous,
    decode_plx_features,
    decode_plx_spot_check,
    decode_racp,
    racp_report_all_records,
)
from kapmonitor.codecs.ieee11073 import SFLOAT_SPECIALS, Special, decode_sfloat
from kapmonitor.model import METRICS, QUALITY_FLAGS, Measurement


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def by_metric(ms: list[Measurement]) -> dict[str, Measurement]:
    return {m.metric: m for m in ms}


def check_vocabulary(ms: list[Measurement]) -> None:
    for m in ms:
        assert m.metric in METRICS
        assert m.unit == METRICS[m.metric].unit
        assert m.flags <= QUALITY_FLAGS, m.flags - QUALITY_FLAGS


# ---------------------------------------------------------------------------------------------
# Blood Pressure Measurement 0x2A35


def test_bpm_vector1_nordic_full() -> None:
    """[P3] vector #1.

    Source: NordicSemiconductor/Android-BLE-Common-Library ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/bps/BloodPressureMeasurementDataCallbackTest.java
    (onBloodPressureMeasurementReceived_full).
    """
    rec = decode_blood_pressure_measurement(h("1E 8A 00 58 00 78 00 00 00 04 11 14 29 3B 3C 00 01 27 00"))
    assert (rec.systolic, rec.diastolic, rec.mean_arterial_pressure) == (138.0, 88.0, 120.0)
    assert rec.kpa is False
    assert rec.timestamp == DateTime(0, 4, 17, 20, 41, 59)
    assert rec.pulse_rate == 60.0 and rec.user_id == 1 and rec.measurement_status == 0x0027
    ms = rec.to_measurements()
    check_vocabulary(ms)
    m = by_metric(ms)
    assert [x.metric for x in ms] == ["nibp_sys", "nibp_dia", "nibp_mean", "pulse_rate"]
    assert m["nibp_sys"].value == 138.0 and m["nibp_sys"].unit == "mm[Hg]"
    assert m["pulse_rate"].value == 60.0
    # body movement + cuff loose + irregular pulse + improper position, PR in range
    assert m["nibp_sys"].flags == {"body_movement", "cuff_fit", "irregular_pulse", "artifact"}
    assert m["nibp_sys"].status["pulse_rate_range"] == "in_range"
    assert m["nibp_sys"].status["user_id"] == 1
    # Year unknown: no device time, but the raw fields are kept.
    assert m["nibp_sys"].device_time is None
    assert m["nibp_sys"].status["device_time_raw"] == "0000-04-17 20:41:59"


def test_bpm_vector2_nordic_some_kpa() -> None:
    """[P3] vector #2.

    Source: NordicSemiconductor/Android-BLE-Common-Library ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/bps/BloodPressureMeasurementDataCallbackTest.java (_some).
    """
    rec = decode_blood_pressure_measurement(h("15 BD F0 0B 00 9F F0 3C 00 12 00"))
    assert rec.kpa is True
    assert (rec.systolic, rec.diastolic, rec.mean_arterial_pressure) == (18.9, 11.0, 15.9)
    assert rec.pulse_rate == 60.0 and rec.timestamp is None and rec.user_id is None
    m = by_metric(rec.to_measurements())
    # kPa → mm[Hg]: 18.9 kPa = 141.76 mmHg
    assert m["nibp_sys"].value == pytest.approx(18.9 * 7.50062, abs=0.06)
    assert m["nibp_dia"].value == pytest.approx(11.0 * 7.50062, abs=0.06)
    assert m["nibp_mean"].value == pytest.approx(15.9 * 7.50062, abs=0.06)
    assert m["nibp_sys"].unit == "mm[Hg]"
    assert m["nibp_sys"].status["raw_value"] == 18.9
    assert m["nibp_sys"].status["raw_unit"] == "kPa"
    assert m["pulse_rate"].value == 60.0  # pulse rate is never converted
    assert m["nibp_sys"].flags == {"cuff_fit"}
    assert m["nibp_sys"].status["pulse_rate_range"] == "below_lower_limit"


def test_bpm_vector3_nordic_minimal() -> None:
    """[P3] vector #3.

    Source: NordicSemiconductor/Android-BLE-Common-Library ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/bps/BloodPressureMeasurementDataCallbackTest.java
    (_minimal): mmHg flag with kPa-looking numbers, taken as mmHg.
    """
    rec = decode_blood_pressure_measurement(h("00 BD F0 0B 00 9F F0"))
    assert rec.kpa is False
    m = by_metric(rec.to_measurements())
    assert (m["nibp_sys"].value, m["nibp_dia"].value, m["nibp_mean"].value) == (18.9, 11.0, 15.9)
    assert "pulse_rate" not in m


@pytest.mark.parametrize(
    ("hexdata", "why"),
    [
        ("01 02 03 04 05 06", "too short"),  # [P3] vector #4, Nordic BPM invalid
        ("03 02 03 04 05 06 07", "timestamp"),  # [P3] vector #5, Nordic BPM timestamp absent
        ("", "flags"),
        ("00 78 00 50 00 60 00 00", "trailing"),
        ("04 78 00 50 00 60 00 3C", "pulse rate"),
        ("10 78 00 50 00 60 00 01", "measurement status"),
    ],
)
def test_bpm_invalid_nordic(hexdata: str, why: str) -> None:
    """Invalid lengths.

    Source: NordicSemiconductor/Android-BLE-Common-Library ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/bps/BloodPressureMeasurementDataCallbackTest.java.
    """
    with pytest.raises(DecodeError, match=why):
        decode_blood_pressure_measurement(h(hexdata))


def test_bpm_vector6_real_device_map_nan() -> None:
    """[P3] vector #6.

    Source: real-device bytes from a Q&A thread
    (coderapp.vercel.app/answer/78176577, copy of Stack Overflow question 78176577).
    """
    data = h("DE 88 F4 20 F3 FF 07 E4 07 01 13 16 37 00 BC F2 01 44 01")
    rec = decode_blood_pressure_measurement(data)
    assert rec.systolic == 116.0 and rec.diastolic == 80.0
    assert rec.mean_arterial_pressure is Special.NAN
    assert rec.pulse_rate == 70.0 and rec.user_id == 1
    assert rec.measurement_status == 0x0144
    assert rec.reserved_flags == 0xC0
    m = by_metric(rec.to_measurements())
    assert m["nibp_mean"].value is None
    assert m["nibp_mean"].status["special"] == "NaN"
    assert m["nibp_sys"].device_time == datetime(2020, 1, 19, 22, 55, 0)
    assert m["nibp_sys"].flags == {"irregular_pulse"}
    assert m["nibp_sys"].status["reserved_status_bits"] == "0x0140"
    # Re-encoding with the cuff's exponent (−1) reproduces the bytes exactly.
    assert rec.encode(exponent=-1) == data


def test_icp_vector7_nordic_full() -> None:
    """[P3] vector #7.

    Source: NordicSemiconductor/Android-BLE-Common-Library ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/bps/IntermediateCuffPressureDataCallbackTest.java (_full).
    """
    data = h("1E 04 00 00 00 00 00 00 00 04 11 14 29 3B 3C 00 01 27 00")
    rec = decode_intermediate_cuff_pressure(data)
    assert rec.cuff_pressure == 4.0 and rec.pulse_rate == 60.0 and rec.user_id == 1
    assert rec.measurement_status == 0x27
    ms = rec.to_measurements()
    check_vocabulary(ms)
    assert [m.metric for m in ms] == ["cuff_pressure"]
    assert ms[0].value == 4.0 and ms[0].status["pulse_rate"] == 60.0
    assert rec.encode() == data  # unused slots are kept raw


def test_icp_kpa_converts() -> None:
    rec = IntermediateCuffPressure(cuff_pressure=10.0, kpa=True)
    got = decode_intermediate_cuff_pressure(rec.encode())
    assert got.unused_raw == (0x07FF, 0x07FF)  # spec default: NaN in the unused slots
    assert got.to_measurements()[0].value == pytest.approx(75.0, abs=0.05)


# ---------------------------------------------------------------------------------------------
# Heart Rate Measurement 0x2A37


def test_hrm_nordic_vectors_8_to_11() -> None:
    """[P3] vector #8-#11.

    Source: NordicSemiconductor/Android-BLE-Common-Library ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/hr/HeartRateMeasurementDataCallbackTest.java.
    """
    r8 = decode_heart_rate_measurement(h("00 55"))
    assert r8.heart_rate == 85 and r8.contact == "not_supported"
    assert by_metric(r8.to_measurements())["heart_rate"].value == 85.0

    r9 = decode_heart_rate_measurement(h("04 FF"))
    assert r9.heart_rate == 255 and r9.contact == "no_contact"
    m9 = r9.to_measurements()[0]
    assert m9.value is None and m9.flags == {"sensor_off"} and m9.status["raw_value"] == 255

    r10 = decode_heart_rate_measurement(h("1E 55 32 00 21 00"))
    assert r10.heart_rate == 85 and r10.contact == "contact"
    assert r10.energy_expended == 50 and r10.rr_intervals == (33,)
    ms10 = r10.to_measurements()
    check_vocabulary(ms10)
    assert [m.metric for m in ms10] == ["heart_rate", "rr_interval"]
    assert ms10[1].value == pytest.approx(32.2, abs=0.05) and ms10[1].unit == "ms"

    r11 = decode_heart_rate_measurement(h("1F 01 01 32 01 01 00 02 01 FF FF"))
    assert r11.heart_rate == 257 and r11.uint16
    assert r11.energy_expended == 306 and r11.rr_intervals == (1, 258, 65535)
    rr_ms = [m.value for m in r11.to_measurements() if m.metric == "rr_interval"]
    assert rr_ms == [pytest.approx(1000 / 1024), pytest.approx(258000 / 1024),
                     pytest.approx(65535000 / 1024)]


def test_hrm_vector12_too_short_nordic() -> None:
    """[P3] vector #12.

    Source: NordicSemiconductor/Android-BLE-Common-Library ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/hr/HeartRateMeasurementDataCallbackTest.java.
    """
    with pytest.raises(DecodeError, match="RR"):
        decode_heart_rate_measurement(h("17 01 01"))


def test_hrm_vector13_smartgattlib() -> None:
    """[P3] vector #13.

    Source: movisens/SmartGattLib src/test/java/HeartRateMeasurementTest.java.
    """
    rec = decode_heart_rate_measurement(h("16 48 54 01 EC 02"))
    assert rec.heart_rate == 72 and rec.contact == "contact"
    assert [x / 1024 for x in rec.rr_intervals] == [0.33203125, 0.73046875]
    rr = [m.value for m in rec.to_measurements() if m.metric == "rr_interval"]
    assert rr == [332.03125, 730.46875]


def test_hrm_vector14_opentracks() -> None:
    """[P3] vector #14.

    Source: OpenTracksApp/OpenTracks src/androidTest/java/de/dennisguse/
    opentracks/sensors/BluetoothConnectionManagerHeartRateTest.java.
    """
    assert decode_heart_rate_measurement(h("02 3C")).heart_rate == 60
    assert decode_heart_rate_measurement(h("01 01 01")).heart_rate == 257


@pytest.mark.parametrize(
    "hexdata", ["", "01 01", "08 50 01", "10 50 01 02 03", "00 50 00"]
)
def test_hrm_invalid(hexdata: str) -> None:
    with pytest.raises(DecodeError):
        decode_heart_rate_measurement(h(hexdata))


# ---------------------------------------------------------------------------------------------
# PLX


def test_plx_cont_vector15_spezi() -> None:
    """[P3] vector #15.

    Source: StanfordSpezi/SpeziBluetooth Tests/SpeziBluetoothServicesTests/PLXTests.swift (exponent −1 and exponent 0 encodings).
    """
    for hexdata in ("00 E8 F3 84 F3", "00 64 00 5A 00"):
        rec = decode_plx_continuous(h(hexdata))
        assert (rec.spo2, rec.pulse_rate) == (100.0, 90.0)
        m = by_metric(rec.to_measurements())
        assert m["spo2"].value == 100.0 and m["pulse_rate"].value == 90.0
        assert "perfusion_index" not in m


def test_plx_cont_vector16_spezi() -> None:
    """[P3] vector #16.

    Source: StanfordSpezi/SpeziBluetooth Tests/SpeziBluetoothServicesTests/PLXTests.swift.
    """
    rec = decode_plx_continuous(h("1C 5F 00 5A 00 20 00 00 00 00 57 F0"))
    assert (rec.spo2, rec.pulse_rate) == (95.0, 90.0)
    assert rec.measurement_status == 0x0020 and rec.device_sensor_status == 0
    assert rec.pulse_amplitude_index == pytest.approx(8.7)
    ms = rec.to_measurements()
    check_vocabulary(ms)
    m = by_metric(ms)
    assert m["perfusion_index"].value == pytest.approx(8.7)
    assert m["spo2"].status["measurement_status_bits"] == ["measurement_ongoing"]
    assert m["spo2"].flags == frozenset()


def test_plx_cont_vector17_spezi() -> None:
    """[P3] vector #17.

    Source: StanfordSpezi/SpeziBluetooth Tests/SpeziBluetoothServicesTests/PLXTests.swift.
    """
    rec = decode_plx_continuous(
        h("1F DE F3 CA F3 CA F3 5A F5 D4 F3 B2 F2 20 01 00 00 00 7A E3")
    )
    assert (rec.spo2, rec.pulse_rate) == (99.0, 97.0)
    assert rec.fast == (97.0, 137.0) and rec.slow == (98.0, 69.0)
    assert rec.measurement_status == 0x0120 and rec.device_sensor_status == 0
    assert rec.pulse_amplitude_index == pytest.approx(8.90)
    m = by_metric(rec.to_measurements())
    assert m["spo2"].status["spo2_fast"] == 97.0 and m["spo2"].status["pulse_rate_slow"] == 69.0
    assert m["spo2"].status["measurement_status_bits"] == [
        "measurement_ongoing", "fully_qualified_data"
    ]


def test_plx_spot_vector18_spezi() -> None:
    """[P3] vector #18.

    Source: StanfordSpezi/SpeziBluetooth Tests/SpeziBluetoothServicesTests/PLXTests.swift.
    """
    rec = decode_plx_spot_check(h("0F AC F3 BE F5 E8 07 0B 1D 17 08 39 20 40 22 00 00 66 E3"))
    assert rec.spo2 == 94.0 and rec.pulse_rate == 147.0
    assert rec.timestamp == DateTime(2024, 11, 29, 23, 8, 57)
    assert rec.measurement_status == 0x4020 and rec.device_sensor_status == 0x000022
    assert rec.pulse_amplitude_index == pytest.approx(8.70)
    ms = rec.to_measurements()
    check_vocabulary(ms)
    m = by_metric(ms)
    assert m["spo2"].device_time == datetime(2024, 11, 29, 23, 8, 57)
    # questionable → artifact; equipment malfunction → measurement_error; low perfusion
    assert m["spo2"].flags == {"artifact", "measurement_error", "low_perfusion"}
    assert m["spo2"].value == 94.0  # questionable is still a value


def test_plx_features_vector19_spezi() -> None:
    """[P3] vector #19.

    Source: StanfordSpezi/SpeziBluetooth Tests/SpeziBluetoothServicesTests/PLXTests.swift.
    """
    data = h("A3 00 40 10 80 01 00")
    rec = decode_plx_features(data)
    assert rec.features == 0x00A3
    assert rec.names == ["measurement_status", "device_sensor_status", "spo2pr_slow",
                         "multiple_bonds"]
    assert rec.measurement_status_support == 0x1040
    assert rec.device_sensor_status_support == 0x000180
    assert rec.to_json()["device_sensor_status_support"] == [
        "non_pulsatile_signal", "questionable_pulse"
    ]
    assert rec.encode() == data


def test_plx_features_invalid() -> None:
    with pytest.raises(DecodeError):
        decode_plx_features(h("01 00 40"))
    with pytest.raises(DecodeError, match="trailing"):
        decode_plx_features(h("00 00 01"))


def test_plx_unavailable_and_invalid_give_no_value() -> None:
    for status, flag in ((1 << 13, "no_signal"), (1 << 15, "measurement_error")):
        rec = PlxContinuous(97.0, 80.0, measurement_status=status)
        for m in decode_plx_continuous(rec.encode()).to_measurements():
            assert m.value is None and flag in m.flags
            assert m.status["raw_value"] in (97.0, 80.0)


def test_plx_spot_clock_not_set_drops_device_time() -> None:
    rec = PlxSpotCheck(95.0, 70.0, DateTime(2024, 1, 1, 0, 0, 0), device_clock_not_set=True)
    m = decode_plx_spot_check(rec.encode()).to_measurements()[0]
    assert m.device_time is None and m.status["device_clock_not_set"] is True


def test_plx_from_storage_is_historical() -> None:
    rec = PlxSpotCheck(95.0, 70.0, measurement_status=1 << 9)
    assert all("historical" in m.flags for m in rec.to_measurements())


# ---------------------------------------------------------------------------------------------
# Date Time, Current Time, Battery, BP Feature


def test_date_time_nordic_vectors_20_to_22() -> None:
    """[P3] vector #20-#22.

    Source: NordicSemiconductor/Android-BLE-Common-Library ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/DateTimeDataCallbackTest.java.
    """
    dt = decode_date_time(h("E2 07 04 11 0F 33 00"))
    assert dt.to_datetime() == datetime(2018, 4, 17, 15, 51, 0)
    unknown = decode_date_time(h("00 00 00 00 12 1A 20"))
    assert unknown.to_datetime() is None
    assert (unknown.hours, unknown.minutes, unknown.seconds) == (18, 26, 32)
    with pytest.raises(DecodeError):
        decode_date_time(h("E2 07 04 11 0F 33"))
    assert dt.encode() == h("E2 07 04 11 0F 33 00")


def test_current_time_round_trip() -> None:
    ct = CurrentTime.from_datetime(datetime(2024, 3, 5, 10, 20, 30, 500000), adjust_reason=1)
    data = ct.encode()
    assert len(data) == 10 and data[7] == 2  # Tuesday
    got = decode_current_time(data)
    assert got == ct and got.to_datetime() == datetime(2024, 3, 5, 10, 20, 30, 500000)
    with pytest.raises(DecodeError):
        decode_current_time(data[:9])
    with pytest.raises(DecodeError, match="day of week"):
        decode_current_time(data[:7] + b"\x09" + data[8:])


def test_battery_nordic_vectors_23_24() -> None:
    """[P3] vector #23-#24.

    Source: NordicSemiconductor/Android-BLE-Common-Library ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/battery/BatteryLevelDataCallbackTest.java.
    """
    assert decode_battery_level(h("64")).level == 100
    assert decode_battery_level(h("0F")).level == 15
    m = decode_battery_level(h("0F")).to_measurements()[0]
    assert (m.metric, m.value, m.unit) == ("battery", 15.0, "%")
    with pytest.raises(DecodeError):
        decode_battery_level(h("65"))
    with pytest.raises(DecodeError):
        decode_battery_level(h("64 00"))
    assert BatteryLevel(42).encode() == b"\x2a"


def test_bp_feature() -> None:
    f = decode_blood_pressure_feature(h("07 00"))
    assert f.names == ["body_movement_detection", "cuff_fit_detection",
                       "irregular_pulse_detection"]
    assert BloodPressureFeature(0x1FF).encode() == h("FF 01")
    with pytest.raises(DecodeError):
        decode_blood_pressure_feature(h("07"))


# ---------------------------------------------------------------------------------------------
# RACP


def test_racp_nordic_vectors_25_to_29() -> None:
    """[P3] vector #25-#29.

    Source: NordicSemiconductor/Android-BLE-Common-Library ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/RecordAccessControlPointDataCallbackTest.java.
    """
    r25 = decode_racp(h("06 00 01 01"))
    assert r25 == RacpResponseCode(1, 1) and r25.response_name == "success"
    r26 = decode_racp(h("06 00 0C 02"))
    assert isinstance(r26, RacpResponseCode)
    assert r26.request_opcode == 12 and r26.response_name == "opcode_not_supported"
    r27 = decode_racp(h("06 00 01 06"))
    assert isinstance(r27, RacpResponseCode) and r27.response_name == "no_records_found"
    assert decode_racp(h("05 00 01")) == RacpNumberOfRecords(1, 1)
    assert decode_racp(h("05 00 02 01")) == RacpNumberOfRecords(258, 2)
    assert decode_racp(h("05 00 04 03 02 01")) == RacpNumberOfRecords(16909060, 4)
    with pytest.raises(DecodeError, match="count"):
        decode_racp(h("05 00 03 02 01"))


def test_racp_requests_and_encoders() -> None:
    assert racp_report_all_records() == h("01 01")
    assert decode_racp(h("01 01")) == RacpRequest(1, 1)
    assert decode_racp(h("04 03 01 00 05 00")) == RacpRequest(4, 3, h("01 00 05 00"))
    for msg in (RacpRequest(3, 0), RacpNumberOfRecords(7), RacpResponseCode(4, 6)):
        assert decode_racp(msg.encode()) == msg
    for bad in ("", "01", "06 01 01 01", "06 00 01", "05 01 01"):
        with pytest.raises(DecodeError):
            decode_racp(h(bad))


# ---------------------------------------------------------------------------------------------
# SFLOAT specials in every SFLOAT field of every message

SPECIAL_RAWS = sorted(SFLOAT_SPECIALS)


def _put(data: bytes, offset: int, raw: int) -> bytes:
    return data[:offset] + raw.to_bytes(2, "little") + data[offset + 2 :]


BPM_FULL = h("1E 8A 00 58 00 78 00 00 00 04 11 14 29 3B 3C 00 01 27 00")
BPM_FIELDS = {"nibp_sys": 1, "nibp_dia": 3, "nibp_mean": 5, "pulse_rate": 14}


@pytest.mark.parametrize("raw", SPECIAL_RAWS)
@pytest.mark.parametrize("metric", list(BPM_FIELDS))
@pytest.mark.parametrize("kpa", [False, True])
def test_bpm_special_in_every_field(raw: int, metric: str, kpa: bool) -> None:
    data = _put(BPM_FULL, BPM_FIELDS[metric], raw)
    if kpa:
        data = bytes([data[0] | 1]) + data[1:]
    m = by_metric(decode_blood_pressure_measurement(data).to_measurements())
    assert m[metric].value is None
    assert m[metric].status["special"] == decode_sfloat(raw).value  # type: ignore[union-attr]
    others = [x for name, x in m.items() if name != metric]
    assert all(x.value is not None for x in others)


ICP_FULL = h("1E 04 00 00 00 00 00 00 00 04 11 14 29 3B 3C 00 01 27 00")


@pytest.mark.parametrize("raw", SPECIAL_RAWS)
def test_icp_special_cuff_and_pulse(raw: int) -> None:
    m = decode_intermediate_cuff_pressure(_put(ICP_FULL, 1, raw)).to_measurements()[0]
    assert m.value is None and m.status["special"]
    m2 = decode_intermediate_cuff_pressure(_put(ICP_FULL, 14, raw)).to_measurements()[0]
    assert m2.value == 4.0 and m2.status["pulse_rate"] == decode_sfloat(raw).value  # type: ignore[union-attr]


PLX_SPOT_FULL = h("0F AC F3 BE F5 E8 07 0B 1D 17 08 39 20 40 22 00 00 66 E3")
PLX_SPOT_FIELDS = {"spo2": 1, "pulse_rate": 3, "perfusion_index": 17}
PLX_CONT_FULL = h("1F DE F3 CA F3 CA F3 5A F5 D4 F3 B2 F2 20 01 00 00 00 7A E3")
PLX_CONT_FIELDS = {"spo2": 1, "pulse_rate": 3, "perfusion_index": 18}
PLX_CONT_STATUS_FIELDS = {
    "spo2_fast": 5, "pulse_rate_fast": 7, "spo2_slow": 9, "pulse_rate_slow": 11
}


@pytest.mark.parametrize("raw", SPECIAL_RAWS)
@pytest.mark.parametrize("metric", list(PLX_SPOT_FIELDS))
def test_plx_spot_special_in_every_field(raw: int, metric: str) -> None:
    m = by_metric(decode_plx_spot_check(_put(PLX_SPOT_FULL, PLX_SPOT_FIELDS[metric], raw))
                  .to_measurements())
    assert m[metric].value is None and "special" in m[metric].status
    assert all(x.value is not None for name, x in m.items() if name != metric)


@pytest.mark.parametrize("raw", SPECIAL_RAWS)
@pytest.mark.parametrize("field", list(PLX_CONT_FIELDS) + list(PLX_CONT_STATUS_FIELDS))
def test_plx_cont_special_in_every_field(raw: int, field: str) -> None:
    offset = {**PLX_CONT_FIELDS, **PLX_CONT_STATUS_FIELDS}[field]
    m = by_metric(decode_plx_continuous(_put(PLX_CONT_FULL, offset, raw)).to_measurements())
    if field in PLX_CONT_FIELDS:
        assert m[field].value is None and "special" in m[field].status
    else:
        assert all(x.value is not None for x in m.values())
        assert m["spo2"].status[field] == decode_sfloat(raw).value  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# Property-based round trips over every flag combination


def sfloat_numbers() -> st.SearchStrategy[Any]:
    finite = st.builds(
        decode_sfloat,
        st.integers(0, 0xFFFF).filter(lambda r: r not in SFLOAT_SPECIALS),
    )
    return st.one_of(finite, st.sampled_from(list(Special)))


date_times = st.builds(
    DateTime,
    st.integers(0, 0xFFFF), st.integers(0, 255), st.integers(0, 255),
    st.integers(0, 255), st.integers(0, 255), st.integers(0, 255),
)


def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@given(
    st.builds(
        BloodPressureMeasurement,
        sfloat_numbers(), sfloat_numbers(), sfloat_numbers(), st.booleans(), opt(date_times),
        opt(sfloat_numbers()), opt(st.integers(0, 255)), opt(st.integers(0, 0xFFFF)),
        st.sampled_from([0, 0x20, 0x40, 0x80, 0xE0]),
    )
)
def test_bpm_round_trip(rec: BloodPressureMeasurement) -> None:
    assert decode_blood_pressure_measurement(rec.encode()) == rec
    ms = rec.to_measurements()
    check_vocabulary(ms)


@given(
    st.builds(
        IntermediateCuffPressure,
        sfloat_numbers(), st.booleans(), opt(date_times), opt(sfloat_numbers()),
        opt(st.integers(0, 255)), opt(st.integers(0, 0xFFFF)),
        st.sampled_from([0, 0x20, 0xE0]), st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    )
)
def test_icp_round_trip(rec: IntermediateCuffPressure) -> None:
    assert decode_intermediate_cuff_pressure(rec.encode()) == rec
    check_vocabulary(rec.to_measurements())


@st.composite
def heart_rates(draw: st.DrawFn) -> HeartRateMeasurement:
    uint16 = draw(st.booleans())
    return HeartRateMeasurement(
        draw(st.integers(0, 0xFFFF if uint16 else 0xFF)),
        uint16,
        draw(st.integers(0, 3)),
        draw(opt(st.integers(0, 0xFFFF))),
        tuple(draw(st.lists(st.integers(0, 0xFFFF), max_size=9))),
        draw(st.sampled_from([0, 0x20, 0xE0])),
    )


@given(heart_rates())
def test_hrm_round_trip(rec: HeartRateMeasurement) -> None:
    assert decode_heart_rate_measurement(rec.encode()) == rec
    check_vocabulary(rec.to_measurements())


@given(
    st.builds(
        PlxSpotCheck,
        sfloat_numbers(), sfloat_numbers(), opt(date_times), opt(st.integers(0, 0xFFFF)),
        opt(st.integers(0, 0xFFFFFF)), opt(sfloat_numbers()), st.booleans(),
        st.sampled_from([0, 0x20, 0xE0]),
    )
)
def test_plx_spot_round_trip(rec: PlxSpotCheck) -> None:
    assert decode_plx_spot_check(rec.encode()) == rec
    check_vocabulary(rec.to_measurements())


pairs = st.tuples(sfloat_numbers(), sfloat_numbers())


@given(
    st.builds(
        PlxContinuous,
        sfloat_numbers(), sfloat_numbers(), opt(pairs), opt(pairs), opt(st.integers(0, 0xFFFF)),
        opt(st.integers(0, 0xFFFFFF)), opt(sfloat_numbers()), st.sampled_from([0, 0x20, 0xE0]),
    )
)
def test_plx_cont_round_trip(rec: PlxContinuous) -> None:
    assert decode_plx_continuous(rec.encode()) == rec
    ms = rec.to_measurements()
    check_vocabulary(ms)


@st.composite
def plx_features(draw: st.DrawFn) -> PlxFeatures:
    f = draw(st.integers(0, 0xFFFF))
    return PlxFeatures(
        f,
        draw(st.integers(0, 0xFFFF)) if f & 1 else None,
        draw(st.integers(0, 0xFFFFFF)) if f & 2 else None,
    )


@given(plx_features())
def test_plx_features_round_trip(rec: PlxFeatures) -> None:
    assert decode_plx_features(rec.encode()) == rec


@given(
    st.one_of(
        st.builds(
            RacpRequest,
            st.integers(0, 255).filter(lambda o: o not in (5, 6)), st.integers(0, 255),
            st.binary(max_size=8),
        ),
        st.builds(RacpNumberOfRecords, st.integers(0, 255), st.just(1)),
        st.builds(RacpNumberOfRecords, st.integers(0, 0xFFFF), st.just(2)),
        st.builds(RacpNumberOfRecords, st.integers(0, 0xFFFFFFFF), st.just(4)),
        st.builds(RacpResponseCode, st.integers(0, 255), st.integers(0, 255)),
    )
)
def test_racp_round_trip(msg: Any) -> None:
    assert decode_racp(msg.encode()) == msg


@given(date_times, st.integers(0, 7), st.integers(0, 255), st.integers(0, 255))
def test_current_time_round_trip_all(dt: DateTime, dow: int, frac: int, reason: int) -> None:
    ct = CurrentTime(dt, dow, frac, reason)
    assert decode_current_time(ct.encode()) == ct
    assert decode_date_time(dt.encode()) == dt


def test_bpm_each_flag_combination_has_exact_length() -> None:
    """Expected length = 7 + 7·ts + 2·pr + 1·uid + 2·status [P1] for all 32 combos."""
    for flags in range(32):
        rec = BloodPressureMeasurement(
            120.0, 80.0, 93.0, bool(flags & 1),
            DateTime(2024, 1, 2, 3, 4, 5) if flags & 2 else None,
            70.0 if flags & 4 else None, 3 if flags & 8 else None, 0x21 if flags & 16 else None,
        )
        data = rec.encode()
        assert data[0] == flags
        expected = 7 + 7 * bool(flags & 2) + 2 * bool(flags & 4) + bool(flags & 8)
        assert len(data) == expected + 2 * bool(flags & 16)
        assert decode_blood_pressure_measurement(data) == rec
        with pytest.raises(DecodeError):
            decode_blood_pressure_measurement(data[:-1])
        with pytest.raises(DecodeError):
            decode_blood_pressure_measurement(data + b"\x00")


# ---------------------------------------------------------------------------------------------
# Random-bytes fuzzing: only DecodeError escapes; specials never become numbers

DECODERS = [
    decode_blood_pressure_measurement,
    decode_intermediate_cuff_pressure,
    decode_heart_rate_measurement,
    decode_plx_spot_check,
    decode_plx_continuous,
    decode_plx_features,
    decode_racp,
    decode_battery_level,
    decode_date_time,
    decode_current_time,
    decode_blood_pressure_feature,
]


@settings(max_examples=300)
@given(st.sampled_from(DECODERS), st.binary(max_size=24))
def test_fuzz_only_decode_error(decode: Any, data: bytes) -> None:
    try:
        rec = decode(data)
    except DecodeError:
        return
    to_measurements = getattr(rec, "to_measurements", None)
    if to_measurements is None:
        return
    for m in to_measurements():
        assert m.metric in METRICS
        if m.value is not None:
            assert m.value == m.value  # never NaN
            assert "special" not in m.status


@settings(max_examples=200)
@given(st.binary(min_size=7, max_size=19))
def test_fuzz_bpm_specials_never_numbers(data: bytes) -> None:
    try:
        rec = decode_blood_pressure_measurement(data)
    except DecodeError:
        return
    words = [int.from_bytes(data[i : i + 2], "little") for i in (1, 3, 5)]
    ms = by_metric(rec.to_measurements())
    for metric, raw in zip(("nibp_sys", "nibp_dia", "nibp_mean"), words, strict=True):
        assert (ms[metric].value is None) == (raw in SFLOAT_SPECIALS)


# ---------------------------------------------------------------------------------------------
# `kapmonitor decode` protocol tables


def test_protocols_table_decodes_and_reports_problems() -> None:
    assert set(PROTOCOLS) == {"gatt-bpm", "gatt-icp", "gatt-hrm", "gatt-plx-spot", "gatt-plx-cont"}
    for spec in PROTOCOLS.values():
        assert spec.input == "hex-message"
    dec = PROTOCOLS["gatt-bpm"].make()
    assert isinstance(dec, MessageDecoder)
    out = dec.feed(BPM_FULL)
    assert [m.metric for m in out if isinstance(m, Measurement)] == [
        "nibp_sys", "nibp_dia", "nibp_mean", "pulse_rate"
    ]
    bad = dec.feed(h("03 02 03 04 05 06 07"))
    assert len(bad) == 1 and isinstance(bad[0], Problem) and "timestamp" in bad[0].message
    assert dec.close() == []
    out = PROTOCOLS["gatt-hrm"].make().feed(h("16 48 54 01 EC 02"))
    assert [m.metric for m in out if isinstance(m, Measurement)] == [
        "heart_rate", "rr_interval", "rr_interval"
    ]
    out = PROTOCOLS["gatt-plx-spot"].make().feed(PLX_SPOT_FULL)
    assert isinstance(out[0], Measurement)
    assert out[0].to_json()["device_time"] == "2024-11-29T23:08:57"

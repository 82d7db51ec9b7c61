"""IEEE 11073-20601 SFLOAT / FLOAT: known answers (docs/sources.md [P2], [P3]), specials, round
trips."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kapmonitor.codecs.base import DecodeError
from kapmonitor.codecs.ieee11073 import (
    FLOAT_SPECIALS,
    SFLOAT_SPECIALS,
    EncodeError,
    Special,
    decode_float,
    decode_sfloat,
    encode_float,
    encode_sfloat,
    float_bytes,
    float_from,
    sfloat_bytes,
    sfloat_exponent,
    sfloat_from,
    value_or_none,
)

# Worked values. Sources: Nordic Android-BLE-Common-Library BPS tests (0xF0BD, kPa),
# the real-cuff Q&A vector (0xF488, [P3] #6), StanfordSpezi/SpeziBluetooth
# Tests/SpeziBluetoothServicesTests/PLXTests.swift (0xF3E8, 0xE37A); 0x8078 is the bytes
# RonanB96/bluetooth-sig-python tests/gatt/characteristics/test_blood_pressure_measurement.py
# uses for "120 mmHg" (its exponent is offset binary, which is wrong).
SFLOAT_KNOWN = [
    (0x0078, 120.0),
    (0xF0BD, 18.9),
    (0xF488, 116.0),
    (0xF3E8, 100.0),
    (0xE37A, 8.90),
    (0xFFF6, -1.0),
    (0x8078, 1.2e-6),
]


@pytest.mark.parametrize(("raw", "value"), SFLOAT_KNOWN)
def test_sfloat_known_values_ble_md_1_3(raw: int, value: float) -> None:
    got = decode_sfloat(raw)
    assert isinstance(got, float)
    assert got == pytest.approx(value, rel=1e-12)
    # Re-encoding with the same exponent gives the same word back.
    assert encode_sfloat(got, exponent=sfloat_exponent(raw)) == raw


def test_sfloat_wire_order_is_little_endian() -> None:
    # Real cuff sends 116.0 mmHg as 88 F4 ([P3] vector #6).
    assert sfloat_from(bytes.fromhex("88F4"), 0) == 116.0
    assert sfloat_bytes(116.0, exponent=-1) == bytes.fromhex("88F4")
    assert sfloat_bytes(120) == bytes.fromhex("7800")


def test_sfloat_exponent_is_twos_complement_not_offset_binary() -> None:
    # bluetooth-sig-python (RonanB96/bluetooth-sig-python ieee11073_parser.py) reads 78 80 as 120;
    # a conformant decoder reads it as 120e-8 and 78 00 as 120.
    assert decode_sfloat(0x8078) == pytest.approx(120e-8)
    assert decode_sfloat(0x0078) == 120.0


@pytest.mark.parametrize(
    ("raw", "special"),
    [
        (0x07FF, Special.NAN),
        (0x0800, Special.NRES),
        (0x07FE, Special.PLUS_INF),
        (0x0802, Special.MINUS_INF),
        (0x0801, Special.RESERVED),
    ],
)
def test_sfloat_specials_are_no_value(raw: int, special: Special) -> None:
    # Nordic Android-BLE-Library Data.java getFloatValue lists the same five raw values.
    got = decode_sfloat(raw)
    assert got is special
    assert value_or_none(got) is None
    assert encode_sfloat(special) == raw


def test_sfloat_nan_is_not_2047() -> None:
    # ptylr/LibreArm issue #10: "2047/2" readings are 0x07FF shown as a number.
    assert decode_sfloat(0x07FF) is Special.NAN
    with pytest.raises(EncodeError):
        encode_sfloat(2047)  # exponent 0 mantissa 2047 *is* NaN: not representable


def test_encode_none_nan_inf() -> None:
    assert encode_sfloat(None) == 0x07FF
    assert encode_sfloat(float("nan")) == 0x07FF
    assert encode_sfloat(float("inf")) == 0x07FE
    assert encode_sfloat(float("-inf")) == 0x0802
    assert encode_float(None) == 0x007FFFFF
    assert encode_float(float("-inf")) == 0x00800002


@pytest.mark.parametrize("value", [0.123456, 1e20, 2048 * 10**7, 1e-9, 2046])
def test_sfloat_unrepresentable_raises(value: float) -> None:
    with pytest.raises(EncodeError):
        encode_sfloat(value)


def test_forced_exponent_must_be_exact() -> None:
    assert encode_sfloat(18.9, exponent=-1) == 0xF0BD
    with pytest.raises(EncodeError):
        encode_sfloat(18.95, exponent=-1)


def test_sfloat_bounds_checks() -> None:
    with pytest.raises(DecodeError):
        decode_sfloat(0x10000)
    with pytest.raises(DecodeError):
        sfloat_from(b"\x00", 0)
    with pytest.raises(DecodeError):
        float_from(b"\x00\x00\x00", 0)


def test_float_known_and_specials() -> None:
    # 32-bit FLOAT: exponent byte 0xFE (-2), mantissa 0x0004D2 (1234) = 12.34
    assert decode_float(0xFE0004D2) == pytest.approx(12.34)
    assert float_from(float_bytes(12.34), 0) == pytest.approx(12.34)
    assert decode_float(0xFFFFFFFF) == -0.1  # mantissa -1, exponent -1
    for raw, special in FLOAT_SPECIALS.items():
        assert decode_float(raw) is special
        assert encode_float(special) == raw


sfloat_words = st.integers(0, 0xFFFF)


@given(sfloat_words)
def test_every_sfloat_word_decodes_and_reencodes(raw: int) -> None:
    value = decode_sfloat(raw)
    if raw in SFLOAT_SPECIALS:
        assert isinstance(value, Special)
        return
    assert isinstance(value, float) and math.isfinite(value)
    again = encode_sfloat(value, exponent=sfloat_exponent(raw))
    assert decode_sfloat(again) == value
    # Same value by automatic choice as well.
    assert decode_sfloat(encode_sfloat(value)) == value


@given(st.integers(-2048, 2047), st.integers(-8, 7))
def test_sfloat_round_trip_from_mantissa_exponent(mantissa: int, exponent: int) -> None:
    if exponent == 0 and mantissa in (2046, 2047, -2048, -2047, -2046):
        return  # these are the special raw words
    value = Decimal(mantissa).scaleb(exponent)
    raw = encode_sfloat(value)
    got = decode_sfloat(raw)
    assert isinstance(got, float)
    assert got == float(value)


@given(st.integers(0, 0xFFFFFFFF))
def test_every_float_word_decodes_to_number_or_special(raw: int) -> None:
    value = decode_float(raw)
    if raw in FLOAT_SPECIALS:
        assert isinstance(value, Special)
    else:
        assert isinstance(value, float)
        assert not math.isnan(value)


@given(st.integers(-(2**23), 2**23 - 1), st.integers(-20, 20))
def test_float_round_trip(mantissa: int, exponent: int) -> None:
    if exponent == 0 and mantissa in (2**23 - 1, 2**23 - 2, -(2**23), -(2**23) + 1, -(2**23) + 2):
        return
    value = Decimal(mantissa).scaleb(exponent)
    assert decode_float(encode_float(value)) == float(value)

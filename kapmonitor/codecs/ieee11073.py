"""IEEE 11073-20601 SFLOAT (16-bit) and FLOAT (32-bit) numbers, as used by the GATT health profiles.

value = mantissa × 10^exponent, both fields *signed two's complement* (a common bug is to read
the exponent nibble as offset binary; see docs/sources.md [P2]). Five raw values with
exponent 0 are reserved; they decode to a :class:`Special`, never to a number.

Encoding picks an exact representation (no rounding: a vital sign must arrive as sent) or raises
:class:`EncodeError`.
"""

from __future__ import annotations

import enum
import math
from decimal import Decimal, InvalidOperation

from kapmonitor.codecs.base import DecodeError


class EncodeError(ValueError):
    """A value has no exact representation in the requested IEEE 11073 format."""


class Special(enum.Enum):
    """The reserved IEEE 11073 values. All of them mean "no value" to kapmonitor."""

    NAN = "NaN"
    NRES = "NRes"  # not at this resolution
    PLUS_INF = "+INF"
    MINUS_INF = "-INF"
    RESERVED = "reserved"  # reserved for future use

    def __str__(self) -> str:
        return self.value


# A decoded number: a float, or the special value the device sent instead.
Number = float | Special
# What the encoders accept: None and float NaN/inf map onto the specials.
Encodable = float | int | Decimal | Special | None

SFLOAT_SPECIALS: dict[int, Special] = {
    0x07FF: Special.NAN,
    0x0800: Special.NRES,
    0x07FE: Special.PLUS_INF,
    0x0802: Special.MINUS_INF,
    0x0801: Special.RESERVED,
}
SFLOAT_RAW: dict[Special, int] = {v: k for k, v in SFLOAT_SPECIALS.items()}

FLOAT_SPECIALS: dict[int, Special] = {
    0x007FFFFF: Special.NAN,
    0x00800000: Special.NRES,
    0x007FFFFE: Special.PLUS_INF,
    0x00800002: Special.MINUS_INF,
    0x00800001: Special.RESERVED,
}
FLOAT_RAW: dict[Special, int] = {v: k for k, v in FLOAT_SPECIALS.items()}


def value_or_none(number: Number | None) -> float | None:
    """The numeric value, or None for a special value (or an absent field)."""
    return number if isinstance(number, float) else None


def _signed(raw: int, bits: int) -> int:
    return raw - (1 << bits) if raw & (1 << (bits - 1)) else raw


def _scale(mantissa: int, exponent: int) -> float:
    # int / int is correctly rounded in Python: 189 / 10 == 18.9, whereas 189 * 0.1 is not.
    if exponent >= 0:
        return float(mantissa * 10**exponent)
    return mantissa / 10**-exponent


def _split(raw: int, mantissa_bits: int, exp_bits: int) -> tuple[int, int]:
    mantissa = _signed(raw & ((1 << mantissa_bits) - 1), mantissa_bits)
    exponent = _signed(raw >> mantissa_bits, exp_bits)
    return mantissa, exponent


def decode_sfloat(raw: int) -> Number:
    """Decode a 16-bit SFLOAT word (already assembled from little-endian bytes)."""
    if not 0 <= raw <= 0xFFFF:
        raise DecodeError(f"SFLOAT raw value {raw:#x} is not 16 bits")
    special = SFLOAT_SPECIALS.get(raw)
    if special is not None:
        return special
    mantissa, exponent = _split(raw, 12, 4)
    return _scale(mantissa, exponent)


def decode_float(raw: int) -> Number:
    """Decode a 32-bit FLOAT word."""
    if not 0 <= raw <= 0xFFFFFFFF:
        raise DecodeError(f"FLOAT raw value {raw:#x} is not 32 bits")
    special = FLOAT_SPECIALS.get(raw)
    if special is not None:
        return special
    mantissa, exponent = _split(raw, 24, 8)
    return _scale(mantissa, exponent)


def sfloat_exponent(raw: int) -> int:
    """The exponent of a raw SFLOAT word (to re-encode a value the way a device sent it)."""
    return _signed(raw >> 12, 4)


def _as_decimal(value: float | int | Decimal) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    # repr() is the shortest string that round-trips, so 18.9 becomes Decimal("18.9") rather
    # than the binary expansion 18.89999999999999857891452847979962825775146484375.
    return Decimal(repr(value))


def _encode(
    value: Encodable,
    *,
    exponent: int | None,
    mantissa_bits: int,
    exp_bits: int,
    specials: dict[Special, int],
    kind: str,
) -> int:
    if value is None:
        return specials[Special.NAN]
    if isinstance(value, Special):
        return specials[value]
    if isinstance(value, float) and math.isnan(value):
        return specials[Special.NAN]
    if isinstance(value, float) and math.isinf(value):
        return specials[Special.PLUS_INF if value > 0 else Special.MINUS_INF]
    try:
        dec = _as_decimal(value)
    except (InvalidOperation, ValueError) as exc:
        raise EncodeError(f"{kind}: cannot encode {value!r}") from exc
    m_max = (1 << (mantissa_bits - 1)) - 1
    m_min = -(1 << (mantissa_bits - 1))
    e_max = (1 << (exp_bits - 1)) - 1
    e_min = -(1 << (exp_bits - 1))
    reserved = {_signed(r, mantissa_bits) for r in specials.values()}

    def fits(mantissa: int, exp: int) -> bool:
        if not (m_min <= mantissa <= m_max and e_min <= exp <= e_max):
            return False
        return not (exp == 0 and mantissa in reserved)

    candidates: list[int]
    if exponent is not None:
        candidates = [exponent]
    else:
        # Prefer the exponent closest to 0 (what devices do for whole numbers), then others.
        candidates = sorted(range(e_min, e_max + 1), key=lambda e: (abs(e), -e))
    for exp in candidates:
        scaled = dec.scaleb(-exp)
        if scaled != scaled.to_integral_value():
            continue
        mantissa = int(scaled)
        if fits(mantissa, exp):
            return ((exp & ((1 << exp_bits) - 1)) << mantissa_bits) | (
                mantissa & ((1 << mantissa_bits) - 1)
            )
    where = f" with exponent {exponent}" if exponent is not None else ""
    raise EncodeError(f"{kind}: {value!r} has no exact representation{where}")


def encode_sfloat(
    value: Encodable, *, exponent: int | None = None
) -> int:
    """Encode to a raw 16-bit SFLOAT word.

    None and float NaN become NaN, ±inf the infinities, a :class:`Special` its own raw value.
    ``exponent`` forces a particular exponent (real cuffs send −1); otherwise the exponent
    closest to zero that represents the value exactly is used.
    """
    return _encode(
        value, exponent=exponent, mantissa_bits=12, exp_bits=4, specials=SFLOAT_RAW,
        kind="SFLOAT",
    )


def encode_float(
    value: Encodable, *, exponent: int | None = None
) -> int:
    """Encode to a raw 32-bit FLOAT word (see :func:`encode_sfloat`)."""
    return _encode(
        value, exponent=exponent, mantissa_bits=24, exp_bits=8, specials=FLOAT_RAW,
        kind="FLOAT",
    )


def sfloat_from(data: bytes, offset: int) -> Number:
    """Decode the little-endian SFLOAT at ``data[offset:offset+2]``."""
    if offset + 2 > len(data):
        raise DecodeError(f"SFLOAT at offset {offset} runs past the end ({len(data)} bytes)")
    return decode_sfloat(int.from_bytes(data[offset : offset + 2], "little"))


def sfloat_bytes(value: Encodable, *, exponent: int | None = None) -> bytes:
    """Encode an SFLOAT as its 2 little-endian wire bytes."""
    return encode_sfloat(value, exponent=exponent).to_bytes(2, "little")


def float_from(data: bytes, offset: int) -> Number:
    """Decode the little-endian FLOAT at ``data[offset:offset+4]``."""
    if offset + 4 > len(data):
        raise DecodeError(f"FLOAT at offset {offset} runs past the end ({len(data)} bytes)")
    return decode_float(int.from_bytes(data[offset : offset + 4], "little"))


def float_bytes(value: Encodable, *, exponent: int | None = None) -> bytes:
    """Encode a FLOAT as its 4 little-endian wire bytes."""
    return encode_float(value, exponent=exponent).to_bytes(4, "little")

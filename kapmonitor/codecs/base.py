"""The sans-IO codec contract shared by every protocol module.

A protocol module is pure: bytes (or lines) in, :class:`~kapmonitor.model.Measurement` out, and
encoders beside the decoders for the simulators. No asyncio, no sockets, no clocks.

To appear in ``kapmonitor decode``, a module in ``kapmonitor.codecs`` defines a module-level
``PROTOCOLS: dict[str, ProtocolSpec]``; :mod:`kapmonitor.codecs.registry` discovers them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from kapmonitor.model import Measurement


class DecodeError(ValueError):
    """Typed error for malformed input. The message names the problem in one line."""


@dataclass(frozen=True, slots=True)
class Problem:
    """A decoder's report that something in the input was wrong (and skipped)."""

    message: str


@dataclass(frozen=True, slots=True)
class Note:
    """Non-reading output worth showing in ``kapmonitor decode`` (message types, device info)."""

    data: dict[str, Any] = field(default_factory=dict)


Output = Measurement | Problem | Note


class Decoder(Protocol):
    """A stateful decoder. ``feed`` takes one chunk; ``close`` flushes at end of input.

    For ``message`` protocols each chunk is one complete message; for ``stream`` protocols
    chunks are consecutive pieces of one byte stream (garbage is skipped, counted and reported
    as a :class:`Problem`, and decoding resyncs); for ``line`` protocols each chunk is one line.
    Decoders never raise on bad input: they return :class:`Problem` items instead.
    """

    def feed(self, chunk: bytes) -> list[Output]: ...

    def close(self) -> list[Output]: ...


InputKind = Literal["hex-message", "hex-stream", "line", "text"]


@dataclass(frozen=True, slots=True)
class ProtocolSpec:
    """How ``kapmonitor decode`` reads input for a protocol and builds its decoder."""

    name: str
    input: InputKind
    make: Callable[[], Decoder]
    summary: str


class MessageDecoder:
    """Adapter: a ``decode(bytes) -> list[Measurement]`` function as a message Decoder."""

    def __init__(self, decode: Callable[[bytes], list[Output]]) -> None:
        self._decode = decode

    def feed(self, chunk: bytes) -> list[Output]:
        try:
            return list(self._decode(chunk))
        except DecodeError as exc:
            return [Problem(str(exc))]

    def close(self) -> list[Output]:
        return []

"""Philips IntelliVue MIB/RS-232 data export (docs/sources.md [P10]).

Layers, each a pure module: :mod:`.framing` (C0/C1 frames, 7D escaping, CRC-16/X-25 FCS),
:mod:`.messages` (association control and ROSE/CMIP data export messages, encoders and
decoders, linked results), :mod:`.numerics` (FLOAT-Type, measurement state, physio-id → metric
mapping, NIBP episode tracking) and :mod:`.stream` (all of it over a byte stream, for
``kapmonitor decode intellivue``).
"""

from __future__ import annotations

from kapmonitor.codecs.base import ProtocolSpec
from kapmonitor.codecs.intellivue.stream import IntellivueStreamDecoder

PROTOCOLS: dict[str, ProtocolSpec] = {
    "intellivue": ProtocolSpec(
        name="intellivue",
        input="hex-stream",
        make=IntellivueStreamDecoder,
        summary=(
            "Philips IntelliVue MIB/RS-232 data export: C0…C1 frames in either direction; "
            "prints message types and decoded numerics"
        ),
    )
}

__all__ = ["PROTOCOLS", "IntellivueStreamDecoder"]

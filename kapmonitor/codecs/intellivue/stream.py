"""Byte stream → frames → messages → Measurements/Notes, for ``kapmonitor decode intellivue``."""

from __future__ import annotations

from typing import Any

from kapmonitor.codecs.base import DecodeError, Note, Output, Problem
from kapmonitor.codecs.intellivue.framing import FrameDecoder
from kapmonitor.codecs.intellivue.messages import (
    AssociationRequest,
    AssociationResult,
    EventReport,
    LinkedResultAssembler,
    MdsCreateEvent,
    MdsCreateResult,
    Message,
    PollRequest,
    PollResult,
    RemoteError,
    UnknownDataExport,
    decode_message,
)
from kapmonitor.codecs.intellivue.numerics import ObservedNumeric, poll_measurements


def describe(m: Message) -> dict[str, Any]:
    """A one-line summary of a message for display."""
    d: dict[str, Any] = {"type": type(m).__name__}
    match m:
        case AssociationRequest(info) | AssociationResult(info):
            if info.poll_profile is not None:
                p = info.poll_profile
                d.update(min_poll_period_s=p.min_poll_seconds, mtu_rx=p.max_mtu_rx,
                         mtu_tx=p.max_mtu_tx)
                if p.ext_options is not None:
                    d["ext_options"] = f"0x{p.ext_options:08X}"
            d["system_type"] = f"0x{info.system_type:08X}"
        case MdsCreateEvent() | MdsCreateResult():
            d["invoke_id"] = m.invoke_id
            if isinstance(m, MdsCreateEvent):
                d["attributes"] = [f"0x{a.attribute_id:04X}" for a in m.attributes]
        case EventReport():
            d.update(invoke_id=m.invoke_id, event_type=f"0x{m.event_type:04X}")
        case PollRequest():
            d.update(invoke_id=m.invoke_id, poll_number=m.poll_number, extended=m.extended,
                     object_type=m.obj_code, attr_group=f"0x{m.attr_group:04X}")
            if m.period_ticks is not None:
                d["poll_duration_s"] = m.period_ticks / 8000
        case PollResult():
            d.update(invoke_id=m.invoke_id, poll_number=m.poll_number, extended=m.extended,
                     object_type=m.obj_code, objects=len(m.observations()))
            if m.extended:
                d["sequence"] = m.sequence
            if m.linked is not None:
                d["linked"] = {"state": m.linked[0], "count": m.linked[1]}
        case RemoteError():
            d.update(invoke_id=m.invoke_id, error_value=m.error_value)
        case UnknownDataExport():
            d.update(ro_type=m.ro_type, invoke_id=m.invoke_id, command=m.command)
    return d


def _unmapped_note(n: ObservedNumeric) -> Note:
    return Note({
        "type": "unmapped numeric",
        "handle": n.handle,
        "physio_id": f"0x{n.obs.physio_id:04X}",
        "value": n.obs.value,
        "state": f"0x{n.obs.state:04X}",
    })


class IntellivueStreamDecoder:
    """Feeds a captured byte stream (either direction) through all layers. Never raises."""

    def __init__(self) -> None:
        self._frames = FrameDecoder()
        self._linked = LinkedResultAssembler()

    def feed(self, chunk: bytes) -> list[Output]:
        out: list[Output] = []
        for item in self._frames.feed(chunk):
            if isinstance(item, Problem):
                out.append(item)
            else:
                out.extend(self._message(item))
        return out

    def close(self) -> list[Output]:
        return [p for p in self._frames.close() if isinstance(p, Problem)]

    def _message(self, data: bytes) -> list[Output]:
        try:
            msg = decode_message(data)
        except DecodeError as exc:
            return [Problem(f"undecodable message: {exc}")]
        out: list[Output] = [Note(describe(msg))]
        if isinstance(msg, PollResult):
            for item in self._linked.add(msg):
                if isinstance(item, Problem):
                    out.append(item)
                    continue
                try:
                    mapped, unmapped = poll_measurements(item)
                except DecodeError as exc:
                    out.append(Problem(f"bad numeric in poll result: {exc}"))
                    continue
                out.extend(mapped)
                out.extend(_unmapped_note(n) for n in unmapped)
        return out

"""``kapmonitor decode hl7``: whole messages (text or MLLP-framed) → notes, readings, problems.
"""

from __future__ import annotations

import re

from kapmonitor.codecs.base import Note, Output, Problem, ProtocolSpec
from kapmonitor.codecs.hl7.er7 import Hl7Error
from kapmonitor.codecs.hl7.mllp import MLLP_START, MllpDeframer
from kapmonitor.codecs.hl7.oru import read_oru

_MESSAGE_START = re.compile(rb"(?:\r\n|\r|\n)(?=MSH)")


class _TextDecoder:
    """Decoder for ``kapmonitor decode hl7``: each chunk is one whole message (text or MLLP)."""

    def __init__(self) -> None:
        self._deframer = MllpDeframer()

    def feed(self, chunk: bytes) -> list[Output]:
        if bytes([MLLP_START]) not in chunk:
            # A text file may hold several messages: each starts at a line beginning "MSH".
            out: list[Output] = []
            for message in _MESSAGE_START.split(chunk):
                if message.strip():
                    out.extend(_describe(message))
            return out
        out = []
        for item in self._deframer.feed(chunk):
            if isinstance(item, Problem):
                out.append(item)
            else:
                out.extend(_describe(item.data))
        return out

    def close(self) -> list[Output]:
        return [p for p in self._deframer.close() if isinstance(p, Problem)]


def _describe(data: bytes) -> list[Output]:
    try:
        report = read_oru(data)
    except Hl7Error as exc:
        where = f" at {exc.location}" if exc.location else ""
        return [Problem(f"{exc.ack_code}: {exc}{where}")]
    h = report.header
    out: list[Output] = [
        Note({
            "message": h.message_type,
            "control_id": h.control_id,
            "version": h.version,
            "sending_application": "^".join(h.sending_application),
            "sending_facility": "^".join(h.sending_facility),
            "location": {
                "point_of_care": report.location.point_of_care,
                "room": report.location.room,
                "bed": report.location.bed,
                "facility": report.location.facility,
            },
            "equipment": list(report.equipment),
            "ack": report.ack_code,
        })
    ]
    out.extend(o.measurement for o in report.observations)
    if report.unmapped:
        out.append(Note({"unmapped": list(report.unmapped)}))
    out.extend(Problem(f"{p.location}: {p.message}") for p in report.problems)
    return out


PROTOCOLS = {
    "hl7": ProtocolSpec(
        name="hl7",
        input="text",
        make=_TextDecoder,
        summary="HL7 v2 ORU^R01 vitals (IHE PCD-01; GE, Philips Efficia, Mindray), text or MLLP",
    )
}

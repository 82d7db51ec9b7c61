"""HL7 acknowledgements: building the ``ACK`` we answer with, and reading one we receive.

What belongs here is MSA/ERR construction (``AA``, or ``AE``/``AR`` with table-0357 codes and
locations), the header peek that lets a listener answer a message it cannot otherwise parse,
and :func:`parse_ack` for senders (the simulators) waiting for our answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from kapmonitor.codecs.hl7.er7 import (
    ERR_APPLICATION,
    ERR_SEGMENT_SEQUENCE,
    ERR_UNSUPPORTED_MESSAGE,
    ERROR_TEXT,
    STANDARD_DELIMITERS,
    AckCode,
    Header,
    Hl7Error,
    escape,
    format_dtm,
    parse_message,
)
from kapmonitor.codecs.hl7.oru import SegmentProblem


def build_ack(
    header: Header | None,
    code: AckCode,
    *,
    control_id: str,
    timestamp: datetime,
    text: str = "",
    problems: Sequence[SegmentProblem] = (),
    error_code: int | None = None,
    error_location: str = "",
    application: str = "KAPMONITOR",
    facility: str = "",
) -> bytes:
    """The ACK for a received message (ER7 bytes, CR-separated, not MLLP-framed).

    ``header`` is the received MSH (None when it could not be read: then MSA-2 stays empty).
    AE/AR carry the reason in MSA-3 and one ERR segment per problem (v2.5 layout: ERR-2
    location, ERR-3 code from HL7 table 0357, ERR-4 severity, ERR-8 user message).
    """
    d = STANDARD_DELIMITERS
    fs = d.field
    version = header.version if header and header.version.startswith("2.") else "2.6"
    event = header.trigger_event if header and header.trigger_event else "R01"
    processing = header.processing_id if header and header.processing_id else "P"

    def hd(parts: Sequence[str]) -> str:
        return d.component.join(escape(p, d) for p in parts).rstrip(d.component)

    msh = [
        "MSH", d.encoding_characters, escape(application, d), escape(facility, d),
        hd(header.sending_application) if header else "",
        hd(header.sending_facility) if header else "",
        format_dtm(timestamp), "", f"ACK{d.component}{event}{d.component}ACK",
        escape(control_id, d), processing, version,
    ]
    reason = text or (problems[0].message if problems else "")
    msa = ["MSA", code, escape(header.control_id, d) if header else ""]
    if code != "AA" and reason:
        msa.append(escape(reason[:200], d))
    segs = [fs.join(msh), fs.join(msa)]
    errs: list[tuple[str, int, str]] = [(p.location, p.code, p.message) for p in problems]
    if code != "AA" and not errs and (error_code is not None or reason):
        errs.append((error_location, error_code or ERR_APPLICATION, reason))
    for loc, ecode, message in errs:
        err_id = f"{ecode}{d.component}{ERROR_TEXT.get(ecode, 'Error')}{d.component}HL70357"
        segs.append(fs.join(["ERR", "", loc, err_id, "E", "", "", "", escape(message[:200], d)]))
    return ("\r".join(segs) + "\r").encode("utf-8")


def ack_for_error(
    exc: Hl7Error, *, control_id: str, timestamp: datetime, application: str = "KAPMONITOR",
    facility: str = "",
) -> bytes:
    return build_ack(
        exc.header, exc.ack_code, control_id=control_id, timestamp=timestamp, text=str(exc),
        error_code=exc.code, error_location=exc.location, application=application,
        facility=facility,
    )


@dataclass(frozen=True, slots=True)
class Ack:
    """A parsed ACK (what a sender reads back)."""

    code: str
    control_id: str  # MSA-2: the acknowledged message's MSH-10
    text: str
    errors: tuple[str, ...]


def parse_ack(data: bytes | str) -> Ack:
    msg = parse_message(data)
    if msg.msh.value(9, 1) != "ACK":
        raise Hl7Error(f"not an ACK: {msg.msh.value(9, 1)!r}", code=ERR_UNSUPPORTED_MESSAGE)
    msa = msg.first("MSA")
    if msa is None:
        raise Hl7Error("ACK without MSA segment", code=ERR_SEGMENT_SEQUENCE)
    errors = tuple(
        f"{'^'.join(e.components(2))} {e.value(3, 1)} {e.value(8)}".strip() for e in msg.all("ERR")
    )
    return Ack(msa.value(1), msa.value(2), msa.value(3), errors)

"""HL7 v2 ORU^R01 vitals (IHE PCD-01) over MLLP, sans-IO.

Bedside and vital-signs monitors (GE B-series, Philips Efficia, Mindray via its gateway) export
periodic ``ORU^R01`` reports over MLLP/TCP. This package holds everything that is bytes and
text, and nothing that waits or talks, one layer a module:

* :mod:`.mllp` — ``0x0B`` … ``0x1C 0x0D`` framing with resync and a size limit;
* :mod:`.er7` — a strict small ER7 parser (delimiters from MSH-1/MSH-2, escapes, DTM, MSH);
* :mod:`.coding` — OBX-3/OBX-6 codes and units onto kapmonitor metrics, through the shared
  nomenclature table (:mod:`kapmonitor.codecs.nomenclature`);
* :mod:`.oru` — ORU^R01 → observations plus routing facts (MSH-3/4, PV1-3, OBX-18) and
  per-segment problems;
* :mod:`.ack` — the ``ACK`` with ``MSA|AA`` or ``AE``/``AR`` and ``ERR`` segments;
* :mod:`.decode` — ``kapmonitor decode hl7``.

The ORU *writer* the simulated monitors send with lives with the simulators
(``kapmonitor_simulators.hl7_oru``): the product only reads ORU.

Why no HL7 library: python-hl7 (last release 2022, "alpha", untyped, raises bare IndexError on
short input) and hl7apy (about 1 MB of version tables, ~10 ms a message, validates against
message structures vendor exports do not follow) both add more than the ~100 lines of ER7
splitting needed here, and the per-vendor mapping is ours either way.

The names below are the package's public interface (``from kapmonitor.codecs import hl7``).
"""

from __future__ import annotations

from kapmonitor.codecs.base import DecodeError
from kapmonitor.codecs.hl7.ack import Ack, ack_for_error, build_ack, parse_ack
from kapmonitor.codecs.hl7.coding import Coded, UnitInfo, code_key, map_observation, map_unit
from kapmonitor.codecs.hl7.decode import PROTOCOLS
from kapmonitor.codecs.hl7.er7 import (
    ERR_APPLICATION,
    ERR_DATA_TYPE,
    ERR_REQUIRED_FIELD,
    ERR_SEGMENT_SEQUENCE,
    ERR_TABLE_VALUE,
    ERR_UNKNOWN_KEY,
    ERR_UNSUPPORTED_EVENT,
    ERR_UNSUPPORTED_MESSAGE,
    ERR_UNSUPPORTED_PROCESSING_ID,
    ERR_UNSUPPORTED_VERSION,
    ERROR_TEXT,
    STANDARD_DELIMITERS,
    AckCode,
    Delimiters,
    Header,
    Hl7Error,
    Message,
    Segment,
    escape,
    format_dtm,
    parse_dtm,
    parse_message,
    peek_header,
    read_header,
    unescape,
)
from kapmonitor.codecs.hl7.mllp import (
    DEFAULT_MAX_MESSAGE,
    MLLP_END,
    MLLP_START,
    Frame,
    MllpDeframer,
    frame,
)
from kapmonitor.codecs.hl7.oru import (
    Location,
    Observation,
    OruReport,
    SegmentProblem,
    check_oru_header,
    read_oru,
)
from kapmonitor.codecs.nomenclature import (
    LOINC_CODES,
    MDC_UNITS,
    OBSERVATION_CODES,
    Nomenclature,
    mdc32,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE", "ERROR_TEXT", "ERR_APPLICATION", "ERR_DATA_TYPE", "ERR_REQUIRED_FIELD",
    "DecodeError", "ERR_SEGMENT_SEQUENCE", "ERR_TABLE_VALUE", "ERR_UNKNOWN_KEY",
    "ERR_UNSUPPORTED_EVENT",
    "ERR_UNSUPPORTED_MESSAGE", "ERR_UNSUPPORTED_PROCESSING_ID", "ERR_UNSUPPORTED_VERSION",
    "LOINC_CODES", "MDC_UNITS", "MLLP_END", "MLLP_START", "OBSERVATION_CODES", "PROTOCOLS",
    "STANDARD_DELIMITERS", "Ack", "AckCode", "Coded", "Delimiters", "Frame", "Header", "Hl7Error",
    "Location", "Message", "MllpDeframer", "Nomenclature", "Observation", "OruReport", "Segment",
    "SegmentProblem", "UnitInfo", "ack_for_error", "build_ack", "check_oru_header", "code_key",
    "escape", "format_dtm", "frame", "map_observation", "map_unit", "mdc32", "parse_ack",
    "parse_dtm", "parse_message", "peek_header", "read_header", "read_oru", "unescape",
]

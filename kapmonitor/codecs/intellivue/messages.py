"""IntelliVue data export messages inside a frame's user data (docs/sources.md [P10]).

Two families share the user-data space:

* **Association control** (first byte = session SPDU type): request 0x0D, accept 0x0E, refuse
  0x0C, release request 0x09, released 0x0A, abort 0x19. Session parameters, then a presentation
  PDU (``C1`` + length indicator) whose ASN.1-BER wrapping is fixed per message type; connect and
  accept carry an ``MDSEUserInfoStd`` (poll profile, MTUs, minimum poll period) inside it.
* **Data export** (``E1 00 00 02``): one ROSE APDU — invoke (ROIV), result (RORS), linked result
  (RORLS) or error (ROER) — carrying a CMIP command: MDS-create event report and its result,
  single and extended poll requests and their results.

All integers are big-endian. ``encode_message`` and ``decode_message`` are exact inverses for
every message type here; decoding raises :class:`~kapmonitor.codecs.base.DecodeError` only.
The fixed ASN.1 blobs are protocol constants as sent by hosts that real monitors accept
(VSCaptureMP ``DataConstants``; mdpnp ``association/impl``); see [P10].
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from enum import IntEnum

from kapmonitor.codecs.base import DecodeError, Problem

# --- nomenclature used here -----------------------------------------------------------------
NOM_PART_OBJ = 1
NOM_MOC_VMO_METRIC_NU = 6  # numerics
NOM_MOC_VMS_MDS = 33
NOM_MOC_VMO_AL_MON = 54  # alert monitor
NOM_ACT_POLL_MDIB_DATA = 0x0C16
NOM_ACT_POLL_MDIB_DATA_EXT = 0xF13B
NOM_NOTI_MDS_CREAT = 0x0D06
NOM_ATTR_TIME_PD_POLL = 0xF13E
NOM_POLL_PROFILE_SUPPORT = 0x0001
NOM_ATTR_POLL_PROFILE_EXT = 0xF001
NOM_ATTR_GRP_AL_MON = 0x0801
NOM_ATTR_GRP_METRIC_VAL_OBS = 0x0803
NOM_ATTR_GRP_VMO_STATIC = 0x0811

# MDSEUserInfoStd values
MDDL_VERSION1 = 0x80000000
NOMEN_VERSION = 0x40000000
SYST_CLIENT = 0x80000000
SYST_SERVER = 0x00800000
COLD_START = 0x20000000
POLL_PROFILE_REV_0 = 0x80000000
P_OPT_DYN_CREATE_OBJECTS = 0x40000000
P_OPT_DYN_DELETE_OBJECTS = 0x20000000
POLL_EXT_PERIOD_NU_1SEC = 0x80000000
POLL_EXT_PERIOD_RTSA = 0x08000000
POLL_EXT_ENUM = 0x04000000

TICKS_PER_SECOND = 8000  # RelativeTime unit: 1/8 ms


class Spdu(IntEnum):
    CONNECT = 0x0D
    ACCEPT = 0x0E
    REFUSE = 0x0C
    FINISH = 0x09  # release request
    DISCONNECT = 0x0A  # release response
    ABORT = 0x19


class RoType(IntEnum):
    ROIV = 1
    RORS = 2
    ROER = 3
    RORLS = 5


class Command(IntEnum):
    EVENT_REPORT = 0
    CONFIRMED_EVENT_REPORT = 1
    GET = 3
    SET = 4
    CONFIRMED_SET = 5
    CONFIRMED_ACTION = 7


class LinkedState(IntEnum):
    FIRST = 1
    NOT_FIRST_NOT_LAST = 2
    LAST = 3  # last linked result; one RORS follows


DATA_EXPORT_HEADER = bytes.fromhex("e1000002")  # session id E1 00, presentation context 2

# Session parameters of connect/accept (both directions use the same 14 bytes).
_SESSION_CONNECT = bytes.fromhex("0508130100160102800014020002")
_SESSION_ABORT = bytes.fromhex("110103")
_SESSION_REFUSE = bytes.fromhex("320100")

# Presentation PDUs: fixed ASN.1-BER wrappers. Connect/accept end with the [1] tag (0x81) of
# the EXTERNAL's octet-aligned encoding; the user info's BER length and bytes follow.
_PRES_CONNECT = bytes.fromhex(
    "3180a0808001010000a280a0030000 01a4803080020101060452010001 3080060251010000000030800201"
    "02060c2a8648ce14020100000001 0130 80060c2a8648ce14020100000002 01000000000000 6180308002"
    "0101a0806080a180060c2a8648ce14020100000003 010000be802880060c2a8648ce1402010000000101020102"
    "81".replace(" ", "")
)
_PRES_ACCEPT = bytes.fromhex(
    "3180a0808001010000a280a0030000 01a58030808001008102510100003080800100810c2a8648ce140201"
    "00000002010000000061803080020101a0806180a180060c2a8648ce14020100000003010000a2030201 00"
    "a305a103020100be80288002010281".replace(" ", "")
)
_PRES_TRAILER = bytes(16)
_PRES_RELEASE_REQ = bytes.fromhex("61803080020101a080628080010000") + bytes(7)
_PRES_RELEASE_RSP = bytes.fromhex("61803080020101a080638080010000") + bytes(7)
_PRES_ABORT = bytes.fromhex(
    "a080a0803080020101060251010000000061803080020101a0806480800101"
) + bytes(10)
_EXTERNAL_START = bytes.fromhex("be802880")  # user-information [30] EXTERNAL, indefinite length


# --- small binary helpers ----------------------------------------------------------------------
class _Reader:
    """Bounds-checked big-endian reader; every underrun is a DecodeError."""

    def __init__(self, data: bytes, what: str = "message") -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError(
                f"{self.what} truncated: need {n} byte(s) at offset {self.pos}, "
                f"have {self.remaining()}"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def sub(self, n: int, what: str) -> _Reader:
        return _Reader(self.take(n), what)

    def done(self) -> None:
        if self.remaining():
            raise DecodeError(f"{self.remaining()} unexpected byte(s) at the end of {self.what}")


def _u16(v: int) -> bytes:
    return struct.pack(">H", v)


def _u32(v: int) -> bytes:
    return struct.pack(">I", v)


def _li(n: int) -> bytes:
    """Session/presentation length indicator: one byte below 255, else FF + u16."""
    return bytes((n,)) if n < 255 else b"\xff" + _u16(n)


def _read_li(r: _Reader) -> int:
    n = r.u8()
    return r.u16() if n == 0xFF else n


def _ber_length(n: int) -> bytes:
    # Short form below 128; otherwise the two-byte long form real hosts send (82 hi lo).
    return bytes((n,)) if n < 128 else b"\x82" + _u16(n)


def _read_ber_length(r: _Reader) -> int:
    first = r.u8()
    if first < 0x80:
        return first
    count = first & 0x7F
    if count == 0 or count > 2:
        raise DecodeError(f"unsupported BER length form 0x{first:02X}")
    return int.from_bytes(r.take(count), "big")


# --- attributes --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ava:
    """One attribute-value assertion: attribute id and its raw value bytes."""

    attribute_id: int
    value: bytes


def encode_attribute_list(avas: tuple[Ava, ...] | list[Ava]) -> bytes:
    body = b"".join(_u16(a.attribute_id) + _u16(len(a.value)) + a.value for a in avas)
    return _u16(len(avas)) + _u16(len(body)) + body


def _read_attribute_list(r: _Reader) -> tuple[Ava, ...]:
    count = r.u16()
    body = r.sub(r.u16(), "attribute list")
    avas = []
    for _ in range(count):
        attr = body.u16()
        avas.append(Ava(attr, body.take(body.u16())))
    body.done()
    return tuple(avas)


def decode_attribute_list(data: bytes) -> tuple[Ava, ...]:
    r = _Reader(data, "attribute list")
    out = _read_attribute_list(r)
    r.done()
    return out


def find_attribute(avas: tuple[Ava, ...], attribute_id: int) -> bytes | None:
    for a in avas:
        if a.attribute_id == attribute_id:
            return a.value
    return None


@dataclass(frozen=True, slots=True)
class ManagedObject:
    obj_class: int = NOM_MOC_VMS_MDS
    context_id: int = 0
    handle: int = 0

    def encode(self) -> bytes:
        return _u16(self.obj_class) + _u16(self.context_id) + _u16(self.handle)

    @staticmethod
    def read(r: _Reader) -> ManagedObject:
        return ManagedObject(r.u16(), r.u16(), r.u16())


MDS = ManagedObject()


# --- association control -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PollProfile:
    """PollProfileSupport (+ the extended poll profile in its optional packages)."""

    min_poll_period: int = 1000  # RelativeTime ticks (1/8 ms)
    max_mtu_rx: int = 2500
    max_mtu_tx: int = 1000
    max_bandwidth: int = 0xFFFFFFFF
    options: int = P_OPT_DYN_CREATE_OBJECTS | P_OPT_DYN_DELETE_OBJECTS
    revision: int = POLL_PROFILE_REV_0
    ext_options: int | None = POLL_EXT_PERIOD_NU_1SEC | POLL_EXT_PERIOD_RTSA | POLL_EXT_ENUM
    ext_attributes: tuple[Ava, ...] = ()
    other_packages: tuple[Ava, ...] = ()

    @property
    def min_poll_seconds(self) -> float:
        return self.min_poll_period / TICKS_PER_SECOND

    def encode(self) -> bytes:
        packages = list(self.other_packages)
        if self.ext_options is not None:
            ext = _u32(self.ext_options) + encode_attribute_list(self.ext_attributes)
            packages.insert(0, Ava(NOM_ATTR_POLL_PROFILE_EXT, ext))
        return (
            _u32(self.revision)
            + _u32(self.min_poll_period)
            + _u32(self.max_mtu_rx)
            + _u32(self.max_mtu_tx)
            + _u32(self.max_bandwidth)
            + _u32(self.options)
            + encode_attribute_list(packages)
        )

    @staticmethod
    def decode(data: bytes) -> PollProfile:
        r = _Reader(data, "poll profile")
        revision, period, rx, tx, bw, options = (r.u32() for _ in range(6))
        packages = _read_attribute_list(r)
        r.done()
        ext_options: int | None = None
        ext_attrs: tuple[Ava, ...] = ()
        others = []
        for p in packages:
            if p.attribute_id == NOM_ATTR_POLL_PROFILE_EXT and ext_options is None:
                er = _Reader(p.value, "extended poll profile")
                ext_options = er.u32()
                ext_attrs = _read_attribute_list(er)
                er.done()
            else:
                others.append(p)
        return PollProfile(period, rx, tx, bw, options, revision, ext_options, ext_attrs,
                           tuple(others))


@dataclass(frozen=True, slots=True)
class UserInfo:
    """MDSEUserInfoStd carried by the association request and accept."""

    poll_profile: PollProfile | None = field(default_factory=PollProfile)
    system_type: int = SYST_CLIENT
    protocol_version: int = MDDL_VERSION1
    nomenclature_version: int = NOMEN_VERSION
    functional_units: int = 0
    startup_mode: int = COLD_START
    options: tuple[Ava, ...] = ()
    other_profiles: tuple[Ava, ...] = ()

    def encode(self) -> bytes:
        profiles = list(self.other_profiles)
        if self.poll_profile is not None:
            profiles.insert(0, Ava(NOM_POLL_PROFILE_SUPPORT, self.poll_profile.encode()))
        return (
            _u32(self.protocol_version)
            + _u32(self.nomenclature_version)
            + _u32(self.functional_units)
            + _u32(self.system_type)
            + _u32(self.startup_mode)
            + encode_attribute_list(self.options)
            + encode_attribute_list(profiles)
        )

    @staticmethod
    def decode(data: bytes) -> UserInfo:
        r = _Reader(data, "user info")
        proto, nomen, fu, systype, startup = (r.u32() for _ in range(5))
        options = _read_attribute_list(r)
        profiles = _read_attribute_list(r)
        r.done()
        poll: PollProfile | None = None
        others = []
        for p in profiles:
            if p.attribute_id == NOM_POLL_PROFILE_SUPPORT and poll is None:
                poll = PollProfile.decode(p.value)
            else:
                others.append(p)
        return UserInfo(poll, systype, proto, nomen, fu, startup, options, tuple(others))


@dataclass(frozen=True, slots=True)
class AssociationRequest:
    user_info: UserInfo = field(default_factory=UserInfo)


@dataclass(frozen=True, slots=True)
class AssociationResult:
    """The monitor's accept (0x0E), carrying its poll profile."""

    user_info: UserInfo = field(
        default_factory=lambda: UserInfo(PollProfile(ext_options=None), system_type=SYST_SERVER)
    )


@dataclass(frozen=True, slots=True)
class AssociationRefuse:
    pass


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    pass


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    pass


@dataclass(frozen=True, slots=True)
class Abort:
    pass


def _spdu(kind: Spdu, session: bytes, presentation: bytes | None) -> bytes:
    body = session
    if presentation is not None:
        body += b"\xc1" + _li(len(presentation)) + presentation
    return bytes((kind,)) + _li(len(body)) + body


def _with_user_info(header: bytes, info: UserInfo) -> bytes:
    ui = info.encode()
    return header + _ber_length(len(ui)) + ui + _PRES_TRAILER


def _user_info_from_presentation(p: bytes) -> UserInfo:
    start = p.find(_EXTERNAL_START)
    if start < 0:
        raise DecodeError("association PDU has no user-information EXTERNAL")
    r = _Reader(p[start + len(_EXTERNAL_START) :], "association user data")
    while True:
        tag = r.u8()
        if tag == 0x81:  # octet-aligned encoding: the MDSEUserInfoStd
            return UserInfo.decode(r.take(_read_ber_length(r)))
        if tag in (0x02, 0x06):  # indirect-reference INTEGER / direct-reference OID
            r.take(_read_ber_length(r))
            continue
        raise DecodeError(f"unexpected BER tag 0x{tag:02X} in the association user data")


def _decode_association(data: bytes) -> AssociationMessage:
    r = _Reader(data, "association PDU")
    kind = r.u8()
    body = r.sub(_read_li(r), "association PDU body")
    presentation: bytes | None = None
    while body.remaining():
        pid = body.u8()
        if pid == 0xC1:
            presentation = body.take(_read_li(body))
            body.done()
            break
        body.take(_read_li(body))  # session parameter (id, LI, value): nothing we need
    if kind == Spdu.CONNECT or kind == Spdu.ACCEPT:
        if presentation is None:
            raise DecodeError("association PDU without presentation data")
        info = _user_info_from_presentation(presentation)
        return AssociationRequest(info) if kind == Spdu.CONNECT else AssociationResult(info)
    if kind == Spdu.REFUSE:
        return AssociationRefuse()
    if kind == Spdu.FINISH:
        return ReleaseRequest()
    if kind == Spdu.DISCONNECT:
        return ReleaseResult()
    if kind == Spdu.ABORT:
        return Abort()
    raise DecodeError(f"unknown session PDU type 0x{kind:02X}")


# --- data export: CMIP inside ROSE -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MdsCreateEvent:
    """Monitor → host after association: ROIV confirmed event report NOM_NOTI_MDS_CREAT."""

    invoke_id: int
    event_time: int = 0  # RelativeTime
    attributes: tuple[Ava, ...] = ()
    mds: ManagedObject = MDS
    source: ManagedObject = MDS  # managed object of the event report itself


@dataclass(frozen=True, slots=True)
class EventReport:
    """Any other event report (kept raw)."""

    invoke_id: int
    confirmed: bool
    event_type: int
    event_time: int
    info: bytes
    source: ManagedObject = MDS


@dataclass(frozen=True, slots=True)
class MdsCreateResult:
    """Host → monitor: RORS confirmed event report echoing the MDS-create's invoke id."""

    invoke_id: int
    current_time: int = 0
    source: ManagedObject = MDS
    event_type: int = NOM_NOTI_MDS_CREAT


@dataclass(frozen=True, slots=True)
class PollRequest:
    """Single (``extended=False``) or extended poll: ROIV confirmed action on the MDS."""

    invoke_id: int
    poll_number: int
    obj_code: int = NOM_MOC_VMO_METRIC_NU
    attr_group: int = 0  # 0 = all attribute groups
    extended: bool = True
    attributes: tuple[Ava, ...] = ()  # extended only, e.g. NOM_ATTR_TIME_PD_POLL
    obj_partition: int = NOM_PART_OBJ
    scope: int = 0
    target: ManagedObject = MDS

    @property
    def action_type(self) -> int:
        return NOM_ACT_POLL_MDIB_DATA_EXT if self.extended else NOM_ACT_POLL_MDIB_DATA

    @property
    def period_ticks(self) -> int | None:
        """TIME_PD_POLL: how long the monitor should keep sending periodic results."""
        raw = find_attribute(self.attributes, NOM_ATTR_TIME_PD_POLL)
        return int.from_bytes(raw, "big") if raw is not None and len(raw) == 4 else None


@dataclass(frozen=True, slots=True)
class ObservationPoll:
    handle: int
    attributes: tuple[Ava, ...]


@dataclass(frozen=True, slots=True)
class ContextPoll:
    context_id: int
    observations: tuple[ObservationPoll, ...]


INVALID_ABS_TIME = b"\xff" * 8


@dataclass(frozen=True, slots=True)
class PollResult:
    """Poll reply (RORS), or one part of a linked reply (RORLS, ``linked`` = (state, count))."""

    invoke_id: int
    poll_number: int
    contexts: tuple[ContextPoll, ...] = ()
    rel_time: int = 0
    abs_time: bytes = INVALID_ABS_TIME
    obj_code: int = NOM_MOC_VMO_METRIC_NU
    attr_group: int = 0
    extended: bool = True
    sequence: int = 0  # extended only
    linked: tuple[int, int] | None = None
    obj_partition: int = NOM_PART_OBJ
    source: ManagedObject = MDS

    @property
    def action_type(self) -> int:
        return NOM_ACT_POLL_MDIB_DATA_EXT if self.extended else NOM_ACT_POLL_MDIB_DATA

    def observations(self) -> list[tuple[int, ObservationPoll]]:
        return [(c.context_id, o) for c in self.contexts for o in c.observations]


@dataclass(frozen=True, slots=True)
class RemoteError:
    """ROER: the other side rejected an invoke."""

    invoke_id: int
    error_value: int
    parameter: bytes = b""


@dataclass(frozen=True, slots=True)
class UnknownDataExport:
    """A well-formed ROSE APDU carrying a command this codec does not interpret."""

    ro_type: int
    invoke_id: int
    command: int
    argument: bytes
    linked: tuple[int, int] | None = None


AssociationMessage = (
    AssociationRequest | AssociationResult | AssociationRefuse | ReleaseRequest | ReleaseResult
    | Abort
)
DataExportMessage = (
    MdsCreateEvent | EventReport | MdsCreateResult | PollRequest | PollResult | RemoteError
    | UnknownDataExport
)
Message = AssociationMessage | DataExportMessage


def _rose(ro_type: RoType, body: bytes) -> bytes:
    return DATA_EXPORT_HEADER + _u16(ro_type) + _u16(len(body)) + body


def _invoke(invoke_id: int, command: Command, arg: bytes) -> bytes:
    return _u16(invoke_id) + _u16(command) + _u16(len(arg)) + arg


def _encode_poll_info(contexts: tuple[ContextPoll, ...]) -> bytes:
    parts = []
    for c in contexts:
        obs = b"".join(_u16(o.handle) + encode_attribute_list(o.attributes) for o in c.observations)
        parts.append(_u16(c.context_id) + _u16(len(c.observations)) + _u16(len(obs)) + obs)
    body = b"".join(parts)
    return _u16(len(contexts)) + _u16(len(body)) + body


def _read_poll_info(r: _Reader) -> tuple[ContextPoll, ...]:
    count = r.u16()
    body = r.sub(r.u16(), "poll info list")
    contexts = []
    for _ in range(count):
        context_id = body.u16()
        n_obs = body.u16()
        ob = body.sub(body.u16(), "single context poll")
        observations = []
        for _ in range(n_obs):
            handle = ob.u16()
            observations.append(ObservationPoll(handle, _read_attribute_list(ob)))
        ob.done()
        contexts.append(ContextPoll(context_id, tuple(observations)))
    body.done()
    return tuple(contexts)


def _encode_poll_result_arg(m: PollResult) -> bytes:
    if len(m.abs_time) != 8:
        raise ValueError("abs_time must be 8 bytes")
    reply = _u16(m.poll_number)
    if m.extended:
        reply += _u16(m.sequence)
    reply += (
        _u32(m.rel_time)
        + m.abs_time
        + _u16(m.obj_partition)
        + _u16(m.obj_code)
        + _u16(m.attr_group)
        + _encode_poll_info(m.contexts)
    )
    return m.source.encode() + _u16(m.action_type) + _u16(len(reply)) + reply


def encode_message(m: Message) -> bytes:
    """The user data (frame payload) of one message."""
    match m:
        case AssociationRequest(info):
            return _spdu(Spdu.CONNECT, _SESSION_CONNECT, _with_user_info(_PRES_CONNECT, info))
        case AssociationResult(info):
            return _spdu(Spdu.ACCEPT, _SESSION_CONNECT, _with_user_info(_PRES_ACCEPT, info))
        case AssociationRefuse():
            return _spdu(Spdu.REFUSE, _SESSION_REFUSE, b"")
        case ReleaseRequest():
            return _spdu(Spdu.FINISH, b"", _PRES_RELEASE_REQ)
        case ReleaseResult():
            return _spdu(Spdu.DISCONNECT, b"", _PRES_RELEASE_RSP)
        case Abort():
            return _spdu(Spdu.ABORT, _SESSION_ABORT, _PRES_ABORT)
    return _encode_data_export(m)


def _encode_data_export(m: Message) -> bytes:
    """The ROSE-level (data export) messages of :func:`encode_message`."""
    match m:
        case MdsCreateEvent():
            create = m.mds.encode() + encode_attribute_list(m.attributes)
            arg = (m.source.encode() + _u32(m.event_time) + _u16(NOM_NOTI_MDS_CREAT)
                   + _u16(len(create)) + create)
            return _rose(RoType.ROIV, _invoke(m.invoke_id, Command.CONFIRMED_EVENT_REPORT, arg))
        case EventReport():
            arg = (m.source.encode() + _u32(m.event_time) + _u16(m.event_type)
                   + _u16(len(m.info)) + m.info)
            cmd = Command.CONFIRMED_EVENT_REPORT if m.confirmed else Command.EVENT_REPORT
            return _rose(RoType.ROIV, _invoke(m.invoke_id, cmd, arg))
        case MdsCreateResult():
            arg = m.source.encode() + _u32(m.current_time) + _u16(m.event_type) + _u16(0)
            return _rose(RoType.RORS, _invoke(m.invoke_id, Command.CONFIRMED_EVENT_REPORT, arg))
        case PollRequest():
            req = _u16(m.poll_number) + _u16(m.obj_partition) + _u16(m.obj_code)
            req += _u16(m.attr_group)
            if m.extended:
                req += encode_attribute_list(m.attributes)
            elif m.attributes:
                raise ValueError("a single poll request carries no attribute list")
            arg = m.target.encode() + _u32(m.scope) + _u16(m.action_type) + _u16(len(req)) + req
            return _rose(RoType.ROIV, _invoke(m.invoke_id, Command.CONFIRMED_ACTION, arg))
        case PollResult():
            body = _invoke(m.invoke_id, Command.CONFIRMED_ACTION, _encode_poll_result_arg(m))
            if m.linked is None:
                return _rose(RoType.RORS, body)
            return _rose(RoType.RORLS, bytes(m.linked) + body)
        case RemoteError():
            body = _u16(m.invoke_id) + _u16(m.error_value) + _u16(len(m.parameter)) + m.parameter
            return _rose(RoType.ROER, body)
        case UnknownDataExport():
            body = _invoke(m.invoke_id, Command(m.command), m.argument)
            if m.ro_type == RoType.RORLS:
                return _rose(RoType.RORLS, bytes(m.linked or (0, 0)) + body)
            return _rose(RoType(m.ro_type), body)
    raise TypeError(f"cannot encode {type(m).__name__}")


def _decode_poll_result(
    invoke_id: int, arg: _Reader, linked: tuple[int, int] | None
) -> PollResult | None:
    source = ManagedObject.read(arg)
    action = arg.u16()
    if action not in (NOM_ACT_POLL_MDIB_DATA, NOM_ACT_POLL_MDIB_DATA_EXT):
        return None
    extended = action == NOM_ACT_POLL_MDIB_DATA_EXT
    r = arg.sub(arg.u16(), "poll reply")
    arg.done()
    poll_number = r.u16()
    sequence = r.u16() if extended else 0
    rel_time = r.u32()
    abs_time = r.take(8)
    partition, code, group = r.u16(), r.u16(), r.u16()
    contexts = _read_poll_info(r)
    r.done()
    return PollResult(invoke_id, poll_number, contexts, rel_time, abs_time, code, group,
                      extended, sequence, linked, partition, source)


def _decode_invoke(invoke_id: int, command: int, arg: _Reader) -> DataExportMessage | None:
    if command in (Command.EVENT_REPORT, Command.CONFIRMED_EVENT_REPORT):
        source = ManagedObject.read(arg)
        event_time = arg.u32()
        event_type = arg.u16()
        info = arg.take(arg.u16())
        arg.done()
        confirmed = command == Command.CONFIRMED_EVENT_REPORT
        if event_type == NOM_NOTI_MDS_CREAT and confirmed:
            ir = _Reader(info, "MDS create info")
            mds = ManagedObject.read(ir)
            attrs = _read_attribute_list(ir)
            ir.done()
            return MdsCreateEvent(invoke_id, event_time, attrs, mds, source)
        return EventReport(invoke_id, confirmed, event_type, event_time, info, source)
    if command == Command.CONFIRMED_ACTION:
        target = ManagedObject.read(arg)
        scope = arg.u32()
        action = arg.u16()
        if action not in (NOM_ACT_POLL_MDIB_DATA, NOM_ACT_POLL_MDIB_DATA_EXT):
            return None
        extended = action == NOM_ACT_POLL_MDIB_DATA_EXT
        r = arg.sub(arg.u16(), "poll request")
        arg.done()
        poll_number, partition, code, group = r.u16(), r.u16(), r.u16(), r.u16()
        attrs = _read_attribute_list(r) if extended else ()
        r.done()
        return PollRequest(invoke_id, poll_number, code, group, extended, attrs, partition,
                           scope, target)
    return None


def _decode_data_export(data: bytes) -> DataExportMessage:
    r = _Reader(data, "data export message")
    if r.take(4) != DATA_EXPORT_HEADER:
        raise DecodeError(f"unknown data export header {data[:4].hex(' ')}")
    ro_type = r.u16()
    body = r.sub(r.u16(), "ROSE APDU")
    r.done()
    if ro_type == RoType.ROER:
        invoke_id, error = body.u16(), body.u16()
        param = body.take(body.u16())
        body.done()
        return RemoteError(invoke_id, error, param)
    if ro_type not in (RoType.ROIV, RoType.RORS, RoType.RORLS):
        raise DecodeError(f"unknown ROSE APDU type {ro_type}")
    linked: tuple[int, int] | None = None
    if ro_type == RoType.RORLS:
        linked = (body.u8(), body.u8())
    invoke_id, command = body.u16(), body.u16()
    raw_arg = body.take(body.u16())
    body.done()
    arg = _Reader(raw_arg, "command argument")
    decoded: DataExportMessage | None = None
    if ro_type == RoType.ROIV:
        decoded = _decode_invoke(invoke_id, command, arg)
    elif command == Command.CONFIRMED_ACTION:
        decoded = _decode_poll_result(invoke_id, arg, linked)
    elif command == Command.CONFIRMED_EVENT_REPORT and ro_type == RoType.RORS:
        source = ManagedObject.read(arg)
        current_time, event_type = arg.u32(), arg.u16()
        if arg.u16() == 0 and not arg.remaining():
            decoded = MdsCreateResult(invoke_id, current_time, source, event_type)
    if decoded is not None:
        return decoded
    if command not in Command.__members__.values():
        raise DecodeError(f"unknown CMIP command type {command}")
    return UnknownDataExport(ro_type, invoke_id, command, raw_arg, linked)


def decode_message(data: bytes) -> Message:
    """Decode one frame's user data; raises :class:`DecodeError` when malformed."""
    if not data:
        raise DecodeError("empty message")
    if data[0] == DATA_EXPORT_HEADER[0]:
        return _decode_data_export(data)
    return _decode_association(data)


def message_name(m: Message) -> str:
    return type(m).__name__


# --- linked results ------------------------------------------------------------------------------
def split_poll_result(result: PollResult, max_user_data: int) -> list[PollResult]:
    """Split a poll result that exceeds ``max_user_data`` into linked results.

    Parts go out as RORLS (first, middle…, last; count from 1), followed by one RORS with an
    empty poll info list that closes the chain. A result that fits is returned unchanged.
    """
    if len(encode_message(result)) <= max_user_data:
        return [result]
    chunks: list[list[tuple[int, ObservationPoll]]] = [[]]
    for pair in result.observations():
        trial = chunks[-1] + [pair]
        if chunks[-1] and len(encode_message(_with_observations(result, trial))) > max_user_data:
            chunks.append([pair])  # an observation larger than the MTU still goes alone
        else:
            chunks[-1] = trial
    parts = []
    for i, chunk in enumerate(chunks, start=1):
        state = (
            LinkedState.FIRST if i == 1
            else LinkedState.LAST if i == len(chunks)
            else LinkedState.NOT_FIRST_NOT_LAST
        )
        parts.append(replace(_with_observations(result, chunk), linked=(state, i & 0xFF)))
    parts.append(replace(result, contexts=(), linked=None))
    return parts


def _with_observations(result: PollResult, pairs: list[tuple[int, ObservationPoll]]) -> PollResult:
    contexts: list[ContextPoll] = []
    for context_id, obs in pairs:
        if contexts and contexts[-1].context_id == context_id:
            contexts[-1] = ContextPoll(context_id, contexts[-1].observations + (obs,))
        else:
            contexts.append(ContextPoll(context_id, (obs,)))
    return replace(result, contexts=tuple(contexts))


class LinkedResultAssembler:
    """Merges RORLS parts with the RORS that closes them (same invoke id) into one result."""

    MAX_PENDING = 8
    MAX_PARTS = 256

    def __init__(self) -> None:
        self._pending: dict[int, list[PollResult]] = {}

    def add(self, m: PollResult) -> list[PollResult | Problem]:
        out: list[PollResult | Problem] = []
        if m.linked is not None:
            parts = self._pending.setdefault(m.invoke_id, [])
            expected = len(parts) + 1
            state, count = m.linked
            if state == LinkedState.FIRST and parts:
                out.append(Problem(f"linked result {m.invoke_id}: new chain before the last "
                                   f"one closed; {len(parts)} part(s) dropped"))
                parts.clear()
                expected = 1
            if count != expected & 0xFF:
                out.append(Problem(f"linked result {m.invoke_id}: part {count} arrived, "
                                   f"expected {expected}"))
            if len(parts) >= self.MAX_PARTS:
                out.append(Problem(f"linked result {m.invoke_id}: too many parts, dropped"))
                del self._pending[m.invoke_id]
                return out
            parts.append(m)
            while len(self._pending) > self.MAX_PENDING:
                oldest = next(iter(self._pending))
                out.append(Problem(f"linked result {oldest} never closed; dropped"))
                del self._pending[oldest]
            return out
        parts = self._pending.pop(m.invoke_id, [])
        if parts and parts[-1].linked is not None and parts[-1].linked[0] != LinkedState.LAST:
            out.append(Problem(f"linked result {m.invoke_id} closed without its last part"))
        merged: list[ContextPoll] = []
        for c in [c for p in parts for c in p.contexts] + list(m.contexts):
            if merged and merged[-1].context_id == c.context_id:  # a context split over parts
                merged[-1] = ContextPoll(c.context_id, merged[-1].observations + c.observations)
            else:
                merged.append(c)
        out.append(replace(m, contexts=tuple(merged)))
        return out

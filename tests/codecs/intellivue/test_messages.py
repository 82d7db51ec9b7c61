"""IntelliVue association and data export messages: known answers, round trips, linked results.

Known-answer byte arrays are the requests hosts send to real monitors, from xeonfusion/VSCaptureMP
``Class3.cs`` ``DataConstants`` (``aarq_msg``, ``poll_request_msg``, ``ext_poll_request_msg``,
``ext_poll_request_msg5``, ``keep_alive_msg``, ``mds_create_resp_msg``, ``rlrq_msg``,
``rlrq_resp_msg``, ``assoc_abort_resp_msg``); the accept's presentation header is mdpnp/mdpnp
``AssociationAcceptImpl.java``. The constructed poll result is our own, computed from [P10].
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kapmonitor.codecs.base import DecodeError, Problem
from kapmonitor.codecs.intellivue.messages import (
    NOM_ATTR_GRP_METRIC_VAL_OBS,
    NOM_ATTR_TIME_PD_POLL,
    NOM_MOC_VMS_MDS,
    SYST_SERVER,
    Abort,
    AssociationRefuse,
    AssociationRequest,
    AssociationResult,
    Ava,
    ContextPoll,
    EventReport,
    LinkedResultAssembler,
    LinkedState,
    ManagedObject,
    MdsCreateEvent,
    MdsCreateResult,
    Message,
    ObservationPoll,
    PollProfile,
    PollRequest,
    PollResult,
    ReleaseRequest,
    ReleaseResult,
    RemoteError,
    UnknownDataExport,
    UserInfo,
    decode_message,
    encode_message,
    split_poll_result,
)

AARQ_MSG = bytes.fromhex(
    "0dec0508130100160102800014020002c1dc3180a0808001010000a280a003000001a48030800201010604520100"
    "01308006025101000000003080020102060c2a8648ce14020100000001013080060c2a8648ce1402010000000201"
    "00000000000061803080020101a0806080a180060c2a8648ce14020100000003010000be802880060c2a8648ce14"
    "0201000000010102010281488000000040000000000000008000000020000000000000000001002c000100288000"
    "0000000009c4000009c4000003e8ffffffff600000000001000cf00100088c000000000000000000000000000000"
    "0000000000000000"
)
POLL_REQUEST_MSG = bytes.fromhex(
    "e10000020001001c000000070016002100000000000000000c16000800010001 00060000".replace(" ", "")
)
EXT_POLL_REQUEST_MSG = bytes.fromhex(
    "e100000200010020000100070 01a00210000000000000000f13b000c000100010006000000000000"
    .replace(" ", "")
)
EXT_POLL_REQUEST_MSG5 = bytes.fromhex(
    "e1000002000100280001000700220021000000000000 0000f13b00140001000100060000000100 08f13e0004"
    "0003a980".replace(" ", "")
)
KEEP_ALIVE_MSG = bytes.fromhex(
    "e10000020001001c000100070016002100000000000000000c1600080001000100 21080c".replace(" ", "")
)
MDS_CREATE_RESP_MSG = bytes.fromhex("e10000020002001400010001000e0021000000000 00abd000d060000"
                                    .replace(" ", ""))
RLRQ_MSG = bytes.fromhex("0918c11661803080020101a08062808001" + "00" * 9)
RLRQ_RESP_MSG = bytes.fromhex("0a18c11661803080020101a08063808001" + "00" * 9)
ABORT_MSG = bytes.fromhex(
    "192e110103c129a080a0803080020101060251010000000061803080020101a080648080010100000000000000"
    "000000"
)
CONSTRUCTED_POLL_RESULT = bytes.fromhex(
    "e1000002000200700004000700 6a00210000000 0f13b006000010001000123 45ffffffffffffffff00010006"
    "0803000100460000000200400010000100 0e0950000a4bb80000022000000061001100010026094b0022000300"
    "1e4a0500000f20000000784a0600000f20000000504a0700000f200000005d".replace(" ", "")
)


def test_association_request_matches_the_device_accepted_bytes() -> None:
    msg = decode_message(AARQ_MSG)
    assert isinstance(msg, AssociationRequest)
    profile = msg.user_info.poll_profile
    assert profile is not None
    assert (profile.min_poll_period, profile.max_mtu_rx, profile.max_mtu_tx) == (2500, 2500, 1000)
    assert profile.ext_options == 0x8C000000  # NU_1SEC + RTSA + ENUM
    assert encode_message(AssociationRequest(UserInfo(PollProfile(min_poll_period=2500)))) == (
        AARQ_MSG
    )


def test_release_and_abort_match_the_device_accepted_bytes() -> None:
    assert encode_message(ReleaseRequest()) == RLRQ_MSG
    assert encode_message(ReleaseResult()) == RLRQ_RESP_MSG
    assert encode_message(Abort()) == ABORT_MSG
    assert decode_message(RLRQ_MSG) == ReleaseRequest()
    assert decode_message(RLRQ_RESP_MSG) == ReleaseResult()
    assert decode_message(ABORT_MSG) == Abort()


def test_poll_requests_match_the_device_accepted_bytes() -> None:
    single = PollRequest(0, 1, extended=False)
    assert encode_message(single) == POLL_REQUEST_MSG
    assert decode_message(POLL_REQUEST_MSG) == single
    assert encode_message(PollRequest(1, 1)) == EXT_POLL_REQUEST_MSG
    timed = PollRequest(1, 1, attributes=(Ava(NOM_ATTR_TIME_PD_POLL, b"\x00\x03\xa9\x80"),))
    assert encode_message(timed) == EXT_POLL_REQUEST_MSG5
    decoded = decode_message(EXT_POLL_REQUEST_MSG5)
    assert isinstance(decoded, PollRequest) and decoded.period_ticks == 240000  # 30 s
    keepalive = PollRequest(1, 1, NOM_MOC_VMS_MDS, 0x080C, extended=False)
    assert encode_message(keepalive) == KEEP_ALIVE_MSG


def test_mds_create_result_matches_the_device_accepted_bytes() -> None:
    msg = MdsCreateResult(1, current_time=0x000ABD00)
    assert encode_message(msg) == MDS_CREATE_RESP_MSG
    assert decode_message(MDS_CREATE_RESP_MSG) == msg


def test_accept_carries_the_mdpnp_presentation_header() -> None:
    accept = encode_message(AssociationResult())
    assert accept[0] == 0x0E
    # mdpnp AssociationAcceptImpl.PRESENTATION_HEADER, all 101 bytes: the presentation PDU
    # (after the session data and C1 + LI) starts with it; the user info's BER length follows.
    header = bytes.fromhex(
        "3180a0808001010000a280a003000001a580308080010081025101000030808001008 10c2a8648ce1402"
        "0100000002010000000061803080020101a0806180a180060c2a8648ce14020100000003010000a20302"
        "0100a305a103020100be80288002010281".replace(" ", "")
    )
    assert len(header) == 101
    assert accept[accept.index(b"\xc1") + 2 :].startswith(header)
    msg = decode_message(accept)
    assert isinstance(msg, AssociationResult) and msg.user_info.system_type == SYST_SERVER


def test_constructed_poll_result_decodes() -> None:
    msg = decode_message(CONSTRUCTED_POLL_RESULT)
    assert isinstance(msg, PollResult)
    assert (msg.invoke_id, msg.poll_number, msg.sequence, msg.rel_time) == (4, 1, 1, 0x12345)
    assert msg.extended and msg.linked is None and msg.attr_group == NOM_ATTR_GRP_METRIC_VAL_OBS
    assert [o.handle for _, o in msg.observations()] == [0x10, 0x11]
    assert encode_message(msg) == CONSTRUCTED_POLL_RESULT


def test_refuse_has_a_session_reason_and_empty_presentation() -> None:
    assert encode_message(AssociationRefuse()) == bytes.fromhex("0c05320100c100")
    assert decode_message(bytes.fromhex("0c05320100c100")) == AssociationRefuse()


def test_long_user_info_uses_long_lengths() -> None:
    big = UserInfo(other_profiles=tuple(Ava(0x100 + i, bytes(20)) for i in range(12)))
    wire = encode_message(AssociationRequest(big))
    assert wire[1] == 0xFF  # session LI long form
    assert decode_message(wire) == AssociationRequest(big)


# --- round trips ---------------------------------------------------------------------------------
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
avas = st.lists(st.builds(Ava, u16, st.binary(max_size=12)), max_size=4).map(tuple)
objects = st.builds(ManagedObject, u16, u16, u16)
profiles = st.builds(
    PollProfile, u32, u32, u32, u32, u32, u32, st.one_of(st.none(), u32), avas,
    st.lists(st.builds(Ava, st.integers(0, 0xF000), st.binary(max_size=8)), max_size=2)
    .map(tuple),
).map(lambda p: p if p.ext_options is not None else replace(p, ext_attributes=()))
user_infos = st.builds(
    UserInfo, st.one_of(st.none(), profiles), u32, u32, u32, u32, u32, avas,
    st.lists(st.builds(Ava, st.integers(2, 0xFFFF), st.binary(max_size=8)), max_size=2)
    .map(tuple),
)
observations = st.builds(ObservationPoll, u16, avas)
contexts = st.lists(
    st.builds(ContextPoll, u16, st.lists(observations, max_size=3).map(tuple)), max_size=3
).map(tuple)
linked = st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(0, 255)))
poll_results = st.builds(
    PollResult, u16, u16, contexts, u32, st.binary(min_size=8, max_size=8), u16, u16,
    st.booleans(), u16, linked, u16, objects,
).map(lambda r: r if r.extended else replace(r, sequence=0))
poll_requests = st.builds(
    PollRequest, u16, u16, u16, u16, st.booleans(), avas, u16, u32, objects
).map(lambda r: r if r.extended else replace(r, attributes=()))

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(AssociationRequest, user_infos),
    st.builds(AssociationResult, user_infos),
    st.just(AssociationRefuse()),
    st.just(ReleaseRequest()),
    st.just(ReleaseResult()),
    st.just(Abort()),
    st.builds(MdsCreateEvent, u16, u32, avas, objects, objects),
    st.builds(EventReport, u16, st.booleans(), st.integers(0, 0xFFFF).filter(lambda e: e != 0x0D06),
              u32, st.binary(max_size=20), objects),
    st.builds(MdsCreateResult, u16, u32, objects, u16),
    poll_requests,
    poll_results,
    st.builds(RemoteError, u16, u16, st.binary(max_size=10)),
)


@settings(max_examples=400)
@given(messages)
def test_every_message_round_trips(msg: Message) -> None:
    assert decode_message(encode_message(msg)) == msg


def test_unknown_commands_are_kept_raw() -> None:
    get = UnknownDataExport(1, 9, 3, bytes(8))  # ROIV GET
    assert decode_message(encode_message(get)) == get
    rorls_set = UnknownDataExport(5, 2, 5, b"\x01\x02", (1, 1))
    assert decode_message(encode_message(rorls_set)) == rorls_set


@settings(max_examples=300)
@given(messages, st.data())
def test_truncated_or_damaged_messages_raise_only_decode_error(
    msg: Message, data: st.DataObject
) -> None:
    wire = bytearray(encode_message(msg))
    cut = data.draw(st.integers(0, len(wire)))
    for variant in (bytes(wire[:cut]), _flip(wire, data.draw(st.integers(0, len(wire) - 1)))):
        try:
            decode_message(variant)
        except DecodeError:
            pass


def _flip(wire: bytearray, i: int) -> bytes:
    b = bytearray(wire)
    b[i] ^= 0xFF
    return bytes(b)


def test_random_bytes_raise_only_decode_error() -> None:
    rng = random.Random(61)
    for _ in range(3000):
        head = rng.choice([b"", b"\xe1\x00\x00\x02", b"\x0d", b"\x0e", b"\xe1\x00\x00\x02\x00\x02"])
        data = head + bytes(rng.randrange(256) for _ in range(rng.randint(0, 60)))
        try:
            decode_message(data)
        except DecodeError:
            pass


def test_wrong_lengths_are_decode_errors() -> None:
    bad = bytearray(CONSTRUCTED_POLL_RESULT)
    bad[7] += 1  # ROapdus length one too long
    with pytest.raises(DecodeError, match="truncated"):
        decode_message(bytes(bad))
    with pytest.raises(DecodeError, match="empty"):
        decode_message(b"")
    with pytest.raises(DecodeError, match="unknown"):
        decode_message(b"\x42\x00")


# --- linked results -------------------------------------------------------------------------------
def _big_result(n: int = 30) -> PollResult:
    obs = tuple(ObservationPoll(0x100 + i, (Ava(0x0950, bytes(10)),)) for i in range(n))
    return PollResult(7, 3, (ContextPoll(0, obs[: n // 2]), ContextPoll(1, obs[n // 2 :])),
                      sequence=2)


def test_split_respects_the_mtu_and_reassembles() -> None:
    result = _big_result()
    parts = split_poll_result(result, 200)
    assert len(parts) > 3
    assert all(len(encode_message(p)) <= 200 for p in parts)
    assert [p.linked[0] for p in parts[:-1] if p.linked] == (
        [LinkedState.FIRST] + [LinkedState.NOT_FIRST_NOT_LAST] * (len(parts) - 3)
        + [LinkedState.LAST]
    )
    assert [p.linked[1] for p in parts[:-1] if p.linked] == list(range(1, len(parts)))
    assert parts[-1].linked is None and parts[-1].contexts == ()
    asm = LinkedResultAssembler()
    out: list[PollResult | Problem] = []
    for p in parts:
        out += asm.add(decode_message(encode_message(p)))  # type: ignore[arg-type]
    assert out == [result]


def test_a_result_that_fits_is_not_split() -> None:
    result = _big_result(3)
    assert split_poll_result(result, 1000) == [result]
    assert LinkedResultAssembler().add(result) == [result]


def test_missing_linked_part_is_reported() -> None:
    parts = split_poll_result(_big_result(), 200)
    asm = LinkedResultAssembler()
    out: list[PollResult | Problem] = []
    for p in parts[:1] + parts[2:]:
        out += asm.add(p)
    assert any(isinstance(o, Problem) and "expected 2" in o.message for o in out)
    assert isinstance(out[-1], PollResult)

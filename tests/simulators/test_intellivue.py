"""The IntelliVue monitor simulator's protocol state machine (sans-IO, simulation time)."""

from __future__ import annotations

import pytest
from kapmonitor_simulators.intellivue import IntellivueMonitor, association_timeout
from kapmonitor_simulators.physiology import Patient, SimEvent

from kapmonitor.codecs.base import Problem
from kapmonitor.codecs.intellivue.framing import FrameDecoder, encode_frame
from kapmonitor.codecs.intellivue.messages import (
    NOM_ATTR_TIME_PD_POLL,
    NOM_MOC_VMO_AL_MON,
    Abort,
    AssociationRefuse,
    AssociationRequest,
    AssociationResult,
    Ava,
    LinkedResultAssembler,
    MdsCreateEvent,
    MdsCreateResult,
    Message,
    PollProfile,
    PollRequest,
    PollResult,
    ReleaseRequest,
    ReleaseResult,
    UserInfo,
    decode_message,
    encode_message,
)
from kapmonitor.codecs.intellivue.numerics import poll_measurements
from kapmonitor.model import Measurement


class Host:
    """The test's side of the cable."""

    def __init__(self, monitor: IntellivueMonitor) -> None:
        self.monitor = monitor
        self.frames = FrameDecoder()
        self.linked = LinkedResultAssembler()

    def decode(self, wires: list[bytes]) -> list[Message]:
        out: list[Message] = []
        for item in self.frames.feed(b"".join(wires)):
            assert not isinstance(item, Problem), item
            out.append(decode_message(item))
        return out

    def send(self, msg: Message, t: float) -> list[Message]:
        return self.decode(self.monitor.receive(encode_frame(encode_message(msg)), t))

    def tick(self, t: float) -> list[Message]:
        return self.decode(self.monitor.tick(t))

    def associate(self, t: float = 0.0) -> MdsCreateEvent:
        accept, create = self.send(AssociationRequest(), t)
        assert isinstance(accept, AssociationResult) and isinstance(create, MdsCreateEvent)
        assert self.send(MdsCreateResult(create.invoke_id), t) == []
        return create

    def poll(self, t: float, invoke: int = 1, **kw: object) -> dict[str, Measurement]:
        results = [m for m in self.send(PollRequest(invoke, invoke, **kw), t)]  # type: ignore[arg-type]
        merged = [r for m in results if isinstance(m, PollResult) for r in self.linked.add(m)]
        assert len(merged) == 1 and isinstance(merged[0], PollResult)
        return {m.metric: m for m in poll_measurements(merged[0])[0]}


def make(**kw: object) -> tuple[IntellivueMonitor, Host]:
    patient = kw.pop("patient", None) or Patient(seed=5)
    mon = IntellivueMonitor(patient, wall_start=1_700_000_000.0, **kw)  # type: ignore[arg-type]
    return mon, Host(mon)


def test_association_then_mds_create_then_refuse_a_second_host() -> None:
    mon, host = make()
    assert host.send(PollRequest(1, 1), 0.0) == []  # nothing before association
    create = host.associate()
    assert mon.associated
    assert {a.attribute_id for a in create.attributes} == {0x0987, 0x098F, 0x091E}
    assert host.send(AssociationRequest(), 1.0) == [AssociationRefuse()]


def test_accept_negotiates_poll_period_and_mtu() -> None:
    mon, host = make(mtu=800)
    req = AssociationRequest(UserInfo(PollProfile(min_poll_period=4000, max_mtu_rx=600)))
    accept = host.send(req, 0.0)[0]
    assert isinstance(accept, AssociationResult) and accept.user_info.poll_profile is not None
    assert accept.user_info.poll_profile.min_poll_period == 4000
    assert mon.send_mtu == 600


def test_poll_reply_carries_the_patients_vitals() -> None:
    patient = Patient(seed=5)
    mon, host = make(patient=patient, nibp_interval=None)
    host.associate()
    got = host.poll(42.0)
    v = patient.vitals(42.0)
    assert got["spo2"].value == round(v.spo2 or 0)
    assert got["pulse_rate"].value == round(v.pulse_rate or 0)
    assert got["heart_rate"].value == round(v.heart_rate)
    assert got["resp_rate"].value == round(v.resp_rate)
    assert got["nibp_sys"].value is None  # no cuff measurement (none scheduled)


def test_single_poll_of_another_object_gets_an_empty_reply() -> None:
    mon, host = make()
    host.associate()
    reply = host.send(PollRequest(3, 0, NOM_MOC_VMO_AL_MON, 0x0811, extended=False), 1.0)
    assert len(reply) == 1 and isinstance(reply[0], PollResult)
    assert not reply[0].extended and reply[0].contexts == ()


def test_small_mtu_splits_replies_into_linked_results() -> None:
    mon, host = make(mtu=120)
    host.associate()
    got = host.poll(5.0)
    assert mon.stats["linked_parts"] > 2
    assert set(got) >= {"spo2", "pulse_rate", "heart_rate", "resp_rate", "nibp_sys"}


def test_extended_poll_with_duration_sends_periodic_replies() -> None:
    mon, host = make()
    host.associate()
    duration = Ava(NOM_ATTR_TIME_PD_POLL, (3 * 8000 + 4000).to_bytes(4, "big"))  # 3.5 s
    first = host.send(PollRequest(9, 4, attributes=(duration,)), 10.0)
    assert [(m.sequence, m.invoke_id) for m in first if isinstance(m, PollResult)] == [(0, 9)]
    seqs = []
    t = 10.0
    while t < 16.0:
        t += 0.05
        seqs += [m.sequence for m in host.tick(t) if isinstance(m, PollResult)]
        mon._last_rx = t  # noqa: SLF001 - keep the association alive without polls
    assert seqs == [1, 2, 3]


def test_host_silence_makes_the_monitor_abort() -> None:
    assert association_timeout(0.125) == 10.0
    assert association_timeout(10.0) == 30.0
    assert association_timeout(60.0) == 130.0
    mon, host = make()
    host.associate(0.0)
    host.poll(5.0)
    assert host.tick(14.9) == []
    assert host.tick(15.1) == [Abort()]
    assert not mon.associated


def test_release_and_abort_end_the_association() -> None:
    mon, host = make()
    host.associate()
    assert host.send(ReleaseRequest(), 1.0) == [ReleaseResult()]
    assert not mon.associated
    host.associate(2.0)
    assert host.send(Abort(), 3.0) == [] and not mon.associated


def test_nibp_on_schedule_and_on_request() -> None:
    patient = Patient(seed=8)
    mon, host = make(patient=patient, nibp_first=10.0, nibp_interval=100.0, nibp_duration=20.0)
    host.associate()
    assert host.poll(12.0)["nibp_sys"].status["state_bits"] == ["invalid", "measurement_ongoing"]
    got = host.poll(31.0)
    assert got["nibp_sys"].value == patient.nibp(30.0)[0]
    assert got["nibp_mean"].value == patient.nibp(30.0)[2]
    assert got["nibp_sys"].status["measured_rel"] == 30 * 8000
    assert mon.request_nibp(50.0) and not mon.request_nibp(51.0)
    during = host.poll(60.0)["nibp_sys"]
    assert "measurement_ongoing" in during.status["state_bits"]
    assert during.value == patient.nibp(30.0)[0]  # the previous result while the cuff runs
    assert host.poll(71.0)["nibp_sys"].status["measured_rel"] == 70 * 8000
    assert host.poll(131.0)["nibp_sys"].status["measured_rel"] == 130 * 8000  # 10 + 100 + 20


def test_sensor_off_motion_and_demo_states() -> None:
    patient = Patient(seed=2, events=[SimEvent("sensor_off", 100.0, 60.0)])
    mon, host = make(patient=patient, demo=True)
    host.associate()
    off = host.poll(120.0)
    assert off["spo2"].value is None and "invalid" in off["spo2"].status["state_bits"]
    assert off["heart_rate"].value is not None and off["heart_rate"].flags == {"demo"}


def test_faults_drop_garbage_and_silence() -> None:
    mon, host = make()
    host.associate()
    assert host.decode(mon.drop()) == [Abort()] and not mon.associated
    noise = FrameDecoder().feed(mon.garbage())
    assert noise and all(isinstance(i, Problem) for i in noise)
    host.associate(1.0)
    mon.go_silent(2.0, 5.0)
    assert host.send(PollRequest(1, 1), 3.0) == []  # deaf
    assert host.tick(4.0) == []
    host.tick(7.5)  # back, but as after a restart: unassociated
    assert not mon.associated
    host.associate(8.0)


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_host_bytes_in_small_chunks(chunk: int) -> None:
    mon, host = make()
    wire = encode_frame(encode_message(AssociationRequest()))
    out: list[bytes] = []
    for i in range(0, len(wire), chunk):
        out += mon.receive(wire[i : i + chunk], 0.0)
    assert [type(m) for m in host.decode(out)] == [AssociationResult, MdsCreateEvent]

"""`kapmonitor decode` itself (not only the codec registry) for every BLE and serial protocol of
issues 4 and 5: a published vector gives the contract's JSON on stdout; garbage gives one
stderr line per problem naming the protocol, exit status 1, the rest still decoded, and never a
traceback; stdin takes one chunk per line with spaces inside chunks."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from kapmonitor.cli import main
from kapmonitor.codecs.contec import ContecSample, encode_packet5
from kapmonitor.codecs.nonin import NoninSample, encode_packet
from kapmonitor.codecs.viatom import oxy_read_sensors_request, oxy_response
from kapmonitor.model import METRICS

MASIMO_RAD8 = (  # captured Rad-8 line, yahnatan/pulseox README.md [P12]
    "02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% "
    "DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800"
)
PUFFERFISH_FMT2 = (  # pez-globo/pufferfish-software TestPacketReceiver.cpp [P13]
    "01 81 01 00 83  01 80 01 48 CA  01 80 01 61 E3  01 80 01 30 B2  01 80 01 00 82"
    "01 80 01 00 82  01 80 01 00 82  01 80 01 00 82  01 80 01 61 E3  01 80 01 61 E3"
    "01 80 01 61 E3  01 80 01 00 82  01 80 01 00 82  01 80 01 00 82  01 80 01 48 CA"
    "01 80 01 61 E3  01 80 01 61 E3  01 80 01 00 82  01 80 01 00 82  01 80 01 00 82"
    "01 80 01 48 CA  01 80 01 00 82  01 80 01 48 CA  01 80 01 00 82  01 80 01 00 82"
)
# O2Ring read-sensors request + response around the payload documented in MackeyStingray/o2r
# o2r/o2state.py (SpO2 98, HR 66, battery 97).
VIATOM = (oxy_read_sensors_request() + oxy_response(bytes.fromhex("624200000000006100920a0100")))

# protocol -> (chunks, expected values by metric). Sources (docs/sources.md): [P3] (#1 Nordic
# BloodPressureMeasurementDataCallbackTest _full, #7 Nordic ICP _full, #13 SmartGattLib
# HeartRateMeasurementTest, #16/#18 StanfordSpezi PLXTests.swift); [P13], [P5], [P14] (Nonin #8 and
# BerryMed computed from the specs, Contec new protocol captured in headrotor/contec_data
# stream_data.py). No published vector exists for Nonin #7 or the old Contec protocol: those
# two come from our encoders, whose known-answer tests live in the codec test files.
VECTORS: dict[str, tuple[list[str], dict[str, float]]] = {
    "gatt-bpm": (["1E 8A 00 58 00 78 00 00 00 04 11 14 29 3B 3C 00 01 27 00"],
                 {"nibp_sys": 138, "nibp_dia": 88, "nibp_mean": 120, "pulse_rate": 60}),
    "gatt-icp": (["1E 04 00 00 00 00 00 00 00 04 11 14 29 3B 3C 00 01 27 00"],
                 {"cuff_pressure": 4}),  # PR during inflation stays in status
    "gatt-hrm": (["16 48 54 01 EC 02"], {"heart_rate": 72}),
    "gatt-plx-spot": (["0F AC F3 BE F5 E8 07 0B 1D 17 08 39 20 40 22 00 00 66 E3"],
                      {"spo2": 94, "pulse_rate": 147, "perfusion_index": 8.7}),
    "gatt-plx-cont": (["1C 5F 00 5A 00 20 00 00 00 00 57 F0"],
                      {"spo2": 95, "pulse_rate": 90, "perfusion_index": 8.7}),
    "berrymed": (["85 32 06 48 61"], {"spo2": 97, "pulse_rate": 72}),
    "viatom-oxy": ([VIATOM.hex(" ")], {"spo2": 98, "pulse_rate": 66, "battery": 97}),
    "masimo-ascii": ([MASIMO_RAD8], {"spo2": 98, "pulse_rate": 97, "perfusion_index": 3.6}),
    "nonin-ascii": (["SPO2=097 HR=072"], {"spo2": 97, "pulse_rate": 72}),
    "nonin-fmt2": ([PUFFERFISH_FMT2], {"spo2": 97, "pulse_rate": 72}),
    "nonin-fmt7": ([encode_packet(7, NoninSample(hr=72, spo2=97)).hex()],
                   {"spo2": 97, "pulse_rate": 72}),
    "nonin-fmt8": (["80 48 61 00"], {"spo2": 97, "pulse_rate": 72}),
    "contec-5": ([encode_packet5(ContecSample(spo2=96, pulse_rate=130)).hex(" ")],
                 {"spo2": 96, "pulse_rate": 130}),
    "contec-9": (["01 E0 85 B3 96 C1 E1 FF FF"], {"spo2": 97, "pulse_rate": 65}),
}
MESSAGE_PROTOCOLS = {"gatt-bpm", "gatt-icp", "gatt-hrm", "gatt-plx-spot", "gatt-plx-cont"}
LINE_PROTOCOLS = {"masimo-ascii", "nonin-ascii"}
STREAM_PROTOCOLS = set(VECTORS) - MESSAGE_PROTOCOLS - LINE_PROTOCOLS


def decode(
    capsys: pytest.CaptureFixture[str], protocol: str, args: list[str]
) -> tuple[int, list[dict[str, object]], list[str]]:
    rc = main(["decode", protocol, *args])
    out, err = capsys.readouterr()
    objects = [json.loads(line) for line in out.splitlines()]
    return rc, objects, err.splitlines()


def readings(objects: list[dict[str, object]]) -> dict[str, object]:
    return {str(o["metric"]): o["value"] for o in objects if "metric" in o}


def assert_contract(objects: list[dict[str, object]]) -> None:
    for o in objects:
        if "metric" in o:  # notes (headers, commands) carry no metric and are not readings
            assert o["metric"] in METRICS and "value" in o and "unit" in o and "flags" in o
            assert o["unit"] == METRICS[str(o["metric"])].unit


def test_the_cli_covers_every_protocol_of_the_ble_and_serial_issues() -> None:
    from kapmonitor.codecs.registry import protocols

    assert set(VECTORS) <= set(protocols())


@pytest.mark.parametrize("protocol", sorted(VECTORS))
def test_vector_gives_the_published_values(
    capsys: pytest.CaptureFixture[str], protocol: str
) -> None:
    chunks, expected = VECTORS[protocol]
    rc, objects, err = decode(capsys, protocol, chunks)
    assert (rc, err) == (0, [])
    assert_contract(objects)
    got = readings(objects)
    for metric, value in expected.items():
        assert got[metric] == pytest.approx(value), metric


@pytest.mark.parametrize("protocol", sorted(VECTORS))
def test_stdin_one_chunk_per_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    chunks, expected = VECTORS[protocol]
    if protocol in STREAM_PROTOCOLS:
        # Byte streams arrive in arbitrary pieces: one byte per line, concatenated in order.
        data = bytes.fromhex("".join(chunks).replace(" ", ""))
        lines = [f"{b:02X}" for b in data]
    else:
        lines = chunks  # one message or text line per stdin line, spaces kept inside
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{ln}\r\n" for ln in lines)))
    rc, objects, err = decode(capsys, protocol, [])
    assert (rc, err) == (0, [])
    got = readings(objects)
    assert {m: got[m] for m in expected} == pytest.approx(expected)


@pytest.mark.parametrize("protocol", sorted(VECTORS))
def test_garbage_is_reported_per_problem_and_the_rest_still_decodes(
    capsys: pytest.CaptureFixture[str], protocol: str
) -> None:
    chunks, expected = VECTORS[protocol]
    if protocol in LINE_PROTOCOLS:
        garbage = ["zz", "SPO2=097% BPM"]  # a non-record line, a broken record
        problems = 2
    elif protocol in MESSAGE_PROTOCOLS:
        garbage = ["zz", "01 02"]  # not hex; a message too short for its flags
        problems = 2
    else:
        garbage = ["zz", "7f 00 13 37"]  # not hex; bytes that are no frame (skipped, counted)
        problems = 2
    rc, objects, err = decode(capsys, protocol, [*garbage, *chunks])
    assert rc == 1
    assert len(err) == problems, err
    assert all(line.startswith(f"{protocol}: ") for line in err)
    assert "Traceback" not in "\n".join(err)
    assert_contract(objects)
    got = readings(objects)
    for metric, value in expected.items():  # resync / carry on after the garbage
        assert got[metric] == pytest.approx(value), metric


@pytest.mark.parametrize("protocol", sorted(STREAM_PROTOCOLS))
def test_truncated_stream_end_is_a_problem_not_a_value(
    capsys: pytest.CaptureFixture[str], protocol: str
) -> None:
    chunks, _ = VECTORS[protocol]
    data = bytes.fromhex("".join(chunks).replace(" ", ""))
    rc, objects, err = decode(capsys, protocol, [data[:-1].hex()])
    assert rc == 1 and len(err) == 1 and err[0].startswith(f"{protocol}: ")
    # The packet cut short must not produce readings of its own.
    whole = readings(decode(capsys, protocol, [data.hex()])[1])
    assert len([o for o in objects if "metric" in o]) < len(whole) or not objects


def test_process_exit_status_and_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from kapmonitor.cli import main; raise SystemExit(main())",
         "decode", "contec-9", "zz", "01 E0 85 B3 96 C1 E1 FF FF", "\u00ff\u00fe", "01 E0"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 3 and all(ln.startswith("contec-9: ") for ln in lines)
    assert '"metric": "spo2", "value": 97.0' in proc.stdout

"""Decoder fuzzing at scale: every codec gets random and mutated inputs; only the typed
``DecodeError`` may escape.

    nice -n 15 .venv/bin/python bench/fuzz.py [--runs 1000000] [--engine atheris|hypothesis]
                                             [--only NAME,...] [--jobs 1]

Targets (``--list`` prints them):

- every protocol of ``kapmonitor decode`` (:mod:`kapmonitor.codecs.registry`): a fresh decoder
  is fed the input, cut into up to three chunks at places the input itself chooses, then closed.
  A decoder reports bad input as ``Problem`` items, so here *nothing* may escape except
  ``DecodeError``;
- the message-level decode functions the drivers call directly (GATT characteristics, HL7
  message and ACK parsing, IntelliVue frames and messages, Viatom frames, BCI/Contec/Nonin
  packets, Masimo lines), each of which raises ``DecodeError`` on malformed input.

Engines: ``atheris`` (coverage-guided libFuzzer: random inputs and mutations of the inputs that
found new code, each target in its own process with ``-runs=N``) is the default when installed;
``hypothesis`` (random bytes and byte-level mutations of the valid seed messages) is used by the
CI smoke run. Seeds are valid messages made by the encoders beside the decoders.

Any other exception is a bug: its target, input (hex) and traceback are printed and the exit
code is 1. The last line of output is one JSON object: targets, runs per target, total runs,
failures, seconds.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from kapmonitor.codecs.base import DecodeError

Target = Callable[[bytes], object]

# Message-level decoders: (name, module, function, how the input is passed).
RAW: list[tuple[str, str, str, str]] = [
    ("gatt.blood_pressure", "kapmonitor.codecs.gatt", "decode_blood_pressure_measurement", "b"),
    ("gatt.cuff_pressure", "kapmonitor.codecs.gatt", "decode_intermediate_cuff_pressure", "b"),
    ("gatt.bp_feature", "kapmonitor.codecs.gatt", "decode_blood_pressure_feature", "b"),
    ("gatt.heart_rate", "kapmonitor.codecs.gatt", "decode_heart_rate_measurement", "b"),
    ("gatt.plx_spot", "kapmonitor.codecs.gatt", "decode_plx_spot_check", "b"),
    ("gatt.plx_continuous", "kapmonitor.codecs.gatt", "decode_plx_continuous", "b"),
    ("gatt.plx_features", "kapmonitor.codecs.gatt", "decode_plx_features", "b"),
    ("gatt.racp", "kapmonitor.codecs.gatt", "decode_racp", "b"),
    ("gatt.date_time", "kapmonitor.codecs.gatt", "decode_date_time", "b"),
    ("gatt.battery", "kapmonitor.codecs.gatt", "decode_battery_level", "b"),
    ("hl7.parse_message", "kapmonitor.codecs.hl7", "parse_message", "b"),
    ("hl7.parse_ack", "kapmonitor.codecs.hl7", "parse_ack", "b"),
    ("intellivue.frame", "kapmonitor.codecs.intellivue.framing", "decode_frame", "b"),
    ("intellivue.message", "kapmonitor.codecs.intellivue.messages", "decode_message", "b"),
    ("viatom.frame", "kapmonitor.codecs.viatom", "decode_frame", "b"),
    ("berrymed.packet", "kapmonitor.codecs.berrymed", "decode_packet", "b"),
    ("contec.packet5", "kapmonitor.codecs.contec", "decode_packet5", "b"),
    ("nonin.packet2", "kapmonitor.codecs.nonin", "decode_packet", "fmt2"),
    ("nonin.record8", "kapmonitor.codecs.nonin", "decode_record8", "b"),
    ("masimo.line", "kapmonitor.codecs.masimo", "decode", "b"),
]


def _raw_target(module: str, func: str, how: str) -> Target:
    fn: Callable[..., object] = getattr(importlib.import_module(module), func)
    if how == "fmt2":
        return lambda data: fn(2, data)
    return fn


def _protocol_target(name: str) -> Target:
    from kapmonitor.codecs.registry import protocols

    spec = protocols()[name]

    def run(data: bytes) -> object:
        decoder = spec.make()
        # The input chooses where it is cut: stream decoders must resync across chunks.
        cuts = sorted({b % (len(data) + 1) for b in data[:2]}) if data else []
        start = 0
        out: list[object] = []
        for cut in [*cuts, len(data)]:
            out += decoder.feed(data[start:cut])
            start = cut
        out += decoder.close()
        return out

    return run


def targets() -> dict[str, Target]:
    from kapmonitor.codecs.registry import protocols

    out: dict[str, Target] = {f"protocol.{name}": _protocol_target(name) for name in protocols()}
    for name, module, func, how in RAW:
        out[name] = _raw_target(module, func, how)
    return out


def _seed_builders() -> dict[str, Callable[[], list[bytes]]]:
    """Valid inputs made by the encoders beside the decoders (each built lazily; a builder
    whose encoder moved is reported and skipped, the target is still fuzzed from scratch)."""
    from datetime import UTC, datetime

    def berrymed() -> list[bytes]:
        from kapmonitor.codecs.berrymed import BciPacket, encode_stream

        return [encode_stream([BciPacket(97, 72, 50, 5, 6), BciPacket(127, 255, no_finger=True)])]

    def nonin(fmt: int) -> Callable[[], list[bytes]]:
        def build() -> list[bytes]:
            from kapmonitor.codecs import nonin as n

            if fmt == 8:
                return [n.encode_record8(n.NoninSample(72, 97)) * 3]
            return [n.encode_packet(fmt, n.NoninSample(72, 97)) * 2]  # type: ignore[arg-type]

        return build

    def contec() -> list[bytes]:
        from kapmonitor.codecs.contec import ContecSample, encode_packet5, encode_realtime

        return [encode_packet5(ContecSample(97, 72)) * 3, encode_realtime(ContecSample(95, 80))]

    def masimo() -> list[bytes]:
        from kapmonitor.codecs.masimo import MasimoRecord, encode_line

        return [encode_line(MasimoRecord(datetime(2026, 1, 2, 3, 4, 5), 97, 72, 3.2))]

    def intellivue() -> list[bytes]:
        from kapmonitor.codecs.intellivue.framing import encode_frame

        return [encode_frame(bytes(range(40)))]

    def hl7() -> list[bytes]:
        text = (b"MSH|^~\\&|MON|ICU|KAP|ICU|20260102030405||ORU^R01^ORU_R01|1|P|2.6\r"
                b"PID|||\rOBR|1|||CONTINUOUS\r"
                b"OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||97|262688^MDC_DIM_PERCENT^MDC|||||R|||"
                + datetime(2026, 1, 2, tzinfo=UTC).strftime("%Y%m%d").encode() + b"\r")
        return [text, b"\x0b" + text + b"\x1c\r"]

    return {
        "protocol.berrymed": berrymed, "berrymed.packet": berrymed,
        "protocol.nonin-fmt2": nonin(2), "nonin.packet2": nonin(2),
        "protocol.nonin-fmt7": nonin(7), "protocol.nonin-fmt8": nonin(8),
        "nonin.record8": nonin(8),
        "protocol.contec-5": contec, "contec.packet5": contec,
        "protocol.masimo-ascii": masimo, "masimo.line": masimo,
        "protocol.intellivue": intellivue, "intellivue.frame": intellivue,
        "protocol.hl7": hl7, "hl7.parse_message": hl7,
    }


def seeds() -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = {}
    for name, build in _seed_builders().items():
        try:
            found[name] = build()
        except Exception as exc:  # noqa: BLE001 - reported; an encoder moved: fuzz from scratch, but say so
            print(f"no seeds for {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return found


# -- the engines ---------------------------------------------------------------------------
def check(name: str, target: Target, data: bytes) -> None:
    """One input; anything but DecodeError is reported and re-raised."""
    try:
        target(data)
    except DecodeError:
        pass
    except Exception:
        print(f"FAIL {name} input={data.hex()}", file=sys.stderr)
        traceback.print_exc()
        raise


def run_hypothesis(name: str, target: Target, runs: int, seed_inputs: list[bytes]) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    def mutate(draw: Any) -> bytes:
        base = bytearray(draw(st.sampled_from(seed_inputs)))
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.integers(0, 3))
            pos = draw(st.integers(0, len(base))) if base else 0
            if op == 0 and base:  # flip a byte
                base[min(pos, len(base) - 1)] = draw(st.integers(0, 255))
            elif op == 1:  # insert bytes
                base[pos:pos] = draw(st.binary(min_size=1, max_size=8))
            elif op == 2 and base:  # delete a run
                del base[pos:pos + draw(st.integers(1, 8))]
            else:  # truncate
                del base[pos:]
        return bytes(base)

    inputs = st.binary(max_size=512)
    if seed_inputs:
        inputs = inputs | st.composite(lambda draw: mutate(draw))()

    @settings(max_examples=runs, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(inputs)
    def prop(data: bytes) -> None:
        check(name, target, data)

    prop()


def run_atheris_child(name: str, runs: int) -> None:
    """In a child process: fuzz one target with libFuzzer until ``runs`` inputs (exits)."""
    import atheris

    if os.environ.get("KAP_FUZZ_INSTRUMENT", "1") == "1":
        with atheris.instrument_imports():
            import kapmonitor.codecs  # noqa: F401  (instrument the codecs for coverage)
            all_targets = targets()
    else:  # mutation of the seeds and random inputs only: several times faster
        all_targets = targets()
    target = all_targets[name]
    corpus = os.environ.get("KAP_FUZZ_CORPUS")
    args = [sys.argv[0], f"-runs={runs}", "-max_len=1024", "-print_final_stats=1",
            "-rss_limit_mb=1024"]
    if corpus:
        args.append(corpus)

    def one(data: bytes) -> None:
        check(name, target, data)

    atheris.Setup(args, one)
    atheris.Fuzz()


def run_atheris(
    name: str, runs: int, seed_inputs: list[bytes], tmp: str, instrument: bool = True
) -> tuple[bool, str]:
    corpus = os.path.join(tmp, name)
    os.makedirs(corpus, exist_ok=True)
    for i, s in enumerate(seed_inputs):
        with open(os.path.join(corpus, f"seed{i}"), "wb") as fh:
            fh.write(s)
    env = dict(os.environ, KAP_FUZZ_CORPUS=corpus,
               KAP_FUZZ_INSTRUMENT="1" if instrument else "0")
    proc = subprocess.run(
        [sys.executable, __file__, "--child", name, "--runs", str(runs)],
        capture_output=True, text=True, env=env, check=False,
    )
    stats = [ln for ln in proc.stderr.splitlines() if ln.startswith("stat::")]
    return proc.returncode == 0, (proc.stderr if proc.returncode else "\n".join(stats))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1_000_000, help="inputs per target")
    ap.add_argument("--engine", choices=("atheris", "hypothesis"), default=None)
    ap.add_argument("--only", default="", help="comma-separated target names")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--no-coverage", action="store_true",
                    help="atheris without coverage instrumentation (mutations of the seeds and "
                    "random inputs only; several times faster)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        run_atheris_child(args.child, args.runs)
        return 0
    all_targets = targets()
    if args.list:
        print("\n".join(all_targets))
        return 0
    chosen = [t for t in args.only.split(",") if t] or list(all_targets)
    unknown = [t for t in chosen if t not in all_targets]
    if unknown:
        print(f"unknown targets: {unknown}", file=sys.stderr)
        return 2
    engine = args.engine
    if engine is None:
        try:
            import atheris  # noqa: F401
        except ImportError:
            engine = "hypothesis"
        else:
            engine = "atheris"
    seed_table = seeds()
    failures: list[str] = []
    started = time.perf_counter()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kap-fuzz-") as tmp:
        print(f"{'target':32} {'runs':>9} {'seconds':>8}  result")
        for name in chosen:
            t0 = time.perf_counter()
            seed_inputs = seed_table.get(name, [])
            if engine == "atheris":
                ok, detail = run_atheris(name, args.runs, seed_inputs, tmp,
                                         not args.no_coverage)
            else:
                try:
                    run_hypothesis(name, all_targets[name], args.runs, seed_inputs)
                    ok, detail = True, ""
                except Exception as exc:  # noqa: BLE001 - reported as a finding; a crash may be any kind
                    ok, detail = False, f"{type(exc).__name__}: {exc}"
            took = time.perf_counter() - t0
            print(f"{name:32} {args.runs:>9} {took:>8.1f}  {'ok' if ok else 'FAIL'}", flush=True)
            if not ok:
                failures.append(name)
                print(detail[-4000:], file=sys.stderr)
    result = {
        "engine": engine + ("-no-coverage" if engine == "atheris" and args.no_coverage else ""),
        "targets": len(chosen),
        "runs_per_target": args.runs,
        "total_runs": args.runs * len(chosen),
        "failures": failures,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Session report speed: the reports of a recorded 3-hour, 12-bed clinic session.

    .venv/bin/python bench/report.py [--beds 12] [--hours 3] [--workers 0]

Builds a history database as the daemon writes it (``HistoryStore.write`` batches): per bed a
session with a 1 Hz oximeter (SpO2, pulse rate, perfusion index, with sensor-off spells and
device disconnections), a cuff every 5 minutes, the dose, phases, NEWS2 every 5 minutes,
alarms raised, acknowledged and cleared, discharge readiness and the commands. Then times
``write_reports`` (PDF, PNG per page, CSV trace, FHIR Bundle) for one bed's session and for
every bed's session (``--workers`` processes; 0 = one per CPU), with the CPU time all
processes used for it (``cpu_seconds``: the machine's other load does not change it, the
wall time it does). Database building is not timed. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from kapmonitor.history.report import write_reports
from kapmonitor.history.store import Batch, HistoryStore

T_START = 1_780_000_000.0
DOSE_AT = 900.0  # s after the session start


def _session(store: HistoryStore, b: int, hours: float, rng: np.random.Generator) -> None:
    bed, sid = f"bed{b}", f"B{b:02d}"
    t0 = T_START + b * 7.0
    n = int(hours * 3600)
    seq = 0

    def mid() -> str:
        nonlocal seq
        seq += 1
        return f"bench-{b}-{seq}"

    batch = Batch()
    ev = batch.events

    def event(t: float, **body: Any) -> None:
        ev.append({"t": t, "bed": bed, "msg_id": mid(), **body})

    event(t0, type="session", event="started", phase="pre_dose", session_id=sid,
          profile="ketamine", route="im", risk_flags=["hypertension"] if b % 4 == 0 else [])
    event(t0, type="session", event="phase", phase="pre_dose", session_id=sid)
    event(t0 + DOSE_AT, type="session", event="dose", phase="pre_dose", session_id=sid,
          dose_mg=50.0, route="im", dose_index=1, t0=t0 + DOSE_AT)
    event(t0 + DOSE_AT, type="session", event="baseline", phase="onset", session_id=sid,
          baseline={"spo2": 97.0, "hr": 72.0, "nibp_sys": 124.0, "nibp_dia": 80.0},
          complete=True, missing=[])
    for at, phase in ((DOSE_AT, "onset"), (DOSE_AT + 1200, "peak"), (DOSE_AT + 3600,
                                                                        "recovery")):
        event(t0 + at, type="session", event="phase", phase=phase, session_id=sid)
    t = t0 + np.arange(n, dtype=float)
    walk = np.cumsum(rng.normal(0, 0.08, n))
    spo2 = np.clip(97 + walk - walk.mean() + rng.normal(0, 0.4, n), 80, 100).round(1)
    desat = (t > t0 + 4000 + b * 60) & (t < t0 + 4240 + b * 60)
    spo2[desat] -= 9
    hr = (72 + 8 * np.sin(np.arange(n) / 900) + rng.normal(0, 1.5, n)).round(0)
    off = (t > t0 + 6000 + b * 30) & (t < t0 + 6090 + b * 30)
    drop = (t > t0 + 7000) & (t < t0 + 7060)
    for i in np.flatnonzero(~drop):
        ti = float(t[i])
        q = ["sensor_off"] if off[i] else []
        for metric, v in (("spo2", None if off[i] else float(spo2[i])),
                          ("pulse_rate", None if off[i] else float(hr[i])),
                          ("perfusion_index", None if off[i] else 3.1)):
            batch.readings.append({"metric": metric, "value": v, "ts": ti, "received": ti,
                                   "bed": bed, "device": f"ox{b}", "quality": q,
                                   "msg_id": mid()})
    batch.statuses += [(t0 + 7000, f"ox{b}", bed, "disconnected"),
                       (t0 + 7060, f"ox{b}", bed, "connected")]
    for k in range(int(n // 300)):
        tk = t0 + 60 + k * 300.0
        sys_ = 124 + 15 * math.exp(-((tk - t0 - DOSE_AT - 2400) / 1500) ** 2) + rng.normal(0, 3)
        for metric, v in (("nibp_sys", sys_), ("nibp_dia", sys_ * 0.65), ("nibp_mean",
                                                                          sys_ * 0.78)):
            batch.readings.append({"metric": metric, "value": round(v), "ts": tk,
                                   "received": tk, "bed": bed, "device": f"cuff{b}",
                                   "quality": [], "msg_id": mid()})
        event(tk, type="session", event="news2", phase="peak", total=int(k % 4 == 0),
              missing=["resp_rate"], parts={})
    a0 = t0 + 4000 + b * 60 + 20
    for j, (rule, prio) in enumerate((("spo2_below_88", "high"), ("spo2_falling", "medium"))):
        aid = f"x-{bed}-{j}"
        common = {"type": "alert", "alert_id": aid, "rule": rule, "priority": prio,
                  "kind": "physiological", "metric": "spo2", "value": 87.0,
                  "text": f"{rule}: SpO2 87 %", "onset_t": a0}
        event(a0 + j, event="raised", state="active", **common)
        event(a0 + 20 + j, event="acknowledged", state="active", by="nurse Okafor", **common)
        event(a0 + 200 + j, event="cleared", state="cleared", **common)
        batch.commands.append((a0 + 20 + j, "alert/ack", bed, "nurse Okafor", "ok",
                               json.dumps({"bed": bed, "alert_id": aid}), "{}"))
    event(t0 + n - 1200, type="session", event="discharge_ready", phase="recovery",
          session_id=sid, advisory=True)
    event(t0 + n, type="session", event="ended", phase="ended", session_id=sid,
          discharge_ready=True)
    store.write(batch)


def _cpu() -> float:
    """CPU seconds (user and system) of this process and of its ended children: unlike the
    wall time, it does not depend on what else the machine runs."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--beds", type=int, default=12)
    p.add_argument("--hours", type=float, default=3.0)
    p.add_argument("--workers", type=int, default=0, help="processes (0: one per CPU)")
    args = p.parse_args()
    workers = args.workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="kapbench-report-") as tmp:
        db = Path(tmp) / "history.sqlite3"
        store = HistoryStore(db)
        rng = np.random.default_rng(7)
        t = time.monotonic()
        for b in range(1, args.beds + 1):
            _session(store, b, args.hours, rng)
        readings = store.count()
        store.close()
        built = time.monotonic() - t
        write_reports(db, Path(tmp) / "warm", session_id="B01")  # imports, font caches
        t = time.monotonic()
        one = write_reports(db, Path(tmp) / "one", session_id="B01")
        one_s = time.monotonic() - t
        t, cpu = time.monotonic(), _cpu()
        every = write_reports(db, Path(tmp) / "all", workers=workers)
        all_s, all_cpu = time.monotonic() - t, _cpu() - cpu
        pages = sum(len(f.pngs) for f in every)
        size = one[0].pdf.stat().st_size
    print(f"history: {args.beds} beds x {args.hours:g} h, {readings} readings (built in "
          f"{built:.1f} s, not timed)")
    print(f"one session (bed1): {one_s:.2f} s; PDF {size / 1024:.0f} KiB, {len(one[0].pngs)} "
          f"pages")
    print(f"all {len(every)} sessions: {all_s:.2f} s with {workers} worker process(es), "
          f"{pages} pages; {all_cpu:.2f} s of CPU (all processes)")
    print(json.dumps({"beds": args.beds, "hours": args.hours, "seconds": round(all_s, 3),
                      "cpu_seconds": round(all_cpu, 3),
                      "one_session_seconds": round(one_s, 3), "sessions": len(every),
                      "workers": workers, "readings": readings, "pages": pages,
                      "target_seconds": 3.0, "met": all_s <= 3.0}))


if __name__ == "__main__":
    main()

"""Broker faults against a ``kapmonitor run`` process: the broker killed (SIGKILL, no clean
goodbye) and restarted, also in the middle of draining the backlog of a first outage. Nothing
is lost: every sequence number arrives, the backlog is marked historical, the daemon lives."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from tests.faults.conftest import answering
from tests.helpers.daemon import clinic_config
from tests.helpers.mqtt import Broker, subscribe

BASE = "kapmonitor/t1"


def kill_broker(broker: Broker) -> None:
    assert broker.proc is not None
    broker.proc.kill()
    broker.proc.wait()
    broker.proc = None


async def test_broker_killed_twice_once_during_the_drain(
    broker: Broker, tmp_path: Path, daemon_process: Any
) -> None:
    # The broker saves after every change: what it acknowledged survives its SIGKILL (messages
    # a killed broker had acknowledged but not saved are the broker's loss, not ours).
    broker.stop()
    broker.conf.write_text(broker.conf.read_text().replace(
        "autosave_interval 1\n", "autosave_interval 1\nautosave_on_changes true\n"))
    broker.start()
    cfg = clinic_config(tmp_path / "state", broker.address, beds=3, interval=0.01)
    cfg["outbox"]["inflight"] = 4  # a slow drain, so that the second kill lands inside it
    cfg["outbox"]["batch"] = 16
    d = daemon_process(cfg)
    d.start()
    d.wait_line("started")
    await answering(broker.address, BASE)
    async with subscribe(broker.address, f"{BASE}/bed/+/reading", reconnect=True) as sub:
        await sub.wait_for(lambda m: len(m) > 50)
        kill_broker(broker)
        await asyncio.sleep(4.0)  # ~1,800 readings of backlog
        broker.start()
        # Kill it again while the backlog is being drained.
        await sub.wait_for(lambda m: any(p["historical"] for _, p, _ in m), timeout=30)
        kill_broker(broker)
        await asyncio.sleep(2.0)
        broker.start()
        assert d.alive()
        await asyncio.sleep(1.0)
        target = max(p["seq"] for _, p, _ in sub.messages) + 50

        def complete(msgs: list[Any]) -> bool:
            return max((p["seq"] for _, p, _ in msgs), default=0) >= target

        await sub.wait_for(complete, timeout=60)
        await asyncio.sleep(1.0)
        seqs = sorted({p["seq"] for _, p, _ in sub.messages})
        boot = {p["boot_id"] for _, p, _ in sub.messages}
        assert len(boot) == 1
        missing = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
        assert not missing, f"{len(missing)} readings lost, e.g. {missing[:10]}"
        assert any(p["historical"] for _, p, _ in sub.messages)
    assert d.alive()
    assert d.stop(signal.SIGTERM) == 0

"""Broker faults against a ``kapmonitor run`` process: the broker's death as the daemon sees
it (every connection reset at once, no clean goodbye, reconnects refused) and its return, also
in the middle of draining the backlog of a first outage. Nothing is lost: every sequence number
arrives, the backlog is marked historical, the daemon lives.

The death is a :class:`~tests.faults.conftest.BrokerLink` cut, not a SIGKILL of Mosquitto: a
killed Mosquitto loses messages it had already acknowledged (it saves its database only after
the PUBACK, and with ``autosave_on_changes`` a message handed straight to a connected subscriber
does not even count as a change), so the subscriber would count the broker's losses as the
daemon's. Behind the link the broker keeps everything it
acknowledged, so every reading missing at the subscriber is one the daemon lost."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from tests.faults.conftest import BrokerLink, answering
from tests.helpers.daemon import clinic_config
from tests.helpers.mqtt import Broker, subscribe

BASE = "kapmonitor/t1"


async def test_broker_killed_twice_once_during_the_drain(
    broker: Broker, broker_link: BrokerLink, tmp_path: Path, daemon_process: Any
) -> None:
    link = broker_link
    cfg = clinic_config(tmp_path / "state", link.address, beds=3, interval=0.01)
    cfg["outbox"]["inflight"] = 4  # a slow drain, so that the second kill lands inside it
    cfg["outbox"]["batch"] = 16
    d = daemon_process(cfg)
    d.start()
    d.wait_line("started")
    await answering(broker.address, BASE)
    # The subscriber is on the broker itself: it sees exactly what the broker accepted.
    async with subscribe(broker.address, f"{BASE}/bed/+/reading") as sub:
        await sub.wait_for(lambda m: len(m) > 50)
        await link.kill()
        await asyncio.sleep(4.0)  # ~1,800 readings of backlog
        await link.start()
        # Kill it again while the backlog is being drained.
        await sub.wait_for(lambda m: any(p["historical"] for _, p, _ in m), timeout=30)
        await link.kill()
        await asyncio.sleep(2.0)
        await link.start()
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
    assert link.connections >= 3  # the daemon came back after each kill
    assert d.alive()
    assert d.stop(signal.SIGTERM) == 0

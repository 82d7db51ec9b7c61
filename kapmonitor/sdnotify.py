"""systemd's notification protocol: the ``STATUS=`` line a node shows in ``systemctl status``.

What belongs here: sending sd_notify datagrams and turning a node's health summary into the
one-line ``STATUS=``. Not here: ``READY=1``/``STOPPING=1`` timing (the daemon's lifecycle) and
``WATCHDOG=1`` (sent by the liveness check only while the internal tasks make progress).

The notifier is a small service: it receives a ``health`` callable (the daemon's
:meth:`~kapmonitor.daemon.Daemon.health`), never the daemon, and sends a new ``STATUS=`` line
only when the text changes, e.g.::

    STATUS=4 beds, 8 devices (6 connected, 1 stale, 1 error), outbox 0, broker connected
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from kapmonitor.driver_api import DEVICE_STATES


def notify(message: str) -> bool:
    """Send one sd_notify datagram when ``$NOTIFY_SOCKET`` is set; True when it was sent."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(message.encode(), addr)
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class NodeHealth:
    """A snapshot of the node: what ``STATUS=``, ``bridge/state`` and ``kapmonitor status``
    summarise."""

    beds: int
    devices: dict[str, str] = field(default_factory=dict)  # device id → state
    outbox: int = 0
    broker_connected: bool = False
    rejected: int = 0  # messages the broker refused for good (kept as dead letters)

    def device_counts(self) -> dict[str, int]:
        """Devices per state, in the order of :data:`DEVICE_STATES`, zero counts left out."""
        counts: dict[str, int] = {s: 0 for s in DEVICE_STATES}
        for state in self.devices.values():
            counts[state] = counts.get(state, 0) + 1
        return {s: n for s, n in counts.items() if n}


def status_line(h: NodeHealth) -> str:
    """One line for ``systemctl status``: beds, devices by state, outbox depth, broker."""
    counts = ", ".join(f"{n} {state}" for state, n in h.device_counts().items())
    devices = f"{len(h.devices)} devices" + (f" ({counts})" if counts else "")
    broker = "broker connected" if h.broker_connected else "broker DISCONNECTED"
    beds = f"{h.beds} bed" + ("" if h.beds == 1 else "s")
    rejected = f", {h.rejected} REJECTED by the broker" if h.rejected else ""
    return f"{beds}, {devices}, outbox {h.outbox}{rejected}, {broker}"


class StatusNotifier:
    """Sends ``STATUS=`` whenever the line changes (checked every ``every`` seconds)."""

    def __init__(self, health: Callable[[], NodeHealth], every: float = 2.0,
                 send: Callable[[str], bool] = notify) -> None:
        self._health = health
        self._every = every
        self._send = send
        self.last: str | None = None

    def update(self) -> None:
        line = status_line(self._health())
        if line != self.last:
            self.last = line
            self._send(f"STATUS={line}")

    async def run(self) -> None:
        while True:
            self.update()
            await asyncio.sleep(self._every)

    def stopping(self) -> None:
        with contextlib.suppress(OSError):
            self._send("STATUS=stopping: flushing the outbox and saying goodbye to the broker")

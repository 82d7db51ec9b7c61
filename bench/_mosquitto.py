"""A private Mosquitto for the benchmarks: free loopback port, no persistence, no queue limits.

The limits matter: with Mosquitto's defaults (20 in flight, 1000 queued per client) a fast
publisher would make the broker drop messages for a slower subscriber, and a benchmark that
counts on the subscriber side would then never finish.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class RunningBroker:
    host: str
    port: int
    pid: int

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def mosquitto() -> Iterator[RunningBroker]:
    """Run a Mosquitto for the duration of the block."""
    if not Path(MOSQUITTO).exists():
        raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
    with tempfile.TemporaryDirectory(prefix="kapbench-mosq-") as tmp:
        port = free_port()
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_inflight_messages 0\n"  # 0 = no limit
            "max_queued_messages 0\n"  # 0 = no limit: never drop for a slow subscriber
            "max_queued_bytes 0\n"
        )
        log = (Path(tmp) / "mosquitto.log").open("wb")
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", port), timeout=0.2
                ):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "mosquitto did not start: " + (Path(tmp) / "mosquitto.log").read_text()
                    )
                time.sleep(0.05)
            yield RunningBroker("127.0.0.1", port, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()

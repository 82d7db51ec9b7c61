"""The daemon under a benchmark: a child process (so that it is measured alone), its log in a
file, a SIGTERM stop that is timed, and a clean-up that kills it and shows the log's tail when
anything went wrong.

    async with daemon([sys.executable, "-m", "kapmonitor.cli", "run", ...], log) as d:
        ...                  # measure d.pid
        await d.stop(10)     # SIGTERM; d.code and d.stop_seconds
    # here: stopped with exit code 0, else RuntimeError (with the log's tail on stderr)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

TAIL = 4000  # characters of the daemon's log shown when it failed


class RunningDaemon:
    def __init__(self, proc: subprocess.Popen[bytes], log: IO[str]) -> None:
        self.proc = proc
        self.log = log
        self.code: int | None = None  # exit code once stop() returned
        self.stop_seconds = 0.0  # SIGTERM to exit

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> bool:
        return self.proc.poll() is not None

    async def stop(self, timeout: float) -> int:
        """SIGTERM, then wait (at most ``timeout`` s) for the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        self.code = await asyncio.to_thread(self.proc.wait, timeout)
        self.stop_seconds = time.monotonic() - t0
        return self.code

    def tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-TAIL:]


@contextlib.asynccontextmanager
async def daemon(argv: list[str], log_path: Path) -> AsyncIterator[RunningDaemon]:
    """Run ``argv`` (stdout and stderr to ``log_path``) for the block. The block is expected
    to :meth:`RunningDaemon.stop` it; if the block fails, the log's tail goes to stderr; a
    daemon still running at the end is killed; a non-zero exit code raises."""
    with log_path.open("w+") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        running = RunningDaemon(proc, log)
        try:
            yield running
        except BaseException:
            sys.stderr.write(running.tail())
            raise
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if running.code != 0:
            sys.stderr.write(running.tail())
            raise RuntimeError(f"daemon exited with {running.code}")


def vm_kb(pid: int, field: str) -> int:
    """A ``Vm*`` figure of a process in kB (``VmRSS``, ``VmHWM``; /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)

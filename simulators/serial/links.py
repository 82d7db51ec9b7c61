"""Where a simulated serial device is plugged in: a pty pair or a TCP port (ser2net style).

Both links behave like a cable to a real device: bytes sent while nobody has the port open are
lost (not queued for the next opener), host writes reach the device model, and
:meth:`Link.pull` / :meth:`Link.plug` model a cable pull: the pty master is closed (the host's
reads fail with EIO, like a USB unplug) or the TCP client is dropped and the port stops
accepting; plugging back makes a fresh pty (the optional ``link_path`` symlink is re-pointed,
so a host configured with that path finds it again) or listens again on the same TCP port.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tty
from abc import ABC, abstractmethod
from pathlib import Path


class Link(ABC):
    @abstractmethod
    async def plug(self) -> None:
        """Create the port (pty pair / listening socket)."""

    @abstractmethod
    async def pull(self) -> None:
        """Cable pull: the host sees its port vanish."""

    @abstractmethod
    def poll(self) -> tuple[bool, bytes]:
        """(is a host listening, bytes the host wrote since the last poll)."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Send to the host; dropped when nobody listens or the host does not keep up."""

    @property
    @abstractmethod
    def address(self) -> str:
        """What a host opens: the pty path (or its stable symlink) or ``socket://host:port``."""

    async def close(self) -> None:
        await self.pull()


class PtyLink(Link):
    """A pseudo-terminal pair; the host opens the slave path (or ``link_path``)."""

    def __init__(self, link_path: str | os.PathLike[str] | None = None) -> None:
        self.link_path = Path(link_path) if link_path else None
        self.master: int | None = None
        self.slave_path = ""

    async def plug(self) -> None:
        master, slave = os.openpty()
        # Raw mode at once: a cooked slave would echo our bytes back and mangle CR/LF and ^C.
        tty.setraw(slave)
        self.slave_path = os.ttyname(slave)
        os.close(slave)  # keeping it open would queue data for the next opener
        os.set_blocking(master, False)
        self.master = master
        if self.link_path is not None:
            tmp = self.link_path.with_name(self.link_path.name + ".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.slave_path)
            tmp.replace(self.link_path)  # atomic re-point

    async def pull(self) -> None:
        if self.master is not None:
            os.close(self.master)
            self.master = None
        if self.link_path is not None:
            # Like udev removing /dev/serial/by-id/... on unplug. A dangling link would be worse
            # than unrealistic: the freed /dev/pts number may soon belong to someone else.
            with contextlib.suppress(FileNotFoundError):
                self.link_path.unlink()

    def poll(self) -> tuple[bool, bytes]:
        if self.master is None:
            return False, b""
        try:
            return True, os.read(self.master, 4096)
        except BlockingIOError:
            return True, b""  # a host has the slave open, nothing written
        except OSError as exc:
            if exc.errno == errno.EIO:
                return False, b""  # no process has the slave open
            raise

    def write(self, data: bytes) -> None:
        if self.master is None:
            return
        with contextlib.suppress(BlockingIOError):
            os.write(self.master, data)  # a full buffer drops data, like a UART overrun

    @property
    def address(self) -> str:
        return str(self.link_path) if self.link_path else self.slave_path


class TcpLink(Link):
    """A raw TCP port like ser2net's: one host at a time (a new one replaces the old)."""

    MAX_BUFFER = 64 * 1024

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._inbox = bytearray()

    async def plug(self) -> None:
        for attempt in range(30):
            try:
                self._server = await asyncio.start_server(self._on_client, self.host, self.port)
                break
            except OSError as exc:
                # Re-plugging on the same port: an outgoing socket may briefly hold it.
                if exc.errno != errno.EADDRINUSE or attempt == 29:
                    raise
                await asyncio.sleep(0.1)
        assert self._server is not None
        self.port = self._server.sockets[0].getsockname()[1]  # keep it across pulls

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._drop_client()
        self._writer = writer
        try:
            while data := await reader.read(4096):
                self._inbox += data
        except (ConnectionError, OSError):
            pass
        finally:
            if self._writer is writer:
                self._writer = None
                writer.close()

    def _drop_client(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()
            self._writer = None

    async def pull(self) -> None:
        self._drop_client()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    def poll(self) -> tuple[bool, bytes]:
        data, self._inbox = bytes(self._inbox), bytearray()
        return self._writer is not None and not self._writer.is_closing(), data

    def write(self, data: bytes) -> None:
        w = self._writer
        if w is None or w.is_closing():
            return
        if w.transport.get_write_buffer_size() < self.MAX_BUFFER:
            w.write(data)

    @property
    def address(self) -> str:
        return f"socket://{self.host}:{self.port}"

"""The shared serial transport: one small async byte pipe for every serial driver.

Use it like this inside a driver's ``session()`` (one call = one connection)::

    from kapmonitor.transport.serial import LinkSettings, SerialPortConfig, open_serial

    DEFAULTS = LinkSettings(baudrate=9600)            # the protocol's documented link settings

    class MyConfig(SerialPortConfig):                  # adds port/baudrate/parity/... fields
        driver: Literal["serial-mine"] = "serial-mine"

    async with await open_serial(cfg.port, cfg.link(DEFAULTS)) as port:
        await port.write(b"...")                       # waits until handed to the OS
        while True:
            chunk = await port.read()                  # >= 1 byte; never returns b""
            for item in decoder.feed(chunk): ...

What it guarantees:

* ``port`` is a device path (``/dev/ttyUSB0``, the stable ``/dev/serial/by-id/...`` link, a
  pty slave or a symlink to one) or any pyserial URL: ``socket://host:port`` (ser2net raw mode,
  Moxa-type serial servers in TCP-server mode, our simulators' ``--tcp``), ``rfc2217://host:port``
  (serial servers that let the host set baud/parity), ``loop://`` (tests).
* Local ports are opened exclusively (``flock``) so two daemons cannot share one device.
* Every failure is a :class:`SerialPortError`: :class:`SerialOpenError` when the port cannot be
  opened (missing by-id link, permission, TCP refused), :class:`SerialPortLost` when an open port
  goes away (USB unplug, pty master closed, TCP peer closed). Let it propagate out of
  ``session()``: the device supervisor reconnects with backoff. Drivers never loop on reopen.
* A silent port is not an error: ``read()`` simply waits. The supervisor's staleness watchdog
  marks the device ``stale`` and cancels the session; cancellation closes the port.

Local ttys and ``socket://`` run on the event loop (pyserial-asyncio-fast); URL handlers without a
file descriptor (``rfc2217://``, ``loop://``) are served by short blocking reads in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import urllib.parse
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal, Protocol

import serial
import serial_asyncio_fast
from pydantic import Field, field_validator

from kapmonitor.clock import Clock
from kapmonitor.driver_api import DeviceConfig

Parity = Literal["N", "E", "O", "M", "S"]

# pyserial URL schemes whose Serial objects have no pollable file descriptor.
_THREADED_SCHEMES = frozenset({"rfc2217", "loop", "alt", "spy", "hwgrep", "cp2110"})
_THREAD_POLL_S = 0.1  # blocking-read slice in the thread fallback (bounds cancel latency)


class SerialPortError(ConnectionError):
    """Base of the serial transport's errors (the supervisor treats them as 'reconnect')."""


class SerialOpenError(SerialPortError):
    """The port could not be opened (missing device node, permission, connection refused)."""


class SerialPortLost(SerialPortError):
    """An open port went away: USB unplugged, pty closed, TCP peer closed, read/write failed."""


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """Line settings. Each protocol module declares its documented defaults as one of these."""

    baudrate: int = 9600
    bytesize: int = 8
    parity: Parity = "N"
    stopbits: float = 1
    xonxoff: bool = False

    def describe(self) -> str:
        stop = int(self.stopbits) if self.stopbits in (1, 2) else self.stopbits
        return f"{self.baudrate} {self.bytesize}{self.parity}{stop}"


class SerialPortConfig(DeviceConfig):
    """Base config for serial devices: the port and optional overrides of the link settings.

    Driver configs subclass this and add their ``driver`` literal and options. Every link field
    left unset falls back to the protocol's documented default (see each driver's reference).
    """

    port: str = Field(
        description=(
            "Serial device path (prefer the stable /dev/serial/by-id/... link) or a pyserial "
            "URL: socket://host:port for ser2net / serial-to-Ethernet servers in raw TCP mode, "
            "rfc2217://host:port for RFC 2217 servers."
        )
    )
    baudrate: int | None = Field(
        default=None, gt=0, description="Baud rate; default: the protocol's documented rate."
    )
    bytesize: Literal[5, 6, 7, 8] | None = Field(
        default=None, description="Data bits; default: the protocol's (8 for all supported)."
    )
    parity: Parity | None = Field(
        default=None,
        description="Parity N(one), E(ven), O(dd), M(ark), S(pace); default: the protocol's.",
    )
    stopbits: float | None = Field(
        default=None, description="Stop bits: 1, 1.5 or 2; default: the protocol's."
    )

    @field_validator("stopbits")
    @classmethod
    def _valid_stopbits(cls, v: float | None) -> float | None:
        if v is not None and v not in (1, 1.5, 2):
            raise ValueError("stopbits must be 1, 1.5 or 2")
        return v

    def link(self, defaults: LinkSettings) -> LinkSettings:
        """The protocol defaults with this device's overrides applied."""
        return replace(
            defaults,
            baudrate=self.baudrate if self.baudrate is not None else defaults.baudrate,
            bytesize=self.bytesize if self.bytesize is not None else defaults.bytesize,
            parity=self.parity if self.parity is not None else defaults.parity,
            stopbits=self.stopbits if self.stopbits is not None else defaults.stopbits,
        )


class ByteStream(Protocol):
    """What drivers (and their tests) need from a port."""

    async def read(self, max_bytes: int = 4096) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class SerialConnection:
    """An open serial port (or serial-over-TCP link). Create with :func:`open_serial`."""

    def __init__(self, url: str, settings: LinkSettings) -> None:
        self.url = url
        self.settings = settings
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        # Thread fallback only (URL handlers without a file descriptor):
        self._serial: serial.SerialBase | None = None
        self._queue: asyncio.Queue[bytes | BaseException] | None = None
        self._pending = b""
        self._pump_task: asyncio.Task[None] | None = None
        self._closed = False

    # -- opening -------------------------------------------------------------------------------
    async def open(self) -> None:
        kwargs = _serial_kwargs(self.url, self.settings)
        try:
            if _scheme(self.url) in _THREADED_SCHEMES:
                loop = asyncio.get_running_loop()
                self._serial = await loop.run_in_executor(
                    None, lambda: serial.serial_for_url(self.url, timeout=_THREAD_POLL_S, **kwargs)
                )
                self._queue = asyncio.Queue()
                self._pump_task = asyncio.create_task(self._pump())
            else:
                self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                    url=self.url, **kwargs
                )
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            raise SerialOpenError(f"cannot open {self.url} ({self.settings.describe()}): {exc}")

    # -- I/O -----------------------------------------------------------------------------------
    async def read(self, max_bytes: int = 4096) -> bytes:
        """Wait for at least one byte. Raises :class:`SerialPortLost` when the port is gone."""
        if self._closed:
            raise SerialPortLost(f"{self.url}: port is closed")
        if self._serial is not None:
            return await self._thread_read(max_bytes)
        assert self._reader is not None
        try:
            data = await self._reader.read(max_bytes)
        except (serial.SerialException, OSError) as exc:
            raise SerialPortLost(f"{self.url}: {exc}")
        if not data:
            raise SerialPortLost(f"{self.url}: end of stream (device or peer closed the link)")
        return data

    async def _thread_read(self, max_bytes: int) -> bytes:
        assert self._queue is not None
        if self._pending:
            data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
            return data
        item = await self._queue.get()  # cancel-safe: nothing is lost if we are cancelled
        if isinstance(item, BaseException):
            self._queue.put_nowait(item)  # keep reporting the loss to later readers
            raise SerialPortLost(f"{self.url}: {item}")
        data, self._pending = item[:max_bytes], item[max_bytes:]
        return data

    async def _pump(self) -> None:
        """Thread fallback: blocking reads in short slices, handed to ``read()`` via a queue."""
        ser, queue = self._serial, self._queue
        assert ser is not None and queue is not None
        loop = asyncio.get_running_loop()

        def blocking() -> bytes:
            first = ser.read(1)  # returns b"" after _THREAD_POLL_S of silence
            waiting = ser.in_waiting if first else 0
            return first + (ser.read(waiting) if waiting else b"")

        try:
            while True:
                data = await loop.run_in_executor(None, blocking)
                if data:
                    queue.put_nowait(data)
                elif not ser.is_open:
                    raise SerialPortLost("port closed")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed on to the reader (also AttributeError on hangup)
            queue.put_nowait(exc)

    async def write(self, data: bytes) -> None:
        """Send ``data`` and wait until the OS has taken it."""
        if self._closed:
            raise SerialPortLost(f"{self.url}: port is closed")
        try:
            if self._serial is not None:
                ser = self._serial
                await asyncio.get_running_loop().run_in_executor(None, ser.write, data)
                return
            assert self._writer is not None
            if self._writer.transport.is_closing():
                raise SerialPortLost(f"{self.url}: link closed")
            self._writer.write(data)
            await self._writer.drain()
        except (serial.SerialException, OSError) as exc:
            if isinstance(exc, SerialPortError):
                raise
            raise SerialPortLost(f"{self.url}: write failed: {exc}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 2.0)
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(BaseException):
                await self._pump_task
        if self._serial is not None:
            ser = self._serial
            with contextlib.suppress(Exception):
                # Let the pump's last blocking read slice finish before closing under it.
                await asyncio.get_running_loop().run_in_executor(None, ser.close)

    async def __aenter__(self) -> SerialConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def open_serial(url: str, settings: LinkSettings | None = None) -> SerialConnection:
    """Open ``url`` (path or pyserial URL) with ``settings``; raises :class:`SerialOpenError`."""
    conn = SerialConnection(url, settings or LinkSettings())
    await conn.open()
    return conn


def _is_pty(path: str) -> bool:
    """True for a Unix98 pty slave (device major 136-143), following symlinks."""
    try:
        return 136 <= os.major(os.stat(path).st_rdev) <= 143
    except OSError:
        return False


def _scheme(url: str) -> str:
    if "://" not in url:
        return ""
    return urllib.parse.urlparse(url).scheme.lower()


def _serial_kwargs(url: str, s: LinkSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "baudrate": s.baudrate,
        "bytesize": s.bytesize,
        "parity": s.parity,
        "stopbits": s.stopbits,
        "xonxoff": s.xonxoff,
    }
    if _scheme(url) == "":
        kwargs["exclusive"] = True  # flock: a second daemon on the same device fails loudly
        if _is_pty(url):
            # Linux ptys have no parity: they drop PARENB, then refuse the next parity request
            # with EINVAL (after pyserial has opened and locked the port). Only simulators sit
            # on ptys, so parity is meaningless there.
            kwargs["parity"] = "N"
    return kwargs


async def read_within(port: ByteStream, clock: Clock, seconds: float) -> bytes | None:
    """Read one chunk, or return None if nothing arrived within ``seconds`` of ``clock`` time.

    For handshakes and probes (a silent port is not an error). Cancel-safe: a chunk that
    arrives as the timer fires is not lost (it stays in the port's buffer for the next read).
    """
    read = asyncio.ensure_future(port.read())
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({read, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not read.done():
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await read
    return read.result() if not read.cancelled() else None

"""The shared serial transport over real ptys, real TCP sockets, loop:// and an RFC 2217 server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import termios
import threading
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
import serial.rfc2217
from pydantic import ValidationError

from kapmonitor.clock import ScaledClock
from kapmonitor.transport.serial import (
    LinkSettings,
    SerialOpenError,
    SerialPortConfig,
    SerialPortLost,
    open_serial,
    read_within,
)


def pty_pair() -> tuple[int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    return master, path


async def test_pty_read_write_and_master_close_raises_port_lost() -> None:
    master, path = pty_pair()
    port = await open_serial(path, LinkSettings(9600))
    try:
        os.write(master, b"hello")
        assert await asyncio.wait_for(port.read(), 5) == b"hello"
        await port.write(b"\x7d\x81\xa1")
        await asyncio.sleep(0.05)
        assert os.read(master, 16) == b"\x7d\x81\xa1"
        os.close(master)  # what a USB unplug looks like to the reader
        with pytest.raises(SerialPortLost):
            await asyncio.wait_for(port.read(), 5)
    finally:
        await port.close()


async def test_local_port_is_opened_exclusively() -> None:
    master, path = pty_pair()
    port = await open_serial(path)
    try:
        with pytest.raises(SerialOpenError):
            await open_serial(path)
    finally:
        await port.close()
        os.close(master)


async def test_missing_device_and_refused_tcp_are_open_errors() -> None:
    with pytest.raises(SerialOpenError, match="by-id"):
        await open_serial("/dev/serial/by-id/usb-nothing-here")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(SerialOpenError):
        await open_serial(f"socket://127.0.0.1:{free}")


async def test_socket_url_ser2net_style_and_peer_close_raises_port_lost() -> None:
    got: list[bytes] = []

    async def device(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"SPO2=097 HR=072\r\n")
        await w.drain()
        got.append(await r.read(16))
        w.close()

    server = await asyncio.start_server(device, "127.0.0.1", 0)
    port_no = server.sockets[0].getsockname()[1]
    async with server, await open_serial(f"socket://127.0.0.1:{port_no}") as port:
        assert await asyncio.wait_for(port.read(), 5) == b"SPO2=097 HR=072\r\n"
        await port.write(b"\x02\x70")
        with pytest.raises(SerialPortLost):
            await asyncio.wait_for(port.read(), 5)
    assert got == [b"\x02\x70"]


async def test_loop_url_uses_the_thread_pump() -> None:
    async with await open_serial("loop://", LinkSettings(115200)) as port:
        await port.write(b"abc")
        data = b""
        while len(data) < 3:
            data += await asyncio.wait_for(port.read(), 5)
        assert data == b"abc"


async def test_read_within_times_out_without_losing_later_data() -> None:
    master, path = pty_pair()
    clock = ScaledClock(speed=10)
    async with await open_serial(path) as port:
        assert await read_within(port, clock, 1.0) is None  # 0.1 s real: a silent port is fine
        os.write(master, b"late")
        assert await read_within(port, clock, 50.0) == b"late"
    os.close(master)


class PtySerial(serial.Serial):
    """A pty has no modem-control lines: report them idle instead of failing the ioctl."""

    cts = dsr = ri = cd = False

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass

    def _reconfigure_port(self, force_update: bool = False) -> None:
        # Some intermediate combinations a client negotiates one by one are refused by a pty;
        # the attributes still record what the client asked for, which the test checks.
        with contextlib.suppress(termios.error):
            super()._reconfigure_port(force_update)


@contextlib.contextmanager
def rfc2217_server(device_path: str) -> Iterator[tuple[int, serial.Serial]]:
    """A minimal RFC 2217 server (pyserial's PortManager) in front of a pty: a stand-in for a
    Moxa-type serial server."""
    ser = PtySerial(device_path, timeout=0.05)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    stop = threading.Event()

    def serve() -> None:
        conn, _ = lsock.accept()
        conn.settimeout(0.05)

        class Wire:  # PortManager writes its telnet replies through .write()
            def write(self, data: bytes) -> None:
                conn.sendall(data)

        manager = serial.rfc2217.PortManager(ser, Wire())
        while not stop.is_set():
            data = ser.read(ser.in_waiting or 1)
            if data:
                conn.sendall(b"".join(manager.escape(data)))
            with contextlib.suppress(TimeoutError):
                incoming = conn.recv(1024)
                if not incoming:
                    break
                ser.write(b"".join(manager.filter(incoming)))
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield lsock.getsockname()[1], ser
    finally:
        stop.set()
        t.join(2)
        lsock.close()
        ser.close()


async def test_rfc2217_url_through_a_serial_server() -> None:
    master, path = pty_pair()
    with rfc2217_server(path) as (tcp_port, server_side):
        url = f"rfc2217://127.0.0.1:{tcp_port}?timeout=2"
        async with await open_serial(url, LinkSettings(19200, parity="O")) as port:
            os.write(master, b"\x85\x33\x06\x48\x61")
            data = b""
            while len(data) < 5:
                data += await asyncio.wait_for(port.read(), 10)
            assert data == b"\x85\x33\x06\x48\x61"
            await port.write(b"\x7d\x81\xa1")
            await asyncio.sleep(0.3)
            assert os.read(master, 16).endswith(b"\x7d\x81\xa1")
            # The link settings travelled to the serial server (that is what RFC 2217 is for).
            assert (server_side.baudrate, server_side.parity) == (19200, "O")
    os.close(master)


def test_serial_port_config_overrides_protocol_defaults(tmp_path: Path) -> None:
    class Cfg(SerialPortConfig):
        driver: str = "x"

    cfg = Cfg(id="d1", bed="b1", port="/dev/serial/by-id/x", parity="E")
    link = cfg.link(LinkSettings(19200, parity="O", stopbits=1))
    assert (link.baudrate, link.parity, link.stopbits, link.bytesize) == (19200, "E", 1, 8)
    assert link.describe() == "19200 8E1"
    with pytest.raises(ValidationError):
        Cfg(id="d1", bed="b1", port="x", stopbits=3)
    with pytest.raises(ValidationError):
        Cfg.model_validate({"id": "d1", "bed": "b1", "port": "x", "parity": "Q"})

"""MLLP framing of HL7 messages (``0x0B`` … ``0x1C 0x0D``), sans-IO.

What belongs here is only the byte framing: an incremental deframer with resync and a size
limit, and :func:`frame`. No HL7 syntax (see :mod:`.er7`), no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from kapmonitor.codecs.base import Problem

MLLP_START = 0x0B  # VT
MLLP_END = 0x1C  # FS, followed by CR
CR = 0x0D
DEFAULT_MAX_MESSAGE = 1 << 20  # 1 MiB: a PCD-01 report is a few kB; more is a broken sender


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete MLLP payload (the HL7 message bytes, without VT/FS/CR)."""

    data: bytes


class MllpDeframer:
    """Incremental MLLP reader: ``feed`` bytes, get :class:`Frame` and :class:`Problem` items.

    Bytes outside a frame are skipped and reported once per run; a new VT inside a frame means
    the previous frame was cut short (reported, dropped); a frame longer than ``max_size`` is
    dropped and the reader waits for the next VT. A CR after FS is optional (some senders omit
    it), so FS alone ends the frame.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._in_frame = False
        self._oversize = False
        self._after_fs = False
        self._garbage = 0

    @property
    def in_frame(self) -> bool:
        return self._in_frame

    def feed(self, chunk: bytes) -> list[Frame | Problem]:
        out: list[Frame | Problem] = []
        i = 0
        n = len(chunk)
        while i < n:
            if self._after_fs:
                self._after_fs = False
                if chunk[i] == CR:
                    i += 1
                    continue
            if not self._in_frame:
                j = chunk.find(MLLP_START, i)
                skipped = (n if j < 0 else j) - i
                self._garbage += skipped
                if j < 0:
                    break
                self._flush_garbage(out)
                self._in_frame = True
                self._oversize = False
                self._buf.clear()
                i = j + 1
                continue
            # Inside a frame: look for the end, or a new start that aborts this frame.
            end = chunk.find(MLLP_END, i)
            restart = chunk.find(MLLP_START, i)
            stop = min(x for x in (end, restart, n) if x >= 0)
            self._append(chunk[i:stop], out)
            if stop == n:
                break
            if stop == restart and (end < 0 or restart < end):
                out.append(Problem(f"MLLP frame cut short after {len(self._buf)} bytes"))
                self._buf.clear()
                self._oversize = False
                i = restart + 1
                continue
            i = end + 1
            self._in_frame = False
            self._after_fs = True
            if self._oversize:
                continue
            out.append(Frame(bytes(self._buf)))
            self._buf.clear()
        return out

    def close(self) -> list[Frame | Problem]:
        out: list[Frame | Problem] = []
        self._flush_garbage(out)
        if self._in_frame and (self._buf or self._oversize):
            out.append(Problem(f"stream ended inside an MLLP frame ({len(self._buf)} bytes)"))
        self._in_frame = False
        self._buf.clear()
        return out

    def _append(self, data: bytes, out: list[Frame | Problem]) -> None:
        if self._oversize:
            return
        if len(self._buf) + len(data) > self.max_size:
            out.append(Problem(f"MLLP frame larger than {self.max_size} bytes dropped"))
            self._oversize = True
            self._buf.clear()
            return
        self._buf += data

    def _flush_garbage(self, out: list[Frame | Problem]) -> None:
        if self._garbage:
            out.append(Problem(f"skipped {self._garbage} bytes outside MLLP frames"))
            self._garbage = 0


def frame(message: bytes) -> bytes:
    """Wrap one HL7 message in MLLP framing."""
    if bytes([MLLP_START]) in message or bytes([MLLP_END]) in message:
        raise ValueError("an HL7 message must not contain the MLLP bytes 0x0B or 0x1C")
    return bytes([MLLP_START]) + message + bytes([MLLP_END, CR])

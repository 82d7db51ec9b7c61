"""Small helpers shared by the serial stream codecs: skipped-byte accounting, line splitting and
the buffer/resync scaffolding of the binary stream decoders."""

from __future__ import annotations

import re
from typing import ClassVar

from kapmonitor.codecs.base import Output, Problem

_LINE_END = re.compile(rb"[\r\n]")


class SkipCounter:
    """Counts bytes a decoder threw away while hunting for sync.

    A run of skipped bytes is reported as one :class:`Problem` when sync is regained (or at
    ``close``), so feeding garbage one byte at a time does not produce one report per byte.
    ``total`` keeps the lifetime count for status/metrics.
    """

    def __init__(self, what: str = "garbage") -> None:
        self.what = what
        self.total = 0
        self._run = 0
        self._reason = ""

    def skip(self, n: int = 1, reason: str = "") -> None:
        if n <= 0:
            return
        self.total += n
        self._run += n
        if reason and not self._reason:
            self._reason = reason

    def flush(self) -> list[Output]:
        if not self._run:
            return []
        why = f" ({self._reason})" if self._reason else ""
        plural = "s" if self._run != 1 else ""
        out: list[Output] = [Problem(f"skipped {self._run} byte{plural} of {self.what}{why}")]
        self._run = 0
        self._reason = ""
        return out


class LineSplitter:
    """Splits a byte stream into lines on CR, LF or CRLF; drops NULs and blank lines.

    Lines longer than ``max_len`` without a terminator are discarded (counted in ``skipped``),
    so a stream of garbage without line ends cannot grow the buffer without bound.
    """

    def __init__(self, max_len: int = 1024) -> None:
        self.max_len = max_len
        self.skipped = SkipCounter("overlong line")
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buf += chunk.replace(b"\x00", b"")
        parts = _LINE_END.split(bytes(self._buf))
        tail = parts.pop()  # text after the last terminator (maybe empty)
        self._buf = bytearray(tail)
        if len(self._buf) > self.max_len:
            self.skipped.skip(len(self._buf), "no line end")
            self._buf.clear()
        return [p for p in parts if p.strip()]

    def close(self) -> bytes:
        """Return (and forget) an unterminated final line."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest


class StreamDecoder:
    """Input buffer and skipped-byte accounting shared by the binary stream decoders.

    Subclasses implement ``feed``; whatever is still buffered at ``close`` counts as skipped.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.skipped = SkipCounter()

    @property
    def skipped_bytes(self) -> int:
        return self.skipped.total

    def close(self) -> list[Output]:
        self.skipped.skip(len(self._buf), "truncated at end of input")
        self._buf.clear()
        return self.skipped.flush()


class FixedFrameDecoder(StreamDecoder):
    """Fixed-length frames found by sliding one byte at a time until ``frame_ok`` accepts one.

    Suits protocols whose sync is "the only byte with bit 7 set": a subclass sets ``frame_len``
    and supplies the frame check and the frame -> outputs mapping.
    """

    frame_len: ClassVar[int]

    def frame_ok(self, frame: bytes) -> bool:
        raise NotImplementedError

    def decode_frame(self, frame: bytes) -> list[Output]:
        raise NotImplementedError

    def feed(self, chunk: bytes) -> list[Output]:
        self._buf += chunk
        buf, i, n = self._buf, 0, self.frame_len
        out: list[Output] = []
        while len(buf) - i >= n:
            frame = bytes(buf[i : i + n])
            if not self.frame_ok(frame):
                self.skipped.skip(1, "sync bits")
                i += 1
                continue
            i += n
            out += self.skipped.flush()
            out += self.decode_frame(frame)
        del buf[:i]
        return out

"""A minimal HL7 v2 ORU^R01 sender over MLLP (a real TCP client), for tests that need a
reading to arrive at a precise moment: a crisis blood pressure, in the GE/IHE PCD-01 style
the ``hl7-mllp`` driver reads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

VT, FS, CR = b"\x0b", b"\x1c", b"\r"


def nibp_oru(control_id: str, sys_: float, dia: float, mean: float,
             equipment: str = "0A000000000000A1", when: datetime | None = None) -> bytes:
    ts = (when or datetime.now(UTC)).strftime("%Y%m%d%H%M%S+0000")
    src = f"SENDER^{equipment}^EUI-64"
    segments = [
        f"MSH|^~\\&|{src}||||{ts}||ORU^R01^ORU_R01|{control_id}|P|2.6|||AL|NE||UNICODE UTF-8"
        "|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
        "PID|||TEST-0001^^^KAPSIM^PI||Test^Patient",
        "PV1||I|",
        f"OBR|1|{control_id}^{src}|{control_id}^{src}|182777000^monitoring of patient^SNOMED-CT"
        f"|||{ts}",
        f"OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||{equipment}",
    ]
    for i, (code, name, value) in enumerate(
        [(150021, "SYS", sys_), (150022, "DIA", dia), (150023, "MEAN", mean)], start=2
    ):
        segments.append(
            f"OBX|{i}|NM|{code}^MDC_PRESS_BLD_NONINV_{name}^MDC|1.4.1.{code}|{value:g}"
            f"|266016^MDC_DIM_MMHG^MDC|||||R||||||AMEAS^auto-measurement^MDC|{equipment}"
        )
    return ("\r".join(segments) + "\r").encode()


class MllpSender:
    """One MLLP connection: send a message, wait for its ACK (returns the ACK text)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 10.0) -> MllpSender:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                reader, writer = await asyncio.open_connection(host, port)
                return cls(reader, writer)
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def send(self, message: bytes, timeout: float = 10.0) -> str:
        self.writer.write(VT + message + FS + CR)
        await self.writer.drain()
        ack = await asyncio.wait_for(self.reader.readuntil(FS + CR), timeout)
        return ack.strip(VT + FS + CR).decode(errors="replace")

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()

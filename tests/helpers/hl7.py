"""HL7 for tests that need a reading to arrive at a precise moment (a crisis blood pressure):
the simulators' GE-style NIBP report and their MLLP sender, connected once the listener is up."""

from __future__ import annotations

import asyncio

from kapmonitor_simulators.hl7_oru import nibp_report as nibp_oru
from kapmonitor_simulators.hl7_sender import Hl7Sender

__all__ = ["connect_sender", "nibp_oru"]


async def connect_sender(host: str, port: int, timeout: float = 10.0,
                         equipment_id: str = "0A000000000000A1") -> Hl7Sender:
    """An :class:`Hl7Sender` with its connection open (retried until ``timeout`` while the
    listener starts); ``send`` returns the ACK."""
    sender = Hl7Sender(host, port, equipment_id=equipment_id)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await sender.connect()
            return sender
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)

"""`kapmonitor pair`'s agent answers BlueZ's passkey and confirmation questions (issue 4 item 6).

BlueZoo only does Just-Works bonding, so tests/test_bluezoo.py never reaches the passkey prompt.
Here the agent is exported on a private ``dbus-daemon`` and called over D-Bus exactly as
bluetoothd calls a registered ``org.bluez.Agent1`` (method names and signatures from BlueZ's
doc/org.bluez.Agent.rst); the operator's answers come from a scripted ``ask``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from kapmonitor.ble.agent import AGENT_PATH, PairingAgent

DBUS_DAEMON = shutil.which("dbus-daemon")
DEVICE = "/org/bluez/hci0/dev_00_00_00_00_AA_02"

pytestmark = [
    pytest.mark.dbus,
    pytest.mark.skipif(DBUS_DAEMON is None, reason="dbus-daemon not installed (Debian: dbus)"),
]


@pytest.fixture
async def bus_address() -> AsyncIterator[str]:
    assert DBUS_DAEMON is not None
    daemon = subprocess.Popen(
        [DBUS_DAEMON, "--session", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert daemon.stdout is not None
        yield daemon.stdout.readline().strip()
    finally:
        daemon.terminate()
        daemon.wait(5)


class Operator:
    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    async def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.answers.pop(0)


async def ask_agent(
    address: str, agent: PairingAgent, member: str, signature: str, body: list[object]
) -> Message:
    """Export ``agent`` on one connection and call it from another, as bluetoothd would."""
    host = await MessageBus(bus_address=address).connect()
    caller = await MessageBus(bus_address=address).connect()
    try:
        host.export(AGENT_PATH, agent)
        reply = await caller.call(
            Message(destination=host.unique_name, path=AGENT_PATH,
                    interface="org.bluez.Agent1", member=member,
                    signature=signature, body=body)
        )
        assert reply is not None
        return reply
    finally:
        caller.disconnect()
        host.disconnect()


async def test_passkey_prompt_returns_the_typed_digits(bus_address: str) -> None:
    operator = Operator(" 012345 \n")
    agent = PairingAgent(operator)
    reply = await ask_agent(bus_address, agent, "RequestPasskey", "o", [DEVICE])
    assert reply.message_type == MessageType.METHOD_RETURN
    assert reply.signature == "u" and reply.body == [12345]
    assert operator.prompts and "Passkey" in operator.prompts[0]
    assert agent.requests == ["passkey"]


@pytest.mark.parametrize("typed", ["12ab56", "1234567", ""])
async def test_bad_passkey_is_rejected(bus_address: str, typed: str) -> None:
    reply = await ask_agent(bus_address, PairingAgent(Operator(typed)), "RequestPasskey", "o",
                            [DEVICE])
    assert reply.message_type == MessageType.ERROR
    assert reply.error_name == "org.bluez.Error.Rejected"


@pytest.mark.parametrize(("typed", "accepted"), [("y", True), ("YES", True), ("n", False),
                                                  ("", False)])
async def test_numeric_comparison_needs_the_operators_yes(
    bus_address: str, typed: str, accepted: bool
) -> None:
    operator = Operator(typed)
    reply = await ask_agent(bus_address, PairingAgent(operator), "RequestConfirmation", "ou",
                            [DEVICE, 4321])
    assert "004321" in operator.prompts[0]  # the six digits the device shows
    if accepted:
        assert reply.message_type == MessageType.METHOD_RETURN
    else:
        assert reply.error_name == "org.bluez.Error.Rejected"


async def test_auto_confirm_does_not_ask(bus_address: str) -> None:
    operator = Operator()
    reply = await ask_agent(bus_address, PairingAgent(operator, auto_confirm=True),
                            "RequestConfirmation", "ou", [DEVICE, 1])
    assert reply.message_type == MessageType.METHOD_RETURN and operator.prompts == []

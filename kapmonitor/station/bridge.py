"""The station's MQTT connection: reads every configured node, says it is alive, confirms
what it displayed and carries the clinicians' commands.

What belongs here: the aiomqtt client and its reconnect loop, nothing about HTTP or pages.

- Subscribes to the node topics of :mod:`kapmonitor.station.topics` on two connections (the
  alarm path; the bulk vitals, sessions and device states) and feeds
  :class:`~kapmonitor.station.state.StationState` (retained messages rebuild it on connect).
- Publishes ``<prefix>/<station_id>/state`` retained (``online``; the last will says
  ``offline``/``lost``; a clean stop ``offline``/``shutdown``) and a heartbeat on
  ``<prefix>/<station_id>/heartbeat`` every ``heartbeat_s``.
- :meth:`confirm` publishes ``<node>/display/confirm`` for alerts a page has shown.
- :meth:`command` publishes ``<node>/bridge/request/<cmd>`` with a ``transaction`` and waits
  for the matching ``bridge/response/<cmd>``; :meth:`report` asks for a session's report PDF.

A large response (a report carries its PDF, base64) is parsed by :func:`parse_response` in a
worker thread, in slices, so the alarm path's reader never waits for it; a response above the
request's byte limit is refused without being parsed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import secrets
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiomqtt

from kapmonitor.station.config import StationConfig
from kapmonitor.station.state import StationState
from kapmonitor.station.topics import ALARM_KINDS, DATA_KINDS, NodePatterns, StationTopics
from kapmonitor.topics import encode

log = logging.getLogger("kapmonitor.station.mqtt")


async def _together(tasks: list[asyncio.Task[Any]], *, stop_within: float) -> None:
    """Run ``tasks`` until one fails (its exception propagates); then, and on cancellation,
    cancel them all and wait for them at most ``stop_within`` seconds."""
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            t.result()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=stop_within)


class CommandFailed(Exception):
    """No response, or no broker: the text is shown to the user."""


class ResponseTooLarge(CommandFailed):
    """The node's response is larger than the request allows."""


LARGE_RESPONSE = 64 * 1024  # bytes: parsed in a worker thread, off the alarm path's reader
_PDF_FIELD = b'"pdf_base64":"'
_B64_SLICE = 1 << 20  # a multiple of 4: each slice decodes on its own


def _size(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _b64decode(data: bytes) -> bytes:
    try:
        return b"".join(base64.b64decode(data[i:i + _B64_SLICE], validate=True)
                        for i in range(0, len(data), _B64_SLICE))
    except binascii.Error as exc:
        raise ValueError(f"pdf_base64 is not base64: {exc}") from None


def parse_response(raw: bytes) -> Any:
    """A command response; every inline PDF (``pdf_base64``, base64 has no characters that JSON
    escapes) is cut out of the text before the JSON parser sees it and decoded in 1-MB slices,
    so a worker thread running this gives the event loop its turn between slices. The decoded
    bytes are in ``pdf_bytes`` of the same object. ValueError when it is not such JSON."""
    pdfs: list[bytes] = []
    parts: list[bytes] = []
    pos = 0
    while (i := raw.find(_PDF_FIELD, pos)) >= 0:
        start = i + len(_PDF_FIELD)
        end = raw.find(b'"', start)
        if end < 0:
            break
        parts += [raw[pos:start], str(len(pdfs)).encode()]
        pdfs.append(_b64decode(raw[start:end]))
        pos = end
    parts.append(raw[pos:])
    payload = json.loads(b"".join(parts))

    def restore(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.pop("pdf_base64", None)
            if isinstance(ref, str):
                node["pdf_bytes"] = pdfs[int(ref)] if pdfs else _b64decode(ref.encode())
            for v in node.values():
                restore(v)
        elif isinstance(node, list):
            for v in node:
                restore(v)

    if pdfs or b"pdf_base64" in raw:
        restore(payload)
    return payload


class StationBridge:
    def __init__(self, cfg: StationConfig, state: StationState,
                 on_change: Callable[[bool], None]) -> None:
        self.cfg = cfg
        self.state = state
        self.on_change = on_change  # on_change(urgent) after every applied message
        self.patterns = NodePatterns(cfg.nodes)
        self.station_topics = StationTopics(cfg.heartbeat_prefix)
        self.client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.data_connected = False
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.limits: dict[str, int] = {}  # transaction → largest response accepted (bytes)
        self._parsing: set[asyncio.Task[None]] = set()
        self.pages = 0  # connected pages, reported in the heartbeat
        self.armed = 0  # of which with sound allowed
        self.confirmed: set[str] = set()
        self.messages = 0
        self._stopping = False

    def _state_body(self, state: str, reason: str) -> bytes:
        return encode({"state": state, "reason": reason, "station": self.cfg.station_id,
                       "t": time.time()})

    def _broker_state(self) -> None:
        self.state.set_broker(self.connected.is_set() and self.data_connected, time.time())
        self.on_change(True)

    async def run(self) -> None:
        await _together([
            asyncio.create_task(self._run(alarm=True), name="station-mqtt-alarm"),
            asyncio.create_task(self._run(alarm=False), name="station-mqtt-data"),
        ], stop_within=5.0)

    async def _run(self, *, alarm: bool) -> None:
        delay = 0.5
        m = self.cfg.mqtt
        password = None
        if m.password_file is not None:
            password = m.password_file.read_text().rstrip("\r\n")
        tls = None
        if m.tls or m.ca_file is not None:
            tls = ssl.create_default_context(cafile=str(m.ca_file) if m.ca_file else None)
        state_topic = self.station_topics.state(self.cfg.station_id)
        while not self._stopping:
            role = "alarm" if alarm else "data"
            will = aiomqtt.Will(state_topic, self._state_body("offline", "lost"), qos=1,
                                retain=True) if alarm else None
            client = aiomqtt.Client(
                m.host, m.port, identifier=f"kapmonitor-station-{self.cfg.station_id}-{role}-"
                f"{secrets.token_hex(3)}", username=m.username, password=password,
                keepalive=m.keepalive, tls_context=tls, timeout=10, will=will,
                queue_type=self._direct_queue(),
            )
            try:
                async with client:
                    if alarm:
                        self.client = client
                        await client.publish(state_topic,
                                             self._state_body("online", "connected"),
                                             qos=1, retain=True)
                    # The alarm path at QoS 1; the bulk data at QoS 0: each vitals, session or
                    # device status message is retained state that the next one replaces (and
                    # a reconnect re-delivers), and a PUBACK per message cost the station
                    # a fifth of its CPU at 1,000 beds (bench/station.py).
                    for f in self.patterns.filters(ALARM_KINDS if alarm else DATA_KINDS):
                        await client.subscribe(f, qos=1 if alarm else 0)
                    if alarm:
                        self.connected.set()
                    else:
                        self.data_connected = True
                    self._broker_state()
                    log.info("connected to broker %s:%d (%s)", m.host, m.port, role)
                    delay = 0.5
                    await self._serve(client, alarm)
            except aiomqtt.MqttError as exc:
                if not self._stopping:
                    log.warning("broker %s:%d: %s", m.host, m.port, exc)
            finally:
                if alarm:
                    self.client = None
                    self.connected.clear()
                    for fut in self.pending.values():
                        if not fut.done():
                            fut.set_exception(CommandFailed("broker connection lost"))
                else:
                    self.data_connected = False
                self._broker_state()
            if self._stopping:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _serve(self, client: aiomqtt.Client, alarm: bool) -> None:
        """Read (and on the alarm connection, send heartbeats) until one of them fails; on
        the way out the tasks are cancelled explicitly and awaited with a bound, so a stop
        never hangs on a reader that is slow to notice its cancellation."""
        tasks = [asyncio.create_task(self._read(client), name="station-read")]
        if alarm:
            tasks.append(asyncio.create_task(self._heartbeat(client), name="station-heartbeat"))
        await _together(tasks, stop_within=2.0)

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        topic = self.station_topics.heartbeat(self.cfg.station_id)
        while True:
            body = {"station": self.cfg.station_id, "t": time.time(), "pages": self.pages,
                    "audio_armed": self.armed, "every_s": self.cfg.heartbeat_s}
            await client.publish(topic, encode(body), qos=0)
            await asyncio.sleep(self.cfg.heartbeat_s)

    def _direct_queue(self) -> type[asyncio.Queue[aiomqtt.Message]]:
        """aiomqtt's message queue, replaced: each message is handled as the client decodes
        it, in the same event-loop callback. At 1,000 beds' vitals a second the queue's task
        and wait per message cost more than handling the message; and an alert is applied the
        moment its packet is read, never after the vitals queued before it."""
        handle = self._handle

        class Direct(asyncio.Queue[aiomqtt.Message]):
            def put_nowait(self, item: aiomqtt.Message) -> None:
                try:
                    handle(item)
                except Exception:  # a bad message must not break the client's reader
                    log.exception("station: a message could not be applied")

        return Direct

    async def _read(self, client: aiomqtt.Client) -> None:
        """Until the connection drops (messages are handled by the direct queue)."""
        async for msg in client.messages:
            self._handle(msg)

    def _handle(self, msg: aiomqtt.Message) -> None:
        self.messages += 1
        topic = str(msg.topic)
        parsed = self.patterns.parse(topic)
        if parsed is None:
            return
        raw = msg.payload if isinstance(msg.payload, bytes) else b""
        if not raw:
            return
        if parsed.kind == "response":
            if len(raw) > LARGE_RESPONSE:
                self._large_response(raw)
            else:
                with contextlib.suppress(ValueError):
                    self._resolve(parse_response(raw))
            return
        try:
            payload = json.loads(raw)
        except ValueError:
            log.warning("ignored a non-JSON message on a node topic")
            return
        self.state.apply(parsed, payload, time.monotonic(), bool(msg.retain), time.time())
        self.on_change(parsed.kind == "bed" and parsed.leaf in ("alarms", "alert"))

    def _resolve(self, payload: Any) -> None:
        tx = payload.get("transaction") if isinstance(payload, dict) else None
        fut = self.pending.get(str(tx)) if tx is not None else None
        if fut is not None and not fut.done():
            fut.set_result(payload)

    def _large_response(self, raw: bytes) -> None:
        """A response too large to parse on the reader: find whose it is by its transaction
        (random hex, searched in the bytes), refuse it above that request's limit, else parse
        it in a worker thread."""
        tx = next((t for t in self.pending if t.encode() in raw), None)
        if tx is None:
            return  # nobody waits for it (timed out, or another station's)
        fut = self.pending[tx]
        limit = self.limits.get(tx)
        if limit is not None and len(raw) > limit:
            if not fut.done():
                fut.set_exception(ResponseTooLarge(
                    f"the node's answer ({_size(len(raw))}) is larger than the "
                    f"station accepts ({_size(limit)})"))
            return

        async def parse() -> None:
            try:
                payload = await asyncio.to_thread(parse_response, raw)
            except ValueError as exc:
                if not fut.done():
                    fut.set_exception(CommandFailed(f"unreadable answer from the node: {exc}"))
                return
            self._resolve(payload)

        task = asyncio.create_task(parse(), name="station-parse-response")
        self._parsing.add(task)
        task.add_done_callback(self._parsing.discard)

    async def command(self, base: str, name: str, body: dict[str, Any], *,
                      wait_s: float | None = None,
                      max_bytes: int | None = None) -> dict[str, Any]:
        """Send ``bridge/request/<name>`` and wait ``wait_s`` (default ``command_timeout_s``)
        for the response; a response over ``max_bytes`` raises :class:`ResponseTooLarge`."""
        client = self.client
        if client is None:
            raise CommandFailed("the station is not connected to the broker")
        wait = self.cfg.command_timeout_s if wait_s is None else wait_s
        tx = secrets.token_hex(8)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[tx] = fut
        if max_bytes is not None:
            self.limits[tx] = max_bytes
        try:
            await client.publish(self.patterns.node(base).request(name),
                                 encode({**body, "transaction": tx}), qos=1)
            async with asyncio.timeout(wait):
                return await fut
        except TimeoutError:
            raise CommandFailed(f"no response from the node within {wait:g} s") from None
        except aiomqtt.MqttError as exc:
            raise CommandFailed(f"broker: {exc}") from None
        finally:
            self.pending.pop(tx, None)
            self.limits.pop(tx, None)

    async def report(self, base: str, session_id: str, by: str, *, wait_s: float,
                     max_bytes: int) -> bytes:
        """The PDF report of one session, from the node's ``report`` command (``inline``).
        :class:`CommandFailed` with the node's refusal, a timeout or an oversized answer."""
        # base64 makes 4 bytes of 3; the rest of the answer (paths, ids) is small.
        resp = await self.command(base, "report",
                                  {"session_id": session_id, "inline": True, "by": by},
                                  wait_s=wait_s, max_bytes=max_bytes * 4 // 3 + 16_384)
        if resp.get("status") != "ok":
            raise CommandFailed(f"the node refused: {resp.get('error') or 'no reason given'}")
        data = resp.get("data")
        reports = data.get("reports") if isinstance(data, dict) else None
        for item in reports if isinstance(reports, list) else []:
            if isinstance(item, dict) and item.get("session_id") == session_id:
                pdf = item.get("pdf_bytes")
                if not isinstance(pdf, bytes) or not pdf.startswith(b"%PDF-"):
                    raise CommandFailed("the node's answer holds no PDF")
                if len(pdf) > max_bytes:
                    raise ResponseTooLarge(
                        f"the report ({_size(len(pdf))}) is larger than the station "
                        f"serves ({_size(max_bytes)})")
                return pdf
        raise CommandFailed("the node's answer holds no report of this session")

    async def confirm(self, alert_ids: list[str]) -> None:
        """Tell each alert's node that a page of this station has shown it."""
        client = self.client
        if client is None:
            return
        for aid in alert_ids:
            if aid in self.confirmed:
                continue
            home = self.state.alert_home.get(aid)
            if home is None:
                continue
            self.confirmed.add(aid)
            if len(self.confirmed) > 50_000:
                self.confirmed.clear()
            body = {"station": self.cfg.station_id, "alert_id": aid,
                    "bed": self.state.beds[home[1]].bed if home[1] in self.state.beds else None,
                    "t": time.time(), "audio_armed": self.armed > 0}
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(self.patterns.node(home[0]).display_confirm, encode(body),
                                     qos=1)

    async def stop(self) -> None:
        self._stopping = True
        client = self.client
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(2):
                    await client.publish(
                        self.station_topics.state(self.cfg.station_id),
                        self._state_body("offline", "shutdown"), qos=1, retain=True)

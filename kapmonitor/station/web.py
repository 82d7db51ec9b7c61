"""The station's HTTP and WebSocket server (aiohttp) and the service that runs it all.

What belongs here: routes, cookies, CSRF and origin checks, the push loop to the pages, and
:class:`Station` which starts the MQTT bridge and the server together.

- ``GET /`` the page (login required, else ``/login``); ``/static/*`` its ES modules;
- ``POST /api/login`` / ``/api/logout``; ``GET /api/me`` (user, role, CSRF token);
- ``POST /api/action`` ``{"bed", "command", "args"}``: one of :data:`ACTIONS`, sent to the
  bed's node as ``bridge/request/<command>`` with ``by`` set to the logged-in user (a ``by``
  sent by the page is replaced); needs the ``X-CSRF-Token`` header and an acting role;
- ``POST /api/report`` ``{"bed", "session_id"}``: the session's PDF report as a download
  (``Content-Disposition: attachment``), from the node's ``report`` command with ``by`` set to
  the logged-in user; any role (it is read-only), with the same CSRF and origin checks as an
  action; bounded by ``report_timeout_s`` and ``report_max_mb``;
- ``GET /ws``: a snapshot, then updates (alarm changes at once, the rest once a second); the
  page sends back ``displayed`` (alert ids it has rendered: confirmed to their nodes),
  ``audio`` (whether sound is allowed) and ``timeline`` requests.

Bed keys travel in bodies and WebSocket messages, never in URLs; the log names users, nodes,
beds and commands, never arguments (a symptom note could identify a patient).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
import time
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from kapmonitor.station.backfill import Backfill
from kapmonitor.station.bridge import CommandFailed, ResponseTooLarge, StationBridge
from kapmonitor.station.config import StationConfig
from kapmonitor.station.state import StationState
from kapmonitor.station.users import Auth, LoginSession

log = logging.getLogger("kapmonitor.station")

STATIC = Path(__file__).parent / "static"
COOKIE = "kapstation"
ACTIONS = frozenset({
    "alert/ack", "alert/pause", "session/start", "session/dose", "session/end",
    "session/symptom", "session/symptom_clear", "bp/measure",
})
# A session id as a node makes it (`<bed>-<epoch>`) or as staff give it: no quotes, slashes
# or spaces, so it is safe in a file name and a log line.
SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Client:
    def __init__(self, ws: web.WebSocketResponse, session: LoginSession) -> None:
        self.ws = ws
        self.session = session
        self.armed = False
        self.view: set[str] = set()  # bed keys the page shows: their vitals every second


class Station:
    """One central station: state + MQTT bridge + web server."""

    def __init__(self, cfg: StationConfig) -> None:
        self.cfg = cfg
        self.state = StationState(stale_after_s=cfg.stale_after_s, node_stale_s=cfg.node_stale_s)
        self.bridge = StationBridge(cfg, self.state, self._on_change)
        self.history = Backfill(self.state, self.bridge.command, cfg.station_id)
        self.auth = Auth(cfg.users_file, session_s=cfg.session_hours * 3600,
                         attempts=cfg.login_attempts, window_s=cfg.login_window_s)
        self.clients: set[Client] = set()
        self._wake = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.port: int | None = None
        self.url: str | None = None
        self.pushes = 0

    # -- change propagation ------------------------------------------------------------------
    def _on_change(self, urgent: bool) -> None:
        if urgent:
            self._wake.set()

    async def _pusher(self) -> None:
        loop = asyncio.get_running_loop()
        last_slow = 0.0
        while True:
            timeout = max(0.0, 1.0 - (loop.time() - last_slow))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            now = loop.time()
            slow = now - last_slow >= 1.0
            if slow:
                last_slow = now
                self.state.evaluate(time.monotonic(), time.time())
                self.bridge.pages = len(self.clients)
                self.bridge.armed = sum(1 for c in self.clients if c.armed)
            wanted: set[str] = set().union(*(c.view for c in self.clients))
            update = self.state.take_update(time.time(), include_slow=slow, wanted=wanted)
            if update is None or not self.clients:
                continue
            slow_beds = update.pop("slow")
            self.pushes += 1
            update["sent"] = time.time()
            sends = []
            common: str | None = None
            for c in list(self.clients):
                mine = [b for b in slow_beds if b["key"] in c.view]
                if mine:
                    data = json.dumps({**update, "beds": update["beds"] + mine},
                                      separators=(",", ":"))
                else:
                    if not update["beds"] and "nodes" not in update and "tech" not in update:
                        continue  # only slow changes, none of them on this page
                    common = common or json.dumps(update, separators=(",", ":"))
                    data = common
                sends.append(self._send(c, data))
            await asyncio.gather(*sends)

    async def _send(self, c: Client, data: str) -> None:
        try:
            async with asyncio.timeout(5):
                await c.ws.send_str(data)
        except (ConnectionError, TimeoutError, RuntimeError):
            self.clients.discard(c)
            with contextlib.suppress(Exception):
                await c.ws.close()

    # -- HTTP helpers ------------------------------------------------------------------------
    def _session(self, request: web.Request) -> LoginSession | None:
        return self.auth.session(request.cookies.get(COOKIE))

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser cross-site request (browsers send Origin on POST/WS)
        return origin.split("://", 1)[-1] == request.host

    @staticmethod
    def _error(status: int, text: str) -> web.Response:
        return web.json_response({"status": "error", "error": text}, status=status)

    # -- routes ------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.StreamResponse:
        if self._session(request) is None:
            raise web.HTTPFound("/login")
        return web.FileResponse(STATIC / "index.html")

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "login.html")

    async def login(self, request: web.Request) -> web.Response:
        if not self._same_origin(request):
            return self._error(403, "cross-origin request refused")
        try:
            body = await request.json()
            name, password = str(body["username"]), str(body["password"])
        except (ValueError, KeyError, TypeError):
            return self._error(400, "send JSON with username and password")
        client = request.remote or "?"
        result = await asyncio.get_running_loop().run_in_executor(
            None, self.auth.login, name, password, client)
        if result == "rate_limited":
            log.warning("login refused (rate limit) for a user from %s", client)
            return self._error(429, "too many failed logins; wait a few minutes")
        if not isinstance(result, LoginSession):
            log.warning("failed login from %s", client)
            return self._error(401, "wrong user name or password")
        log.info("user %s (%s) logged in from %s", result.user.name, result.user.role, client)
        resp = web.json_response(self._me(result))
        resp.set_cookie(COOKIE, result.token, httponly=True, samesite="Strict",
                        secure=self.cfg.cookie_secure or self.cfg.tls_cert is not None,
                        path="/", max_age=int(self.cfg.session_hours * 3600))
        return resp

    def _me(self, s: LoginSession) -> dict[str, Any]:
        return {"status": "ok", "user": s.user.name, "name": s.user.display,
                "role": s.user.role, "may_act": s.user.may_act, "csrf": s.csrf,
                "station": self.cfg.station_id, "page_size": self.cfg.page_size}

    async def me(self, request: web.Request) -> web.Response:
        s = self._session(request)
        if s is None:
            return self._error(401, "not logged in")
        return web.json_response(self._me(s))

    async def logout(self, request: web.Request) -> web.Response:
        s = self._session(request)
        if s is None or not self.auth.csrf_ok(s, request.headers.get("X-CSRF-Token")):
            return self._error(403, "missing or wrong CSRF token")
        self.auth.logout(s.token)
        resp = web.json_response({"status": "ok"})
        resp.del_cookie(COOKIE, path="/")
        return resp

    def _checked(self, request: web.Request, what: str) -> LoginSession | web.Response:
        """The request's login session, or the refusal: not logged in (401), another origin or
        a missing or wrong CSRF token (403)."""
        s = self._session(request)
        if s is None:
            return self._error(401, "not logged in")
        if not self._same_origin(request) or not self.auth.csrf_ok(
            s, request.headers.get("X-CSRF-Token")
        ):
            log.warning("%s refused: missing or wrong CSRF token (user %s)", what, s.user.name)
            return self._error(403, "missing or wrong CSRF token")
        return s

    async def action(self, request: web.Request) -> web.Response:
        s = self._checked(request, "action")
        if isinstance(s, web.Response):
            return s
        if not s.user.may_act:
            log.warning("action refused: user %s is a %s", s.user.name, s.user.role)
            return self._error(403, f"a {s.user.role} may not act; ask a clinician")
        try:
            body = await request.json()
            key, command = str(body["bed"]), str(body["command"])
            args = body.get("args") or {}
            if not isinstance(args, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return self._error(400, "send JSON with bed, command and args")
        if command not in ACTIONS:
            return self._error(400, f"unknown action {command!r}")
        bed = self.state.beds.get(key)
        if bed is None:
            return self._error(404, "unknown bed")
        payload = {k: v for k, v in args.items() if k not in ("bed", "by", "transaction")}
        payload.update(bed=bed.bed, by=s.user.display)
        try:
            resp = await self.bridge.command(bed.base, command, payload)
        except CommandFailed as exc:
            log.warning("user %s: %s on %s bed %s failed: %s", s.user.name, command,
                        bed.node_id, bed.bed, exc)
            return self._error(502, str(exc))
        log.info("user %s: %s on %s bed %s → %s", s.user.name, command, bed.node_id, bed.bed,
                 resp.get("status"))
        resp.pop("transaction", None)
        return web.json_response(resp)

    async def report(self, request: web.Request) -> web.StreamResponse:
        s = self._checked(request, "report")
        if isinstance(s, web.Response):
            return s
        try:
            body = await request.json()
            key, session_id = str(body["bed"]), str(body["session_id"])
        except (ValueError, KeyError, TypeError):
            return self._error(400, "send JSON with bed and session_id")
        if not SESSION_ID.fullmatch(session_id):
            return self._error(400, "not a session id")
        bed = self.state.beds.get(key)
        if bed is None:
            return self._error(404, "unknown bed")
        try:
            pdf = await self.bridge.report(
                bed.base, session_id, s.user.display, wait_s=self.cfg.report_timeout_s,
                max_bytes=int(self.cfg.report_max_mb * 1_000_000))
        except CommandFailed as exc:
            log.warning("user %s: report of session %s on %s bed %s failed: %s", s.user.name,
                        session_id, bed.node_id, bed.bed, exc)
            return self._error(413 if isinstance(exc, ResponseTooLarge) else 502, str(exc))
        log.info("user %s: report of session %s on %s bed %s → %d bytes", s.user.name,
                 session_id, bed.node_id, bed.bed, len(pdf))
        return web.Response(body=pdf, content_type="application/pdf", headers={
            "Content-Disposition": f'attachment; filename="kapmonitor-report-{session_id}.pdf"'})

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        s = self._session(request)
        if s is None:
            return self._error(401, "not logged in")
        if not self._same_origin(request):
            return self._error(403, "cross-origin request refused")
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=1 << 20)
        await ws.prepare(request)
        c = Client(ws, s)
        self.clients.add(c)
        try:
            await ws.send_str(json.dumps(self.state.snapshot(time.time()),
                                         separators=(",", ":")))
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                if self.auth.session(s.token) is None:
                    break  # logged out or expired
                await self._from_page(c, msg.data)
        finally:
            self.clients.discard(c)
        return ws

    async def _from_page(self, c: Client, text: str) -> None:
        try:
            msg = json.loads(text)
            kind = msg["type"]
        except (ValueError, KeyError, TypeError):
            return
        if kind == "displayed" and isinstance(msg.get("ids"), list):
            await self.bridge.confirm([str(i) for i in msg["ids"][:5000]])
        elif kind == "view" and isinstance(msg.get("beds"), list):
            keys = {str(k) for k in msg["beds"][:2000]}
            new = keys - c.view
            c.view = keys
            await self._send_beds(c, sorted(new))
            # their past from the nodes' history, sent again once merged
            self.history.start(sorted(new), self._refill)
        elif kind == "audio":
            c.armed = bool(msg.get("armed"))
        elif kind == "timeline":
            key = str(msg.get("bed"))
            await self.history.ensure(key)  # the session's start, from the node's history
            await c.ws.send_str(json.dumps({"type": "timeline", "bed": key,
                                            "entries": self.state.timeline(key)}))

    async def _send_beds(self, c: Client, keys: list[str]) -> None:
        """The beds ``keys`` with their sparklines, to one page."""
        beds = [self.state.bed_json(self.state.beds[k], spark=True)
                for k in keys if k in self.state.beds]
        if beds:
            await c.ws.send_str(json.dumps({"type": "beds", "now": time.time(),
                                            "broker": self.state.broker_connected,
                                            "beds": beds}, separators=(",", ":")))

    async def _refill(self, keys: list[str]) -> None:
        """Beds filled from history: to every page that shows them."""
        for c in list(self.clients):
            mine = [k for k in keys if k in c.view]
            if mine:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self._send_beds(c, mine)

    @web.middleware
    async def _headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        resp: web.StreamResponse = await handler(request)
        if not resp.prepared:
            for k, v in SECURITY_HEADERS.items():
                resp.headers.setdefault(k, v)
        return resp

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers])
        app.router.add_get("/", self.index)
        app.router.add_get("/login", self.login_page)
        app.router.add_post("/api/login", self.login)
        app.router.add_post("/api/logout", self.logout)
        app.router.add_get("/api/me", self.me)
        app.router.add_post("/api/action", self.action)
        app.router.add_post("/api/report", self.report)
        app.router.add_get("/ws", self.websocket)
        app.router.add_static("/static/", STATIC)
        app.router.add_get("/favicon.ico", self.favicon)
        return app

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        ssl_ctx = None
        if self.cfg.tls_cert is not None and self.cfg.tls_key is not None:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(str(self.cfg.tls_cert), str(self.cfg.tls_key))
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.listen_host, self.cfg.listen_port,
                           ssl_context=ssl_ctx)
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.cfg.listen_port
        scheme = "https" if ssl_ctx else "http"
        self.url = f"{scheme}://{self.cfg.listen_host}:{self.port}/"
        self._tasks = [asyncio.create_task(self.bridge.run(), name="station-mqtt"),
                       asyncio.create_task(self._pusher(), name="station-push")]
        log.info("central station %s on %s", self.cfg.station_id, self.url)

    async def stop(self) -> None:
        await self.history.stop()
        await self.bridge.stop()
        for c in list(self.clients):
            with contextlib.suppress(Exception):
                await c.ws.close()
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=8.0)
        if self._runner is not None:
            await self._runner.cleanup()

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

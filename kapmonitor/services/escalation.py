"""Remote escalation: notifications through Apprise for alarms nobody attends to.

What belongs here: deciding *when* an escalation rule fires (an alarm not acknowledged in time,
a device of a session offline too long, a given alarm rule raised), composing the message
(site, node, bed, alarm text and priority, never a patient or session identifier), delivering
it with retries, and the record of every delivery attempt (``escalation-log.jsonl`` in the
state directory). The rules themselves are configuration (:class:`~kapmonitor.config.
EscalationConfig`). The service sees the daemon only through narrow collaborators: alert and
session events and device status are pushed into it (:meth:`EscalationService.on_event`,
:meth:`EscalationService.on_status`), it reads time from a :class:`~kapmonitor.clock.Clock`,
and delivers through a :class:`Notifier`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kapmonitor.clock import Clock
from kapmonitor.config import EscalationConfig, EscalationRule
from kapmonitor.topics import encode

log = logging.getLogger("kapmonitor.escalation")

PRIORITY_RANK = {"low": 0, "medium": 1, "high": 2}
OFFLINE_STATES = frozenset({"disconnected", "stale", "error"})
CHECK_EVERY = 1.0  # seconds of daemon time between rule checks


class NotifyError(Exception):
    """A delivery attempt failed (the text goes into the delivery record)."""


class Notifier(Protocol):
    """Delivers one notification to every configured target, or raises :class:`NotifyError`."""

    async def send(self, title: str, body: str, priority: str) -> None: ...


class DeviceState(Protocol):
    """What the service needs of a device status change."""

    @property
    def device(self) -> str: ...

    @property
    def bed(self) -> str: ...

    @property
    def state(self) -> str: ...


Spawn = Callable[[Coroutine[Any, Any, None], str], object]


class AppriseNotifier:
    """:class:`Notifier` over Apprise (``pip install 'kapmonitor[escalation]'``)."""

    def __init__(self, urls: list[str]) -> None:
        try:
            import apprise
        except ImportError:
            raise RuntimeError(
                "escalation is enabled but Apprise is not installed; "
                "pip install 'kapmonitor[escalation]'"
            ) from None
        self._apprise = apprise
        self._targets = apprise.Apprise()
        for url in urls:
            if not self._targets.add(url):
                raise ValueError(f"escalation: Apprise does not understand the URL {url[:12]}…")

    async def send(self, title: str, body: str, priority: str) -> None:
        kind = self._apprise.NotifyType.FAILURE if priority == "high" else (
            self._apprise.NotifyType.WARNING
        )
        ok = await self._targets.async_notify(body=body, title=title, notify_type=kind)
        if not ok:
            raise NotifyError("at least one Apprise target refused or could not be reached")


@dataclass
class _Pending:
    rule: int
    key: str
    bed: str
    due: float
    title: str
    body: str
    priority: str


class EscalationService:
    """See the module docstring."""

    def __init__(
        self,
        config: EscalationConfig,
        notifier: Notifier,
        clock: Clock,
        record: Path,
        *,
        node: str,
        site: str,
    ) -> None:
        self.cfg = config
        self.notifier = notifier
        self.clock = clock
        self.record_path = record
        self.node = node
        self.site = site
        self._pending: dict[tuple[int, str], _Pending] = {}
        self._fired: set[tuple[int, str]] = set()
        self._sessions: set[str] = set()  # beds with a running session
        self._offline: dict[str, tuple[str, float]] = {}  # device -> (bed, since)
        self._deliveries: set[asyncio.Task[bool]] = set()
        self.attempts = 0
        self.delivered = 0
        self.failed = 0

    # -- inputs --------------------------------------------------------------------------
    def on_event(self, bed: str, event: dict[str, Any]) -> None:
        """An alert or session event as published on ``bed/<bed>/alert``."""
        now = self.clock.now()
        if event.get("type") == "session":
            self._on_session(bed, event.get("event"))
        elif event.get("type") == "alert":
            self._on_alert(bed, event, now)

    def _on_session(self, bed: str, name: Any) -> None:
        """A session started (arm for devices already offline) or ended (resolve them)."""
        if name == "started":
            self._sessions.add(bed)
            for device, (dbed, since) in self._offline.items():
                if dbed == bed:
                    self._device_offline(device, bed, since)
        elif name == "ended":
            self._sessions.discard(bed)
            for device in [p.key for p in self._pending.values()
                           if p.bed == bed and p.key.startswith("device:")]:
                self._resolve(device)

    def _on_alert(self, bed: str, event: dict[str, Any], now: float) -> None:
        """An alert event: acknowledged / cleared resolve; an unacknowledged alarm arms."""
        alert_id = str(event.get("alert_id"))
        name = event.get("event")
        if name == "acknowledged":
            self._resolve(f"alert:{alert_id}", only="unacknowledged", refire=False)
        elif name == "cleared":
            self._resolve(f"alert:{alert_id}")
        elif name in ("raised", "escalated", "reactivated", "latched") \
                and not event.get("acknowledged"):
            self._arm_alert(bed, alert_id, event, now)

    def _arm_alert(self, bed: str, alert_id: str, event: dict[str, Any], now: float) -> None:
        """Arm every applicable ``unacknowledged`` / ``alert`` rule for one alarm."""
        priority = str(event.get("priority", "low"))
        for i, rule in enumerate(self.cfg.rules):
            if not self._applies(rule, bed):
                continue
            what = self._alert_rule_matches(rule, priority, event)
            if what is None:
                continue
            text = str(event.get("text") or event.get("rule") or "alarm")
            self._arm(_Pending(
                i, f"alert:{alert_id}", bed, now + rule.after,
                title=f"kapmonitor {self.site}/{self.node} bed {bed}: {what}",
                body=f"Bed {bed}: {text} (priority {priority}). Rule: {rule.when}.",
                priority=priority,
            ))

    @staticmethod
    def _alert_rule_matches(rule: EscalationRule, priority: str,
                            event: dict[str, Any]) -> str | None:
        """What the rule says about this alarm, or None if it does not fire for it."""
        if rule.when == "unacknowledged":
            if PRIORITY_RANK.get(priority, 0) < PRIORITY_RANK[rule.priority]:
                return None
            return f"{priority} alarm not acknowledged for {rule.after:g} s"
        if rule.when == "alert":
            if event.get("rule") != rule.rule:
                return None
            return f"alarm {rule.rule}"
        return None

    def on_status(self, status: DeviceState) -> None:
        """A device status change (``device/<id>/status``)."""
        device, bed, state = status.device, status.bed, status.state
        if state in OFFLINE_STATES:
            since = self._offline.get(device, (bed, self.clock.now()))[1]
            self._offline[device] = (bed, since)
            self._device_offline(device, bed, since)
        else:
            self._offline.pop(device, None)
            self._resolve(f"device:{device}")

    def _device_offline(self, device: str, bed: str, since: float) -> None:
        for i, rule in enumerate(self.cfg.rules):
            if rule.when != "device_offline" or not self._applies(rule, bed):
                continue
            if bed not in self._sessions:
                continue
            self._arm(_Pending(
                i, f"device:{device}", bed, since + rule.after,
                title=f"kapmonitor {self.site}/{self.node} bed {bed}: device offline",
                body=f"Bed {bed}: device {device} has been offline for {rule.after:g} s "
                     "during a session.",
                priority="high",
            ))

    @staticmethod
    def _applies(rule: EscalationRule, bed: str) -> bool:
        return rule.beds is None or bed in rule.beds

    def _arm(self, p: _Pending) -> None:
        ident = (p.rule, p.key)
        if ident in self._fired or ident in self._pending:
            return
        self._pending[ident] = p

    def _resolve(self, key: str, *, only: str | None = None, refire: bool = True) -> None:
        """The condition behind ``key`` ended: drop what is pending (of rule kind ``only``,
        when given); with ``refire`` it may fire again when it comes back."""
        for ident in [i for i in self._pending if i[1] == key]:
            if only is None or self.cfg.rules[ident[0]].when == only:
                del self._pending[ident]
        if refire:
            self._fired = {i for i in self._fired if i[1] != key}

    # -- the loop ------------------------------------------------------------------------
    def check(self) -> list[_Pending]:
        """Fire what is due (one delivery task each); return what fired."""
        now = self.clock.now()
        due = [p for p in self._pending.values() if p.due <= now]
        for p in due:
            ident = (p.rule, p.key)
            del self._pending[ident]
            self._fired.add(ident)
            log.warning("escalating: %s", p.title)
            task = asyncio.create_task(self.deliver(p), name=f"escalation:{p.key}")
            self._deliveries.add(task)  # keep a reference until it is done
            task.add_done_callback(self._deliveries.discard)
        return due

    async def wait_deliveries(self) -> None:
        """Until every delivery started so far has ended (delivered or given up)."""
        while self._deliveries:
            await asyncio.wait(set(self._deliveries))

    async def run(self) -> None:
        while True:
            self.check()
            await self.clock.sleep(CHECK_EVERY)

    async def deliver(self, p: _Pending) -> bool:
        """Up to 1 + ``retries`` attempts with doubling delays; every attempt is recorded."""
        delay = self.cfg.retry_delay
        for attempt in range(1, self.cfg.retries + 2):
            self.attempts += 1
            error: str | None = None
            try:
                await self.notifier.send(p.title, p.body, p.priority)
            except NotifyError as exc:
                error = str(exc)
            except Exception as exc:  # a notifier bug must not end the daemon; it is recorded
                log.exception("escalation notifier failed")
                error = f"{type(exc).__name__}: {exc}"
            self._record(p, attempt, error)
            if error is None:
                self.delivered += 1
                return True
            if attempt <= self.cfg.retries:
                await self.clock.sleep(delay)
                delay *= 2
        self.failed += 1
        log.critical("escalation could not be delivered after %d attempts: %s",
                     self.cfg.retries + 1, p.title)
        return False

    def _record(self, p: _Pending, attempt: int, error: str | None) -> None:
        line = {
            "t": self.clock.now(),
            "rule": self.cfg.rules[p.rule].when,
            "key": p.key,
            "bed": p.bed,
            "attempt": attempt,
            "ok": error is None,
            "error": error,
            "title": p.title,
        }
        try:
            with self.record_path.open("a", encoding="utf-8") as fh:
                fh.write(encode(line).decode() + "\n")
        except OSError as exc:
            log.error("cannot write the escalation record %s: %s", self.record_path, exc)


def attach(
    config: EscalationConfig,
    clock: Clock,
    state_dir: Path,
    *,
    node: str,
    site: str,
    spawn: Spawn,
    notifier: Notifier | None = None,
) -> EscalationService:
    """The service with an Apprise notifier for the configured URLs, its loop spawned."""
    service = EscalationService(
        config,
        notifier or AppriseNotifier(config.all_urls()),
        clock,
        state_dir / "escalation-log.jsonl",
        node=node,
        site=site,
    )
    spawn(service.run(), "escalation")
    return service


__all__ = ["AppriseNotifier", "EscalationService", "Notifier", "NotifyError", "attach"]

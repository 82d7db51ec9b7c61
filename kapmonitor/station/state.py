"""The station's model: everything it shows, rebuilt from the nodes' topics (pure, no I/O).

What belongs here: applying a parsed node message to the model, the technical alarms of the
alarm path (broker lost, node offline or silent, bed data stale), the order of the beds and
the JSON the page receives. Times: node payloads carry the node's wall clock (``ts``, ``t``);
"silence" is measured on the station's own monotonic clock, passed in by the caller.

Nothing here survives a restart and nothing needs to: the retained topics (``bridge/state``,
``device/+/status``, ``bed/+/vitals|alarms|session``) give back the whole picture; the
timeline and the sparklines of a bed are filled from its node's history (the
``history/recent`` answer, :meth:`StationState.backfill`) when a page first shows the bed.
Patient identifiers in the session (``patient_id``) are dropped on arrival: the station shows
beds, never patients.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from kapmonitor.station.topics import NodeTopic

PRIORITY_RANK = {"high": 3, "medium": 2, "low": 1, "info": 0}
SPARK_METRICS = ("spo2", "hr", "resp_rate", "nibp_sys")
SPARK_BUCKET_S = 10.0
SPARK_WINDOW_S = 1800.0
TIMELINE_MAX = 300
CLOCK_SKEW_S = 5.0
BP_SAME_S = 120.0  # a history BP this close to a live one with its values is the same one
ALARM_FIELDS = (
    "alert_id", "rule", "priority", "kind", "metric", "value", "text", "onset_t", "state",
    "acknowledged", "acked_by", "audio_paused_until", "escalation_level",
)
ALARM_EVENTS_KEEP = frozenset({
    "raised", "reactivated", "escalated", "acknowledged", "latched", "audio_paused",
    "audio_pause_expired",
})


def _alarm_from(raw: dict[str, Any]) -> dict[str, Any]:
    a = {k: raw.get(k) for k in ALARM_FIELDS}
    if a["acked_by"] is None and raw.get("event") == "acknowledged":
        a["acked_by"] = raw.get("by")
    a["audible"] = bool(
        raw.get("audible", raw.get("kind") != "advisory" and raw.get("priority") != "info"
                and not raw.get("acknowledged") and raw.get("audio_paused_until") is None)
    )
    return a


@dataclass
class Node:
    base: str
    node_id: str
    state: str = "unknown"  # online | offline | unknown (no bridge/state seen)
    reason: str | None = None
    site: str | None = None
    last_msg: float = 0.0  # station monotonic time of the last message
    display: dict[str, Any] | None = None
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    # node clock − station clock (s), applied when it exceeds CLOCK_SKEW_S: a node whose clock
    # is off (or the accelerated demo clock) still gets the right ages on the page.
    skew: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"base": self.base, "node": self.node_id, "state": self.state,
                "reason": self.reason, "site": self.site, "display": self.display}


@dataclass
class Bed:
    key: str
    base: str
    node_id: str
    bed: str
    vitals: dict[str, dict[str, Any]] = field(default_factory=dict)
    spark: dict[str, deque[list[float]]] = field(default_factory=dict)
    alarms: dict[str, dict[str, Any]] = field(default_factory=dict)
    session: dict[str, Any] = field(default_factory=dict)
    timeline: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=TIMELINE_MAX))
    last_nibp_ts: float | None = None
    devices: set[str] = field(default_factory=set)  # ids of the node's devices on this bed

    def highest(self) -> int:
        return max((PRIORITY_RANK.get(str(a.get("priority")), 0) for a in self.alarms.values()
                    if a.get("kind") != "advisory"), default=-1)


def _hr(vitals: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    return vitals.get("heart_rate") or vitals.get("pulse_rate")


def _bp_entries(readings: dict[str, Any]) -> list[dict[str, Any]]:
    """Timeline "bp" entries from history rows: each systolic with the diastolic of the same
    device received with it."""
    dia = {(row[2], round(row[0], 1)): row[1] for row in readings.get("nibp_dia") or ()
           if isinstance(row, list) and len(row) >= 3 and isinstance(row[0], int | float)}
    out = []
    for row in readings.get("nibp_sys") or ():
        if not (isinstance(row, list) and len(row) >= 3 and isinstance(row[0], int | float)
                and isinstance(row[1], int | float)):
            continue
        d = dia.get((row[2], round(row[0], 1)))
        text = f"BP {row[1]:.0f}/{d:.0f}" if isinstance(d, int | float) else f"BP {row[1]:.0f}"
        out.append({"t": float(row[0]), "kind": "bp", "text": text})
    return out


class StationState:
    def __init__(self, *, stale_after_s: float = 60.0, node_stale_s: float = 30.0) -> None:
        self.stale_after_s = stale_after_s
        self.node_stale_s = node_stale_s
        self.nodes: dict[str, Node] = {}
        self.beds: dict[str, Bed] = {}
        self.broker_connected = False
        self.broker_since: float | None = None  # wall time of the last change
        self.tech: dict[str, dict[str, Any]] = {}
        self.dirty: set[str] = set()  # beds with changes that can wait for the next second
        self.urgent: set[str] = set()  # beds whose alarms changed: flush at once
        self.nodes_dirty = False
        self.tech_dirty = False
        self.alert_home: dict[str, tuple[str, str]] = {}  # alert_id → (node base, bed key)
        # alert_id → station wall time its first message was applied, until the next update
        # carries it to the pages (``rx``): the latency trace of bench/station.py.
        self.alert_rx: dict[str, float] = {}
        self._wall: float = 0.0  # wall time of the message being applied

    # -- input -----------------------------------------------------------------------------
    def node(self, base: str) -> Node:
        n = self.nodes.get(base)
        if n is None:
            n = self.nodes[base] = Node(base, base.rsplit("/", 1)[-1])
            self.nodes_dirty = True
        return n

    def bed(self, base: str, bed_id: str) -> Bed:
        key = f"{base}#{bed_id}"
        b = self.beds.get(key)
        if b is None:
            b = self.beds[key] = Bed(key, base, self.node(base).node_id, bed_id)
            self.urgent.add(key)
        return b

    def apply(self, t: NodeTopic, payload: Any, mono: float, retained: bool = False,
              wall: float | None = None) -> None:
        """One message from a node (payload already decoded from JSON)."""
        node = self.node(t.base)
        node.last_msg = mono
        if wall is not None:
            self._wall = wall
        if not isinstance(payload, dict):
            return
        if wall is not None and not retained and t.leaf == "alarms" and isinstance(
            payload.get("t"), int | float
        ):
            # The engine's last tick (≤ 1 s old on the node's clock) against our clock.
            skew = float(payload["t"]) - wall
            node.skew = skew if abs(skew) > CLOCK_SKEW_S else 0.0
        if t.kind == "bridge_state":
            node.state = str(payload.get("state", "unknown"))
            node.reason = payload.get("reason")
            node.node_id = str(payload.get("node") or node.node_id)
            node.site = payload.get("site")
            self.nodes_dirty = True
        elif t.kind == "display_state":
            node.display = payload
            self.nodes_dirty = True
        elif t.kind == "device_status" and t.ident is not None:
            prev = node.devices.get(t.ident)
            node.devices[t.ident] = payload
            old_bed = prev.get("bed") if prev else None
            if isinstance(old_bed, str) and old_bed != payload.get("bed"):
                ob = self.bed(t.base, old_bed)
                ob.devices.discard(t.ident)
                self.dirty.add(ob.key)
            bed_id = payload.get("bed")
            if isinstance(bed_id, str):
                b = self.bed(t.base, bed_id)
                b.devices.add(t.ident)
                self.dirty.add(b.key)
        elif t.kind == "bed" and t.ident is not None:
            b = self.bed(t.base, t.ident)
            if t.leaf == "vitals":
                self._vitals(b, payload)
            elif t.leaf == "alarms":
                self._alarms(b, payload)
            elif t.leaf == "session":
                self._session(b, payload)
            elif t.leaf == "alert":
                self._event(b, payload)

    def _vitals(self, b: Bed, payload: dict[str, Any]) -> None:
        metrics = payload.get("metrics")
        if not isinstance(metrics, dict):
            return
        b.vitals = metrics
        spark = b.spark
        # (the hot path: 1,000 beds' vitals a second; kept to plain lookups)
        for name in SPARK_METRICS:
            v = _hr(metrics) if name == "hr" else metrics.get(name)
            if not v:
                continue
            value = v.get("value")
            if not isinstance(value, (int, float)):  # noqa: UP038 - the faster form
                continue
            bucket = float(v.get("ts") or 0.0) // SPARK_BUCKET_S * SPARK_BUCKET_S
            pts = spark.get(name)
            if pts is None:
                pts = spark[name] = deque()
            if pts and pts[-1][0] == bucket:
                pts[-1][1] = float(value)
            elif not pts or bucket > pts[-1][0]:
                pts.append([bucket, float(value)])
                cutoff = bucket - SPARK_WINDOW_S
                while pts[0][0] < cutoff:
                    pts.popleft()
        sys_ = metrics.get("nibp_sys")
        if sys_ and sys_.get("ts") != b.last_nibp_ts and sys_.get("value") is not None:
            if b.last_nibp_ts is not None:
                dia = (metrics.get("nibp_dia") or {}).get("value")
                b.timeline.append({"t": sys_.get("ts"), "kind": "bp",
                                   "text": f"BP {sys_['value']:.0f}/{dia:.0f}" if dia
                                   else f"BP {sys_['value']:.0f}"})
            b.last_nibp_ts = sys_.get("ts")
        self.dirty.add(b.key)

    def _alarms(self, b: Bed, payload: dict[str, Any]) -> None:
        alarms = payload.get("alarms")
        if not isinstance(alarms, list):
            return
        new = {}
        for raw in alarms:
            if isinstance(raw, dict) and raw.get("alert_id"):
                a = _alarm_from(raw)
                new[str(a["alert_id"])] = a
        if new != b.alarms:
            for aid in b.alarms.keys() - new.keys():
                self.alert_home.pop(aid, None)
            b.alarms = new
            for aid in new:
                if aid not in self.alert_home:
                    self._seen(aid)
                self.alert_home[aid] = (b.base, b.key)
            self.urgent.add(b.key)

    def _seen(self, aid: str) -> None:
        if self._wall and len(self.alert_rx) < 10_000:
            self.alert_rx[aid] = self._wall

    def _session(self, b: Bed, payload: dict[str, Any]) -> None:
        s = {k: v for k, v in payload.items() if k != "patient_id"}
        if s != b.session:
            b.session = s
            self.dirty.add(b.key)

    @staticmethod
    def _entry(ev: dict[str, Any]) -> dict[str, Any] | None:
        """The timeline entry of an alert or session event (None: neither)."""
        name = str(ev.get("event"))
        if ev.get("type") == "alert":
            return {"t": ev.get("t"), "kind": "alert", "event": name,
                    "priority": ev.get("priority"), "text": ev.get("text"),
                    "alert_id": ev.get("alert_id"), "by": ev.get("by")}
        if ev.get("type") == "session":
            detail = {k: v for k, v in ev.items()
                      if k in ("dose_mg", "route", "item", "symptom", "symptoms", "profile")}
            return {"t": ev.get("t"), "kind": "session", "event": name,
                    "phase": ev.get("phase"), "by": ev.get("by"), **detail}
        return None

    def _event(self, b: Bed, ev: dict[str, Any]) -> None:
        name = str(ev.get("event"))
        entry = self._entry(ev)
        if entry is not None:
            b.timeline.append(entry)
        if ev.get("type") == "alert":
            aid = str(ev.get("alert_id"))
            if not ev.get("historical"):
                if name == "cleared":
                    b.alarms.pop(aid, None)
                    self.alert_home.pop(aid, None)
                elif name in ALARM_EVENTS_KEEP:
                    prev = b.alarms.get(aid, {})
                    a = _alarm_from(ev)
                    if prev.get("acked_by") and not a.get("acked_by"):
                        a["acked_by"] = prev["acked_by"]
                    if aid not in self.alert_home:
                        self._seen(aid)
                    b.alarms[aid] = a
                    self.alert_home[aid] = (b.base, b.key)
            self.urgent.add(b.key)
        elif entry is not None:
            self.dirty.add(b.key)

    # -- history from the node ---------------------------------------------------------------
    def backfill(self, key: str, recent: dict[str, Any]) -> bool:
        """Merge a node's ``history/recent`` answer (readings per metric as ``[received,
        value, device, flags]`` rows, alert and session events) into the bed's sparklines and
        timeline: what happened before this station saw it. Live data wins where both have
        a point; an entry already in the timeline is not added twice. False: unknown bed."""
        b = self.beds.get(key)
        if b is None:
            return False
        readings = recent.get("readings")
        readings = readings if isinstance(readings, dict) else {}
        for name in SPARK_METRICS:
            # heart rate (ECG) where there is one, else the pulse rate, as live (_hr)
            sources = ("pulse_rate", "heart_rate") if name == "hr" else (name,)
            points: dict[float, float] = {}
            for src in sources:
                for row in readings.get(src) or ():
                    if (isinstance(row, list) and len(row) >= 2
                            and isinstance(row[0], int | float)
                            and isinstance(row[1], int | float)):
                        points[float(row[0]) // SPARK_BUCKET_S * SPARK_BUCKET_S] = float(
                            row[1])
            live = b.spark.get(name) or deque()
            first = live[0][0] if live else float("inf")
            merged = [[t, v] for t, v in sorted(points.items()) if t < first] + list(live)
            if merged:
                last = merged[-1][0]
                b.spark[name] = deque(p for p in merged if p[0] >= last - SPARK_WINDOW_S)
        entries = list(b.timeline)
        seen = {(e.get("t"), e.get("kind"), e.get("event"), e.get("text")) for e in entries}
        events = recent.get("events")
        for ev in events if isinstance(events, list) else ():
            entry = self._entry(ev) if isinstance(ev, dict) else None
            if entry is not None and (
                    entry["t"], entry["kind"], entry["event"], entry.get("text")) not in seen:
                entries.append(entry)
        live_bps = [(e["t"], e.get("text")) for e in entries if e.get("kind") == "bp"
                    and isinstance(e.get("t"), int | float)]
        for entry in _bp_entries(readings):
            if not any(text == entry["text"] and abs(entry["t"] - t) <= BP_SAME_S
                       for t, text in live_bps):
                entries.append(entry)
        entries.sort(key=lambda e: e.get("t") or 0.0)
        b.timeline = deque(entries[-TIMELINE_MAX:], maxlen=TIMELINE_MAX)
        self.dirty.add(key)
        return True

    # -- technical alarms of the alarm path -------------------------------------------------
    def set_broker(self, connected: bool, wall: float) -> None:
        if connected != self.broker_connected:
            self.broker_connected = connected
            self.broker_since = wall

    def evaluate(self, mono: float, wall: float) -> None:
        """Recompute the station's technical alarms (call about once a second)."""
        tech: dict[str, dict[str, Any]] = {}

        def add(ident: str, priority: str, text: str, **extra: Any) -> None:
            prev = self.tech.get(ident)
            since = prev["since"] if prev and prev["priority"] == priority else wall
            tech[ident] = {"id": ident, "priority": priority, "kind": "technical",
                           "text": text, "since": since, **extra}

        if not self.broker_connected:
            add("station:broker", "high",
                "Station lost its broker connection: no bed is being watched")
        in_session = {b.base for b in self.beds.values() if b.session.get("active")}
        for n in self.nodes.values():
            active = n.base in in_session
            silent = mono - n.last_msg
            if n.state == "offline":
                if n.reason == "shutdown":
                    add(f"node:{n.base}", "medium" if active else "low",
                        f"Node {n.node_id} offline (stopped)", node=n.base)
                else:
                    add(f"node:{n.base}", "high",
                        f"Node {n.node_id} offline ({n.reason or 'connection lost'})",
                        node=n.base)
            elif self.broker_connected and n.last_msg and silent > self.node_stale_s:
                add(f"node:{n.base}", "high",
                    f"Node {n.node_id} silent (nothing for over {self.node_stale_s:g} s)",
                    node=n.base)
            if n.display and n.display.get("state") == "no_alarm_display":
                add(f"display:{n.base}", "high",
                    f"Node {n.node_id}: no alarm display ({n.display.get('reason')})",
                    node=n.base)
        for b in self.beds.values():
            if not b.session.get("active") or f"node:{b.base}" in tech:
                continue
            newest = max((float(v.get("ts") or 0.0) for k, v in b.vitals.items()
                          if k in ("spo2", "heart_rate", "pulse_rate")), default=0.0)
            age = wall + (self.nodes[b.base].skew if b.base in self.nodes else 0.0) - newest
            if age > self.stale_after_s:
                add(f"stale:{b.key}", "medium",
                    f"Bed {b.bed} ({b.node_id}): no current SpO2/HR "
                    + (f"(none for over {self.stale_after_s:g} s)" if newest
                       else "in this session"),
                    bed=b.key, node=b.base)
        if tech != self.tech:
            self.tech = tech
            self.tech_dirty = True

    # -- output ----------------------------------------------------------------------------
    def bed_json(self, b: Bed, *, spark: bool) -> dict[str, Any]:
        node = self.nodes.get(b.base)
        all_devices = node.devices if node else {}
        devices = [
            {"device": d, "state": st.get("state"), "battery": st.get("battery"),
             "last_seen": st.get("last_seen")}
            for d in sorted(b.devices) if (st := all_devices.get(d)) is not None
        ]
        out: dict[str, Any] = {
            "key": b.key, "node": b.node_id, "base": b.base, "bed": b.bed,
            "skew": node.skew if node else 0.0,
            "vitals": b.vitals, "alarms": sorted(
                b.alarms.values(),
                key=lambda a: (-PRIORITY_RANK.get(str(a.get("priority")), 0),
                               a.get("onset_t") or 0)),
            "session": b.session, "devices": devices,
        }
        if spark:
            out["spark"] = {m: list(p) for m, p in b.spark.items()}
        else:
            out["spark_last"] = {m: p[-1] for m, p in b.spark.items() if p}
        return out

    def snapshot(self, wall: float) -> dict[str, Any]:
        return {
            "type": "snapshot", "now": wall, "broker": self.broker_connected,
            "stale_after_s": self.stale_after_s,
            "nodes": [n.to_json() for n in self.nodes.values()],
            "tech": list(self.tech.values()),
            # Sparklines only for the beds a page shows (it asks with a "view" message).
            "beds": [self.bed_json(b, spark=False) for b in self.beds.values()],
        }

    def take_update(self, wall: float, *, include_slow: bool,
                    wanted: set[str] | None = None) -> dict[str, Any] | None:
        """The changes since the last call: ``beds`` (alarm changes, for every page) always,
        ``slow`` (vitals, sessions, devices: a page needs only the beds it shows) if
        ``include_slow``, only for the ``wanted`` beds if given (the beds some page shows: a
        page that scrolls to another bed asks for it whole)."""
        keys = set(self.urgent)
        self.urgent.clear()
        slow: set[str] = set()
        if include_slow:
            slow = self.dirty - keys
            if wanted is not None:
                slow &= wanted
            self.dirty.clear()
        else:
            self.dirty -= keys
        if not keys and not slow and not self.nodes_dirty and not self.tech_dirty:
            return None
        out: dict[str, Any] = {"type": "update", "now": wall, "broker": self.broker_connected,
                               "beds": [self.bed_json(self.beds[k], spark=False)
                                        for k in keys if k in self.beds],
                               "slow": [self.bed_json(self.beds[k], spark=False)
                                        for k in slow if k in self.beds]}
        if self.alert_rx:
            out["rx"] = self.alert_rx
            self.alert_rx = {}
        if self.nodes_dirty:
            out["nodes"] = [n.to_json() for n in self.nodes.values()]
            self.nodes_dirty = False
        if self.tech_dirty:
            out["tech"] = list(self.tech.values())
            self.tech_dirty = False
        return out

    def timeline(self, key: str) -> list[dict[str, Any]]:
        b = self.beds.get(key)
        if b is None:
            return []
        started = b.session.get("started_at") if b.session.get("active") else None
        return [e for e in b.timeline if started is None or (e.get("t") or 0) >= started - 1]

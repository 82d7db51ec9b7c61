// The central station page: one tile per bed (alarming beds first), an alarm list across all
// beds, technical alarms of the alarm path, sounds, and the clinicians' actions.
// Plain ES module; state arrives over the WebSocket /ws (snapshot, then updates).
import { Annunciator } from "./audio.js";

const RANK = { high: 3, medium: 2, low: 1, info: 0 };
const COLLATOR = new Intl.Collator(undefined, { numeric: true }); // one, not one per comparison
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const st = {
  me: null, beds: new Map(), nodes: [], tech: [], broker: false, staleAfter: 60,
  offset: 0, page: 0, big: false, shown: new Set(), ws: null, timelineFor: null, view: "", alarmCount: 0,
};
const audio = new Annunciator();
window.__kapAudio = audio; // for the browser tests and the console
const stats = (window.__kapStats = { messages: 0, bytes: 0, lagMs: 0, renders: 0, renderMs: 0, alarmMs: 0 });
const now = () => Date.now() / 1000 + st.offset;
// The latency trace of new alerts (bench/station.py reads it): station receive time (rx),
// station send time (sent), page receive time (recv), in the alarm list (dom); ms epoch.
const trace = (window.__kapTrace = {});
let traceCount = 0;

// Ages of node timestamps are taken on the node's clock (sk: bed.skew, node − station, sent by
// the station when a node's clock is off by more than a few seconds, e.g. the demo's).
function age(t, sk = 0) {
  if (t == null) return "";
  const s = Math.max(0, now() + sk - t);
  if (s < 90) return `${s.toFixed(0)} s`;
  if (s < 5400) return `${(s / 60).toFixed(0)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// -- derived ---------------------------------------------------------------------------------
function techFor(bed) {
  return st.tech.filter((t) => t.bed === bed.key || (t.node === bed.base && !t.bed));
}
function bedRank(bed) {
  const ranks = bed.alarms.filter((a) => a.kind !== "advisory").map((a) => RANK[a.priority] ?? 0);
  for (const t of techFor(bed)) ranks.push(RANK[t.priority] ?? 0);
  return ranks.length ? Math.max(...ranks) : -1;
}
function bedOrder(a, b) {
  const r = b._rank - a._rank;
  if (r) return r;
  const ua = a.alarms.some((x) => x.audible) ? 1 : 0;
  const ub = b.alarms.some((x) => x.audible) ? 1 : 0;
  if (ua !== ub) return ub - ua;
  return a._order - b._order;
}
// Each bed's place in name order (node/bed, numeric), computed again only when beds come or go:
// the once-a-second sort then compares integers, not strings through the collator.
let nameOrderSize = -1;
function nameOrder(beds) {
  if (beds.length === nameOrderSize && beds.every((b) => b._order !== undefined)) return;
  const names = beds.map((b) => [`${b.node}/${b.bed}`, b]);
  names.sort((x, y) => COLLATOR.compare(x[0], y[0]));
  names.forEach(([, b], i) => { b._order = i; });
  nameOrderSize = beds.length;
}
function flashClass(prio, acknowledged) {
  if (acknowledged) return `prio-${prio}`;
  return prio === "high" || prio === "medium" ? `prio-${prio} flash-${prio}` : `prio-${prio}`;
}
function highestAudible() {
  let best = -1;
  for (const bed of st.beds.values())
    for (const a of bed.alarms) if (a.audible) best = Math.max(best, RANK[a.priority] ?? 0);
  for (const t of st.tech) best = Math.max(best, RANK[t.priority] ?? 0);
  return ["info", "low", "medium", "high"][best] ?? null;
}

// -- DOM updates in place ----------------------------------------------------------------------
// Nothing is rebuilt wholesale: an element is replaced only when its markup changes, ages and
// values are set as text, and the style, layout and paint work per update stays proportional
// to what changed (a rebuilt grid cost the page 50-900 ms tasks once a second).
function setText(el, s) { if (el.textContent !== s) el.textContent = s; }
function setClass(el, c) { if (el.className !== c) el.className = c; }
function setHTML(rec, name, el, html) {
  if (rec[name] !== html) { rec[name] = html; el.innerHTML = html; }
}
function fromHTML(html) {
  const t = document.createElement("template");
  t.innerHTML = html;
  return t.content.firstElementChild;
}
// A keyed list: items [{id, html, age, paused}] in this order in `list` (whose children are all
// managed here); recs: id → {el, html, age, paused}.
function syncList(list, recs, items) {
  const want = new Set(items.map((i) => i.id));
  for (const [id, r] of recs) if (!want.has(id)) { r.el.remove(); recs.delete(id); }
  let cursor = list.firstElementChild;
  for (const it of items) {
    let r = recs.get(it.id);
    if (r && r.html !== it.html) {
      if (r.el === cursor) cursor = cursor.nextElementSibling;
      r.el.remove();
      r = null;
    }
    if (!r) {
      const el = fromHTML(it.html);
      r = { el, html: it.html, age: el.querySelector(".age"), paused: el.querySelector(".paused") };
      recs.set(it.id, r);
    }
    if (r.age) setText(r.age, it.age || "");
    if (r.paused) { setText(r.paused, it.paused || ""); r.paused.hidden = !it.paused; }
    if (r.el === cursor) cursor = cursor.nextElementSibling;
    else list.insertBefore(r.el, cursor);
  }
}

// Flashing: two classes on <body> switched on the wall clock, `flash-h` every 250 ms (high,
// 2 Hz) and `flash-m` every 800 ms (medium, 0.625 Hz); the stylesheet dims .flash-high and
// .flash-medium elements while they are on. Every flashing element is in step, and between two
// switches nothing needs redrawing: no animation runs (a CSS animation per element keeps the
// renderer producing frames, and with a hundred of them it competed with the alarm updates).
function flashTick() {
  const t = Date.now();
  document.body.classList.toggle("flash-h", Math.floor(t / 250) % 2 === 1);
  document.body.classList.toggle("flash-m", Math.floor(t / 800) % 2 === 1);
  setTimeout(flashTick, Math.min(250 - (t % 250), 800 - (t % 800)) + 1);
}

// -- rendering -------------------------------------------------------------------------------
const VITALS = [["spo2", "SpO2"], ["hr", "HR"], ["nibp", "NIBP"], ["resp_rate", "RR"], ["news2", "NEWS2"]];
const UNITS = { spo2: "%", hr: "/min", resp_rate: "/min" };

// What one vital slot shows: {none} or {stale, title, val, unit, age, spark: [key, svg]}.
function vitalData(bed, name, sk) {
  const t = now() + sk;
  if (name === "nibp") {
    const s = bed.vitals.nibp_sys, d = bed.vitals.nibp_dia, m = bed.vitals.nibp_mean;
    if (!s) return { none: true };
    return {
      stale: t - s.ts > 20 * 60, title: "",
      val: `${s.value == null ? "?" : s.value.toFixed(0)}/${d && d.value != null ? d.value.toFixed(0) : "?"}`,
      unit: m && m.value != null ? `(${m.value.toFixed(0)})` : "", age: age(s.ts, sk),
      spark: spark(bed, "nibp_sys", sk),
    };
  }
  if (name === "news2") {
    const n2 = (bed.session || {}).news2;
    if (!n2 || n2.total == null) return { hidden: true };
    return { stale: false, title: "", val: String(n2.total), unit: "", age: age(n2.t, sk), spark: null };
  }
  const v = name === "hr" ? (bed.vitals.heart_rate || bed.vitals.pulse_rate) : bed.vitals[name];
  if (!v) return { none: true };
  return {
    stale: t - v.ts > st.staleAfter, title: (v.quality || []).join(", "),
    val: v.value == null ? "?" : Number(v.value).toFixed(0), unit: UNITS[name] || v.unit || "",
    age: age(v.ts, sk), spark: spark(bed, name, sk),
  };
}
function updateVital(slot, name, d) {
  slot.el.hidden = !!d.hidden;
  if (d.hidden) return;
  const base = name === "nibp" ? "v nibp" : name === "news2" ? "v news2" : "v";
  setClass(slot.el, d.none ? `${base} none` : d.stale ? `${base} stale` : base);
  if (d.none) {
    setText(slot.val, "–"); setText(slot.unit, ""); setText(slot.age, "");
    if (slot.spKey) { slot.spKey = ""; slot.sp.textContent = ""; slot.line = null; }
    if (slot.el.title) slot.el.title = "";
    return;
  }
  if (slot.el.title !== d.title) slot.el.title = d.title;
  setText(slot.val, d.val); setText(slot.unit, d.unit); setText(slot.age, d.age);
  const [key, points] = d.spark || ["", ""];
  if (slot.spKey === key) return;
  slot.spKey = key;
  if (!points) { slot.sp.textContent = ""; slot.line = null; return; }
  if (!slot.line) {
    slot.sp.innerHTML = `<svg class="spark" viewBox="0 0 100 24" preserveAspectRatio="none"><polyline/></svg>`;
    slot.line = slot.sp.querySelector("polyline");
  }
  slot.line.setAttribute("points", points);
}
// A sparkline's points: [cache key, "x,y …"]; recomputed when a 10-s bucket starts (a new point,
// the window moves), so a tile's sparklines change every 10 s, not at every reading.
function spark(bed, name, sk) {
  const pts = (bed.spark || {})[name];
  if (!pts || pts.length < 2) return null;
  const t1 = now() + sk, t0 = t1 - 1800;
  const last = pts[pts.length - 1];
  const key = `${pts.length}:${last[0]}:${Math.floor(t1 / 10)}`;
  const cache = (bed._sparkCache = bed._sparkCache || {});
  if (cache[name] && cache[name][0] === key) return cache[name];
  let lo = Infinity, hi = -Infinity;
  for (const p of pts) { if (p[1] < lo) lo = p[1]; if (p[1] > hi) hi = p[1]; }
  const span = hi - lo || 1;
  const d = pts.filter((p) => p[0] >= t0)
    .map((p) => `${(((p[0] - t0) / 1800) * 100).toFixed(1)},${(22 - ((p[1] - lo) / span) * 20).toFixed(1)}`)
    .join(" ");
  cache[name] = [key, d];
  return cache[name];
}
function bpDue(bed, sk) {
  const items = (bed.session.bp_checklist || []).filter((i) => i.done_at == null);
  if (!items.length) return "";
  items.sort((a, b) => a.due_at - b.due_at);
  const i = items[0], t = now() + sk;
  if (i.overdue_at != null && t >= i.overdue_at)
    return `<div class="bp overdue">BP OVERDUE ${age(i.overdue_at, sk)} (${esc(i.name)})</div>`;
  if (t >= i.due_at) return `<div class="bp due">BP due now (${esc(i.name)})</div>`;
  return `<div class="bp">BP due in ${Math.ceil((i.due_at - t) / 60)} min (${esc(i.name)})</div>`;
}
function alarmItem(a, bed, withBed) {
  const sk = bed.skew || 0;
  const t = now() + sk;
  const paused = a.audio_paused_until && a.audio_paused_until > t
    ? `audio paused ${Math.ceil(a.audio_paused_until - t)} s` : "";
  const ack = a.acknowledged ? ` <span class="acked">ack${a.acked_by ? ` by ${esc(a.acked_by)}` : ""}</span>` : "";
  const where = withBed ? `<b>${esc(bed.bed)}</b> <span class="node">${esc(bed.node)}</span> ` : "";
  const btn = st.me && st.me.may_act && !a.acknowledged
    ? ` <button class="act" data-act="ack" data-bed="${esc(bed.key)}" data-alert="${esc(a.alert_id)}">Ack</button>` : "";
  // In a tile the tile flashes, not each of its alarms (dimmed twice they would be unreadable).
  return {
    id: a.alert_id, age: age(a.onset_t, sk), paused,
    html: `<li class="alarm ${withBed ? flashClass(a.priority, a.acknowledged) : `prio-${a.priority}`}${a.kind === "advisory" ? " advisory" : ""}" ` +
      `data-alert-id="${esc(a.alert_id)}" data-priority="${esc(a.priority)}">${where}` +
      `<span class="text">${esc(a.text)}</span> <span class="age"></span>${ack} <span class="paused" hidden></span>${btn}</li>`,
  };
}

// One tile: built once per bed in view, then updated in place.
function makeTile(bed) {
  const el = document.createElement("article");
  el.className = "tile";
  el.dataset.key = bed.key;
  el.dataset.bed = bed.bed;
  el.innerHTML = `<header><b class="bedname">${esc(bed.bed)}</b> <span class="node">${esc(bed.node)}</span><span class="phase"></span></header>` +
    `<div class="vitals">${VITALS.map(([m, label]) => `<div class="v none" data-metric="${m}"><span class="lbl">${label}</span>` +
      `<span class="val">–</span><span class="unit"></span><span class="age"></span><span class="sp"></span></div>`).join("")}</div>` +
    `<div class="bpslot"></div><ul class="alarms"></ul><footer><span class="devs"></span><span class="acts"></span></footer>`;
  const q = (s) => el.querySelector(s);
  const r = { el, phase: q(".phase"), bp: q(".bpslot"), alarms: q("ul.alarms"), devs: q(".devs"),
    acts: q(".acts"), alarmRecs: new Map(), html: {}, v: {} };
  for (const [m] of VITALS) {
    const v = q(`.v[data-metric="${m}"]`);
    r.v[m] = { el: v, val: v.children[1], unit: v.children[2], age: v.children[3], sp: v.children[4], spKey: "", line: null };
  }
  return r;
}
function updateTile(r, bed) {
  const sk = bed.skew || 0;
  const tech = techFor(bed);
  const rank = bedRank(bed);
  const prio = ["info", "low", "medium", "high"][rank];
  const unacked = bed.alarms.some((a) => !a.acknowledged && a.kind !== "advisory") || tech.length;
  setClass(r.el, prio && rank > 0 ? `tile ${flashClass(prio, !unacked)}` : "tile");
  const s = bed.session || {};
  setText(r.phase, s.active ? `${s.phase ?? ""}${s.t0 ? ` · ${age(s.t0, sk)} since dose` : ""}` : "no session");
  for (const [m] of VITALS) updateVital(r.v[m], m, vitalData(bed, m, sk));
  setHTML(r.html, "bp", r.bp, bpDue(bed, sk));
  syncList(r.alarms, r.alarmRecs, [
    ...tech.map((t) => ({ id: `tech:${t.id}`, age: age(t.since),
      html: `<li class="alarm tech prio-${esc(t.priority)}">${esc(t.text)} <span class="age"></span></li>` })),
    ...bed.alarms.map((a) => alarmItem(a, bed, false)),
  ]);
  setHTML(r.html, "devs", r.devs, bed.devices.map((d) => `<span class="dev dev-${esc(d.state)}" title="${esc(d.state)}">${esc(d.device)} ${esc(d.state)}${d.battery != null ? ` ${d.battery}%` : ""}</span>`).join(" "));
  const acts = st.me && st.me.may_act && bed.alarms.length
    ? `<button class="act" data-act="ack-all" data-bed="${esc(bed.key)}">Ack all</button><button class="act" data-act="pause" data-bed="${esc(bed.key)}">Pause audio</button>` : "";
  setHTML(r.html, "acts", r.acts, `${acts}<button class="act" data-act="open" data-bed="${esc(bed.key)}">More…</button>`);
}

function render() {
  // The alarm list, technical alarms and sound: at once, on every message (incremental, so
  // cheap); the tile grid follows in its own task, at most once a second.
  const t0 = performance.now();
  renderAlarms();
  stats.alarmMs += performance.now() - t0;
  scheduleTiles(false);
}
function schedule() { render(); }

// The tile grid is updated at most once a second (ages, vitals, order), at once after a click.
let tilesTimer = null, lastTiles = -1e9;
function scheduleTiles(now) {
  if (tilesTimer !== null) {
    if (!now) return;
    clearTimeout(tilesTimer);
  }
  const wait = now ? 0 : Math.max(0, 1000 - (performance.now() - lastTiles));
  tilesTimer = setTimeout(() => {
    tilesTimer = null;
    lastTiles = performance.now();
    renderTiles();
    stats.renders += 1;
    stats.renderMs += performance.now() - lastTiles;
  }, wait);
}

const alarmRecs = new Map(), techRecs = new Map();
function renderAlarms() {
  const all = [];
  for (const bed of st.beds.values()) for (const a of bed.alarms) all.push([a, bed]);
  all.sort((x, y) => (RANK[y[0].priority] ?? 0) - (RANK[x[0].priority] ?? 0) || (x[0].onset_t ?? 0) - (y[0].onset_t ?? 0));
  syncList($("alarm-list"), alarmRecs, all.map(([a, bed]) => alarmItem(a, bed, true)));
  syncList($("tech"), techRecs, st.tech.map((t) => ({ id: t.id, age: age(t.since),
    html: `<div class="techalarm ${flashClass(t.priority, false)}" data-tech="${esc(t.id)}">${esc(t.text)} <span class="age"></span></div>` })));
  const live = st.ws && st.ws.readyState === 1;
  setText($("conn"), live ? (st.broker ? "live" : "station offline from broker") : "disconnected");
  setClass($("conn"), `conn ${live && st.broker ? "ok" : "bad"}`);
  audio.update(highestAudible());
  audioStatus();
  confirmShown(all);
  st.alarmCount = all.length;
}

const tileRecs = new Map(), pagerRec = {};
function renderTiles() {
  const beds = [...st.beds.values()];
  for (const b of beds) b._rank = bedRank(b);
  nameOrder(beds);
  beds.sort(bedOrder);
  const size = (st.me ? st.me.page_size : 48) * (st.big ? 2 : 1);
  const pages = Math.max(1, Math.ceil(beds.length / size));
  st.page = Math.min(st.page, pages - 1);
  const shown = beds.slice(st.page * size, (st.page + 1) * size);
  const grid = $("tiles");
  const want = new Set(shown.map((b) => b.key));
  for (const [k, r] of tileRecs) if (!want.has(k)) { r.el.remove(); tileRecs.delete(k); }
  let cursor = grid.firstElementChild;
  for (const bed of shown) {
    let r = tileRecs.get(bed.key);
    if (!r) { r = makeTile(bed); tileRecs.set(bed.key, r); }
    updateTile(r, bed);
    if (r.el === cursor) cursor = cursor.nextElementSibling;
    else grid.insertBefore(r.el, cursor);
  }
  // Tell the station which beds this page shows: only their vitals come every second.
  const view = [...want].sort().join("\n");
  if (view !== st.view && st.ws && st.ws.readyState === 1) {
    st.view = view;
    st.ws.send(JSON.stringify({ type: "view", beds: shown.map((b) => b.key) }));
  }
  setHTML(pagerRec, "html", $("pager"), pages > 1 ? Array.from({ length: pages }, (_, i) =>
    `<button class="pg${i === st.page ? " on" : ""}" data-page="${i}">${i * size + 1}–${Math.min(beds.length, (i + 1) * size)}</button>`).join("") : "");
  const alarming = beds.filter((b) => b._rank >= 2).length;
  setText($("counts"), `${beds.length} beds · ${st.alarmCount} alarms · ${alarming} beds alarming`);
  if (st.timelineFor && $("detail").open) detailRefresh();
}

function confirmShown(all) {
  const ids = [];
  const t = Date.now();
  for (const [a] of all) if (!st.shown.has(a.alert_id)) {
    st.shown.add(a.alert_id); ids.push(a.alert_id);
    if (trace[a.alert_id] && !trace[a.alert_id].dom) trace[a.alert_id].dom = t;
  }
  if (ids.length && st.ws && st.ws.readyState === 1) st.ws.send(JSON.stringify({ type: "displayed", ids }));
}

function audioStatus() {
  const off = !audio.armed;
  $("audio-off").hidden = !off;
  document.body.classList.toggle("audio-disarmed", off);
  const paused = [];
  for (const bed of st.beds.values()) for (const a of bed.alarms)
    if (a.audio_paused_until && a.audio_paused_until > now() + (bed.skew || 0))
      paused.push(a.audio_paused_until - now() - (bed.skew || 0));
  $("audio-status").textContent = off ? "AUDIO OFF" : paused.length
    ? `audio paused ${Math.ceil(Math.max(...paused))} s` : "audio on";
  $("audio-status").className = `audio-status ${off ? "off" : paused.length ? "paused" : "on"}`;
}

// -- data ------------------------------------------------------------------------------------
function applyBed(b) {
  const old = st.beds.get(b.key);
  if (b.spark) { // full history (the bed came into view)
    if (old) b._order = old._order;
    st.beds.set(b.key, b);
    return;
  }
  b.spark = old ? old.spark : {};
  if (old) { b._sparkCache = old._sparkCache; b._order = old._order; }
  for (const [m, p] of Object.entries(b.spark_last || {})) {
    const pts = (b.spark[m] = b.spark[m] || []);
    if (pts.length && pts[pts.length - 1][0] === p[0]) pts[pts.length - 1] = p;
    else if (!pts.length || p[0] > pts[pts.length - 1][0]) pts.push(p);
    while (pts.length && pts[0][0] < p[0] - 1800) pts.shift();
  }
  st.beds.set(b.key, b);
}
function onMessage(msg) {
  if (msg.type === "timeline") { showTimeline(msg); return; }
  st.offset = msg.now - Date.now() / 1000;
  st.broker = msg.broker;
  if (msg.type === "snapshot") { st.beds.clear(); st.staleAfter = msg.stale_after_s; }
  if (msg.type === "snapshot") st.view = "";
  for (const b of msg.beds || []) applyBed(b);
  if (msg.nodes) st.nodes = msg.nodes;
  if (msg.tech) st.tech = msg.tech;
  schedule();
}
function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  st.ws = ws;
  ws.onopen = () => ws.send(JSON.stringify({ type: "audio", armed: audio.armed }));
  ws.onmessage = (ev) => {
    const recv = Date.now();
    const msg = JSON.parse(ev.data);
    if (msg.rx && traceCount < 20000) for (const [id, t] of Object.entries(msg.rx)) {
      traceCount += 1;
      trace[id] = { rx: t * 1000, sent: msg.sent * 1000, recv };
    }
    stats.messages += 1;
    stats.bytes += ev.data.length;
    if (msg.now) stats.lagMs = Math.max(stats.lagMs, Date.now() - msg.now * 1000);
    onMessage(msg);
  };
  ws.onclose = () => { st.shown.clear(); schedule(); setTimeout(connect, 2000); };
}

// -- actions ---------------------------------------------------------------------------------
function toast(text, ok) {
  const t = $("toast");
  t.textContent = text;
  t.className = ok ? "ok show" : "err show";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ""; }, 6000);
}
async function act(bedKey, command, args = {}) {
  const r = await fetch("/api/action", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": st.me.csrf },
    body: JSON.stringify({ bed: bedKey, command, args }),
  });
  const data = await r.json().catch(() => ({ status: "error", error: `HTTP ${r.status}` }));
  const bed = st.beds.get(bedKey);
  const what = `${command} on ${bed ? bed.bed : "?"}`;
  if (data.status === "ok") toast(`${what}: done${data.data && data.data.acknowledged ? ` (${data.data.acknowledged.length} acknowledged)` : ""}`, true);
  else toast(`${what}: ${data.error || "refused"}`, false);
  return data;
}

let detailTile = null;
function detailRefresh() {
  const bed = st.beds.get(st.timelineFor);
  const head = $("detail-head");
  if (!bed || !head) return;
  if (!detailTile || detailTile.el.dataset.key !== bed.key || !head.contains(detailTile.el)) {
    detailTile = makeTile(bed);
    head.replaceChildren(detailTile.el);
  }
  updateTile(detailTile, bed);
}
function openDetail(key) {
  const bed = st.beds.get(key);
  if (!bed) return;
  st.timelineFor = key;
  const can = st.me && st.me.may_act;
  const s = bed.session || {};
  const forms = can ? `
    <div class="forms">
      ${s.active ? `
      <form data-cmd="session/dose"><label>Dose mg <input name="dose_mg" type="number" step="any" min="0"></label><button>Record dose</button></form>
      <form data-cmd="session/symptom"><label>Symptom <select name="symptom">${["severe_headache", "chest_pain", "dyspnoea", "visual_change", "neuro_change", "confusion"].map((x) => `<option>${x}</option>`).join("")}</select></label><label>Note <input name="note" maxlength="500"></label><button>Enter symptom</button></form>
      <form data-cmd="session/symptom_clear"><input type="hidden" name="all" value="true"><button>Clear symptoms</button></form>
      <form data-cmd="bp/measure"><button>Measure BP</button></form>
      <form data-cmd="session/end" data-confirm="End the session?"><button>End session</button></form>` : `
      <form data-cmd="session/start"><label>Profile <select name="profile"><option>ketamine</option><option>esketamine</option></select></label>
        <label>Route <select name="route"><option value="">default</option><option>iv</option><option>im</option><option>sl</option><option>po</option><option>in</option></select></label><button>Start session</button></form>`}
    </div>` : `<p class="note">Your role (${esc(st.me ? st.me.role : "?")}) may watch but not act.</p>`;
  $("detail-body").innerHTML = `<button id="detail-close" class="close">Close</button><div id="detail-head"></div>${forms}<h3>Timeline</h3>${reportButton(bed)}<ol id="timeline"><li>loading…</li></ol>`;
  detailRefresh();
  $("detail").showModal();
  st.ws.send(JSON.stringify({ type: "timeline", bed: key }));
}
// "Download report": the session's PDF from its node, through the station (any role).
function reportButton(bed) {
  const sid = (bed.session || {}).session_id;
  if (!sid) return "";
  return `<p class="report"><button class="act" data-act="report" data-bed="${esc(bed.key)}" data-session="${esc(sid)}">Download report</button> ` +
    `<span class="note">session ${esc(sid)}</span> <span id="report-status" role="status"></span></p>`;
}
async function downloadReport(btn) {
  const status = $("report-status");
  const label = btn.textContent;
  btn.disabled = true;
  btn.textContent = "Preparing report…";
  if (status) { status.textContent = ""; status.className = ""; }
  const fail = (text) => {
    if (status) { status.textContent = text; status.className = "err"; }
    toast(text, false);
  };
  try {
    const r = await fetch("/api/report", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": st.me.csrf },
      body: JSON.stringify({ bed: btn.dataset.bed, session_id: btn.dataset.session }),
    });
    if (!r.ok || !(r.headers.get("Content-Type") || "").startsWith("application/pdf")) {
      const data = await r.json().catch(() => ({}));
      fail(`Report not available: ${data.error || `HTTP ${r.status}`}`);
      return;
    }
    const blob = await r.blob();
    const m = /filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "");
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = m ? m[1] : "report.pdf";
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    if (status) { status.textContent = `downloaded (${Math.ceil(blob.size / 1024)} kB)`; status.className = "ok"; }
  } catch (e) {
    fail(`Report not available: ${e}`);
  } finally {
    btn.disabled = false;
    btn.textContent = label;
  }
}
function showTimeline(msg) {
  if (msg.bed !== st.timelineFor || !$("timeline")) return;
  const fmt = (t) => new Date(t * 1000).toLocaleTimeString();
  $("timeline").innerHTML = msg.entries.slice().reverse().map((e) => {
    const who = e.by ? ` — ${esc(e.by)}` : "";
    let text = e.kind === "alert" ? `${esc(e.event)} ${esc(e.priority)}: ${esc(e.text)}` : e.kind === "bp" ? esc(e.text)
      : `${esc(e.event)}${e.phase ? ` (${esc(e.phase)})` : ""}${e.dose_mg != null ? ` ${e.dose_mg} mg` : ""}${e.symptom ? ` ${esc(e.symptom)}` : ""}${e.item ? ` ${esc(e.item)}` : ""}`;
    return `<li class="tl tl-${esc(e.kind)}"><time>${fmt(e.t)}</time> ${text}${who}</li>`;
  }).join("") || "<li>nothing yet</li>";
}

document.addEventListener("click", async (ev) => {
  const el = ev.target.closest("button");
  if (!audio.armed) { await audio.arm(); ws_audio(); }
  if (!el) return;
  if (el.id === "audio-off") return;
  if (el.id === "big") { st.big = !st.big; document.body.classList.toggle("big", st.big); scheduleTiles(true); return; }
  if (el.id === "logout") {
    await fetch("/api/logout", { method: "POST", headers: { "X-CSRF-Token": st.me.csrf } });
    location.assign("/login"); return;
  }
  if (el.id === "detail-close") { $("detail").close(); st.timelineFor = null; return; }
  if (el.dataset.page) { st.page = Number(el.dataset.page); scheduleTiles(true); return; }
  const key = el.dataset.bed;
  switch (el.dataset.act) {
    case "ack": await act(key, "alert/ack", { alert_id: el.dataset.alert }); break;
    case "ack-all": await act(key, "alert/ack", { all: true }); break;
    case "pause": await act(key, "alert/pause", { all: true }); break;
    case "open": openDetail(key); break;
    case "report": await downloadReport(el); break;
  }
});
document.addEventListener("submit", async (ev) => {
  const form = ev.target.closest("form[data-cmd]");
  if (!form) return;
  ev.preventDefault();
  if (form.dataset.confirm && !confirm(form.dataset.confirm)) return;
  const args = {};
  for (const [k, v] of new FormData(form).entries()) {
    if (v === "") continue;
    args[k] = k === "dose_mg" ? Number(v) : v === "true" ? true : v;
  }
  await act(st.timelineFor, form.dataset.cmd, args);
  st.ws.send(JSON.stringify({ type: "timeline", bed: st.timelineFor }));
});
function ws_audio() {
  if (st.ws && st.ws.readyState === 1) st.ws.send(JSON.stringify({ type: "audio", armed: audio.armed }));
  audioStatus();
}
audio.onchange = ws_audio;

async function main() {
  const r = await fetch("/api/me", { credentials: "same-origin" });
  if (r.status === 401) { location.assign("/login"); return; }
  st.me = await r.json();
  $("who").textContent = `${st.me.name} (${st.me.role})`;
  document.body.dataset.role = st.me.role;
  if (sessionStorage.getItem("kap-wants-audio")) await audio.arm();
  connect();
  setInterval(schedule, 1000); // ages, audio repeats
  flashTick();
  schedule();
}
main();

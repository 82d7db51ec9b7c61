"""The pages of a session report as matplotlib figures (Agg/PDF backends, no display).

What belongs here: drawing a :class:`~kapmonitor.history.record.SessionRecord` onto the report's
pages. Writing them (PDF, PNG) is :mod:`kapmonitor.history.report`'s business.

Page 1: a patient-free header (bed, session id, profile, route, dose times, risk flags), then
charts over the session on one time axis (minutes from the session start): SpO2, pulse/heart
rate and respiration rate with the phases shaded, dose markers, the baseline band (the
discharge criteria's ± fraction of the frozen baseline), NIBP readings as points labelled with
their values, NEWS2 over time and the alarms as spans coloured by priority, labelled with who
acknowledged them. Gaps in the data and device disconnections are left as gaps (hatched), never
interpolated. Page 2 (and more when needed): the BP table, the alarm table, discharge readiness
and its criteria, data gaps and the commands log.

Speed: a clinic's sessions share one layout, so :class:`Pages` builds the chart page's figure
and axes once and redraws only the session's artists for the next session (creating axes and
their ticks was most of a page's cost). Ticks are computed once per session; grid lines and
tick marks are one line per chart; tick labels, titles, the header and value labels are drawn
by one :class:`Texts` artist (matplotlib would lay out and measure every tick label several
times per drawing), and table pages are drawn as text lines at known positions
(:class:`TextLines`). One :class:`Pages` belongs to one thread. docs/benchmarks.md has the
figures.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")  # no display; figures are built without pyplot (thread-safe use)
import numpy as np  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backend_bases import GraphicsContextBase, RendererBase  # noqa: E402
from matplotlib.backends.backend_agg import (  # noqa: E402
    FigureCanvasAgg,
    RendererAgg,
    get_hinting_flag,
)
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties, findfont, get_font  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from matplotlib.transforms import ScaledTranslation, Transform  # noqa: E402

from kapmonitor.history.record import SessionRecord, utc  # noqa: E402

# The standard 14 fonts have no "normal" weight entry; matplotlib says so on every report.
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

matplotlib.rcParams.update({
    # The PDF uses the standard 14 fonts (Helvetica, Courier): nothing to embed or subset
    # (embedding TrueType subsets cost seconds per report), and the text stays text
    # (pdftotext, search, screen readers). The PNG pages use matplotlib's own fonts.
    "pdf.use14corefonts": True,
    "pdf.compression": 6,
    "font.size": 7,
    "axes.titlesize": 8,
    "axes.labelsize": 7,
    "path.simplify": True,
    "agg.path.chunksize": 10000,
})
A4 = (8.27, 11.69)
PHASE_COLOURS = {"pre_dose": "#dde8f5", "onset": "#fde6c8", "peak": "#f9cfcf",
                 "recovery": "#dcefdc"}
PRIORITY_COLOURS = {"high": "#c62828", "medium": "#ef8f00", "low": "#1e88e5", "info": "#7e57c2"}
TABLE_ROWS_PER_PAGE = 60
_TICK_FONT = 7.0  # points (font.size): the tick labels
_TICK_OUT = 7.0  # points from the axis to a tick label: tick length and pad (3.5 each)
_FONT_TICK = FontProperties(size=_TICK_FONT)
_FONT_TITLE = FontProperties(size=8)
_FONT_HEADER = FontProperties(size=8, weight="bold")
_FONT_DOSE = FontProperties(size=6)
_FONT_VALUE = FontProperties(size=5)
_STEPS = [1, 2, 2.5, 5, 10]  # matplotlib's default tick steps


# -- helpers ---------------------------------------------------------------------------------
def _x(rec: SessionRecord, t: np.ndarray | float) -> Any:
    return (np.asarray(t) - rec.started) / 60.0


def _broken(rec: SessionRecord, t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaN at gaps so the line is broken there, not drawn across."""
    if len(t) < 2:
        return _x(rec, t), v
    dt = np.diff(t)
    limit = max(10.0, 3.0 * float(np.median(dt)))
    idx = np.flatnonzero(dt > limit) + 1
    return _x(rec, np.insert(t, idx, np.nan)), np.insert(v, idx, np.nan)


def _decimate(x: np.ndarray, v: np.ndarray, buckets: int = 600
              ) -> tuple[np.ndarray, np.ndarray]:
    """At most ~2 points per bucket of consecutive samples: each bucket's minimum and maximum
    in time order (the extremes a clinician looks for survive), and a NaN where the bucket had
    one, so gaps stay gaps. A 3-hour 1 Hz trend is 10,800 points; the page shows ~1,200."""
    n = len(x)
    if n <= 2 * buckets:
        return x, v
    k = -(-n // buckets)
    m = n // k * k
    vv, xx = v[:m].reshape(-1, k), x[:m].reshape(-1, k)
    nan = np.isnan(vv)
    lo = np.where(nan, np.inf, vv).argmin(axis=1)
    hi = np.where(nan, -np.inf, vv).argmax(axis=1)
    rows = np.arange(len(vv))
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)
    has_nan = nan.any(axis=1)
    all_nan = nan.all(axis=1)
    cols_x = np.stack([xx[rows, first], xx[rows, second], xx[rows, second]], axis=1)
    cols_v = np.stack([vv[rows, first], vv[rows, second],
                       np.where(has_nan, np.nan, vv[rows, second])], axis=1)
    cols_v[all_nan, :2] = np.nan
    out_x = np.concatenate([cols_x.ravel(), x[m:]])
    out_v = np.concatenate([cols_v.ravel(), v[m:]])
    return out_x, out_v


def _limits(values: Sequence[np.ndarray | float], margin: float = 0.05
            ) -> tuple[float, float] | None:
    """The finite range of ``values`` with matplotlib's default 5 % margins (None: nothing)."""
    finite = [a[np.isfinite(a)] for a in (np.atleast_1d(np.asarray(v, dtype=float))
                                          for v in values)]
    finite = [a for a in finite if a.size]
    if not finite:
        return None
    lo = min(float(a.min()) for a in finite)
    hi = max(float(a.max()) for a in finite)
    if hi - lo < 1e-9:
        lo, hi = lo - max(1.0, abs(lo) * 0.05), hi + max(1.0, abs(hi) * 0.05)
    pad = (hi - lo) * margin
    return lo - pad, hi + pad


def _nice_ticks(lo: float, hi: float, length_pt: float, per_label_pt: float
           ) -> tuple[list[float], list[str]]:
    """Tick positions and labels in [lo, hi] as matplotlib's default locator would place them
    for an axis ``length_pt`` long, computed once (matplotlib recomputes them on every
    layout pass); labels with the same number of decimals, like its default formatter."""
    nbins = int(np.clip(np.floor(length_pt / per_label_pt), 1, 9))
    locs = MaxNLocator(nbins=nbins, steps=_STEPS).tick_values(lo, hi)
    span = hi - lo
    ticks = [float(t) for t in locs if lo - 1e-9 * span <= t <= hi + 1e-9 * span]
    decimals = 0
    while decimals < 4 and any(abs(round(t, decimals) - t) > 1e-9 * max(1.0, span)
                               for t in ticks):
        decimals += 1
    ticks = [0.0 if abs(t) < 1e-9 * max(1.0, span) else t for t in ticks]  # no "-0"
    return ticks, [f"{t:.{decimals}f}" for t in ticks]


_ASCII = str.maketrans({"→": "->", "≥": ">=", "≤": "<=", "−": "-", "–": "-", "—": "-",
                        "·": "-", "…": "...", "×": "x"})


def pdf_text(text: str) -> str:
    """The standard 14 PDF fonts know Latin-1 only (± and ° are fine, arrows are not)."""
    return text.translate(_ASCII).encode("latin-1", "replace").decode("latin-1")


def _segments(pairs: Sequence[tuple[tuple[float, float], tuple[float, float]]]
              ) -> tuple[np.ndarray, np.ndarray]:
    """Line segments as one line's x and y, a NaN between segments."""
    xy = np.full((len(pairs), 3, 2), np.nan)
    if pairs:
        xy[:, :2] = pairs
    return xy[:, :, 0].ravel(), xy[:, :, 1].ravel()


def _px(renderer: RendererBase) -> float:
    """Pixels per point of a renderer."""
    return cast(float, renderer.points_to_pixels(1.0))


# -- text without matplotlib's per-Text machinery ------------------------------------------------
_Metrics = dict[tuple[Any, ...], tuple[float, float, float]]


class Texts(Artist):
    """Many single-line texts as one artist, placed as matplotlib places a Text (from its
    anchor, alignment and measured size), each distinct string measured once per renderer
    kind and font (``metrics`` is kept from one session to the next). A page's tick labels,
    titles and value labels are some 150 Text artists; drawing each through matplotlib's
    Text (layout, bounding boxes, transforms, for the PDF and again for the PNG) was a third
    of a chart page's time. In a PNG each text's image is kept for the next drawing (see
    :meth:`_raster`); in a PDF texts stay text."""

    def __init__(self, metrics: _Metrics) -> None:
        super().__init__()
        self.metrics = metrics
        self.images: dict[tuple[Any, ...], tuple[np.ndarray, float, float]] = {}
        self.items: list[tuple[Transform, float, float, float, float, str, FontProperties,
                               str, str, str]] = []

    def add(self, transform: Transform, x: float, y: float, text: str, prop: FontProperties,
            ha: str = "left", va: str = "baseline", dx: float = 0.0, dy: float = 0.0,
            colour: str = "black") -> None:
        """``text`` anchored at (x, y) in ``transform``'s coordinates, moved by (dx, dy)
        points, aligned horizontally (left, center, right) and vertically (baseline, top,
        center, center_baseline, bottom) as a matplotlib Text would be."""
        self.items.append((transform, x, y, dx, dy, text, prop, ha, va, colour))
        self.stale = True

    def clear(self) -> None:
        self.items = []
        self.stale = True

    def _measure(self, renderer: RendererBase, text: str, prop: FontProperties
                 ) -> tuple[float, float, float]:
        key = (type(renderer), _px(renderer), text, prop)
        got = self.metrics.get(key)
        if got is None:
            got = self.metrics[key] = renderer.get_text_width_height_descent(text, prop,
                                                                            ismath=False)
        return got

    def draw(self, renderer: RendererBase) -> None:
        if not self.get_visible() or not self.items:
            return
        height = renderer.get_canvas_width_height()[1]
        px = _px(renderer)
        flip = renderer.flipy()
        gc = renderer.new_gc()
        for tr, x, y, dx, dy, text, prop, ha, va, colour in self.items:
            if not text:
                continue
            ax_, ay_ = tr.transform((x, y))
            ax_, ay_ = ax_ + dx * px, ay_ + dy * px
            _, lp_h, lp_d = self._measure(renderer, "lp", prop)
            if ha == "left" and va in ("top", "baseline"):
                w, h, d = 0.0, lp_h, lp_d  # nothing of the text's own size is needed
            else:
                w, h, d = self._measure(renderer, text, prop)
            full, desc = max(h, lp_h), max(d, lp_d)
            left = ax_ - {"left": 0.0, "center": w / 2, "right": w}[ha]
            base = {"baseline": ay_, "top": ay_ - (full - desc),
                    "center": ay_ - full / 2 + desc, "bottom": ay_ + desc,
                    "center_baseline": ay_ - (full - desc) / 2}[va]
            if isinstance(renderer, RendererAgg):
                self._raster(renderer, gc, left, height - base, text, prop, colour)
            else:
                gc.set_foreground(colour)
                renderer.draw_text(gc, left, height - base if flip else base, text, prop, 0.0)
        gc.restore()
        self.stale = False

    def _raster(self, renderer: RendererAgg, gc: GraphicsContextBase, x: float, y: float,
                text: str, prop: FontProperties, colour: str) -> None:
        """What ``RendererAgg.draw_text`` draws at (x, y) (from the top), from an image of the
        text kept for the next time (tick labels and titles recur on every page, a value label
        on many): matplotlib's FreeType wrapper loads every glyph of a string anew each time
        it draws one, some 13 µs a glyph here, which was most of the PNG's time."""
        key = (renderer.dpi, text, prop, colour)
        got = self.images.get(key)
        if got is None:
            if len(self.images) > 20_000:  # a long clinic day: start again
                self.images.clear()
            font = get_font(findfont(prop))
            font.clear()
            font.set_size(prop.get_size_in_points(), renderer.dpi)
            font.set_text(text, 0, flags=get_hinting_flag())
            font.draw_glyphs_to_bitmap(antialiased=True)
            xo, yo = (v / 64.0 for v in font.get_bitmap_offset())
            alpha = np.asarray(font.get_image())
            rgba = np.empty((*alpha.shape, 4), dtype=np.uint8)
            rgba[..., :3] = np.round(np.array(to_rgb(colour)) * 255)
            rgba[..., 3] = alpha
            got = self.images[key] = (rgba[::-1].copy(), xo, yo + font.get_descent() / 64.0)
        image, xo, yo = got
        # where RendererAgg.draw_text puts it: its rows end at round(y + yo) + 1 from the top
        # of the pixel buffer (int(height) rows); the PNG is the same pixel for pixel
        bottom = round(y + yo) + 1
        renderer.draw_image(gc, round(x + xo), int(renderer.height) - bottom, image)


# -- page 1: the charts ------------------------------------------------------------------------
_HEIGHTS = [1.0, 2.2, 2.2, 2.6, 1.4, 1.0]  # header, SpO2, pulse, NIBP, RR, NEWS2 (+ alarms)
_HEADER_TITLE = ("kapmonitor session record (no patient identifiers; secondary monitoring "
                 "record, not a certified alarm system)")


class _ChartPage:
    """Page 1, built once: the figure, its axes, titles and labels stay; each session adds
    its own artists (removed again before the next session) and sets limits and ticks."""

    def __init__(self) -> None:
        self.fig = fig = Figure(figsize=A4)
        # A canvas of its own keeps one Agg renderer (and its text measurement cache) for
        # every session this page draws.
        FigureCanvasAgg(fig)
        self.gs = gs = fig.add_gridspec(len(_HEIGHTS) + 1, 1,
                                        height_ratios=[*_HEIGHTS, 1.2], hspace=0.35,
                                        left=0.09, right=0.97, top=0.97, bottom=0.04)
        self.head = head = fig.add_subplot(gs[0])
        head.axis("off")
        self.axes = axes = [fig.add_subplot(gs[i]) for i in range(1, len(_HEIGHTS) + 1)]
        self.spo2, self.hr, self.bp, self.rr, self.news, self.alarms = axes
        # Ticks, tick labels, titles and the grid are drawn by the page (below), not by
        # matplotlib's axes, which make artists per tick and lay them out repeatedly.
        self.metrics: _Metrics = {}
        self.texts = Texts(self.metrics)
        self.texts.set_zorder(5)
        fig.add_artist(self.texts)
        # one line each (its segments split by NaN), for the grid and the tick marks
        self.grid: dict[Axes, Line2D] = {}
        self.marks: dict[Axes, Line2D] = {}
        for ax, ylabel in zip(axes, ("SpO2 %", "/min", "mmHg", "/min", "NEWS2", ""),
                              strict=True):
            ax.set_xticks([])
            ax.set_yticks([])
            self.grid[ax] = ax.add_line(Line2D(
                [], [], color=matplotlib.rcParams["grid.color"], lw=0.3, alpha=0.6, zorder=1.5,
                transform=ax.transAxes))
            self.marks[ax] = ax.add_line(Line2D(
                [], [], color=matplotlib.rcParams["ytick.color"],
                lw=matplotlib.rcParams["ytick.major.width"], zorder=2.5,
                transform=ax.transAxes, clip_on=False))
            ax.set_ylabel(ylabel)
            # at a fixed place: matplotlib would measure the tick labels to find it
            ax.yaxis.set_label_coords(-0.06, 0.5)
        below = ScaledTranslation(0, -19 / 72, fig.dpi_scale_trans)
        self.alarms.xaxis.set_label_coords(0.5, 0, transform=self.alarms.transAxes + below)
        self.rr_none = self.rr.text(0.5, 0.5, "no respiration rate recorded",
                                    transform=self.rr.transAxes, ha="center", va="center",
                                    color="#777777")
        self.drawn: list[Artist] = []  # this session's artists
        self.yticks: dict[Axes, list[float]] = {}

    def draw(self, rec: SessionRecord, band: tuple[float, float, float]) -> Figure:
        for artist in self.drawn:
            artist.remove()
        self.drawn = []
        self.texts.clear()
        self.yticks = {}
        for ax in self.axes:
            if ax.legend_ is not None:
                ax.legend_.remove()
        self._layout(len(rec.alarms))
        self._header(rec)
        bp_frac, hr_frac, spo2_level = band
        x_lo, x_hi = float(_x(rec, rec.start)), float(_x(rec, rec.end))
        if x_hi <= x_lo:
            x_hi = x_lo + 1.0
        for ax in self.axes:
            self._context(ax, rec, label_doses=ax is self.spo2)
            ax.set_xlim(x_lo, x_hi)
        self._y(self.spo2, self._spo2(rec, spo2_level))
        self._y(self.hr, self._hr(rec, hr_frac))
        self._y(self.bp, self._bp(rec, bp_frac))
        self._y(self.rr, self._rr(rec))
        self._y(self.news, self._news(rec))
        self._alarm_spans(rec, x_lo, x_hi)
        self._grid_and_ticks(x_lo, x_hi)
        return self.fig

    # -- layout --
    def _layout(self, alarms: int) -> None:
        self.gs.set_height_ratios([*_HEIGHTS, max(1.2, 0.22 * alarms + 0.6)])
        for ax in (self.head, *self.axes):
            spec = ax.get_subplotspec()
            assert spec is not None
            ax.set_position(spec.get_position(self.fig))

    def _y(self, ax: Axes, values: Sequence[Any] | tuple[float, float]) -> None:
        """The y range: the values' (with margins), or exactly the (low, high) given."""
        lo, hi = values if isinstance(values, tuple) else _limits(values) or (0.0, 1.0)
        ax.set_ylim(lo, hi)
        height = ax.get_position().height * A4[1] * 72
        ticks, labels = _nice_ticks(lo, hi, height, _TICK_FONT * 2)
        self.yticks[ax] = ticks
        for t, label in zip(ticks, labels, strict=True):
            self.texts.add(ax.get_yaxis_transform(), 0.0, t, label, _FONT_TICK, ha="right",
                           va="center_baseline", dx=-_TICK_OUT)

    def _grid_and_ticks(self, x_lo: float, x_hi: float) -> None:
        """Grid lines and tick marks (left and bottom) on every chart; the x tick labels under
        the alarm chart (the x ticks are the same on every chart)."""
        width = self.alarms.get_position().width * A4[0] * 72
        xt, xl = _nice_ticks(x_lo, x_hi, width, _TICK_FONT * 3)
        xs = [(x - x_lo) / (x_hi - x_lo) for x in xt]
        tick = matplotlib.rcParams["ytick.major.size"]
        for ax in self.axes:
            lo, hi = ax.get_ylim()
            ys = [(y - lo) / (hi - lo) for y in self.yticks.get(ax, [])]
            self.grid[ax].set_data(*_segments([((x, 0.0), (x, 1.0)) for x in xs]
                                              + [((0.0, y), (1.0, y)) for y in ys]))
            pos = ax.get_position()
            out_x = tick / (pos.width * A4[0] * 72)
            out_y = tick / (pos.height * A4[1] * 72)
            self.marks[ax].set_data(*_segments([((-out_x, y), (0.0, y)) for y in ys]
                                               + [((x, -out_y), (x, 0.0)) for x in xs]))
        for x, label in zip(xt, xl, strict=True):
            self.texts.add(self.alarms.get_xaxis_transform(), x, 0.0, label, _FONT_TICK,
                           ha="center", va="top", dy=-_TICK_OUT)

    def _title(self, ax: Axes, text: str) -> None:
        self.texts.add(ax.transAxes, 0.0, 1.0, text, _FONT_TITLE,
                       dy=matplotlib.rcParams["axes.titlepad"])

    def _add(self, *artists: Any) -> None:
        for a in artists:
            if isinstance(a, list | tuple):
                self.drawn += a
            else:
                self.drawn.append(a)

    def _header(self, rec: SessionRecord) -> None:
        info = rec.info.start
        doses = ", ".join(
            f"{utc(float(d['t']))}" + (f" ({d['dose_mg']:g} mg)" if d.get("dose_mg") is not None
                                        else "") for d in rec.doses) or "none recorded"
        ready = rec.discharge_ready_at
        lines = [
            f"Bed {rec.bed}   Session {rec.session_id}   Profile {rec.info.profile or '-'}   "
            f"Route {info.get('route') or '-'}",
            f"Started {utc(rec.started)}   Ended "
            f"{utc(rec.info.ended) if rec.info.ended is not None else 'running'}   "
            f"Risk flags: {', '.join(info.get('risk_flags') or []) or 'none'}",
            f"Dose times: {doses}",
            f"Discharge readiness (advisory): "
            f"{utc(ready) if ready is not None else 'not reached'}   Alarms: "
            f"{len(rec.alarms)}   Phases: " + " -> ".join(dict.fromkeys(p for _, _, p in
                                                                    rec.phases)),
        ]
        head = self.head.transAxes
        self.texts.add(head, 0.0, 1.0, _HEADER_TITLE, _FONT_HEADER, va="top")
        for i, line in enumerate(lines):
            self.texts.add(head, 0.0, 0.74 - i * 0.2, pdf_text(line), _FONT_TICK, va="top")

    # -- what every chart shows: phases, disconnections, doses --
    def _context(self, ax: Axes, rec: SessionRecord, label_doses: bool = False) -> None:
        """One collection each for the phases, the disconnections and the doses."""
        band = ax.get_xaxis_transform()

        def span(a: float, b: float) -> list[tuple[float, float]]:
            x0, x1 = float(_x(rec, a)), float(_x(rec, b))
            return [(x0, 0.0), (x0, 1.0), (x1, 1.0), (x1, 0.0)]

        if rec.phases:
            self._add(ax.add_collection(PolyCollection(
                [span(a, b) for a, b, _ph in rec.phases],
                facecolors=[PHASE_COLOURS.get(ph, "#eeeeee") for _a, _b, ph in rec.phases],
                linewidths=0, zorder=0, transform=band), autolim=False))
        if rec.down:
            self._add(ax.add_collection(PolyCollection(
                [span(a, b) for _dev, a, b, _st in rec.down], facecolors="none",
                edgecolors="#777777", hatch="////", linewidths=0, zorder=1, transform=band),
                autolim=False))
        doses = [float(_x(rec, float(d["t"]))) for d in rec.doses]
        if doses:
            self._add(ax.add_collection(LineCollection(
                [[(x, 0.0), (x, 1.0)] for x in doses], colors="#6a1b9a", linewidths=1.0,
                linestyles="--", zorder=3, transform=band), autolim=False))
        if label_doses:
            for i, x in enumerate(doses, 1):
                self.texts.add(band, x, 1.0, f"dose {i}", _FONT_DOSE, va="top", dx=2, dy=-2,
                               colour="#6a1b9a")

    def _trend(self, ax: Axes, rec: SessionRecord, metric: str, colour: str, label: str
               ) -> np.ndarray | None:
        tr = rec.trends.get(metric)
        if tr is None or not np.isfinite(tr.v).any():
            return None
        x, v = _decimate(*_broken(rec, tr.t, tr.v))
        self._add(ax.plot(x, v, color=colour, lw=0.7, label=label, zorder=4))
        return v

    # -- the charts; each returns the values its y range must show --
    def _spo2(self, rec: SessionRecord, level: float) -> list[Any]:
        ax = self.spo2
        values: list[Any] = [level]
        v = self._trend(ax, rec, "spo2", "#1565c0", "SpO2")
        if v is not None:
            values.append(v)
        self._add(ax.axhline(level, color="#1565c0", lw=0.6, ls=":"))
        if "spo2" in rec.baseline:
            self._add(ax.axhline(rec.baseline["spo2"], color="#1565c0", lw=0.5, alpha=0.5))
            values.append(rec.baseline["spo2"])
        self._title(ax, "SpO2 (dotted: discharge criterion)")
        return values

    def _hr(self, rec: SessionRecord, frac: float) -> list[Any]:
        ax = self.hr
        values: list[Any] = []
        for metric, colour, label in (("pulse_rate", "#c62828", "pulse rate"),
                                      ("heart_rate", "#6d4c41", "heart rate (ECG)")):
            v = self._trend(ax, rec, metric, colour, label)
            if v is not None:
                values.append(v)
        drawn = bool(values)
        if "hr" in rec.baseline:
            b = rec.baseline["hr"]
            self._add(ax.axhspan(b * (1 - frac), b * (1 + frac), color="#c62828", alpha=0.08,
                                 lw=0))
            values += [b * (1 - frac), b * (1 + frac)]
        self._title(ax, f"Pulse / heart rate (band: baseline ±{frac:.0%})")
        if drawn:
            ax.legend(loc="upper right", fontsize=6, frameon=False)
        return values

    def _bp(self, rec: SessionRecord, frac: float) -> list[Any]:
        ax = self.bp
        values: list[Any] = []
        for key, colour in (("nibp_sys", "#8e24aa"), ("nibp_dia", "#5e35b1")):
            level = rec.baseline.get(key)
            if level is not None:
                self._add(ax.axhspan(level * (1 - frac), level * (1 + frac), color=colour,
                                     alpha=0.07, lw=0))
                values += [level * (1 - frac), level * (1 + frac)]
        ok = [m for m in rec.nibp if m.sys is not None and m.dia is not None]
        if ok:
            xs = _x(rec, np.array([m.t for m in ok]))
            sys_ = np.array([m.sys for m in ok], dtype=float)
            dia = np.array([m.dia for m in ok], dtype=float)
            values += [sys_, dia]
            self._add(ax.add_collection(LineCollection(
                list(np.stack([np.column_stack([xs, dia]), np.column_stack([xs, sys_])],
                              axis=1)),
                colors="#8e24aa", linewidths=0.8, zorder=4), autolim=False),
                ax.plot(xs, sys_, ls="none", marker="v", ms=10 ** 0.5, color="#8e24aa",
                        zorder=5),
                ax.plot(xs, dia, ls="none", marker="^", ms=10 ** 0.5, color="#5e35b1",
                        zorder=5))
            step = max(1, len(ok) // 40)  # keep the labels readable
            for i in range(0, len(ok), step):
                self.texts.add(ax.transData, float(xs[i]), float(sys_[i]),
                               f"{sys_[i]:.0f}/{dia[i]:.0f}", _FONT_VALUE, ha="center", dy=3)
        self._title(ax, f"NIBP systolic/diastolic (bands: baseline ±{frac:.0%})")
        return values

    def _rr(self, rec: SessionRecord) -> list[Any]:
        v = self._trend(self.rr, rec, "resp_rate", "#2e7d32", "resp rate")
        self.rr_none.set_visible(v is None)
        self._title(self.rr, "Respiration rate")
        return [] if v is None else [v]

    def _news(self, rec: SessionRecord) -> list[Any] | tuple[float, float]:
        ax = self.news
        self._title(ax, "NEWS2 (partial: parameters kapmonitor does not measure score 0)")
        if not rec.news2:
            return []
        nt = np.array([n[0] for n in rec.news2] + [rec.end])
        nv = np.array([n[1] for n in rec.news2] + [rec.news2[-1][1]], dtype=float)
        self._add(ax.step(_x(rec, nt), nv, where="post", color="#37474f", lw=0.9))
        # from -0.5 to at least 7 (the scale's "urgent" score), no margins
        return (-0.5, max(7.0, float(nv.max()) + 1))

    def _alarm_spans(self, rec: SessionRecord, x_lo: float, x_hi: float) -> None:
        ax = self.alarms
        if rec.alarms:
            ends = [a.cleared if a.cleared is not None else rec.end for a in rec.alarms]
            lefts = _x(rec, np.array([a.raised for a in rec.alarms]))
            widths = _x(rec, np.array(ends)) - lefts
            colours = [PRIORITY_COLOURS.get(a.priority, "#555555") for a in rec.alarms]
            bars = ax.barh(range(len(rec.alarms)), widths, left=lefts, height=0.6,
                           color=colours, alpha=0.85, zorder=4)
            self._add(list(bars.patches))
        for i, a in enumerate(rec.alarms):
            end = a.cleared if a.cleared is not None else rec.end
            ack = f", ack {a.acked_by or '?'}" if a.acked_at is not None else ""
            x0, x1 = float(_x(rec, a.raised)), float(_x(rec, end))
            label = pdf_text(f" {a.rule} ({a.priority}{ack}) ")
            # keep the label inside the chart: after the span, before it, or on it
            if x1 < x_lo + 0.7 * (x_hi - x_lo):
                self._add(ax.text(x1, i, label, va="center", ha="left", fontsize=5, zorder=5))
            elif x0 > x_lo + 0.3 * (x_hi - x_lo):
                self._add(ax.text(x0, i, label, va="center", ha="right", fontsize=5,
                                  zorder=5))
            else:
                self._add(ax.text(x0, i, label, va="center", ha="left", fontsize=5, zorder=5,
                                  bbox={"facecolor": "white", "alpha": 0.7, "lw": 0,
                                        "pad": 0.5}))
        ax.set_ylim(max(1, len(rec.alarms)), -1)  # the first alarm on top
        self._title(ax, "Alarms (span: raised -> cleared; colour: priority)")
        ax.set_xlabel(f"minutes from session start ({utc(rec.started)}); hatched: device "
                      "disconnected; shaded: phases")


# -- page 2 and on: the tables -----------------------------------------------------------------
class TextLines(Artist):
    """Lines of text, the first one's top at (x, y) in figure fraction, one every ``pitch``
    points, left-aligned. They are drawn straight away: matplotlib's Text measures every line
    of a block before drawing it (to align it), which for left-aligned lines at a known pitch
    is wasted work (with the Agg renderer, it cost as much as drawing them)."""

    def __init__(self, x: float, y: float, lines: list[str], prop: FontProperties,
                 pitch: float, colour: str = "black") -> None:
        super().__init__()
        self.x, self.y, self.lines, self.prop, self.pitch = x, y, lines, prop, pitch
        self.colour = colour

    def draw(self, renderer: RendererBase) -> None:
        if not self.get_visible():
            return
        height = renderer.get_canvas_width_height()[1]
        px = _px(renderer)
        x = self.x * renderer.get_canvas_width_height()[0]
        # the first baseline: the top less the font's ascent (about 0.8 em)
        y = self.y * height - 0.8 * self.prop.get_size_in_points() * px
        gc = renderer.new_gc()
        gc.set_foreground(self.colour)
        for i, line in enumerate(self.lines):
            text = line.rstrip()  # a space costs as much to draw as a letter
            if text:
                yi = y - i * self.pitch * px
                renderer.draw_text(gc, x, height - yi if renderer.flipy() else yi, text,
                                   self.prop, 0.0)
        gc.restore()
        self.stale = False


# style → (font, points per line, gap before a block in points)
_FONTS = {
    "h": (FontProperties(family="sans-serif", weight="bold", size=8), 10.0, 6.0),
    "b": (FontProperties(family="monospace", weight="bold", size=6.5), 8.2, 0.0),
    "m": (FontProperties(family="monospace", size=6.5), 8.2, 0.0),
}
TABLE_TOP, TABLE_BOTTOM = 0.97, 0.045  # figure fraction: where table lines may go


def _blocks(lines: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """Consecutive lines of one style as one block (one artist); a heading is always a block
    of its own."""
    out: list[tuple[str, list[str]]] = []
    for style, text in lines:
        st = "m" if style == "s" else style
        if out and out[-1][0] == st and st != "h":
            out[-1][1].append(text)
        else:
            out.append((st, [text]))
    return out


def table_lines(rec: SessionRecord) -> list[tuple[str, str]]:
    """The lines of the table pages, as (style, text): h heading, b bold, m and s normal."""
    return [("h", f"Bed {rec.bed} - session {rec.session_id} - tables"),
            *_bp_lines(rec), *_alarm_lines(rec), *_discharge_lines(rec), *_gap_lines(rec),
            *_command_lines(rec)]


def table_pages(rec: SessionRecord) -> list[Figure]:
    """Page 2 and on: the tables, as many pages as their lines need."""
    lines = table_lines(rec)
    page_pt = A4[1] * 72
    pages: list[list[TextLines]] = [[]]
    y = TABLE_TOP * page_pt  # points from the bottom
    for st, block in _blocks(lines):
        prop, pitch, gap = _FONTS[st]
        while block:
            if pages[-1]:
                y -= gap
            room = int((y - TABLE_BOTTOM * page_pt) // pitch)
            if room < (2 if st == "h" else 1) and pages[-1]:  # no heading alone at the foot
                pages.append([])
                y = TABLE_TOP * page_pt
                continue
            part, block = block[:max(room, 1)], block[max(room, 1):]
            pages[-1].append(TextLines(0.06, y / page_pt, [pdf_text(t) for t in part], prop, pitch))
            y -= pitch * len(part)
    figs: list[Figure] = []
    for n, artists in enumerate(pages, 2):
        fig = Figure(figsize=A4)
        for a in artists:
            fig.add_artist(a)
        fig.add_artist(TextLines(0.06, 0.03, [f"kapmonitor session {rec.session_id} - bed "
                                           f"{rec.bed} - page {n}"],
                              FontProperties(family="sans-serif", size=6), 8.0, "#777777"))
        figs.append(fig)
    return figs


def _bp_lines(rec: SessionRecord) -> list[tuple[str, str]]:
    lines = [("h", "Blood pressure"),
             ("b", f"{'time (UTC)':<24}{'min':>7}  {'sys/dia (mean)':<18}{'device':<12}flags")]
    for m in rec.nibp:
        bp = (f"{m.sys:.0f}/{m.dia:.0f}" if m.sys is not None and m.dia is not None
              else "invalid") + (f" ({m.mean:.0f})" if m.mean is not None else "")
        lines.append(("m", f"{utc(m.t):<24}{(m.t - rec.started) / 60:>7.1f}  {bp:<18}"
                           f"{m.device:<12}{', '.join(m.flags)}"))
    if not rec.nibp:
        lines.append(("m", "no NIBP measurement recorded"))
    return lines


def _alarm_lines(rec: SessionRecord) -> list[tuple[str, str]]:
    lines = [("h", "Alarms"),
             ("b", f"{'raised (UTC)':<25}{'cleared':<10}{'priority':<9}{'rule':<24}"
                   "acknowledged")]
    for a in rec.alarms:
        cleared = utc(a.cleared)[11:19] if a.cleared is not None else "open"
        ack = (f"{utc(a.acked_at)[11:19]} by {a.acked_by or 'unknown'}"
               if a.acked_at is not None else "not acknowledged")
        lines.append(("m", f"{utc(a.raised):<25}{cleared:<10}{a.priority:<9}{a.rule:<24}{ack}"))
        lines.append(("s", f"    {a.text[:110]}"))
    if not rec.alarms:
        lines.append(("m", "no alarms"))
    return lines


def _discharge_lines(rec: SessionRecord) -> list[tuple[str, str]]:
    lines = [("h", "Discharge readiness (advisory; nothing is discharged automatically)")]
    for d in rec.discharge:
        unmet = d.get("unmet")
        lines.append(("m", f"{utc(float(d['t']))}  {d['event'].replace('_', ' ')}"
                           + (f" — criteria not met: {', '.join(unmet)}" if unmet else
                              " — all criteria met")))
    if not rec.discharge:
        lines.append(("m", "readiness not reached"))
    if rec.baseline:
        lines.append(("m", "Baseline (frozen at the first dose): " + ", ".join(
            f"{k} {v:.0f}" for k, v in sorted(rec.baseline.items()))
            + ("" if rec.baseline_complete else " (incomplete)")))
    return lines


def _gap_lines(rec: SessionRecord) -> list[tuple[str, str]]:
    lines = [("h", "Data gaps and disconnections")]
    for metric, g0, g1 in rec.gaps:
        lines.append(("m", f"{utc(g0)} -> {utc(g1)[11:]}  {metric}: no data for {g1 - g0:.0f} s"))
    for dev, d0, d1, st in rec.down:
        lines.append(("m", f"{utc(d0)} -> {utc(d1)[11:]}  device {dev} {st} for {d1 - d0:.0f} s"))
    if not rec.gaps and not rec.down:
        lines.append(("m", "none"))
    return lines


def _command_lines(rec: SessionRecord) -> list[tuple[str, str]]:
    lines = [("h", "Commands")]
    for c in rec.commands:
        lines.append(("m", f"{utc(c['t'])}  {c['name']:<22}{c['status']:<6}by "
                           f"{c['by'] or '-'}"))
    if not rec.commands:
        lines.append(("m", "none recorded"))
    return lines


class Pages:
    """Draws sessions onto report pages, reusing page 1's figure from one session to the
    next. Not thread-safe: one per thread (or process)."""

    def __init__(self) -> None:
        self._chart: _ChartPage | None = None

    def chart_page(self, rec: SessionRecord, band: tuple[float, float, float]) -> Figure:
        """Page 1 of ``rec`` (the same Figure object every time: save it before the next)."""
        if self._chart is None:
            self._chart = _ChartPage()
        return self._chart.draw(rec, band)

    def table_pages(self, rec: SessionRecord) -> list[Figure]:
        return table_pages(rec)

"""Static SVG charts for the board report, drawn with matplotlib's SVG backend.

Each chart is an ``<svg>`` element string to inline in the page: no external reference, text
as ``<text>`` in a generic sans-serif family, IDs salted with the chart's own id so several
charts on one page never share one. The data points of a chart are the ``<use>`` elements of
the group ``<g id="{chart_id}-points">`` (what the browser test counts).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import matplotlib

matplotlib.use("svg")

import matplotlib.dates as mdates  # noqa: E402  (the backend is chosen before pyplot loads)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# Making Data Count colours (as NHSRplotthedots and the MDC Excel tool use them)
COMMON = "#7B7D7D"
IMPROVEMENT = "#289DE0"
CONCERN = "#FAB428"
TARGET = "#DE1B1B"
LINE = "#231F20"
POINT_COLOURS = {
    "common_cause": COMMON,
    "special_cause_improvement": IMPROVEMENT,
    "special_cause_concern": CONCERN,
}

_STYLE: Any = {  # typed Any: matplotlib types rc keys as a Literal of every name
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 9,
    "svg.image_inline": True,
}


def _svg(fig: Figure, chart_id: str, title: str) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": chart_id}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    start = text.index("<svg")
    svg = text[start:]
    # the page sizes charts with CSS; a title gives assistive technology the chart's name
    svg = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1', svg, count=1)
    svg = svg.replace("<svg", f'<svg role="img" aria-labelledby="{chart_id}-title" id="{chart_id}"', 1)
    head_end = svg.index(">") + 1
    return svg[:head_end] + f'<title id="{chart_id}-title">{_escape(title)}</title>' + svg[head_end:]


def _day(iso: str) -> float:
    """A week's or a change's date as matplotlib's date number."""
    return float(mdates.date2num(date.fromisoformat(iso[:10])))


def shown_limit(value: float) -> float:
    """A proportion's process limit as a reader is shown it: within [0, 1], as PowerBI-SPC
    clips p-chart limits (a rate cannot leave that range; the machine report keeps the
    computed value, as NHSRplotthedots does not clip XmR limits)."""
    return min(1.0, max(0.0, value))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def spc_chart(
    chart_id: str,
    title: str,
    points: Sequence[Mapping[str, Any]],
    hidden_weeks: set[str],
    target: float | None,
    changes: Sequence[tuple[str, str]],
    percent: bool = True,
    subtitle: str = "",
    carried: tuple[str, Mapping[str, Any]] | None = None,
) -> tuple[str, int]:
    """An MDC chart of one team's weekly series: points coloured by type, mean (solid) and
    process limits (dashed) per rebase group, the target (red, dotted), a vertical marker
    per service change labelled with its key (``changes``: (ISO date, key)). Weeks in
    ``hidden_weeks`` (suppressed cells) are not drawn. ``carried`` = (first week after a
    change, the previous group's ``mean``/``upper``/``lower``) draws those limits forward
    over the weeks from then on (blue, dotted). With ``percent`` the values are proportions
    and the limits are drawn clipped to [0%, 100%] (:func:`shown_limit`). Returns the SVG and
    the number of points drawn; the caller draws no chart where none would be (see
    :func:`board.html.render_html`)."""
    scale = 100.0 if percent else 1.0

    def limit(key: str, value: Any) -> float:
        clip = percent and key != "mean"
        return (shown_limit(float(value)) if clip else float(value)) * scale

    with matplotlib.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(7.0, 2.1))
        ax.set_title(subtitle, loc="left", fontsize=9, fontweight="bold")
        shown = [p for p in points if p["week"] not in hidden_weeks and p.get("value") is not None]
        groups: dict[int, list[Mapping[str, Any]]] = {}
        for p in points:
            groups.setdefault(int(p.get("group", 0)), []).append(p)
        for members in groups.values():
            xs = [_day(p["week"]) for p in members]
            for key, style in (("mean", "-"), ("upper", "--"), ("lower", "--")):
                if all(p.get(key) is not None for p in members):
                    ax.step(xs, [limit(key, p[key]) for p in members], where="mid", color=LINE if key == "mean" else COMMON,
                            linestyle=style, linewidth=1.0 if key == "mean" else 0.8)
        if carried is not None and points:
            start, previous = carried
            span = [_day(start), _day(points[-1]["week"])]
            for key in ("mean", "upper", "lower"):
                if previous.get(key) is not None:
                    ax.plot(span, [limit(key, previous[key])] * 2, color=IMPROVEMENT, linestyle=":",
                            linewidth=1.2, label="previous limits carried forward" if key == "mean" else None)
        if target is not None:
            ax.axhline(target * scale, color=TARGET, linestyle=":", linewidth=1.0, label="target")
        # the joining line breaks at a hidden week rather than bridging it as if nothing were there
        line_x = [_day(p["week"]) for p in points]
        line_y = [
            float("nan") if p["week"] in hidden_weeks or p.get("value") is None else float(p["value"]) * scale
            for p in points
        ]
        ax.plot(line_x, line_y, color=COMMON, linewidth=0.6, zorder=2)
        xs = [_day(p["week"]) for p in shown]
        ys = [float(p["value"]) * scale for p in shown]
        dots = ax.scatter(xs, ys, c=[POINT_COLOURS.get(p.get("type", ""), COMMON) for p in shown], s=14, zorder=3)
        dots.set_gid(f"{chart_id}-points")
        for day, key in changes:
            when = _day(day)
            ax.axvline(when, color=LINE, linewidth=0.8, linestyle="-.")
            ax.annotate(key, (when, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(2, -2), textcoords="offset points", va="top", fontsize=7)
        ax.set_ylabel("%" if percent else "value")
        ax.xaxis_date()
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %y"))
        ax.grid(axis="y", color="#e5e5e5", linewidth=0.5)
        return _svg(fig, chart_id, title), len(shown)


Box = tuple[float, float, float, float]  # left, bottom, right, top (points, y up)
_LABEL_FONT = 7.0
_MARKER_RADIUS = 2.6  # a funnel point (scatter s=18: about 4.2 points across) and a margin
_RINGS = (3.0, 9.0, 16.0, 24.0, 33.0, 43.0)  # label distances tried, nearest first


def _candidates(w: float, h: float) -> list[tuple[float, float]]:
    """Lower-left corners of a w x h label around a point at (0, 0): right, left, above, below,
    then the diagonals, on rings further and further out."""
    out = []
    for r in _RINGS:
        d = r * 0.75
        out += [(r, -h / 2), (-r - w, -h / 2), (-w / 2, r), (-w / 2, -r - h),
                (d, d), (d, -d - h), (-d - w, d), (-d - w, -d - h)]
    return out


def _overlap(a: Box, b: Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def place_labels(anchors: Sequence[tuple[float, float]], sizes: Sequence[tuple[float, float]], bounds: Box,
                 pad: float = 1.0) -> list[tuple[float, float]]:
    """Where to put each anchor's label: the offset (points) from the anchor to the label's
    lower-left corner. Greedy in the order given, each label takes the nearest candidate
    position (:func:`_candidates`) whose box, padded by ``pad``, overlaps no label already
    placed and no anchor's marker, and stays within ``bounds``; when none is free, the one
    overlapping least. Deterministic: the same input gives the same offsets."""
    markers = [(x - _MARKER_RADIUS, y - _MARKER_RADIUS, x + _MARKER_RADIUS, y + _MARKER_RADIUS) for x, y in anchors]
    placed: list[Box] = []
    offsets = []
    for (x, y), (w, h) in zip(anchors, sizes, strict=True):
        best: tuple[float, tuple[float, float]] | None = None
        for dx, dy in _candidates(w, h):
            box = (x + dx - pad, y + dy - pad, x + dx + w + pad, y + dy + h + pad)
            inside = bounds[0] <= box[0] and box[2] <= bounds[2] and bounds[1] <= box[1] and box[3] <= bounds[3]
            cost = sum(_overlap(box, other) for other in placed) + sum(_overlap(box, m) for m in markers)
            cost += 0.0 if inside else w * h
            if best is None or cost < best[0]:
                best = (cost, (dx, dy))
            if cost == 0.0:
                break
        assert best is not None
        dx, dy = best[1]
        placed.append((x + dx, y + dy, x + dx + w, y + dy + h))
        offsets.append((dx, dy))
    return offsets


def _label_points(ax: Any, fig: Figure, xs: Sequence[float], ys: Sequence[float], names: Sequence[str]) -> None:
    """Each point's name beside it, placed by :func:`place_labels` (a thin leader line when it
    had to move away from its point). Call once the axes' limits are final."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    scale = 72.0 / fig.dpi  # display pixels -> points
    anchors = [(px * scale, py * scale) for px, py in ax.transData.transform(list(zip(xs, ys, strict=True)))]
    (x0, y0), (x1, y1) = ax.transAxes.transform([(0.0, 0.0), (1.0, 1.0)]) * scale
    # measured in DejaVu Sans (shipped with matplotlib, the page's first choice), with a margin
    # for a reader's browser that falls back to a wider face
    prop = FontProperties(family="DejaVu Sans", size=_LABEL_FONT)
    measure = TextToPath()
    sizes = []
    for name in names:
        w, h, _ = measure.get_text_width_height_descent(name, prop, ismath=False)
        sizes.append((w * 1.1, max(h, _LABEL_FONT)))
    offsets = place_labels(anchors, sizes, (x0, y0, x1, y1))
    for x, y, name, (dx, dy), (w, h) in zip(xs, ys, names, offsets, sizes, strict=True):
        far = min(abs(dx), abs(dx + w)) > _RINGS[0] + 1 or min(abs(dy), abs(dy + h)) > _RINGS[0] + 1
        leader = {"arrowstyle": "-", "color": COMMON, "lw": 0.5, "shrinkA": 0.5, "shrinkB": 2.5} if far else None
        ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", ha="left", va="bottom",
                    fontsize=_LABEL_FONT, arrowprops=leader)


def funnel_chart(
    chart_id: str,
    title: str,
    target: float,
    tau2: float,
    points: Sequence[Mapping[str, Any]],
    limits: Any,
) -> tuple[str, int]:
    """A proportion funnel: each shown team's rate against its denominator, the provider's
    rate, and the 95% and 99.8% limits (``limits(n, z) -> (lower, upper)``). Returns the SVG
    and the number of points drawn."""
    from board.stats import Z95, Z998

    with matplotlib.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(4.6, 3.0))
        sizes = [int(p["denominator"]) for p in points]
        top = max(sizes + [10]) * 1.15
        grid = [max(1.0, top * i / 200) for i in range(1, 201)]
        for z, style, label in ((Z95, "--", "95%"), (Z998, "-", "99.8%")):
            lows, highs = zip(*(limits(n, z) for n in grid), strict=True)
            ax.plot(grid, [v * 100 for v in lows], color=COMMON, linestyle=style, linewidth=0.8, label=label)
            ax.plot(grid, [v * 100 for v in highs], color=COMMON, linestyle=style, linewidth=0.8)
        ax.axhline(target * 100, color=LINE, linewidth=1.0, label="provider")
        ys = [float(p["rate"]) * 100 for p in points]
        # the y range follows the teams and the 99.8% limits at half the smallest team, not the
        # funnel's mouth near n = 0, where the limits span almost 0 to 100%
        low, high = limits(max(1.0, (min(sizes) if sizes else 10) / 2), Z998)
        ax.set_ylim(max(0.0, min([low * 100, *ys]) - 3), min(100.0, max([high * 100, *ys]) + 3))
        colours = [CONCERN if p.get("outlier") else IMPROVEMENT for p in points]
        dots = ax.scatter(sizes, ys, c=colours, s=18, zorder=3)
        dots.set_gid(f"{chart_id}-points")
        ax.set_xlabel("cases (denominator)")
        ax.set_ylabel("%")
        ax.set_xlim(0, top)
        order = sorted(range(len(points)), key=lambda i: (sizes[i], ys[i]))
        _label_points(ax, fig, [sizes[i] for i in order], [ys[i] for i in order],
                      [str(points[i]["team"]) for i in order])
        ax.legend(fontsize=6, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3)
        ax.grid(axis="y", color="#e5e5e5", linewidth=0.5)
        return _svg(fig, chart_id, title), len(points)

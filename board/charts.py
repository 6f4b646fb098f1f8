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
        low, high = limits(max(1.0, min(sizes + [10]) / 2), Z998)
        ax.set_ylim(max(0.0, min([low * 100, *ys]) - 3), min(100.0, max([high * 100, *ys]) + 3))
        colours = [CONCERN if p.get("outlier") else IMPROVEMENT for p in points]
        dots = ax.scatter(sizes, ys, c=colours, s=18, zorder=3)
        dots.set_gid(f"{chart_id}-points")
        order = sorted(range(len(points)), key=lambda i: (sizes[i], ys[i]))
        for rank, i in enumerate(order):  # alternate labels above and below so neighbours do not overlap
            ax.annotate(str(points[i]["team"]), (sizes[i], ys[i]), xytext=(3, 4 if rank % 2 == 0 else -9),
                        textcoords="offset points", fontsize=7)
        ax.set_xlabel("cases (denominator)")
        ax.set_ylabel("%")
        ax.set_xlim(0, top)
        ax.legend(fontsize=6, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3)
        ax.grid(axis="y", color="#e5e5e5", linewidth=0.5)
        return _svg(fig, chart_id, title), len(points)

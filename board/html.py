"""The board and commissioner report: one self-contained HTML page from a replay report.

:func:`render_html` takes the machine report (with or without ``spc``, ``changes``,
``funnels``, ``case_mix`` and ``value``) and returns the page. Small cells are suppressed
by the policy given (:mod:`board.suppress`); everything the page needs is inline (styles,
SVG charts, icons), so it opens from an email attachment without a network.
:func:`print_pdf` prints a written page with headless Chromium.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from board import charts
from board.sections import NOT_COMPARED
from board.stats import proportion_limits
from board.suppress import SuppressionPolicy, suppress_group
from board.text import (
    ASSURANCE_TEXT,
    DEFINITIONS,
    DIRECTION,
    GRADE_TEXT,
    MEASURE_ORDER,
    VARIATION_TEXT,
    dead_letter_kind,
    label,
)

ALL_TEAMS = "*"


@dataclass
class Suppressed:
    """What the page hid, to list under methods and to test against."""

    measures: set[tuple[str, str]] = field(default_factory=set)  # (measure, team)
    weeks: set[tuple[str, str, str]] = field(default_factory=set)  # (measure, team, week)
    value_lines: set[str] = field(default_factory=set)
    latest: set[tuple[str, str]] = field(default_factory=set)  # (measure, team): the matrix's value and n

    def describe(self) -> list[str]:
        lines = []
        if self.measures:
            cells = ", ".join(f"{label(m)} / {_team(t)}" for m, t in sorted(self.measures))
            lines.append(f"{len(self.measures)} measure cells: {cells}")
        if self.latest:
            lines.append(f"{len(self.latest)} latest-week values in the summary matrix")
        if self.weeks:
            lines.append(f"{len(self.weeks)} weekly chart points (small counts)")
        if self.value_lines:
            lines.append(f"value lines: {', '.join(sorted(self.value_lines))}")
        return lines


def _team(team: str) -> str:
    return "all teams" if team == ALL_TEAMS else team


def _measure_key(measure: str) -> tuple[int, str]:
    return (MEASURE_ORDER.index(measure) if measure in MEASURE_ORDER else len(MEASURE_ORDER), measure)


def _team_key(team: str) -> tuple[int, str]:
    return (0 if team == ALL_TEAMS else 2 if team == "unassigned" else 1, team)


def _suppress_measures(rows: Sequence[Mapping[str, Any]], policy: SuppressionPolicy) -> set[tuple[str, str]]:
    by_measure: dict[str, dict[str, tuple[int, int]]] = {}
    for r in rows:
        by_measure.setdefault(r["measure"], {})[r["team"]] = (int(r["numerator"]), int(r["denominator"]))
    hidden: set[tuple[str, str]] = set()
    for measure, cells in by_measure.items():
        total = cells.pop(ALL_TEAMS, None)
        teams, hide_total = suppress_group(cells, total, policy)
        hidden |= {(measure, t) for t in teams}
        if hide_total:
            hidden.add((measure, ALL_TEAMS))
    return hidden


def _small_weeks(spc: Sequence[Mapping[str, Any]], policy: SuppressionPolicy) -> set[tuple[str, str, str]]:
    """(measure, team, week) of every weekly point whose own counts are small: the charts do
    not draw them. Charts show rates without counts, so the other teams' rates and the total
    give no hidden point away and the charts need no complementary suppression."""
    return {
        (entry["measure"], entry["team"], p["week"])
        for entry in spc
        for p in entry.get("points", [])
        if policy.cell_small(int(p["numerator"]), int(p["denominator"]))
    }


def _suppress_weeks(spc: Sequence[Mapping[str, Any]], policy: SuppressionPolicy) -> set[tuple[str, str, str]]:
    """(measure, team, week) hidden where a week's counts are shown (the matrix's value and n):
    small cells and their complements across the teams of the same week."""
    groups: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
    for entry in spc:
        for p in entry.get("points", []):
            groups.setdefault((entry["measure"], p["week"]), {})[entry["team"]] = (
                int(p["numerator"]), int(p["denominator"]))
    hidden: set[tuple[str, str, str]] = set()
    for (measure, week), cells in groups.items():
        total = cells.pop(ALL_TEAMS, None)
        teams, hide_total = suppress_group(cells, total, policy)
        hidden |= {(measure, t, week) for t in teams}
        if hide_total:
            hidden.add((measure, ALL_TEAMS, week))
    return hidden


def _pct(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value * 100:.{digits}f}%"


def _count(value: int) -> str:
    return f"{value:,}"


def _when(iso: str | None) -> str:
    """An RFC 3339 instant as a reader writes it: 4 August 2025, 00:00 (UTC+00:00)."""
    if not iso:
        return "no events"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return f"{moment.day} {moment:%B %Y, %H:%M} ({moment:%Z})" if moment.tzinfo else iso


def _points(value: float | None) -> str:
    """A difference of two rates in percentage points, signed."""
    return "" if value is None else f"{value * 100:+.1f} pts"


def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _money(value: float, currency: str) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}{currency} {abs(value):,.0f}"


def _changes_for(changes: Sequence[Mapping[str, Any]], team: str, measure: str) -> list[Mapping[str, Any]]:
    """The service changes drawn on ``team``'s chart of ``measure``: the team's own and the
    provider-wide (``*``) ones that name the measure or name none."""
    return [
        c for c in changes
        if c.get("team") in (team, ALL_TEAMS) and (not c.get("measures") or measure in c["measures"])
    ]


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("board", "templates"),
        autoescape=select_autoescape(["j2", "html"], default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    env.filters["count"] = _count
    env.filters["points"] = _points
    env.filters["when"] = _when
    env.filters["label"] = label
    env.filters["team"] = _team
    env.filters["money"] = _money
    return env


def pathwatch_version() -> str:
    try:
        return metadata.version("pathwatch")
    except metadata.PackageNotFoundError:
        return "unknown"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def render_html(
    report: Mapping[str, Any],
    *,
    provider: str = "Provider",
    policy: SuppressionPolicy | None = None,
    input_sha256: str | None = None,
    input_name: str | None = None,
    version: str | None = None,
    min_weekly_denominator: int | None = None,
) -> str:
    """The board report page for ``report`` (a section 6 report, optionally with ``spc``,
    ``changes``, ``funnels``, ``case_mix`` and ``value``). Cells are suppressed by ``policy``
    (default: counts under 5). A chart with no week to draw is a line saying why, naming
    ``min_weekly_denominator`` (the setting that left its weeks out) when given. Process
    limits are shown within [0%, 100%]; ``report`` is not changed. Deterministic: the same
    arguments give the same page."""
    policy = policy or SuppressionPolicy.named("small_cell", 5)
    view = _view(report, policy, min_weekly_denominator)
    view.update(
        provider=provider,
        input_sha256=input_sha256,
        input_name=input_name,
        version=version or pathwatch_version(),
        policy=policy.describe(),
    )
    return _environment().get_template("report.html.j2").render(**view)


def _no_week(points: Sequence[Mapping[str, Any]], min_weekly_denominator: int | None, shown: int = 0) -> str:
    """Why a chart is not drawn: its series holds no judged week, every week is suppressed, or
    most are (``shown`` weeks left, fewer than half)."""
    if points and shown:
        return "most weeks' counts were too small to show, and the few weeks left would give a biased picture"
    if points:
        return "every week's counts were too small to show"
    if min_weekly_denominator is None:
        return "no week reached the minimum weekly denominator"
    if min_weekly_denominator <= 1:
        return "no week had a case to count"
    return f"no week reached the minimum weekly denominator of {min_weekly_denominator}"


def _shown_limit(value: float | None) -> float | None:
    return None if value is None else charts.shown_limit(float(value))


def _view(
    report: Mapping[str, Any], policy: SuppressionPolicy, min_weekly_denominator: int | None = None
) -> dict[str, Any]:
    suppressed = Suppressed()
    measures = list(report.get("measures", []))
    suppressed.measures = _suppress_measures(measures, policy)
    spc = list(report.get("spc") or [])
    changes = list(report.get("changes") or [])
    suppressed.weeks = _small_weeks(spc, policy)
    counts_hidden = _suppress_weeks(spc, policy)
    change_keys = {c.get("change_id"): f"C{i}" for i, c in enumerate(
        sorted(changes, key=lambda c: (str(c.get("time")), str(c.get("change_id")))), start=1)}

    headline, teams, table = _table_view(measures, suppressed)
    matrix, chart_groups = _spc_view(spc, changes, change_keys, suppressed, counts_hidden, min_weekly_denominator)
    change_cards = _change_cards(spc, changes, change_keys, suppressed)
    funnel_views = _funnel_views(report, suppressed)
    case_mix, cm_views = _case_mix_views(report, policy, suppressed)
    value = _value_view(report, policy, suppressed)
    events = {"accepted": 0, "duplicates": 0, "dead_letters": 0, "corrections": 0, **report.get("events", {})}
    waits = [w for w in report.get("waits", []) if w.get("team") == ALL_TEAMS]
    return {
        "watermark": report.get("watermark"),
        "period": _period(spc),
        "headline": headline,
        "teams": teams,
        "table": table,
        "waits": [{**w, "hidden": policy.small(int(w.get("count", 0)))} for w in waits],
        "matrix": matrix,
        "has_spc": bool(spc),
        "charts": [
            (m, *_drawn_and_empty(chart_groups[m]), _instead(m, chart_groups[m], {f["measure"] for f in funnel_views if f["drawn"]}))
            for m in sorted(chart_groups, key=_measure_key)
        ],
        "changes": change_cards,
        "funnels": funnel_views,
        "case_mix_note": case_mix.get("note"),
        "case_mix": cm_views,
        "value": value,
        "events": events,
        "dead_letter_kinds": [
            (dead_letter_kind(kind), n) for kind, n in sorted((events.get("dead_letters_by_kind") or {}).items())
        ],
        "definitions": [(m, DEFINITIONS[m]) for m in [*MEASURE_ORDER, "referral_wait_days"]],
        "suppressed": suppressed.describe(),
        "variation_text": VARIATION_TEXT,
        "assurance_text": ASSURANCE_TEXT,
        "not_compared": sorted(NOT_COMPARED - {ALL_TEAMS}),
    }




def _table_view(measures: list[dict[str, Any]], suppressed: Suppressed) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]]:
    """The headline measures (all teams), the teams, and the measure-by-team table."""
    def cell(measure: str, team: str, row: Mapping[str, Any]) -> dict[str, Any]:
        hidden = (measure, team) in suppressed.measures
        num, den = int(row["numerator"]), int(row["denominator"])
        return {
            "hidden": hidden,
            "numerator": num,
            "denominator": den,
            "rate": None if hidden or den == 0 else num / den,
        }

    rows = {(r["measure"], r["team"]): r for r in measures}
    headline = [
        {"measure": m, "direction": DIRECTION.get(m, ""), **cell(m, ALL_TEAMS, rows[(m, ALL_TEAMS)])}
        for m in sorted({m for m, _ in rows}, key=_measure_key)
        if (m, ALL_TEAMS) in rows
    ]
    teams = sorted({t for _, t in rows}, key=_team_key)
    table = [
        {"measure": m, "cells": [cell(m, t, rows[(m, t)]) if (m, t) in rows else None for t in teams]}
        for m in sorted({m for m, _ in rows}, key=_measure_key)
    ]
    return headline, teams, table


def _spc_view(spc: list[dict[str, Any]], changes: list[dict[str, Any]], change_keys: dict[Any, str], suppressed: Suppressed,
    counts_hidden: set[tuple[str, str, str]], min_weekly_denominator: int | None,
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The Making Data Count summary matrix and each measure's weekly charts per team."""
    matrix: list[dict[str, Any]] = []
    chart_groups: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted(spc, key=lambda e: (_measure_key(e["measure"]), _team_key(e["team"]))):
        measure, team = entry["measure"], entry["team"]
        points = list(entry.get("points", []))
        hidden_weeks = {w for (m, t, w) in suppressed.weeks if m == measure and t == team}
        last = points[-1] if points else None
        last_hidden = last is None or (measure, team, last["week"]) in counts_hidden
        if last is not None and last_hidden:
            suppressed.latest.add((measure, team))
        own_changes = _changes_for(changes, team, measure)
        rebase = None
        if last is not None and int(last.get("group", 0)) > 0:
            start = min(p["week"] for p in points if p.get("group") == last.get("group"))
            before = [c for c in own_changes if str(c.get("time", ""))[:10] <= start]
            rebase = {"week": start, "change": before[-1] if before else None}
        if last is None:
            # one line per measure for the teams with no judged week, not a row of blanks each
            if matrix and matrix[-1]["measure"] == measure and "teams" in matrix[-1]:
                matrix[-1]["teams"].append(team)
            else:
                matrix.append({"measure": measure, "teams": [team], "why": _no_week(points, min_weekly_denominator)})
        else:
            matrix.append(
                {
                    "measure": measure,
                    "team": team,
                    "week": last["week"],
                    "value": None if last_hidden else last.get("value"),
                    "n": None if last_hidden else last.get("denominator"),
                    "hidden": last_hidden,
                    "mean": last.get("mean"),
                    "lower": _shown_limit(last.get("lower")),
                    "upper": _shown_limit(last.get("upper")),
                    "trial": bool(last.get("trial")),
                    "target": entry.get("target"),
                    "variation": entry.get("variation"),
                    "assurance": entry.get("assurance"),
                    "rules": [] if last_hidden else list(last.get("rules", [])),
                    "rebase": rebase,
                }
            )
        chart_id = f"spc-{measure}-{team if team != ALL_TEAMS else 'all'}".replace("_", "-")
        markers = [(str(c.get("time", ""))[:10], change_keys[c.get("change_id")]) for c in own_changes]
        n_shown = sum(1 for p in points if p["week"] not in hidden_weeks and p.get("value") is not None)
        # small counts are hidden on one side of the rate only (few events, or few without), so
        # the weeks left when most are hidden are a biased few: such a chart is not drawn
        drawable = n_shown > 0 and 2 * n_shown >= len(points)
        # an empty date axis would show matplotlib's epoch (Dec 69, Jan 70): no plot, a reason
        svg, drawn = charts.spc_chart(
            chart_id, f"{label(measure)}, {_team(team)}: weekly values", points, hidden_weeks,
            entry.get("target"), markers, subtitle=_team(team),
        ) if drawable else ("", 0)
        chart_groups.setdefault(measure, []).append(
            {"team": team, "svg": svg, "points": drawn, "id": chart_id, "hidden": len(hidden_weeks),
             "empty": None if drawable else _no_week(points, min_weekly_denominator, n_shown),
             "changes": [(change_keys[c.get("change_id")], c.get("description", "")) for c in own_changes]}
        )
    return matrix, chart_groups


def _change_cards(spc: list[dict[str, Any]], changes: list[dict[str, Any]], change_keys: dict[Any, str], suppressed: Suppressed
) -> list[dict[str, Any]]:
    """A card per service change: its before/after charts and its evidence."""
    series = {(e["measure"], e["team"]): e for e in spc}
    change_cards = []
    for c in sorted(changes, key=lambda c: (str(c.get("time")), str(c.get("change_id")))):
        evidence = c.get("evidence") or {}
        key = change_keys[c.get("change_id")]
        card_charts = []
        for m, e in sorted(evidence.items(), key=lambda kv: _measure_key(kv[0])):
            entry = series.get((m, str(c.get("team") or ALL_TEAMS)))
            if entry is None or not e.get("previous") or not e.get("first_week"):
                continue
            chart_id = "change-" + re.sub(r"[^a-z0-9]+", "-", f"{c.get('change_id')}-{m}".lower()).strip("-")
            hidden_weeks = {w for (mm, t, w) in suppressed.weeks if mm == m and t == entry["team"]}
            if not any(p["week"] not in hidden_weeks and p.get("value") is not None for p in entry.get("points", [])):
                continue
            svg, drawn = charts.spc_chart(
                chart_id, f"{label(m)}, {_team(entry['team'])}: before and after {key}",
                entry.get("points", []), hidden_weeks, entry.get("target"),
                [(str(c.get("time", ""))[:10], key)], subtitle=f"{label(m)}, {_team(entry['team'])}",
                carried=(str(e["first_week"]), e["previous"]),
            )
            card_charts.append({"measure": m, "team": entry["team"], "svg": svg, "points": drawn, "id": chart_id})
        change_cards.append(
            {
                "key": key,
                "change": c,
                "charts": card_charts,
                "evidence": [
                    {"measure": m, "grade_text": GRADE_TEXT.get(str(e.get("grade")), str(e.get("grade"))), **e}
                    for m, e in sorted(evidence.items(), key=lambda kv: _measure_key(kv[0]))
                ],
            }
        )
    return change_cards


def _funnel_views(report: Mapping[str, Any], suppressed: Suppressed) -> list[dict[str, Any]]:
    """The funnel plots, without the teams whose cells are suppressed."""
    funnel_views = []
    for f in sorted(report.get("funnels") or [], key=lambda f: _measure_key(f["measure"])):
        shown = [p for p in f["points"] if (f["measure"], p["team"]) not in suppressed.measures]
        hidden_teams = [p["team"] for p in f["points"] if (f["measure"], p["team"]) in suppressed.measures]
        chart_id = f"funnel-{f['measure']}".replace("_", "-")
        tau2 = float(f.get("tau2") or 0.0)
        target = float(f["target"])
        svg, drawn = charts.funnel_chart(
            chart_id, f"{label(f['measure'])}: teams against the provider's rate", target, tau2, shown,
            lambda n, z, t=target, tau=tau2: proportion_limits(t, n, z, tau),
        ) if shown else ("", 0)
        funnel_views.append({**f, "shown": shown, "hidden_teams": hidden_teams, "svg": svg, "drawn": drawn,
                             "id": chart_id})
    return funnel_views


def _case_mix_views(report: Mapping[str, Any], policy: SuppressionPolicy, suppressed: Suppressed
) -> tuple[Mapping[str, Any], list[dict[str, Any]]]:
    """The case-mix tables, small observed counts (and a complement) suppressed."""
    case_mix = report.get("case_mix") or {"note": None, "measures": []}
    cm_views = []
    for m in sorted(case_mix.get("measures", []), key=lambda m: _measure_key(m["measure"])):  # the board's order
        teams_rows = []
        for row in m["teams"]:
            hidden = policy.small(int(row["observed"])) or (m["measure"], row["team"]) in suppressed.measures
            if hidden:
                suppressed.measures.add((m["measure"], row["team"]))
            teams_rows.append({**row, "hidden": hidden})
        # one hidden observed count beside the others and their total would give it away
        if sum(r["hidden"] for r in teams_rows) == 1:
            rest = sorted((r for r in teams_rows if not r["hidden"]), key=lambda r: (r["denominator"], r["team"]))
            if rest:
                rest[0]["hidden"] = True
                suppressed.measures.add((m["measure"], rest[0]["team"]))
        cm_views.append({**m, "teams": teams_rows})
    return case_mix, cm_views


def _value_view(report: Mapping[str, Any], policy: SuppressionPolicy, suppressed: Suppressed) -> dict[str, Any]:
    """The value ledger, lines over small cells hidden and then no totals."""
    value = dict(report.get("value") or {"note": "This report has no value section.", "lines": [], "totals": []})
    value_lines = []
    for line in value.get("lines", []):
        comp = line.get("comparison")
        hidden = bool(comp) and policy.cell_small(int(comp["numerator"]), int(comp["denominator"]))
        if hidden:
            suppressed.value_lines.add(line["measure"])
        value_lines.append({**line, "hidden": hidden})
    value["lines"] = value_lines
    if suppressed.value_lines:
        value["totals"] = []  # a total beside a hidden line would give it away
    return value


def _drawn_and_empty(group: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[tuple[str, list[str]]]]:
    """A measure's charts: those drawn, and (why, teams) for the rest, one line per reason."""
    empty: dict[str, list[str]] = {}
    for c in group:
        if c["empty"]:
            empty.setdefault(c["empty"], []).append(c["team"])
    return [c for c in group if not c["empty"]], list(empty.items())


def _instead(measure: str, group: Sequence[dict[str, Any]], on_funnels: set[str]) -> str | None:
    """What a reader looks at for the teams of ``measure`` with no weekly chart (the lines
    above it name them and say why; a rare event is too rare per team and week, docs/board.md):
    the team's whole-period rate on the measure's funnel plot, and the trend on the all-teams
    chart. None when every team has its chart, or neither is on the page. ``unassigned`` is
    not a team and is on no funnel plot: it does not count."""
    if not any(c["empty"] and c["team"] not in NOT_COMPARED for c in group):
        return None
    trend = any(c["team"] == ALL_TEAMS and not c["empty"] for c in group)
    pointers = []
    if measure in on_funnels:
        pointers.append("each team's rate over the whole period, where the numbers are large enough to show, is "
                        "compared on this measure's funnel plot (section 4, Teams compared)")
    if trend:
        pointers.append("the trend over time is on the all-teams chart above")
    if not pointers:
        return None
    return "Instead: " + "; ".join(pointers) + "."


def _period(spc: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    weeks = [p["week"] for e in spc for p in e.get("points", [])]
    return (min(weeks), max(weeks)) if weeks else None


def print_pdf(html_path: Path, pdf_path: Path, chromium: str | None = None, timeout: float = 120.0) -> None:
    """Print ``html_path`` to ``pdf_path`` with headless Chromium (Debian's ``chromium``).
    Raises RuntimeError naming what went wrong when Chromium is missing or fails."""
    binary = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise RuntimeError("--pdf needs Chromium: install Debian's chromium package (apt-get install chromium)")
    command = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
        f"--print-to-pdf={pdf_path.resolve()}", html_path.resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)  # noqa: S603 (a fixed argument list, no shell)
    if result.returncode != 0 or not pdf_path.exists() or pdf_path.stat().st_size == 0:
        tail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise RuntimeError(f"chromium could not print {html_path} ({result.returncode}): {' | '.join(tail)}")

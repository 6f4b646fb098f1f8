"""The terminal summary ``replay`` and ``report --from-live`` print (the report's data, for people).

It is human-facing, so it suppresses cells with a numerator or denominator under
``small_cell`` (DOMAIN.md section 5), shown as ``<n``. It fits an 80-column terminal:
measures go by short labels (:data:`SHORT_LABELS`, from the catalogue) and the tables have
no vertical rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from schemas.catalogue import MEASURE_CATALOGUE, RATE_MEASURES
from schemas.model import ALL_TEAMS

SHORT_LABELS: Mapping[str, str] = {m.name: m.short for m in MEASURE_CATALOGUE}

# Making Data Count icons in a few letters (legend printed under the table)
VARIATION_CODES: Mapping[str, str] = {
    "common_cause": "cc",
    "improvement_high": "imp H",
    "improvement_low": "imp L",
    "concern_high": "con H",
    "concern_low": "con L",
}
ASSURANCE_CODES: Mapping[str, str] = {"consistent_pass": "P", "consistent_fail": "F", "inconsistent": "?"}
ICON_LEGEND = (
    "variation: cc common cause, imp improvement, con concern, H/L high/low; "
    "assurance: P pass, F fail, ? inconsistent; * trial limits; - no judged weeks"
)


def _short(measure: str) -> str:
    return SHORT_LABELS.get(measure, measure)


def _table(title: str, columns: list[str]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False)
    table.add_column("measure", no_wrap=True)
    for team in columns:
        table.add_column("all teams" if team == ALL_TEAMS else team, justify="right", overflow="fold")
    return table


def icon_cell(entry: Mapping[str, Any]) -> str:
    """A chart's icons in a few letters: variation, ``/`` assurance, ``*`` when the latest
    limits are trial limits; ``-`` for a chart without judged weeks."""
    if not entry["points"] or entry["variation"] is None:
        return "-"
    cell = VARIATION_CODES[entry["variation"]]
    if entry["assurance"] is not None:
        cell += "/" + ASSURANCE_CODES[entry["assurance"]]
    return cell + ("*" if entry["points"][-1]["trial"] else "")


def _cell(num: int, den: int, small_cell: int) -> str:
    if den == 0:
        return "-"
    if small_cell and (num < small_cell or den < small_cell):
        return f"<{small_cell}"
    return f"{num}/{den}\n({num / den:.0%})"


def render_summary(report: Mapping[str, Any], console: Console, small_cell: int = 5) -> None:
    """Print measures per team, waits, the Making Data Count icons (when the report has
    ``"spc"``), alerts raised and event counts."""
    rows: dict[tuple[str, str], tuple[int, int]] = {
        (r["measure"], r["team"]): (r["numerator"], r["denominator"]) for r in report["measures"]
    }
    teams = sorted({team for _, team in rows} - {ALL_TEAMS})
    columns = [ALL_TEAMS, *teams]
    table = _table(f"Measures (watermark {report['watermark']})", columns)
    for measure in RATE_MEASURES:
        table.add_row(_short(measure), *(_cell(*rows.get((measure, team), (0, 0)), small_cell) for team in columns))
    waits = {r["team"]: r for r in report["waits"]}
    cells = []
    for team in columns:
        w = waits.get(team)
        if w is None or not w["count"]:
            cells.append("-")
        elif small_cell and w["count"] < small_cell:
            cells.append(f"<{small_cell}")
        else:
            cells.append(f"p50 {w['p50']:.1f}\np90 {w['p90']:.1f}\nn={w['count']}")
    table.add_row(_short("referral_wait_days"), *cells)
    console.print(table)
    if "spc" in report:
        charts = {(e["measure"], e["team"]): e for e in report["spc"]}
        icons = _table("Making Data Count icons (weekly, latest point)", columns)
        for measure in RATE_MEASURES:
            icons.add_row(
                _short(measure), *(icon_cell(charts[(measure, t)]) if (measure, t) in charts else "-" for t in columns)
            )
        console.print(icons)
        console.print(ICON_LEGEND)

    counts: dict[tuple[str, str], int] = {}
    for alert in report["alerts"]:
        key = (alert["labels"].get("alertname", "?"), alert["status"])
        counts[key] = counts.get(key, 0) + 1
    alerts = Table(title="Alerts raised", box=box.SIMPLE_HEAD)
    alerts.add_column("alertname")
    alerts.add_column("firing", justify="right")
    alerts.add_column("resolved", justify="right")
    for name in sorted({n for n, _ in counts}):
        alerts.add_row(name, str(counts.get((name, "firing"), 0)), str(counts.get((name, "resolved"), 0)))
    console.print(alerts)
    ev = report["events"]
    console.print(
        f"events: {ev['accepted']} accepted, {ev['duplicates']} duplicates, "
        f"{ev['dead_letters']} dead letters, {ev['corrections']} corrections"
    )


def write_board(board: Any, report: dict[str, Any], html: Path, pdf: Path | None, events: Any, console: Console) -> bool:
    """Write the board report's HTML (and PDF); print why and return False when it cannot."""
    try:
        board.write(report, html, pdf, events)
    except (OSError, RuntimeError) as exc:
        console.print(f"[red]error:[/] cannot write the board report: {exc}")
        return False
    return True

"""The replay report: byte-stable JSON (DOMAIN.md section 6) and a readable terminal summary.

The JSON is written with sorted keys, two-space indentation and a trailing newline, so the same
input gives byte-identical reports. The machine report is unsuppressed (section 6); the
terminal summary is human-facing and suppresses cells with a numerator or denominator under
``small_cell`` (section 5), shown as ``<n``. The summary fits an 80-column terminal: measures
go by short labels (:data:`SHORT_LABELS`) and the tables have no vertical rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table

from schemas.model import ALL_TEAMS
from streams.core import RATE_MEASURES

if TYPE_CHECKING:
    from streams.windows import TeamWindows

# (windows, watermark, teams, rebase dates per (team, measure): the service changes) -> "spc"
Charts = Callable[["TeamWindows", datetime, list[str], Mapping[tuple[str, str], Sequence[date]]], list[dict[str, Any]]]
"""(windows, watermark, teams) -> the report's ``"spc"`` entries (``alerts.rules.SystemAlertRules.charts``)."""

SHORT_LABELS: Mapping[str, str] = {
    "followup_72h": "fu_72h",
    "followup_7d": "fu_7d",
    "followup_30d": "fu_30d",
    "readmission_30d": "readm_30d",
    "seen_within_target": "seen_in_tgt",
    "lost_before_contact": "lost_b4_1st",
    "first_contact_dna": "dna_1st",
    "repeat_crisis_30d": "crisis_30d",
    "referral_wait_days": "wait_days",
}

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


def spc_section(
    report: Mapping[str, Any],
    windows: TeamWindows,
    charts: Charts,
    rebase: Mapping[tuple[str, str], Sequence[date]] | None = None,
) -> list[dict[str, Any]]:
    """The report's ``"spc"``: the Making Data Count chart of ``*`` and every team of the
    report's ``measures``, for every rate measure, at the report's watermark, with new groups
    at ``rebase`` (per (team, measure): the recorded service changes); empty when it has none
    (no event). The replay and ``report --from-live`` both build it here, so the same windows
    and watermark give the same section."""
    if report.get("watermark") is None:
        return []
    teams = sorted({row["team"] for row in report["measures"]} - {ALL_TEAMS})
    return charts(windows, datetime.fromisoformat(report["watermark"]), teams, rebase or {})


def strata_sections(windows: TeamWindows) -> dict[str, list[dict[str, Any]]]:
    """The report's ``"strata"`` (whole-history counts per rate measure, team and case-mix
    stratum: the board's case-mix cells) and ``"strata_weekly"`` (all teams' weekly counts per
    rate measure and stratum: the value ledger's ED-crisis line), docs/board.md. The replay
    and ``report --from-live`` both build them here."""
    return {
        "strata": [
            {"measure": r.measure, "team": r.team, "stratum": r.stratum, "numerator": r.numerator,
             "denominator": r.denominator}
            for r in windows.strata()
        ],
        "strata_weekly": [
            {"measure": r.measure, "stratum": r.stratum, "week": r.week_start.isoformat(),
             "numerator": r.numerator, "denominator": r.denominator}
            for r in windows.strata_weeks()
        ],
    }


def dumps_report(report: Mapping[str, Any]) -> bytes:
    """The report as UTF-8 JSON bytes: sorted keys, deterministic."""
    return (json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


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


def replay_verdict(report: Mapping[str, Any], source: str) -> tuple[int, str | None]:
    """The exit status of a replay and a hint when its input looks wrong.

    1 with a hint when the input held no records, or when every record was a dead letter
    (a CSV or other non-event file, or a format replay does not read); else 0 and None."""
    ev = report["events"]
    dead = ev["dead_letters"]
    if ev["accepted"] or ev["duplicates"]:
        return 0, None
    if not dead:
        return 1, f"no records in {source}: nothing to replay (an empty file?)"
    return 1, (
        f"{dead} of {dead} records were dead letters: is this the right file/format? "
        f"(pathwatch validate {source} names each record's error)"
    )

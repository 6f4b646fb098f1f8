"""The replay report: byte-stable JSON (DOMAIN.md section 6) and a readable terminal summary.

The JSON is written with sorted keys, two-space indentation and a trailing newline, so the same
input gives byte-identical reports. The machine report is unsuppressed (section 6); the
terminal summary is human-facing and suppresses cells with a numerator or denominator under
``small_cell`` (section 5), shown as ``<n``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from schemas.model import ALL_TEAMS
from streams.core import RATE_MEASURES


def dumps_report(report: Mapping[str, Any]) -> bytes:
    """The report as UTF-8 JSON bytes: sorted keys, deterministic."""
    return (json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _cell(num: int, den: int, small_cell: int) -> str:
    if den == 0:
        return "-"
    if small_cell and (num < small_cell or den < small_cell):
        return f"<{small_cell}"
    return f"{num}/{den} ({num / den:.0%})"


def render_summary(report: Mapping[str, Any], console: Console, small_cell: int = 5) -> None:
    """Print measures per team, waits, alerts raised and event counts."""
    rows: dict[tuple[str, str], tuple[int, int]] = {
        (r["measure"], r["team"]): (r["numerator"], r["denominator"]) for r in report["measures"]
    }
    teams = sorted({team for _, team in rows} - {ALL_TEAMS})
    columns = [ALL_TEAMS, *teams]
    table = Table(title=f"Measures (watermark {report['watermark']})", show_lines=False)
    table.add_column("measure")
    for team in columns:
        table.add_column("all teams" if team == ALL_TEAMS else team, justify="right")
    for measure in RATE_MEASURES:
        table.add_row(measure, *(_cell(*rows.get((measure, team), (0, 0)), small_cell) for team in columns))
    waits = {r["team"]: r for r in report["waits"]}
    cells = []
    for team in columns:
        w = waits.get(team)
        if w is None or not w["count"]:
            cells.append("-")
        elif small_cell and w["count"] < small_cell:
            cells.append(f"<{small_cell}")
        else:
            cells.append(f"p50 {w['p50']:.2f} / p90 {w['p90']:.2f} d (n={w['count']})")
    table.add_row("referral_wait_days", *cells)
    console.print(table)

    counts: dict[tuple[str, str], int] = {}
    for alert in report["alerts"]:
        key = (alert["labels"].get("alertname", "?"), alert["status"])
        counts[key] = counts.get(key, 0) + 1
    alerts = Table(title="Alerts raised")
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

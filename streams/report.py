"""The replay report: byte-stable JSON (DOMAIN.md section 6), its ``"spc"`` section and the
replay's verdict. The terminal summary the commands print is :mod:`pathwatch.cli.summary`.

The JSON is written with sorted keys, two-space indentation and a trailing newline, so the same
input gives byte-identical reports. The machine report is unsuppressed (section 6).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from schemas.model import ALL_TEAMS

if TYPE_CHECKING:
    from streams.windows import TeamWindows

# (windows, watermark, teams, rebase dates per (team, measure): the service changes) -> "spc"
Charts = Callable[["TeamWindows", datetime, list[str], Mapping[tuple[str, str], Sequence[date]]], list[dict[str, Any]]]
"""(windows, watermark, teams) -> the report's ``"spc"`` entries (``alerts.rules.SystemAlertRules.charts``)."""

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

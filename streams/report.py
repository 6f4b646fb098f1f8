"""The replay report: byte-stable JSON (DOMAIN.md section 6), its ``"spc"`` section and the
replay's verdict. The terminal summary the commands print is :mod:`pathwatch.cli.summary`.

The JSON is written with sorted keys, two-space indentation and a trailing newline, so the same
input gives byte-identical reports. The machine report is unsuppressed (section 6).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from schemas.model import ALL_TEAMS
from streams.changes import change_rebase, judge_changes, local_date_in

if TYPE_CHECKING:
    from alerts.evidence import ServiceChange
    from alerts.rules import AlertRulesConfig
    from schemas.decode import Decoder
    from streams.windows import TeamWindows

# (windows, watermark, teams, rebase dates per (team, measure): the service changes) -> "spc"
Charts = Callable[["TeamWindows", datetime, list[str], Mapping[tuple[str, str], Sequence[date]]], list[dict[str, Any]]]
"""(windows, watermark, teams) -> the report's ``"spc"`` entries (``alerts.rules.SystemAlertRules.charts``)."""


@dataclass(frozen=True)
class SpcParts:
    """What the live report's ``"spc"`` and ``"changes"`` sections need (the command builds
    it from settings, ``pathwatch.parts.spc_parts``): the charts, the alert rules'
    configuration that judges the changes, the decoder of the changes topic's records and
    the timezone of local dates."""

    charts: Charts
    rules: AlertRulesConfig
    decoder: Decoder
    timezone: str


def spc_section(
    report: Mapping[str, Any],
    windows: TeamWindows,
    charts: Charts,
    rebase: Mapping[tuple[str, str], Sequence[date]] | None = None,
) -> list[dict[str, Any]]:
    """The report's ``"spc"``: the Making Data Count chart of ``*`` and every team of the
    report's ``measures``, for every rate measure, at the report's watermark, with new groups
    at ``rebase`` (per (team, measure): the recorded service changes); empty when it has none
    (no event). The same windows and watermark give the same section (see :func:`spc_sections`)."""
    if report.get("watermark") is None:
        return []
    teams = sorted({row["team"] for row in report["measures"]} - {ALL_TEAMS})
    return charts(windows, datetime.fromisoformat(report["watermark"]), teams, rebase or {})


def spc_sections(
    report: Mapping[str, Any], windows: TeamWindows, parts: SpcParts, recorded: Sequence[ServiceChange]
) -> dict[str, Any]:
    """The report's ``"spc"`` (:func:`spc_section`, each change ``recorded`` starting a group
    on its team's charts) and ``"changes"`` (one entry per recorded change, with its
    evidence: :func:`streams.changes.judge_changes`; empty when the report has no
    watermark). The replay and ``report --from-live`` both build them here."""
    local_date = local_date_in(ZoneInfo(parts.timezone))
    out: dict[str, Any] = {"spc": spc_section(report, windows, parts.charts, change_rebase(recorded, local_date))}
    watermark = report.get("watermark")
    if watermark is None:
        out["changes"] = []
    else:
        out["changes"] = judge_changes(parts.rules, windows, datetime.fromisoformat(watermark), recorded, local_date)
    return out


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

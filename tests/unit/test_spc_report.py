"""The report's ``"spc"`` (Making Data Count charts per team and measure) and the terminal
summary's icons, readable at 80 columns."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.console import Console

from alerts.rules import RATE_MEASURES, AlertRulesConfig, SystemAlertRules
from pathwatch import parts
from pathwatch.cli.replay import run_replay
from pathwatch.cli.summary import SHORT_LABELS, render_summary
from pathwatch.config import load_settings
from tests.fixtures.alerts import Point, Row
from tests.unit.test_replay import LINES

MONDAY = date(2025, 1, 6)
WATERMARK = datetime(2025, 6, 2, tzinfo=UTC)
BASELINE = [(8, 10), (6, 10)] * 6  # mean 70%, limits 16.8% .. 123.2%


def weeks(pairs: list[tuple[int, int]], start: date = MONDAY) -> list[Point]:
    return [Point(start + timedelta(weeks=i), n, d) for i, (n, d) in enumerate(pairs)]


class Windows:
    """The two calls the rules make on stage 2's windows, over fixed series."""

    def __init__(self, series: dict[tuple[str, str], list[Point]]) -> None:
        self.series = series

    def rates(self, now: datetime, trailing_days: int, /) -> Sequence[Row]:
        return [Row(team, measure, 0, 0) for team, measure in sorted(self.series)]

    def weekly_series(self, team: str, measure: str, watermark: datetime, /) -> Sequence[Point]:
        return self.series.get((team, measure), [])


def test_charts_cover_star_and_every_team_and_rate_measure() -> None:
    windows = Windows(
        {
            ("north", "followup_7d"): weeks(BASELINE + [(1, 10)]),
            ("*", "followup_7d"): weeks(BASELINE + [(2, 4)] + BASELINE),  # a small week is not judged
            ("south", "readmission_30d"): weeks(BASELINE * 2),
            # repeat_crisis_30d: weeks before the look-back (30 days from the first week of data) left out
            ("south", "repeat_crisis_30d"): weeks(BASELINE * 2),
        }
    )
    rebase = {("south", "readmission_30d"): MONDAY + timedelta(weeks=12)}
    config = AlertRulesConfig(rate_targets={"followup_7d": 0.9}, spc_min_weekly_denominator=10, rebase=rebase)
    entries = SystemAlertRules(config).charts(windows, WATERMARK, ["south", "north"])
    assert [(e["team"], e["measure"]) for e in entries] == [
        (team, m) for team in ("*", "north", "south") for m in RATE_MEASURES
    ]
    by_key = {(e["team"], e["measure"]): e for e in entries}
    north = by_key[("north", "followup_7d")]
    assert (north["direction"], north["target"], north["variation"], north["assurance"]) == (
        "higher", 0.9, "concern_low", "inconsistent"
    )
    last = north["points"][-1]
    assert last["week"] == "2025-03-31"
    assert (last["numerator"], last["denominator"], last["value"]) == (1, 10, 0.1)
    assert (last["group"], last["trial"], last["type"], last["rules"]) == (0, False, "special_cause_concern", ["beyond_limit"])
    assert round(last["mean"], 4) == 0.7
    assert round(last["lower"], 4) == 0.168
    assert round(last["upper"], 4) == 1.232
    assert len(by_key[("*", "followup_7d")]["points"]) == 24
    south = by_key[("south", "readmission_30d")]["points"]
    assert [p["group"] for p in south] == [0] * 12 + [1] * 12
    assert (south[0]["week"], south[12]["week"]) == ("2025-01-06", "2025-03-31")
    crisis = by_key[("south", "repeat_crisis_30d")]["points"]
    assert crisis[0]["week"] == "2025-02-10"  # the first Monday on or after 2025-01-06 + 30 days
    assert by_key[("north", "readmission_30d")] == {
        "team": "north", "measure": "readmission_30d", "direction": "lower", "target": None,
        "variation": None, "assurance": None, "points": [],
    }


def test_replay_report_carries_spc(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(LINES) + "\n")
    settings = load_settings(timezone="America/New_York")
    spc = parts.spc_parts(settings)
    report_path = tmp_path / "r.json"
    out = io.StringIO()
    assert run_replay(str(events), report_path, settings, Console(file=out, width=80), SystemAlertRules(spc.rules), spc) == 0
    report = json.loads(report_path.read_bytes())
    assert {(e["team"], e["measure"]) for e in report["spc"]} == {
        (t, m) for t in ("*", "north", "unassigned") for m in RATE_MEASURES
    }
    assert "Making Data Count icons" in out.getvalue()


def _report(teams: list[str]) -> dict[str, object]:
    measures = [
        {"measure": m, "team": t, "numerator": 2534, "denominator": 3463} for m in RATE_MEASURES for t in ["*", *teams]
    ]
    waits = [{"measure": "referral_wait_days", "team": t, "count": 3056, "p50": 6.03, "p90": 21.9} for t in ["*", *teams]]
    point = {"trial": True}
    spc = [
        {"team": t, "measure": m, "variation": "concern_low", "assurance": "consistent_fail", "points": [point]}
        for m in RATE_MEASURES
        for t in ["*", *teams]
    ]
    return {
        "watermark": "2026-01-05T20:38:56+00:00",
        "measures": measures,
        "waits": waits,
        "spc": spc,
        "alerts": [],
        "events": {"accepted": 1, "duplicates": 0, "dead_letters": 0, "corrections": 0},
    }


def test_the_summary_shows_every_measure_and_icon_in_80_columns() -> None:
    out = io.StringIO()
    render_summary(_report(["central", "east", "north", "south", "unassigned", "west"]), Console(file=out, width=80))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    for label in SHORT_LABELS.values():
        assert f" {label} " in text
    assert text.count("con L/F*") == 7 * len(RATE_MEASURES)
    assert "2534/3463" in text


def test_special_cause_fires_exactly_where_the_charts_latest_point_is_a_concern() -> None:
    rng = random.Random(5)
    series: dict[tuple[str, str], list[Point]] = {}
    for team in ("north", "south", "east"):
        for measure in RATE_MEASURES:
            p = rng.uniform(0.2, 0.8)
            drift = rng.choice([0.0, 0.0, -0.3, 0.3])
            pairs = []
            for week in range(30):
                n = rng.randint(8, 40)
                q = min(1.0, max(0.0, p + (drift if week >= 22 else 0.0)))
                pairs.append((sum(rng.random() < q for _ in range(n)), n))
            series[(team, measure)] = weeks(pairs)
    windows = Windows(series)
    rebase = {("south", "followup_7d"): MONDAY + timedelta(weeks=20)}
    config = AlertRulesConfig(rate_targets={}, spc_min_weekly_denominator=10, rebase=rebase)
    rules = SystemAlertRules(config)
    fired = {(a.labels["team"], a.labels["measure"]) for a in rules.evaluate(windows, WATERMARK) if a.name == "SpecialCause"}
    charts = rules.charts(windows, WATERMARK, ["north", "south", "east"])
    concern = {
        (e["team"], e["measure"])
        for e in charts
        if e["points"] and e["points"][-1]["type"] == "special_cause_concern" and not e["points"][-1]["trial"]
    }
    assert fired == concern
    assert fired  # the drifts make some
    icons = {(e["team"], e["measure"]): e["variation"] for e in charts}
    assert all(icons[key] in ("concern_low", "concern_high") for key in fired)

"""Stage-2 windows: upsert/retract, trailing rates, nearest-rank waits, weekly series."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from streams.core import CoreConfig, Observation
from streams.windows import RateRow, TeamWindows, WaitRow, WeeklyPoint, nearest_rank

CONFIG = CoreConfig(timezone="America/New_York")


def obs(key: str, team: str, when: str, num: bool = False, *, measure: str = "followup_7d",
        wait: float | None = None, retracted: bool = False) -> Observation:
    t = datetime.fromisoformat(when).replace(tzinfo=UTC)
    return Observation(measure, key, team, t, num, wait, retracted)


def row(rows: list[RateRow], measure: str, team: str) -> tuple[int, int]:
    [r] = [r for r in rows if r.measure == measure and r.team == team]
    return r.numerator, r.denominator


def test_upsert_and_retract_by_key() -> None:
    w = TeamWindows(CONFIG)
    w.apply(obs("a", "north", "2026-04-01 12:00", False))
    w.apply(obs("a", "north", "2026-04-01 12:00", True))  # revision replaces
    w.apply(obs("b", "south", "2026-04-02 12:00", False))
    now = datetime(2026, 4, 3, tzinfo=UTC)
    rows = w.rates(now)
    assert row(rows, "followup_7d", "north") == (1, 1)
    assert row(rows, "followup_7d", "*") == (1, 2)
    assert row(rows, "followup_72h", "north") == (0, 0)  # zero rows included
    w.apply(obs("b", "south", "2026-04-02 12:00", retracted=True))
    assert row(w.rates(now), "followup_7d", "*") == (1, 1)


def test_team_move_retract_then_upsert() -> None:
    w = TeamWindows(CONFIG)
    w.apply(obs("a", "north", "2026-04-01 12:00", True))
    w.apply(obs("a", "north", "2026-04-01 12:00", retracted=True))
    w.apply(obs("a", "south", "2026-04-01 12:00", True))
    rows = w.rates(datetime(2026, 4, 3, tzinfo=UTC), teams=["north", "south"])
    assert row(rows, "followup_7d", "north") == (0, 0)
    assert row(rows, "followup_7d", "south") == (1, 1)


def test_trailing_window_uses_local_days() -> None:
    w = TeamWindows(CONFIG)
    crisis = "repeat_crisis_30d"  # decided at the index event: its window ends today
    w.apply(obs("old", "north", "2026-03-06 04:59", True, measure=crisis))  # local 2026-03-05 23:59 EST
    w.apply(obs("new", "north", "2026-03-06 05:00", True, measure=crisis))  # local 2026-03-06 00:00
    now = datetime(2026, 4, 2, 12, tzinfo=UTC)  # local 2026-04-02: 28 days back is 03-06
    assert row(w.rates(now, 28), crisis, "north") == (1, 1)
    assert row(w.rates(now, None), crisis, "north") == (2, 2)


@pytest.mark.parametrize(
    ("measure", "lag"), [("followup_72h", 4), ("followup_7d", 8), ("followup_30d", 31), ("readmission_30d", 31)]
)
def test_closed_window_measures_trail_behind_by_their_window(measure: str, lag: int) -> None:
    w = TeamWindows(CONFIG)
    now = datetime(2026, 4, 2, 17, tzinfo=UTC)  # local 2026-04-02
    last = now - timedelta(days=lag)  # the latest local day whose window has closed
    w.apply(obs("in", "north", (last).strftime("%Y-%m-%d 17:00"), True, measure=measure))
    w.apply(obs("too-new", "north", (last + timedelta(days=1)).strftime("%Y-%m-%d 17:00"), True, measure=measure))
    w.apply(obs("too-old", "north", (last - timedelta(days=28)).strftime("%Y-%m-%d 17:00"), measure=measure))
    assert row(w.rates(now, 28), measure, "north") == (1, 1)


@pytest.mark.parametrize(
    ("values", "p50", "p90"),
    [
        ([1.0], 1.0, 1.0),
        ([1.0, 2.0], 1.0, 2.0),  # ceil(0.5*2)=1, ceil(0.9*2)=2
        ([5, 1, 4, 2, 3, 6, 7, 8, 9, 10], 5.0, 9.0),  # ceil(5)=5, ceil(9)=9
        ([0.004, 0.006, 19.499], 0.01, 19.5),  # rounded to hundredths of a day
    ],
)
def test_nearest_rank_waits(values: list[float], p50: float, p90: float) -> None:
    w = TeamWindows(CONFIG)
    for i, v in enumerate(values):
        w.apply(obs(f"k{i}", "north", "2026-04-01 12:00", measure="referral_wait_days", wait=v))
    rows = w.waits()
    assert rows[0] == WaitRow("referral_wait_days", "*", len(values), p50, p90)
    assert rows[1] == WaitRow("referral_wait_days", "north", len(values), p50, p90)


def test_nearest_rank_helper() -> None:
    assert nearest_rank([1, 2, 3, 4], 0.5) == 2
    assert nearest_rank([1, 2, 3, 4, 5], 0.9) == 5


def test_empty_waits_are_zero_rows() -> None:
    assert TeamWindows(CONFIG).waits(teams=["north"]) == [
        WaitRow("referral_wait_days", "*", 0, None, None),
        WaitRow("referral_wait_days", "north", 0, None, None),
    ]


def test_weekly_series_final_weeks_only() -> None:
    w = TeamWindows(CONFIG)
    # Monday 2026-03-02 and Sunday 2026-03-08 (local) are one week; Monday 03-09 the next.
    w.apply(obs("a", "north", "2026-03-02 15:00", True))
    w.apply(obs("b", "north", "2026-03-09 03:00", False))  # local Sunday 03-08 23:00 EDT
    w.apply(obs("c", "north", "2026-03-16 15:00", True))  # week of 03-16
    # followup_7d: the week of 03-09 is final once the end of 03-15 + 7 days has passed
    watermark = datetime(2026, 3, 23, 4, 0, tzinfo=UTC)  # local 03-23 00:00 EDT
    assert w.weekly_series("north", "followup_7d", watermark) == [
        WeeklyPoint(date(2026, 3, 2), 1, 2),
        WeeklyPoint(date(2026, 3, 9), 0, 0),
    ]
    assert w.weekly_series("*", "followup_7d", watermark - timedelta(microseconds=1)) == [
        WeeklyPoint(date(2026, 3, 2), 1, 2)
    ]
    assert w.weekly_series("south", "followup_7d", watermark) == []


def test_serialisation_and_merge() -> None:
    north, south = TeamWindows(CONFIG), TeamWindows(CONFIG)
    north.apply(obs("a", "north", "2026-04-01 12:00", True))
    south.apply(obs("b", "south", "2026-04-01 12:00", False))
    north2 = TeamWindows.from_bytes(north.to_bytes(), CONFIG)
    assert north2.to_bytes() == north.to_bytes()
    merged = TeamWindows.merged([north2, south], CONFIG)
    assert row(merged.rates(datetime(2026, 4, 2, tzinfo=UTC)), "followup_7d", "*") == (1, 2)


def test_prune_keeps_totals_and_drops_old_entries() -> None:
    w = TeamWindows(CONFIG)
    w.apply(obs("a", "north", "2025-01-01 12:00", True))
    w.prune(datetime(2026, 6, 1, tzinfo=UTC))
    assert row(w.rates(datetime(2026, 6, 1, tzinfo=UTC)), "followup_7d", "north") == (1, 1)
    assert w.to_bytes() != TeamWindows(CONFIG).to_bytes()
    assert "a" not in w._s.entries


def _retained(w: TeamWindows) -> timedelta:
    return timedelta(microseconds=w._retain_us)


@pytest.mark.parametrize("decoded", [False, True])
def test_prune_drops_whole_weeks_before_the_cut_and_follows_revisions(decoded: bool) -> None:
    w = TeamWindows(CONFIG)
    w.apply(obs("old", "north", "2026-01-05 12:00", True))
    w.apply(obs("moved", "north", "2026-01-06 12:00", False))
    w.apply(obs("late", "north", "2026-01-20 12:00", False))
    w.apply(obs("moved", "north", "2026-02-10 12:00", True))  # a revision to another week
    w.apply(obs("gone", "north", "2026-01-07 12:00", False))
    w.apply(obs("gone", "north", "2026-01-07 12:00", retracted=True))
    if decoded:
        w = TeamWindows.from_bytes(w.to_bytes(), CONFIG)  # the week index is rebuilt
    # the cut falls on 2026-01-15: the week of 01-05 goes whole, 01-20 and 02-10 stay
    watermark = datetime(2026, 1, 15, 12, tzinfo=UTC) + _retained(w)
    w.prune(watermark)
    assert set(w._s.entries) == {"moved", "late"}
    assert row(w.rates(watermark), "followup_7d", "north") == (2, 3)  # totals keep the pruned
    w.apply(obs("moved", "north", "2026-02-10 12:00", False))  # still replaced, not added
    assert row(w.rates(watermark), "followup_7d", "north") == (1, 3)
    w.prune(watermark + timedelta(days=60))
    assert w._s.entries == {}


def test_prune_at_any_schedule_gives_the_same_answers() -> None:
    """Pruning forgets only what is never read again: pruning every day, every week or never
    gives the same rates, waits and weekly series."""
    start = datetime(2025, 1, 6, 12, tzinfo=UTC)
    windows = {every: TeamWindows(CONFIG) for every in (0, 1, 7)}
    for day in range(500):
        now = start + timedelta(days=day)
        for every, w in windows.items():
            w.apply(obs(f"k{day}", ("north", "south")[day % 2], now.isoformat()[:16], day % 3 == 0))
            w.apply(obs(f"w{day}", "north", now.isoformat()[:16], measure="referral_wait_days", wait=day % 9))
            if day % 5 == 0:
                w.apply(obs(f"k{day - 20}", "south", (now - timedelta(days=20)).isoformat()[:16], True))
            if every and day % every == 0:
                w.prune(now)
    end = start + timedelta(days=500)
    answers = [
        (w.rates(end), w.rates(end, 28), w.waits(end, 28), w.waits(),
         w.weekly_series("*", "followup_7d", end), w.weekly_series("north", "followup_7d", end))
        for w in windows.values()
    ]
    assert answers[0] == answers[1] == answers[2]
    assert len(windows[1]._s.entries) < len(windows[0]._s.entries)

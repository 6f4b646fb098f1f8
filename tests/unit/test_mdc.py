"""Making Data Count charts as NHSRplotthedots computes them: golden values and every rule
and edge, table-driven.

Baseline used in the tables: 12 points alternating 10, 14 (ending on 14). By hand: mean 12,
every moving range 4, so the mean moving range is 4 (no range is screened out); process
limits 12 +/- 10.64 = 1.36 .. 22.64; two-thirds lines 12 +/- 7.0933 = 4.9067 .. 19.0933.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.mdc import (
    Assurance,
    ChartSettings,
    GroupLimits,
    PointType,
    Rule,
    Variation,
    WeeklyValue,
    assurance_icon,
    chart,
    group_limits,
    group_rules,
    group_starts,
    latest_point,
    same,
    variation_icon,
)
from alerts.spc import Direction

HIGHER = Direction.HIGHER_IS_BETTER
LOWER = Direction.LOWER_IS_BETTER
BASE = [10.0, 14.0] * 6
MONDAY = date(2026, 1, 5)
SCALE = 1000  # values as numerator / 1000, exact for the values used here

IMP = PointType.IMPROVEMENT
CON = PointType.CONCERN
COM = PointType.COMMON_CAUSE


def week(i: int) -> date:
    return MONDAY + timedelta(weeks=i)


def series(values: list[float]) -> list[WeeklyValue]:
    return [WeeklyValue(week(i), round(v * SCALE), SCALE) for i, v in enumerate(values)]


# -- golden values (NHSRplotthedots vignettes/deviations.Rmd) -------------------------------------

GOLDEN = [1.0, 2.0, 1.0, 2.0, 10.0] + [1.0, 2.0] * 6 + [1.0]


@pytest.mark.parametrize(
    ("screen", "upper", "mean", "lower"),
    [(True, 4.60, 1.94, -0.72), (False, 6.95, 1.94, -3.06)],
    ids=["screened (NHSRplotthedots)", "unscreened (MDC Excel tool)"],
)
def test_golden_limits(screen: bool, upper: float, mean: float, lower: float) -> None:
    c = chart(series(GOLDEN), HIGHER, settings=ChartSettings(baseline_points=None, screen_outliers=screen))
    lim = c.points[-1].limits
    assert (round(lim.upper or 0, 2), round(lim.mean, 2), round(lim.lower or 0, 2)) == (upper, mean, lower)
    assert {p.limits for p in c.points} == {lim}
    assert not lim.trial


def test_golden_series_flags_the_ten_beyond_either_limit() -> None:
    for screen in (True, False):
        c = chart(series(GOLDEN), HIGHER, settings=ChartSettings(baseline_points=None, screen_outliers=screen))
        assert [(i, p.rules, p.type) for i, p in enumerate(c.points) if p.rules] == [(4, (Rule.BEYOND_LIMIT,), IMP)]


def test_screening_drops_ranges_at_three_point_two_six_seven_times_their_mean() -> None:
    # ranges 1, 1, 1, 8, 9, then twelve 1s: mean 32/17; 8 and 9 are >= 3.267 x that; 15 / 15 = 1
    lim = group_limits(GOLDEN, ChartSettings(baseline_points=None))
    assert lim.mean_moving_range == pytest.approx(1.0)
    lim = group_limits(GOLDEN, ChartSettings(baseline_points=None, screen_outliers=False))
    assert lim.mean_moving_range == pytest.approx(32 / 17)


def test_limits_come_from_the_first_baseline_points() -> None:
    c = chart(series(BASE + [30.0, 30.0, 30.0]), HIGHER)
    lim = c.points[-1].limits
    assert (lim.mean, lim.mean_moving_range) == (pytest.approx(12.0), pytest.approx(4.0))
    assert lim.upper == pytest.approx(22.64)
    assert lim.lower == pytest.approx(1.36)
    assert lim.upper_two_thirds == pytest.approx(19.093333, abs=1e-6)
    assert lim.lower_two_thirds == pytest.approx(4.906667, abs=1e-6)


# -- the rules, on the points after the baseline --------------------------------------------------

CASES = [
    # (id, points after BASE, direction, expected (rules, type) of each of those points)
    ("in control", [12.5, 11.0, 13.0], HIGHER, [((), COM)] * 3),
    ("beyond the lower limit", [1.0], HIGHER, [((Rule.BEYOND_LIMIT,), CON)]),
    ("beyond the upper limit: improvement when higher is better", [23.0], HIGHER, [((Rule.BEYOND_LIMIT,), IMP)]),
    ("beyond the upper limit: concern when lower is better", [23.0], LOWER, [((Rule.BEYOND_LIMIT,), CON)]),
    ("one point beyond a two-thirds line alone", [20.0], HIGHER, [((), COM)]),
    (
        "2 of 3 beyond the upper two-thirds line: the third point is not flagged",
        [20.0, 13.0, 20.0],
        HIGHER,
        [((Rule.TWO_OF_THREE,), IMP), ((), COM), ((Rule.TWO_OF_THREE,), IMP)],
    ),
    (
        "2 of 3 with the third point exactly on the mean: no signal",
        [20.0, 12.0, 20.0],
        HIGHER,
        [((), COM)] * 3,
    ),
    (
        "points on both sides within a 2-of-3 window: no signal",
        [20.0, 4.5, 20.0],
        HIGHER,
        [((), COM)] * 3,
    ),
    (
        "a point beyond a limit inside a 2-of-3 window does not count towards it",
        [20.0, 23.0, 13.0],
        HIGHER,
        [((), COM), ((Rule.BEYOND_LIMIT,), IMP), ((), COM)],
    ),
    (
        "a point beyond a limit between two beyond the two-thirds line",
        [4.5, 1.0, 4.5],
        LOWER,
        [((Rule.TWO_OF_THREE,), IMP), ((Rule.BEYOND_LIMIT,), IMP), ((Rule.TWO_OF_THREE,), IMP)],
    ),
    ("3 of 3 beyond the lower two-thirds line", [4.5] * 3, HIGHER, [((Rule.TWO_OF_THREE,), CON)] * 3),
    ("7 below the mean: a shift", [11.0] * 7, HIGHER, [((Rule.SHIFT,), CON)] * 7),
    ("6 below the mean is not enough", [11.0] * 6, HIGHER, [((), COM)] * 6),
    (
        "a point exactly on the mean breaks the run",
        [11.0] * 3 + [12.0] + [11.0] * 3,
        HIGHER,
        [((), COM)] * 7,
    ),
    ("7 points exactly on the mean: no shift", [12.0] * 7, HIGHER, [((), COM)] * 7),
    ("7 above the mean, lower is better: concern", [13.0] * 7, LOWER, [((Rule.SHIFT,), CON)] * 7),
    (
        # 14 (the last baseline point) then 6 falls: the last baseline point is part of the trend
        "6 falls after the baseline's last point: a trend of 7",
        [13.5, 13.0, 12.5, 12.2, 11.8, 11.5],
        HIGHER,
        [((Rule.TREND,), IMP)] * 4 + [((Rule.TREND,), CON)] * 2,
    ),
    ("a tie breaks the trend", [13.5, 13.0, 13.0, 12.5, 12.2, 11.8], HIGHER, [((), COM)] * 6),
    (
        "a rising trend through the mean: each point typed by its side, on the mean a concern",
        [9.0, 10.0, 11.0, 12.0, 12.5, 13.0, 13.5],
        HIGHER,
        [((Rule.TREND,), CON)] * 4 + [((Rule.TREND,), IMP)] * 3,
    ),
    (
        "trend and shift together, in precedence order",
        [11.9, 11.8, 11.7, 11.6, 11.5, 11.4, 11.3],
        HIGHER,
        [((Rule.TREND, Rule.SHIFT), CON)] * 7,
    ),
    (
        "beyond the limit at the end of a shift",
        [11.0] * 6 + [1.0],
        HIGHER,
        [((Rule.SHIFT,), CON)] * 6 + [((Rule.BEYOND_LIMIT, Rule.SHIFT), CON)],
    ),
]


@pytest.mark.parametrize(("after", "direction", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rules(after: list[float], direction: Direction, expected: list[tuple[tuple[Rule, ...], PointType]]) -> None:
    c = chart(series(BASE + after), direction)
    assert [(p.rules, p.type) for p in c.points[len(BASE) :]] == expected


def test_the_last_baseline_point_is_part_of_a_trend_starting_there() -> None:
    c = chart(series(BASE + [13.5, 13.0, 12.5, 12.2, 11.8, 11.5]), HIGHER)
    assert c.points[len(BASE) - 1].rules == (Rule.TREND,)
    assert all(not p.rules for p in c.points[: len(BASE) - 1])


def test_the_baseline_is_judged_too() -> None:
    # mean 155/12 = 12.917: the last seven points (13 and 15) are all above it
    c = chart(series([10.0, 14.0, 10.0, 14.0, 10.0] + [13.0, 15.0] * 3 + [13.0]), HIGHER)
    assert [p.rules for p in c.points] == [()] * 5 + [(Rule.SHIFT,)] * 7


def test_points_exactly_on_a_line() -> None:
    # on a two-thirds line: not beyond it; on a process limit: not beyond it, but beyond the
    # two-thirds line
    assert group_rules([LIMITS.upper_two_thirds or 0] * 3, LIMITS) == [()] * 3
    assert group_rules([LIMITS.upper or 0] * 3, LIMITS) == [(Rule.TWO_OF_THREE,)] * 3


# -- groups: trial limits, rebase -----------------------------------------------------------------


def test_a_short_group_has_trial_limits_from_all_its_points() -> None:
    c = chart(series([10.0, 14.0, 10.0, 14.0, 18.0]), HIGHER)
    lim = c.points[0].limits
    assert all(p.limits.trial for p in c.points)
    assert lim.mean == pytest.approx(13.2)
    assert lim.mean_moving_range == pytest.approx(4.0)


def test_trial_ends_at_the_baseline_length() -> None:
    assert chart(series(BASE[:11]), HIGHER).points[-1].limits.trial
    assert not chart(series(BASE), HIGHER).points[-1].limits.trial
    assert not chart(series(BASE[:11]), HIGHER, settings=ChartSettings(baseline_points=None)).points[0].limits.trial


def test_a_group_of_one_point_has_a_mean_and_no_limits() -> None:
    c = chart(series(BASE + [30.0]), HIGHER, rebase=[week(12)], target=0.5)
    last = c.points[-1]
    assert (last.group, last.limits.mean, last.limits.upper, last.limits.lower) == (1, 30.0, None, None)
    assert (last.type, c.variation, c.assurance) == (COM, Variation.COMMON_CAUSE, None)


def test_a_rebase_mid_run_starts_a_group_and_no_range_or_pattern_spans_it() -> None:
    values = BASE + [20.0, 24.0] * 6
    plain = chart(series(values), HIGHER)
    assert all(Rule.BEYOND_LIMIT in p.rules or Rule.SHIFT in p.rules for p in plain.points[12:])
    rebased = chart(series(values), HIGHER, rebase=[week(12)])
    assert [p.group for p in rebased.points] == [0] * 12 + [1] * 12
    second = rebased.points[12].limits
    # the jump 14 -> 20 between the groups is no moving range of either: AMR stays 4
    assert (second.mean, second.mean_moving_range) == (pytest.approx(22.0), pytest.approx(4.0))
    assert all(not p.rules for p in rebased.points)


def test_a_shift_does_not_run_across_a_rebase() -> None:
    values = BASE + [13.0] * 4 + [13.0] * 3
    rebased = chart(series(values), HIGHER, rebase=[week(16)])
    assert all(not p.rules for p in rebased.points)
    assert chart(series(values), HIGHER).points[-1].rules == (Rule.SHIFT,)


@pytest.mark.parametrize(
    ("rebase", "groups"),
    [
        ([], [0, 0, 0, 0]),
        ([week(2)], [0, 0, 1, 1]),
        ([week(1) + timedelta(days=2)], [0, 0, 1, 1]),  # a Wednesday: the next Monday's point
        ([week(0) - timedelta(days=30)], [0, 0, 0, 0]),  # before the series
        ([week(9)], [0, 0, 0, 0]),  # after it
        ([week(3), week(1)], [0, 1, 1, 2]),
        ([week(2), week(2) - timedelta(days=1)], [0, 0, 1, 1]),  # two rebases before one point
    ],
)
def test_group_starts(rebase: list[date], groups: list[int]) -> None:
    assert group_starts([week(i) for i in range(4)], rebase) == groups


def test_a_gap_of_weeks_then_a_rebase_in_the_gap() -> None:
    weeks = [week(0), week(1), week(5), week(6)]
    assert group_starts(weeks, [week(3)]) == [0, 0, 1, 1]


# -- icons ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "direction", "icon"),
    [
        (COM, HIGHER, Variation.COMMON_CAUSE),
        (COM, LOWER, Variation.COMMON_CAUSE),
        (IMP, HIGHER, Variation.IMPROVEMENT_HIGH),
        (IMP, LOWER, Variation.IMPROVEMENT_LOW),
        (CON, HIGHER, Variation.CONCERN_LOW),
        (CON, LOWER, Variation.CONCERN_HIGH),
    ],
)
def test_variation_icon(last: PointType, direction: Direction, icon: Variation) -> None:
    assert variation_icon(last, direction) is icon


def test_the_variation_icon_is_the_last_points() -> None:
    assert chart(series(BASE + [1.0]), HIGHER).variation is Variation.CONCERN_LOW
    assert chart(series(BASE + [1.0, 12.5]), HIGHER).variation is Variation.COMMON_CAUSE
    assert chart(series(BASE + [23.0]), LOWER).variation is Variation.CONCERN_HIGH
    assert chart([], HIGHER).variation is None


LIMITS = GroupLimits(mean=12.0, mean_moving_range=4.0, trial=False)  # 1.36 .. 22.64


@pytest.mark.parametrize(
    ("target", "direction", "icon"),
    [
        (None, HIGHER, None),
        (25.0, HIGHER, Assurance.CONSISTENT_FAIL),
        (1.0, HIGHER, Assurance.CONSISTENT_PASS),
        (12.0, HIGHER, Assurance.INCONSISTENT),
        (25.0, LOWER, Assurance.CONSISTENT_PASS),
        (1.0, LOWER, Assurance.CONSISTENT_FAIL),
        (12.0, LOWER, Assurance.INCONSISTENT),
        # a target exactly on a limit is inconsistent (NHSRplotthedots' strict inequalities)
        (22.64, HIGHER, Assurance.INCONSISTENT),
        (1.36, HIGHER, Assurance.INCONSISTENT),
        (22.64, LOWER, Assurance.INCONSISTENT),
        (1.36, LOWER, Assurance.INCONSISTENT),
    ],
)
def test_assurance_icon(target: float | None, direction: Direction, icon: Assurance | None) -> None:
    assert assurance_icon(target, LIMITS, direction) is icon


def test_assurance_uses_the_latest_groups_limits() -> None:
    values = BASE + [40.0, 44.0] * 6
    assert chart(series(values), HIGHER, target=25.0).assurance is Assurance.CONSISTENT_FAIL
    assert chart(series(values), HIGHER, rebase=[week(12)], target=25.0).assurance is Assurance.CONSISTENT_PASS


def test_bad_input_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="out of order"):
        chart(list(reversed(series([1.0, 2.0]))), HIGHER)
    with pytest.raises(ValueError, match="denominator"):
        chart([WeeklyValue(MONDAY, 0, 0)], HIGHER)
    with pytest.raises(ValueError, match="baseline_points"):
        ChartSettings(baseline_points=1)


# -- the latest point alone, as SpecialCause judges it --------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=40),
    rebase=st.lists(st.integers(min_value=0, max_value=45), max_size=3),
    baseline=st.sampled_from([None, 2, 5, 12]),
    screen=st.booleans(),
    direction=st.sampled_from(list(Direction)),
)
def test_latest_point_is_the_charts_last_point(
    values: list[int], rebase: list[int], baseline: int | None, screen: bool, direction: Direction
) -> None:
    points = [WeeklyValue(week(i), v, 12) for i, v in enumerate(values)]
    rebase_weeks = [week(r) for r in rebase]
    chart_settings = ChartSettings(baseline_points=baseline, screen_outliers=screen)
    assert latest_point(points, direction, rebase_weeks, chart_settings) == chart(
        points, direction, rebase_weeks, chart_settings
    ).points[-1]
    assert latest_point([], direction) is None


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=30))
def test_the_direction_only_swaps_improvement_and_concern(values: list[int]) -> None:
    points = [WeeklyValue(week(i), v, 12) for i, v in enumerate(values)]
    higher, lower = chart(points, HIGHER), chart(points, LOWER)
    swap = {IMP: CON, CON: IMP, COM: COM}
    for h, lo in zip(higher.points, lower.points, strict=True):
        assert (h.rules, h.limits) == (lo.rules, lo.limits)
        if not same(h.point.value, h.limits.mean):  # a flagged point on the mean is a concern either way
            assert lo.type is swap[h.type]

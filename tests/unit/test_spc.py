"""Every Making Data Count rule, table-driven, on hand-computed series.

Baseline used throughout: 12 points alternating 10, 14 (ending on 14). By hand:
mean = 12, every moving range = 4, so mean moving range = 4;
process limits = 12 ± 2.66 × 4 = 12 ± 10.64 -> 1.36 .. 22.64;
two-thirds lines = 12 ± (2/3) × 10.64 = 12 ± 7.0933 -> 4.9067 .. 19.0933.
"""

from __future__ import annotations

import pytest

from alerts.spc import Direction, Limits, SpcRule, evaluate, xmr_limits

BASE = [10.0, 14.0] * 6
HIGHER = Direction.HIGHER_IS_BETTER
LOWER = Direction.LOWER_IS_BETTER
R = SpcRule


def test_limits_from_baseline_by_hand() -> None:
    limits = xmr_limits(BASE)
    assert limits.mean == pytest.approx(12.0)
    assert limits.mean_moving_range == pytest.approx(4.0)
    assert limits.lower == pytest.approx(1.36)
    assert limits.upper == pytest.approx(22.64)
    assert limits.lower_two_thirds == pytest.approx(4.906667, abs=1e-6)
    assert limits.upper_two_thirds == pytest.approx(19.093333, abs=1e-6)


def test_xmr_limits_of_an_uneven_series() -> None:
    # mean (1+3+2+6)/4 = 3; moving ranges 2, 1, 4 -> 7/3
    limits = xmr_limits([1, 3, 2, 6])
    assert limits == Limits(mean=3.0, mean_moving_range=pytest.approx(7 / 3))


def test_xmr_limits_need_two_points() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        xmr_limits([1.0])


CASES = [
    # (id, points after the baseline, direction, expected rules)
    ("in control", [12.0, 11.0, 13.0], HIGHER, ()),
    ("just inside the lower limit", [1.5], HIGHER, ()),
    ("beyond the lower limit", [1.0], HIGHER, (R.BEYOND_LIMIT,)),
    ("beyond the upper limit is better when higher is better", [23.0], HIGHER, ()),
    ("beyond the upper limit is worse when lower is better", [23.0], LOWER, (R.BEYOND_LIMIT,)),
    ("beyond the lower limit is better when lower is better", [1.0], LOWER, ()),
    ("earlier point beyond, latest back in control", [1.0, 12.5], HIGHER, ()),
    ("2 of 3 beyond the two-thirds line, adjacent", [4.5, 4.5], HIGHER, (R.TWO_OF_THREE,)),
    ("2 of 3 with an in-control point between", [4.5, 13.0, 4.5], HIGHER, (R.TWO_OF_THREE,)),
    ("2 of 3: latest in control but part of the window", [4.5, 4.5, 12.5], HIGHER, (R.TWO_OF_THREE,)),
    ("2 of 3 needed: 1 of 3 is not enough", [11.0, 4.5, 11.0], HIGHER, ()),
    ("2 of 3 on opposite sides is no signal", [4.5, 20.0], HIGHER, ()),
    ("2 of 3 on opposite sides, lower is better", [4.5, 20.0], LOWER, ()),
    ("2 of 3 upper side, lower is better", [20.0, 20.0], LOWER, (R.TWO_OF_THREE,)),
    ("2 of 3 beyond plus beyond the limit", [4.5, 1.0], HIGHER, (R.BEYOND_LIMIT, R.TWO_OF_THREE)),
    ("run of 7 below the mean", [11.0] * 7, HIGHER, (R.SHIFT,)),
    ("run of 6 below the mean is not enough", [11.0] * 6, HIGHER, ()),
    ("run of 7 above the mean is better when higher is better", [13.0] * 7, HIGHER, ()),
    ("run of 7 above the mean, lower is better", [13.0] * 7, LOWER, (R.SHIFT,)),
    ("a point exactly on the mean breaks the run", [11.0, 11.0, 11.0, 12.0, 11.0, 11.0, 11.0], HIGHER, ()),
    ("run resumes after the point on the mean: 7 more", [11.0, 12.0] + [11.0] * 7, HIGHER, (R.SHIFT,)),
    ("run of 8 still signals", [11.0] * 8, HIGHER, (R.SHIFT,)),
    # 14 (last baseline point) then 6 falls: a trend of 7 points, all above 4.9 and not all below 12
    ("6 successive falls (trend of 7)", [13.5, 13.0, 12.5, 12.2, 11.8, 11.5], HIGHER, (R.TREND,)),
    ("5 successive falls is not enough", [13.5, 13.0, 12.5, 12.2, 11.8], HIGHER, ()),
    ("a tie breaks the trend", [13.5, 13.0, 13.0, 12.5, 12.2, 11.8], HIGHER, ()),
    ("a tie at the end breaks the trend", [13.5, 13.0, 12.5, 12.2, 11.8, 11.8], HIGHER, ()),
    # the baseline ends on 14, so a rising trend starts from a dip to 9 (still above 4.9)
    ("6 successive rises are better when higher is better", [9.0, 10.0, 11.0, 12.5, 13.0, 13.5, 14.5], HIGHER, ()),
    ("6 successive rises, lower is better", [9.0, 10.0, 11.0, 12.5, 13.0, 13.5, 14.5], LOWER, (R.TREND,)),
    (
        "trend and shift together",
        [11.9, 11.8, 11.7, 11.6, 11.5, 11.4, 11.3],
        HIGHER,
        (R.SHIFT, R.TREND),
    ),
]


@pytest.mark.parametrize(("points", "direction", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rules(points: list[float], direction: Direction, expected: tuple[SpcRule, ...]) -> None:
    result = evaluate(BASE + points, direction, baseline_points=12)
    assert result.limits is not None
    assert result.limits.mean == pytest.approx(12.0)
    assert result.rules == expected


def test_fewer_than_baseline_points_gives_no_limits_and_no_signal() -> None:
    # 11 points with a wild last one: no SPC alert without a baseline
    result = evaluate(BASE[:10] + [0.0], HIGHER, baseline_points=12)
    assert result.limits is None
    assert not result.signal


def test_exactly_baseline_points_is_judged() -> None:
    # 11 baseline points 12 then 0: mean 11, moving ranges 0 x 10 and 12 -> mMR 12/11
    # lower limit 11 - 2.66 * 12/11 = 8.098; 0 is beyond it
    result = evaluate([12.0] * 11 + [0.0], HIGHER, baseline_points=12)
    assert result.limits is not None
    assert result.limits.lower == pytest.approx(11 - 2.66 * 12 / 11)
    assert R.BEYOND_LIMIT in result.rules


def test_later_points_do_not_move_the_limits() -> None:
    result = evaluate(BASE + [1.0] * 20, HIGHER, baseline_points=12)
    assert result.limits == xmr_limits(BASE)
    assert R.BEYOND_LIMIT in result.rules


def test_longer_baseline_setting() -> None:
    # 14 points of baseline: 10,14 x 7 -> still mean 12, mMR 4; with 13 points there is no judgement
    series = [10.0, 14.0] * 7
    assert evaluate(series[:13], HIGHER, baseline_points=14).limits is None
    assert evaluate(series + [1.0], HIGHER, baseline_points=14).rules == (R.BEYOND_LIMIT,)


def test_rebase_ignores_earlier_points() -> None:
    old = [50.0] * 12
    # without the rebase, the old process sets mean 50 and mMR 0: the new points are all far below
    assert R.BEYOND_LIMIT in evaluate(old + BASE + [12.0], HIGHER).rules
    # rebased at the new process: 12 is exactly on the new mean
    assert evaluate(old + BASE + [12.0], HIGHER, rebase_index=12).rules == ()
    # and fewer than 12 points since the rebase: no judgement at all
    assert evaluate(old + BASE[:5], HIGHER, rebase_index=12).limits is None


def test_flat_baseline_signals_any_worse_point() -> None:
    # mean moving range 0: the limits collapse onto the mean, so any worse point is beyond them
    result = evaluate([0.8] * 12 + [0.79], HIGHER)
    assert result.rules == (R.BEYOND_LIMIT,)
    # twelve copies of 0.8 do not average to exactly 0.8 in floating point: still "on the mean"
    assert evaluate([0.8] * 13, HIGHER).rules == ()
    assert evaluate([0.8] * 12 + [0.81] * 7, HIGHER).rules == ()


def test_baseline_must_have_two_points() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        evaluate([1.0, 2.0], HIGHER, baseline_points=1)

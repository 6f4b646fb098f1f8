"""Did a service change work? Before/after evidence for one weekly series.

Pure functions: no clock, no I/O. :func:`change_evidence` judges the weekly points after a
change against the limits of the group in force before it (Making Data Count: extend the
previous process's limits over the new period and look for special cause in the expected
direction), measures the rate before and after with a 95% interval for the difference, and
grades it:

* ``no_baseline``: the previous group has fewer than 2 points, so it has no limits (a change
  in the first week of data);
* ``too_early``: fewer than 7 weekly points after the change;
* ``sustained``: 7 or more consecutive points after the change strictly on the improvement
  side of the previous mean;
* ``signal``: otherwise, at least one point after the change is special cause in the
  improvement direction against the previous limits (:mod:`alerts.mdc` rules, patterns
  inside the period after the change);
* ``no_signal``: none of these.

The period after a change runs from its first weekly point on or after the change's local
date to the point before the next rebase point (another change, or a configured rebase), or
to the end of the series. The previous group is the last rebase group that ends before the
change. Weeks are counted from the first week starting on or after the change (that week is
week 1).

The interval is Newcombe's hybrid score interval (method 10 of Newcombe 1998, Statistics in
Medicine 17:873-890) for the difference of two independent proportions, rate after minus
rate before. Written here (Wilson score intervals combined by Newcombe's square-and-add)
rather than taken from statsmodels: it is a dozen lines over the standard library, where
statsmodels would bring numpy, scipy, pandas and patsy into every worker; a golden test
holds it to Newcombe's published values.

:class:`ServiceChange` is the shape a ``service.change`` event will carry;
:func:`evidence_for_change` applies :func:`change_evidence` to each measure it names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from statistics import NormalDist

from alerts.mdc import (
    DEFAULT_SETTINGS,
    ChartSettings,
    GroupLimits,
    PointType,
    Rule,
    WeeklyValue,
    compare,
    group_limits,
    group_rules,
    group_starts,
    point_type,
)
from alerts.spc import Direction

SUSTAINED_POINTS = 7
MIN_POINTS_AFTER = 7


class Grade(StrEnum):
    NO_BASELINE = "no_baseline"
    TOO_EARLY = "too_early"
    NO_SIGNAL = "no_signal"
    SIGNAL = "signal"
    SUSTAINED = "sustained"


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a proportion. Raises ``ValueError`` when ``trials`` < 1 or
    ``successes`` is not in 0..trials."""
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"a proportion needs 0 <= successes <= trials and trials >= 1, got {successes}/{trials}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    centre = 2 * trials * p + z * z
    spread = z * math.sqrt(z * z + 4 * trials * p * (1 - p))
    scale = 2 * (trials + z * z)
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def newcombe_interval(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p_a - p_b (independent proportions).

    Raises ``ValueError`` as :func:`wilson_interval` does.
    """
    pa, pb = successes_a / max(trials_a, 1), successes_b / max(trials_b, 1)
    la, ua = wilson_interval(successes_a, trials_a, confidence)
    lb, ub = wilson_interval(successes_b, trials_b, confidence)
    d = pa - pb
    return d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2), d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the weekly points say about one change and one measure (see the module docstring).

    ``previous`` is None when there is no point before the change; ``difference`` and
    ``interval`` are None when either side has no point.
    """

    grade: Grade
    direction: Direction
    first_week: date
    points_after: int
    previous: GroupLimits | None
    first_signal: date | None
    weeks_to_signal: int | None
    signal_rules: tuple[Rule, ...]
    before: tuple[int, int]
    after: tuple[int, int]
    difference: float | None
    interval: tuple[float, float] | None

    def as_dict(self) -> dict[str, object]:
        """The report's entry (docs/spc.md)."""
        prev = self.previous
        return {
            "grade": self.grade.value,
            "direction": self.direction.value,
            "first_week": self.first_week.isoformat(),
            "points_after": self.points_after,
            "previous": None
            if prev is None
            else {"mean": prev.mean, "upper": prev.upper, "lower": prev.lower, "trial": prev.trial},
            "first_signal": None if self.first_signal is None else self.first_signal.isoformat(),
            "weeks_to_signal": self.weeks_to_signal,
            "signal_rules": [r.value for r in self.signal_rules],
            "before": {"numerator": self.before[0], "denominator": self.before[1]},
            "after": {"numerator": self.after[0], "denominator": self.after[1]},
            "difference": self.difference,
            "interval": None if self.interval is None else list(self.interval),
        }


def _monday_on_or_after(day: date) -> date:
    return day + timedelta(days=(7 - day.weekday()) % 7)


def change_evidence(
    points: Sequence[WeeklyValue],
    change: date,
    direction: Direction,
    rebase: Sequence[date] = (),
    settings: ChartSettings = DEFAULT_SETTINGS,
) -> Evidence:
    """Evidence for a change taking effect on local date ``change`` (see the module docstring).

    ``points`` are the measure's weekly points in time order (each denominator > 0);
    ``direction`` is the side the change should move the rate to (the measure's improvement
    direction, or the change's expected direction); ``rebase`` holds the other rebase points
    of the series (configured ones, other changes; ``change`` itself may be among them).
    """
    first_week = _monday_on_or_after(change)
    later = sorted(r for r in rebase if r > change)
    end = _monday_on_or_after(later[0]) if later else None
    before = [p for p in points if p.week < first_week]
    after = [p for p in points if p.week >= first_week and (end is None or p.week < end)]

    previous: GroupLimits | None = None
    prev_points: list[WeeklyValue] = []
    if before:
        groups = group_starts([p.week for p in before], [r for r in rebase if r < change])
        prev_points = [p for p, g in zip(before, groups, strict=True) if g == groups[-1]]
        previous = group_limits([p.value for p in prev_points], settings)

    first_signal: WeeklyValue | None = None
    signal_rules: tuple[Rule, ...] = ()
    sustained = False
    if previous is not None and previous.mean_moving_range is not None and after:
        values = [p.value for p in after]
        better = 1 if direction is Direction.HIGHER_IS_BETTER else -1
        for p, rules in zip(after, group_rules(values, previous), strict=True):
            if point_type(p.value, rules, previous.mean, direction) is PointType.IMPROVEMENT:
                first_signal, signal_rules = p, rules
                break
        run = 0
        for v in values:
            run = run + 1 if compare(v, previous.mean) == better else 0
            sustained = sustained or run >= SUSTAINED_POINTS

    if previous is None or previous.mean_moving_range is None:
        grade = Grade.NO_BASELINE
    elif len(after) < MIN_POINTS_AFTER:
        grade = Grade.TOO_EARLY
    elif sustained:
        grade = Grade.SUSTAINED
    elif first_signal is not None:
        grade = Grade.SIGNAL
    else:
        grade = Grade.NO_SIGNAL

    num_b, den_b = sum(p.numerator for p in prev_points), sum(p.denominator for p in prev_points)
    num_a, den_a = sum(p.numerator for p in after), sum(p.denominator for p in after)
    difference: float | None = None
    interval: tuple[float, float] | None = None
    if den_a and den_b:
        difference = num_a / den_a - num_b / den_b
        interval = newcombe_interval(num_a, den_a, num_b, den_b)
    return Evidence(
        grade=grade,
        direction=direction,
        first_week=first_week,
        points_after=len(after),
        previous=previous,
        first_signal=None if first_signal is None else first_signal.week,
        weeks_to_signal=None if first_signal is None else (first_signal.week - first_week).days // 7 + 1,
        signal_rules=signal_rules,
        before=(num_b, den_b),
        after=(num_a, den_a),
        difference=difference,
        interval=interval,
    )


@dataclass(frozen=True, slots=True)
class ServiceChange:
    """A recorded service change (the ``service.change`` event's data and time).

    ``team`` may be ``*`` (the provider-wide series); ``measures`` None means every rate
    measure; ``expected_direction`` None means each measure's improvement direction.
    ``time`` must be timezone-aware.
    """

    change_id: str
    team: str
    measures: tuple[str, ...] | None
    time: datetime
    description: str
    expected_direction: Direction | None = None


def evidence_for_change(
    change: ServiceChange,
    series: Callable[[str, str], Sequence[WeeklyValue]],
    directions: Mapping[str, Direction],
    local_date: Callable[[datetime], date],
    rebase: Callable[[str, str], Sequence[date]] = lambda team, measure: (),
    settings: ChartSettings = DEFAULT_SETTINGS,
) -> dict[str, Evidence]:
    """:func:`change_evidence` for each measure the change names (all of ``directions`` when
    it names none), keyed by measure. ``series(team, measure)`` gives the weekly points,
    ``local_date`` the provider's local date of an instant, ``rebase(team, measure)`` the
    series' other rebase points. Raises ``ValueError`` on a naive ``time`` or a measure
    without a direction."""
    if change.time.tzinfo is None:
        raise ValueError(f"change {change.change_id}: time must be timezone-aware")
    day = local_date(change.time)
    out: dict[str, Evidence] = {}
    for measure in change.measures or tuple(directions):
        if measure not in directions:
            raise ValueError(f"change {change.change_id}: {measure!r} is not a rate measure")
        direction = change.expected_direction or directions[measure]
        out[measure] = change_evidence(
            series(change.team, measure), day, direction, rebase(change.team, measure), settings
        )
    return out


__all__ = [
    "Evidence",
    "Grade",
    "ServiceChange",
    "change_evidence",
    "evidence_for_change",
    "newcombe_interval",
    "wilson_interval",
]

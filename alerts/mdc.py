"""Making Data Count (MDC) XmR charts, computed as NHSRplotthedots computes them.

Pure functions over plain numbers: no clock, no I/O. :func:`chart` takes one weekly series
(team and measure) with its rebase points and settings and returns every point with its
group, limits, type and the rules it is part of, plus the variation and assurance icons.

How a chart is computed (NHSRplotthedots ``ptd_spc_standard`` and
``ptd_calculate_point_type``):

* **Groups.** A rebase point starts a group at the first weekly point on or after it. Each
  group is computed on its own: no moving range and no pattern spans two groups.
* **Limits.** From the group's first ``baseline_points`` points, or from all its points while
  it has fewer (then the group's limits are *trial* limits: they move with each new point).
  Moving ranges are the absolute differences of consecutive baseline points; with
  ``screen_outliers`` those at or above 3.267 x their mean are dropped and the mean moving
  range is taken again from the rest (the MDC Excel tool does not screen). Process limits
  are mean +/- 2.66 x mean moving range; the two-thirds lines mean +/- (2/3) x 2.66 x mean
  moving range. A group of one point has a mean and no limits.
* **Rules**, in precedence order (:class:`Rule`): ``beyond_limit`` (a point strictly beyond a
  process limit); ``trend`` (7 points, each strictly above or each strictly below the one
  before: a tie breaks it); ``two_of_three`` (2 or 3 of 3 consecutive points strictly beyond
  a two-thirds line and not beyond the limits, all three strictly on the same side of the
  mean); ``shift`` (7 consecutive points strictly on one side of the mean: a point on the
  mean breaks it). Every point of a pattern is flagged, except that a 2-of-3 flags only its
  points beyond the two-thirds line (as NHSRplotthedots does).
* **Type** of a flagged point, by its side of the mean, as NHSRplotthedots types it:
  ``special_cause_improvement`` on the improvement side, ``special_cause_concern`` otherwise
  (so a point exactly on the mean that is part of a trend is a concern, and the early points
  of an improving trend that are still on the worse side of the mean are concerns too).
* **Variation icon** from the last point's type and the improvement direction.
* **Assurance icon** (only with a target): the target against the *latest group's* process
  limits, with strict inequalities as NHSRplotthedots: for higher-is-better, a target above
  the upper limit is ``consistent_fail``, below the lower limit ``consistent_pass``, anything
  else (a target exactly on a limit included) ``inconsistent``; mirrored for lower-is-better.
  No limits (a one-point group) gives no assurance icon.

Values equal up to floating-point rounding count as equal (the mean of twelve copies of 0.8 is
not exactly 0.8), for the mean, ties in a trend, the lines and the target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import NamedTuple

from alerts.spc import Direction

LIMIT_FACTOR = 2.66
SCREEN_FACTOR = 3.267
RUN_LENGTH = 7
TREND_LENGTH = 7


class Rule(StrEnum):
    """The MDC special-cause rules, in precedence order (the order of ``ChartPoint.rules``)."""

    BEYOND_LIMIT = "beyond_limit"
    TREND = "trend"
    TWO_OF_THREE = "two_of_three"
    SHIFT = "shift"

    @property
    def description(self) -> str:
        return _RULE_TEXT[self]


_RULE_TEXT = {
    Rule.BEYOND_LIMIT: "a point beyond a process limit",
    Rule.TREND: f"a trend of {TREND_LENGTH} points rising or falling",
    Rule.TWO_OF_THREE: "2 of 3 points beyond a two-thirds line, on one side of the mean",
    Rule.SHIFT: f"{RUN_LENGTH} points in a row on one side of the mean",
}


class PointType(StrEnum):
    COMMON_CAUSE = "common_cause"
    IMPROVEMENT = "special_cause_improvement"
    CONCERN = "special_cause_concern"


class Variation(StrEnum):
    COMMON_CAUSE = "common_cause"
    IMPROVEMENT_HIGH = "improvement_high"
    IMPROVEMENT_LOW = "improvement_low"
    CONCERN_HIGH = "concern_high"
    CONCERN_LOW = "concern_low"


class Assurance(StrEnum):
    CONSISTENT_PASS = "consistent_pass"  # noqa: S105 (an icon name, not a password)
    CONSISTENT_FAIL = "consistent_fail"
    INCONSISTENT = "inconsistent"


@dataclass(frozen=True, slots=True)
class ChartSettings:
    """How limits are set. ``baseline_points`` None takes every point of a group (the
    NHSRplotthedots default); the MDC default is 12. ``baseline_points`` below 2 raises
    ``ValueError``."""

    baseline_points: int | None = 12
    screen_outliers: bool = True

    def __post_init__(self) -> None:
        if self.baseline_points is not None and self.baseline_points < 2:
            raise ValueError("baseline_points must be at least 2 (a moving range needs a pair)")


DEFAULT_SETTINGS = ChartSettings()


class WeeklyValue(NamedTuple):
    """One weekly point: ``week`` is the local Monday; ``value`` is numerator / denominator.
    (A named tuple: SpecialCause builds one per week of every series at each day boundary.)"""

    week: date
    numerator: int
    denominator: int

    @property
    def value(self) -> float:
        return self.numerator / self.denominator


@dataclass(frozen=True, slots=True)
class GroupLimits:
    """The centre line and limits of one rebase group. ``mean_moving_range`` is None for a
    group of one point (no limits)."""

    mean: float
    mean_moving_range: float | None
    trial: bool

    @property
    def upper(self) -> float | None:
        return None if self.mean_moving_range is None else self.mean + LIMIT_FACTOR * self.mean_moving_range

    @property
    def lower(self) -> float | None:
        return None if self.mean_moving_range is None else self.mean - LIMIT_FACTOR * self.mean_moving_range

    @property
    def upper_two_thirds(self) -> float | None:
        amr = self.mean_moving_range
        return None if amr is None else self.mean + 2 / 3 * LIMIT_FACTOR * amr

    @property
    def lower_two_thirds(self) -> float | None:
        amr = self.mean_moving_range
        return None if amr is None else self.mean - 2 / 3 * LIMIT_FACTOR * amr


@dataclass(frozen=True, slots=True)
class ChartPoint:
    """One point of a chart: its input, its group's limits, its type and its rules."""

    point: WeeklyValue
    group: int
    limits: GroupLimits
    type: PointType
    rules: tuple[Rule, ...]

    def as_dict(self) -> dict[str, object]:
        """The report's point entry (see docs/spc.md)."""
        lim = self.limits
        return {
            "week": self.point.week.isoformat(),
            "numerator": self.point.numerator,
            "denominator": self.point.denominator,
            "value": self.point.value,
            "group": self.group,
            "trial": lim.trial,
            "mean": lim.mean,
            "upper": lim.upper,
            "lower": lim.lower,
            "upper_two_thirds": lim.upper_two_thirds,
            "lower_two_thirds": lim.lower_two_thirds,
            "type": self.type.value,
            "rules": [r.value for r in self.rules],
        }


@dataclass(frozen=True, slots=True)
class Chart:
    """A whole chart. ``variation`` is None for an empty series; ``assurance`` is None
    without a target or without limits."""

    points: tuple[ChartPoint, ...]
    direction: Direction
    target: float | None
    variation: Variation | None
    assurance: Assurance | None


def same(a: float, b: float) -> bool:
    """Equal up to floating-point rounding."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def group_limits(values: Sequence[float], settings: ChartSettings) -> GroupLimits:
    """Limits of one group from its values (in time order; at least one).

    Raises ``ValueError`` on an empty group.
    """
    if not values:
        raise ValueError("a group needs at least one point")
    n = len(values) if settings.baseline_points is None else min(len(values), settings.baseline_points)
    trial = settings.baseline_points is not None and len(values) < settings.baseline_points
    base = values[:n]
    mean = sum(base) / n
    ranges = [abs(b - a) for a, b in zip(base, base[1:], strict=False)]
    if not ranges:
        return GroupLimits(mean, None, trial)
    amr = sum(ranges) / len(ranges)
    if settings.screen_outliers:
        kept = [r for r in ranges if r < SCREEN_FACTOR * amr and not same(r, SCREEN_FACTOR * amr)]
        # nothing kept only when every range is 0 (a constant group): its mean moving range is 0
        amr = sum(kept) / len(kept) if kept else amr
    return GroupLimits(mean, amr, trial)


def compare(a: float, b: float) -> int:
    """-1, 0 or +1 as ``a`` is below, equal to (up to rounding) or above ``b``."""
    return 0 if same(a, b) else (1 if a > b else -1)


def _sides(values: Sequence[float], mean: float) -> list[int]:
    return [compare(v, mean) for v in values]


def _outside(v: float, low: float, high: float) -> bool:
    """Strictly above ``high`` or strictly below ``low`` (up to rounding)."""
    return (v > high and not same(v, high)) or (v < low and not same(v, low))


def group_rules(values: Sequence[float], limits: GroupLimits) -> list[tuple[Rule, ...]]:
    """For each value of one group, the rules whose pattern it is part of (precedence order)."""
    n = len(values)
    flags: list[set[Rule]] = [set() for _ in range(n)]
    side = _sides(values, limits.mean)
    up, lo, up23, lo23 = limits.upper, limits.lower, limits.upper_two_thirds, limits.lower_two_thirds
    if up is not None and lo is not None and up23 is not None and lo23 is not None:
        beyond = [_outside(v, lo, up) for v in values]
        near = [not b and _outside(v, lo23, up23) for v, b in zip(values, beyond, strict=True)]
    else:
        beyond = near = [False] * n
    for i in range(n):
        if beyond[i]:
            flags[i].add(Rule.BEYOND_LIMIT)
    steps = [compare(b, a) for a, b in zip(values, values[1:], strict=False)]
    for end in range(TREND_LENGTH - 1, n):
        start = end - TREND_LENGTH + 1
        first = steps[start]
        if first != 0 and all(steps[k] == first for k in range(start, end)):
            for k in range(start, end + 1):
                flags[k].add(Rule.TREND)
    for start in range(n - 2):
        window = range(start, start + 3)
        if sum(near[k] for k in window) >= 2 and abs(sum(side[k] for k in window)) == 3:
            for k in window:
                if near[k]:
                    flags[k].add(Rule.TWO_OF_THREE)
    for end in range(RUN_LENGTH - 1, n):
        start = end - RUN_LENGTH + 1
        run = side[start : end + 1]
        if run[0] != 0 and all(s == run[0] for s in run):
            for k in range(start, end + 1):
                flags[k].add(Rule.SHIFT)
    return [tuple(r for r in Rule if r in f) if f else () for f in flags]


def _improving(direction: Direction) -> int:
    return 1 if direction is Direction.HIGHER_IS_BETTER else -1


def point_type(value: float, rules: Sequence[Rule], mean: float, direction: Direction) -> PointType:
    """A flagged point's type by its side of the mean (on the mean: concern)."""
    if not rules:
        return PointType.COMMON_CAUSE
    if compare(value, mean) == _improving(direction):
        return PointType.IMPROVEMENT
    return PointType.CONCERN


def variation_icon(last: PointType, direction: Direction) -> Variation:
    """The MDC variation icon for the last point's type."""
    higher = direction is Direction.HIGHER_IS_BETTER
    if last is PointType.IMPROVEMENT:
        return Variation.IMPROVEMENT_HIGH if higher else Variation.IMPROVEMENT_LOW
    if last is PointType.CONCERN:
        return Variation.CONCERN_LOW if higher else Variation.CONCERN_HIGH
    return Variation.COMMON_CAUSE


def assurance_icon(target: float | None, limits: GroupLimits, direction: Direction) -> Assurance | None:
    """The MDC assurance icon: ``target`` against the latest group's process limits (strict
    inequalities; a target on a limit is inconsistent). None without a target or limits."""
    up, lo = limits.upper, limits.lower
    if target is None or up is None or lo is None:
        return None
    higher = direction is Direction.HIGHER_IS_BETTER
    if target > up and not same(target, up):
        return Assurance.CONSISTENT_FAIL if higher else Assurance.CONSISTENT_PASS
    if target < lo and not same(target, lo):
        return Assurance.CONSISTENT_PASS if higher else Assurance.CONSISTENT_FAIL
    return Assurance.INCONSISTENT


def group_starts(weeks: Sequence[date], rebase: Sequence[date]) -> list[int]:
    """Each point's 0-based group: a rebase date starts a group at the first week on or after
    it (a rebase on or before the first week, or after the last, starts nothing)."""
    starts = sorted({i for r in rebase for i, w in enumerate(weeks) if w >= r and (i == 0 or weeks[i - 1] < r)})
    groups = []
    g = 0
    for i in range(len(weeks)):
        if i in starts and i > 0:
            g += 1
        groups.append(g)
    return groups


def chart(
    points: Sequence[WeeklyValue],
    direction: Direction,
    rebase: Sequence[date] = (),
    settings: ChartSettings = DEFAULT_SETTINGS,
    target: float | None = None,
) -> Chart:
    """The MDC chart of one weekly series (points in time order, each denominator > 0).

    Raises ``ValueError`` on points out of order or a zero denominator.
    """
    for a, b in zip(points, points[1:], strict=False):
        if b.week <= a.week:
            raise ValueError(f"weekly points out of order: {b.week} after {a.week}")
    if any(p.denominator <= 0 for p in points):
        raise ValueError("a weekly point needs a denominator above 0")
    groups = group_starts([p.week for p in points], rebase)
    out: list[ChartPoint] = []
    limits: GroupLimits | None = None
    for g in sorted(set(groups)):
        members = [p for p, pg in zip(points, groups, strict=True) if pg == g]
        values = [p.value for p in members]
        limits = group_limits(values, settings)
        for p, rules in zip(members, group_rules(values, limits), strict=True):
            out.append(ChartPoint(p, g, limits, point_type(p.value, rules, limits.mean, direction), rules))
    variation = variation_icon(out[-1].type, direction) if out else None
    assurance = None if limits is None else assurance_icon(target, limits, direction)
    return Chart(tuple(out), direction, target, variation, assurance)


def latest_point(
    points: Sequence[WeeklyValue],
    direction: Direction,
    rebase: Sequence[date] = (),
    settings: ChartSettings = DEFAULT_SETTINGS,
) -> ChartPoint | None:
    """The last point of :func:`chart` (None for an empty series), computed from the latest
    group's baseline and its last points only: a pattern that contains the last point ends
    there and spans at most 7 points. SpecialCause calls this at every day boundary for every
    series, where drawing whole charts would dominate a replay.
    """
    if not points:
        return None
    last = points[-1]
    # the latest group starts at the first week on or after the latest rebase point that has
    # a week on or after it; earlier rebase points each start one group before it
    starts = sorted({r for r in rebase if points[0].week < r <= last.week})
    first = 0
    group = 0
    for r in starts:
        i = next(k for k, p in enumerate(points) if p.week >= r)
        group += i > first
        first = i
    size = len(points) - first
    n = size if settings.baseline_points is None else min(size, settings.baseline_points)
    limits = group_limits([p.value for p in points[first : first + n]], settings)
    tail = [p.value for p in points[max(first, len(points) - max(RUN_LENGTH, TREND_LENGTH)) :]]
    rules = group_rules(tail, limits)[-1]
    return ChartPoint(last, group, limits, point_type(last.value, rules, limits.mean, direction), rules)


__all__ = [
    "Assurance",
    "Chart",
    "ChartPoint",
    "ChartSettings",
    "DEFAULT_SETTINGS",
    "GroupLimits",
    "PointType",
    "Rule",
    "Variation",
    "WeeklyValue",
    "assurance_icon",
    "chart",
    "group_limits",
    "group_rules",
    "group_starts",
    "latest_point",
    "point_type",
    "variation_icon",
]

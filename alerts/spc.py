"""Statistical process control for weekly rate series: NHS "Making Data Count" XmR rules.

Pure functions over plain numbers: no clock, no I/O. The churn rules (``alerts.rules``) feed
them the weekly proportions of one team and measure.

Limits come from a *baseline*: the first ``baseline_points`` points at or after the rebase
point (or the start of the series). They are fixed once computed; later points are judged
against them. The rules, each looking only in the worse direction of the measure:

* ``beyond_limit``: a point beyond the process limit (mean ± 2.66 × mean moving range);
* ``two_of_three``: 2 of 3 consecutive points beyond two-thirds of the way from the mean to
  the limit, on the same (worse) side; the third point may be anywhere;
* ``shift``: a run of 7 consecutive points on the worse side of the mean; a point exactly on
  the mean breaks the run;
* ``trend``: 7 consecutive points each strictly worse than the one before (6 successive rises
  or falls); a tie (two equal consecutive values) breaks the trend.

A series *signals* when its latest point is part of a pattern, which is what the "variation"
icon of Making Data Count reports: the alert fires while the latest week is special cause and
resolves at the first later week that is not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

LIMIT_FACTOR = 2.66
RUN_LENGTH = 7
TREND_LENGTH = 7


class Direction(StrEnum):
    """Which way is better for a measure."""

    HIGHER_IS_BETTER = "higher"
    LOWER_IS_BETTER = "lower"


class SpcRule(StrEnum):
    """The Making Data Count rules, in the order they are reported when several fire."""

    BEYOND_LIMIT = "beyond_limit"
    TWO_OF_THREE = "two_of_three"
    SHIFT = "shift"
    TREND = "trend"

    @property
    def description(self) -> str:
        return _RULE_TEXT[self]


_RULE_TEXT = {
    SpcRule.BEYOND_LIMIT: "a point beyond the process limit",
    SpcRule.TWO_OF_THREE: "2 of 3 points beyond two-thirds of the way to the process limit",
    SpcRule.SHIFT: f"a run of {RUN_LENGTH} points on the worse side of the mean",
    SpcRule.TREND: f"{TREND_LENGTH - 1} successive worsening points (a trend of {TREND_LENGTH})",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Centre line and process limits of an XmR chart."""

    mean: float
    mean_moving_range: float

    @property
    def upper(self) -> float:
        return self.mean + LIMIT_FACTOR * self.mean_moving_range

    @property
    def lower(self) -> float:
        return self.mean - LIMIT_FACTOR * self.mean_moving_range

    @property
    def upper_two_thirds(self) -> float:
        return self.mean + 2 / 3 * LIMIT_FACTOR * self.mean_moving_range

    @property
    def lower_two_thirds(self) -> float:
        return self.mean - 2 / 3 * LIMIT_FACTOR * self.mean_moving_range


@dataclass(frozen=True, slots=True)
class SpcResult:
    """What the rules say about the latest point of a series.

    ``rules`` is empty when the latest point is common-cause variation (or there is no
    baseline yet, in which case ``limits`` is None).
    """

    limits: Limits | None
    rules: tuple[SpcRule, ...]

    @property
    def signal(self) -> bool:
        return bool(self.rules)


def xmr_limits(values: Sequence[float]) -> Limits:
    """Mean and mean moving range of ``values`` (at least 2 of them).

    Raises ``ValueError`` with fewer than 2 values: a moving range needs a pair.
    """
    if len(values) < 2:
        raise ValueError("XmR limits need at least 2 points")
    mean = sum(values) / len(values)
    ranges = [abs(b - a) for a, b in zip(values, values[1:], strict=False)]
    return Limits(mean=mean, mean_moving_range=sum(ranges) / len(ranges))


def _same(a: float, b: float) -> bool:
    """Equal up to floating-point rounding (a mean of 12 copies of 0.8 is not exactly 0.8)."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _worse(direction: Direction) -> int:
    """+1 when a larger value is worse, -1 when a smaller one is."""
    return -1 if direction is Direction.HIGHER_IS_BETTER else 1


def latest_signals(values: Sequence[float], limits: Limits, direction: Direction) -> tuple[SpcRule, ...]:
    """Rules for which the last of ``values`` is part of a worse-direction pattern."""
    if not values:
        return ()
    worse = _worse(direction)
    mean = limits.mean
    # Signed distance from the mean, positive on the worse side; rounding noise counts as on it.
    dev = [0.0 if _same(v, mean) else worse * (v - mean) for v in values]
    limit = LIMIT_FACTOR * limits.mean_moving_range
    near = 2 / 3 * limit
    rules: list[SpcRule] = []

    if dev[-1] > limit:
        rules.append(SpcRule.BEYOND_LIMIT)

    last3 = dev[-3:]
    if len(last3) == 3 and sum(1 for d in last3 if d > near) >= 2:
        rules.append(SpcRule.TWO_OF_THREE)

    run = dev[-RUN_LENGTH:]
    if len(run) == RUN_LENGTH and all(d > 0 for d in run):
        rules.append(SpcRule.SHIFT)

    trend = values[-TREND_LENGTH:]
    if len(trend) == TREND_LENGTH and all(
        not _same(a, b) and worse * (b - a) > 0 for a, b in zip(trend, trend[1:], strict=False)
    ):
        rules.append(SpcRule.TREND)
    return tuple(rules)


def evaluate(
    values: Sequence[float], direction: Direction, baseline_points: int = 12, rebase_index: int = 0
) -> SpcResult:
    """Judge the latest point of a weekly series.

    ``values`` are in time order; ``rebase_index`` is the index of the first point of the
    current baseline (points before it belong to an earlier process and are ignored).
    With fewer than ``baseline_points`` points since the rebase there are no limits and no
    signal. ``baseline_points`` below 2 raises ``ValueError``.
    """
    if baseline_points < 2:
        raise ValueError("a baseline needs at least 2 points")
    current = values[rebase_index:]
    if len(current) < baseline_points:
        return SpcResult(limits=None, rules=())
    limits = xmr_limits(current[:baseline_points])
    return SpcResult(limits=limits, rules=latest_signals(current, limits, direction))

"""Pure statistics for the board report: proportion funnels, Poisson intervals, O/E, Newcombe.

Funnels follow FunnelPlotR for proportions (``data_type="PR"``); intervals for observed
counts follow PHEindicatormethods (exact chi-squared below 10, Byar's from 10). Nothing here
reads settings, files or the clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2, norm

Z95 = 1.959964
Z998 = 3.090232


# -- funnels ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelUnit:
    """One team's point on a funnel: ``numerator`` events out of ``denominator``."""

    name: str
    numerator: int
    denominator: int


@dataclass(frozen=True)
class FunnelPoint:
    name: str
    numerator: int
    denominator: int
    rate: float
    z: float
    limits: dict[str, tuple[float, float]]  # "95" / "99.8" -> (lower, upper) at this denominator
    outlier: str | None  # "high" / "low" beyond the 99.8% limits, else None
    outlier_95: str | None  # the same against the 95% limits


@dataclass(frozen=True)
class Funnel:
    """A proportion funnel. ``tau2`` is 0 and ``adjusted`` False when the limits are unadjusted;
    ``fallback`` then says why (``None`` when overdispersion was applied)."""

    target: float
    phi: float
    tau2: float
    adjusted: bool
    fallback: str | None
    points: list[FunnelPoint]
    excluded: list[str]  # units with a zero denominator: no rate, not on the plot

    def limits(self, denominator: float, z: float) -> tuple[float, float]:
        return proportion_limits(self.target, denominator, z, self.tau2)


def winsorise(values: Sequence[float], fraction: float = 0.1) -> list[float]:
    """Values clamped to their ``fraction`` and ``1 - fraction`` quantiles (R's default type 7,
    as FunnelPlotR's ``quantile`` call computes them)."""
    if not values:
        return []
    low, high = np.quantile(np.asarray(values, dtype=float), [fraction, 1 - fraction])
    return [min(max(v, float(low)), float(high)) for v in values]


def proportion_limits(target: float, denominator: float, z: float, tau2: float = 0.0) -> tuple[float, float]:
    """``sin^2(asin(sqrt(target)) -/+ z * sqrt(1/(4n) + tau2))`` clipped to [0, 1]; a bound whose
    angle leaves [0, pi/2] is 0 or 1, so the limits stay monotone in ``n`` (FunnelPlotR)."""
    theta = math.asin(math.sqrt(target))
    spread = z * math.sqrt(1.0 / (4.0 * denominator) + tau2)
    lo_angle, hi_angle = theta - spread, theta + spread
    lower = 0.0 if lo_angle <= 0 else math.sin(lo_angle) ** 2
    upper = 1.0 if hi_angle >= math.pi / 2 else math.sin(hi_angle) ** 2
    return lower, upper


def proportion_funnel(units: Iterable[FunnelUnit], trim: float = 0.1) -> Funnel:
    """FunnelPlotR's proportion funnel with Spiegelhalter's additive random-effects adjustment.

    target = sum(O) / sum(n); per unit y = asin(sqrt(O/n)), s = 1/(2 sqrt(n)),
    z = (y - asin(sqrt(target))) / s; z winsorised at ``trim``; phi = mean of squared
    winsorised z; tau2 = 0 when n*phi < n-1, else (n*phi - (n-1)) / (sum w - sum w^2 / sum w),
    w = 1/s^2 (DerSimonian-Laird). phi <= 1 falls back to unadjusted limits (tau2 = 0).
    A zero numerator is an ordinary point (y = 0); a zero denominator has no rate and is
    listed in ``excluded``. Outliers lie strictly outside a limit.
    """
    units = list(units)
    used = [u for u in units if u.denominator > 0]
    excluded = [u.name for u in units if u.denominator <= 0]
    total_n = sum(u.denominator for u in used)
    if not used or total_n == 0:
        return Funnel(0.0, 0.0, 0.0, False, "no unit has a denominator", [], excluded)
    target = sum(u.numerator for u in used) / total_n
    theta = math.asin(math.sqrt(target))
    s = [1.0 / (2.0 * math.sqrt(u.denominator)) for u in used]
    z = [(math.asin(math.sqrt(u.numerator / u.denominator)) - theta) / si for u, si in zip(used, s, strict=True)]
    zw = winsorise(z, trim)
    k = len(used)
    phi = sum(v * v for v in zw) / k
    tau2 = 0.0
    fallback: str | None = None
    if target in (0.0, 1.0):
        fallback = "every unit has the same all-or-none rate"
    elif k < 2:
        fallback = "one unit: overdispersion cannot be estimated"
    elif phi <= 1.0:
        fallback = f"phi = {phi:.3f} <= 1: no overdispersion"
    else:  # phi > 1, so n*phi >= n-1 and the DerSimonian-Laird tau2 is positive
        w = [1.0 / (si * si) for si in s]
        tau2 = (k * phi - (k - 1)) / (sum(w) - sum(x * x for x in w) / sum(w))
    points = []
    for u, zi in zip(used, z, strict=True):
        rate = u.numerator / u.denominator
        lim95 = proportion_limits(target, u.denominator, Z95, tau2)
        lim998 = proportion_limits(target, u.denominator, Z998, tau2)
        points.append(
            FunnelPoint(
                u.name, u.numerator, u.denominator, rate, zi,
                {"95": lim95, "99.8": lim998}, _side(rate, lim998), _side(rate, lim95),
            )
        )
    return Funnel(target, phi, tau2, tau2 > 0, fallback, points, excluded)


def _side(value: float, limits: tuple[float, float]) -> str | None:
    if value > limits[1]:
        return "high"
    if value < limits[0]:
        return "low"
    return None


# -- intervals for counts ----------------------------------------------------------------------


def poisson_interval(observed: int, confidence: float = 0.95) -> tuple[float, float]:
    """Interval for a Poisson count as PHEindicatormethods computes it: Byar's approximation
    for ``observed >= 10``, else exact from chi-squared quantiles (lower 0 at ``observed == 0``,
    upper finite: chi2(1 - a/2, 2) / 2)."""
    if observed < 0:
        raise ValueError(f"observed count {observed} is negative")
    alpha = 1.0 - confidence
    z = float(norm.ppf(1 - alpha / 2))
    if observed >= 10:
        o = float(observed)
        lower = o * (1 - 1 / (9 * o) - z / (3 * math.sqrt(o))) ** 3
        o1 = o + 1
        upper = o1 * (1 - 1 / (9 * o1) + z / (3 * math.sqrt(o1))) ** 3
        return lower, upper
    lower = 0.0 if observed == 0 else float(chi2.ppf(alpha / 2, 2 * observed)) / 2
    upper = float(chi2.ppf(1 - alpha / 2, 2 * observed + 2)) / 2
    return lower, upper


# -- case-mix-adjusted observed / expected -----------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """Counts of one team in one stratum (e.g. urgency ``routine``)."""

    team: str
    stratum: str
    numerator: int
    denominator: int


@dataclass(frozen=True)
class ObservedExpected:
    team: str
    observed: int
    expected: float
    denominator: int
    ratio: float | None  # None when expected is 0
    lower: float | None
    upper: float | None


def observed_expected(cells: Iterable[Cell], confidence: float = 0.95) -> list[ObservedExpected]:
    """Indirectly standardised O/E per team: expected = sum over strata of the team's
    denominator times the provider's own rate in that stratum (all teams' cells pooled).
    The interval is the count interval of :func:`poisson_interval` divided by expected.
    Teams come back sorted by name."""
    cells = list(cells)
    pooled: dict[str, list[int]] = {}
    for c in cells:
        if c.numerator < 0 or c.denominator < c.numerator:
            raise ValueError(f"cell {c.team}/{c.stratum}: numerator {c.numerator} of {c.denominator}")
        acc = pooled.setdefault(c.stratum, [0, 0])
        acc[0] += c.numerator
        acc[1] += c.denominator
    rate = {s: (num / den if den else 0.0) for s, (num, den) in pooled.items()}
    teams: dict[str, list[float]] = {}
    for c in cells:
        acc2 = teams.setdefault(c.team, [0.0, 0.0, 0.0])
        acc2[0] += c.numerator
        acc2[1] += c.denominator * rate[c.stratum]
        acc2[2] += c.denominator
    out = []
    for team in sorted(teams):
        observed, expected, den = int(teams[team][0]), teams[team][1], int(teams[team][2])
        if expected <= 0:
            out.append(ObservedExpected(team, observed, expected, den, None, None, None))
            continue
        lo, hi = poisson_interval(observed, confidence)
        out.append(ObservedExpected(team, observed, expected, den, observed / expected, lo / expected, hi / expected))
    return out


# -- difference of two proportions -------------------------------------------------------------------


def wilson(num: int, den: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for num/den (den > 0)."""
    p = num / den
    centre = 2 * num + z * z
    spread = z * math.sqrt(z * z + 4 * num * (1 - p))
    scale = 2 * (den + z * z)
    return (centre - spread) / scale, (centre + spread) / scale


def newcombe_difference(n1: int, d1: int, n2: int, d2: int, z: float = Z95) -> tuple[float, float, float]:
    """p1 - p2 with Newcombe's hybrid score interval (method 10): returns (difference, lower,
    upper). Both denominators must be positive."""
    if d1 <= 0 or d2 <= 0:
        raise ValueError("both periods need a positive denominator")
    p1, p2 = n1 / d1, n2 / d2
    l1, u1 = wilson(n1, d1, z)
    l2, u2 = wilson(n2, d2, z)
    diff = p1 - p2
    lower = diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return diff, lower, upper

"""Golden values for the board's statistics, each computed by hand from the published formulas."""

from __future__ import annotations

import math

import pytest

from board.stats import (
    Cell,
    FunnelUnit,
    newcombe_difference,
    observed_expected,
    poisson_interval,
    proportion_funnel,
    winsorise,
)


def _units(*numerators: int, n: int = 100) -> list[FunnelUnit]:
    return [FunnelUnit(f"t{i}", k, n) for i, k in enumerate(numerators)]


def test_funnel_with_overdispersion_matches_the_hand_computation() -> None:
    """Teams 10/100, 20/100, 30/100, 40/100.

    target = 100/400 = 0.25; theta = asin(sqrt(0.25)) = pi/6 = 0.5235988; s = 1/(2*sqrt(100)) = 0.05.
    y = asin(sqrt(p)): 0.3217506, 0.4636476, 0.5796397, 0.6847192.
    z = (y - theta)/s: -4.036964, -1.199023, 1.120819, 3.222409.
    Winsorised at 10%/90% (R type 7 over 4 values: positions 1.3 and 3.7):
      q10 = -4.036964 + 0.3*(-1.199023 + 4.036964) = -3.185582
      q90 = 1.120819 + 0.7*(3.222409 - 1.120819) = 2.591932
      z' = -3.185582, -1.199023, 1.120819, 2.591932.
    phi = (10.147933 + 1.437657 + 1.256236 + 6.718111) / 4 = 4.889984 (> 1: adjust).
    w = 1/s^2 = 400 each: sum w = 1600, sum w^2 / sum w = 400.
    tau2 = (4*4.889984 - 3) / (1600 - 400) = 0.0137999.
    At n = 100, 95%: spread = 1.959964*sqrt(0.0025 + 0.0137999) = 0.2502310;
      limits sin^2(0.2733678) = 0.0728868, sin^2(0.7738298) = 0.4884327.
    99.8%: spread = 3.090232*sqrt(0.0162999) = 0.3945338;
      limits sin^2(0.1290650) = 0.0165655, sin^2(0.9181326) = 0.6311808.
    At n = 200, 95%: 0.0780562, 0.4786520.
    Every team lies inside its 99.8% limits (10% > 1.66%, 40% < 63.1%): no outlier;
    against the 95% limits 10% is above 7.29% and 40% below 48.8%: none either.
    """
    funnel = proportion_funnel(_units(10, 20, 30, 40))
    assert funnel.target == pytest.approx(0.25)
    assert funnel.phi == pytest.approx(4.889984, abs=1e-6)
    assert funnel.tau2 == pytest.approx(0.0137999, abs=1e-7)
    assert funnel.adjusted
    assert funnel.fallback is None
    p = funnel.points[0]
    assert p.z == pytest.approx(-4.036964, abs=1e-6)
    assert p.limits["95"] == pytest.approx((0.0728868, 0.4884327), abs=1e-7)
    assert p.limits["99.8"] == pytest.approx((0.0165655, 0.6311808), abs=1e-7)
    assert funnel.limits(200, 1.959964) == pytest.approx((0.0780562, 0.4786520), abs=1e-7)
    assert [q.outlier for q in funnel.points] == [None] * 4


def test_funnel_without_overdispersion_falls_back_to_unadjusted_limits() -> None:
    """Teams 24/100, 25/100, 26/100, 25/100: target 0.25, theta = 0.5235988, s = 0.05.

    z = -0.232522, 0, 0.229441, 0; sorted -0.232522, 0, 0, 0.229441, so
    q10 = -0.232522 + 0.3*0.232522 = -0.162765 and q90 = 0 + 0.7*0.229441 = 0.160609;
    phi = (0.026492 + 0 + 0.025795 + 0) / 4 = 0.013072 <= 1, so tau2 = 0 and the limits are
    unadjusted:
    95%: theta -/+ 1.959964*0.05 = 0.4256006, 0.6215970 -> 0.1704599, 0.3391131.
    99.8%: theta -/+ 3.090232*0.05 = 0.3690872, 0.6781104 -> 0.1301508, 0.3935336.
    """
    funnel = proportion_funnel(_units(24, 25, 26, 25))
    assert funnel.phi == pytest.approx(0.013072, abs=1e-6)
    assert funnel.tau2 == 0.0
    assert not funnel.adjusted
    assert funnel.fallback is not None
    assert "phi" in funnel.fallback
    assert funnel.points[0].limits["95"] == pytest.approx((0.1704599, 0.3391131), abs=1e-7)
    assert funnel.points[0].limits["99.8"] == pytest.approx((0.1301508, 0.3935336), abs=1e-7)


def test_funnel_outliers_are_strictly_outside_and_zero_numerators_are_points() -> None:
    """Without overdispersion, 0/100 against a provider rate of 0.25 is far below the 99.8%
    lower limit (0.1302 at n=100 in the unadjusted case); a zero denominator has no rate."""
    units = [*_units(25, 25, 25, 25, 25, 25, 25, 25, 25), FunnelUnit("zero", 0, 100), FunnelUnit("empty", 0, 0)]
    funnel = proportion_funnel(units, trim=0.1)
    zero = next(p for p in funnel.points if p.name == "zero")
    assert zero.rate == 0.0
    assert math.isfinite(zero.z)
    assert funnel.excluded == ["empty"]
    # one low team among nine identical ones: winsorising clamps it, phi stays small
    assert zero.outlier == "low"
    assert all(p.outlier is None for p in funnel.points if p.name != "zero")


def test_a_rate_exactly_on_a_limit_is_not_an_outlier() -> None:
    units = _units(24, 25, 26, 25)
    funnel = proportion_funnel(units)
    lower, upper = funnel.points[0].limits["95"]
    from board.stats import _side

    assert _side(lower, (lower, upper)) is None
    assert _side(upper, (lower, upper)) is None
    assert _side(upper + 1e-12, (lower, upper)) == "high"


def test_winsorise_uses_r_type_7_quantiles() -> None:
    assert winsorise([1, 2, 3, 4, 100], 0.1) == pytest.approx([1.4, 2, 3, 4, 61.6])


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        # exact: chi2(0.975, 2)/2 = -ln(0.025) = 3.6888795
        (0, (0.0, 3.6888795)),
        # exact: chi2(0.025, 10)/2 and chi2(0.975, 12)/2 (Poisson tables: 1.6235, 11.6683)
        (5, (1.6234863, 11.6683)),
        # Byar's, O = 10, z = 1.959964: 10*(1 - 1/90 - z/(3*sqrt(10)))^3 = 10*0.7822905^3;
        # 11*(1 - 1/99 + z/(3*sqrt(11)))^3 = 11*1.1868828^3
        (10, (4.7874499, 18.3914587)),
        # Byar's, O = 25: 25*0.8648913^3, 26*1.1238534^3
        (25, (16.1742659, 36.9064508)),
    ],
)
def test_poisson_intervals_exact_below_ten_byar_from_ten(observed: int, expected: tuple[float, float]) -> None:
    assert poisson_interval(observed) == pytest.approx(expected, abs=1e-4)


def test_observed_expected_uses_the_providers_own_rates_by_stratum() -> None:
    """Provider: emergency 10/20 = 0.5, routine 10/100 = 0.1.
    north has 10 emergency and 20 routine referrals: E = 10*0.5 + 20*0.1 = 7, O = 8, O/E = 8/7.
    south has 10 emergency and 80 routine: E = 5 + 8 = 13, O = 12, O/E = 12/13 (Byar's: O >= 10).
    north's interval: exact for O = 8, chi2(0.025, 16)/2 = 3.4538, chi2(0.975, 18)/2 = 15.7632,
    divided by 7."""
    cells = [
        Cell("north", "emergency", 6, 10),
        Cell("north", "routine", 2, 20),
        Cell("south", "emergency", 4, 10),
        Cell("south", "routine", 8, 80),
    ]
    north, south = observed_expected(cells)
    assert (north.observed, north.expected) == (8, pytest.approx(7.0))
    assert north.ratio == pytest.approx(8 / 7)
    assert north.lower == pytest.approx(3.4538 / 7, abs=1e-4)
    assert north.upper == pytest.approx(15.7632 / 7, abs=1e-4)
    assert (south.observed, south.expected) == (12, pytest.approx(13.0))
    lo, hi = poisson_interval(12)
    assert (south.lower, south.upper) == (pytest.approx(lo / 13), pytest.approx(hi / 13))


def test_observed_expected_with_no_events_has_a_finite_upper_bound() -> None:
    north, south = observed_expected([Cell("north", "x", 0, 10), Cell("south", "x", 5, 10)])
    assert north.ratio == 0.0
    assert north.lower == 0.0
    assert north.upper == pytest.approx(3.6888795 / 2.5, abs=1e-6)


def test_observed_expected_rejects_a_numerator_above_its_denominator() -> None:
    with pytest.raises(ValueError, match="north/x"):
        observed_expected([Cell("north", "x", 11, 10)])


def test_newcombe_difference_matches_newcombes_worked_example() -> None:
    """Newcombe (1998), Table II example (e): 56/70 against 48/80: difference 0.2, method 10
    interval 0.0524 to 0.3339."""
    diff, lo, hi = newcombe_difference(56, 70, 48, 80)
    assert diff == pytest.approx(0.2)
    assert (lo, hi) == pytest.approx((0.0524, 0.3339), abs=1e-4)

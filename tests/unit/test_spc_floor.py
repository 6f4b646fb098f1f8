"""The false-alarm floor of the Making Data Count rules themselves (``alerts.mdc``).

On ideal data (independent normal points, the process never changes) with the limits known
exactly (mean 0, mean moving range 1.128 sigma, so the limits sit at 3 sigma), the four rules
still signal now and then: that rate is a property of the rules, not of pathwatch. A weekly
series judged for 40 weeks starts about 0.26 signalling episodes a year (a quarter of
series-years raise one); a provider with 40 series (5 teams and ``*`` by 8 rate measures)
should therefore expect about 10 SpecialCause instances in a year without any change, and a
year with none is very unlikely. With limits estimated from a 12-point baseline the rate is
higher. SpecialCause judges the latest point as the charts do: a signal is a latest point of
type ``special_cause_concern``. This test pins the rules' rate to that theory (it fails if a rule fires too often or
never), so figures measured on whole simulated providers can be read against it.

Print the per-rule breakdown over many series-years:
    .venv/bin/python -m tests.unit.test_spc_floor 20000 [SERIES]
"""

from __future__ import annotations

import random
import sys
from collections import Counter

from alerts.mdc import ChartSettings, GroupLimits, PointType, group_limits, group_rules, point_type
from alerts.mdc import Rule as SpcRule
from alerts.spc import Direction

JUDGED_WEEKS = 40
BASELINE = 12
KNOWN = GroupLimits(mean=0.0, mean_moving_range=1.128, trial=False)  # d2 for n = 2: limits at 3 sigma
SETTINGS = ChartSettings(baseline_points=BASELINE)  # screened, as SpecialCause by default


def episodes(values: list[float], limits: GroupLimits, first: int) -> Counter[SpcRule]:
    """Signalling episodes from index ``first`` on (an alert instance each), by first rule."""
    found: Counter[SpcRule] = Counter()
    signalling = False
    higher = Direction.HIGHER_IS_BETTER
    for i in range(first, len(values)):
        window = values[max(0, i - 6) : i + 1]
        rules = group_rules(window, limits)[-1]
        concern = point_type(window[-1], rules, limits.mean, higher) is PointType.CONCERN
        if concern and not signalling:
            found[rules[0]] += 1
        signalling = concern
    return found


def series_years(count: int, seed: int, known: bool) -> Counter[SpcRule | str]:
    """Episodes by first rule over ``count`` ideal series-years, plus ``"clean"`` years."""
    rng = random.Random(seed)
    total: Counter[SpcRule | str] = Counter()
    for _ in range(count):
        values = [rng.gauss(0.0, 1.0) for _ in range(BASELINE + JUDGED_WEEKS)]
        limits = KNOWN if known else group_limits(values[:BASELINE], SETTINGS)
        found = episodes(values, limits, BASELINE)
        total.update(found)
        if not found:
            total["clean"] += 1
    return total


def _rate(total: Counter[SpcRule | str]) -> float:
    return sum(v for k, v in total.items() if k != "clean")


def test_known_limits_signal_at_the_rules_own_rate() -> None:
    count = 3000
    total = series_years(count, seed=11, known=True)
    per_year = _rate(total) / count
    # per judged point: beyond 3 sigma 0.00135, 2 of 3 beyond 2 sigma about 0.0015, a new run
    # of 7 on one side 0.5 ** 8 = 0.0039, a new trend of 7 about 0.0002; 40 points, episodes
    # overlap a little: about 0.26 per series-year
    assert 0.22 <= per_year <= 0.31, per_year
    assert max(total, key=lambda k: total[k] if k != "clean" else -1) is SpcRule.SHIFT
    assert all(total[rule] > 0 for rule in SpcRule)
    assert 0.70 <= total["clean"] / count <= 0.82


def test_a_short_baseline_raises_the_rate() -> None:
    count = 2000
    known = _rate(series_years(count, seed=12, known=True)) / count
    estimated = _rate(series_years(count, seed=12, known=False)) / count
    assert estimated > 1.5 * known, (known, estimated)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    series = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    for known in (True, False):
        total = series_years(count, seed=1, known=known)
        per_year = _rate(total) / count
        clean = total["clean"] / count
        label = "limits known (3 sigma)" if known else f"limits from the first {BASELINE} points"
        by_rule = ", ".join(f"{rule.value} {total[rule] / count:.3f}" for rule in SpcRule)
        print(
            f"{label}: {per_year:.3f} episodes per series-year ({by_rule}); {clean:.1%} of series-years clean; "
            f"{series} series: {series * per_year:.1f} instances a year, P(a year with none) = {clean ** series:.2g}"
        )


if __name__ == "__main__":
    main()

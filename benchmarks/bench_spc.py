"""The cost of the Making Data Count rules: SpecialCause on one series, a whole chart.

SpecialCause judges every team's and measure's series at each local day boundary of a replay
(about 56 series x 365 days a simulated year), so its cost per call bounds what SPC adds to a
replay. Prints the best of 5 repeats, in microseconds per call, for a seeded weekly series of
52 (or ``--weeks``) binomial points.

    .venv/bin/python benchmarks/bench_spc.py [--weeks 52] [--number 2000]
"""

from __future__ import annotations

import argparse
import random
import timeit
from datetime import date, timedelta

from alerts.mdc import WeeklyValue, chart
from alerts.rules import special_cause_finding
from alerts.spc import Direction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(1)
    points = [WeeklyValue(date(2025, 1, 6) + timedelta(weeks=i), rng.randint(20, 40), 50) for i in range(args.weeks)]

    class Point:  # the shape stage 2's weekly series has
        def __init__(self, p: WeeklyValue) -> None:
            self.week_start, self.numerator, self.denominator = p.week, p.numerator, p.denominator

    weekly = [Point(p) for p in points]
    for label, call in (
        ("SpecialCause on the latest point", lambda: special_cause_finding("north", "followup_7d", weekly)),
        ("whole chart", lambda: chart(points, Direction.HIGHER_IS_BETTER)),
    ):
        best = min(timeit.repeat(call, number=args.number, repeat=5)) / args.number
        print(f"{label}, {args.weeks} weeks: {best * 1e6:.0f} us per call")


if __name__ == "__main__":
    main()

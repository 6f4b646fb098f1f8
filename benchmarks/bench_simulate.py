"""How long `pathwatch simulate` takes for a year of a mid-sized provider.

Run: ``.venv/bin/python benchmarks/bench_simulate.py [--tz America/New_York] [--repeat 3]``.
Prints lines written, megabytes and the best wall time of the repeats.
"""

from __future__ import annotations

import argparse
import io
import time

from pathwatch.simulate import SimulationOptions, write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tz", default="America/New_York")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    options = SimulationOptions.mid_sized(seed=args.seed, tz=args.tz)
    best = float("inf")
    for _ in range(args.repeat):
        out = io.BytesIO()
        started = time.perf_counter()
        lines = write(options, out)
        best = min(best, time.perf_counter() - started)
    size = len(out.getvalue()) / 1e6
    print(
        f"mid-sized year: {options.clients} clients, {len(options.teams)} teams, {options.days} days: "
        f"{lines} lines, {size:.1f} MB, best of {args.repeat}: {best:.2f} s ({lines / best:,.0f} lines/s)"
    )


if __name__ == "__main__":
    main()

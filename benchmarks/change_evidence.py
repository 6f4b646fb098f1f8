"""How a recorded service change is graded over many simulated years (issue 17 item 1).

One team (``--clients`` clients: 1,300 gives about 13 referrals a week, over the default
minimum weekly denominator of 10) records a change to ``--measure`` at ``--week``. Twice per
seed: the change lifts the measure's probability to ``--rate`` (a lasting improvement), and
the change does nothing. Prints the grades of each and how often the improvement's 95%
interval excludes 0, so the unit test's two seeds (tests/unit/test_service_change.py) can
be checked against a wider sweep.

    .venv/bin/python benchmarks/change_evidence.py --seeds 20
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

from pathwatch import parts, simulate
from pathwatch.config import Settings
from pathwatch.parts import core_config
from schemas.deadletter import DeadLetter
from schemas.decode import Decoder
from streams.changes import judge_changes, local_date_in
from streams.engine import Engine


def evidence(seed: int, measure: str, rate: str, week: int, clients: int, settings: Settings) -> dict[str, Any]:
    """The change's evidence for ``measure`` over one simulated year."""
    options = simulate.SimulationOptions(
        clients=clients, teams=("north",), seed=seed,
        changes=(simulate.parse_change(f"north:{measure}:{rate}@{week}"),),
    )
    decoder = Decoder(b"change-benchmark", settings.max_message_bytes)
    engine = Engine(core_config(settings))
    for number, line in enumerate(simulate.generate(options), start=1):
        result = decoder.decode_line(line, "simulated", number)
        if isinstance(result, DeadLetter):
            engine.feed_dead_letter(result)
        else:
            engine.feed(result)
    engine.finish()
    assert engine.watermark is not None
    config = parts.rules_config(settings)
    local_date = local_date_in(ZoneInfo(settings.timezone))
    [entry] = judge_changes(config, engine.windows, engine.watermark, engine.changes.changes(), local_date)
    result: dict[str, Any] = entry["evidence"][measure]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--measure", default="seen_within_target")
    parser.add_argument("--rate", default="0.97")
    parser.add_argument("--week", type=int, default=27)
    parser.add_argument("--clients", type=int, default=1300)
    args = parser.parse_args()
    settings = Settings()
    grades: dict[str, Counter[str]] = {"improvement": Counter(), "no effect": Counter()}
    excludes_zero = 0
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        better = evidence(seed, args.measure, args.rate, args.week, args.clients, settings)
        grades["improvement"][better["grade"]] += 1
        interval = better["interval"]
        excludes_zero += interval is not None and interval[0] > 0
        grades["no effect"][evidence(seed, args.measure, "-", args.week, args.clients, settings)["grade"]] += 1
    elapsed = time.perf_counter() - started
    print(f"{args.seeds} seeds from {args.first_seed}; {args.measure} to {args.rate} at week {args.week}, "
          f"{args.clients} clients; {elapsed:.0f} s")
    for name, counts in grades.items():
        print(f"  {name}: " + ", ".join(f"{grade} {n}" for grade, n in sorted(counts.items())))
    print(f"  improvement interval excludes 0: {excludes_zero} of {args.seeds}")


if __name__ == "__main__":
    main()

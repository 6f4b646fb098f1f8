"""SpecialCause on simulated years without any injected pattern (false alarms, whole provider).

Simulates a provider for a year with no churn pattern, replays it with the system rules and
prints, per seed, how many SpecialCause instances were raised (every team and ``*``, every
rate measure), by measure and rule, and the variation icons of the year-end Making Data Count
charts (the report's ``"spc"``). Unlike ``tests/unit/test_spc_simulation.py`` (one clean
binomial series), this includes what a real stream brings: small and varying weekly counts,
outcomes revised after their week was judged, warm-up weeks, many series at once.

    .venv/bin/python benchmarks/spc_false_alarms.py --seeds 1 2 3
"""

from __future__ import annotations

import argparse
from collections import Counter

from rich.console import Console
from spc_detection import replay_simulation  # benchmarks/ is the script's directory

from alerts.rules import SystemAlertRules
from pathwatch.config import load_settings
from pathwatch.simulate import SimulationOptions
from schemas.model import ALL_TEAMS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--clients", type=int, default=6000)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    settings = load_settings()
    console = Console()
    total = 0
    for seed in args.seeds:
        engine = replay_simulation(SimulationOptions(clients=args.clients, days=args.days, seed=seed), settings)
        special = [a for a in engine.alerts() if a.name == "SpecialCause"]
        series = {(a.labels["team"], a.labels["measure"]) for a in special}
        by_measure = Counter(a.labels["measure"] for a in special)
        by_rule = Counter(a.annotations.get("rule", "").split(",")[0] for a in special)
        total += len(special)
        icons: Counter[str] = Counter()
        if isinstance(engine.rules, SystemAlertRules) and engine.watermark is not None:
            teams = sorted(engine.teams - {ALL_TEAMS})
            icons.update(str(e["variation"]) for e in engine.rules.charts(engine.windows, engine.watermark, teams))
        console.print(
            f"seed {seed}: {len(special)} SpecialCause instances on {len(series)} series; "
            f"by measure {dict(sorted(by_measure.items()))}; by first rule {dict(sorted(by_rule.items()))}; "
            f"year-end variation icons {dict(sorted(icons.items()))}"
        )
    console.print(f"mean {total / len(args.seeds):.1f} SpecialCause instances per clean simulated year")


if __name__ == "__main__":
    main()

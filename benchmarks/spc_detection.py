"""How soon SpecialCause sees an injected churn pattern, and how many others fire meanwhile.

Simulates a provider with a drop in one team's measure from a given week, replays it with
the system rules, and prints, per seed: the first SpecialCause for that team and measure
(and whether any came before the change), the weekly point it came at (weeks are judged only
once final, so the calendar delay includes the measure's finality lag), and the number of
other SpecialCause instances over the run (false alarms and knock-on effects).

    .venv/bin/python benchmarks/spc_detection.py --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import io
from datetime import date, datetime, timedelta

from rich.console import Console

from alerts.rules import SystemAlertRules
from pathwatch import parts
from pathwatch.config import Settings, load_settings
from pathwatch.parts import core_config
from pathwatch.simulate import SimulationOptions, parse_injection, write
from schemas.decode import Decoder
from streams.engine import Engine
from streams.replay import replay_stream


def replay_simulation(options: SimulationOptions, settings: Settings) -> Engine:
    """Simulate ``options`` and replay the stream with the system rules, to the end of input
    (also used by ``spc_false_alarms.py``)."""
    out = io.BytesIO()
    write(options, out)
    out.seek(0)
    engine = Engine(core_config(settings), SystemAlertRules(parts.rules_config(settings)))
    replay_stream(out, engine, Decoder(b"spc-benchmark", settings.max_message_bytes), "simulated")
    engine.finish()
    return engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--clients", type=int, default=15000)
    parser.add_argument("--days", type=int, default=280)
    parser.add_argument("--inject", default="north:seen_within_target:0.45@20")
    args = parser.parse_args()
    settings = load_settings()
    injection = parse_injection(args.inject)
    console = Console()
    for seed in args.seeds:
        options = SimulationOptions(clients=args.clients, days=args.days, seed=seed, injections=(injection,))
        engine = replay_simulation(options, settings)
        change = options.start + timedelta(days=injection.start_day)
        special = [a for a in engine.alerts() if a.name == "SpecialCause"]
        target = sorted(
            a.starts_at for a in special
            if a.labels.get("team") == injection.team and a.labels.get("measure") == injection.measure
        )
        before = [s for s in target if s.date() < change]
        after = [s for s in target if s.date() >= change]
        others = [a for a in special if a.labels.get("team") != injection.team or a.labels.get("measure") != injection.measure]
        lag = core_config(settings).final_lag_days(injection.measure)
        first = after[0] if after else None
        point = None if first is None else _weekly_point(first, change, lag)
        console.print(
            f"seed {seed}: change {change}; first SpecialCause for {injection.team}/{injection.measure} "
            f"{first.isoformat() if first else 'none'} (weekly point {point} after the change; "
            f"finality lag {lag} days); before the change: {len(before)}; "
            f"other SpecialCause instances over {args.days} days: {len(others)}"
        )


def _weekly_point(fired: datetime, change: date, lag_days: int) -> int:
    """Which post-change weekly point was the latest final one when the alert fired (1-based)."""
    final_through = fired.date() - timedelta(days=lag_days)
    return max(1, (final_through - change).days // 7 + 1)


if __name__ == "__main__":
    main()

"""Pruning changes nothing: whole replay reports with and without pruning, over many seeds.

The core forgets a client's history older than its horizon (``CoreConfig.horizon_us``). For
each seed this simulates a provider's year (``pathwatch simulate``'s defaults unless told
otherwise), replays it twice through the same core, once as configured and once with the
horizon made endless (nothing is ever pruned), and compares the whole reports: watermark,
every measure and wait per team, the event counters (corrections included) and every alert
instance with its state, start and end. Not a test (too slow for CI); the unit test
``tests/unit/test_core_pruning.py`` runs a few full-size seeds of the same comparison.

    .venv/bin/python benchmarks/pruning_sweep.py --seeds 1 2 3 4 5 6 7 8 9 10

Exits 1 when any seed differs, printing what differs.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from typing import Any

from pathwatch.simulate import SimulationOptions, generate
from schemas.decode import Decoder
from streams.core import CoreConfig
from streams.engine import Engine
from streams.replay import replay_stream


def endless(config: CoreConfig) -> CoreConfig:
    """The same configuration with a horizon nothing ever leaves (no pruning at all)."""
    object.__setattr__(config, "horizon_us", 1 << 60)
    return config


def report(lines: list[bytes], config: CoreConfig) -> dict[str, Any]:
    engine = Engine(config)
    replay_stream(io.BytesIO(b"\n".join(lines)), engine, Decoder(b"pruning-sweep", 1 << 20), "simulated")
    engine.finish()
    return engine.report()


def differences(pruned: dict[str, Any], kept: dict[str, Any]) -> list[str]:
    out = [f"{k}: {pruned.get(k)!r} != {kept.get(k)!r}" for k in sorted(set(pruned) | set(kept))
           if k not in ("measures", "waits", "alerts") and pruned.get(k) != kept.get(k)]
    for k in ("measures", "waits", "alerts"):
        a = {json.dumps(x, sort_keys=True) for x in pruned.get(k, [])}
        b = {json.dumps(x, sort_keys=True) for x in kept.get(k, [])}
        out += [f"{k} only with pruning: {x}" for x in sorted(a - b)]
        out += [f"{k} only without: {x}" for x in sorted(b - a)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    parser.add_argument("--clients", type=int, default=None, help="default: simulate's own")
    parser.add_argument("--days", type=int, default=None, help="default: simulate's own")
    parser.add_argument("--timezone", default="UTC")
    args = parser.parse_args()
    sizes = {k: v for k, v in (("clients", args.clients), ("days", args.days)) if v is not None}
    failed = events = alerts = 0
    for seed in args.seeds:
        t0 = time.perf_counter()
        lines = list(generate(SimulationOptions(seed=seed, **sizes)))
        pruned = report(lines, CoreConfig(timezone=args.timezone))
        kept = report(lines, endless(CoreConfig(timezone=args.timezone)))
        diff = differences(pruned, kept)
        events += len(lines)
        alerts += len(pruned["alerts"])
        print(f"seed {seed}: {len(lines):,} events, {len(pruned['alerts']):,} alert instances, "
              f"{'equal' if not diff else f'{len(diff)} differences'} ({time.perf_counter() - t0:.0f} s)", flush=True)
        for line in diff[:20]:
            print("   ", line)
        failed += bool(diff)
    print(f"{len(args.seeds)} seeds, {events:,} events, {alerts:,} alert instances: "
          f"{'all equal' if not failed else f'{failed} seeds differ'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

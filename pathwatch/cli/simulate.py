"""``pathwatch simulate``: a realistic, seeded event stream as JSON lines."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from pathwatch import simulate
from pathwatch.config import Settings, parse_duration


def run(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Write the simulated events to ``--out`` (``-``: standard output); exit status 0.
    Raises ``ValueError`` for a bad ``--max-delay``, ``--inject`` or ``--change``."""
    options = simulate.SimulationOptions.mid_sized(seed=args.seed, tz=settings.timezone)
    changes: dict[str, Any] = {}
    for name in ("clients", "start", "days", "duplicate_fraction", "cancel_fraction", "bad_fraction"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.beyond_lateness_fraction is not None:
        changes["beyond_lateness_fraction"] = args.beyond_lateness_fraction
    if args.teams:
        changes["teams"] = tuple(t.strip() for t in args.teams.split(",") if t.strip())
    if args.max_delay:
        delay = parse_duration(args.max_delay)
        if not isinstance(delay, timedelta):
            raise ValueError(f"--max-delay {args.max_delay!r} is not a duration")
        changes["max_delay"] = delay
    if args.inject:
        changes["injections"] = tuple(simulate.parse_injection(text) for text in args.inject)
    if args.change:
        changes["changes"] = tuple(simulate.parse_change(text) for text in args.change)
    options = dataclasses.replace(options, **changes)
    if args.out == "-":
        count = simulate.write(options, sys.stdout.buffer)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "wb") as out:
            count = simulate.write(options, out)
    Console(stderr=True).print(f"[green]simulated {count:,} events[/green] -> {args.out}")
    return 0

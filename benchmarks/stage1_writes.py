"""Client-state writes per input event in the live stage 1, by batch size (not a test).

    .venv/bin/python benchmarks/stage1_writes.py --batches 137 1000

Runs a simulated stream (the simulator's defaults; ``--clients`` over ``--days``, the first
``--events`` lines) through :class:`streams.live.Stage1` over a plain dict, as the faust app
would read it from the events topic keyed by pseudonym, in batches of each given size. Each
batch writes every client state it changed once (``result.pending``); a changelog record
each. Reported per input event: all writes, and writes of clients that had no event in the
batch (only swept: their clocks and next due moved, sometimes with outputs).
"""

from __future__ import annotations

import argparse
import io

from pathwatch.config import load_settings
from pathwatch.parts import core_config
from pathwatch.simulate import SimulationOptions, write
from schemas.deadletter import Origin
from schemas.decode import Decoder
from schemas.model import Event
from streams.core import CoreConfig
from streams.live import Message, Stage1, partition_for

PARTITIONS = 8


def run(lines: list[bytes], batch: int, config: CoreConfig) -> tuple[int, int, int]:
    """(events, state writes, writes of clients with no event in their batch)."""
    decoder = Decoder(b"bench-key", 1 << 20)
    stage1 = Stage1(config, {}, PARTITIONS, alert_clock="event", decoder=decoder)
    offsets = [0] * PARTITIONS
    messages: list[tuple[Message, str | None]] = []
    for line in lines:
        event = decoder.decode(line, Origin())
        client = event.client if isinstance(event, Event) else None
        p = partition_for(client.encode(), PARTITIONS) if client is not None else 0
        messages.append((Message(p, offsets[p], None, line, direct=True), client))
        offsets[p] += 1
    writes = swept_only = 0
    for i in range(0, len(messages), batch):
        chunk = messages[i : i + batch]
        result, metas = stage1.process([m for m, _ in chunk])
        with_events = {c.encode() for _, c in chunk if c is not None}
        writes += len(result.pending)
        swept_only += len(set(result.pending) - with_events)
        stage1.commit(result, metas)
    return len(messages), writes, swept_only


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1100)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--batches", type=int, nargs="+", default=[137, 1000])
    args = ap.parse_args()
    out = io.BytesIO()
    write(SimulationOptions(clients=args.clients, days=args.days, seed=args.seed), out)
    lines = out.getvalue().splitlines()[: args.events]
    config = core_config(load_settings())
    for batch in args.batches:
        n, writes, swept_only = run(lines, batch, config)
        print(f"batch {batch:>5}: {n} events, {writes / n:.2f} state writes per event, "
              f"{swept_only / n:.2f} of them of clients only swept")


if __name__ == "__main__":
    main()

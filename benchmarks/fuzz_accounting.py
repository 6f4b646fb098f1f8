"""Fuzz accounting at 10,000 records (not a test): every record is accounted for.

    .venv/bin/python benchmarks/fuzz_accounting.py                  # replay engine only
    set -a; eval "$(scripts/stack env)"; set +a
    .venv/bin/python benchmarks/fuzz_accounting.py --live           # and through a live worker

Generates the fuzz set of ``tests/fuzz_inputs.py`` (valid simulated events, duplicates,
tombstones, oversized and large messages, deep nesting, bad UTF-8, extreme times, wrong
types, huge fields, identifier-like teams, the HL7 v2 and FHIR mutations of issue 14), runs it
through the decoder and the replay engine, and prints accepted, duplicates, dead letters (by
kind) and nothing to publish against what came in. With ``--live`` it also starts a worker on
its own topics of the stack in the environment, publishes the same records, and prints the
live counts beside the replay's (large records are kept below the broker's 1 MB record limit
with ``--max-bytes``). Exit status 1 when a count does not add up.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from pathwatch.parts import core_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pathwatch.config import Settings  # noqa: E402
from streams.engine import Engine  # noqa: E402
from tests.fuzz_inputs import Accounting, Pipeline, account, fuzz_records  # noqa: E402


def replay(records: list, settings: Settings) -> tuple[Accounting, Engine, float]:
    engine = Engine(core_config(settings))
    started = time.perf_counter()
    counts = account(records, Pipeline.build(settings, engine))
    return counts, engine, time.perf_counter() - started


def live(records: list, expected: Accounting, engine: Engine, max_bytes: int) -> bool:
    import os

    from streams.topics import ensure_topics
    from tests.integration.live_fixtures import live_stack, wait_ready
    from tests.integration.test_fuzz_live import _send, dead_letter_kinds

    bootstrap = os.environ.get("PATHWATCH_KAFKA_BOOTSTRAP")
    redis = os.environ.get("PATHWATCH_REDIS_URL")
    if not bootstrap or not redis:
        print("--live needs the stack's environment: set -a; eval \"$(scripts/stack env)\"; set +a")
        return False
    with tempfile.TemporaryDirectory(prefix="pathwatch-fuzz-") as tmp:
        stack = live_stack(bootstrap, redis, uuid.uuid4().hex[:10], Path(tmp), partitions=4)
        stack.env["PATHWATCH_MAX_MESSAGE_BYTES"] = str(max_bytes)
        ensure_topics(stack.settings)
        worker = stack.worker("worker")
        try:
            wait_ready(worker)
            started = time.perf_counter()
            asyncio.run(_send(stack, records))
            watermark = datetime.fromisoformat(engine.report()["watermark"])
            events = stack.report(watermark, timeout=300)["events"]
            seconds = time.perf_counter() - started
            assert worker.proc is not None
            alive = worker.proc.poll() is None
            kinds = dead_letter_kinds(stack)
        finally:
            worker.kill()
        dead = sum(n for kind, n in kinds.items() if kind != "orphan_cancel")
        total = events["accepted"] + events["duplicates"] + dead + expected.nothing
        print(
            f"live: worker alive {alive}; accepted {events['accepted']}, duplicates {events['duplicates']}, "
            f"dead letters {sum(kinds.values())} (orphan cancels {kinds.get('orphan_cancel', 0)}), "
            f"nothing to publish {expected.nothing} (from the adapters): {total} of {expected.units} units "
            f"in {seconds:.1f} s [{', '.join(f'{k}: {n}' for k, n in sorted(kinds.items()))}]"
        )
        return (
            alive
            and total == expected.units
            # accepted and duplicates may split otherwise by arrival order (a re-issue after a cancel)
            and events["accepted"] + events["duplicates"] == expected.accepted + expected.duplicates
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--live", action="store_true", help="also through a live worker (needs the stack)")
    parser.add_argument("--max-bytes", type=int, default=600_000, help="the decoder's limit (live: below 1 MB)")
    args = parser.parse_args()
    settings = Settings(pseudonym_key="fuzz-bench", max_message_bytes=args.max_bytes)
    records = fuzz_records(args.records, seed=args.seed, max_bytes=args.max_bytes, big_bytes=args.max_bytes - 20_000)
    counts, engine, seconds = replay(records, settings)
    print(f"replay: {counts.summary()} in {seconds:.1f} s")
    ok = counts.balanced()
    if args.live:
        ok = live(records, counts, engine, args.max_bytes) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

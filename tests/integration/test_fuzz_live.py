"""Issue 14: 2,000 generated and mutated records through a live worker. The worker stays up,
and every record is accounted for: accepted + duplicates + dead letters + nothing to publish
= what came in, with the same counts as the replay engine over the same records
(``tests/fuzz_inputs.py``)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer

from pathwatch.parts import core_config
from streams.engine import Engine
from streams.topics import ensure_topics
from tests.fuzz_inputs import FuzzRecord, Pipeline, account, fuzz_records
from tests.integration.live_fixtures import LiveStack, live_stack, wait_ready
from tests.integration.support import Process

# Below the broker's default record limit (1 MB), so that oversized inputs can be sent at all.
MAX_MESSAGE_BYTES = 600_000
BIG_BYTES = 580_000
BROKER_LIMIT = 1_000_000


async def _send(stack: LiveStack, records: list[FuzzRecord]) -> None:
    topics = {"events": stack.settings.topics.events, "hl7": stack.settings.topics.hl7, "fhir": stack.settings.topics.fhir}
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.settings.kafka_bootstrap, acks="all", max_request_size=BROKER_LIMIT + 48_576
    )
    await producer.start()
    try:
        # a tombstone needs a key (Kafka's rule); the rest go unkeyed, so canonical events are
        # rerouted to their client's partition as events a publisher did not key
        pending = [
            await producer.send(topics[r.topic], value=r.value, key=b"tombstone" if r.value is None else None)
            for r in records
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def dead_letter_kinds(stack: LiveStack) -> Counter[str]:
    """Kinds of the records on the dead-letter topic (header ``pathwatch.errors.kind``, or the
    ``kind`` of the older JSON form)."""
    consumer = KafkaConsumer(
        stack.settings.topics.dead_letters,
        bootstrap_servers=stack.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        max_partition_fetch_bytes=4 << 20,
        fetch_max_bytes=8 << 20,
    )
    kinds: Counter[str] = Counter()
    try:
        for message in consumer:
            headers = dict(message.headers or [])
            if "pathwatch.errors.kind" in headers:
                kinds[headers["pathwatch.errors.kind"].decode()] += 1
            else:
                kinds[json.loads(message.value)["kind"]] += 1
    finally:
        consumer.close()
    return kinds


ISSUE_SIZES = pytest.param(1 << 20, 900_000, id="issue-sizes-900kb")  # the sizes issue 14 reported


@pytest.mark.parametrize(
    ("max_bytes", "big_bytes"), [pytest.param(MAX_MESSAGE_BYTES, BIG_BYTES, id="below-broker-limit"), ISSUE_SIZES]
)
def test_two_thousand_fuzz_records_through_a_live_worker_add_up(
    kafka_bootstrap: str,
    redis_url: str,
    unique: str,
    tmp_path: Path,
    processes: list[Process],
    max_bytes: int,
    big_bytes: int,
) -> None:
    stack = live_stack(kafka_bootstrap, redis_url, unique, tmp_path, partitions=4)
    stack.env["PATHWATCH_MAX_MESSAGE_BYTES"] = str(max_bytes)
    settings = stack.settings
    # a record over the broker's limit (about 1 MB) cannot be published at all
    records = [r for r in fuzz_records(2000, seed=14, max_bytes=max_bytes, big_bytes=big_bytes) if len(r.value or b"") < BROKER_LIMIT]
    engine = Engine(core_config(settings))
    expected = account(records, Pipeline.build(settings, engine))
    assert expected.balanced(), expected.summary()
    watermark = datetime.fromisoformat(engine.report()["watermark"])

    ensure_topics(settings)
    worker = stack.worker("worker")
    processes.append(worker)
    wait_ready(worker)
    asyncio.run(_send(stack, records))
    live = stack.report(watermark, timeout=120)["events"]

    assert worker.proc is not None
    assert worker.proc.poll() is None, f"a worker must never stop on bad input:\n{worker.output()[-3000:]}"
    kinds = dead_letter_kinds(stack)
    decoded_dead = sum(n for kind, n in kinds.items() if kind != "orphan_cancel")
    # Accepted and duplicate split by arrival order where a cancel falls between an event and
    # its repeat (a re-issue stands, DOMAIN.md section 1), and the live worker receives the three
    # input topics in another interleaving than the replay's one sequence: compare their sum.
    # The one known difference (docs/known-issues.md): a worker refuses a valid event whose
    # derived records could exceed Kafka's record limit (output_too_large); replay has no such
    # limit and accepts it.
    too_large = kinds.get("output_too_large", 0)
    assert live["accepted"] + live["duplicates"] + too_large == expected.accepted + expected.duplicates, (
        kinds,
        expected.summary(),
    )
    assert decoded_dead - too_large == expected.dead_letters - expected.orphan_cancels, (kinds, expected.summary())
    assert live["accepted"] + live["duplicates"] + decoded_dead + expected.nothing == expected.units

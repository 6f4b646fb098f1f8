"""Input offsets that are not consecutive: a publisher writing in Kafka transactions leaves a
commit marker after each transaction, an offset no consumer ever receives. The worker's
offset guard first reads such a hole again (it cannot tell it from messages faust failed to
deliver), then accepts it; nothing published is lost and the worker does not stall.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

from schemas.pseudonym import Pseudonymiser
from streams.publish import records
from tests.integration.live_fixtures import (
    PSEUDONYM_KEY,
    assert_equivalent,
    live_stack,
    replay_report,
    simulate,
    wait_ready,
)
from tests.integration.support import Process


async def _publish_in_transactions(bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes]], n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-publisher")
    await producer.start()
    try:
        size = -(-len(items) // n)
        for i in range(0, len(items), size):
            async with producer.transaction():
                for key, value in items[i : i + size]:
                    await producer.send(topic, key=key, value=value)
    finally:
        await producer.stop()


def test_transaction_markers_in_an_input_topic_lose_nothing(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, processes: list[Process]
) -> None:
    events = simulate(tmp_path / "events.jsonl", clients=150, days=40, seed=21)
    stack = live_stack(kafka_bootstrap, redis_url, unique, tmp_path)
    expected = replay_report(events, stack.settings)
    worker = stack.worker("worker")
    processes.append(worker)
    wait_ready(worker)

    _, items = records(events, "events", Pseudonymiser(PSEUDONYM_KEY.encode()))
    topic = stack.env["PATHWATCH_TOPICS__EVENTS"]
    asyncio.run(_publish_in_transactions(kafka_bootstrap, topic, items, 3))
    live = stack.report(datetime.fromisoformat(expected["watermark"]))

    assert_equivalent(live, expected)
    log = worker.output()
    assert "are not in the topic" in log  # the holes were met, and accepted
    assert worker.proc is not None
    assert worker.proc.poll() is None

"""Input offsets that are not consecutive: a publisher writing in Kafka transactions leaves a
commit marker after each transaction, an offset no consumer ever receives. The worker's
offset guard first reads such a hole again (it cannot tell it from messages faust failed to
deliver), then accepts it; nothing published is lost and the worker does not stall.
"""

from __future__ import annotations

import asyncio
import io
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from pathwatch.simulate import SimulationOptions, write
from schemas.pseudonym import Pseudonymiser
from streams.publish import records
from tests.integration.live_fixtures import (
    PSEUDONYM_KEY,
    assert_equivalent,
    care_gap,
    live_stack,
    replay_report,
    scrape,
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


async def _publish(bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, key=key, value=value) for key, value in items])
    finally:
        await producer.stop()


def test_events_a_publisher_keyed_otherwise_are_rerouted_and_counted_once(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, processes: list[Process]
) -> None:
    # Stage 1 reads the events topic itself and trusts the key (the pseudonym, DOMAIN.md
    # section 1) to place each event on its client's partition. A publisher keying by its own
    # record number, or not at all, must lose nothing and split no client's history. Its
    # events take the longer way (through `clients`) and, in a burst of history like this one,
    # arrive behind the watermark: counted as late, revising what was final (corrections,
    # alerts that fired and then resolved), so only the final outcomes equal the replay's.
    path = tmp_path / "events.jsonl"
    out = io.BytesIO()
    write(SimulationOptions(clients=150, days=40, seed=23, cancel_fraction=0.0), out)  # (a cancel of a late target: orphan)
    path.write_bytes(out.getvalue())
    stack = live_stack(kafka_bootstrap, redis_url, unique, tmp_path)
    expected = replay_report(path, stack.settings)
    worker = stack.worker("worker")
    processes.append(worker)
    wait_ready(worker)

    _, items = records(path, "events", Pseudonymiser(PSEUDONYM_KEY.encode()))
    rekeyed: list[tuple[bytes | None, bytes]] = []
    for i, (key, value) in enumerate(items):
        if i % 3 == 0:
            key = b"partner-mrn-%d" % (i % 97)  # another key, most often another partition
        elif i % 3 == 1:
            key = None  # unkeyed: any partition
        rekeyed.append((key, value))
    asyncio.run(_publish(kafka_bootstrap, stack.env["PATHWATCH_TOPICS__EVENTS"], rekeyed))
    live = stack.report(datetime.fromisoformat(expected["watermark"]))

    assert live["watermark"] == expected["watermark"]
    assert live["measures"] == expected["measures"]
    assert live["waits"] == expected["waits"]
    for counter in ("accepted", "duplicates", "dead_letters"):
        assert live["events"][counter] == expected["events"][counter], (live["events"], expected["events"])

    def firing(report: dict[str, Any]) -> list[dict[str, Any]]:
        return [a for a in care_gap(report) if a["status"] == "firing"]

    assert firing(live) == firing(expected)
    assert firing(expected)
    rerouted = re.findall(r"pathwatch_events_rerouted_total\{[^}]*\} ([0-9.e+]+)", scrape(worker))
    assert rerouted
    assert float(rerouted[0]) > len(items) / 3  # about seven in twelve were on another partition

"""``pathwatch change add`` without ``--out`` on the real Kafka: the change goes to the changes
topic (created compacted), keyed by its ``change_id``, and reads back as a ``service.change``."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from pathwatch.cli import main
from schemas.deadletter import Origin
from schemas.decode import Decoder
from schemas.model import Event, ServiceChange


async def _read_one(bootstrap: str, topic: str) -> tuple[bytes | None, bytes | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        async with asyncio.timeout(30):
            while True:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    return messages[0].key, messages[0].value
    finally:
        await consumer.stop()


def test_change_add_publishes_to_the_compacted_changes_topic(
    kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = f"pw-test-changes-{unique}"
    monkeypatch.setenv("PATHWATCH_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("PATHWATCH_TOPICS__CHANGES", topic)
    argv = ["change", "add", "--team", "north", "--measures", "followup_7d", "--date", "2026-03-01",
            "--description", "warm hand-offs at discharge", "--id", "north-warm-handoffs"]
    assert main(argv) == 0
    key, value = asyncio.run(_read_one(kafka_bootstrap, topic))
    assert key == b"north-warm-handoffs"
    assert value is not None
    event = Decoder(b"k", 1 << 20).decode(value, Origin(topic=topic))
    assert isinstance(event, Event)
    assert isinstance(event.data, ServiceChange)
    assert event.data.change_id == "north-warm-handoffs"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        assert described["topic"][topic]["cleanup.policy"]["value"] == "compact"
    finally:
        admin.close()


def test_a_refused_change_is_not_published(kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATHWATCH_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("PATHWATCH_TOPICS__CHANGES", f"pw-test-changes-{unique}")
    argv = ["change", "add", "--team", "north", "--date", "2026-03-01", "--description", "rang MRN-004242"]
    assert main(argv) == 2
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert f"pw-test-changes-{unique}" not in admin.list_topics()
    finally:
        admin.close()

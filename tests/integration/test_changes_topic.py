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
from streams.live_changes import read_changes


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


def test_change_cancel_withdraws_a_published_change_on_the_topic(
    kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancel goes to the changes topic under the change's ``change_id`` (compaction then
    keeps the withdrawal), names the event of the change that stands, and the topic read as
    the workers read it holds the change no more."""
    topic = f"pw-test-changes-{unique}"
    monkeypatch.setenv("PATHWATCH_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("PATHWATCH_TOPICS__CHANGES", topic)
    add = ["change", "add", "--team", "north", "--measures", "followup_7d", "--description", "warm hand-offs"]
    assert main([*add, "--date", "2026-03-01", "--id", "kept"]) == 0
    assert main([*add, "--date", "2026-04-01", "--id", "withdrawn"]) == 0
    decoder = Decoder(b"k", 1 << 20)
    before = asyncio.run(read_changes(kafka_bootstrap, topic, decoder, 30))
    target = before.register().standing("withdrawn")
    assert target is not None
    assert main(["change", "cancel", "withdrawn"]) == 0
    after = asyncio.run(read_changes(kafka_bootstrap, topic, decoder, 30))
    assert [c.change_id for c in after.changes()] == ["kept"]
    cancels = {ident: event for ident, (_, event) in after._latest.items() if event.type == "cancel"}
    assert list(cancels) == [(0, b"withdrawn")], "keyed by the change_id: compaction keeps the withdrawal"
    assert [e.source for e in cancels.values()] == [target.source]
    assert main(["change", "cancel", "withdrawn"]) == 2, "nothing stands to withdraw"

"""The Kafka receiver writes alert states to a real topic as JSON keyed by fingerprint."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from alerts.model import Alert
from alerts.pipeline import build_dispatcher
from pathwatch.bootstrap import receivers_config
from pathwatch.config import Settings
from streams.ports import TopicNames

pytestmark = pytest.mark.integration


async def test_alerts_topic_gets_each_transition_once_keyed_by_fingerprint(kafka_bootstrap: str) -> None:
    topic = f"pathwatch.alerts.test-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    now = datetime.now(UTC)
    labels = {"alertname": "RateOffTarget", "team": "north", "measure": "followup_7d", "severity": "warning"}
    firing, resolved = Alert(labels, now), Alert(labels, now, now)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        d = build_dispatcher(receivers_config(Settings(topics=TopicNames(alerts=topic), alertmanager_url=None, webhook_url=None)), None, producer, None)
        await d.dispatch([firing, firing], now)
        await d.dispatch([resolved], now)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                                group_id=f"test-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=10_000, max_records=10)
        records = [r for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()
    assert [r.key for r in records] == [firing.fingerprint.encode()] * 2
    values = [json.loads(r.value) for r in records]
    assert [v["status"] for v in values] == ["firing", "resolved"]
    assert values[0]["labels"] == labels
    assert values[0]["fingerprint"] == firing.fingerprint

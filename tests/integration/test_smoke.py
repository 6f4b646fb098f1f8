"""Foundation smoke tests: the real Kafka (KRaft), a real faust worker and Redis answer."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

from tests.integration.support import Process, free_port, python_module_args


def _create_topics(bootstrap: str, *topics: tuple[str, int]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1) for name, partitions in topics])
    finally:
        admin.close()


def test_admin_creates_topic_with_config(kafka_bootstrap: str, unique: str) -> None:
    name = f"smoke-admin-{unique}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(name, 3, 1, topic_configs={"cleanup.policy": "compact"})])
        described = admin.describe_topics([name])
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    finally:
        admin.close()
    assert described[0]["name"] == name
    assert len(described[0]["partitions"]) == 3
    assert configs["topic"][name]["cleanup.policy"]["value"] == "compact"


async def test_produce_and_consume_in_a_group(kafka_bootstrap: str, unique: str) -> None:
    topic = f"smoke-group-{unique}"
    _create_topics(kafka_bootstrap, (topic, 2))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for i in range(20):
            await producer.send_and_wait(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=f"g-{unique}", auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: set[bytes] = set()
    try:
        async with asyncio.timeout(30):
            async for message in consumer:
                assert message.value is not None
                seen.add(message.value)
                if len(seen) == 20:
                    break
        await consumer.commit()
    finally:
        await consumer.stop()
    assert seen == {f"v{i}".encode() for i in range(20)}


async def _read(bootstrap: str, topic: str, count: int, timeout: float = 60) -> list[str]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    values: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            async for message in consumer:
                assert message.value is not None
                values.append(message.value.decode().strip('"'))
                if len(values) >= count:
                    break
    finally:
        await consumer.stop()
    return values


async def _send_words(bootstrap: str, topic: str, words: list[str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for word in words:
            await producer.send_and_wait(topic, key=word.encode(), value=f'"{word}"'.encode())
    finally:
        await producer.stop()


async def test_faust_worker_keeps_a_changelog_table_and_recovers_it(
    kafka_bootstrap: str, unique: str, tmp_path: Path, processes: list[Process]
) -> None:
    app_id = f"smoke-{unique}"
    words, done = f"smoke-words-{unique}", f"smoke-done-{unique}"
    state = tmp_path / "state.json"
    _create_topics(kafka_bootstrap, (words, 2), (done, 1))
    env = dict(
        os.environ,
        PATHWATCH_KAFKA_BOOTSTRAP=kafka_bootstrap,
        SMOKE_APP_ID=app_id,
        SMOKE_TOPIC=words,
        SMOKE_DONE_TOPIC=done,
        SMOKE_STATE_FILE=str(state),
        SMOKE_DATA_DIR=str(tmp_path / "faust-data"),
        SMOKE_WEB_PORT=str(free_port()),
    )
    args = python_module_args("tests.integration.faust_smoke_app", "worker", "-l", "info")
    worker = Process(args, env, tmp_path / "worker.log").start()
    processes.append(worker)

    await _send_words(kafka_bootstrap, words, ["a", "b", "a"])
    assert sorted(await _read(kafka_bootstrap, done, 3)) == ["a=1", "a=2", "b=1"], worker.output()

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        topics = admin.list_topics()
    finally:
        admin.close()
    assert f"{app_id}-smoke-counts-changelog" in topics

    # Restarted after SIGKILL, a plain faust worker recovers its table, but it can drop the
    # input it fetches while recovering: its getmany discards records of partitions that are
    # not yet active or while flow is suspended, with the consumer's position already past
    # them, and the seek back to committed offsets does not always undo it (aiokafka skips a
    # partition with no committed offset; seen about once in 20 runs, with and without a
    # commit before the kill). pathwatch's app guards its own positions (streams.live.admit
    # and the re-seek timer) and is held to "nothing lost after SIGKILL" by
    # test_restart_before_commit.py and test_live_pipeline.py; here only the table is checked.
    # Offsets committed first, so the restarted worker reads nothing again and holds exactly
    # what its changelog gave back (input read again would rebuild the table without it).
    _wait_committed(kafka_bootstrap, app_id, words, partitions=2)
    worker.kill(9)  # no clean shutdown: the table must come back from its changelog
    restarted = Process(args, env, tmp_path / "worker2.log").start()
    processes.append(restarted)
    assert restarted.proc is not None
    held = {"pid": restarted.proc.pid, "counts": {"a": 2, "b": 1}}  # this process's table, not the first's
    deadline = time.monotonic() + 90
    while not (state.exists() and json.loads(state.read_text()) == held):
        assert time.monotonic() < deadline, restarted.output()
        await asyncio.sleep(0.3)


def _wait_committed(bootstrap: str, group: str, topic: str, partitions: int, timeout: float = 30) -> None:
    """Wait until ``group`` has committed every record now in ``topic`` (a partition that
    received nothing counts as committed)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        want = {tp.partition: end for tp, end in consumer.end_offsets(tps).items()}
        deadline = time.monotonic() + timeout
        while True:
            have = {tp.partition: consumer.committed(tp) or 0 for tp in tps}
            if all(have[p] >= want[p] for p in want):
                return
            assert time.monotonic() < deadline, f"offsets committed {have}, expected {want}"
            time.sleep(0.3)
    finally:
        consumer.close()


def test_redis_round_trip(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"pathwatch:smoke:{uuid.uuid4().hex}"
    client.set(key, b"value", px=60_000)
    assert client.get(key) == b"value"
    assert client.pttl(key) > 0
    client.delete(key)
    assert client.get(key) is None

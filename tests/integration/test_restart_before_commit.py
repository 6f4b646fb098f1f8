"""A pathwatch worker killed before it ever committed an offset loses nothing.

The guarantee the plain-faust smoke test (test_smoke.py) can only check after a commit:
plain faust drops records fetched while a restarted worker recovers and has no committed
offset to seek back to. pathwatch's stages keep their own next offsets (streams.live.admit)
and re-seek a partition left behind, so a restart with nothing committed must still give
the replay's numbers.
"""

from __future__ import annotations

import signal
from datetime import datetime
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from tests.integration.live_fixtures import (
    assert_same_outcomes,
    live_stack,
    replay_report,
    simulate,
    wait_flowing,
    wait_ready,
)
from tests.integration.support import Process


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int | None]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return [consumer.committed(TopicPartition(topic, p)) for p in range(partitions)]
    finally:
        consumer.close()


def test_a_worker_killed_before_its_first_commit_loses_nothing(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, processes: list[Process]
) -> None:
    events = simulate(tmp_path / "events.jsonl", clients=800, days=60, seed=13)
    stack = live_stack(kafka_bootstrap, redis_url, unique, tmp_path, partitions=4)
    expected = replay_report(events, stack.settings)

    stack.env["PATHWATCH_COMMIT_INTERVAL"] = "1h"  # the first worker never commits
    first = stack.worker("worker-1")
    processes.append(first)
    wait_ready(first)
    stack.publish(events)
    wait_flowing(first, 100)
    first.kill(signal.SIGKILL)
    events_topic = stack.env["PATHWATCH_TOPICS__EVENTS"]
    assert _committed(kafka_bootstrap, stack.env["PATHWATCH_APP_ID"], events_topic, 4) == [None] * 4

    del stack.env["PATHWATCH_COMMIT_INTERVAL"]
    second = stack.worker("worker-2")
    processes.append(second)
    wait_ready(second)
    live = stack.report(datetime.fromisoformat(expected["watermark"]))
    assert_same_outcomes(live, expected)
    assert live["events"] == expected["events"]

"""The live pipeline on the real stack: faust workers over the same core as the replay.

Each test runs its own deployment (topics and consumer group named after the test) on the
stack's Kafka, publishes a simulated stream, reads the live state with the flush barrier of
``pathwatch report --from-live`` and compares it with the in-process replay of the same file.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from schemas.deadletter import DeadLetter
from streams.publish import publish
from tests.integration.live_fixtures import (
    LiveStack,
    assert_equivalent,
    assert_same_measures,
    assert_same_outcomes,
    care_gap,
    live_stack,
    replay_report,
    scrape,
    simulate,
    wait_flowing,
    wait_ready,
)
from tests.integration.support import Process


def _dead_letters(stack: LiveStack) -> list[DeadLetter]:
    """Every record of the dead-letter topic (read up to its end offset)."""
    consumer = KafkaConsumer(
        bootstrap_servers=stack.env["PATHWATCH_KAFKA_BOOTSTRAP"],
        auto_offset_reset="earliest",
        fetch_max_bytes=8 << 20,
        max_partition_fetch_bytes=8 << 20,
    )
    try:
        tp = TopicPartition(stack.env["PATHWATCH_TOPICS__DEAD_LETTERS"], 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        records = []
        deadline = time.monotonic() + 60
        while consumer.position(tp) < end and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(DeadLetter.from_record(m.value, m.headers) for m in batch)
        return records
    finally:
        consumer.close()


def test_live_equals_replay_and_bad_input_is_dead_lettered(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, processes: list[Process]
) -> None:
    events = simulate(tmp_path / "events.jsonl", clients=2200, days=120, seed=5, bad_fraction=0.002)
    stack = live_stack(kafka_bootstrap, redis_url, unique, tmp_path)
    expected = replay_report(events, stack.settings)
    assert expected["events"]["accepted"] >= 20_000
    assert expected["events"]["dead_letters"] > 0

    worker = stack.worker("worker")
    processes.append(worker)
    wait_ready(worker)
    stack.publish(events)
    live = stack.report(datetime.fromisoformat(expected["watermark"]))

    assert_equivalent(live, expected)
    assert len(care_gap(live)) > 0
    assert worker.proc is not None
    assert worker.proc.poll() is None, "a worker must never crash on bad input"
    dead = _dead_letters(stack)
    assert len(dead) == expected["events"]["dead_letters"]
    for record in dead:
        assert record.reason
        assert record.original or record.kind == "orphan_cancel"
    metrics = scrape(worker)
    assert re.search(r'pathwatch_dead_letters_total\{reason="[a-z_]+"\} [1-9]', metrics)
    base = f"http://127.0.0.1:{worker.web_port}"  # type: ignore[attr-defined]
    with urllib.request.urlopen(f"{base}/health", timeout=5) as response:  # noqa: S310 - loopback
        assert json.loads(response.read()) == {"status": "ok"}
    for table in ("client-state", "team-observations"):  # no endpoint serves table contents
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/table/{table}/", timeout=5)  # noqa: S310 - loopback
        assert refused.value.code == 404
    assert "MRN-" not in metrics  # no raw client identifier in any label


def test_live_equals_replay_under_the_default_clock_on_historical_data(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, processes: list[Process]
) -> None:
    """The default settings (care-gap alerts by the wall clock) on events up to a few days in
    the past: measures, waits and counters follow event time, as in the replay."""
    start = datetime.now(UTC).date() - timedelta(days=123)
    events = simulate(tmp_path / "events.jsonl", clients=1200, days=120, seed=7, bad_fraction=0.002, start=start)
    stack = live_stack(kafka_bootstrap, redis_url, unique, tmp_path, alert_clock="wall")
    expected = replay_report(events, stack.settings)
    assert datetime.fromisoformat(expected["watermark"]) < datetime.now(UTC) - timedelta(days=2)

    worker = stack.worker("worker")
    processes.append(worker)
    wait_ready(worker)
    stack.publish(events)
    live = stack.report(datetime.fromisoformat(expected["watermark"]))
    assert_same_measures(live, expected)
    assert any(m["denominator"] > 0 for m in live["measures"])


def _bad_records() -> list[tuple[str, bytes | None]]:
    """What once stopped every partition of a worker (issue 14, point 1), with its expected
    dead-letter kind."""

    def referral(time: str, team: str = "north", subject: str = "MRN-bad") -> bytes:
        return json.dumps(
            {
                "specversion": "1.0", "id": f"bad-{time[:4]}-{len(team)}", "source": "ehr/community",
                "type": "referral.received", "time": time, "subject": subject,
                "data": {"referral_id": "R-bad", "team": team, "urgency": "routine"},
            }
        ).encode()

    def padded(line: bytes, size: int) -> bytes:  # an unknown field: valid, but too big to derive from
        obj = json.loads(line)
        obj["padding"] = "x" * size
        return json.dumps(obj).encode()

    return [
        ("null_value", None),
        ("not_json", b"\x00not json " * 90_000),  # 900 KB, which the broker accepts
        ("schema", referral("2025-03-02T10:00:00+00:00", team="x" * 800_000)),  # a team is at most 40
        ("output_too_large", padded(referral("2025-03-02T11:00:00+00:00", subject="MRN-padded"), 800_000)),
        ("schema", referral("0001-01-01T00:00:00+00:00", subject="MRN-early")),  # outside the time window
        ("schema", referral("9999-12-31T23:59:59+00:00", subject="MRN-late")),
    ]


def test_bad_records_never_stop_a_live_worker(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, processes: list[Process]
) -> None:
    """A tombstone, a 900 KB non-JSON message, an event whose derived records would not fit,
    and events at the ends of time, before any good event: each is a dead letter (within the
    record limit), the worker stays up, and the events after them are processed."""
    from kafka import KafkaProducer

    events = simulate(tmp_path / "events.jsonl", clients=300, days=60, seed=3)
    stack = live_stack(kafka_bootstrap, redis_url, unique, tmp_path, partitions=2)
    expected = replay_report(events, stack.settings)
    worker = stack.worker("worker")
    processes.append(worker)
    wait_ready(worker)
    bad = _bad_records()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=1_048_000)
    try:
        for i, (_, value) in enumerate(bad):
            producer.send(stack.env["PATHWATCH_TOPICS__EVENTS"], key=b"bad-%d" % i, value=value)
        producer.flush()
    finally:
        producer.close()
    stack.publish(events)
    live = stack.report(datetime.fromisoformat(expected["watermark"]))

    assert worker.proc is not None
    assert worker.proc.poll() is None, "a worker must never crash on bad input"
    dead = _dead_letters(stack)
    assert sorted(d.kind.value for d in dead) == sorted(kind for kind, _ in bad), [(d.kind, d.reason[:200]) for d in dead]
    assert all(d.reason for d in dead)
    for d in dead:
        assert len(d.original) < 1_000_000  # cut to the record limit where it had to be
    assert live["events"]["dead_letters"] == len(bad)
    expected["events"]["dead_letters"] += len(bad)
    expected["events"]["dead_letters_by_kind"] = dict(sorted(Counter(kind for kind, _ in bad).items()))
    assert_same_measures(live, expected)


def test_worker_killed_mid_stream_recovers_without_loss_or_double_counting(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, processes: list[Process]
) -> None:
    events = simulate(tmp_path / "events.jsonl", clients=1500, days=90, seed=9)
    stack = live_stack(kafka_bootstrap, redis_url, unique, tmp_path)
    expected = replay_report(events, stack.settings)

    first = stack.worker("worker-1")
    processes.append(first)
    wait_ready(first)
    stack.publish(events)
    wait_flowing(first, 1000)
    first.kill(signal.SIGKILL)

    second = stack.worker("worker-2")
    processes.append(second)
    wait_ready(second)
    live = stack.report(datetime.fromisoformat(expected["watermark"]))
    assert_same_outcomes(live, expected)  # no observation lost or counted twice
    # a kill inside a batch's table commit must not count its events twice either: accepted
    # and duplicate events and corrections are counted with the client states, and a
    # batch's dead letters sent again are the same records (counted once)
    assert live["events"] == expected["events"]


def _owned_partitions(worker: Process, topic: str) -> set[int]:
    """Partitions of ``topic`` whose watermark this worker exports (it exports only its own)."""
    owned = set()
    for labels in re.findall(r"pathwatch_watermark_timestamp_seconds\{([^}]*)\}", scrape(worker)):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if pairs.get("topic") == topic:
            owned.add(int(pairs["partition"]))
    return owned


def test_two_workers_share_partitions_and_one_can_leave(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, processes: list[Process]
) -> None:
    events = simulate(tmp_path / "events.jsonl", clients=1200, days=90, seed=13)
    lines = events.read_bytes().splitlines(keepends=True)
    half = len(lines) // 2
    (tmp_path / "first.jsonl").write_bytes(b"".join(lines[:half]))
    (tmp_path / "second.jsonl").write_bytes(b"".join(lines[half:]))
    stack = live_stack(kafka_bootstrap, redis_url, unique, tmp_path)
    expected = replay_report(events, stack.settings)

    a, b = stack.worker("worker-a"), stack.worker("worker-b")
    processes.extend([a, b])
    wait_ready(a)
    wait_ready(b)
    stack.publish(tmp_path / "first.jsonl")
    topic = stack.env["PATHWATCH_TOPICS__CLIENTS"]
    deadline = time.monotonic() + 60
    owned_a: set[int] = set()
    owned_b: set[int] = set()
    while time.monotonic() < deadline:
        owned_a, owned_b = _owned_partitions(a, topic), _owned_partitions(b, topic)
        if owned_a and owned_b and len(owned_a | owned_b) == 8:
            break
        time.sleep(0.5)
    assert owned_a, "worker a owns no partition"
    assert owned_b, "worker b owns no partition"
    assert not owned_a & owned_b
    assert owned_a | owned_b == set(range(8))

    b.kill(signal.SIGTERM)  # a clean leave: its partitions move to a
    stack.publish(tmp_path / "second.jsonl")
    live = stack.report(datetime.fromisoformat(expected["watermark"]))
    assert_equivalent(live, expected)
    assert _owned_partitions(a, topic) == set(range(8))


def test_hospital_feeds_in_hl7_and_fhir_are_ingested_live(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, processes: list[Process]
) -> None:
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    stack = live_stack(kafka_bootstrap, redis_url, unique, tmp_path, partitions=2)
    worker = stack.worker("worker")
    processes.append(worker)
    wait_ready(worker)
    hl7 = tmp_path / "feed.hl7"
    hl7.write_bytes((fixtures / "hl7/a01_admit.hl7").read_bytes() + b"\r\n" + (fixtures / "hl7/a03_discharge.hl7").read_bytes())
    assert asyncio.run(publish(stack.settings, hl7, "auto")) == 2
    assert asyncio.run(publish(stack.settings, fixtures / "fhir/bundle.json", "auto")) == 1
    broken = tmp_path / "broken.hl7"
    broken.write_bytes(b"MSH|^~\\&|EPIC|ST-MARYS|PW|PW|not-a-date||ADT^A03|X1|P|2.5\rPID|1\r")
    asyncio.run(publish(stack.settings, broken, "hl7"))
    live = stack.report(None)
    assert live["events"]["accepted"] == 2 + 3  # A01 + A03, and the bundle's three events
    assert live["events"]["dead_letters"] == 1
    dead = _dead_letters(stack)
    assert dead[0].kind == "hl7"
    assert "MRN-000123" not in json.dumps(live)
    # No linking identifier is configured: every event the adapters built is unlinked, by source
    # (the A01 and A03, the Bundle's two cancels at St Mary's, its admission at Riverside).
    metrics = scrape(worker)
    assert 'pathwatch_adapter_events_total{linked="false",source="hospital/st-marys"} 4.0' in metrics
    assert 'pathwatch_adapter_events_total{linked="false",source="hospital/riverside-general"} 1.0' in metrics

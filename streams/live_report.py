"""The live workers' state as a replay-style report (``pathwatch report --from-live``,
:mod:`pathwatch.cli.report`).

How it reads the state without any endpoint that serves table contents:

1. it waits until the workers have taken in every message of the input topics (their
   next offset per input partition, kept in the ``input-positions`` table, reaches the
   end), then sends every partition of the ``clients`` topic a flush tick (optionally with ``until``,
   an event time every partition is advanced to, the live counterpart of the replay's end of
   input);
2. stage 1 answers each flush after committing everything before it; stage 2 records the
   flush in each of its partitions once all stage-1 partitions have answered;
3. this command reads the stage-2 changelog (team observations, compacted) until every
   partition shows the flush, rebuilds the team windows from it, reads the alert transitions
   and counts the dead letters, and builds the report exactly as the replay engine does,
   its ``spc`` and board sections included (and the board page with ``--html``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition

from alerts.model import Alert
from schemas.model import ALL_TEAMS
from streams.calendar import from_us, to_us
from streams.core import CoreConfig, Observation
from streams.deadletters import distinct, read_dead_letters
from streams.delivery import alert_from_bytes
from streams.live import (
    TICK_KEY,
    PartitionMeta,
    Tick,
    decode_flush_ack,
    encode_tick,
    flush_ack_key,
    position_key,
)
from streams.live_changes import read_changes
from streams.report import SpcParts, spc_sections, strata_sections
from streams.topics import KafkaSettings
from streams.windows import TeamWindows


async def _read_all(
    bootstrap: str, topic: str, partitions: int, stop: Any = None, timeout: float = 60.0
) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every record of ``topic`` up to its end offsets (or until ``stop(records)`` is true),
    as (partition, key, value)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[tuple[int, bytes | None, bytes | None]] = []
        async with asyncio.timeout(timeout):
            while True:
                if stop is None:
                    ends = await consumer.end_offsets(tps)
                    positions = {tp: await consumer.position(tp) for tp in tps}
                    if all(positions[tp] >= ends[tp] for tp in tps):
                        return records
                elif stop(records):
                    return records
                batch = await consumer.getmany(timeout_ms=500)
                for tp, messages in batch.items():
                    records.extend((tp.partition, m.key, m.value) for m in messages)
    finally:
        await consumer.stop()


def _ingest_lag(settings: KafkaSettings) -> int:
    """Messages of the input topics the workers have not yet taken in: the end offsets
    against the next offset per input partition kept in the ``input-positions`` table (read
    from the table's changelog), by ingestion for HL7 and FHIR and by stage 1 for the events
    topic (after its batch is committed)."""
    t, n = settings.topics, settings.partitions
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        inputs = [KTopicPartition(topic, p) for topic in (t.events, t.hl7, t.fhir) for p in range(n)]
        ends = consumer.end_offsets(inputs)
        latest: dict[bytes, bytes] = {}
        changelog = f"{settings.app_id}-input-positions-changelog"
        if consumer.partitions_for_topic(changelog):
            tps = [KTopicPartition(changelog, p) for p in range(n)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            stop = consumer.end_offsets(tps)
            while any(consumer.position(tp) < stop[tp] for tp in tps):
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        if record.key is not None and record.value is not None:
                            latest[record.key] = record.value
        lag = 0
        for tp in inputs:
            done = latest.get(position_key(tp.topic, tp.partition, n))
            left = ends[tp] - (int(done) if done is not None else 0)
            if left > 0 and done is not None and not _any_message(consumer, tp, int(done), ends[tp]):
                left = 0  # the offsets left hold no message (a publisher's transaction marker)
            lag += max(0, left)
        return lag
    finally:
        consumer.close(autocommit=False)


def _any_message(consumer: KafkaConsumer, tp: KTopicPartition, offset: int, end: int) -> bool:
    """Whether ``tp`` may hold a message in [offset, end): False only when reading from
    ``offset`` got no message and the read position moved to ``end`` (the offsets are taken by
    transaction markers, which no consumer receives)."""
    consumer.assign([tp])
    consumer.seek(tp, offset)
    if any(consumer.poll(timeout_ms=1000).values()):
        return True
    return consumer.position(tp) < end


async def _wait_ingested(settings: KafkaSettings, timeout: float) -> None:
    """Wait until the workers have ingested (and committed) everything published so far."""
    async with asyncio.timeout(timeout):
        while await asyncio.to_thread(_ingest_lag, settings) > 0:
            await asyncio.sleep(0.5)


END = "end"
"""``--until end``: advance to the largest event time the workers have seen (the replay's end
of input), so the live report of a finished file equals the replay of it."""


async def _flush(
    settings: KafkaSettings, until: datetime | None, timeout: float
) -> tuple[dict[bytes, bytes | None], list[PartitionMeta]]:
    """Send every ``clients`` partition a flush tick (advancing to ``until`` if given) and read
    the stage-2 changelog until every partition recorded it: (latest value per key, the
    stage-1 partitions' metadata as of the flush)."""
    n = settings.partitions
    flush = uuid.uuid4().hex
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        tick = encode_tick(
            # inclusive, like the replay's end of input: events at ``until`` itself count
            Tick(to_us(datetime.now(UTC)), None if until is None else to_us(until) + 1, flush)
        )
        for p in range(n):
            await producer.send_and_wait(settings.topics.clients, key=TICK_KEY, value=tick, partition=p)
    finally:
        await producer.stop()

    ack_keys = {flush_ack_key(flush, q, n) for q in range(n)}

    def flushed(records: list[tuple[int, bytes | None, bytes | None]]) -> bool:
        return len({p for p, k, _ in records if k in ack_keys}) >= n

    changelog = f"{settings.app_id}-team-observations-changelog"
    records = await _read_all(settings.kafka_bootstrap, changelog, n, flushed, timeout)
    latest: dict[bytes, bytes | None] = {}
    metas: list[PartitionMeta] = []
    for _, key, value in records:
        if key is None:
            continue
        if key in ack_keys and value is not None and not metas:
            metas = decode_flush_ack(value)
        if key.startswith(b"\x00"):
            continue
        latest[key] = value
    return latest, metas


def largest_event_time(metas: list[PartitionMeta]) -> datetime | None:
    """The largest event time any stage-1 partition has seen, or None before any event."""
    never = PartitionMeta().max_us  # a partition that has seen no event
    seen = [m.max_us for m in metas if m.max_us != never]
    return from_us(max(seen)) if seen else None


async def live_report(
    settings: KafkaSettings,
    until: datetime | str | None,
    timeout: float = 120.0,
    *,
    config: CoreConfig,
    spc: SpcParts | None = None,
) -> dict[str, Any]:
    """Flush the workers and build the report (see the module docstring); ``config`` is the
    workers' core configuration (``pathwatch.parts.core_config``).

    ``until``: an event time every partition is advanced to first (inclusive), :data:`END`
    for the largest event time seen (one flush more), or None (each partition as its
    watermark stands). With ``spc`` (``pathwatch.parts.spc_parts``) the report gains
    ``"spc"`` and ``"changes"`` as the replay's does, from the changes topic.
    Raises ``TimeoutError`` when the workers do not answer a flush in ``timeout`` seconds."""
    n = settings.partitions
    await _wait_ingested(settings, timeout)
    if isinstance(until, str):
        if until != END:
            raise ValueError(f"until {until!r} is neither a datetime nor {END!r}")
        _, metas = await _flush(settings, None, timeout)
        until = largest_event_time(metas)
    latest, metas = await _flush(settings, until, timeout)
    windows = TeamWindows(config)
    for value in latest.values():
        if value is not None:
            windows.apply(Observation.from_bytes(value))

    alerts: dict[tuple[str, datetime], Alert] = {}
    for _, _, value in await _read_all(settings.kafka_bootstrap, settings.topics.transitions, n, None, timeout):
        if value is None:
            continue
        alert = alert_from_bytes(value)
        alerts[(alert.fingerprint, alert.starts_at)] = alert
    # Dead letters are sent at least once: a batch sent again after a crash sends its dead
    # letters again, the same records, so distinct dead letters are the inputs dead-lettered.
    dead, _ = await read_dead_letters(settings, timeout)
    kinds = Counter(record.letter.kind.value for record in distinct(dead))

    teams = set(windows.teams())
    for meta in metas:
        teams.update(meta.teams)
    teams.discard(ALL_TEAMS)
    ordered = sorted(teams)
    lateness = config.lateness_us
    watermark_us = max((max(m.max_us - lateness, m.until_us) for m in metas), default=None)
    watermark = None if watermark_us is None else from_us(watermark_us)
    if watermark_us is not None and any(watermark_us == m.until_us for m in metas):
        # a partition advanced by a flush holds until + 1 µs (until is inclusive): show the
        # until given, in this report and in later ones without --until
        watermark = from_us(watermark_us - 1)
    now = watermark if watermark is not None else from_us(0)
    report = {
        "watermark": None if watermark is None else watermark.isoformat(),
        "measures": [
            {"measure": r.measure, "team": r.team, "numerator": r.numerator, "denominator": r.denominator}
            for r in windows.rates(now, None, teams=ordered)
        ],
        "waits": [
            {"measure": r.measure, "team": r.team, "count": r.count, "p50": r.p50, "p90": r.p90}
            for r in windows.waits(None, None, teams=ordered)
        ],
        "alerts": [alerts[k].report_entry() for k in sorted(alerts, key=lambda k: (k[1], k[0]))],
        "events": {
            "accepted": sum(m.accepted for m in metas),
            "duplicates": sum(m.duplicates for m in metas),
            "dead_letters": sum(kinds.values()),
            "corrections": sum(m.corrections for m in metas),
            "dead_letters_by_kind": dict(sorted(kinds.items())),
        },
        **strata_sections(windows),
    }
    if spc is not None:
        found = await read_changes(settings.kafka_bootstrap, settings.topics.changes, spc.decoder, timeout)
        report.update(spc_sections(report, windows, spc, found.changes()))
    return report

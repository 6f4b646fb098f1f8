"""The faust app: a thin driver around the pure core (STYLE.md: neither driver holds rules).

Topology (all internal topics hold pseudonyms only):

    events (keyed by pseudonym) -------------------------+
    hl7 / fhir --ingest--> clients (keyed by pseudonym) --+--stage 1--> observations (keyed by team)
                      \\-> dead-letters         tick timer --/        \\-> alert-transitions --deliver-->
                                                                         alerts topic, Alertmanager, webhooks
    observations --stage 2--> per-team windows -> gauges, system (churn) alerts

Stage 1 decodes the canonical events itself (dead letters to the dead-letter topic; an event
on a partition that is not its pseudonym's goes through ``clients``). Delivery runs here, or
in ``pathwatch deliver`` processes when ``delivery`` is ``separate`` (``streams/delivery.py``).

Faust's windowed tables are not used (wall-clock driven, drop late data); windows live in
our own state with our own watermark. Tables are written only while input is processed
(stage 1 reads its input through ``streams/faust_io.py``, without faust's per-message stream
work, and sends its own changelog records); ticks are messages. ``web_tables_enabled`` is
off: no endpoint serves table contents.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry

from alerts.model import Alert
from alerts.rules import AlertRulesConfig, SystemAlertRules
from pathwatch.config import Settings
from pathwatch.metrics import Metrics, SafeMetrics
from schemas.adapters import AdapterOptions
from schemas.deadletter import DeadLetter, Origin
from schemas.decode import Decoder
from schemas.fhir import FHIRAdapter
from schemas.hl7 import HL7Adapter
from schemas.model import ALL_TEAMS, encode_event
from streams.calendar import from_us, to_us
from streams.core import ClientState, CoreConfig, Observation, open_followups
from streams.delivery import add_consumer_lag, add_delivery, add_pages, alert_to_bytes
from streams.faust_io import (
    RAW,
    DirectTable,
    PathwatchApp,
    Record,
    app_options,
    learn_partitions,
    send_changelog,
    send_records,
)
from streams.faust_io import ack as intake_ack
from streams.faust_io import batches as intake_batches
from streams.live import (
    FLUSH_KEY,
    ORIGIN_HEADER,
    RECORD_HEADROOM,
    TICK_KEY,
    WATERMARK_KEY,
    CatchUp,
    Message,
    OutputTooLarge,
    Positions,
    Stage1,
    Stage2,
    StageWatermark,
    Tick,
    encode_origin,
    encode_tick,
    encode_watermark,
    processing_dead_letter,
    table_partition,
)
from streams.live_changes import add_live_mdc
from streams.windows import TeamWindows

log = logging.getLogger("pathwatch.worker")

_STAGE1_RETRIES = 5
_STAGE1_SLICE = 250  # messages of a batch stage 1 runs before letting the event loop run


class _ChangelogLost(RuntimeError):
    """Stage 1's table store is ahead of its changelog (a send failed): not retried."""


class KeyedTable(faust.Table):
    """A table whose changelog partition follows from the key (:func:`streams.live.table_partition`):
    a client's state goes with the client's input messages, a team's observations with the
    team's. The stages write a batch of several partitions at once, so faust's "partition of
    the current event" would not do. Computed here rather than asked of the producer, which
    needs the changelog topic's metadata and fails until it has it on a new deployment."""

    def partition_for_key(self, key: Any) -> int | None:
        return table_partition(key, self.partitions or 1)


@dataclass
class Runtime:
    """What the agents share: configuration, decoders, the two stage drivers, metrics."""

    settings: Settings
    config: CoreConfig
    decoder: Decoder
    hl7: HL7Adapter
    fhir: FHIRAdapter
    metrics: Metrics
    registry: CollectorRegistry
    wall: Callable[[], datetime]
    rules_config: AlertRulesConfig
    stage1: Stage1 | None = None
    stage2: Stage2 | None = None
    rules: dict[str, SystemAlertRules] = field(default_factory=dict)
    stage2_day: int | None = None
    stage2_watermark: datetime | None = None
    gauges_at: datetime | None = None
    ready: bool = False


def build_app(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    wall: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> tuple[faust.App, Runtime]:
    """Build the faust app and its runtime from settings (the composition root calls this).

    Raises ``ValueError`` when no pseudonymisation key is set and ``allow_dev_key`` is off.
    """
    key = settings.pseudonym_key_bytes(live=True)
    if not settings.store.startswith("memory://"):
        # faust's RocksDB store files a write under the partition of the event being processed;
        # stage 1 writes a whole batch (of several partitions) after the broker acknowledged
        # its outputs, so only the memory store (recovered from the changelog) is correct here.
        raise ValueError(f"store {settings.store!r} is not supported: use memory:// (state is recovered from changelogs)")
    registry = registry or CollectorRegistry()
    options = AdapterOptions.from_settings(settings)
    bundle = Metrics.from_settings(registry, settings)
    count_subject = SafeMetrics(bundle).count_adapter_event  # unlinked hospital events, by source
    runtime = Runtime(
        settings=settings,
        config=CoreConfig.from_settings(settings),
        decoder=Decoder(key, settings.max_message_bytes, settings.teams),
        hl7=HL7Adapter(options, count_subject),
        fhir=FHIRAdapter(options, count_subject),
        metrics=bundle,
        registry=registry,
        wall=wall,
        rules_config=AlertRulesConfig.from_settings(settings),
    )
    n = settings.partitions
    t = settings.topics
    app = PathwatchApp(
        settings.app_id,
        store=settings.store,
        # Linger a little so the producer packs the many small records of a batch (clients,
        # changelogs, observations) into few produce requests; with no linger it sent about
        # three records per request, and request overhead dominated the worker's main loop.
        producer_linger=0.005,
        table_standby_replicas=0,
        **app_options(settings),
    )
    app.guarded_topics = frozenset({t.events, t.hl7, t.fhir, t.clients, t.observations})
    intake = app.use_intake(frozenset({t.events, t.clients}), limit=max(10_000, 2 * settings.batch_max))
    hl7_topic = app.topic(t.hl7, partitions=n, **RAW)
    fhir_topic = app.topic(t.fhir, partitions=n, **RAW)
    clients_topic = app.topic(t.clients, partitions=n, **RAW)
    obs_topic = app.topic(t.observations, partitions=n, **RAW)
    transitions_topic = app.topic(t.transitions, partitions=n, **RAW)

    # bytes key and value types make faust use the raw codec both for writes and for recovery
    def keyed_table(name: str) -> KeyedTable:
        table = KeyedTable(app, name=name, beacon=app.tables.beacon, partitions=n, key_type=bytes, value_type=bytes)
        app.tables.add(table)
        return table

    client_table = keyed_table("client-state")
    client_store = DirectTable(client_table)
    obs_table = keyed_table("team-observations")
    positions_table = keyed_table("input-positions")
    positions = Positions(positions_table, n)
    # the largest record the producer sends (aiokafka refuses a larger one): dead letters are
    # cut to it, and an input whose derived records would exceed it is dead-lettered
    max_record = int(app.conf.producer_max_request_size)
    runtime.stage1 = Stage1(
        runtime.config,
        client_store,
        n,
        alert_clock=settings.alert_clock,
        wall=wall,
        decoder=runtime.decoder,
        direct_topic=t.events,
        positions=positions,
        input_topic=t.clients,
        record_of=_record_of,
        max_record_bytes=max_record,
    )
    runtime.stage2 = Stage2(runtime.config, obs_table, n, t.observations)
    # how long stage 1 and 2 wait to fill a batch: larger batches write each touched client
    # and partition once per batch (measured: 534 events/s at 50 ms, 768 at 250 ms)
    batch_wait = settings.batch_wait.total_seconds()

    holes: dict[tuple[str, int], tuple[int, int, int, float]] = {}
    warned: dict[tuple[str, int], int] = {}

    def accept_gap(topic: str, partition: int, floor: int) -> None:
        assert runtime.stage1 is not None
        assert runtime.stage2 is not None
        if topic == t.clients:
            runtime.stage1.floors[partition] = floor
        elif topic == t.events:
            runtime.stage1.direct_floors[partition] = floor
        elif topic == t.observations:
            runtime.stage2.positions.floors[(topic, partition)] = floor
        else:
            positions.floors[(topic, partition)] = floor

    async def rewind(topic: str, partition: int, offset: int, came: int | None = None) -> None:
        """Read ``topic``/``partition`` again from ``offset``: a stage found that messages from
        there on were not delivered (see :func:`streams.live.admit`).

        Two gaps are accepted (logged): offsets removed by retention before they were read,
        and a hole that reading again does not fill (the same offset comes after ``offset``
        at least 3 times over 2 seconds or more: a publisher's transaction marker or a
        compacted input topic; our own topics have neither)."""
        tp = TP(topic, partition)
        # seek_wait runs the seek in the consumer's own thread; Consumer.seek called from here
        # raced aiokafka's fetcher and crashed the worker (KeyError in fetched_records)
        consumer: Any = app.consumer
        earliest = (await consumer.earliest_offsets(tp)).get(tp)
        if earliest is not None and earliest > offset:
            log.error(
                "%s/%d: offsets %d to %d were removed by retention before they were processed",
                topic,
                partition,
                offset,
                earliest - 1,
            )
            accept_gap(topic, partition, earliest)
            await consumer.seek_wait({tp: earliest})  # what came in this batch was skipped: read it again
            return
        if came is not None:
            # After a seek, messages fetched before it may still come first; a hole is the
            # lowest offset that keeps coming after ``offset``.
            now = time.monotonic()
            seen = holes.get((topic, partition))
            if seen is None or seen[0] != offset or came < seen[1]:
                seen = (offset, came, 0, now if seen is None or seen[0] != offset else seen[3])
            if came == seen[1]:
                seen = (offset, came, seen[2] + 1, seen[3])
            holes[(topic, partition)] = seen
            if seen[2] >= 3 and now - seen[3] >= 2.0:
                log.warning(
                    "%s/%d: offsets %d to %d are not in the topic (read again %d times); going on from %d",
                    topic,
                    partition,
                    offset,
                    seen[1] - 1,
                    seen[2],
                    seen[1],
                )
                del holes[(topic, partition)]
                accept_gap(topic, partition, seen[1])
                await consumer.seek_wait({tp: seen[1]})
                return
        # once per gap at warning level; the re-reads that follow (stale messages may still
        # come first) at debug level, or a transactional publisher would flood the log
        first = warned.get((topic, partition)) != offset
        warned[(topic, partition)] = offset
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "%s/%d: messages from offset %d were not delivered (offset %s came); reading them again",
            topic,
            partition,
            offset,
            came,
        )
        metrics.count_rewind(topic)
        await consumer.seek_wait({tp: offset})

    metrics: Any = SafeMetrics(runtime.metrics)
    metrics.count_rerouted(t.events, 0)  # the series exists from the start (an alert rule reads it)

    def dead_letter_record(dead: DeadLetter) -> Record:
        value, headers = dead.to_record(max_record)
        return (t.dead_letters, None, value, None, headers)

    async def ingest_batch(batch: Any, convert: Callable[[bytes, Origin], list[bytes] | DeadLetter]) -> None:
        """HL7 v2 and FHIR messages: converted, decoded and forwarded to ``clients`` (canonical
        events are read by stage 1 itself). A message whose conversion raises, or whose events
        would not fit a record, is dead-lettered whole (none of its events is forwarded)."""
        records: list[Record] = []
        taken = positions.batch()
        now = wall()
        for ev in batch:
            m = ev.message
            if not taken.take(m.topic, m.partition, m.offset):
                continue  # forwarded before (stage 1 would also know it by its origin), or after a gap
            origin = Origin(topic=m.topic, partition=m.partition, offset=m.offset)
            raw = ev.value if isinstance(ev.value, bytes) else None
            try:
                if raw is None:
                    raise ValueError("the message has no value (a tombstone)")
                out, latencies = _ingest(raw, origin, convert, runtime.decoder, max_record, m, now, t.clients)
            except Exception as exc:
                out, latencies = [processing_dead_letter(exc, raw, origin)], []
            for record in out:
                if isinstance(record, DeadLetter):
                    metrics.count_dead_letter(record.kind)
                    records.append(dead_letter_record(record))
                else:
                    records.append(record)
            for event_type, seconds in latencies:
                metrics.observe_processing_latency(event_type, seconds)
        await send_records(app.producer, records)
        taken.commit()
        for (topic, partition), offset in taken.rewinds.items():
            await rewind(topic, partition, offset, taken.gaps[(topic, partition)])

    @app.agent(hl7_topic, name="pathwatch-ingest-hl7")
    async def ingest_hl7(stream: Any) -> None:
        async for batch in stream.take_events(100, within=0.05):
            await ingest_batch(batch, runtime.hl7.convert)

    @app.agent(fhir_topic, name="pathwatch-ingest-fhir")
    async def ingest_fhir(stream: Any) -> None:
        async for batch in stream.take_events(100, within=0.05):
            await ingest_batch(batch, runtime.fhir.convert)

    async def stage1_batch(driver: Stage1, messages: list[Message]) -> None:
        # in slices, letting the event loop run in between (/metrics, heartbeats, timers): a
        # batch of thousands of events held it for seconds
        done = driver.process(messages[:_STAGE1_SLICE])
        for i in range(_STAGE1_SLICE, len(messages), _STAGE1_SLICE):
            await asyncio.sleep(0)
            done = driver.process(messages[i : i + _STAGE1_SLICE], done)
        result, metas = done
        now = wall()
        # sent with the producer directly: faust's topic.send costs several times more per record
        records: list[Record] = [dead_letter_record(dead) for dead in result.rejected]
        for key, value, origin in result.forwards:
            records.append((t.clients, key, value, None, [(ORIGIN_HEADER, origin)]))
        for o in result.outputs:
            if isinstance(o, DeadLetter):
                records.append(dead_letter_record(o))
                continue
            record = _record_of(o)
            if record is not None:
                topic = t.observations if isinstance(o, Observation) else t.transitions
                records.append((topic, record[0], record[1], None, None))
        for p, watermark_us in result.watermarks.items():
            mark = encode_watermark(StageWatermark(p, watermark_us))
            records.extend((t.observations, WATERMARK_KEY, mark, q, None) for q in range(n))
        await send_records(app.producer, records)
        driver.commit(result, metas)
        try:
            await send_changelog(
                app.producer,
                client_table.changelog_topic.get_topic_name(),
                client_store.changelog(),
                lambda key: table_partition(key, n),
            )
        except Exception as exc:
            # the table's store is ahead of its changelog: only a restart (recovery from
            # the changelog, input from the committed offsets) is consistent again
            log.critical("client-state changelog send failed; stopping the worker")
            await app.crash(exc)
            raise _ChangelogLost from exc
        for o in result.outputs:
            if isinstance(o, Observation) and o.correction:
                metrics.count_correction(o.measure)
            elif isinstance(o, Alert) and o.ends_at is None:
                metrics.observe_alert_latency(o.name, max(0.0, (now - o.starts_at).total_seconds()))
            elif isinstance(o, DeadLetter):
                metrics.count_dead_letter(o.kind)
        for p, watermark_us in result.watermarks.items():
            metrics.set_watermark(t.clients, p, from_us(watermark_us))
        # counted per label set, not per event (a batch holds up to thousands)
        for event_type, count in Counter(result.late).items():
            metrics.count_late_event(event_type, count)
        for (event_type, source), count in Counter(result.accepted).items():
            metrics.count_event(event_type, source, count)
        for source, count in Counter(result.duplicates).items():
            metrics.count_duplicate(source, count)
        metrics.set_care_gap_alerts_open(driver.open_alerts(metas))
        for mark in driver.flush_marks(result, metas):
            for q in range(n):
                await obs_topic.send(key=FLUSH_KEY, value=mark, partition=q)
        latencies: dict[str, list[float]] = {}
        for event_type, event_time in result.decoded:
            latencies.setdefault(event_type, []).append((now - event_time).total_seconds())
        for event_type, values in latencies.items():
            metrics.observe_processing_latencies(event_type, values)
        for dead in result.rejected:
            metrics.count_dead_letter(dead.kind)
        if result.forwards:
            metrics.count_rerouted(t.events, len(result.forwards))
        for p, offset in result.rewinds.items():
            await rewind(t.clients, p, offset, result.gaps[p])
        for p, offset in result.direct_rewinds.items():
            await rewind(t.events, p, offset, result.direct_gaps[p])

    # Stage 1 reads the canonical events itself: they are keyed by pseudonym (DOMAIN.md
    # section 1), so co-partitioned with the client states (faust's assignor gives one worker
    # the same partition of every co-subscribed topic). ``clients`` brings HL7 and FHIR events,
    # events a publisher keyed otherwise, and the ticks. (An ingestion hop in between cost
    # one consumed and one produced message per event: stage 1 alone ran 2.7 x faster.)
    # The two topics are read through the intake (streams/faust_io.py), not a faust agent:
    # faust's per-message stream work alone cost about as much as stage 1's own.
    stage1_input = app.topic(t.clients, t.events, partitions=n, **RAW)
    app.topics.add(stage1_input)

    @app.task
    async def stage1() -> None:
        assert runtime.stage1 is not None
        driver = runtime.stage1
        # Learn every written topic's partitions before the first batch: a topic created just
        # before the producer started (ours by ensure_topics, the changelogs by faust) was
        # otherwise looked up in the middle of a batch's sends, and in about one worker start
        # in five the producer then stalled for good (no record of any topic sent; bench_live)
        written = [t.clients, t.observations, t.transitions, t.dead_letters]
        written += [
            table.changelog_topic.get_topic_name() for table in (client_table, obs_table, positions_table)
        ]
        await learn_partitions(await app.maybe_start_producer(), written)
        async for batch in intake_batches(app, intake, settings.batch_max, batch_wait):
            messages = [
                Message(
                    m.partition,
                    m.offset,
                    m.key,
                    m.value,
                    _origin(m.headers),
                    direct=m.topic == t.events,
                )
                for m in batch
            ]
            # A failed send leaves nothing written: the batch is run again (the in-memory
            # indexes are rebuilt from the table first). The batch is never dropped: after the
            # retries the worker stops with the error, and its input is read again from the
            # committed offsets.
            for attempt in range(_STAGE1_RETRIES + 1):
                try:
                    await stage1_batch(driver, messages)
                    break
                except _ChangelogLost:
                    raise
                except Exception as exc:
                    if attempt == _STAGE1_RETRIES:
                        log.critical("stage 1 batch failed %d times; stopping the worker", attempt + 1)
                        await app.crash(exc)
                        raise
                    log.exception("stage 1 batch failed (attempt %d); retrying", attempt + 1)
                    driver.forget()
                    await asyncio.sleep(min(0.5 * 2**attempt, 10.0))
            intake_ack(app, batch)

    @app.agent(obs_topic, name="pathwatch-stage2")
    async def stage2(stream: Any) -> None:
        assert runtime.stage2 is not None
        driver = runtime.stage2
        async for batch in stream.take_events(1000, within=batch_wait):
            result = driver.process(Message(e.message.partition, e.message.offset, e.key, e.value) for e in batch)
            if result.rejected:
                await send_records(app.producer, [dead_letter_record(dead) for dead in result.rejected])
                for dead in result.rejected:
                    metrics.count_dead_letter(dead.kind)
            if result.watermark_us is not None:
                await on_stage2_watermark(result.watermark_us)
            for q, offset in result.rewinds.items():
                await rewind(t.observations, q, offset, result.gaps[q])

    async def on_stage2_watermark(watermark_us: int) -> None:
        """Called on every complete set of marks (about once per tick): gauges follow the
        windows even when a late observation changes them at an unchanged watermark."""
        assert runtime.stage2 is not None
        watermark = from_us(watermark_us)
        moved = runtime.stage2_watermark != watermark
        now = wall()
        if not moved and runtime.gauges_at is not None and now - runtime.gauges_at < settings.tick_interval:
            return
        runtime.gauges_at = now
        runtime.stage2_watermark = watermark
        held = runtime.stage2.held()
        # the merge over the teams held: its '*' cells are this worker's share (Prometheus sums
        # them); a worker that holds no team exports zeros (replace semantics), never stale cells
        merged = TeamWindows.merged(held.values(), runtime.config)
        rates = merged.rates(watermark, runtime.settings.window_days)
        metrics.set_measures((r.team, r.measure, r.numerator, r.denominator) for r in rates)
        waits = merged.waits(watermark, runtime.settings.window_days)
        metrics.set_waits((w.team, w.count, w.p50, w.p90) for w in waits)
        day = runtime.config.calendar.day_of(watermark_us)
        if runtime.stage2_day is not None and day <= runtime.stage2_day:
            return
        runtime.stage2_day = day
        pending: list[Any] = []
        firing: dict[tuple[str, str, str], int] = {}
        for team, windows in held.items():
            windows.prune(watermark)
            rules = runtime.rules.setdefault(team, SystemAlertRules(runtime.rules_config))
            for alert in rules.evaluate(windows, watermark):
                if alert.labels.get("team") == ALL_TEAMS:
                    continue  # '*' needs every team: summed across workers by Prometheus instead
                pending.append(await transitions_topic.send(key=alert.fingerprint.encode(), value=alert_to_bytes(alert)))
            for alert in rules.firing():
                labels = alert.labels
                if labels.get("team") != ALL_TEAMS:
                    key = (alert.name, labels.get("team", ""), labels.get("measure", ""))
                    firing[key] = firing.get(key, 0) + 1
        metrics.set_system_alerts_open(firing)
        await asyncio.gather(*pending)

    @app.timer(interval=settings.tick_interval.total_seconds(), on_leader=True, name="pathwatch-ticks")
    async def ticks() -> None:
        value = encode_tick(Tick(to_us(wall())))
        for p in range(n):
            await clients_topic.send(key=TICK_KEY, value=value, partition=p)

    if settings.delivery == "worker":
        add_delivery(app, transitions_topic, settings, metrics, wall)

    @app.timer(interval=max(5.0, 5 * settings.tick_interval.total_seconds()), name="pathwatch-obligations")
    async def obligations() -> None:
        """Open follow-up obligations of the clients this worker holds (read-only scan), as of
        the wall clock, or of stage 2's watermark when alerts follow event time."""
        now = wall()
        if settings.alert_clock == "event":
            if runtime.stage2_watermark is None:
                return
            now = runtime.stage2_watermark
        found: list[tuple[str, int]] = []
        for key, raw in list(client_table.items()):
            if key.startswith(b"\x00"):
                continue
            found.extend(open_followups(ClientState.from_bytes(raw), now, runtime.config))
            await asyncio.sleep(0)
        metrics.set_followup_obligations_open(found)

    lagged = {t.events, t.hl7, t.fhir, t.clients, t.observations}
    add_consumer_lag(app, lagged | {t.transitions} if settings.delivery == "worker" else lagged, metrics)

    stalls: dict[Any, tuple[int | None, int]] = {}

    def expected_offset(tp: Any) -> int | None:
        assert runtime.stage1 is not None
        assert runtime.stage2 is not None
        if tp.topic in (t.clients, t.events):
            return runtime.stage1.expected(tp.partition, direct=tp.topic == t.events)
        if tp.topic == t.observations:
            return runtime.stage2.positions.expected(tp.topic, tp.partition)
        return positions.expected(tp.topic, tp.partition)

    @app.timer(interval=max(5.0, 2 * settings.tick_interval.total_seconds()), name="pathwatch-stall-watch")
    async def stall_watch() -> None:
        """A partition whose next offset has not moved for three checks while its topic holds
        more is read again from that offset: after a rebalance faust's consumer can keep a
        stale read position and silently drop what it fetches below it. Read-only."""
        is_recovered = cast(Any, app.tables).recovery.completed.is_set()
        if app.rebalancing or not is_recovered:
            stalls.clear()
            return
        consumer: Any = app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic in app.guarded_topics]
        if not tps:
            return
        ends = await consumer.highwaters(*tps)
        for tp in tps:
            expected = expected_offset(tp)
            end = ends.get(tp)
            if expected is None or end is None or end <= expected:
                stalls.pop(tp, None)
                continue
            last, count = stalls.get(tp, (None, 0))
            count = count + 1 if last == expected else 1
            stalls[tp] = (expected, count)
            if count in (3, 6):
                await rewind(tp.topic, tp.partition, expected)
            elif count == 9:
                # read again twice and nothing came: the offsets left hold no message (a
                # publisher's transaction marker ends the partition); wait for new messages
                log.info("%s/%d: offsets %d to %d hold no message", tp.topic, tp.partition, expected, end - 1)

    catch_up = CatchUp()

    @app.timer(interval=5.0, name="pathwatch-catch-up")
    async def progress() -> None:
        """A log line while stage 1 has a backlog (the metrics: ``consumer_lag_messages`` of
        the events and clients topics, ``watermark_lag_seconds``). Read-only."""
        assert runtime.stage1 is not None
        consumer: Any = app.consumer
        behind = 0
        low: int | None = None
        for tp in consumer.assignment():
            if tp.topic not in (t.events, t.clients):
                continue
            highwater = consumer.highwater(tp)
            expected = runtime.stage1.expected(tp.partition, direct=tp.topic == t.events)
            if highwater is not None:
                behind += max(0, highwater - (expected or 0))
            if tp.topic == t.clients:
                mark = runtime.stage1.watermark_us(tp.partition)
                if mark is not None:
                    low = mark if low is None else min(low, mark)
        line = catch_up.observe(behind, time.monotonic(), None if low is None else from_us(low))
        if line is not None:
            log.info("stage 1 %s", line)

    add_pages(app, registry)
    add_live_mdc(app, runtime, registry)  # stage 2's service changes and MDC gauges (issue 17)

    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        forget(revoked)

    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        forget(())
        assert runtime.stage2 is not None
        runtime.stage2.assign(tp.partition for tp in assigned if getattr(tp, "topic", None) == t.observations)

    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    app.on_partitions_assigned.connect(cast(Any, on_assigned))

    def forget(revoked: Any) -> None:
        assert runtime.stage1 is not None
        assert runtime.stage2 is not None
        runtime.stage1.forget()
        runtime.stage2.forget()
        parts = [tp.partition for tp in revoked if getattr(tp, "topic", None) == t.clients]
        if parts:
            metrics.revoke_partitions(t.clients, parts)

    return app, runtime


def _record_of(o: Any) -> tuple[bytes | None, bytes] | None:
    """The Kafka key and value stage 1 sends an output as (None: not sent; dead letters
    are sent with :meth:`DeadLetter.to_record`)."""
    if isinstance(o, Observation):
        return o.team.encode(), o.to_bytes()
    if isinstance(o, Alert):
        return o.fingerprint.encode(), alert_to_bytes(o)
    return None


def _ingest(
    raw: bytes,
    origin: Origin,
    convert: Callable[[bytes, Origin], list[bytes] | DeadLetter],
    decoder: Decoder,
    max_record: int,
    m: Any,
    now: datetime,
    clients: str,
) -> tuple[list[Record | DeadLetter], list[tuple[str, float]]]:
    """One HL7 v2 or FHIR message: its events as records for ``clients``, or its dead
    letters, and each event's processing latency (type, seconds). Raises ``OutputTooLarge``
    when an event would not fit a record (or what ``convert`` or ``decoder`` raise); the
    caller dead-letters the message then."""
    lines = convert(raw, origin)
    if isinstance(lines, DeadLetter):
        return [lines], []
    out: list[Record | DeadLetter] = []
    latencies: list[tuple[str, float]] = []
    limit = max_record - RECORD_HEADROOM
    for index, line in enumerate(lines):
        decoded = decoder.decode(line, origin)
        if isinstance(decoded, DeadLetter):
            out.append(decoded)
            continue
        key, value = decoded.client.encode(), encode_event(decoded)
        if 2 * (len(key) + len(value)) > limit:
            raise OutputTooLarge(f"an event of {len(value)} bytes: records derived from it could exceed the limit")
        latencies.append((decoded.type, max(0.0, (now - decoded.time).total_seconds())))
        out.append((clients, key, value, None, [(ORIGIN_HEADER, encode_origin(m.topic, m.partition, m.offset, index))]))
    return out, latencies


def _origin(headers: Any) -> bytes | None:
    if not headers:
        return None
    items = headers.items() if hasattr(headers, "items") else headers
    for name, value in items:
        if name == ORIGIN_HEADER:
            return bytes(value)
    return None

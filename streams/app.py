"""The faust apps: a thin driver around the pure core (STYLE.md: neither driver holds rules).

Topology (all internal topics hold pseudonyms only):

    events (keyed by pseudonym) -------------------------+
    hl7 / fhir --ingest--> clients (keyed by pseudonym) --+--stage 1--> observations (keyed by team)
                      \\-> dead-letters         tick timer --/        \\-> alert-transitions --deliver-->
                                                                         alerts topic, Alertmanager, webhooks
    observations --stage 2--> per-team windows -> gauges, system (churn) alerts

Stage 1 decodes the canonical events itself (dead letters to the dead-letter topic; an event
on a partition that is not its pseudonym's goes through ``clients``). Delivery runs here, or
in ``pathwatch deliver`` processes when ``delivery`` is ``separate``.

This module is where the rest of pathwatch meets faust: :func:`build_app` (the worker) and
:func:`build_deliver_app` make the apps, their topics and tables, and attach to faust's
agents, timers, pages and rebalance signals the jobs of ``streams/stages.py`` and
``streams/delivery.py``, which know no faust. What faust's private attributes are touched
for is fenced in ``streams/faust_io.py``. The parts come from the composition root,
``pathwatch/bootstrap.py``.

Faust's windowed tables are not used (wall-clock driven, drop late data); windows live in
our own state with our own watermark. Tables are written only while input is processed
(stage 1 reads its input through ``streams/faust_io.py``, without faust's per-message stream
work, and sends its own changelog records); ticks are messages. ``web_tables_enabled`` is
off: no endpoint serves table contents.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import faust
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streams.calendar import from_us
from streams.catch_up import CatchUp
from streams.delivery import BATCH, WITHIN, DeliveredOffsets, Delivery, DispatcherSource
from streams.faust_io import (
    RAW,
    DirectTable,
    FaustOptions,
    FaustSeeker,
    FaustSink,
    Intake,
    KeyedTable,
    PathwatchApp,
    app_options,
    committed_offset,
    learn_partitions,
    tables_recovered,
)
from streams.faust_io import ack as intake_ack
from streams.faust_io import batches as intake_batches
from streams.live import GAP, Message
from streams.live_changes import MdcParts, add_live_mdc
from streams.ports import LiveConfig, LiveMetrics
from streams.slices import LoopLagProbe
from streams.stages import Converter, Incoming, LiveStages, StageParts, StageStores, TopicSend, build_stages
from streams.stall import StallWatch as StallDecision

log = logging.getLogger("pathwatch.worker")


@dataclass(frozen=True)
class WorkerParts:
    """Everything the worker app is built from (``pathwatch/bootstrap.py`` builds it).
    ``delivery``: the dispatcher's owner, when delivery runs in the worker."""

    stages: StageParts
    hl7: Converter
    fhir: Converter
    faust: FaustOptions
    registry: CollectorRegistry
    delivery: DispatcherSource | None = None
    mdc: MdcParts | None = None  # service changes and Making Data Count gauges (issue 17)


@dataclass(frozen=True)
class DeliverParts:
    """Everything a ``pathwatch deliver`` app is built from."""

    config: LiveConfig
    faust: FaustOptions
    metrics: LiveMetrics
    registry: CollectorRegistry
    source: DispatcherSource
    wall: Callable[[], datetime]


def build_app(parts: WorkerParts) -> tuple[faust.App, LiveStages]:
    """The worker app and its jobs. Raises ``ValueError`` for a table store other than
    ``memory://``, or for delivery in the worker without ``parts.delivery``."""
    config = parts.stages.config
    if not config.store.startswith("memory://"):
        # faust's RocksDB store files a write under the partition of the event being processed;
        # stage 1 writes a whole batch (of several partitions) after the broker acknowledged
        # its outputs, so only the memory store (recovered from the changelog) is correct here.
        raise ValueError(f"store {config.store!r} is not supported: use memory:// (state is recovered from changelogs)")
    n, t = config.partitions, config.topics
    app = PathwatchApp(
        config.app_id,
        store=config.store,
        # Linger a little so the producer packs the many small records of a batch (clients,
        # changelogs, observations) into few produce requests; with no linger it sent a few
        # records per request, and request overhead dominated the worker's main loop.
        producer_linger=0.005,
        table_standby_replicas=0,
        **app_options(parts.faust),
    )
    app.guarded_topics = frozenset({t.events, t.hl7, t.fhir, t.clients, t.observations})
    intake = app.use_intake(frozenset({t.events, t.clients}), limit=max(10_000, 2 * config.batch_max))
    transitions_topic = app.topic(t.transitions, partitions=n, **RAW)
    client_table, obs_table, positions_table = (_keyed_table(app, name, n) for name in _TABLES)
    stores = StageStores(
        DirectTable(client_table), obs_table, positions_table, client_table.changelog_topic.get_topic_name()
    )
    # the largest record the producer sends (aiokafka refuses a larger one)
    max_record = int(app.conf.producer_max_request_size)
    stages = build_stages(
        parts.stages, stores, FaustSink(app), FaustSeeker(app), app.crash,
        max_record=max_record, transitions_topic=cast(TopicSend, transitions_topic),
    )
    metrics = parts.stages.metrics
    metrics.count_rerouted(t.events, 0)  # the series exists from the start (an alert rule reads it)
    add_ingest(app, stages, parts.hl7, parts.fhir)
    written = [t.clients, t.observations, t.transitions, t.dead_letters]
    written += [table.changelog_topic.get_topic_name() for table in (client_table, obs_table, positions_table)]
    add_stage1(app, stages, intake, written)
    add_stage2(app, stages)
    add_timers(app, stages)
    if config.delivery == "worker":
        if parts.delivery is None:
            raise ValueError("delivery = 'worker' needs the dispatcher's owner (WorkerParts.delivery)")
        add_delivery(app, transitions_topic, Delivery(parts.delivery, metrics, parts.stages.wall), config, stages=stages)
    lagged = {t.events, t.hl7, t.fhir, t.clients, t.observations}
    add_consumer_lag(app, lagged | {t.transitions} if config.delivery == "worker" else lagged, metrics)
    add_pages(app, parts.registry)
    if parts.mdc is not None:
        add_live_mdc(app, parts.mdc, stages)
    add_rebalance(app, stages)
    return app, stages


_TABLES = ("client-state", "team-observations", "input-positions")


def _keyed_table(app: faust.App, name: str, partitions: int) -> KeyedTable:
    # bytes key and value types make faust use the raw codec both for writes and for recovery
    table = KeyedTable(app, name=name, beacon=app.tables.beacon, partitions=partitions, key_type=bytes, value_type=bytes)
    app.tables.add(table)
    return table


def add_ingest(app: faust.App, stages: LiveStages, hl7: Converter, fhir: Converter) -> None:
    """The HL7 v2 and FHIR topics, read by faust agents into :class:`streams.stages.Ingest`."""
    t, n = stages.config.topics, stages.config.partitions

    def incoming(batch: Any) -> list[Incoming]:
        return [Incoming(e.message.topic, e.message.partition, e.message.offset, e.key, e.value) for e in batch]

    @app.agent(app.topic(t.hl7, partitions=n, **RAW), name="pathwatch-ingest-hl7")
    async def ingest_hl7(stream: Any) -> None:
        async for batch in stream.take_events(100, within=0.05):
            await stages.ingest.batch(incoming(batch), hl7)

    @app.agent(app.topic(t.fhir, partitions=n, **RAW), name="pathwatch-ingest-fhir")
    async def ingest_fhir(stream: Any) -> None:
        async for batch in stream.take_events(100, within=0.05):
            await stages.ingest.batch(incoming(batch), fhir)


def add_stage1(app: PathwatchApp, stages: LiveStages, intake: Intake, written: list[str]) -> None:
    """Stage 1, a faust task reading ``clients`` and the events topic through ``intake``.

    Stage 1 reads the canonical events itself: they are keyed by pseudonym (the
    specification, section 1), so co-partitioned with the client states (faust's assignor
    gives one worker the same partition of every co-subscribed topic). ``clients`` brings HL7
    and FHIR events, events a publisher keyed otherwise, and the ticks. The two topics are
    read through the intake (``streams/faust_io.py``), not a faust agent: faust's
    per-message stream work alone cost about as much as stage 1's own."""
    config = stages.config
    t = config.topics
    app.topics.add(app.topic(t.clients, t.events, partitions=config.partitions, **RAW))
    batch_wait = config.batch_wait.total_seconds()

    @app.task
    async def stage1() -> None:
        # Learn every written topic's partitions before the first batch: a topic created just
        # before the producer started (ours by ensure_topics, the changelogs by faust) was
        # otherwise looked up in the middle of a batch's sends, and in about one worker start
        # in five the producer then stalled for good (no record of any topic sent; bench_live)
        await learn_partitions(await app.maybe_start_producer(), written)
        async for batch in intake_batches(app, intake, config.batch_max, batch_wait):
            await stages.stage1_loop.run(batch)
            intake_ack(app, batch)


def add_stage2(app: faust.App, stages: LiveStages) -> None:
    """Stage 2, a faust agent on the observations topic (:class:`streams.stages.Stage2Loop`)."""
    config = stages.config
    topic = app.topic(config.topics.observations, partitions=config.partitions, **RAW)
    batch_wait = config.batch_wait.total_seconds()

    @app.agent(topic, name="pathwatch-stage2")
    async def stage2(stream: Any) -> None:
        async for batch in stream.take_events(1000, within=batch_wait):
            await stages.stage2_loop.run(Message(e.message.partition, e.message.offset, e.key, e.value) for e in batch)


def add_timers(app: PathwatchApp, stages: LiveStages) -> None:
    """The worker's timers: ticks (leader only), the obligations gauge, the stall watch and
    the catch-up log line. None of them writes a table."""
    tick = stages.config.tick_interval.total_seconds()
    app.timer(interval=tick, on_leader=True, name="pathwatch-ticks")(stages.ticker.tick)
    app.timer(interval=max(5.0, 5 * tick), name="pathwatch-obligations")(stages.obligations.export)
    app.timer(interval=max(5.0, 2 * tick), name="pathwatch-stall-watch")(StallWatch(app, stages).stall_watch)
    app.timer(interval=5.0, name="pathwatch-catch-up")(CatchUpLog(app, stages).progress)
    app.task(LoopLagProbe(stages.metrics.observe_loop_lag).run)


class StallWatch:
    """The stall watch (a timer): see :meth:`stall_watch`."""

    def __init__(self, app: PathwatchApp, stages: LiveStages) -> None:
        self.app = app
        self.stages = stages
        self.stalls = StallDecision()

    async def stall_watch(self) -> None:
        """A partition that waits for the same offset for three checks while its topic holds
        more (or at the first check after a recovery or rebalance) is read again from there
        (:class:`streams.stall.StallWatch`). Read-only."""
        app, stalls = self.app, self.stalls
        if app.rebalancing or not tables_recovered(app):
            stalls.clear()
            return
        consumer: Any = app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic in app.guarded_topics]
        if not tps:
            return
        ends = await consumer.highwaters(*tps)
        for tp in tps:
            expected = self.stages.expected_offset(tp.topic, tp.partition)
            action = stalls.check(tp, expected, committed_offset(app, tp), ends.get(tp))
            if action is None:
                continue
            what, offset = action
            if what == "rewind":
                await self.stages.rewinder.rewind(tp.topic, tp.partition, offset)
            else:
                log.info("%s/%d: offsets %d to %d hold no message", tp.topic, tp.partition, offset, ends[tp] - 1)


class CatchUpLog:
    """A log line while stage 1 has a backlog (a timer; the metrics: ``consumer_lag_messages``
    of the events and clients topics, ``watermark_lag_seconds``). Read-only."""

    def __init__(self, app: faust.App, stages: LiveStages) -> None:
        self.app = app
        self.stages = stages
        self.catch_up = CatchUp()

    async def progress(self) -> None:
        t, stage1 = self.stages.config.topics, self.stages.stage1
        consumer: Any = self.app.consumer
        behind = 0
        low: int | None = None
        for tp in consumer.assignment():
            if tp.topic not in (t.events, t.clients):
                continue
            highwater = consumer.highwater(tp)
            expected = stage1.expected(tp.partition, direct=tp.topic == t.events)
            if highwater is not None:
                behind += max(0, highwater - (expected or 0))
            if tp.topic == t.clients:
                mark = stage1.watermark_us(tp.partition)
                if mark is not None:
                    low = mark if low is None else min(low, mark)
        line = self.catch_up.observe(behind, time.monotonic(), None if low is None else from_us(low))
        if line is not None:
            log.info("stage 1 %s", line)


def add_rebalance(app: faust.App, stages: LiveStages) -> None:
    """On a rebalance the stages drop their in-memory indexes (rebuilt from the tables)."""

    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        stages.forget([(tp.topic, tp.partition) for tp in revoked if hasattr(tp, "topic")])

    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        stages.assigned([(tp.topic, tp.partition) for tp in assigned if hasattr(tp, "topic")])

    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    app.on_partitions_assigned.connect(cast(Any, on_assigned))


def add_delivery(
    app: faust.App,
    transitions_topic: Any,
    delivery: Delivery,
    config: LiveConfig,
    intake: Intake | None = None,
    stages: LiveStages | None = None,
) -> None:
    """Delivery of batches of transitions (:class:`streams.delivery.Delivery`), and the
    timers that make re-sends and retries happen on time, not only when new transitions come.

    Inside a worker, a faust agent reads the transitions. A deliver app passes ``intake``
    (installed on its consumer for the transitions topic): batches are then taken from faust's
    fetch loop as stage 1 takes its input (``streams/faust_io.py``), without faust's
    per-message stream work (benchmarks/RESULTS.md).

    Inside a worker (``stages`` given) transitions are admitted as stage 1 admits its input
    (:class:`streams.delivery.DeliveredOffsets`): nothing past a gap is delivered, and the
    partition is read again from the gap."""
    if isinstance(app, PathwatchApp):
        # faust drops what it fetches below a partition's read position; a restarted worker
        # sometimes left transitions partitions unread and uncommitted for good (the SIGKILL
        # integration test). The log de-duplicates what is read twice, so this topic goes
        # without read positions, as stage 1's inputs do.
        app.guarded_topics = app.guarded_topics | {config.topics.transitions}

    if intake is None:

        @app.agent(transitions_topic, name="pathwatch-deliver")
        async def deliver(stream: Any) -> None:
            await delivery.start()
            try:
                async for events in stream.take_events(BATCH, within=WITHIN):
                    if stages is None:
                        await delivery.deliver([event.value for event in events])
                        continue
                    starts = await _log_starts(app, stages, events)
                    values, gaps = _admitted(app, stages.delivered, events, starts)
                    await delivery.deliver(values)
                    for partition, offset in gaps.items():
                        await stages.rewinder.rewind(config.topics.transitions, partition, offset)
            finally:
                await delivery.stop()

    else:
        app.topics.add(transitions_topic)

        @app.task
        async def deliver_intake() -> None:
            await delivery.start()
            try:
                async for batch in intake_batches(app, intake, BATCH, WITHIN):
                    await delivery.deliver([m.value for m in batch])
                    intake_ack(app, batch)
            finally:
                await delivery.stop()

    app.timer(interval=config.tick_interval.total_seconds(), name="pathwatch-redeliver")(delivery.redeliver)
    app.timer(interval=5.0, name="pathwatch-delivery-heartbeat")(delivery.heartbeat)


def _admitted(
    app: faust.App, delivered: DeliveredOffsets, events: list[Any], starts: dict[int, int]
) -> tuple[list[bytes], dict[int, int]]:
    """The values of ``events`` to deliver (none of a partition past a gap in it), and the
    offset to read each partition with a gap again from. ``starts``: the log start of each
    partition the group has never committed (:func:`_log_starts`)."""
    values: list[bytes] = []
    gaps: dict[int, int] = {}
    for event in events:
        message = event.message
        if message.partition in gaps:
            continue
        committed = committed_offset(app, message.tp)
        if delivered.admit(message.partition, message.offset, committed, starts.get(message.partition)) == GAP:
            gaps[message.partition] = cast(int, delivered.expected(message.partition, None))
        else:
            values.append(event.value)
    return values, gaps


async def _log_starts(app: faust.App, stages: LiveStages, events: list[Any]) -> dict[int, int]:
    """The earliest offset of each partition of ``events`` that delivery has not read since
    it was assigned and the group has never committed (asked once per such partition)."""
    starts: dict[int, int] = {}
    for event in events:
        message = event.message
        p = message.partition
        if p in starts or stages.delivered.expected(p, committed_offset(app, message.tp)) is not None:
            continue
        earliest = await stages.rewinder.seeker.earliest(message.tp.topic, p)
        if earliest is not None:
            starts[p] = earliest
    return starts


def add_consumer_lag(app: faust.App, topics: set[str], metrics: LiveMetrics) -> None:
    """Every 5 s, the consumer lag of the assigned partitions of ``topics`` (a gauge)."""

    @app.timer(interval=5.0, name="pathwatch-consumer-lag")
    async def consumer_lag() -> None:
        consumer: Any = app.consumer
        lags: dict[tuple[str, int], int] = {}
        for tp in consumer.assignment():
            if tp.topic not in topics:
                continue
            highwater = consumer.highwater(tp)
            committed = committed_offset(app, tp)
            if highwater is not None:
                lags[(tp.topic, tp.partition)] = max(0, highwater - (committed or 0))
        metrics.set_consumer_lag(lags)


def add_pages(app: faust.App, registry: CollectorRegistry) -> None:
    """/health, /ready (no rebalance under way and the tables recovered) and /metrics.
    faust's table pages stay off (``web_tables_enabled=False``, :func:`streams.faust_io.app_options`)."""

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        is_ready = not app.rebalancing and tables_recovered(app)
        return web.json({"ready": is_ready}, status=200 if is_ready else 503)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; Prometheus' text format is UTF-8
        return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def build_deliver_app(parts: DeliverParts) -> faust.App:
    """The ``pathwatch deliver`` app: delivery alone, in consumer group ``<app_id>-deliver``."""
    config = parts.config
    app = PathwatchApp(f"{config.app_id}-deliver", store="memory://", **app_options(parts.faust))
    topic = config.topics.transitions
    intake = app.use_intake(frozenset({topic}), limit=4 * BATCH)
    transitions_topic = app.topic(topic, partitions=config.partitions, **RAW)
    add_delivery(app, transitions_topic, Delivery(parts.source, parts.metrics, parts.wall), config, intake)
    add_consumer_lag(app, {topic}, parts.metrics)
    add_pages(app, parts.registry)
    app.task(LoopLagProbe(parts.metrics.observe_loop_lag).run)
    return app

"""Alert delivery from Kafka: the alert-transitions topic -> the alerts topic, Alertmanager and
webhooks (``alerts/pipeline.py``'s dispatcher, with the Redis notification log).

Delivery runs inside every worker (``delivery = "worker"``, the default: one process does
everything) or in processes of its own (``delivery = "separate"`` on the workers, and
``pathwatch deliver``). A deliver process is a faust app with its own consumer group
(``<app_id>-deliver``) on the transitions topic, no tables, and the same /health, /ready and
/metrics pages as a worker; run as many as the transitions topic has partitions. Separate
delivery keeps its work off the workers' event loop: with every event firing an alert, it
was about a fifth of a busy worker's time (README, Measured figures).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

import faust
import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from alerts.model import Alert
from pathwatch.config import Settings
from pathwatch.metrics import Metrics, SafeMetrics
from streams.faust_io import RAW, Intake, PathwatchApp, app_options
from streams.faust_io import ack as intake_ack
from streams.faust_io import batches as intake_batches
from streams.live import GAP, admit

log = logging.getLogger("pathwatch.deliver")

_BATCH, _WITHIN = 1000, 0.05  # most transitions in one delivery batch; longest wait to fill one
_OUTCOMES = {"sent": "delivered", "repeated": "delivered", "retry": "retryable_error", "skipped": "deduplicated"}


class _AlertWire(msgspec.Struct):
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: datetime  # noqa: N815 - Alertmanager's field name
    endsAt: datetime | None = None  # noqa: N815


_alert_decoder = msgspec.json.Decoder(_AlertWire)


def alert_to_bytes(alert: Alert) -> bytes:
    """An alert state as JSON for the alert-transitions topic."""
    return msgspec.json.encode(
        {
            "labels": dict(alert.labels),
            "annotations": dict(alert.annotations),
            "startsAt": alert.starts_at,
            "endsAt": alert.ends_at,
        }
    )


def alert_from_bytes(raw: bytes) -> Alert:
    wire = _alert_decoder.decode(raw)
    return Alert(wire.labels, wire.startsAt, wire.endsAt, wire.annotations)


class DeliveredOffsets:
    """The next offset delivery expects on each transitions partition, and what to make of
    each message that comes (:func:`streams.live.admit`).

    Inside a worker, faust's fetch loop drops records it fetched while the tables were still
    recovering (or across a rebalance), with the consumer's position already past them, and
    a group that had committed nothing on a partition then commits over them. A message
    past the next expected offset is therefore not delivered: the partition is read again
    from the gap (states must reach receivers in order: a firing state delivered after its
    resolve would leave the alert open). Until a partition's first message, the offset
    expected is the group's committed one; with none committed, anything goes."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}

    def admit(self, partition: int, offset: int, committed: int | None) -> str:
        """``APPLY`` (deliver it; the next offset moves past it), ``SEEN`` (read before:
        deliver it again, the notification log de-duplicates) or ``GAP`` (do not deliver:
        read the partition again from :meth:`expected`)."""
        verdict = admit(offset, self._next.get(partition, committed))
        if verdict == GAP:
            self._next.setdefault(partition, cast(int, committed))
        elif offset >= self._next.get(partition, 0):
            self._next[partition] = offset + 1
        return verdict

    def expected(self, partition: int, committed: int | None) -> int | None:
        """The next offset to deliver: after the last one delivered, else the committed one."""
        return self._next.get(partition, committed)

    def accept(self, partition: int, floor: int) -> None:
        """Offsets below ``floor`` are gone (retention): expect ``floor`` next."""
        self._next[partition] = floor

    def forget(self) -> None:
        """Partitions were revoked or assigned: what was read says nothing of the new owner's."""
        self._next.clear()


def add_delivery(
    app: faust.App,
    transitions_topic: Any,
    settings: Settings,
    metrics: Any,
    wall: Callable[[], datetime],
    intake: Intake | None = None,
    rewind: Callable[[str, int, int], Awaitable[None]] | None = None,
) -> DeliveredOffsets:
    """Delivery of batches of transitions to the dispatcher, and the timer that makes re-sends
    and retries happen on time, not only when new transitions come.

    Inside a worker, a faust agent reads the transitions. A deliver app passes ``intake``
    (installed on its consumer for the transitions topic): batches are then taken from faust's
    fetch loop as stage 1 takes its input (``streams/faust_io.py``), without faust's
    per-message stream work, which was about a fifth of a deliver process's time at 1,000
    alerts a second.

    Inside a worker, ``rewind(topic, partition, offset)`` reads a partition again from a gap
    (:class:`DeliveredOffsets`); the offsets are returned for the worker's stall watch. (The
    deliver app has no tables to recover, and its intake is not checked for gaps.)"""
    if isinstance(app, PathwatchApp):
        # faust drops what it fetches below a partition's read position; a restarted worker
        # sometimes left transitions partitions unread and uncommitted for good (the SIGKILL
        # integration test). The log de-duplicates what is read twice, so this topic goes
        # without read positions, as stage 1's inputs do.
        app.guarded_topics = app.guarded_topics | {settings.topics.transitions}
    delivery: dict[str, Any] = {}
    delivered = DeliveredOffsets()
    reported: dict[tuple[str, str], int] = {}

    def count_deliveries() -> None:
        dispatcher = delivery.get("dispatcher")
        if dispatcher is None:
            return
        for (receiver, outcome), n in list(dispatcher.stats.counts.items()):
            new = n - reported.get((receiver, outcome), 0)
            reported[(receiver, outcome)] = n
            if new:
                metrics.count_delivery(receiver, _OUTCOMES.get(outcome, outcome), new)

    async def dispatch(raws: list[bytes]) -> None:
        await delivery["dispatcher"].dispatch([alert_from_bytes(raw) for raw in raws], wall())
        count_deliveries()

    gaps: dict[int, int] = {}

    def admitted(events: list[Any]) -> list[bytes]:
        """The values of ``events`` to deliver: none of a partition past a gap in it."""
        values = []
        committed = cast(Any, app.consumer)._committed_offset  # the group's, as faust knows it
        for event in events:
            message = event.message
            if message.partition in gaps:
                continue
            verdict = delivered.admit(message.partition, message.offset, committed.get(message.tp))
            if verdict == GAP:
                gaps[message.partition] = cast(int, delivered.expected(message.partition, None))
            else:
                values.append(event.value)
        return values

    if intake is None:

        @app.agent(transitions_topic, name="pathwatch-deliver")
        async def deliver(stream: Any) -> None:
            delivery["dispatcher"] = await _dispatcher(settings)
            try:
                async for events in stream.take_events(_BATCH, within=_WITHIN):
                    await dispatch(admitted(events))
                    for partition, offset in gaps.items():
                        if rewind is not None:
                            await rewind(transitions_topic.get_topic_name(), partition, offset)
                    gaps.clear()
            finally:
                await delivery.pop("dispatcher").close()

    else:
        app.topics.add(transitions_topic)

        @app.task
        async def deliver_intake() -> None:
            delivery["dispatcher"] = await _dispatcher(settings)
            try:
                async for batch in intake_batches(app, intake, _BATCH, _WITHIN):
                    await dispatch([m.value for m in batch])
                    intake_ack(app, batch)
            finally:
                await delivery.pop("dispatcher").close()

    @app.timer(interval=settings.tick_interval.total_seconds(), name="pathwatch-redeliver")
    async def redeliver() -> None:
        """Re-sends (Alertmanager expects them) and retries happen on time, not only on new alerts."""
        dispatcher = delivery.get("dispatcher")
        if dispatcher is not None:
            await dispatcher.dispatch([], wall())
            count_deliveries()

    @app.timer(interval=5.0, name="pathwatch-delivery-heartbeat")
    async def delivery_heartbeat() -> None:
        """The heartbeat that keeps this process's claims (every 5 s, whatever the tick
        interval; the owner time-out is 15 s), and how long each receiver has owed alert
        states without delivering any. Neither waits for a delivery in progress."""
        dispatcher = delivery.get("dispatcher")
        if dispatcher is not None:
            now = wall()
            await dispatcher.heartbeat(now)
            metrics.set_delivery_stalled(dispatcher.stalled_seconds(now))

    return delivered


def add_consumer_lag(app: faust.App, topics: set[str], metrics: Any) -> None:
    """Every 5 s, the consumer lag of the assigned partitions of ``topics`` (a gauge)."""

    @app.timer(interval=5.0, name="pathwatch-consumer-lag")
    async def consumer_lag() -> None:
        consumer: Any = app.consumer
        lags: dict[tuple[str, int], int] = {}
        for tp in consumer.assignment():
            if tp.topic not in topics:
                continue
            highwater = consumer.highwater(tp)
            committed = consumer._committed_offset.get(tp)
            if highwater is not None:
                lags[(tp.topic, tp.partition)] = max(0, highwater - (committed or 0))
        metrics.set_consumer_lag(lags)


def add_pages(app: faust.App, registry: CollectorRegistry) -> None:
    """/health, /ready (no rebalance under way and the tables recovered) and /metrics.
    faust's table pages stay off (``web_tables_enabled=False`` where the app is built)."""

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        is_ready = not app.rebalancing and cast(Any, app.tables).recovery.completed.is_set()
        return web.json({"ready": is_ready}, status=200 if is_ready else 503)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; Prometheus' text format is UTF-8
        return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def build_delivery_app(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    wall: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> faust.App:
    """The ``pathwatch deliver`` app: delivery alone, in consumer group ``<app_id>-deliver``."""
    registry = registry or CollectorRegistry()
    metrics = SafeMetrics(Metrics.from_settings(registry, settings))
    app = PathwatchApp(f"{settings.app_id}-deliver", store="memory://", **app_options(settings))
    topic = settings.topics.transitions
    intake = app.use_intake(frozenset({topic}), limit=4 * _BATCH)
    add_delivery(app, app.topic(topic, partitions=settings.partitions, **RAW), settings, metrics, wall, intake)
    add_consumer_lag(app, {topic}, metrics)
    add_pages(app, registry)
    return app


async def _dispatcher(settings: Settings) -> Any:
    """Delivery: Redis notification log, aiokafka producer for the alerts topic, HTTP session."""
    import aiohttp
    import redis.asyncio as aredis
    from aiokafka import AIOKafkaProducer

    from alerts.pipeline import build_dispatcher

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    session = aiohttp.ClientSession()
    # a Redis call that never answers would hold delivery (and its lock) for good: time it out
    # into a storage error, which is retried and logged
    client = aredis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
    dispatcher = build_dispatcher(settings, client, producer, session, settings.alert_routes or None)
    original_close = dispatcher.close

    async def close() -> None:
        await original_close()
        await session.close()
        await producer.stop()
        await cast(Any, client).aclose()

    dispatcher.close = close  # type: ignore[method-assign]
    return dispatcher

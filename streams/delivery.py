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
from collections.abc import Callable
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


def add_delivery(
    app: faust.App,
    transitions_topic: Any,
    settings: Settings,
    metrics: Any,
    wall: Callable[[], datetime],
    intake: Intake | None = None,
) -> None:
    """Delivery of batches of transitions to the dispatcher, and the timer that makes re-sends
    and retries happen on time, not only when new transitions come.

    Inside a worker, a faust agent reads the transitions. A deliver app passes ``intake``
    (installed on its consumer for the transitions topic): batches are then taken from faust's
    fetch loop as stage 1 takes its input (``streams/faust_io.py``), without faust's
    per-message stream work, which was about a fifth of a deliver process's time at 1,000
    alerts a second."""
    if isinstance(app, PathwatchApp):
        # faust drops what it fetches below a partition's read position; a restarted worker
        # sometimes left transitions partitions unread and uncommitted for good (the SIGKILL
        # integration test). The log de-duplicates what is read twice, so this topic goes
        # without read positions, as stage 1's inputs do.
        app.guarded_topics = app.guarded_topics | {settings.topics.transitions}
    delivery: dict[str, Any] = {}
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

    if intake is None:

        @app.agent(transitions_topic, name="pathwatch-deliver")
        async def deliver(stream: Any) -> None:
            delivery["dispatcher"] = await _dispatcher(settings)
            try:
                async for batch in stream.take(_BATCH, within=_WITHIN):
                    await dispatch(batch)
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

"""Alert delivery from Kafka: the alert-transitions topic -> the alerts topic, Alertmanager and
webhooks (``alerts/pipeline.py``'s dispatcher, with the Redis notification log).

Delivery runs inside every worker (``delivery = "worker"``, the default: one process does
everything) or in processes of its own (``delivery = "separate"`` on the workers, and
``pathwatch deliver``). A deliver process is a faust app with its own consumer group
(``<app_id>-deliver``) on the transitions topic, no tables, and the same /health, /ready and
/metrics pages as a worker; run as many as the transitions topic has partitions. Separate
delivery keeps its work off the workers' event loop (benchmarks/RESULTS.md).

This module knows no faust: :class:`Delivery` is what the faust agent and timers of
``streams/app.py`` call (``add_delivery``), and :class:`DeliveryResources` owns the
connections the dispatcher sends through (opened by ``start``, closed by ``stop``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, cast

import msgspec

from alerts.model import Alert
from alerts.pipeline import Dispatcher
from alerts.receivers import KafkaProducerLike
from streams.live import GAP, admit
from streams.ports import LiveMetrics

log = logging.getLogger("pathwatch.deliver")

BATCH, WITHIN = 1000, 0.05  # most transitions in one delivery batch; longest wait to fill one
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


class DispatcherSource(Protocol):
    """Gives delivery its dispatcher and takes it back (the owner of its connections)."""

    async def start(self) -> Dispatcher:
        """Open what the dispatcher sends through and return the dispatcher."""
        ...

    async def stop(self) -> None:
        """Close the dispatcher, then what it sent through (each at most once)."""
        ...


BuildDispatcher = Callable[[Any, KafkaProducerLike, Any], Dispatcher]
"""(Redis client, Kafka producer, HTTP session) -> dispatcher (the composition root's)."""


class DeliveryResources:
    """The dispatcher's connections, owned: a Redis client for the notification log, an
    aiokafka producer for the alerts topic and an aiohttp session for Alertmanager and
    webhooks. :meth:`start` opens them and builds the dispatcher with ``build``; :meth:`stop`
    closes the dispatcher and then them."""

    def __init__(self, kafka_bootstrap: str, redis_url: str, build: BuildDispatcher) -> None:
        self.kafka_bootstrap = kafka_bootstrap
        self.redis_url = redis_url
        self.build = build
        self._producer: Any = None
        self._session: Any = None
        self._client: Any = None
        self._dispatcher: Dispatcher | None = None

    async def start(self) -> Dispatcher:
        import aiohttp
        import redis.asyncio as aredis
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        self._producer = producer
        self._session = aiohttp.ClientSession()
        # a Redis call that never answers would hold delivery (and its lock) for good: time it
        # out into a storage error, which is retried and logged
        self._client = aredis.from_url(self.redis_url, socket_timeout=10, socket_connect_timeout=5)
        self._dispatcher = self.build(self._client, producer, self._session)
        return self._dispatcher

    async def stop(self) -> None:
        dispatcher, self._dispatcher = self._dispatcher, None
        session, self._session = self._session, None
        producer, self._producer = self._producer, None
        client, self._client = self._client, None
        if dispatcher is not None:
            await dispatcher.close()
        if session is not None:
            await session.close()
        if producer is not None:
            await producer.stop()
        if client is not None:
            await client.aclose()


class StaticDispatcher:
    """A :class:`DispatcherSource` over a dispatcher that owns no connections (tests, tools)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def start(self) -> Dispatcher:
        return self.dispatcher

    async def stop(self) -> None:
        await self.dispatcher.close()


class DeliveredOffsets:
    """The next offset delivery expects on each transitions partition, and what to make of
    each message that comes (:func:`streams.live.admit`).

    Inside a worker, faust's fetch loop drops records it fetched while the tables were still
    recovering (or across a rebalance), with the consumer's position already past them, and
    a group that had committed nothing on a partition then commits over them. A message
    past the next expected offset is therefore not delivered: the partition is read again
    from the gap (states must reach receivers in order: a firing state delivered after its
    resolve would leave the alert open). Until a partition's first message, the offset
    expected is the group's committed one; with none committed, the partition's log start
    (its earliest offset: the group reads a partition it never committed from there), so a
    drop before the first commit is a gap too, not taken for retention."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}

    def admit(self, partition: int, offset: int, committed: int | None, log_start: int | None = None) -> str:
        """``APPLY`` (deliver it; the next offset moves past it), ``SEEN`` (read before:
        deliver it again, the notification log de-duplicates) or ``GAP`` (do not deliver:
        read the partition again from :meth:`expected`). ``log_start``: the partition's
        earliest offset, expected first when the group has committed none."""
        start = committed if committed is not None else log_start
        verdict = admit(offset, self._next.get(partition, start))
        if verdict == GAP:
            self._next.setdefault(partition, cast(int, start))
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


class Delivery:
    """Delivery of batches of transitions to the dispatcher, re-sends and retries on time,
    the heartbeat that keeps this process's claims, and the delivery metrics.

    ``streams/app.py`` calls :meth:`start` before the first batch and :meth:`stop` after
    the last (in the reading agent or task), :meth:`deliver` per batch, and :meth:`redeliver`
    and :meth:`heartbeat` from timers (they do nothing while there is no dispatcher)."""

    def __init__(self, source: DispatcherSource, metrics: LiveMetrics, wall: Callable[[], datetime]) -> None:
        self.source = source
        self.metrics = metrics
        self.wall = wall
        self.dispatcher: Dispatcher | None = None
        self._reported: dict[tuple[str, str], int] = {}

    async def start(self) -> None:
        self.dispatcher = await self.source.start()

    async def stop(self) -> None:
        self.dispatcher = None
        await self.source.stop()

    async def deliver(self, raws: list[bytes]) -> None:
        """One batch of alert-transition records (JSON, :func:`alert_to_bytes`)."""
        assert self.dispatcher is not None, "Delivery.start was not called"
        await self.dispatcher.dispatch([alert_from_bytes(raw) for raw in raws], self.wall())
        self._count()

    async def redeliver(self) -> None:
        """Re-sends (Alertmanager expects them) and retries happen on time, not only on new alerts."""
        if self.dispatcher is not None:
            await self.dispatcher.dispatch([], self.wall())
            self._count()

    async def heartbeat(self) -> None:
        """Keep this process's claims (every 5 s, whatever the tick interval; the owner
        time-out is 15 s), and export how long each receiver has owed alert states without
        delivering any. Neither waits for a delivery in progress."""
        dispatcher = self.dispatcher
        if dispatcher is not None:
            now = self.wall()
            await dispatcher.heartbeat(now)
            self.metrics.set_delivery_stalled(dispatcher.stalled_seconds(now))

    def _count(self) -> None:
        if self.dispatcher is None:
            return
        for (receiver, outcome), n in list(self.dispatcher.stats.counts.items()):
            new = n - self._reported.get((receiver, outcome), 0)
            self._reported[(receiver, outcome)] = n
            if new:
                self.metrics.count_delivery(receiver, _OUTCOMES.get(outcome, outcome), new)

"""The fence around faust's and aiokafka's internals: every touch of a private attribute of
theirs is in this module (docs/design.md lists them), as subclasses or as the steps
:class:`PathwatchApp` runs when it makes its consumer; a unit test fails when the copied
faust method changes. The rest of pathwatch reaches faust through ``streams/app.py``.

Stage 1's input and table writes go without faust's per-message work; the consumer changes.

Input (:class:`Intake`): through a faust agent, every message costs the per-message work a
bare agent pays (a ``wait_first`` with two tasks in the fetch loop, the conductor's delivery,
the stream's queue, current event and ack), about as much as the whole of stage 1's own work
per event. For the topics of :class:`Intake`, the fetch loop below hands each message to a
plain list instead, and stage 1 takes batches from it.

What a faust stream guarantees is kept, in the same way faust does it:

- nothing is processed while faust's flow control is suspended (a rebalance), and a message
  fetched in an earlier consumer generation is dropped (it is fetched again from the
  committed offset by whoever owns its partition);
- the intake is cleared with the streams' queues (it is registered with the flow control);
- a batch's messages are tracked as unacked before it is processed and acked after, so a
  rebalance waits for the batch in flight (faust's ``wait_empty``) before revoking partitions.

Table writes (:class:`DirectTable`): faust sends each table write to its changelog through
its producer buffer, one message and one task hop at a time (a large share of a busy
worker's time went there). Stage 1 writes its client states to the table's store and sends the
batch's changelog records itself, awaiting them before its input is acked. It writes only
while processing a batch of tracked input messages, never from a timer, and the changelog
partition follows from the key (:func:`streams.live.table_partition`): what "inside stream
iteration" gave faust.

:class:`PathwatchApp` installs these on its consumer, and shortens the consumer's fetch wait
(:func:`shorten_fetch_wait`); ``pathwatch deliver`` runs on it too.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.types import TP

from streams.live import table_partition
from streams.ports import Record, TrackedStore
from streams.slices import Slicer

log = logging.getLogger("pathwatch.worker")

# bytes keys and values: faust's raw codec for writes and for table recovery
RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


@dataclass(frozen=True, slots=True)
class FaustOptions:
    """The faust settings every pathwatch app (worker, deliver) shares, from pathwatch's
    settings of the same names (docs/configuration.md)."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    data_dir: Path | None = None
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    partitions: int = 8
    replication_factor: int = 1
    commit_interval: timedelta = timedelta(seconds=2.8)
    broker_session_timeout: float = 60.0
    broker_heartbeat_interval: float = 3.0
    broker_rebalance_timeout: float = 60.0
    group_instance_id: str | None = None


def app_options(options: FaustOptions) -> dict[str, Any]:
    """faust's keyword arguments for ``options``: broker, web server (no table pages), topic
    defaults, acks from every replica, commit and group timings."""
    return {
        "broker": f"kafka://{options.kafka_bootstrap}",
        "datadir": str(options.data_dir) if options.data_dir is not None else "{conf.name}-data",  # faust's default
        "web_enabled": True,
        "web_bind": options.web_host,
        "web_port": options.web_port,
        "web_tables_enabled": False,
        "topic_partitions": options.partitions,
        "topic_replication_factor": options.replication_factor,
        "producer_acks": -1,
        "consumer_auto_offset_reset": "earliest",
        "broker_commit_interval": options.commit_interval.total_seconds(),
        "broker_session_timeout": options.broker_session_timeout,
        "broker_heartbeat_interval": options.broker_heartbeat_interval,
        "broker_rebalance_timeout": options.broker_rebalance_timeout,
        "consumer_group_instance_id": options.group_instance_id,
    }


class Intake:
    """Messages of ``topics`` waiting for stage 1, in fetch order.

    ``limit`` bounds what waits: the fetch loop stops (for every topic) until stage 1 has
    taken some, as faust's stream buffers stop a partition's fetching when full."""

    def __init__(self, topics: frozenset[str], limit: int = 10_000) -> None:
        self.topics = topics
        self.limit = limit
        self._pending: list[Any] = []
        self._arrived = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    def __len__(self) -> int:
        return len(self._pending)

    def offer(self, message: Any) -> None:
        """Add a fetched message (called by the fetch loop, never blocks)."""
        self._pending.append(message)
        self._arrived.set()
        if len(self._pending) >= self.limit:
            self._space.clear()

    def full(self) -> bool:
        return not self._space.is_set()

    async def space(self) -> None:
        """Return when the intake is below its limit."""
        await self._space.wait()

    def clear(self) -> None:
        """Drop what waits (faust's flow control calls this on a rebalance): those messages
        were neither tracked nor acked, so their partitions' owner reads them again."""
        self._pending.clear()
        self._arrived.clear()
        self._space.set()

    async def batch(self, size: int, within: float) -> list[Any]:
        """Wait for a message, then up to ``within`` seconds for ``size`` of them; return at
        most ``size`` (the oldest first)."""
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = time.monotonic() + within
        while len(self._pending) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                break
        taken, self._pending = self._pending[:size], self._pending[size:]
        if len(self._pending) < self.limit:
            self._space.set()
        return taken


class DirectTable(TrackedStore):
    """A faust table's store, with every write also queued as a changelog record.

    ``changelog`` drains the queue; the owner sends the records (:func:`send_changelog`)
    before acking the input that caused them. Only for the in-memory store, whose state is
    whatever its changelog replays."""

    def __init__(self, table: Any) -> None:
        super().__init__()
        self.table = table

    def data(self) -> MutableMapping[bytes, bytes]:
        return cast(MutableMapping[bytes, bytes], self.table.data)


async def learn_partitions(producer: Any, topics: list[str]) -> None:
    """Have faust's producer look up the partitions of ``topics`` now, one after another
    (``AIOKafkaProducer.partitions_for``)."""
    aio = producer._ensure_producer()
    for topic in topics:
        await aio.partitions_for(topic)


async def send_records(producer: Any, records: list[Record]) -> None:
    """Send ``records`` with faust's producer (without faust's per-message channel and buffer
    work) and return once the broker has them all; raises the first send error."""
    send = producer.send
    slicer = Slicer()  # a send that has room in the producer's buffer never lets the loop run
    futures = []
    for topic, key, value, partition, headers in records:
        futures.append(await send(topic, key, value, partition, None, headers))
        await slicer.pause()
    await asyncio.gather(*futures)


async def send_changelog(
    producer: Any, topic: str, records: list[tuple[bytes, bytes | None]], partition_of: Callable[[bytes], int]
) -> None:
    """Send ``records`` to the changelog ``topic`` and return once the broker has them all
    (raises the first send error: the caller's in-memory state is then ahead of its log)."""
    await send_records(producer, [(topic, key, value, partition_of(key), None) for key, value in records])


async def batches(app: Any, intake: Intake, size: int, within: float) -> AsyncIterator[list[Any]]:
    """Batches from ``intake`` that may be processed now, each tracked as unacked.

    The caller processes a batch and then calls :func:`ack` with it; a batch fetched before
    a rebalance (another consumer generation) or taken while flow is suspended is dropped."""
    consumer = app.consumer
    while not app.should_stop:
        taken = await intake.batch(size, within)
        await app.flow_control.acquire()
        generation = app.consumer_generation_id
        # no await between these checks and tracking: a rebalance starting after them waits
        # for this batch's acks (faust's wait_empty)
        fresh = [m for m in taken if m.generation_id == generation]
        if not fresh or not app.flow_control.is_active():
            continue
        for message in fresh:
            message.tracked = True
            consumer.track_message(message)
        yield fresh


def ack(app: Any, messages: list[Any]) -> None:
    """Mark a processed batch acked: faust commits past it."""
    consumer_ack = app.consumer.ack
    for message in messages:
        consumer_ack(message)


def shorten_fetch_wait(consumer: Any, wait_ms: int) -> None:
    """Make the aiokafka consumer that faust's consumer thread creates wait at most
    ``wait_ms`` for a fetch (faust-streaming 0.15 fixes ``fetch_max_wait_ms=1500``).

    aiokafka keeps one fetch in flight per broker, and leaves out of it the partitions whose
    fetched records are not yet consumed. A fetch of only quiet partitions (while the busy
    ones still had records buffered) waited the full 1.5 s, and the busy partitions were not
    fetched again until it returned: stage 1 got nothing for a second or more at a time."""
    thread = consumer._thread
    create = thread._create_worker_consumer

    def create_worker_consumer(transport: Any) -> Any:
        created = create(transport)
        created._fetch_max_wait_ms = wait_ms  # read by its fetcher, made in start()
        return created

    thread._create_worker_consumer = create_worker_consumer


# sha256 of the source of faust's Consumer._drain_messages that _drain_messages copies
# (faust-streaming 0.15.3); a unit test fails when an upgrade changes it
FAUST_DRAIN_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"


def faust_drain_source_hash() -> str:
    """sha256 of the installed faust's ``Consumer._drain_messages`` source."""
    from faust.transport.consumer import Consumer

    return hashlib.sha256(inspect.getsource(Consumer._drain_messages).encode()).hexdigest()


def install(consumer: Any, intake: Intake) -> None:
    """Make ``consumer``'s fetch loop hand messages of the intake's topics to ``intake``.

    Replaces faust's ``Consumer._drain_messages`` (faust-streaming 0.15) on this instance by
    a copy that differs only in that branch; every other message goes through faust's
    callback as before. Logs a warning when the installed faust's original differs from the
    one copied."""
    if faust_drain_source_hash() != FAUST_DRAIN_SHA256:
        log.warning(
            "faust's Consumer._drain_messages is not the one streams/faust_io.py copied: review the copy"
        )
    consumer._drain_messages = _drain_messages.__get__(consumer)
    consumer._pathwatch_intake = intake


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - run by the integration tests
    # faust.transport.consumer.Consumer._drain_messages, with the intake branch added
    intake: Intake = self._pathwatch_intake
    intake_topics = intake.topics
    offer = intake.offer
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = cast(Any, self)._stopped.is_set
    fetcher_should_stop = cast(Any, fetcher)._stopped.is_set
    get_read_offset: Callable[[Any], int | None] = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            ait = cast(AsyncIterator, getmany(timeout=1.0))
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if tp.topic in intake_topics:
                            if intake.full():
                                await self.wait_first(intake.space(), self.suspend_flow.wait())
                            offer(message)
                        else:
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        set_read_offset(tp, offset)
                unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


class _ReadPositions(dict[Any, int | None]):
    """faust's per-partition read positions, except that for our input topics it reports
    none. faust drops a fetched message below the read position and counts a jump above it
    as acknowledged; after a rebalance the position can be stale, and whole ranges were
    dropped (or committed unprocessed). Our stages keep their own next offset per partition
    and tell redeliveries from gaps (:func:`streams.live.admit`), so for these topics faust
    delivers everything it fetches."""

    def __init__(self, guarded: frozenset[str]) -> None:
        super().__init__()
        self.guarded = guarded

    def __missing__(self, tp: Any) -> None:
        return None

    def __getitem__(self, tp: Any) -> int | None:
        if tp.topic in self.guarded:
            return None
        return super().__getitem__(tp)


class PathwatchApp(faust.App):
    """faust's App with our consumer changes: no read positions for the guarded topics
    (:class:`_ReadPositions`), the intake's fetch-loop branch (:func:`install`) when there is
    an intake, and a short fetch wait (:func:`shorten_fetch_wait`)."""

    guarded_topics: frozenset[str] = frozenset()
    intake: Intake | None = None
    fetch_max_wait_ms: int = 100

    def use_intake(self, topics: frozenset[str], limit: int) -> Intake:
        """Read ``topics`` through an intake (take its batches with :func:`batches`)."""
        intake = self.intake = Intake(topics, limit=limit)
        self.flow_control.manage_queue(cast(Any, intake))  # it only calls clear()
        return intake

    def _new_consumer(self) -> Any:
        consumer = super()._new_consumer()
        cast(Any, consumer)._read_offset = _ReadPositions(self.guarded_topics)
        if self.intake is not None:
            install(consumer, self.intake)
        shorten_fetch_wait(consumer, self.fetch_max_wait_ms)
        return consumer


class KeyedTable(faust.Table):
    """A table whose changelog partition follows from the key (:func:`streams.live.table_partition`):
    a client's state goes with the client's input messages, a team's observations with the
    team's. The stages write a batch of several partitions at once, so faust's "partition of
    the current event" would not do. Computed here rather than asked of the producer, which
    needs the changelog topic's metadata and fails until it has it on a new deployment."""

    def partition_for_key(self, key: Any) -> int | None:
        return table_partition(key, self.partitions or 1)


class FaustSink:
    """The stages' :class:`streams.ports.RecordSink` over the app's producer (:func:`send_records`)."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def send(self, records: list[Record]) -> None:
        await send_records(self.app.producer, records)


class FaustSeeker:
    """The stages' :class:`streams.ports.Seeker` over the app's consumer."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def earliest(self, topic: str, partition: int) -> int | None:
        tp = TP(topic, partition)
        consumer: Any = self.app.consumer
        return cast(int | None, (await consumer.earliest_offsets(tp)).get(tp))

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        # seek_wait runs the seek in the consumer's own thread; Consumer.seek called from the
        # app's loop raced aiokafka's fetcher and crashed the worker (KeyError in fetched_records)
        consumer: Any = self.app.consumer
        await consumer.seek_wait({TP(topic, partition): offset})


def committed_offset(app: faust.App, tp: Any) -> int | None:
    """The offset faust last committed for ``tp`` (its consumer's private record of it)."""
    return cast(int | None, cast(Any, app.consumer)._committed_offset.get(tp))


def tables_recovered(app: faust.App) -> bool:
    """Whether faust has recovered the app's tables from their changelogs."""
    return bool(cast(Any, app.tables).recovery.completed.is_set())

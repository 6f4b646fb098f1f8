"""The live worker's jobs, one class or function each, over its ports (no faust here).

``streams/app.py`` builds them with :func:`build_stages` and calls them from faust's agents
and timers; tests build them with the same function over dicts, a
:class:`streams.ports.MemorySink` and a :class:`streams.ports.MemorySeeker`.

- :class:`Rewinder`: a partition to read again from an offset, or a gap to accept;
- :class:`Ingest`: HL7 v2 and FHIR messages converted, decoded and forwarded to ``clients``;
- :class:`Stage1Loop`: stage 1's batches (retries, sends, commit, changelog) with
  :func:`stage1_records` and :func:`count_stage1`, the effects of a batch;
- :class:`Stage2Loop`: stage 2's batches, and on each complete set of watermark marks the
  team gauges and the system (churn) alerts (``on_stage2_watermark``);
- :class:`Obligations`: the open follow-up obligations gauge;
- :class:`Ticker`: the ticks that sweep stage 1's partitions.

The drivers themselves (offset admission, stage 1 and stage 2 over a store) are in
``streams/live.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from alerts.model import Alert
from alerts.rules import AlertRulesConfig, SystemAlertRules
from schemas.deadletter import DeadLetter, Origin
from schemas.decode import Decoder
from schemas.model import ALL_TEAMS, encode_event
from streams.calendar import from_us, to_us
from streams.core import ClientState, CoreConfig, Observation, open_followups
from streams.delivery import DeliveredOffsets, alert_to_bytes
from streams.live import (
    FLUSH_KEY,
    ORIGIN_HEADER,
    RECORD_HEADROOM,
    TICK_KEY,
    WATERMARK_KEY,
    Message,
    OutputTooLarge,
    Positions,
    Stage1,
    Stage1Result,
    Stage2,
    StageWatermark,
    Tick,
    encode_origin,
    encode_tick,
    encode_watermark,
    processing_dead_letter,
    table_partition,
)
from streams.ports import Crash, LiveConfig, LiveMetrics, Record, RecordSink, Seeker, TopicNames, TrackedStore
from streams.runner import DayBoundary
from streams.slices import Slicer, in_slices
from streams.windows import TeamWindows

log = logging.getLogger("pathwatch.worker")

STAGE1_RETRIES = 5


class ChangelogLost(RuntimeError):
    """Stage 1's table store is ahead of its changelog (a send failed): not retried."""


class Converter(Protocol):
    """An HL7 v2 or FHIR adapter: one message to canonical event lines, or a dead letter."""

    def convert(self, raw: bytes, origin: Origin) -> list[bytes] | DeadLetter: ...


class InputMessage(Protocol):
    """A fetched Kafka message as the stages read it (faust's and aiokafka's have these)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Any: ...


class Incoming(NamedTuple):
    """An :class:`InputMessage` built from parts (faust's events, tests)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any = None


class TopicSend(Protocol):
    """faust's ``Topic.send``: queue one record, return an awaitable of its acknowledgement."""

    async def send(self, *, key: bytes, value: bytes) -> Any: ...


@dataclass(frozen=True, slots=True)
class StageStores:
    """The worker's tables: client states (with their changelog queue, sent by stage 1),
    stage-2 observations, ingestion positions; and the client states' changelog topic."""

    clients: TrackedStore
    observations: MutableMapping[bytes, bytes]
    positions: MutableMapping[bytes, bytes]
    client_changelog: str


def dead_letter_record(dead: DeadLetter, topic: str, max_record: int) -> Record:
    """The record of ``dead`` on the dead-letter ``topic`` (cut to ``max_record`` bytes)."""
    value, headers = dead.to_record(max_record)
    return (topic, None, value, None, headers)


class Rewinder:
    """Reads a partition again from an offset where a stage found that messages were not
    delivered (see :func:`streams.live.admit`), and accepts the gaps that cannot be filled."""

    def __init__(
        self,
        seeker: Seeker,
        topics: TopicNames,
        stage1: Stage1,
        stage2: Stage2,
        positions: Positions,
        metrics: LiveMetrics,
        monotonic: Callable[[], float] = time.monotonic,
        delivered: DeliveredOffsets | None = None,
    ) -> None:
        self.seeker = seeker
        self.topics = topics
        self.stage1 = stage1
        self.stage2 = stage2
        self.positions = positions
        self.delivered = delivered
        self.metrics = metrics
        self.monotonic = monotonic
        self.holes: dict[tuple[str, int], tuple[int, int, int, float]] = {}
        self.warned: dict[tuple[str, int], int] = {}

    def accept_gap(self, topic: str, partition: int, floor: int) -> None:
        if topic in (self.topics.clients, self.topics.events):
            self.stage1.admission.floors[(topic, partition)] = floor
        elif topic == self.topics.observations:
            self.stage2.positions.floors[(topic, partition)] = floor
        elif topic == self.topics.transitions and self.delivered is not None:
            self.delivered.accept(partition, floor)
        else:
            self.positions.floors[(topic, partition)] = floor

    async def rewind_all(self, rewinds: dict[tuple[str, int], int], gaps: dict[tuple[str, int], int]) -> None:
        """:meth:`rewind` each partition of a batch's ``rewinds`` (with the offset that came)."""
        for (topic, partition), offset in rewinds.items():
            await self.rewind(topic, partition, offset, gaps[(topic, partition)])

    async def rewind(self, topic: str, partition: int, offset: int, came: int | None = None) -> None:
        """Read ``topic``/``partition`` again from ``offset``: a stage found that messages from
        there on were not delivered (see :func:`streams.live.admit`).

        Two gaps are accepted (logged): offsets removed by retention before they were read,
        and a hole that reading again does not fill (the same offset comes after ``offset``
        at least 3 times over 2 seconds or more: a publisher's transaction marker or a
        compacted input topic; our own topics have neither)."""
        earliest = await self.seeker.earliest(topic, partition)
        if earliest is not None and earliest > offset:
            log.error(
                "%s/%d: offsets %d to %d were removed by retention before they were processed",
                topic,
                partition,
                offset,
                earliest - 1,
            )
            self.accept_gap(topic, partition, earliest)
            await self.seeker.seek(topic, partition, earliest)  # what came in this batch was skipped: read it again
            return
        if came is not None and await self._hole(topic, partition, offset, came):
            return
        # once per gap at warning level; the re-reads that follow (stale messages may still
        # come first) at debug level, or a transactional publisher would flood the log
        first = self.warned.get((topic, partition)) != offset
        self.warned[(topic, partition)] = offset
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "%s/%d: messages from offset %d were not delivered (%s); reading them again",
            topic,
            partition,
            offset,
            f"offset {came} came" if came is not None else "the partition waits below its end",
        )
        self.metrics.count_rewind(topic)
        await self.seeker.seek(topic, partition, offset)

    async def _hole(self, topic: str, partition: int, offset: int, came: int) -> bool:
        """Whether the gap from ``offset`` to ``came`` is a hole reading again does not fill
        (then accepted, and the partition read on from ``came``)."""
        # After a seek, messages fetched before it may still come first; a hole is the
        # lowest offset that keeps coming after ``offset``.
        now = self.monotonic()
        seen = self.holes.get((topic, partition))
        if seen is None or seen[0] != offset or came < seen[1]:
            seen = (offset, came, 0, now if seen is None or seen[0] != offset else seen[3])
        if came == seen[1]:
            seen = (offset, came, seen[2] + 1, seen[3])
        self.holes[(topic, partition)] = seen
        if seen[2] < 3 or now - seen[3] < 2.0:
            return False
        log.warning(
            "%s/%d: offsets %d to %d are not in the topic (read again %d times); going on from %d",
            topic,
            partition,
            offset,
            seen[1] - 1,
            seen[2],
            seen[1],
        )
        del self.holes[(topic, partition)]
        self.accept_gap(topic, partition, seen[1])
        await self.seeker.seek(topic, partition, seen[1])
        return True


class Ingest:
    """HL7 v2 and FHIR messages: converted, decoded and forwarded to ``clients`` (canonical
    events are read by stage 1 itself). A message whose conversion raises, or whose events
    would not fit a record, is dead-lettered whole (none of its events is forwarded)."""

    def __init__(
        self,
        decoder: Decoder,
        positions: Positions,
        sink: RecordSink,
        rewinder: Rewinder,
        metrics: LiveMetrics,
        topics: TopicNames,
        wall: Callable[[], datetime],
        max_record: int,
    ) -> None:
        self.decoder = decoder
        self.positions = positions
        self.sink = sink
        self.rewinder = rewinder
        self.metrics = metrics
        self.topics = topics
        self.wall = wall
        self.max_record = max_record

    async def batch(self, messages: Sequence[InputMessage], converter: Converter) -> None:
        records: list[Record] = []
        taken = self.positions.batch()
        now = self.wall()
        for m in messages:
            if not taken.take(m.topic, m.partition, m.offset):
                continue  # forwarded before (stage 1 would also know it by its origin), or after a gap
            origin = Origin(topic=m.topic, partition=m.partition, offset=m.offset)
            raw = m.value if isinstance(m.value, bytes) else None
            try:
                if raw is None:
                    raise ValueError("the message has no value (a tombstone)")
                out, latencies = _ingest(raw, origin, converter.convert, self.decoder, self.max_record, now, self.topics.clients)
            except Exception as exc:
                out, latencies = [processing_dead_letter(exc, raw, origin)], []
            for record in out:
                if isinstance(record, DeadLetter):
                    self.metrics.count_dead_letter(record.kind)
                    records.append(dead_letter_record(record, self.topics.dead_letters, self.max_record))
                else:
                    records.append(record)
            for event_type, seconds in latencies:
                self.metrics.observe_processing_latency(event_type, seconds)
        await self.sink.send(records)
        taken.commit()
        await self.rewinder.rewind_all(taken.rewinds, taken.gaps)


def stage1_records(result: Stage1Result, topics: TopicNames, partitions: int, max_record: int) -> list[Record]:
    """What a stage-1 batch sends before it is committed: dead letters, events forwarded to
    their pseudonym's partition, observations, alert transitions, and each partition's
    watermark mark to every stage-2 partition."""
    records: list[Record] = [dead_letter_record(dead, topics.dead_letters, max_record) for dead in result.rejected]
    for key, value, origin in result.forwards:
        records.append((topics.clients, key, value, None, [(ORIGIN_HEADER, origin)]))
    for o in result.outputs:
        if isinstance(o, DeadLetter):
            records.append(dead_letter_record(o, topics.dead_letters, max_record))
            continue
        record = record_of(o)
        if record is not None:
            topic = topics.observations if isinstance(o, Observation) else topics.transitions
            records.append((topic, record[0], record[1], None, None))
    for p, watermark_us in result.watermarks.items():
        mark = encode_watermark(StageWatermark(p, watermark_us))
        records.extend((topics.observations, WATERMARK_KEY, mark, q, None) for q in range(partitions))
    return records


def count_stage1(result: Stage1Result, metrics: LiveMetrics, topics: TopicNames, now: datetime) -> None:
    """The metric calls of a committed stage-1 batch (counted per label set, not per event:
    a batch holds up to thousands)."""
    for o in result.outputs:
        if isinstance(o, Observation) and o.correction:
            metrics.count_correction(o.measure)
        elif isinstance(o, Alert) and o.ends_at is None:
            metrics.observe_alert_latency(o.name, max(0.0, (now - o.starts_at).total_seconds()))
        elif isinstance(o, DeadLetter):
            metrics.count_dead_letter(o.kind)
    for p, watermark_us in result.watermarks.items():
        metrics.set_watermark(topics.clients, p, from_us(watermark_us))
    for event_type, count in Counter(result.late).items():
        metrics.count_late_event(event_type, count)
    for (event_type, source), count in Counter(result.accepted).items():
        metrics.count_event(event_type, source, count)
    for source, count in Counter(result.duplicates).items():
        metrics.count_duplicate(source, count)
    latencies: dict[str, list[float]] = {}
    for event_type, event_time in result.decoded:
        latencies.setdefault(event_type, []).append((now - event_time).total_seconds())
    for event_type, values in latencies.items():
        metrics.observe_processing_latencies(event_type, values)
    for dead in result.rejected:
        metrics.count_dead_letter(dead.kind)
    if result.forwards:
        metrics.count_rerouted(topics.events, len(result.forwards))


class Stage1Loop:
    """Stage 1's batches: run through the driver (in slices), their records sent and
    acknowledged, then committed to the table and its changelog, then counted.

    A failed send leaves nothing written: the batch is run again (the in-memory indexes are
    rebuilt from the table first). The batch is never dropped: after the retries the worker
    stops with the error (``crash``), and its input is read again from the committed offsets.
    A changelog send that fails stops the worker at once (:class:`ChangelogLost`)."""

    def __init__(
        self,
        driver: Stage1,
        store: TrackedStore,
        changelog_topic: str,
        sink: RecordSink,
        rewinder: Rewinder,
        metrics: LiveMetrics,
        config: LiveConfig,
        wall: Callable[[], datetime],
        max_record: int,
        crash: Crash,
    ) -> None:
        self.driver = driver
        self.store = store
        self.changelog_topic = changelog_topic
        self.sink = sink
        self.rewinder = rewinder
        self.metrics = metrics
        self.topics = config.topics
        self.partitions = config.partitions
        self.wall = wall
        self.max_record = max_record
        self.crash = crash

    def messages(self, batch: Sequence[InputMessage]) -> list[Message]:
        """The driver's messages of a fetched batch (of ``clients`` and the events topic)."""
        events = self.topics.events
        return [
            Message(m.partition, m.offset, m.key, m.value, _origin(m.headers), direct=m.topic == events)
            for m in batch
        ]

    async def run(self, batch: Sequence[InputMessage]) -> None:
        """One fetched batch, retried as the class says; returns once it is committed."""
        messages = self.messages(batch)
        for attempt in range(STAGE1_RETRIES + 1):
            try:
                await self.batch(messages)
                return
            except ChangelogLost:
                raise
            except Exception as exc:
                if attempt == STAGE1_RETRIES:
                    log.critical("stage 1 batch failed %d times; stopping the worker", attempt + 1)
                    await self.crash(exc)
                    raise
                log.exception("stage 1 batch failed (attempt %d); retrying", attempt + 1)
                self.driver.forget()
                await asyncio.sleep(min(0.5 * 2**attempt, 10.0))

    async def batch(self, messages: list[Message]) -> None:
        driver = self.driver
        # in slices, letting the event loop run in between (/metrics, heartbeats, timers): a
        # batch of thousands of events held it for seconds
        result, metas = await in_slices(messages, driver.process)
        now = self.wall()
        # sent with the producer directly: faust's topic.send costs several times more per record
        await self.sink.send(stage1_records(result, self.topics, self.partitions, self.max_record))
        driver.commit(result, metas)
        await self._send_changelog()
        count_stage1(result, self.metrics, self.topics, now)
        self.metrics.set_care_gap_alerts_open(driver.index.open_alerts(metas))
        marks = driver.flush_marks(result, metas)
        if marks:
            observations = self.topics.observations
            await self.sink.send(
                [(observations, FLUSH_KEY, mark, q, None) for mark in marks for q in range(self.partitions)]
            )
        await self.rewinder.rewind_all(result.rewinds, result.gaps)

    async def _send_changelog(self) -> None:
        n = self.partitions
        records = self.store.changelog()
        try:
            await self.sink.send([(self.changelog_topic, key, value, table_partition(key, n), None) for key, value in records])
        except Exception as exc:
            # the table's store is ahead of its changelog: only a restart (recovery from
            # the changelog, input from the committed offsets) is consistent again
            log.critical("client-state changelog send failed; stopping the worker")
            await self.crash(exc)
            raise ChangelogLost from exc


class Stage2Loop:
    """Stage 2's batches (observations, watermark and flush marks), and what follows a
    complete set of watermark marks: the team gauges, and once per local day the system
    (churn) alerts of the teams this worker holds (:meth:`on_stage2_watermark`)."""

    def __init__(
        self,
        driver: Stage2,
        config: LiveConfig,
        core: CoreConfig,
        rules_config: AlertRulesConfig,
        sink: RecordSink,
        transitions_topic: TopicSend,
        rewinder: Rewinder,
        metrics: LiveMetrics,
        wall: Callable[[], datetime],
        max_record: int,
    ) -> None:
        self.driver = driver
        self.core = core
        self.rules_config = rules_config
        self.sink = sink
        self.transitions_topic = transitions_topic
        self.rewinder = rewinder
        self.metrics = metrics
        self.wall = wall
        self.max_record = max_record
        self.dead_letters = config.topics.dead_letters
        self.tick_interval = config.tick_interval
        self.window_days = config.window_days
        self.rules: dict[str, SystemAlertRules] = {}
        self.stage2_days = DayBoundary(core.calendar, first=True)  # when the watermark enters a local day
        self.stage2_watermark: datetime | None = None
        self.gauges_at: datetime | None = None

    async def run(self, messages: Iterable[Message]) -> None:
        result = await in_slices(list(messages), self.driver.process)
        if result.rejected:
            await self.sink.send([dead_letter_record(dead, self.dead_letters, self.max_record) for dead in result.rejected])
            for dead in result.rejected:
                self.metrics.count_dead_letter(dead.kind)
        if result.watermark_us is not None:
            await self.on_stage2_watermark(result.watermark_us)
        await self.rewinder.rewind_all(result.rewinds, result.gaps)

    async def on_stage2_watermark(self, watermark_us: int) -> None:
        """Called on every complete set of marks (about once per tick): gauges follow the
        windows even when a late observation changes them at an unchanged watermark."""
        metrics = self.metrics
        watermark = from_us(watermark_us)
        moved = self.stage2_watermark != watermark
        now = self.wall()
        if not moved and self.gauges_at is not None and now - self.gauges_at < self.tick_interval:
            return
        self.gauges_at = now
        self.stage2_watermark = watermark
        held = self.driver.held()
        # the merge over the teams held: its '*' cells are this worker's share (Prometheus sums
        # them); a worker that holds no team exports zeros (replace semantics), never stale cells
        merged = TeamWindows.merged(held.values(), self.core)
        rates = merged.rates(watermark, self.window_days)
        metrics.set_measures((r.team, r.measure, r.numerator, r.denominator) for r in rates)
        waits = merged.waits(watermark, self.window_days)
        metrics.set_waits((w.team, w.count, w.p50, w.p90) for w in waits)
        # prune and evaluate the system rules on the replay's schedule (streams.runner)
        if not self.stage2_days.cross(watermark_us):
            return
        pending: list[Any] = []
        firing: dict[tuple[str, str, str], int] = {}
        slicer = Slicer()
        for team, windows in held.items():
            await slicer.pause()  # a team's charts at a time (see streams.slices)
            windows.prune(watermark)
            rules = self.rules.setdefault(team, SystemAlertRules(self.rules_config))
            for alert in rules.evaluate(windows, watermark):
                if alert.labels.get("team") == ALL_TEAMS:
                    continue  # '*' needs every team: streams.overall_alerts, and a Prometheus rule
                pending.append(await self.transitions_topic.send(key=alert.fingerprint.encode(), value=alert_to_bytes(alert)))
            for alert in rules.firing():
                labels = alert.labels
                if labels.get("team") != ALL_TEAMS:
                    key = (alert.name, labels.get("team", ""), labels.get("measure", ""))
                    firing[key] = firing.get(key, 0) + 1
        metrics.set_system_alerts_open(firing)
        await asyncio.gather(*pending)


class SinkTopic:
    """A :class:`TopicSend` over a :class:`streams.ports.RecordSink` (one topic): each send
    is acknowledged before it returns (in-memory wiring; the worker uses faust's topic)."""

    def __init__(self, sink: RecordSink, topic: str) -> None:
        self.sink = sink
        self.topic = topic

    async def send(self, *, key: bytes, value: bytes) -> Any:
        await self.sink.send([(self.topic, key, value, None, None)])
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class Obligations:
    """Open follow-up obligations of the clients this worker holds (a read-only scan of the
    client states), as of the wall clock, or of stage 2's watermark when alerts follow event
    time."""

    def __init__(
        self, store: TrackedStore, stage2: Stage2Loop, core: CoreConfig, config: LiveConfig, metrics: LiveMetrics,
        wall: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.stage2 = stage2
        self.core = core
        self.alert_clock = config.alert_clock
        self.metrics = metrics
        self.wall = wall

    async def export(self) -> None:
        now = self.wall()
        if self.alert_clock == "event":
            if self.stage2.stage2_watermark is None:
                return
            now = self.stage2.stage2_watermark
        found: list[tuple[str, int]] = []
        for key, raw in list(self.store.items()):
            if key.startswith(b"\x00"):
                continue
            found.extend(open_followups(ClientState.from_bytes(raw), now, self.core))
            await asyncio.sleep(0)
        self.metrics.set_followup_obligations_open(found)


class Ticker:
    """The tick sent to every partition of ``clients`` (by the leader, every ``tick_interval``):
    it sweeps the partition's due clients and carries its watermark on to stage 2."""

    def __init__(self, sink: RecordSink, config: LiveConfig, wall: Callable[[], datetime]) -> None:
        self.sink = sink
        self.topic = config.topics.clients
        self.partitions = config.partitions
        self.wall = wall

    def records(self) -> list[Record]:
        value = encode_tick(Tick(to_us(self.wall())))
        return [(self.topic, TICK_KEY, value, p, None) for p in range(self.partitions)]

    async def tick(self) -> None:
        await self.sink.send(self.records())


@dataclass
class LiveStages:
    """The worker's jobs, wired (see :func:`build_stages`)."""

    stage1: Stage1
    stage2: Stage2
    positions: Positions
    rewinder: Rewinder
    ingest: Ingest
    stage1_loop: Stage1Loop
    stage2_loop: Stage2Loop
    obligations: Obligations
    ticker: Ticker
    config: LiveConfig
    metrics: LiveMetrics
    delivered: DeliveredOffsets

    def expected_offset(self, topic: str, partition: int) -> int | None:
        """The next offset a stage expects on ``topic``/``partition`` (None: none yet)."""
        t = self.config.topics
        if topic in (t.clients, t.events):
            return self.stage1.expected(partition, direct=topic == t.events)
        if topic == t.observations:
            return self.stage2.positions.expected(topic, partition)
        if topic == t.transitions:
            return self.delivered.expected(partition, None)  # (the stall watch adds the committed offset)
        return self.positions.expected(topic, partition)

    def forget(self, revoked: Iterable[tuple[str, int]] = ()) -> None:
        """A rebalance: drop the in-memory indexes (rebuilt from the tables), and stop
        exporting the watermarks of the ``clients`` partitions revoked."""
        self.stage1.forget()
        self.stage2.forget()
        self.delivered.forget()
        parts = [p for topic, p in revoked if topic == self.config.topics.clients]
        if parts:
            self.metrics.revoke_partitions(self.config.topics.clients, parts)

    def assigned(self, assigned: Iterable[tuple[str, int]]) -> None:
        """Partitions assigned after a rebalance: stage 2 learns its partitions."""
        self.forget()
        self.stage2.assign(p for topic, p in assigned if topic == self.config.topics.observations)


@dataclass(frozen=True)
class StageParts:
    """What :func:`build_stages` wires, besides the stores and ports."""

    config: LiveConfig
    core: CoreConfig
    rules: AlertRulesConfig
    decoder: Decoder
    metrics: LiveMetrics
    wall: Callable[[], datetime]


def build_stages(
    parts: StageParts,
    stores: StageStores,
    sink: RecordSink,
    seeker: Seeker,
    crash: Crash,
    *,
    max_record: int,
    transitions_topic: TopicSend | None = None,
) -> LiveStages:
    """The worker's jobs over ``stores`` and the ports: what faust's agents and timers call
    (``streams/app.py``), and what the in-memory tests drive. ``max_record``: the largest
    record the producer sends (dead letters are cut to it, and an input whose derived records
    would exceed it is dead-lettered). ``transitions_topic``: how stage 2 sends system
    alerts (default: through ``sink``)."""
    config, n, t = parts.config, parts.config.partitions, parts.config.topics
    stage1 = Stage1(
        parts.core,
        stores.clients,
        n,
        alert_clock=config.alert_clock,
        wall=parts.wall,
        decoder=parts.decoder,
        direct_topic=t.events,
        positions=Positions(stores.positions, n),
        input_topic=t.clients,
        record_of=record_of,
        max_record_bytes=max_record,
    )
    positions = stage1.positions
    assert positions is not None
    stage2 = Stage2(parts.core, stores.observations, n, t.observations)
    delivered = DeliveredOffsets()
    rewinder = Rewinder(seeker, t, stage1, stage2, positions, parts.metrics, delivered=delivered)
    stage2_loop = Stage2Loop(
        stage2, config, parts.core, parts.rules, sink, transitions_topic or SinkTopic(sink, t.transitions),
        rewinder, parts.metrics, parts.wall, max_record,
    )
    return LiveStages(
        delivered=delivered,
        stage1=stage1,
        stage2=stage2,
        positions=positions,
        rewinder=rewinder,
        ingest=Ingest(parts.decoder, positions, sink, rewinder, parts.metrics, t, parts.wall, max_record),
        stage1_loop=Stage1Loop(
            stage1, stores.clients, stores.client_changelog, sink, rewinder, parts.metrics, config, parts.wall,
            max_record, crash,
        ),
        stage2_loop=stage2_loop,
        obligations=Obligations(stores.clients, stage2_loop, parts.core, config, parts.metrics, parts.wall),
        ticker=Ticker(sink, config, parts.wall),
        config=config,
        metrics=parts.metrics,
    )


def record_of(o: Any) -> tuple[bytes | None, bytes] | None:
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
        header = encode_origin(origin.topic or "", origin.partition or 0, origin.offset or 0, index)
        out.append((clients, key, value, None, [(ORIGIN_HEADER, header)]))
    return out, latencies


def _origin(headers: Any) -> bytes | None:
    if not headers:
        return None
    items = headers.items() if hasattr(headers, "items") else headers
    for name, value in items:
        if name == ORIGIN_HEADER:
            return bytes(value)
    return None

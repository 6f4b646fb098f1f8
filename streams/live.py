"""Live drivers of the pure core, independent of faust: stage 1 (per client) and stage 2 (per team).

The faust app (:mod:`streams.app`) owns the broker; these classes own what happens to one
message, over a key-value store (the faust table live, a ``dict`` in tests). They hold no
business rules: :func:`streams.core.step` / :func:`streams.core.sweep` and
:class:`streams.windows.TeamWindows` do.

Delivery guarantees (at-least-once input, exactly-once effect):

* Stage 1 processes a batch, waits until the broker has acknowledged every output of the
  batch, and only then writes client states and the partition's metadata to its table. The
  metadata holds the highest input offset applied; after a crash, messages at or below it are
  skipped, and those above it are processed again. Their outputs are upserts (observations by
  key) or alert states that delivery de-duplicates, so a replayed batch adds nothing twice.
  A crash between the client-state writes and the metadata write leaves states that already
  hold some of the batch's events: each state records the input offsets of its events
  (:func:`streams.live_state.applied`), so such an event is counted as it was then (accepted or
  duplicate) and not applied again. Corrections and orphan cancels of those events are not
  counted again (they are rare: late events, cancels).
* Stage-1 table keys are written to the changelog partition Kafka's default partitioner gives
  them (:func:`partition_for`, in the app's table class), which is the partition of the input
  message, since both are keyed by the client pseudonym. Metadata keys are chosen so that
  they hash to their own partition.
* Stage 1 has two inputs per partition: ``clients`` (HL7/FHIR events from ingestion, events
  forwarded to their pseudonym's partition, ticks) and the canonical ``events`` topic, read
  directly (``Message.direct``). The metadata keeps the highest applied offset of each, and
  a client state's event records carry :func:`streams.live_state.input_seq` of their input and
  offset, so the two offset ranges are never confused.
* Stage 2 upserts each observation under ``team + key`` in the current event's partition.

Ticks: a timer sends one tick per partition of the ``clients`` topic. A tick advances that
partition (sweeps due clients; care-gap alerts fire by the wall clock when
``alert_clock="wall"``) and carries the partition's watermark on to stage 2. A tick may also
carry ``until``: an event time every partition is advanced to (the live counterpart of the
replay's end of input, used by ``pathwatch report --from-live --until``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
from aiokafka.partitioner import murmur2

from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.decode import Decoder
from schemas.model import Event, decode_internal, encode_event
from streams.calendar import to_us
from streams.core import (
    ClientState,
    Clock,
    CoreConfig,
    Duplicate,
    Observation,
    Output,
    alert_states,
    sweep,
)
from streams.live_state import LiveClientState, applied, input_seq, live_step
from streams.runner import NEVER, PartitionRunner, watermark_us
from streams.stage1_partitions import MetaStore, PartitionIndex, PartitionMeta, decode_meta, encode_meta
from streams.windows import TeamWindows

TICK_KEY = b"\x00tick"
WATERMARK_KEY = b"\x00watermark"
FLUSH_KEY = b"\x00flush"
FLUSH_ACK_PREFIX = b"\x00flushed:"
_NEVER = NEVER
_SEP = b"\x1f"
RECORD_HEADROOM = 4096
"""Bytes kept below a record limit for a record's key, headers and Kafka's framing."""
_TEAM_LISTED_MAX = 256  # longer team names are not listed in the partition metadata (kept small)


@functools.lru_cache(maxsize=1 << 16)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives ``key``. Cached: aiokafka's
    murmur2 is pure Python (about 18 us a key), and stage 1 asks for a client's partition
    when it reads the client's event and again when it writes the client's state."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def table_partition(key: bytes, partitions: int) -> int:
    """The changelog partition of a stage table's key: internal keys (``\\x00...``) are made to
    hash to their own partition; a stage-2 key (``team \\x1f observation key``) goes with its
    team, as the observations topic is keyed by team; a client pseudonym as it is."""
    if not key.startswith(b"\x00"):
        key = key.split(_SEP, 1)[0]
    return partition_for(key, partitions)


def _self_key(prefix: bytes, partition: int, partitions: int) -> bytes:
    """``prefix`` plus a suffix chosen so that the default partitioner sends the key to
    ``partition`` itself (for metadata a table keeps per partition)."""
    i = 0
    while True:
        key = b"%s:%d:%d" % (prefix, partition, i)
        if partition_for(key, partitions) == partition:
            return key
        i += 1


def meta_key(partition: int, partitions: int) -> bytes:
    """A metadata key that the default partitioner sends to ``partition`` itself."""
    return _self_key(b"\x00meta", partition, partitions)


def position_key(topic: str, partition: int, partitions: int) -> bytes:
    """The key of the next offset to read from ``topic``/``partition`` (see :class:`Positions`)."""
    return _self_key(b"\x00next:" + topic.encode(), partition, partitions)


def flush_ack_key(flush: str, partition: int, partitions: int) -> bytes:
    """The key stage 2 records flush ``flush`` under in its partition ``partition``."""
    return _self_key(FLUSH_ACK_PREFIX + flush.encode(), partition, partitions)


APPLY, SEEN, GAP = "apply", "seen", "gap"


def admit(offset: int, expected: int | None, floor: int = 0) -> str:
    """Where a message stands against the next offset a stage expects on its partition.

    Offsets of our topics are consecutive (no transactions, no compaction). ``SEEN``: below
    ``expected``, applied before (a redelivery). ``GAP``: above it, so messages in between
    were not delivered; faust's consumer can skip a range after a rebalance (it drops offsets
    below a stale read position, and may count the range as acknowledged), and the driver must
    read the partition again from ``expected``. ``floor``: the first offset after a gap the
    driver accepted (removed by retention, or taken by a publisher's transaction marker); a
    jump up to it is applied, a jump beyond it is still a gap. ``expected`` None: nothing
    applied yet on this partition, anything goes.
    """
    if expected is None or offset == expected:
        return APPLY
    if offset < expected:
        return SEEN
    return APPLY if expected < floor and offset <= floor else GAP


class Positions:
    """The next offset to apply per input partition, kept in a table (``store``) so that a
    stage can tell a redelivery from a gap also after a restart (see :func:`admit`)."""

    def __init__(self, store: MutableMapping[bytes, bytes], partitions: int) -> None:
        self.store = store
        self.partitions = partitions
        self._keys: dict[tuple[str, int], bytes] = {}
        # per (topic, partition): the first offset after a gap the driver accepted (see admit)
        self.floors: dict[tuple[str, int], int] = {}

    def _key(self, topic: str, partition: int) -> bytes:
        key = self._keys.get((topic, partition))
        if key is None:
            key = self._keys[(topic, partition)] = position_key(topic, partition, self.partitions)
        return key

    def expected(self, topic: str, partition: int) -> int | None:
        raw = self.store.get(self._key(topic, partition))
        return None if raw is None else int(raw)

    def advance(self, topic: str, partition: int, next_offset: int) -> None:
        self.store[self._key(topic, partition)] = b"%d" % next_offset

    def batch(self) -> PositionBatch:
        """A batch's reading of its messages against these positions."""
        return PositionBatch(self)


class PositionBatch:
    """One batch of messages read against :class:`Positions`: :meth:`take` says whether to
    apply a message; a partition whose offsets jump is left at the gap for the rest of the
    batch (``rewinds``: where to read it again from; ``gaps``: the offset that came instead);
    :meth:`commit` stores the next offsets once the batch's effects are safe."""

    def __init__(self, positions: Positions) -> None:
        self.positions = positions
        self.rewinds: dict[tuple[str, int], int] = {}
        self.gaps: dict[tuple[str, int], int] = {}
        self._nexts: dict[tuple[str, int], int] = {}

    def take(self, topic: str, partition: int, offset: int) -> bool:
        key = (topic, partition)
        if key in self.rewinds:
            return False
        expected = self._nexts[key] if key in self._nexts else self.positions.expected(topic, partition)
        position = admit(offset, expected, self.positions.floors.get(key, 0))
        if position == SEEN:
            return False
        if position == GAP:
            assert expected is not None
            self.rewinds[key] = expected
            self.gaps[key] = offset
            return False
        self._nexts[key] = offset + 1
        return True

    def commit(self) -> None:
        for (topic, partition), next_offset in self._nexts.items():
            self.positions.advance(topic, partition, next_offset)


class Admission:
    """Offset admission of stage 1's inputs. A partition's metadata holds the highest offset
    applied of each input (``applied``: ``clients``; ``applied_direct``: the events topic),
    so the positions are written with the batch's metadata and need no table of their own."""

    def __init__(self) -> None:
        # per (input topic, partition): the first offset after a gap the driver accepted (see
        # admit), as in Positions.floors
        self.floors: dict[tuple[str, int], int] = {}

    @staticmethod
    def expected(meta: PartitionMeta, direct: bool = False) -> int | None:
        """The next offset to apply of ``clients`` or (``direct``) of the events topic, by
        ``meta`` (None: nothing applied yet)."""
        applied = meta.applied_direct if direct else meta.applied
        return None if applied < 0 else applied + 1

    def take(self, source: tuple[str, int], offset: int, meta: PartitionMeta, direct: bool) -> str:
        """Where ``offset`` of input ``source`` (topic, partition) stands (:func:`admit`); when
        it is to be applied (``APPLY``), ``meta`` records it as applied."""
        position = admit(offset, self.expected(meta, direct), self.floors.get(source, 0))
        if position == APPLY:
            if direct:
                meta.applied_direct = offset
            else:
                meta.applied = offset
        return position


class Tick(msgspec.Struct, frozen=True):
    """A tick for one partition: the wall clock, and optionally an event time to advance to."""

    now_us: int
    until_us: int | None = None
    flush: str | None = None


class StageWatermark(msgspec.Struct, frozen=True):
    """Stage 1 telling stage 2 how far one of its partitions has got (event time, µs)."""

    partition: int
    watermark_us: int


class FlushMark(msgspec.Struct, frozen=True):
    """Stage 1 partition ``partition`` has applied everything before flush ``flush``;
    ``meta`` is its metadata at that point (counters for the live report)."""

    flush: str
    partition: int
    meta: bytes


_tick_encoder = msgspec.msgpack.Encoder()
_tick_decoder = msgspec.msgpack.Decoder(Tick)
_wm_decoder = msgspec.msgpack.Decoder(StageWatermark)
_flush_decoder = msgspec.msgpack.Decoder(FlushMark)
_acks_decoder = msgspec.msgpack.Decoder(list[bytes])
_marks_decoder = msgspec.msgpack.Decoder(dict[int, bytes])


def encode_tick(tick: Tick) -> bytes:
    return _tick_encoder.encode(tick)


def encode_watermark(mark: StageWatermark) -> bytes:
    return _tick_encoder.encode(mark)


def encode_flush(mark: FlushMark) -> bytes:
    return _tick_encoder.encode(mark)


def decode_flush_ack(raw: bytes) -> list[PartitionMeta]:
    """The stage-1 metadata recorded with a completed flush (one per stage-1 partition)."""
    return [decode_meta(m) for m in _acks_decoder.decode(raw)]


ORIGIN_HEADER = "pathwatch-origin"


def encode_origin(topic: str, partition: int, offset: int, index: int) -> bytes:
    """Where ingestion read an event: input topic, partition, offset, and the index of the
    event within that message (an HL7 or FHIR message may carry several)."""
    return f"{topic}\x1f{partition}\x1f{offset}\x1f{index}".encode()


def decode_origin(raw: bytes) -> tuple[str, int, int]:
    """(input "topic/partition", offset, index)."""
    topic, partition, offset, index = raw.decode().split("\x1f")
    return f"{topic}/{partition}", int(offset), int(index)


@dataclass(slots=True)
class Message:
    """One input message of a stage (what the faust app hands over). ``origin`` is the
    ingestion origin header of an event (None for ticks). ``direct``: stage 1 reads it from
    the ``events`` topic itself (raw CloudEvents JSON), not from ``clients``."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a tombstone (stage 1 dead-letters it)
    origin: bytes | None = None
    direct: bool = False


RecordOf = Callable[[Output], "tuple[bytes | None, bytes] | None"]
"""The Kafka key and value an output is sent as (None: not sent); raises when it cannot be
encoded. Stage 1 calls it on each output of an event to find one that would not fit."""


def _count_corrections(before: int, state: LiveClientState | None, outs: list[Output]) -> None:
    """The client's own count of corrections, in its new state (written with it)."""
    if state is not None:
        state.corrections = before + sum(1 for o in outs if isinstance(o, Observation) and o.correction)


class OutputTooLarge(ValueError):
    """A record derived from an input would exceed the record limit."""


class _Subject(msgspec.Struct):
    subject: object = None


def processing_dead_letter(exc: BaseException, value: bytes | None, origin: Origin) -> DeadLetter:
    """The dead letter of an input whose processing raised ``exc``: the exception's class and
    message (``output_too_large`` for :class:`OutputTooLarge`), and the original bytes. The
    input's raw ``subject``, should the message quote it, is replaced by ``<subject>``."""
    kind = DeadLetterKind.OUTPUT_TOO_LARGE if isinstance(exc, OutputTooLarge) else DeadLetterKind.PROCESSING
    reason = f"{type(exc).__name__}: {exc}"
    try:
        subject = msgspec.json.decode(value or b"", type=_Subject).subject
    except (msgspec.DecodeError, msgspec.ValidationError):
        subject = None
    if isinstance(subject, str) and subject:
        reason = reason.replace(subject, "<subject>")
    return DeadLetter(kind, reason, "", origin, value or b"")


@dataclass(slots=True)
class Stage1Result:
    """Outputs of a batch, to be acknowledged by the broker before :meth:`Stage1.commit`."""

    outputs: list[Output] = field(default_factory=list)
    watermarks: dict[int, int] = field(default_factory=dict)
    pending: dict[bytes, bytes | None] = field(default_factory=dict)
    flushes: list[tuple[int, str]] = field(default_factory=list)
    late: list[str] = field(default_factory=list)
    accepted: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    # per (input topic, partition) left at a gap: where to read it again from, and the offset
    # that came instead (the shape of PositionBatch's and Stage2Result's)
    rewinds: dict[tuple[str, int], int] = field(default_factory=dict)
    gaps: dict[tuple[str, int], int] = field(default_factory=dict)
    # events read directly: rejected by the decoder (to the dead-letter topic), and those on a
    # partition that is not their pseudonym's (to ``clients``: key, internal event, origin)
    rejected: list[DeadLetter] = field(default_factory=list)
    forwards: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)
    # events read directly and decoded: (type, event time) for the processing-latency metric
    decoded: list[tuple[str, datetime]] = field(default_factory=list)
    direct_partitions: set[int] = field(default_factory=set)  # of the events topic, in this batch


class Stage1:
    """Stage 1 over ``store`` (client pseudonym -> ClientState bytes, plus metadata keys): the
    batch loop (:meth:`process`, then :meth:`commit`) over its parts: offset admission
    (``admission``), the per-partition index (``index``) and the partition metadata
    (``metadata``), see :mod:`streams.stage1_partitions`."""

    def __init__(
        self,
        config: CoreConfig,
        store: MutableMapping[bytes, bytes],
        partitions: int,
        *,
        alert_clock: str = "wall",
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        decoder: Decoder | None = None,
        direct_topic: str = "events",
        positions: Positions | None = None,
        input_topic: str = "clients",
        record_of: RecordOf | None = None,
        max_record_bytes: int | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.partitions = partitions
        # for messages read from ``direct_topic`` (see :meth:`process`); ``positions``, when
        # given, is told the next offset of each of its partitions at commit (what
        # ``pathwatch report --from-live`` waits on)
        self.decoder = decoder
        self.direct_topic = direct_topic
        self.positions = positions
        # an input whose processing raises becomes a dead letter (see :meth:`process`); with
        # ``max_record_bytes``, so does one whose derived records (``record_of``, the client
        # state) would not fit
        self.input_topic = input_topic
        self.record_of = record_of
        self.max_record_bytes = max_record_bytes
        self.alert_clock = alert_clock
        self.wall = wall
        self._lateness = config.lateness_us
        self.admission = Admission()
        self.index = PartitionIndex(store, lambda key: partition_for(key, partitions), self._lateness)
        self.metadata = MetaStore(store, [meta_key(p, partitions) for p in range(partitions)])

    def topic_of(self, message: Message) -> str:
        """The input topic ``message`` was read from (``clients``, or the events topic)."""
        return self.direct_topic if message.direct else self.input_topic

    def forget(self) -> None:
        """Drop what is kept in memory (call on rebalance: it is rebuilt from the store)."""
        self.index.forget()
        self.metadata.forget()

    def expected(self, partition: int, direct: bool = False) -> int | None:
        """The next offset of ``partition`` to apply, of ``clients`` or (``direct``) of the
        events topic (None: nothing applied yet)."""
        return self.admission.expected(self.metadata.read(partition), direct)

    def watermark_us(self, partition: int) -> int | None:
        """The partition's watermark as last committed (None: nothing seen yet)."""
        return watermark_us(self.metadata.read(partition), self._lateness)

    def _clock(self, watermark_us: int) -> Clock:
        """The clocks at a partition's watermark: the alert clock is the wall clock, never
        behind the watermark, when ``alert_clock="wall"``, else the watermark."""
        alert = max(to_us(self.wall()), watermark_us) if self.alert_clock == "wall" else watermark_us
        return Clock.of_us(watermark_us, alert)

    def _load(self, client: str, result: Stage1Result) -> LiveClientState | None:
        key = client.encode()
        raw = result.pending[key] if key in result.pending else self.store.get(key)
        return None if raw is None else LiveClientState.from_bytes(raw)

    def _keep(
        self, partition: int, client: str, state: LiveClientState | None, result: Stage1Result, raw: bytes | None = None
    ) -> None:
        result.pending[client.encode()] = None if state is None else raw if raw is not None else state.to_bytes()
        self.index.runner(partition).schedule(client, state)

    def _sweep(self, partition: int, meta: PartitionMeta, clock: Clock, result: Stage1Result) -> None:
        # the watermark decides observations and pruning, the alert clock (the wall clock,
        # ahead of a backfill's watermark by days) only care-gap alerts: each has its own due
        due_clients = self.index.runner(partition).take_due(
            clock.watermark_us, clock.alert_us, lambda client: self._load(client, result)
        )
        for client, state in due_clients.items():
            assert isinstance(state, LiveClientState)  # loaded by _load
            before = state.corrections
            try:
                swept, outs = sweep(state, clock, self.config)
                assert swept is None or isinstance(swept, LiveClientState)  # the state it was given
                _count_corrections(before, swept, outs)
                raw = self._check(swept, outs)
            except Exception as exc:
                # a fault of the core on this client's state: its state stays as it was (out
                # of the heap until its next event) and the partition goes on; there is no
                # input to dead-letter, so the dead letter names the partition only
                result.rejected.append(processing_dead_letter(exc, b"", Origin(topic=self.input_topic, partition=partition)))
                continue
            self.index.settle(partition, meta, before, swept, outs)
            self._keep(partition, client, swept, result, raw)
            self.index.count(partition, meta, outs)
            result.outputs.extend(outs)

    def _fits(self, event: bytes) -> None:
        """Raise :class:`OutputTooLarge` for an event so large that a record derived from it
        could exceed the record limit: such a record can carry one of the event's fields twice
        (an observation has its team as key and in its value), and a later sweep that derives
        it has no input left to dead-letter."""
        limit = None if self.max_record_bytes is None else self.max_record_bytes - RECORD_HEADROOM
        if limit is not None and 2 * len(event) > limit:
            raise OutputTooLarge(f"an event of {len(event)} bytes: records derived from it could exceed the limit of {limit}")

    def _check(self, state: ClientState | None, outs: list[Output]) -> bytes | None:
        """Raise :class:`OutputTooLarge` when the client state or a record derived from
        ``outs`` would not fit the record limit (or the encoder's error); returns the state's
        bytes (None for no state)."""
        raw = None if state is None else state.to_bytes()
        limit = None if self.max_record_bytes is None else self.max_record_bytes - RECORD_HEADROOM
        if limit is not None and raw is not None and len(raw) > limit:
            raise OutputTooLarge(f"the client state would be {len(raw)} bytes (limit {limit})")
        if self.record_of is not None:
            for o in outs:
                record = self.record_of(o)
                if record is None or limit is None:
                    continue
                size = len(record[0] or b"") + len(record[1])
                if size > limit:
                    raise OutputTooLarge(f"a derived {type(o).__name__} record would be {size} bytes (limit {limit})")
        return raw

    def process(
        self, messages: Iterable[Message], into: tuple[Stage1Result, dict[int, PartitionMeta]] | None = None
    ) -> tuple[Stage1Result, dict[int, PartitionMeta]]:
        """Run a batch through the core. Nothing is written to the store yet: send the outputs
        (and ``result.rejected`` and ``result.forwards``), wait for the broker, then call
        :meth:`commit` with the returned metadata. A partition whose offsets jump (see
        :func:`admit`) is left at the gap: ``result.rewinds`` says, per (input topic,
        partition), where the driver must read it again from.

        Messages read from the events topic directly (``direct``) are decoded here. Canonical
        events are keyed by pseudonym, so each lands on the partition of its client's state
        and is applied at once; one on another partition (a publisher that keyed it otherwise)
        goes to ``result.forwards`` and comes back through ``clients``, like HL7 and FHIR.

        ``into``: the result and metadata of earlier slices of the same batch, continued (a
        driver runs a large batch in slices and lets its event loop run in between).

        A message whose processing raises (a fault of the decoder, the core or an encoder on
        that record, or a derived record over ``max_record_bytes``) is not applied: it goes to
        ``result.rejected`` as a dead letter, and the batch goes on."""
        result, metas = into if into is not None else (Stage1Result(), {})
        for message in messages:
            p = message.partition
            if (self.topic_of(message), p) in result.rewinds:
                continue  # the partition is read again from the gap on
            meta = metas.get(p)
            if meta is None:
                meta = metas[p] = self.metadata.read(p)
            if message.direct:
                result.direct_partitions.add(p)
            if not self._admit(message, meta, result):
                continue  # applied before a restart, or after a gap
            try:
                self._one(p, meta, message, result)
            except Exception as exc:
                # Failure isolation per record: the input is dead-lettered with the reason and
                # the stage goes on (a fault that is not the record's, the broker's or the
                # store's, raises from the driver's sends and commit instead, and is retried).
                topic = self.topic_of(message)
                origin = Origin(topic=topic, partition=p, offset=message.offset)
                result.rejected.append(processing_dead_letter(exc, message.value, origin))
        return result, metas

    def _one(self, p: int, meta: PartitionMeta, message: Message, result: Stage1Result) -> None:
        """One admitted message. Raises only before it changed anything (``meta`` and
        ``result`` are changed once the message's event went through the core and its
        records were found to fit)."""
        if message.value is None:
            topic = self.topic_of(message)
            origin = Origin(topic=topic, partition=p, offset=message.offset)
            result.rejected.append(
                DeadLetter(DeadLetterKind.NULL_VALUE, "the message has no value (a tombstone)", "", origin, b"")
            )
            return
        if message.direct:
            self._direct(p, meta, message, message.value, result)
            return
        if message.key != TICK_KEY:
            self._fits(message.value)
        if message.key == TICK_KEY:
            tick = _tick_decoder.decode(message.value)
            if tick.until_us is not None:
                PartitionRunner.advance_to(meta, tick.until_us)
            if tick.flush is not None:
                result.flushes.append((p, tick.flush))
            watermark = watermark_us(meta, self._lateness)
            if watermark is None:
                return  # nothing seen yet on this partition: no clock to advance
            clock = self._clock(watermark)
            self._sweep(p, meta, clock, result)
            result.watermarks[p] = clock.watermark_us
            return
        event = decode_internal(message.value)
        if message.origin is not None:
            # Ingestion is at-least-once: after a crash it forwards again what it had
            # forwarded. Per input partition, origins reach us in order, so one already
            # seen is a redelivery (not a publisher's duplicate) and changes nothing.
            source, offset, index = decode_origin(message.origin)
            seen = meta.inputs.get(source)
            if seen is not None and (offset, index) <= tuple(seen):
                return
            self._apply(p, meta, event, input_seq(message.offset, 0), result)
            meta.inputs[source] = (offset, index)
            return
        self._apply(p, meta, event, input_seq(message.offset, 0), result)

    def _admit(self, message: Message, meta: PartitionMeta, result: Stage1Result) -> bool:
        """Whether to apply ``message``, against the next offset of its input (``clients``, or
        the events topic when ``direct``; see :class:`Admission`), recording it as applied.
        After a gap the input's partition is left to be read again (``rewinds``)."""
        source = (self.topic_of(message), message.partition)
        position = self.admission.take(source, message.offset, meta, message.direct)
        if position == GAP:
            expected = self.admission.expected(meta, message.direct)
            assert expected is not None  # admit() applies anything when nothing was applied
            result.rewinds[source] = expected
            result.gaps[source] = message.offset
        return position == APPLY

    def _direct(self, p: int, meta: PartitionMeta, message: Message, value: bytes, result: Stage1Result) -> None:
        """A message of the events topic, read directly and admitted (see :meth:`process`)."""
        if self.decoder is None:
            raise ValueError("stage 1 got a message of the events topic but has no decoder")
        decoded = self.decoder.decode(value, Origin(topic=self.direct_topic, partition=p, offset=message.offset))
        if isinstance(decoded, DeadLetter):
            result.rejected.append(decoded)
            return
        self._fits(value)
        key = decoded.client.encode()
        if partition_for(key, self.partitions) != p:
            origin = encode_origin(self.direct_topic, p, message.offset, 0)
            internal = encode_event(decoded)
            self._fits(internal)
            result.forwards.append((key, internal, origin))
        else:
            self._apply(p, meta, decoded, input_seq(message.offset, 1), result)
        result.decoded.append((decoded.type, decoded.time))  # for the latency metric, once taken

    def _apply(self, p: int, meta: PartitionMeta, event: Event, seq: int, result: Stage1Result) -> None:
        """One validated event of a client of partition ``p`` through the core. Raises (having
        changed nothing) when the core raises or a record derived from the event would not
        fit (:class:`OutputTooLarge`)."""
        t = to_us(event.time)
        runner = self.index.runner(p)
        clock = self._clock(runner.watermark_after(meta, t))
        state = self._load(event.client, result)
        before = applied(state, seq)
        outs: list[Output] = []
        raw: bytes | None = None
        count = 0
        if before is None:
            count = 0 if state is None else state.corrections
            state, outs = live_step(state, event, clock, self.config, seq)
            _count_corrections(count, state, outs)
            raw = self._check(state, outs)
        # from here on nothing raises: the event is taken
        arrival = runner.arrive(meta, t)
        if arrival.late:
            result.late.append(event.type)
        team = getattr(event.data, "team", None)
        if team and len(team) <= _TEAM_LISTED_MAX and team not in meta.teams:
            meta.teams.append(team)
        if before is not None:
            # A crash between this batch's client-state writes and its metadata write:
            # the state already holds the event (its outputs were sent before the
            # writes). Count it as it was counted then, and change nothing; the alerts
            # it may have fired or resolved are taken from the state.
            duplicate = not before
            self.index.count(p, meta, list(alert_states(state)))
        else:
            self.index.settle(p, meta, count, state, outs)
            self._keep(p, event.client, state, result, raw)
            duplicate = bool(outs) and isinstance(outs[0], Duplicate)
            self.index.count(p, meta, outs)
            result.outputs.extend(outs)
        if duplicate:
            meta.duplicates += 1
            result.duplicates.append(event.source)
        else:
            meta.accepted += 1
            result.accepted.append((event.type, event.source))
        if arrival.advanced:
            self._sweep(p, meta, clock, result)

    def flush_marks(self, result: Stage1Result, metas: dict[int, PartitionMeta]) -> list[bytes]:
        """Flush marks to send to every stage-2 partition once the batch is committed (the
        metadata they carry counts all of the partition's corrections, see
        :meth:`PartitionIndex.corrections`)."""
        marks = []
        for p, flush in result.flushes:
            meta = msgspec.structs.replace(metas[p], corrections=self.index.corrections(p, metas[p]))
            marks.append(encode_flush(FlushMark(flush, p, encode_meta(meta))))
        return marks

    def commit(self, result: Stage1Result, metas: dict[int, PartitionMeta]) -> None:
        """Write the batch's client states, then each partition's metadata (in that order;
        a partition that read only ticks writes none, see :class:`MetaStore`), then tell
        ``positions`` the next offsets of the events topic read directly."""
        for key, raw in result.pending.items():
            if raw is None:
                self.store.pop(key, None)
            else:
                self.store[key] = raw
        self.metadata.write(metas.items())
        if self.positions is not None:
            for p in result.direct_partitions:
                if metas[p].applied_direct >= 0:
                    self.positions.advance(self.direct_topic, p, metas[p].applied_direct + 1)


class Stage2:
    """Stage 2 over ``store`` (team + key -> Observation bytes); TeamWindows per team in memory."""

    def __init__(
        self, config: CoreConfig, store: MutableMapping[bytes, bytes], source_partitions: int, topic: str = "observations"
    ) -> None:
        self.config = config
        self.store = store
        self.source_partitions = source_partitions
        self.topic = topic
        self.positions = Positions(store, source_partitions)
        self._windows: dict[str, TeamWindows] = {}
        self._loaded = False
        self._marks: dict[int, dict[int, int]] = {}
        self._assigned: set[int] = set()
        self._low = _NEVER

    def forget(self) -> None:
        """Drop in-memory windows (call on rebalance: they are rebuilt from the store)."""
        self._windows.clear()
        self._loaded = False
        self._marks.clear()
        self._low = _NEVER

    def assign(self, partitions: Iterable[int]) -> None:
        """The stage-2 partitions this worker holds now: its watermark waits for all of them,
        and only their teams are loaded from the store."""
        self._assigned = set(partitions)
        self._windows.clear()
        self._loaded = False
        for stale in set(self._marks) - self._assigned:
            del self._marks[stale]

    def _load(self) -> None:
        # faust's memory store keeps what it held before a rebalance: load only the teams of
        # the stage-2 partitions assigned now, or a worker would export another's cells
        for key, raw in self.store.items():
            if key.startswith(b"\x00"):
                continue
            team_key = key.split(_SEP, 1)[0]
            if self._assigned and partition_for(team_key, self.source_partitions) not in self._assigned:
                continue
            team = team_key.decode()
            windows = self._windows.get(team)
            if windows is None:
                windows = self._windows[team] = TeamWindows(self.config)
            windows.apply(Observation.from_bytes(raw))
        self._loaded = True

    def windows(self, team: str) -> TeamWindows:
        """The windows of ``team`` (rebuilt from the store after a rebalance)."""
        if not self._loaded:
            self._load()
        w = self._windows.get(team)
        if w is None:
            w = self._windows[team] = TeamWindows(self.config)
        return w

    def held(self) -> dict[str, TeamWindows]:
        """Every team this worker holds, with its windows."""
        if not self._loaded:
            self._load()
        return dict(self._windows)

    def assigned(self) -> list[int]:
        """The stage-2 partitions this worker holds now, sorted."""
        return sorted(self._assigned)

    def holds(self, team: str) -> bool:
        """Whether the stage-2 partition ``team`` hashes to is assigned to this worker now
        (``*``: the worker that draws the all-teams series, ``streams.live_overall``)."""
        return partition_for(team.encode(), self.source_partitions) in self._assigned

    def apply(self, value: bytes) -> None:
        """Upsert (or retract) one observation for its team."""
        obs = Observation.from_bytes(value)
        key = obs.team.encode() + _SEP + obs.key.encode()
        w = self.windows(obs.team)
        if obs.retracted:
            self.store.pop(key, None)
        else:
            self.store[key] = value
        w.apply(obs)

    def mark(self, partition: int, value: bytes) -> int | None:
        """Record a stage-1 partition's watermark arriving on stage-2 ``partition``.

        A mark on stage-2 partition q comes after every observation stage 1 sent to q before
        it, so q is complete up to the lowest mark it has from every stage-1 partition. The
        worker's stage-2 watermark is the lowest over the stage-2 partitions it holds (it
        never moves back). Returns it, or None until every stage-1 partition has reported on
        every stage-2 partition held.
        """
        mark = _wm_decoder.decode(value)
        marks = self._marks.setdefault(partition, {})
        marks[mark.partition] = max(marks.get(mark.partition, _NEVER), mark.watermark_us)
        if not self._assigned <= self._marks.keys():
            return None
        if any(len(m) < self.source_partitions for m in self._marks.values()):
            return None
        self._low = max(self._low, min(min(m.values()) for m in self._marks.values()))
        return self._low

    def flush(self, partition: int, value: bytes) -> None:
        """Collect a flush mark arriving on stage-2 ``partition``; once every stage-1 partition
        has sent it there, record the flush (with their metadata) in that partition."""
        mark = _flush_decoder.decode(value)
        # the marks collected so far are kept in the store too: a rebalance in between must
        # not lose those already read (they are not delivered again)
        collecting = _self_key(b"\x00flushing:" + mark.flush.encode(), partition, self.source_partitions)
        raw = self.store.get(collecting)
        marks = {} if raw is None else _marks_decoder.decode(raw)
        marks[mark.partition] = mark.meta
        if len(marks) == self.source_partitions:
            self.store.pop(collecting, None)
            ordered = [marks[p] for p in sorted(marks)]
            self.store[flush_ack_key(mark.flush, partition, self.source_partitions)] = _tick_encoder.encode(ordered)
        else:
            self.store[collecting] = _tick_encoder.encode(marks)

    def process(self, messages: Iterable[Message], into: Stage2Result | None = None) -> Stage2Result:
        """Apply a batch of messages of the observations topic: observations, watermark marks
        and flush marks. Each partition's next offset is kept in the store; a partition whose
        offsets jump is left at the gap (``rewinds``, see :func:`admit`). ``into``: the result
        of earlier slices of the same batch, continued (a partition left at a gap stays so)."""
        result = into if into is not None else Stage2Result()
        batch = self.positions.batch()
        batch.rewinds.update(result.rewinds)
        for message in messages:
            q = message.partition
            if not batch.take(self.topic, q, message.offset):
                continue
            try:
                if message.value is None:
                    raise ValueError("the message has no value (a tombstone)")
                if message.key == WATERMARK_KEY:
                    watermark_us = self.mark(q, message.value)
                    if watermark_us is not None:
                        result.watermark_us = watermark_us
                elif message.key == FLUSH_KEY:
                    self.flush(q, message.value)
                else:
                    self.apply(message.value)
            except Exception as exc:
                # failure isolation per record, as in stage 1 (each of these decodes first,
                # then changes the store; a fault in between leaves that one record applied)
                origin = Origin(topic=self.topic, partition=q, offset=message.offset)
                result.rejected.append(processing_dead_letter(exc, message.value, origin))
        batch.commit()
        result.rewinds.update(batch.rewinds)
        result.gaps.update(batch.gaps)
        return result


@dataclass(slots=True)
class Stage2Result:
    """What a stage-2 batch leaves the driver to do: the stage-2 watermark when a complete set
    of marks arrived (None otherwise), and partitions to read again from an offset."""

    watermark_us: int | None = None
    # per (topic, partition) left at a gap: where to read it again from, the offset that came
    rewinds: dict[tuple[str, int], int] = field(default_factory=dict)
    gaps: dict[tuple[str, int], int] = field(default_factory=dict)
    rejected: list[DeadLetter] = field(default_factory=list)  # records whose processing raised

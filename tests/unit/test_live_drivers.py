"""The live drivers (stage 1 per client, stage 2 per team) over plain dicts, without Kafka.

They must give the replay engine's numbers for the same events, skip what was already
applied before a crash, fire care-gap alerts by the wall clock when asked to, and complete a
flush only when every stage-1 partition has answered.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts.model import Alert
from alerts.pipeline import ReceiversConfig, build_dispatcher
from alerts.receivers import rfc3339
from pathwatch import parts
from pathwatch.config import load_settings
from pathwatch.parts import core_config
from pathwatch.simulate import SimulationOptions, write
from schemas.catalogue import CARE_GAP_ALERTS
from schemas.deadletter import Origin
from schemas.decode import Decoder
from schemas.model import Event, encode_event
from streams.calendar import from_us, to_us
from streams.core import CoreConfig, Observation
from streams.delivery import Delivery, StaticDispatcher, alert_from_bytes
from streams.engine import Engine
from streams.live import (
    APPLY,
    GAP,
    ORIGIN_HEADER,
    SEEN,
    TICK_KEY,
    WATERMARK_KEY,
    FlushMark,
    Message,
    PartitionMeta,
    Stage1,
    Stage2,
    StageWatermark,
    Tick,
    decode_flush_ack,
    encode_flush,
    encode_tick,
    encode_watermark,
    flush_ack_key,
    meta_key,
    partition_for,
    position_key,
    table_partition,
)
from streams.live import (
    admit as admit_offset,
)
from streams.ports import LiveConfig, MemorySeeker, MemorySink, TopicNames, TrackedStore
from streams.stages import Incoming, StageParts, StageStores, build_stages, stage1_records
from streams.windows import TeamWindows

PARTITIONS = 4
KEY = b"unit-test-key"


@pytest.fixture(scope="module")
def simulated() -> list[bytes]:
    """The raw lines of one simulated stream (every test here uses the same)."""
    out = io.BytesIO()
    write(SimulationOptions(clients=300, days=90, seed=11, duplicate_fraction=0.02, cancel_fraction=0.01), out)
    return out.getvalue().splitlines()


@pytest.fixture(scope="module")
def events(simulated: list[bytes]) -> list[Event]:
    decoder = Decoder(KEY, 1 << 20)
    decoded = [decoder.decode(line, Origin(line=i)) for i, line in enumerate(simulated, 1)]
    return [e for e in decoded if isinstance(e, Event)]


@pytest.fixture(scope="module")
def config() -> CoreConfig:
    return core_config(load_settings())


TOPICS = TopicNames(
    events="events", hl7="hl7", fhir="fhir", clients="clients", observations="observations",
    transitions="alert-transitions", dead_letters="dead-letters",
)
MAX_RECORD = 1 << 20


class CallLog:
    """Metrics that record the calls made (name, arguments), in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> None:
            self.calls.append((name, tuple(list(a) if hasattr(a, "__next__") else a for a in args)))

        return call

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for called, args in self.calls if called == name]


def stage_parts(config: CoreConfig, alert_clock: str = "event", wall: Any = None) -> StageParts:
    """The parts of the live stages, in memory (what pathwatch/bootstrap.py builds from settings)."""
    return StageParts(
        config=LiveConfig(partitions=PARTITIONS, topics=TOPICS, alert_clock=alert_clock),  # type: ignore[arg-type]
        core=config,
        rules=parts.rules_config(load_settings()),
        decoder=Decoder(KEY, 1 << 20),
        metrics=CallLog(),  # type: ignore[arg-type]
        wall=wall if wall is not None else (lambda: datetime.now(UTC)),
    )


class Crashes:
    """What the stages ask faust's ``app.crash`` to do, kept."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    async def __call__(self, exc: BaseException) -> None:
        self.errors.append(exc)


class Pipeline:
    """Stage 1 and stage 2 built by the live wiring (:func:`streams.stages.build_stages`) over
    in-memory stores. A batch runs through stage 1's driver; what the wiring sends for it
    (:func:`streams.stages.stage1_records`) goes on to stage 2's driver, with offsets, and
    the alert transitions are kept. The batch is committed unless a test cuts it short."""

    def __init__(self, config: CoreConfig, alert_clock: str = "event", wall: Any = None, store1: Any = None) -> None:
        self.sink = MemorySink()
        self.crashes = Crashes()
        stores = StageStores(store1 if store1 is not None else TrackedStore(), {}, {}, "client-state-changelog")
        self.stages = build_stages(
            stage_parts(config, alert_clock, wall), stores, self.sink, MemorySeeker(), self.crashes,
            max_record=MAX_RECORD,
        )
        self.store1: Any = stores.clients
        self.store2 = stores.observations
        self.stage1 = self.stages.stage1
        self.stage2 = self.stages.stage2
        self.offsets = [0] * PARTITIONS
        self.offsets2 = [0] * PARTITIONS
        self.alerts: dict[tuple[str, datetime], Alert] = {}

    def message(self, partition: int, key: bytes, value: bytes) -> Message:
        message = Message(partition, self.offsets[partition], key, value)
        self.offsets[partition] += 1
        return message

    def run(self, messages: list[Message], commit: bool = True) -> list[Any]:
        result, metas = self.stage1.process(messages)
        self.open = self.stage1.index.open_alerts(metas)
        self.late = result.late
        records = stage1_records(result, TOPICS, PARTITIONS, MAX_RECORD)
        to_stage2 = []
        for topic, key, value, partition, _ in records:
            assert value is not None
            if topic == TOPICS.observations:
                q = partition if partition is not None else partition_for(key or b"", PARTITIONS)
                to_stage2.append(Message(q, self.offsets2[q], key, value))
                self.offsets2[q] += 1
            elif topic == TOPICS.transitions:
                alert = alert_from_bytes(value)
                self.alerts[(alert.fingerprint, alert.starts_at)] = alert
        assert self.stage2.process(to_stage2).rewinds == {}
        if commit:
            self.stage1.commit(result, metas)
            self.committed(result, records)
        return result.outputs

    def committed(self, result: Any, records: list[Any]) -> None:
        """What else the app sends once a batch is committed (here: nothing)."""

    def feed(self, events: list[Event], batch: int = 50) -> None:
        messages = []
        for e in events:
            key = e.client.encode()
            messages.append(self.message(partition_for(key, PARTITIONS), key, encode_event(e)))
        for i in range(0, len(messages), batch):
            self.run(messages[i : i + batch])

    def flush(self, until: datetime) -> None:
        # like Engine.finish: the end of input is evaluated just past the largest event time
        tick = encode_tick(Tick(to_us(until), to_us(until) + 1, "f1"))
        self.run([self.message(p, b"\x00tick", tick) for p in range(PARTITIONS)])

    def measures(self, now: datetime) -> list[tuple[str, str, int, int]]:
        from streams.windows import TeamWindows

        merged = TeamWindows.merged(self.stage2.held().values(), self.stage1.config)
        return [(r.measure, r.team, r.numerator, r.denominator) for r in merged.rates(now, None)]


def _engine_report(events: list[Event], config: CoreConfig) -> tuple[Engine, list[tuple[str, str, int, int]]]:
    engine = Engine(config)
    for e in events:
        engine.feed(e)
    engine.finish()
    assert engine.watermark is not None
    rows = [(r.measure, r.team, r.numerator, r.denominator) for r in engine.windows.rates(engine.watermark, None)]
    return engine, rows


def test_meta_keys_hash_to_their_own_partition() -> None:
    for p in range(PARTITIONS):
        assert partition_for(meta_key(p, PARTITIONS), PARTITIONS) == p


def test_live_stages_give_the_replay_numbers(events: list[Event], config: CoreConfig) -> None:
    engine, expected = _engine_report(events, config)
    pipeline = Pipeline(config)
    pipeline.feed(events)
    end = max(e.time for e in events)
    pipeline.flush(end)
    assert engine.watermark is not None
    assert sorted(pipeline.measures(engine.watermark)) == sorted(expected)
    assert any(den > 0 for _, _, _, den in expected)
    live_alerts = sorted((a.fingerprint, a.starts_at, a.ends_at) for a in pipeline.alerts.values())
    replay_alerts = sorted((a.fingerprint, a.starts_at, a.ends_at) for a in engine.alerts())
    assert live_alerts == replay_alerts
    metas = [pipeline.stage1.metadata.read(p) for p in range(PARTITIONS)]
    assert sum(m.accepted for m in metas) == engine.counters.accepted
    assert sum(m.duplicates for m in metas) == engine.counters.duplicates


def test_a_batch_already_applied_is_skipped_after_a_restart(events: list[Event], config: CoreConfig) -> None:
    pipeline = Pipeline(config)
    first = events[:200]
    messages = []
    for e in first:
        key = e.client.encode()
        messages.append(pipeline.message(partition_for(key, PARTITIONS), key, encode_event(e)))
    pipeline.run(messages)
    accepted = sum(pipeline.stage1.metadata.read(p).accepted for p in range(PARTITIONS))
    duplicates = sum(pipeline.stage1.metadata.read(p).duplicates for p in range(PARTITIONS))
    assert accepted > 0
    pipeline.stage1.forget()  # a restart: in-memory indexes gone, the store (changelog) kept
    again = pipeline.run(messages)
    assert again == []
    assert sum(pipeline.stage1.metadata.read(p).accepted for p in range(PARTITIONS)) == accepted
    assert sum(pipeline.stage1.metadata.read(p).duplicates for p in range(PARTITIONS)) == duplicates


def test_an_uncommitted_batch_is_processed_again_without_double_counting(
    events: list[Event], config: CoreConfig
) -> None:
    reference = Pipeline(config)
    reference.feed(events[:300], batch=300)
    crashed = Pipeline(config)
    messages = []
    for e in events[:300]:
        key = e.client.encode()
        messages.append(crashed.message(partition_for(key, PARTITIONS), key, encode_event(e)))
    crashed.run(messages, commit=False)  # outputs sent, then the worker died before its table write
    crashed.stage1.forget()
    crashed.run(messages)
    for p in range(PARTITIONS):
        assert crashed.stage1.metadata.read(p).accepted == reference.stage1.metadata.read(p).accepted
        assert crashed.stage1.metadata.read(p).duplicates == reference.stage1.metadata.read(p).duplicates
    assert _cells(crashed.store2) == _cells(reference.store2)  # (the re-sent outputs took more offsets)


def test_a_commit_cut_short_counts_nothing_twice(events: list[Event], config: CoreConfig) -> None:
    # a worker killed between a batch's client-state writes and its metadata write: some
    # states hold the batch's events, the metadata does not; the batch is read again
    reference = Pipeline(config)
    reference.feed(events[:600], batch=600)
    crashed = Pipeline(config)
    messages = _messages(events[:600], crashed)
    _commit_half(crashed, messages)
    crashed.run(messages)
    for p in range(PARTITIONS):
        assert crashed.stage1.metadata.read(p).accepted == reference.stage1.metadata.read(p).accepted
        assert crashed.stage1.metadata.read(p).duplicates == reference.stage1.metadata.read(p).duplicates
        assert crashed.stage1.metadata.read(p).applied == reference.stage1.metadata.read(p).applied
    assert crashed.store1 == reference.store1
    metas = {p: crashed.stage1.metadata.read(p) for p in range(PARTITIONS)}
    crashed.stage1.forget()  # the firing alerts are read again from the client states
    assert crashed.stage1.index.open_alerts(metas) == reference.open
    assert sum(reference.open.values()) > 0  # some care-gap alerts are firing
    assert sum(reference.stage1.metadata.read(p).duplicates for p in range(PARTITIONS)) > 0  # the case is exercised


def test_a_commit_cut_short_loses_no_correction(events: list[Event], config: CoreConfig) -> None:
    # the corrections of the events whose states were written before the kill are counted
    # in those states: the batch read again after it counts the same as a batch never cut
    history, late = events[:1500], events[1500:2600]
    reference = Pipeline(config)
    reference.feed(history, batch=100)
    reference.feed(late, batch=1100)
    crashed = Pipeline(config)
    crashed.feed(history, batch=100)
    messages = _messages(late, crashed)
    _commit_half(crashed, messages)
    crashed.run(messages)

    def corrections(pipeline: Pipeline) -> list[int]:
        return [pipeline.stage1.index.corrections(p, pipeline.stage1.metadata.read(p)) for p in range(PARTITIONS)]

    assert sum(corrections(reference)) > 0  # the case is exercised
    assert corrections(crashed) == corrections(reference)
    reference.stage1.forget()  # counted again from the stored states: the same
    assert corrections(reference) == corrections(crashed)


def _commit_half(pipeline: Pipeline, messages: list[Message]) -> None:
    """A worker killed between a batch's client-state writes and its metadata write: half the
    batch's states reached the changelog, then a restart (in-memory indexes gone)."""
    result, _ = pipeline.stage1.process(messages)
    written = list(result.pending.items())
    for key, raw in written[: len(written) // 2]:
        if raw is None:
            pipeline.store1.pop(key, None)
        else:
            pipeline.store1[key] = raw
    pipeline.stage1.forget()


def _cells(store: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """Stage 2's observations, without its internal keys."""
    return {k: v for k, v in store.items() if not k.startswith(b"\x00")}


class FakeWall:
    """A wall clock that only moves when told to (no test sleeps)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def _discharge(client: str, when: datetime) -> Event:
    from schemas.model import Discharge

    return Event(
        "hospital/st-marys", "d-1", "discharge", when, client,
        Discharge("enc-1", "st-marys", "inpatient", True, "home", "north"),
    )


def test_care_gap_alerts_fire_by_the_wall_clock(config: CoreConfig) -> None:
    discharged = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    wall = FakeWall(discharged + timedelta(hours=1))
    pipeline = Pipeline(config, alert_clock="wall", wall=wall)
    pipeline.feed([_discharge("c" * 32, discharged)])
    tick = encode_tick(Tick(to_us(wall())))
    pipeline.run([pipeline.message(p, b"\x00tick", tick) for p in range(PARTITIONS)])
    assert not pipeline.alerts  # day d+2 has not ended on the wall clock
    wall.advance(timedelta(days=3))
    tick = encode_tick(Tick(to_us(wall())))
    pipeline.run([pipeline.message(p, b"\x00tick", tick) for p in range(PARTITIONS)])
    names = {a.name for a in pipeline.alerts.values()}
    assert "FollowUpDue" in names
    due = next(a for a in pipeline.alerts.values() if a.name == "FollowUpDue")
    assert due.ends_at is None
    assert pipeline.open[("FollowUpDue", "north")] == 1
    assert pipeline.open[("FrequentCrisis", "north")] == 0  # zeros: "none open", not "no data"
    late = _discharge("c" * 32, discharged - timedelta(days=1))
    late = Event("hospital/st-marys", "d-0", late.type, late.time, late.client, late.data)
    pipeline.feed([late])
    assert pipeline.late == []  # within the 72 h allowed lateness
    pipeline.feed([_discharge("d" * 32, discharged + timedelta(days=5))])
    pipeline.feed([Event("hospital/st-marys", "d-9", late.type, discharged, "d" * 32, late.data)])
    assert pipeline.late == ["discharge"]  # behind max time less the lateness
    assert due.starts_at == datetime(2026, 3, 5, tzinfo=UTC)  # end of local day d+2 (UTC here)


def test_a_flush_completes_only_when_every_stage1_partition_answered(config: CoreConfig) -> None:
    store: dict[bytes, bytes] = {}
    stage2 = Stage2(config, store, PARTITIONS)
    meta = msgspec_meta()
    for p in range(PARTITIONS - 1):
        stage2.flush(0, encode_flush(FlushMark("abc", p, meta)))
    ack = flush_ack_key("abc", 0, PARTITIONS)
    assert ack not in store
    stage2.forget()  # a rebalance in between: the marks already read are kept in the store
    stage2.flush(0, encode_flush(FlushMark("abc", PARTITIONS - 1, meta)))
    assert len(decode_flush_ack(store[ack])) == PARTITIONS
    assert [k for k in store if b"flushing" in k] == []


def test_stage2_watermark_is_the_lowest_and_only_moves_forward(config: CoreConfig) -> None:
    stage2 = Stage2(config, {}, 2)
    assert stage2.mark(0, encode_watermark(StageWatermark(0, 100))) is None
    assert stage2.mark(0, encode_watermark(StageWatermark(1, 50))) == 50
    assert stage2.mark(0, encode_watermark(StageWatermark(1, 40))) == 50  # never moves back
    assert stage2.mark(0, encode_watermark(StageWatermark(1, 150))) == 100


def test_stage2_waits_for_every_partition_it_holds(config: CoreConfig) -> None:
    # stage-1 marks reach each stage-2 partition after the observations sent there before them:
    # a mark on partition 0 says nothing about what is still queued on partition 1
    stage2 = Stage2(config, {}, 2)
    stage2.assign({0, 1})
    for p in (0, 1):
        assert stage2.mark(0, encode_watermark(StageWatermark(p, 100))) is None
    assert stage2.mark(1, encode_watermark(StageWatermark(0, 100))) is None
    assert stage2.mark(1, encode_watermark(StageWatermark(1, 80))) == 80
    assert stage2.mark(1, encode_watermark(StageWatermark(1, 120))) == 100


def msgspec_meta() -> bytes:
    import msgspec

    return msgspec.msgpack.encode(PartitionMeta(accepted=3))


def test_a_redelivery_from_ingestion_is_not_a_duplicate_but_a_resend_is(
    events: list[Event], config: CoreConfig
) -> None:
    from streams.live import encode_origin

    pipeline = Pipeline(config)
    sample = events[:100]

    def batch(origin_offset: int) -> list[Message]:
        out = []
        for i, e in enumerate(sample):
            key = e.client.encode()
            message = pipeline.message(partition_for(key, PARTITIONS), key, encode_event(e))
            message.origin = encode_origin("events", 0, origin_offset + i, 0)
            out.append(message)
        return out

    pipeline.run(batch(0))
    first = [pipeline.stage1.metadata.read(p) for p in range(PARTITIONS)]
    pipeline.run(batch(0))  # ingestion crashed and forwarded the same input again
    again = [pipeline.stage1.metadata.read(p) for p in range(PARTITIONS)]
    assert [m.duplicates for m in again] == [m.duplicates for m in first]
    assert [m.accepted for m in again] == [m.accepted for m in first]
    pipeline.run(batch(1000))  # a publisher re-sent the same events: new input offsets
    resent = sum(pipeline.stage1.metadata.read(p).duplicates for p in range(PARTITIONS))
    assert resent == sum(m.duplicates for m in first) + len(sample)


def test_stage2_loads_only_the_teams_of_its_partitions(config: CoreConfig) -> None:
    teams = ["north", "south", "east", "west", "central"]
    by_partition = {t: partition_for(t.encode(), PARTITIONS) for t in teams}
    store: dict[bytes, bytes] = {}
    writer = Stage2(config, store, PARTITIONS)
    when = datetime(2026, 3, 2, tzinfo=UTC)
    for team in teams:
        writer.apply(Observation("repeat_crisis_30d", f"k-{team}", team, when, True).to_bytes())
    mine = {by_partition["north"]}
    reader = Stage2(config, store, PARTITIONS)  # the same memory store after a rebalance
    reader.assign(mine)
    assert set(reader.held()) == {t for t in teams if by_partition[t] in mine}


@pytest.mark.parametrize(
    ("offset", "expected", "floor", "position"),
    [
        (0, None, 0, APPLY),  # nothing applied yet on the partition
        (7, None, 0, APPLY),
        (5, 5, 0, APPLY),
        (4, 5, 0, SEEN),  # a redelivery
        (6, 5, 0, GAP),  # offset 5 was never delivered
        (7, 5, 7, APPLY),  # offsets 5 and 6 are gone (retention, a transaction marker): accepted
        (9, 5, 7, GAP),  # ... but not a jump beyond the first offset after them
        (9, 7, 7, GAP),
    ],
)
def test_admit_tells_redeliveries_and_gaps(offset: int, expected: int | None, floor: int, position: str) -> None:
    assert admit_offset(offset, expected, floor) == position


def test_table_keys_go_to_the_partition_of_their_input() -> None:
    for q in range(PARTITIONS):
        for key in (meta_key(q, PARTITIONS), flush_ack_key("f", q, PARTITIONS), position_key("t", q, PARTITIONS)):
            assert table_partition(key, PARTITIONS) == q
    for team in ("north", "south", "east", "west"):
        assert table_partition(team.encode() + b"\x1fk1", PARTITIONS) == partition_for(team.encode(), PARTITIONS)
    assert table_partition(b"client-x", PARTITIONS) == partition_for(b"client-x", PARTITIONS)


def _messages(events: list[Event], pipeline: Pipeline) -> list[Message]:
    out = []
    for e in events:
        key = e.client.encode()
        out.append(pipeline.message(partition_for(key, PARTITIONS), key, encode_event(e)))
    return out


def test_stage1_reads_a_partition_again_from_a_gap(events: list[Event], config: CoreConfig) -> None:
    reference = Pipeline(config)
    reference.run(_messages(events[:400], reference))
    pipeline = Pipeline(config)
    messages = _messages(events[:400], pipeline)
    p = messages[0].partition
    ours = [m for m in messages if m.partition == p]
    first, lost, rest = ours[:20], ours[20:25], ours[25:]
    pipeline.run([m for m in messages if m.partition != p] + first)
    # faust dropped offsets 20-24 of partition p: the next batch starts at 25
    result, metas = pipeline.stage1.process(rest)
    assert result.rewinds == {("clients", p): first[-1].offset + 1}
    assert result.outputs == []
    assert metas[p].applied == first[-1].offset
    pipeline.stage1.commit(result, metas)
    pipeline.run(lost + rest)  # read again from the gap
    for q in range(PARTITIONS):
        assert pipeline.stage1.metadata.read(q).accepted == reference.stage1.metadata.read(q).accepted
    assert pipeline.store1 == reference.store1


def test_stage1_accepts_a_gap_below_the_partitions_earliest_offset(events: list[Event], config: CoreConfig) -> None:
    pipeline = Pipeline(config)
    messages = _messages(events[:200], pipeline)
    p = messages[0].partition
    ours = [m for m in messages if m.partition == p]
    pipeline.run(ours[:5])
    pipeline.stage1.admission.floors[("clients", p)] = ours[9].offset  # retention removed offsets 5 to 8
    result, metas = pipeline.stage1.process(ours[10:11] + ours[9:])  # one beyond the floor first
    assert result.rewinds == {("clients", p): ours[4].offset + 1}
    result, metas = pipeline.stage1.process(ours[9:])
    assert result.rewinds == {}
    assert metas[p].applied == ours[-1].offset


def test_stage2_reads_a_partition_again_from_a_gap(config: CoreConfig) -> None:
    when = datetime(2026, 3, 2, 12, tzinfo=UTC)
    team = b"north"
    q = partition_for(team, PARTITIONS)
    obs = [Observation("repeat_crisis_30d", f"k{i}", "north", when, i % 2 == 0).to_bytes() for i in range(10)]
    messages = [Message(q, i, team, v) for i, v in enumerate(obs)]
    reference = Stage2(config, {}, PARTITIONS)
    assert reference.process(messages).rewinds == {}
    store: dict[bytes, bytes] = {}
    stage2 = Stage2(config, store, PARTITIONS)
    assert stage2.process(messages[:4]).rewinds == {}
    result = stage2.process(messages[6:])  # offsets 4 and 5 were not delivered
    assert result.rewinds == {("observations", q): 4}
    assert len(_cells(store)) == 4
    stage2.forget()  # a restart: positions come from the store
    assert stage2.process(messages[:2]).rewinds == {}  # a redelivery changes nothing
    assert stage2.process(messages[4:]).rewinds == {}
    assert _cells(store) == _cells(dict(reference.store))


def test_stage2_batch_run_in_slices_keeps_a_partition_left_at_a_gap(config: CoreConfig) -> None:
    """A batch run in slices (``into``): a partition left at a gap in one slice stays left in
    the next, so the applied offsets stay contiguous and the rewind points at the gap."""
    when = datetime(2026, 3, 2, 12, tzinfo=UTC)
    team = b"north"
    q = partition_for(team, PARTITIONS)
    obs = [Observation("repeat_crisis_30d", f"k{i}", "north", when, i % 2 == 0).to_bytes() for i in range(10)]
    messages = [Message(q, i, team, v) for i, v in enumerate(obs)]
    store: dict[bytes, bytes] = {}
    stage2 = Stage2(config, store, PARTITIONS)
    sent = messages[:3] + messages[5:]  # offsets 3 and 4 were not delivered
    result = stage2.process(sent[:4])  # the gap is met in the first slice
    result = stage2.process(sent[4:], result)
    assert result.rewinds == {("observations", q): 3}
    assert result.gaps == {("observations", q): 5}
    assert len(_cells(store)) == 3
    assert stage2.process(messages[3:]).rewinds == {}  # read again from the gap
    assert len(_cells(store)) == 10


def test_stage2_batch_reports_the_watermark(config: CoreConfig) -> None:
    stage2 = Stage2(config, {}, 2)
    stage2.assign([0, 1])
    marks = [
        Message(q, i, WATERMARK_KEY, encode_watermark(StageWatermark(p, 100 + p)))
        for q in range(2)
        for i, p in enumerate(range(2))
    ]
    assert stage2.process(marks[:3]).watermark_us is None
    assert stage2.process(marks[3:]).watermark_us == 100


# -- stage 1 reading the events topic itself ---------------------------------------------------


@pytest.fixture(scope="module")
def lines(simulated: list[bytes]) -> list[bytes]:
    """The simulated stream's lines (those of ``events``), with two a decoder rejects."""
    return simulated[:50] + [b'{"specversion": "1.0", "type": "contact"}', b"not json"] + simulated[50:]


class DirectPipeline(Pipeline):
    """Stage 1 reading raw events as the faust app gives them from the events topic, with
    forwards (events on a partition that is not their pseudonym's) sent back through clients."""

    def __init__(self, config: CoreConfig) -> None:
        super().__init__(config)
        self.positions = self.stages.positions
        self.direct_offsets = [0] * PARTITIONS
        self.rejected: list[Any] = []
        self.forwarded = 0

    def direct(self, partition: int, value: bytes) -> Message:
        message = Message(partition, self.direct_offsets[partition], None, value, direct=True)
        self.direct_offsets[partition] += 1
        return message

    def committed(self, result: Any, records: list[Any]) -> None:
        self.rejected += result.rejected
        forwards = []
        for topic, key, value, _, headers in records:
            if topic != TOPICS.clients:
                continue
            message = self.message(partition_for(key, PARTITIONS), key, value)
            message.origin = dict(headers)[ORIGIN_HEADER]
            forwards.append(message)
        self.forwarded += len(forwards)
        if forwards:
            self.run(forwards)


def _keyed(lines: list[bytes], misplace_every: int = 0) -> list[tuple[int, bytes, Event | None]]:
    """(partition, line, decoded event or None) with the partition as ``pathwatch publish``
    keys them (by pseudonym); every ``misplace_every``-th event on the next partition instead,
    as a publisher keying otherwise would; lines the decoder rejects on partition 0."""
    decoder = Decoder(KEY, 1 << 20)
    out = []
    for i, line in enumerate(lines):
        decoded = decoder.decode(line, Origin())
        event = decoded if isinstance(decoded, Event) else None
        p = partition_for(event.client.encode(), PARTITIONS) if event is not None else 0
        if misplace_every and i % misplace_every == 0:
            p = (p + 1) % PARTITIONS
        out.append((p, line, event))
    return out


def test_events_read_directly_give_the_replay_numbers(
    events: list[Event], lines: list[bytes], config: CoreConfig
) -> None:
    engine, expected = _engine_report(events, config)
    pipeline = DirectPipeline(config)
    keyed = _keyed(lines, misplace_every=10)
    for i in range(0, len(keyed), 50):
        pipeline.run([pipeline.direct(p, line) for p, line, _ in keyed[i : i + 50]])
    pipeline.flush(max(e.time for e in events))
    assert engine.watermark is not None
    assert sorted(pipeline.measures(engine.watermark)) == sorted(expected)
    live_alerts = sorted((a.fingerprint, a.starts_at, a.ends_at) for a in pipeline.alerts.values())
    assert live_alerts == sorted((a.fingerprint, a.starts_at, a.ends_at) for a in engine.alerts())
    metas = [pipeline.stage1.metadata.read(p) for p in range(PARTITIONS)]
    assert sum(m.accepted for m in metas) == engine.counters.accepted
    assert sum(m.duplicates for m in metas) == engine.counters.duplicates
    assert len(pipeline.rejected) == 2  # to the dead-letter topic, with their reasons
    assert all(d.reason for d in pipeline.rejected)
    assert pipeline.forwarded > 0  # the misplaced events came back through clients
    # what `pathwatch report --from-live` waits on: the next offset of every partition
    for p in range(PARTITIONS):
        assert pipeline.positions.expected("events", p) == pipeline.direct_offsets[p]
        assert pipeline.stage1.expected(p, direct=True) == pipeline.direct_offsets[p]


def test_a_commit_cut_short_counts_nothing_twice_with_both_inputs(
    events: list[Event], lines: list[bytes], config: CoreConfig
) -> None:
    # half the events come directly, half through clients: their offsets overlap, and a
    # stored state must tell which of them it already holds
    reference = DirectPipeline(config)
    crashed = DirectPipeline(config)
    keyed = _keyed(lines[:700])

    def batch(pipeline: DirectPipeline) -> list[Message]:
        out = []
        for i, (p, line, event) in enumerate(keyed):
            if i % 2:
                out.append(pipeline.direct(p, line))
            elif event is not None:
                key = event.client.encode()
                out.append(pipeline.message(p, key, encode_event(event)))
        return out

    reference.run(batch(reference))
    messages = batch(crashed)
    _commit_half(crashed, messages)
    crashed.run(messages)
    for p in range(PARTITIONS):
        ours, theirs = crashed.stage1.metadata.read(p), reference.stage1.metadata.read(p)
        assert (ours.accepted, ours.duplicates) == (theirs.accepted, theirs.duplicates)
        assert (ours.applied, ours.applied_direct) == (theirs.applied, theirs.applied_direct)
    assert crashed.store1 == reference.store1
    assert sum(reference.stage1.metadata.read(p).accepted for p in range(PARTITIONS)) > 300


def test_stage1_reads_the_events_topic_again_from_a_gap(lines: list[bytes], config: CoreConfig) -> None:
    pipeline = DirectPipeline(config)
    keyed = _keyed(lines[60:300])
    p = keyed[0][0]
    ours = [pipeline.direct(q, line) for q, line, _ in keyed if q == p]
    pipeline.run(ours[:10])
    result, metas = pipeline.stage1.process(ours[15:])  # offsets 10-14 were not delivered
    assert result.rewinds == {("events", p): 10}
    assert result.gaps == {("events", p): 15}
    assert result.outputs == []
    assert metas[p].applied_direct == 9
    result, metas = pipeline.stage1.process(ours[5:])  # read again: 5-9 were applied before
    assert result.rewinds == {}
    assert metas[p].applied_direct == ours[-1].offset


def test_partition_metadata_does_not_grow_with_open_alerts(config: CoreConfig) -> None:
    # every batch rewrites its partitions' metadata to the changelog: the alerts firing are
    # read from the client states (and counted after a restart), not kept there
    discharged = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    wall = FakeWall(discharged + timedelta(days=4))
    pipeline = Pipeline(config, alert_clock="wall", wall=wall)
    sizes = []
    for n in (20, 400):
        pipeline.feed([_discharge(f"{n:04d}{i:028d}", discharged) for i in range(n)], batch=1000)
        tick = encode_tick(Tick(to_us(wall())))
        pipeline.run([pipeline.message(p, b"\x00tick", tick) for p in range(PARTITIONS)])
        sizes.append(max(len(pipeline.store1[meta_key(p, PARTITIONS)]) for p in range(PARTITIONS)))
    assert pipeline.open[("FollowUpDue", "north")] == 420
    assert sizes[1] <= sizes[0] + 16, sizes
    pipeline.stage1.forget()  # a restart: counted again from the client states
    metas = {p: pipeline.stage1.metadata.read(p) for p in range(PARTITIONS)}
    assert pipeline.stage1.index.open_alerts(metas)[("FollowUpDue", "north")] == 420


def test_live_stages_give_the_replay_numbers_under_the_wall_clock(events: list[Event], config: CoreConfig) -> None:
    """History replayed to a worker with the default clock (care-gap alerts by the wall clock,
    days after the events): measures, waits and corrections still follow event time."""
    engine, expected = _engine_report(events, config)
    end = max(e.time for e in events)
    wall = FakeWall(end + timedelta(days=40))
    pipeline = Pipeline(config, alert_clock="wall", wall=wall)
    for i in range(0, len(events), 200):
        pipeline.feed(events[i : i + 200])
        wall.advance(timedelta(seconds=5))
        tick = encode_tick(Tick(to_us(wall())))
        pipeline.run([pipeline.message(p, b"\x00tick", tick) for p in range(PARTITIONS)])
    pipeline.flush(end)
    assert engine.watermark is not None
    assert sorted(pipeline.measures(engine.watermark)) == sorted(expected)
    from streams.windows import TeamWindows

    merged = TeamWindows.merged(pipeline.stage2.held().values(), config)
    live_waits = sorted((w.team, w.count, w.p50, w.p90) for w in merged.waits(engine.watermark, None))
    replay_waits = sorted((w.team, w.count, w.p50, w.p90) for w in engine.windows.waits(engine.watermark, None))
    assert live_waits == replay_waits
    metas = [pipeline.stage1.metadata.read(p) for p in range(PARTITIONS)]
    assert sum(m.accepted for m in metas) == engine.counters.accepted
    assert sum(pipeline.stage1.index.corrections(p, metas[p]) for p in range(PARTITIONS)) == engine.counters.corrections


class CountingStore(dict[bytes, bytes]):
    """A table that counts its client-state writes (each one a changelog record live); the
    partitions' metadata (``\\x00`` keys: the offsets read, one record per partition and tick)
    is counted apart."""

    writes = 0
    meta_writes = 0

    def _count(self, key: bytes) -> None:
        if key.startswith(b"\x00"):
            self.meta_writes += 1
        else:
            self.writes += 1

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._count(key)
        super().__setitem__(key, value)

    def pop(self, key: bytes, default: Any = None) -> Any:
        self._count(key)
        return super().pop(key, default)


def test_an_idle_worker_writes_nothing(events: list[Event], config: CoreConfig) -> None:
    """A default worker (wall clock) that has read its backlog, months after the events:
    ticks that pass no client's due time write no client state and no metadata."""
    end = max(e.time for e in events)
    wall = FakeWall(end + timedelta(days=200))
    store = CountingStore()
    pipeline = Pipeline(config, alert_clock="wall", wall=wall, store1=store)
    pipeline.feed(events, batch=200)

    def tick() -> None:
        wall.advance(timedelta(seconds=5))
        value = encode_tick(Tick(to_us(wall())))
        pipeline.run([pipeline.message(p, b"\x00tick", value) for p in range(PARTITIONS)])

    tick()  # the first tick after the backlog may still have work
    before, meta_before = store.writes, store.meta_writes
    for _ in range(60):
        tick()
    clients = sum(1 for k in store if not k.startswith(b"\x00"))
    assert clients > 0
    assert store.writes - before == 0
    assert store.meta_writes - meta_before == 0
    # a restart: the ticks read since the metadata was written are a gap, read again
    restarted = Stage1(config, store, PARTITIONS, alert_clock="wall", wall=wall)
    p = 0
    stored = restarted.metadata.read(p).applied
    assert stored < pipeline.offsets[p] - 1
    value = encode_tick(Tick(to_us(wall())))
    result, _ = restarted.process([Message(p, pipeline.offsets[p], b"\x00tick", value)])
    assert result.rewinds == {("clients", p): stored + 1}
    again = [Message(p, offset, b"\x00tick", value) for offset in range(stored + 1, pipeline.offsets[p] + 1)]
    result, metas = restarted.process(again)
    assert result.rewinds == {}
    assert result.outputs == []
    restarted.commit(result, metas)
    assert restarted.expected(p) == pipeline.offsets[p] + 1


def _line(time: str, team: str = "north", event_id: str = "r-1", subject: str = "client-1") -> bytes:
    import json

    return json.dumps(
        {
            "specversion": "1.0", "id": event_id, "source": "ehr/community", "type": "referral.received",
            "time": time, "subject": subject,
            "data": {"referral_id": event_id, "team": team, "urgency": "routine"},
        }
    ).encode()


class _Exploding(Decoder):
    """A decoder with a bug: it raises on one input (the decoder should not; stage 1 must
    hold whatever it does)."""

    def decode(self, raw: bytes, origin: Origin) -> Any:
        if raw == b"boom":
            raise RuntimeError("decoder bug")
        if b"MRN-77" in raw:
            raise ValueError("cannot link MRN-77")  # a bug that quotes the raw identifier
        return super().decode(raw, origin)


def _padded(line: bytes, size: int) -> bytes:
    """``line`` with an unknown top-level field of ``size`` bytes (valid: unknown fields are
    ignored), so that records derived from it could exceed the record limit."""
    obj = json.loads(line)
    obj["padding"] = "x" * size
    return json.dumps(obj).encode()


def _record_of(o: Any) -> tuple[bytes | None, bytes] | None:
    return (o.team.encode(), o.to_bytes()) if isinstance(o, Observation) else None


def test_a_record_whose_processing_raises_is_a_dead_letter_and_the_stage_goes_on(config: CoreConfig) -> None:
    store: dict[bytes, bytes] = {}
    stage1 = Stage1(
        config, store, 1, alert_clock="event", decoder=_Exploding(KEY, 1 << 20), direct_topic="events",
        record_of=_record_of, max_record_bytes=1_000_000,
    )
    bad = [
        None,  # a tombstone
        b"boom",
        _line("9999-12-31T23:59:59+00:00", event_id="far"),
        _line("0001-01-01T00:00:00+00:00", event_id="early"),
        _line("2026-03-02T10:00:00+00:00", team="x" * 800_000, event_id="huge"),
        _padded(_line("2026-03-02T11:00:00+00:00", event_id="padded"), 800_000),
    ]
    good = [_line(f"2026-03-0{i}T10:00:00+00:00", event_id=f"ok-{i}", subject=f"c-{i}") for i in range(2, 7)]
    messages = [Message(0, i, None, value, direct=True) for i, value in enumerate(bad + good)]
    result, metas = stage1.process(messages)
    stage1.commit(result, metas)
    kinds = [(d.kind.value, d.origin.offset) for d in result.rejected]
    # the decoder bounds times and field lengths (schema); what it lets through and still
    # raises, or still could not fit a derived record, stage 1 holds itself
    assert kinds == [
        ("null_value", 0), ("processing_error", 1), ("schema", 2), ("schema", 3), ("schema", 4),
        ("output_too_large", 5),
    ]
    assert result.rejected[1].reason == "RuntimeError: decoder bug"
    assert result.rejected[2].original == bad[2]  # the original bytes, for a fix and a re-publish
    assert all("client-1" not in d.reason for d in result.rejected)
    quoting, _ = stage1.process([Message(0, len(messages), None, _line("2026-03-07T10:00:00+00:00", subject="MRN-77"),
                                         direct=True)])
    assert [d.reason for d in quoting.rejected] == ["ValueError: cannot link <subject>"]
    assert metas[0].accepted == len(good)
    assert metas[0].applied_direct == len(messages) - 1
    assert metas[0].max_us == to_us(datetime(2026, 3, 6, 10, tzinfo=UTC))  # the bad times moved no watermark
    assert all(len(t) < 100 for t in metas[0].teams)


def test_a_sweep_that_raises_is_a_dead_letter_and_the_partition_goes_on(
    events: list[Event], config: CoreConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streams.live

    pipeline = Pipeline(config)
    pipeline.feed(events[: len(events) // 2])
    real = streams.live.sweep
    victim = events[0].client

    def sweep(state: Any, clock: Any, cfg: CoreConfig) -> Any:
        if state is not None and state.client == victim:
            raise ArithmeticError("core bug")
        return real(state, clock, cfg)

    monkeypatch.setattr(streams.live, "sweep", sweep)
    end = max(e.time for e in events)
    tick = encode_tick(Tick(to_us(end), to_us(end) + 1))
    result, metas = pipeline.stage1.process([pipeline.message(p, b"\x00tick", tick) for p in range(PARTITIONS)])
    assert [d.reason for d in result.rejected] == ["ArithmeticError: core bug"]
    assert len(result.watermarks) == PARTITIONS  # every partition went on
    assert any(isinstance(o, Observation) for o in result.outputs)


def test_stage2_dead_letters_a_record_it_cannot_read(config: CoreConfig) -> None:
    stage2 = Stage2(config, {}, PARTITIONS)
    obs = Observation("seen_within_target", "k1", "north", datetime(2026, 3, 2, tzinfo=UTC), True)
    result = stage2.process([Message(0, 0, b"north", b"not an observation"), Message(0, 1, b"north", obs.to_bytes())])
    assert [d.kind.value for d in result.rejected] == ["processing_error"]
    assert stage2.held()["north"] is not None


def test_a_batch_run_in_slices_gives_what_it_gives_whole(events: list[Event], config: CoreConfig) -> None:
    whole, sliced = Pipeline(config), Pipeline(config)
    messages = [whole.message(partition_for(e.client.encode(), PARTITIONS), e.client.encode(), encode_event(e))
                for e in events[:600]]
    a, metas_a = whole.stage1.process(messages)
    done = sliced.stage1.process(messages[:100])
    for i in range(100, len(messages), 100):
        done = sliced.stage1.process(messages[i : i + 100], done)
    b, metas_b = done
    assert [o for o in a.outputs] == [o for o in b.outputs]
    assert a.pending == b.pending
    assert metas_a == metas_b


def test_catch_up_is_logged_while_behind_and_once_when_caught_up() -> None:
    from streams.catch_up import CatchUp

    progress = CatchUp(every=30)
    assert progress.observe(0, 0.0) is None  # never behind: nothing to say
    first = progress.observe(10_000, 0.0, datetime(2025, 6, 1, tzinfo=UTC))
    assert first == "catching up: 10000 input records behind; event time reached 2025-06-01T00:00:00+00:00"
    assert progress.observe(9_000, 5.0) is None  # at most one line per 30 s
    assert progress.observe(4_000, 30.0) == "catching up: 4000 input records behind (200 records/s net)"
    assert progress.observe(0, 35.0) == "caught up: no input records behind"
    assert progress.observe(0, 70.0) is None


def test_a_group_instance_id_gives_the_worker_static_membership() -> None:
    from streams.faust_io import app_options

    assert app_options(load_settings(group_instance_id="worker-0"))["consumer_group_instance_id"] == "worker-0"
    assert app_options(load_settings())["consumer_group_instance_id"] is None  # dynamic by default


# -- the live wiring, driven in memory --------------------------------------------------------


class KeptProducer:
    """The alerts topic's producer, in memory: what the Kafka receiver sent, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class Broker:
    """The topics between the wired jobs, in memory: each record the stages send to an
    internal topic gets the next offset of its partition, as Kafka would give it."""

    def __init__(self, sink: MemorySink) -> None:
        self.sink = sink
        self.offsets: Counter[tuple[str, int]] = Counter()

    def incoming(self, topic: str, partition: int, key: bytes | None, value: bytes | None, headers: Any = None) -> Incoming:
        offset = self.offsets[(topic, partition)]
        self.offsets[(topic, partition)] += 1
        return Incoming(topic, partition, offset, key, value, headers)

    def take(self, topic: str) -> list[Incoming]:
        """What the stages sent to ``topic`` since the last take, as fetched messages."""
        out = []
        for _, key, value, partition, headers in self.sink.take(topic):
            p = partition if partition is not None else partition_for(key or b"", PARTITIONS)
            out.append(self.incoming(topic, p, key, value, headers))
        return out


def test_the_live_wiring_carries_events_to_observations_gauges_and_delivered_alerts(
    events: list[Event], lines: list[bytes], config: CoreConfig
) -> None:
    """Stage 1, stage 2 and delivery as build_stages wires them for the worker, fed fetched
    messages the way faust's agents feed them, over in-memory tables, a record sink and a
    dispatcher whose Kafka receiver keeps what it sends (no broker)."""
    engine, _ = _engine_report(events, config)
    end = max(e.time for e in events)
    parts = stage_parts(config, "event", FakeWall(end + timedelta(days=1)))
    sink, crashes = MemorySink(), Crashes()
    stores = StageStores(TrackedStore(), {}, {}, "client-state-changelog")
    stages = build_stages(parts, stores, sink, MemorySeeker(), crashes, max_record=MAX_RECORD)
    producer = KeptProducer()
    dispatcher = build_dispatcher(ReceiversConfig(alerts_topic="alerts"), None, producer, None, clock=parts.wall)
    delivery = Delivery(StaticDispatcher(dispatcher), parts.metrics, parts.wall)
    broker = Broker(sink)
    changelog: dict[bytes, bytes | None] = {}
    sent_transitions: list[bytes] = []

    async def after_stage1() -> None:
        for _, key, value, partition, _ in sink.take("client-state-changelog"):
            assert key is not None
            assert partition == table_partition(key, PARTITIONS)
            changelog[key] = value
        forwards = broker.take(TOPICS.clients)  # events a publisher put on another partition
        if forwards:
            await stages.stage1_loop.run(forwards)
            await after_stage1()
        await stages.stage2_loop.run(
            Message(m.partition, m.offset, m.key, m.value) for m in broker.take(TOPICS.observations)
        )
        transitions = [m.value for m in broker.take(TOPICS.transitions) if m.value is not None]
        sent_transitions.extend(transitions)
        if transitions:
            await delivery.deliver(transitions)

    async def drive() -> None:
        await delivery.start()
        keyed = _keyed(lines, misplace_every=10)
        for i in range(0, len(keyed), 50):
            await stages.stage1_loop.run([broker.incoming(TOPICS.events, p, None, line) for p, line, _ in keyed[i : i + 50]])
            await after_stage1()
        until = encode_tick(Tick(to_us(end), to_us(end) + 1, "f1"))  # like Engine.finish
        await stages.stage1_loop.run([broker.incoming(TOPICS.clients, p, TICK_KEY, until) for p in range(PARTITIONS)])
        await after_stage1()
        await delivery.stop()

    asyncio.run(drive())
    assert crashes.errors == []
    # records: the client-state changelog replays into the table; the dead letters
    assert {k: v for k, v in changelog.items() if v is not None} == dict(stores.clients)
    dead = sink.take(TOPICS.dead_letters)
    kinds = sorted(dict(headers or [])["pathwatch.errors.kind"] for *_, headers in dead)
    assert kinds == [b"not_json", b"schema"]  # the two lines the decoder rejects
    # observations: stage 2's table gives the replay's numbers, and its gauges follow its
    # windows at its watermark (the rolling window of the settings)
    watermark = stages.stage2_loop.stage2_watermark
    assert watermark == from_us(to_us(end) + 1)
    assert engine.watermark is not None
    stored = TeamWindows(config)
    for key, value in stores.observations.items():
        if not key.startswith(b"\x00"):
            stored.apply(Observation.from_bytes(value))

    def rows(windows: TeamWindows, now: datetime, days: int | None) -> list[tuple[str, str, int, int]]:
        return sorted((r.team, r.measure, r.numerator, r.denominator) for r in windows.rates(now, days))

    assert rows(stored, engine.watermark, None) == rows(engine.windows, engine.watermark, None)
    gauges = parts.metrics.named("set_measures")[-1][0]  # type: ignore[attr-defined]
    assert sorted(gauges) == rows(stored, watermark, 28)
    assert any(den > 0 for *_, den in gauges)
    # every stage-2 partition recorded the flush (what `pathwatch report --from-live` waits on)
    assert all(flush_ack_key("f1", q, PARTITIONS) in stores.observations for q in range(PARTITIONS))
    # delivered alerts: each care-gap alert state stage 1 sent reached the alerts topic once,
    # and their last states are the replay's alerts
    delivered = [json.loads(value or b"") for _, _, value in producer.sent]
    assert len(delivered) == len({raw for raw in sent_transitions}) > 0
    counted = parts.metrics.named("count_delivery")  # type: ignore[attr-defined]
    assert sum(n for receiver, outcome, n in counted if (receiver, outcome) == ("kafka", "delivered")) == len(delivered)
    last: dict[tuple[str, str], Any] = {}
    for alert in delivered:
        if alert["labels"]["alertname"] in CARE_GAP_ALERTS:  # (stage 2's system alerts aside)
            last[(alert["fingerprint"], alert["startsAt"])] = alert["endsAt"]
    replay_alerts = {(a.fingerprint, rfc3339(a.starts_at)): a.ends_at and rfc3339(a.ends_at) for a in engine.alerts()}
    assert last == replay_alerts


class RetainedSeeker(MemorySeeker):
    """A consumer whose partitions begin at ``earliest`` (retention removed what was before)."""

    def __init__(self, earliest: int) -> None:
        super().__init__()
        self.first = earliest

    async def earliest(self, topic: str, partition: int) -> int | None:
        return self.first


def test_the_rewinder_reads_again_accepts_retention_and_holes(config: CoreConfig) -> None:
    ticks = [0.0]
    stages = build_stages(
        stage_parts(config), StageStores(TrackedStore(), {}, {}, "cl"), MemorySink(), RetainedSeeker(0), Crashes(),
        max_record=MAX_RECORD,
    )
    rewinder = stages.rewinder
    rewinder.monotonic = lambda: ticks[0]
    seeker = rewinder.seeker
    assert isinstance(seeker, RetainedSeeker)

    async def drive() -> None:
        await rewinder.rewind("clients", 1, 10, 15)  # a gap: read again from 10
        assert seeker.seeks[-1] == ("clients", 1, 10)
        for _ in range(2):  # offset 15 keeps coming after 10, for 2 seconds: a hole, accepted
            ticks[0] += 1.0
            await rewinder.rewind("clients", 1, 10, 15)
        assert seeker.seeks[-1] == ("clients", 1, 15)
        assert stages.stage1.admission.floors[("clients", 1)] == 15
        seeker.first = 40  # offsets below 40 were removed by retention
        await rewinder.rewind("observations", 2, 30)
        assert seeker.seeks[-1] == ("observations", 2, 40)
        assert stages.stage2.positions.floors[("observations", 2)] == 40

    asyncio.run(drive())
    assert stages.metrics.named("count_rewind") == [("clients",)] * 2  # type: ignore[attr-defined]

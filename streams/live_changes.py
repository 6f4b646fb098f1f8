"""Service changes and Making Data Count charts live (issue 17; docs/spc.md, docs/metrics.md).

The changes topic (``topics.changes``, compacted, keyed by ``change_id``) holds the recorded
``service.change`` events (and ``cancel`` events naming them, keyed by the change's
``change_id`` too). Two readers take it whole, from the beginning, each time they start:

* every worker (:func:`add_live_mdc`): its per-team stage keeps a :class:`LiveChanges`, so
  the MDC gauges it exports for the teams it holds start a new group at each change, as the
  replay's charts do; a restarted worker reads the topic again (compaction keeps it small:
  one record per change);
* ``pathwatch report --from-live`` (:func:`read_changes`, then
  :func:`streams.report.spc_sections`): the report's ``"spc"`` with the changes' groups and
  its ``"changes"``, as the replay of the same input builds them.

The worker's gauges of the all-teams chart ``*`` come from the shares topic, read the same
way by the same code (:func:`add_live_mdc`, ``streams.live_overall``).

Both interpret the topic the same way (:class:`LiveChanges`): per Kafka key the latest record,
as compaction leaves it (a tombstone withdraws the key), the records kept fed in offset order
to a :class:`streams.changes.ChangeRegister`. A record that is not a valid ``service.change``
or ``cancel`` becomes a dead letter with the reason; it changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from alerts.evidence import ServiceChange
from alerts.rules import RATE_MEASURES, AlertRulesConfig, SystemAlertRules
from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.decode import Decoder
from schemas.model import ALL_TEAMS, Event
from streams.calendar import to_us
from streams.changes import ChangeRegister, LocalDate, RawIds, change_rebase, local_date_in, raw_id
from streams.core import CoreConfig
from streams.faust_io import tables_recovered
from streams.live_overall import ALERTS_KEY, SharePublisher, Shares, Stamp, overall_charts, withdrawn
from streams.overall_alerts import OverallAlerts

if TYPE_CHECKING:
    import faust

    from streams.stages import LiveStages
    from streams.windows import TeamWindows

log = logging.getLogger("pathwatch.changes")

_NO_KEY = b""


@dataclass(slots=True)
class LiveChanges:
    """The changes topic as read so far: the latest record per key, in offset order. Not
    thread-safe (one event loop reads and writes it)."""

    decoder: Decoder
    _latest: dict[tuple[int, bytes], tuple[int, Event]] = field(default_factory=dict)
    raw_ids: RawIds = field(default_factory=dict)
    """The published ``id`` of each change event read (for ``pathwatch change cancel``)."""
    version: int = 0
    """Moves on every record that changes what stands (the gauges recompute then)."""

    def apply(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> DeadLetter | None:
        """Take one record of the changes topic. A tombstone withdraws its key; a record
        without a key is kept by its offset. Returns the dead letter (the record changes
        nothing) when the value is not a valid ``service.change`` or ``cancel``."""
        ident = (partition, key) if key is not None else (partition, _NO_KEY + str(offset).encode())
        origin = Origin(topic=topic, partition=partition, offset=offset)
        if value is None and key is not None:
            if self._latest.pop(ident, None) is not None:
                self.version += 1
            return None
        decoded = self.decoder.decode(value, origin)
        if isinstance(decoded, DeadLetter):
            return decoded
        if decoded.type not in ("service.change", "cancel"):
            return DeadLetter(
                DeadLetterKind.UNKNOWN_TYPE,
                f"a {decoded.type} event on the changes topic: it takes service.change and cancel events only",
                "type",
                origin,
                value or b"",
            )
        self._latest[ident] = (offset, decoded)
        raw_id(decoded, value or b"", self.raw_ids)
        self.version += 1
        return None

    def changes(self) -> list[ServiceChange]:
        """The changes that stand (:meth:`streams.changes.ChangeRegister.changes`)."""
        return self.register().changes()

    def register(self) -> ChangeRegister:
        """The records kept, fed in offset order to a :class:`streams.changes.ChangeRegister`."""
        register = ChangeRegister()
        for _, event in sorted(self._latest.values(), key=lambda item: item[0]):
            if register.handles(event):
                register.feed(event)
        return register


async def read_changes(kafka_bootstrap: str, topic: str, decoder: Decoder, timeout: float = 60.0) -> LiveChanges:
    """The changes ``topic`` from its beginning up to its end offsets (an absent topic reads
    as empty). Raises ``TimeoutError`` when the end is not reached in ``timeout`` seconds."""
    from aiokafka import AIOKafkaConsumer

    found = LiveChanges(decoder)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            if topic not in await consumer.topics():
                return found
            tps = await _assign_all(consumer, topic)
            ends = await consumer.end_offsets(tps)
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                    for m in messages:
                        found.apply(topic, tp.partition, m.offset, m.key, m.value)
    finally:
        await consumer.stop()
    return found


async def _assign_all(consumer: Any, topic: str) -> list[Any]:
    """Subscribe ``consumer`` (no group: it is assigned every partition, read from the
    beginning) to ``topic``; return its partitions once assigned."""
    consumer.subscribe([topic])
    while not consumer.assignment():
        await asyncio.sleep(0.1)
    return sorted(consumer.assignment())


def team_charts(
    rules: SystemAlertRules,
    windows: TeamWindows,
    teams: Sequence[str],
    watermark: datetime,
    changes: Sequence[ServiceChange],
    local_date: LocalDate,
) -> list[dict[str, Any]]:
    """The ``"spc"`` entries of ``teams`` (``*`` left out: a worker holds only a share of
    it) at ``watermark``, with a group starting at each change, as the report draws them."""
    rebase = change_rebase(changes, local_date)
    return [e for e in rules.charts(windows, watermark, teams, rebase) if e["team"] != ALL_TEAMS]


def change_times(changes: Sequence[ServiceChange], teams: Sequence[str]) -> dict[tuple[str, str], list[datetime]]:
    """(team, measure) -> the effective times of the changes naming it, for ``teams`` only
    (``*`` among them: the provider-wide changes)."""
    held = set(teams)
    out: dict[tuple[str, str], list[datetime]] = {}
    for change in changes:
        if change.team not in held:
            continue
        for measure in change.measures or tuple(RATE_MEASURES):
            out.setdefault((change.team, measure), []).append(change.time)
    return out


class MdcGauges(Protocol):
    """The Making Data Count gauges a worker exports (``pathwatch.mdc_metrics.MdcMetrics``)."""

    def set_charts(self, entries: Iterable[Mapping[str, Any]]) -> None: ...

    def set_changes(self, changes: Mapping[tuple[str, str], Sequence[datetime]]) -> None: ...


@dataclass(frozen=True)
class MdcParts:
    """What the worker's live Making Data Count parts read (the composition root builds it
    from settings)."""

    changes_topic: str
    shares_topic: str
    dead_letters_topic: str
    kafka_bootstrap: str
    timezone: str
    tick_seconds: float
    decoder: Decoder
    rules: AlertRulesConfig
    core: CoreConfig
    gauges: MdcGauges


Apply = Callable[[str, int, int, bytes | None, bytes | None], DeadLetter | None]
"""How a reader takes one record: (topic, partition, offset, key, value) -> its dead letter."""


def add_live_mdc(app: faust.App, parts: MdcParts, stages: LiveStages) -> None:
    """Wire the live MDC parts into a worker: tasks reading the changes topic and the shares
    topic whole (from the beginning, then following them) into a :class:`LiveChanges` and a
    :class:`streams.live_overall.Shares`, and a timer that sends the shares of the teams stage
    2 holds and exports the MDC gauges (``parts.gauges``) of those teams, and of ``*`` at the
    worker that holds ``*``'s stage-2 partition (``streams.live_overall``), at stage 2's
    watermark, once the topics have been read to their end. Neither ever stops the worker: a
    failure is logged and retried."""
    found = LiveChanges(parts.decoder)
    shares = Shares()
    state: dict[str, Any] = {"changes": False, "shares": False, "done": None}
    export = _MdcExport(parts, stages, found, shares, SharePublisher(parts.shares_topic), state)

    @app.task
    async def changes_reader() -> None:
        await _keep_reading(app, parts, parts.changes_topic, found.apply, state, "changes")

    @app.task
    async def shares_reader() -> None:
        await _keep_reading(app, parts, parts.shares_topic, shares.apply, state, "shares")

    @app.timer(interval=max(1.0, parts.tick_seconds), name="pathwatch-mdc-gauges")
    async def mdc_gauges() -> None:
        await export.tick(app)


@dataclass
class _MdcExport:
    """The MDC gauges timer's work (see :func:`add_live_mdc`)."""

    parts: MdcParts
    stages: LiveStages
    found: LiveChanges
    shares: Shares
    publisher: SharePublisher
    state: dict[str, Any]

    def __post_init__(self) -> None:
        self.rules = SystemAlertRules(self.parts.rules)
        self.overall: OverallAlerts | None = None  # while this worker holds '*'
        self.local_date = local_date_in(ZoneInfo(self.parts.timezone))

    async def tick(self, app: Any) -> None:
        watermark = self.stages.stage2_loop.stage2_watermark
        if not self.state["changes"] or watermark is None:
            return
        # stage 2 loads its teams from the table store on first use after an assignment: not
        # before the tables are recovered, or it would hold (and export) a partial store
        if app.rebalancing or not tables_recovered(app):
            return
        now = asyncio.get_running_loop().time()
        key = (watermark, self.found.version, self.shares.version)
        done = self.state["done"]
        if done is not None and done[0] == key and now - done[1] < 5 * self.parts.tick_seconds:
            return  # nothing moved; late observations are picked up within 5 ticks
        self.state["done"] = (key, now)
        try:
            await self._export(app, watermark, now)
        except Exception:
            log.exception("exporting the Making Data Count gauges failed")

    async def _export(self, app: Any, watermark: datetime, now: float) -> None:
        from streams.faust_io import send_records
        from streams.windows import TeamWindows

        parts, stage2, rules, local_date = self.parts, self.stages.stage2, self.rules, self.local_date
        held = stage2.held()
        watermark_us = to_us(watermark)
        stamp = Stamp(watermark_us, parts.core.calendar.day_of(watermark_us), stage2.assigned())
        pending = self.publisher.pending(held, now, stamp)
        if pending:
            await send_records(app.producer, self.publisher.records(pending))
            self.publisher.sent(pending)
        if self.state["shares"]:
            gone = withdrawn(self.shares, held, stamp.partitions, stage2.source_partitions)
            if gone:
                log.info("withdrawing the shares of %d team(s) stage 2 no longer holds", len(gone))
                await send_records(app.producer, [(parts.shares_topic, t.encode(), None, None, None) for t in gone])
        merged = TeamWindows.merged(held.values(), parts.core)
        teams = sorted(set(held) - {ALL_TEAMS})
        changes = self.found.changes()
        entries = team_charts(rules, merged, teams, watermark, changes, local_date)
        if self.state["shares"] and stage2.holds(ALL_TEAMS):
            entries += overall_charts(rules, self.shares.windows(parts.core), watermark, changes, local_date)
            teams.append(ALL_TEAMS)
            await self._overall_alerts(app)
        else:
            self.overall = None  # a worker that takes '*' (again) starts from the state kept
        self.parts.gauges.set_charts(entries)
        self.parts.gauges.set_changes(change_times(changes, teams))

    async def _overall_alerts(self, app: Any) -> None:
        """The system alerts of ``*`` (``streams.overall_alerts``): transitions to the
        transitions topic as stage 2 sends the teams' (keyed by fingerprint), then the state."""
        from streams.delivery import alert_to_bytes
        from streams.faust_io import send_records

        if self.overall is None:
            self.overall = OverallAlerts(self.parts.rules, self.parts.core, self.stages.stage2.source_partitions)
        step = self.overall.step(self.shares)
        topic = self.stages.stage2_loop.transitions_topic
        sends = [await topic.send(key=a.fingerprint.encode(), value=alert_to_bytes(a)) for a in step.alerts]
        await asyncio.gather(*sends)
        if step.state is not None:
            await send_records(app.producer, [(self.parts.shares_topic, ALERTS_KEY, step.state, None, None)])


async def _keep_reading(
    app: Any, parts: MdcParts, topic: str, apply: Apply, state: dict[str, Any], flag: str
) -> None:
    """:func:`_follow` ``topic`` for ever, from the beginning again after a failure (logged)."""
    while True:
        try:
            await _follow(app, parts, topic, apply, state, flag)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reading the topic %s failed; reading it again", topic)
            state[flag] = False
            await asyncio.sleep(max(1.0, parts.tick_seconds))


async def _follow(app: Any, parts: MdcParts, topic: str, apply: Apply, state: dict[str, Any], flag: str) -> None:
    """Read ``topic`` from the beginning through ``apply``; ``state[flag]`` once at the end
    offsets of the start; then follow it. Dead letters go to the dead-letter topic."""
    from aiokafka import AIOKafkaConsumer

    from streams.faust_io import send_records

    consumer = AIOKafkaConsumer(
        bootstrap_servers=parts.kafka_bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        while topic not in await consumer.topics():  # the worker creates its topics at start
            await asyncio.sleep(1.0)
        tps = await _assign_all(consumer, topic)
        ends = await consumer.end_offsets(tps)
        max_record = int(app.conf.producer_max_request_size)
        while True:
            if not state[flag] and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                state[flag] = True
                log.info("topic %s read to its end", topic)
            dead = []
            for tp, messages in (await consumer.getmany(timeout_ms=1000)).items():
                for m in messages:
                    letter = apply(topic, tp.partition, m.offset, m.key, m.value)
                    if letter is not None:
                        dead.append(letter)
            if dead:
                # every worker reads the whole topic: a bad record is dead-lettered by each (the
                # same record: `pathwatch deadletters` and the live report count it once)
                value_headers = [d.to_record(max_record) for d in dead]
                await send_records(app.producer, [(parts.dead_letters_topic, None, v, None, h) for v, h in value_headers])
    finally:
        await consumer.stop()


__all__ = [
    "LiveChanges",
    "MdcParts",
    "add_live_mdc",
    "change_times",
    "read_changes",
    "team_charts",
]

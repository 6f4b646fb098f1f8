"""Service changes in a replay: which changes stand, where they rebase the charts, and the
report's ``"changes"`` (DOMAIN.md section 7, docs/spc.md).

A ``service.change`` is about a team, not a client, so it never reaches the per-client core:
the replay engine hands it (and a ``cancel`` that names it) to a :class:`ChangeRegister`.
Rules, chosen where the specification is silent:

* the (``source``, ``id``) of the event is its de-duplication key, as for every event: a
  repeat is a duplicate; a ``cancel`` from the same source naming that ``id`` withdraws the
  change; a re-issue after the cancel stands again;
* ``change_id`` names the change: a later event with the same ``change_id`` replaces the
  earlier one (the changes topic is compacted by that key; last arrival wins);
* a change rebases the charts of its own team (``*``: the all-teams chart) for the measures
  it names (all rate measures when it names none), at the first weekly point on or after the
  local date it took effect; configured rebase points still apply.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alerts.evidence import ServiceChange, evidence_for_change
from alerts.mdc import WeeklyValue
from alerts.rules import RATE_MEASURES, judged_points, lookback_covered
from alerts.spc import Direction
from schemas.deadletter import DeadLetter, Origin
from schemas.decode import Decoder
from schemas.model import Cancel, Event
from schemas.model import ServiceChange as ServiceChangeData

if TYPE_CHECKING:
    from alerts.rules import AlertRulesConfig
    from streams.topics import KafkaSettings
    from streams.windows import TeamWindows

LocalDate = Callable[[datetime], date]


@dataclass(slots=True)
class ChangeRegister:
    """The service changes of one replay, in arrival order. Not thread-safe."""

    _events: dict[tuple[str, str], Event] = field(default_factory=dict)
    _cancelled: set[tuple[str, str]] = field(default_factory=set)
    _order: dict[tuple[str, str], int] = field(default_factory=dict)

    def handles(self, event: Event) -> bool:
        """True for a ``service.change``, and for a ``cancel`` naming a change already seen
        (from the same source); everything else belongs to the per-client core."""
        if event.type == "service.change":
            return True
        data = event.data
        return isinstance(data, Cancel) and (event.source, data.cancels) in self._events

    def feed(self, event: Event) -> bool:
        """Take an event :meth:`handles`; returns False when it is a duplicate (it changes
        nothing), True when accepted."""
        data = event.data
        if isinstance(data, Cancel):
            target = (event.source, data.cancels)
            if target in self._cancelled:
                return False
            self._cancelled.add(target)
            return True
        key = event.key
        if key in self._events and key not in self._cancelled:
            return False
        self._cancelled.discard(key)  # a re-issue after its cancel stands
        self._events[key] = event
        self._order[key] = len(self._order)
        return True

    def changes(self) -> list[ServiceChange]:
        """The changes that stand: not cancelled, the last arrival of each ``change_id``;
        sorted by time, then ``change_id``."""
        out = [_service_change(event) for event in self._standing().values()]
        return sorted(out, key=lambda c: (c.time, c.change_id))

    def standing(self, change_id: str) -> Event | None:
        """The event of change ``change_id`` that stands (None: none stands), the one a
        ``cancel`` must name to withdraw it."""
        return self._standing().get(change_id)

    def _standing(self) -> dict[str, Event]:
        latest: dict[str, tuple[int, Event]] = {}
        for key, event in self._events.items():
            if key in self._cancelled:
                continue
            data = event.data
            assert isinstance(data, ServiceChangeData)
            order = self._order[key]
            if data.change_id not in latest or latest[data.change_id][0] < order:
                latest[data.change_id] = (order, event)
        return {change_id: event for change_id, (_, event) in latest.items()}


def _service_change(event: Event) -> ServiceChange:
    data = event.data
    assert isinstance(data, ServiceChangeData)
    direction = None if data.expected_direction is None else Direction(data.expected_direction)
    return ServiceChange(data.change_id, data.team, data.measures, event.time, data.description, direction)


def change_rebase(changes: Iterable[ServiceChange], local_date: LocalDate) -> dict[tuple[str, str], list[date]]:
    """(team, measure) -> the local dates of the changes that start a group on that chart."""
    out: dict[tuple[str, str], list[date]] = {}
    for change in changes:
        for measure in change.measures or tuple(RATE_MEASURES):
            out.setdefault((change.team, measure), []).append(local_date(change.time))
    return {key: sorted(set(days)) for key, days in out.items()}


def merged_rebase(
    configured: Mapping[tuple[str, str], date], changes: Mapping[tuple[str, str], Sequence[date]]
) -> dict[tuple[str, str], list[date]]:
    """Configured rebase points and the changes' together, per (team, measure)."""
    out = {key: list(days) for key, days in changes.items()}
    for key, day in configured.items():
        out.setdefault(key, []).append(day)
    return {key: sorted(set(days)) for key, days in out.items()}


def judge_changes(
    config: AlertRulesConfig,
    windows: TeamWindows,
    watermark: datetime,
    changes: Sequence[ServiceChange],
    local_date: LocalDate,
) -> list[dict[str, Any]]:
    """The report's ``"changes"``: one entry per change (its fields and, per measure it
    names, :class:`alerts.evidence.Evidence` as a dict), from the same judged weeks as the
    report's ``"spc"`` charts (minimum weekly denominator, look-back) at ``watermark``."""
    if not changes:
        return []
    rebase = merged_rebase(config.rebase, change_rebase(changes, local_date))
    cache: dict[tuple[str, str], list[WeeklyValue]] = {}
    first = _first_week(windows, watermark)

    def series(team: str, measure: str) -> list[WeeklyValue]:
        if (team, measure) not in cache:
            points = lookback_covered(measure, windows.weekly_series(team, measure, watermark), first)
            cache[(team, measure)] = judged_points(points, config.spc_min_weekly_denominator)
        return cache[(team, measure)]

    entries = []
    for change in changes:
        evidence = evidence_for_change(
            change,
            series,
            RATE_MEASURES,
            local_date,
            lambda team, measure: rebase.get((team, measure), []),
            config.chart_settings,
        )
        entries.append(
            {
                "change_id": change.change_id,
                "team": change.team,
                "measures": None if change.measures is None else list(change.measures),
                "time": change.time.isoformat(),
                "description": change.description,
                "expected_direction": None if change.expected_direction is None else change.expected_direction.value,
                "evidence": {m: e.as_dict() for m, e in evidence.items()},
            }
        )
    return entries


def _first_week(windows: TeamWindows, watermark: datetime) -> date | None:
    """The first week with data in any all-teams series (the charts' look-back start)."""
    firsts = [points[0].week_start for m in RATE_MEASURES if (points := windows.weekly_series("*", m, watermark))]
    return min(firsts, default=None)


def local_date_in(tz: Any) -> LocalDate:
    """The provider's local date of an instant, in ``tz`` (a ``tzinfo``)."""

    def local(t: datetime) -> date:
        return t.astimezone(tz).date()

    return local


__all__ = [
    "ChangeRegister",
    "change_event",
    "cancel_event",
    "change_rebase",
    "file_changes",
    "judge_changes",
    "local_date_in",
    "merged_rebase",
    "write_change",
]


CHANGE_SOURCE = "pathwatch/change-add"
"""The ``source`` of the events ``pathwatch change add`` writes."""


def change_event(
    team: str,
    measures: Sequence[str] | None,
    day: date,
    description: str,
    tz: Any,
    expected_direction: str | None = None,
    change_id: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A ``service.change`` CloudEvent (a JSON-compatible dict) taking effect at the local
    midnight starting ``day`` in ``tz``. ``change_id`` defaults to the team, the date and the
    first words of the description (``north-20260301-warm-hand-offs``); ``event_id`` to a
    random UUID (a new event each time, so a corrected change replaces the earlier one by
    its ``change_id``). Not validated here: see :func:`write_change`."""
    import uuid

    if change_id is None:
        words = "-".join(re.findall(r"[a-z0-9]+", description.lower())[:4])
        change_id = f"{'all' if team == '*' else team}-{day:%Y%m%d}" + (f"-{words}" if words else "")
        change_id = change_id[:64].rstrip("-")
    data: dict[str, Any] = {"change_id": change_id, "team": team, "description": description}
    if measures:
        data["measures"] = list(measures)
    if expected_direction is not None:
        data["expected_direction"] = expected_direction
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": CHANGE_SOURCE,
        "type": "service.change",
        "time": datetime.combine(day, datetime.min.time(), tz).isoformat(),
        "data": data,
    }


def cancel_event(target: Event, raw_id: str, now: datetime, reason: str | None = None) -> dict[str, Any]:
    """A ``cancel`` withdrawing the change event ``target`` (from the target's ``source``: a
    cancel names an event of its own source) by the ``id`` it was published with, ``raw_id``
    (the decoder keeps a keyed pseudonym of it in ``target.id``), timed ``now``. Not
    validated here."""
    import uuid

    data: dict[str, Any] = {"cancels": raw_id}
    if reason:
        data["reason"] = reason
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": target.source,
        "type": "cancel",
        "time": now.isoformat(),
        # every cancel has a subject (the schema); a change names no person, so a fixed word
        "subject": "change",
        "data": data,
    }


RawIds = dict[tuple[str, str], str]
"""The decoded (``source``, ``id``) of each change event -> the ``id`` it was published with."""


def raw_id(event: Event, raw: bytes, raw_ids: RawIds) -> None:
    """Note the published ``id`` of ``event`` (decoded from ``raw``) when it is a change."""
    if event.type == "service.change":
        with contextlib.suppress(ValueError, KeyError, TypeError):
            raw_ids[event.key] = str(json.loads(raw)["id"])


def file_changes(path: Path, decoder: Decoder) -> tuple[ChangeRegister, RawIds]:
    """The service changes of a JSON-lines events file, taken in file order as a replay
    takes them (lines of other events are skipped unread), with their published ids. Raises
    ``OSError`` when the file cannot be read."""
    register, raw_ids = ChangeRegister(), RawIds()
    with path.open("rb") as stream:
        for number, line in enumerate(stream, start=1):
            if b"service.change" not in line and b"cancel" not in line:
                continue
            raw = line.rstrip(b"\r\n")
            event = decoder.decode_line(raw, str(path), number)
            if isinstance(event, Event) and register.handles(event):
                register.feed(event)
                raw_id(event, raw, raw_ids)
    return register, raw_ids


def write_change(event: Mapping[str, Any], decoder: Decoder, out: Path) -> None:
    """Check ``event`` as a worker would (:class:`schemas.decode.Decoder`) and append it as one
    JSON line to ``out`` (``-``: standard output). Raises ``ValueError`` with the dead letter's
    reason when it is refused (nothing is written), ``OSError`` when ``out`` cannot be written."""
    line = _checked(event, decoder)
    if str(out) == "-":
        sys.stdout.buffer.write(line + b"\n")
        sys.stdout.buffer.flush()
        return
    with out.open("ab") as stream:
        stream.write(line + b"\n")


def _checked(event: Mapping[str, Any], decoder: Decoder) -> bytes:
    """``event`` as one JSON line, once the decoder accepts it; else ``ValueError``."""
    line = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    result = decoder.decode(line, Origin(file="change add"))
    if isinstance(result, DeadLetter):
        raise ValueError(f"the change is refused: {result.reason}")
    return line


def publish_change(event: Mapping[str, Any], decoder: Decoder, settings: KafkaSettings, change_id: str | None = None) -> None:
    """Check ``event`` as :func:`write_change` does and publish it to the changes topic
    (``topics.changes``, created compacted if missing), keyed by its ``change_id`` (a
    ``cancel``: by the ``change_id`` of the change it withdraws, so that compaction keeps the
    withdrawal), waiting for the broker's acknowledgement. Raises ``ValueError`` when the
    event is refused or Kafka cannot be reached or fails."""
    import asyncio

    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from streams.topics import STACK_HINT, check_kafka, ensure_topics

    line = _checked(event, decoder)
    check_kafka(settings)
    ensure_topics(settings)

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.topics.changes, value=line, key=(change_id or str(event["data"]["change_id"])).encode()
            )
        finally:
            await producer.stop()

    try:
        asyncio.run(send())
    except KafkaError as exc:
        raise ValueError(f"Kafka at {settings.kafka_bootstrap} failed: {exc}; {STACK_HINT}") from None

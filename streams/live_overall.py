"""The all-teams series ``*`` live (issue 17 items 2 and 6; docs/spc.md, docs/metrics.md).

Stage 2 is partitioned by team, so no worker holds every team. Each worker publishes the share
of ``*`` its teams make (:meth:`streams.windows.TeamWindows.weekly_counts` of one team: per
rate measure, the weekly numerators and denominators, nothing else) to the shares topic
(``topics.overall_shares``, compacted, keyed by team), when it changed, at most once per tick
(:class:`SharePublisher`). Every worker reads that topic whole (:class:`Shares`, from the
beginning, as the changes topic); only the worker that holds the stage-2 partition ``*``
hashes to (:meth:`streams.live.Stage2.holds`) draws the ``*`` charts from the sum of the shares
(:func:`overall_charts`) and exports their gauges and the ``*`` change markers, so Prometheus
sees one series.

Each share is stamped with the sender's stage-2 watermark, each stage-2 partition held has a
mark so stamped (:func:`partition_key`), and all are sent again when the local day of the
watermark changes: the holder of ``*`` raises ``*``'s SpecialCause from them
(``streams.overall_alerts``) and keeps its state here (:data:`ALERTS_KEY`).

The sum equals the replay's ``*``: the replay's weekly series of ``*`` is the sum of its teams'
weekly counts, and every team is held by exactly one stage-2 partition. Keyed by team, a
share survives rebalances and restarts as it stands: whichever worker holds the team next
sends the same counts again (at the latest :data:`REFRESH_SECONDS` after it took the team).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from alerts.evidence import ServiceChange
from alerts.rules import SystemAlertRules
from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.model import ALL_TEAMS
from streams.changes import LocalDate, change_rebase
from streams.core import CoreConfig
from streams.live import partition_for
from streams.ports import Record
from streams.windows import TeamWindows

SHARE_VERSION = 1
REFRESH_SECONDS = 60.0
"""A worker sends its teams' shares again after this long even when they did not change, and
at once when the teams it holds change: a share in flight from a worker that has just lost the
team is overwritten."""

WeeklyCounts = Mapping[str, Mapping[int, Sequence[int]]]


def encode_share(counts: WeeklyCounts, watermark_us: int | None = None) -> bytes:
    """One share as the shares topic carries it: JSON, per measure the weeks (ISO date of
    the local Monday) with their [numerator, denominator], and the publishing worker's stage-2
    watermark (µs) when given: the counts are those of every observation up to it."""
    weeks = {
        measure: {date.fromordinal(week).isoformat(): [cell[0], cell[1]] for week, cell in sorted(cells.items())}
        for measure, cells in sorted(counts.items())
    }
    doc: dict[str, Any] = {"v": SHARE_VERSION, "weeks": weeks}
    if watermark_us is not None:
        doc["watermark_us"] = watermark_us
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_share(raw: bytes) -> dict[str, dict[int, list[int]]]:
    """The counts :func:`encode_share` wrote; ``ValueError`` on anything else."""
    return decode_stamped(raw)[0]


def decode_stamped(raw: bytes) -> tuple[dict[str, dict[int, list[int]]], int | None]:
    """The counts and the watermark (None: not stamped) :func:`encode_share` wrote;
    ``ValueError`` on anything else."""
    try:
        doc = json.loads(raw)
        if doc["v"] != SHARE_VERSION:
            raise ValueError(f"share version {doc['v']!r}, expected {SHARE_VERSION}")
        out: dict[str, dict[int, list[int]]] = {}
        for measure, cells in doc["weeks"].items():
            out[str(measure)] = {
                date.fromisoformat(week).toordinal(): [int(num), int(den)] for week, (num, den) in cells.items()
            }
        stamp = doc.get("watermark_us")
        return out, None if stamp is None else int(stamp)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a share: {exc!r}") from exc


def partition_key(partition: int) -> bytes:
    """The key of stage-2 ``partition``'s mark on the shares topic: a share of no counts, stamped
    with the watermark of the worker holding the partition (team names never start with NUL)."""
    return b"\x00stage2:" + str(partition).encode()


ALERTS_KEY = b"\x00alerts:*"
"""The key of the ``*`` system-alert state (:meth:`alerts.rules.SystemAlertRules.dump`) that
the worker holding ``*`` keeps on the shares topic, for the next one (``streams.overall_alerts``)."""


@dataclass(slots=True)
class Shares:
    """The shares topic as read so far: the latest share per key (team, or stage-2 partition
    for its mark), with its watermark, and the latest ``*`` alert state. Not thread-safe."""

    _latest: dict[bytes, dict[str, dict[int, list[int]]]] = field(default_factory=dict)
    _stamps: dict[bytes, int | None] = field(default_factory=dict)
    alert_state: bytes | None = None
    """The value last kept under :data:`ALERTS_KEY` (None: none)."""
    version: int = 0
    """Moves on every record that changes what stands."""

    def apply(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> DeadLetter | None:
        """Take one record; a tombstone withdraws its key. Returns the dead letter (the record
        changes nothing) of a record without a key or whose value is not a share."""
        if key == ALERTS_KEY:
            self.alert_state = value
            return None
        if value is None:
            self._stamps.pop(key or b"", None)
            if key is not None and self._latest.pop(key, None) is not None:
                self.version += 1
            return None
        origin = Origin(topic=topic, partition=partition, offset=offset)
        if key is None:
            return DeadLetter(DeadLetterKind.SCHEMA, "a share without a key (the team)", "key", origin, value)
        try:
            share, stamp = decode_stamped(value)
        except ValueError as exc:
            return DeadLetter(DeadLetterKind.SCHEMA, str(exc), "value", origin, value)
        if self._latest.get(key) != share or self._stamps.get(key) != stamp:
            self._latest[key] = share
            self._stamps[key] = stamp
            self.version += 1
        return None

    def windows(self, config: CoreConfig) -> TeamWindows:
        """The weekly series of ``*`` over every share (:meth:`TeamWindows.of_weekly_counts`)."""
        return TeamWindows.of_weekly_counts(self._latest.values(), config)

    def teams(self) -> list[str]:
        """The teams whose share stands (the stage-2 partitions' marks left out)."""
        return [key.decode() for key in self._latest if not key.startswith(b"\x00")]

    def lowest(self, partitions: int) -> int | None:
        """The watermark (µs) every share stands at: the lowest stamp over every share and the
        marks of stage-2 partitions ``0 .. partitions - 1``. None until each of those
        partitions has a mark, or while a share is not stamped: a team that no worker has
        published yet belongs to a partition whose mark is missing or held back."""
        if any(partition_key(q) not in self._stamps for q in range(partitions)):
            return None
        stamps = list(self._stamps.values())
        if not stamps or any(stamp is None for stamp in stamps):
            return None
        return min(stamp for stamp in stamps if stamp is not None)


def withdrawn(shares: Shares, held: Iterable[str], assigned: Iterable[int], partitions: int) -> list[str]:
    """The teams whose share stands on the topic, whose stage-2 partition is among
    ``assigned`` (this worker's), but which this worker does not hold: stage 2's store has
    none of their observations any more (every one retracted, and the worker restarted since).
    Their shares are to be withdrawn (a tombstone each): otherwise their last counts would
    stay in ``*`` and their old watermark would hold the ``*`` alerts back for good."""
    mine, kept = set(assigned), set(held)
    return [t for t in shares.teams() if t not in kept and partition_for(t.encode(), partitions) in mine]


@dataclass(frozen=True, slots=True)
class Stamp:
    """As of when a worker's shares are taken: its stage-2 watermark (µs), the local day of it
    (ordinal) and the stage-2 partitions it holds."""

    watermark_us: int
    day: int
    partitions: Sequence[int]


@dataclass(slots=True)
class SharePublisher:
    """Which shares of the teams a worker holds are to be sent: those that changed since sent,
    all of them (and the held partitions' marks) when the teams held changed, when the local
    day of the stamp's watermark changed, or :data:`REFRESH_SECONDS` after the last full send."""

    topic: str
    _sent: dict[str, bytes] = field(default_factory=dict)
    _counts: dict[str, bytes] = field(default_factory=dict)
    _full_at: float | None = None
    _day: int | None = None

    def pending(self, held: Mapping[str, TeamWindows], now: float, stamp: Stamp | None = None) -> list[tuple[str, bytes]]:
        """(key, share) to send now, ``now`` on a monotonic clock (seconds); the key is the
        team's name, or a partition's mark (:func:`partition_key`) when ``stamp`` is given.
        Call :meth:`sent` once the broker has them."""
        teams = sorted(set(held) - {ALL_TEAMS})
        day = None if stamp is None else stamp.day
        full = (
            self._full_at is None or now - self._full_at >= REFRESH_SECONDS or set(teams) != set(self._sent)
            or day != self._day
        )  # fmt: skip
        if full:
            self._sent = {team: b"" for team in teams}
            self._full_at = now
            self._day = day
        self._counts = {team: encode_share(held[team].weekly_counts()) for team in teams}
        if stamp is None:
            return [(team, share) for team, share in self._counts.items() if self._sent.get(team) != share]
        out = [
            (team, encode_share(held[team].weekly_counts(), stamp.watermark_us))
            for team, share in self._counts.items()
            if self._sent.get(team) != share
        ]
        if full:
            out += [(partition_key(q).decode(), encode_share({}, stamp.watermark_us)) for q in stamp.partitions]
        return out

    def sent(self, shares: Sequence[tuple[str, bytes]]) -> None:
        self._sent.update((team, self._counts.get(team, share)) for team, share in shares if team in self._sent)

    def records(self, shares: Sequence[tuple[str, bytes]]) -> list[Record]:
        """``shares`` as records for :func:`streams.faust_io.send_records`."""
        return [(self.topic, team.encode(), share, None, None) for team, share in shares]


def overall_charts(
    rules: SystemAlertRules, windows: TeamWindows, watermark: datetime, changes: Sequence[ServiceChange],
    local_date: LocalDate,
) -> list[dict[str, Any]]:
    """The ``"spc"`` entries of ``*`` from ``windows`` (:meth:`Shares.windows`) at ``watermark``,
    with a group starting at each provider-wide change, as the report draws them."""
    return rules.charts(windows, watermark, (), change_rebase(changes, local_date))


__all__ = [
    "ALERTS_KEY",
    "REFRESH_SECONDS",
    "Stamp",
    "decode_stamped",
    "partition_key",
    "withdrawn",
    "SharePublisher",
    "Shares",
    "decode_share",
    "encode_share",
    "overall_charts",
]

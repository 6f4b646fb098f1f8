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

The sum equals the replay's ``*``: the replay's weekly series of ``*`` is the sum of its teams'
weekly counts, and every team is held by exactly one stage-2 partition. Keyed by team, a
share survives rebalances and restarts as it stands: whichever worker holds the team next
sends the same counts again (at the latest :data:`REFRESH_SECONDS` after it took the team).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from alerts.evidence import ServiceChange
from alerts.rules import SystemAlertRules
from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.model import ALL_TEAMS
from streams.changes import LocalDate, change_rebase
from streams.core import CoreConfig
from streams.ports import Record
from streams.windows import TeamWindows

SHARE_VERSION = 1
REFRESH_SECONDS = 60.0
"""A worker sends its teams' shares again after this long even when they did not change, and
at once when the teams it holds change: a share in flight from a worker that has just lost the
team is overwritten."""

WeeklyCounts = Mapping[str, Mapping[int, Sequence[int]]]


def encode_share(counts: WeeklyCounts) -> bytes:
    """One share as the shares topic carries it: JSON, per measure the weeks (ISO date of
    the local Monday) with their [numerator, denominator]."""
    weeks = {
        measure: {date.fromordinal(week).isoformat(): [cell[0], cell[1]] for week, cell in sorted(cells.items())}
        for measure, cells in sorted(counts.items())
    }
    return json.dumps({"v": SHARE_VERSION, "weeks": weeks}, separators=(",", ":")).encode()


def decode_share(raw: bytes) -> dict[str, dict[int, list[int]]]:
    """The counts :func:`encode_share` wrote; ``ValueError`` on anything else."""
    try:
        doc = json.loads(raw)
        if doc["v"] != SHARE_VERSION:
            raise ValueError(f"share version {doc['v']!r}, expected {SHARE_VERSION}")
        out: dict[str, dict[int, list[int]]] = {}
        for measure, cells in doc["weeks"].items():
            out[str(measure)] = {
                date.fromisoformat(week).toordinal(): [int(num), int(den)] for week, (num, den) in cells.items()
            }
        return out
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a share: {exc!r}") from exc


@dataclass(slots=True)
class Shares:
    """The shares topic as read so far: the latest share per key (team). Not thread-safe."""

    _latest: dict[bytes, dict[str, dict[int, list[int]]]] = field(default_factory=dict)
    version: int = 0
    """Moves on every record that changes what stands."""

    def apply(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> DeadLetter | None:
        """Take one record; a tombstone withdraws its key. Returns the dead letter (the record
        changes nothing) of a record without a key or whose value is not a share."""
        if value is None:
            if key is not None and self._latest.pop(key, None) is not None:
                self.version += 1
            return None
        origin = Origin(topic=topic, partition=partition, offset=offset)
        if key is None:
            return DeadLetter(DeadLetterKind.SCHEMA, "a share without a key (the team)", "key", origin, value)
        try:
            share = decode_share(value)
        except ValueError as exc:
            return DeadLetter(DeadLetterKind.SCHEMA, str(exc), "value", origin, value)
        if self._latest.get(key) != share:
            self._latest[key] = share
            self.version += 1
        return None

    def windows(self, config: CoreConfig) -> TeamWindows:
        """The weekly series of ``*`` over every share (:meth:`TeamWindows.of_weekly_counts`)."""
        return TeamWindows.of_weekly_counts(self._latest.values(), config)


@dataclass(slots=True)
class SharePublisher:
    """Which shares of the teams a worker holds are to be sent: those that changed since sent,
    all of them when the teams held changed or :data:`REFRESH_SECONDS` after the last full send."""

    topic: str
    _sent: dict[str, bytes] = field(default_factory=dict)
    _full_at: float | None = None

    def pending(self, held: Mapping[str, TeamWindows], now: float) -> list[tuple[str, bytes]]:
        """(team, share) to send now, ``now`` on a monotonic clock (seconds); call
        :meth:`sent` once the broker has them."""
        teams = sorted(set(held) - {ALL_TEAMS})
        full = self._full_at is None or now - self._full_at >= REFRESH_SECONDS or set(teams) != set(self._sent)
        if full:
            self._sent = {team: b"" for team in teams}
            self._full_at = now
        shares = [(team, encode_share(held[team].weekly_counts())) for team in teams]
        return [(team, share) for team, share in shares if self._sent.get(team) != share]

    def sent(self, shares: Sequence[tuple[str, bytes]]) -> None:
        self._sent.update(shares)

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
    "REFRESH_SECONDS",
    "SharePublisher",
    "Shares",
    "decode_share",
    "encode_share",
    "overall_charts",
]

"""The notification log: what each receiver has been told, and the pure dedup decision.

An entry per (receiver, alert fingerprint) holds the last alert state delivered to that
receiver and when. :func:`needs_update` decides from (entry, alert, now) alone whether to
send, like Alertmanager's ``DedupStage.needsUpdate``; it is a pure function so every case is
a row in a table test.

Two implementations of :class:`NotificationLog`: :class:`RedisNotificationLog` (shared by all
workers, survives restarts) and :class:`MemoryNotificationLog` (tests, replay). Redis keys
hold the receiver name and the fingerprint only; values hold the alert (labels carry a
pseudonym, never a raw identifier).

Re-fires: an alert that fires again after it resolved must carry a ``starts_at`` later than
the episode the receiver already knows; a firing or resolved state of an *older* episode is
``STALE`` (a replay after a restart re-emits old transitions, and they must not be resent).

When in doubt, send: a resolved state the log has no record of firing is sent
(``RESOLVED_UNKNOWN``). The log may have been lost (Redis restarted empty) after the receiver
was told the alert fired, and a resolve the receiver never needed is harmless, where a
missing one leaves a stale alert active.

Claims and owners: a delivery claim names its owner's token; owners say they are alive with
:meth:`NotificationLog.heartbeat`. A claim whose owner has not beaten within its time-out (a
process killed with SIGKILL) is taken over by the next claimer, so delivery resumes within
that time-out, not the claim's own, longer, lifetime.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from alerts.model import Alert, Status


class NotifyReason(StrEnum):
    """Why a receiver is (or is not) notified of an alert state."""

    NEW_FIRING = "new firing alert"
    RESOLVED = "alert resolved"
    REPEAT = "repeat interval elapsed"
    RESOLVED_NOT_SENT = "resolved, receiver does not take resolved alerts"
    ALREADY_SENT = "already sent"
    STALE = "older than what the receiver was told"
    RESOLVED_UNKNOWN = "resolved, not in the log: sent in case the receiver was told it fired"

    @property
    def send(self) -> bool:
        """The receiver gets the alert."""
        return self in _SEND

    @property
    def record(self) -> bool:
        """The log is updated (after a successful send when :attr:`send`)."""
        return self in _SEND or self is NotifyReason.RESOLVED_NOT_SENT


_SEND = frozenset(
    {NotifyReason.NEW_FIRING, NotifyReason.RESOLVED, NotifyReason.REPEAT, NotifyReason.RESOLVED_UNKNOWN}
)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """The last state of an alert delivered to one receiver, and when it was delivered."""

    alert: Alert
    sent_at: datetime

    def to_json(self) -> bytes:
        a = self.alert
        return json.dumps(
            {
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "startsAt": a.starts_at.isoformat(),
                "endsAt": None if a.ends_at is None else a.ends_at.isoformat(),
                "sentAt": self.sent_at.isoformat(),
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> LogEntry:
        """Raises ``ValueError`` on anything :meth:`to_json` did not write."""
        try:
            doc = json.loads(data)
            ends = doc["endsAt"]
            alert = Alert(
                labels=dict(doc["labels"]),
                starts_at=datetime.fromisoformat(doc["startsAt"]),
                ends_at=None if ends is None else datetime.fromisoformat(ends),
                annotations=dict(doc["annotations"]),
            )
            return cls(alert=alert, sent_at=datetime.fromisoformat(doc["sentAt"]))
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a notification log entry: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ResendPolicy:
    """A receiver's re-send rules.

    ``repeat_interval``: re-send an unchanged state this often (None: never).
    ``resolved_retention``: how long after ``ends_at`` a resolved alert keeps being re-sent
    at ``repeat_interval`` (Alertmanager expects resolved alerts for a while; zero: once).
    ``send_resolved``: whether the receiver gets resolved alerts at all.
    """

    repeat_interval: timedelta | None = None
    resolved_retention: timedelta = timedelta(0)
    send_resolved: bool = True


def needs_update(entry: LogEntry | None, alert: Alert, now: datetime, policy: ResendPolicy) -> NotifyReason:
    """Decide whether ``alert`` goes to a receiver whose log entry is ``entry``.

    Pure: the same arguments always give the same reason. ``now`` must be timezone-aware.
    """
    firing = alert.status is Status.FIRING
    if entry is None:
        if firing:
            return NotifyReason.NEW_FIRING
        return NotifyReason.RESOLVED_UNKNOWN if policy.send_resolved else NotifyReason.RESOLVED_NOT_SENT

    known = entry.alert
    if alert.starts_at < known.starts_at:
        return NotifyReason.STALE
    newer_episode = alert.starts_at > known.starts_at
    known_firing = known.status is Status.FIRING

    if firing:
        if newer_episode:
            return NotifyReason.NEW_FIRING
        if not known_firing:
            return NotifyReason.STALE
        return NotifyReason.REPEAT if _repeat_due(entry, now, policy) else NotifyReason.ALREADY_SENT

    # The alert is resolved.
    if known_firing:
        return NotifyReason.RESOLVED if policy.send_resolved else NotifyReason.RESOLVED_NOT_SENT
    if newer_episode:  # its firing is not in the log either: the log may have lost it
        return NotifyReason.RESOLVED_UNKNOWN if policy.send_resolved else NotifyReason.RESOLVED_NOT_SENT
    assert known.ends_at is not None
    if (
        policy.send_resolved
        and now < known.ends_at + policy.resolved_retention
        and _repeat_due(entry, now, policy)
    ):
        return NotifyReason.REPEAT
    return NotifyReason.ALREADY_SENT


def _repeat_due(entry: LogEntry, now: datetime, policy: ResendPolicy) -> bool:
    return policy.repeat_interval is not None and now - entry.sent_at >= policy.repeat_interval


class NotificationLog(Protocol):
    """Where deliveries are recorded. Every method may raise on a storage outage; callers
    keep the alerts and retry later rather than send without knowing."""

    async def get_many(self, receiver: str, fingerprints: Iterable[str]) -> dict[str, LogEntry]:
        """Entries of ``receiver`` for those fingerprints that have one."""
        ...

    async def record(self, receiver: str, entries: Iterable[LogEntry]) -> None:
        """Store entries (each replaces the previous one of its fingerprint)."""
        ...

    async def entries(self, receiver: str) -> list[LogEntry]:
        """Every live entry of ``receiver`` (used to resume re-sends after a restart)."""
        ...

    async def heartbeat(self, token: str, now: datetime, timeout: timedelta) -> None:
        """Say that the owner of ``token`` is alive at ``now``: its claims stand for
        ``timeout``; after that, unless it beats again, any claimer takes them over. (A shared
        log may measure the time-out by its own clock rather than ``now``.)"""
        ...

    async def claim(self, receiver: str, fingerprint: str, token: str, ttl: timedelta, now: datetime) -> bool:
        """Take the right to deliver this alert to ``receiver`` for ``ttl``; False if another
        owner holds it and is alive at ``now`` (see :meth:`heartbeat`). A claim held by
        ``token`` already counts as taken by it; a claim whose owner is not alive is taken over."""
        ...

    async def release(self, receiver: str, fingerprint: str, token: str) -> None:
        """Give a claim back (no-op unless held by ``token``)."""
        ...

    async def claim_many(
        self, receiver: str, fingerprints: Sequence[str], token: str, ttl: timedelta, now: datetime
    ) -> list[bool]:
        """:meth:`claim` for each of ``fingerprints`` at once (one round trip): whether each
        was taken. On an error none is known to be taken; those that were time out."""
        ...

    async def release_many(self, receiver: str, fingerprints: Sequence[str], token: str) -> None:
        """:meth:`release` for each of ``fingerprints`` at once (one round trip)."""
        ...


class MemoryNotificationLog:
    """In-process log for tests and replay. Entries do not expire; claims end only by
    release or when their owner is no longer alive (a missed :meth:`heartbeat`)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], bytes] = {}
        self._claims: dict[tuple[str, str], str] = {}
        self._alive_until: dict[str, datetime] = {}

    async def get_many(self, receiver: str, fingerprints: Iterable[str]) -> dict[str, LogEntry]:
        found = {}
        for fp in fingerprints:
            raw = self._entries.get((receiver, fp))
            if raw is not None:
                found[fp] = LogEntry.from_json(raw)
        return found

    async def record(self, receiver: str, entries: Iterable[LogEntry]) -> None:
        for entry in entries:
            self._entries[(receiver, entry.alert.fingerprint)] = entry.to_json()

    async def entries(self, receiver: str) -> list[LogEntry]:
        return [LogEntry.from_json(raw) for (r, _), raw in sorted(self._entries.items()) if r == receiver]

    async def heartbeat(self, token: str, now: datetime, timeout: timedelta) -> None:
        self._alive_until[token] = now + timeout

    async def claim(self, receiver: str, fingerprint: str, token: str, ttl: timedelta, now: datetime) -> bool:
        holder = self._claims.get((receiver, fingerprint))
        if holder is not None and holder != token:
            alive_until = self._alive_until.get(holder)
            if alive_until is not None and now <= alive_until:
                return False
        self._claims[(receiver, fingerprint)] = token
        return True

    async def release(self, receiver: str, fingerprint: str, token: str) -> None:
        if self._claims.get((receiver, fingerprint)) == token:
            del self._claims[(receiver, fingerprint)]

    async def claim_many(
        self, receiver: str, fingerprints: Sequence[str], token: str, ttl: timedelta, now: datetime
    ) -> list[bool]:
        return [await self.claim(receiver, fp, token, ttl, now) for fp in fingerprints]

    async def release_many(self, receiver: str, fingerprints: Sequence[str], token: str) -> None:
        for fp in fingerprints:
            await self.release(receiver, fp, token)


# One command for a whole delivery batch (a pipeline of one command per alert cost the client
# more than the rest of delivery; bench_live.py --separate-delivery). A single claim or
# release is a batch of one.
# ARGV: token, claim ttl (ms), the owner-key prefix. A holder is alive while its owner key
# exists (it expires by Redis's clock, so the hosts' clock skew plays no part).
_CLAIM_MANY = """
local taken = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('get', key)
  if v == ARGV[1] then redis.call('pexpire', key, ARGV[2]) taken[i] = 1
  elseif v and redis.call('exists', ARGV[3] .. v) == 1 then taken[i] = 0
  else redis.call('set', key, ARGV[1], 'PX', ARGV[2]) taken[i] = 1 end
end
return taken
"""
_RELEASE_MANY = """
for _, key in ipairs(KEYS) do
  if redis.call('get', key) == ARGV[1] then redis.call('del', key) end
end
return 0
"""
_RECORD_MANY = """
local px = ARGV[#ARGV]
for i, key in ipairs(KEYS) do redis.call('set', key, ARGV[i], 'PX', px) end
return 0
"""


class RedisNotificationLog:
    """The shared log in Redis: ``{prefix}:e:{receiver}:{fingerprint}`` holds an entry as JSON
    and expires ``retention`` after its last write; ``{prefix}:c:{receiver}:{fingerprint}``
    is a delivery claim (its owner's token) with its own time-out; ``{prefix}:o:{token}``
    exists while that owner counts as alive. Time-outs run on Redis's clock: ``now`` is not
    used, so the clocks of the hosts need not agree.

    Redis errors (``redis.exceptions.ConnectionError`` and friends) propagate to the caller.
    """

    def __init__(self, redis: Any, prefix: str = "pathwatch:nflog", retention: timedelta = timedelta(days=35)) -> None:
        self._redis = redis
        self._prefix = prefix
        self._retention_ms = int(retention.total_seconds() * 1000)
        # EVALSHA, falling back to EVAL once per connection when Redis lacks the script
        self._claim_many = redis.register_script(_CLAIM_MANY)
        self._release_many = redis.register_script(_RELEASE_MANY)
        self._record_many = redis.register_script(_RECORD_MANY)

    def _key(self, kind: str, receiver: str, fingerprint: str) -> str:
        return f"{self._prefix}:{kind}:{receiver}:{fingerprint}"

    async def get_many(self, receiver: str, fingerprints: Iterable[str]) -> dict[str, LogEntry]:
        fps = list(fingerprints)
        if not fps:
            return {}
        raws = await self._redis.mget([self._key("e", receiver, fp) for fp in fps])
        return {fp: LogEntry.from_json(raw) for fp, raw in zip(fps, raws, strict=True) if raw is not None}

    async def record(self, receiver: str, entries: Iterable[LogEntry]) -> None:
        batch = list(entries)
        if batch:  # one script: all of the batch is written, or none of it
            keys = [self._key("e", receiver, entry.alert.fingerprint) for entry in batch]
            await self._record_many(keys=keys, args=[entry.to_json() for entry in batch] + [self._retention_ms])

    async def entries(self, receiver: str) -> list[LogEntry]:
        keys = [key async for key in self._redis.scan_iter(match=self._key("e", receiver, "*"), count=500)]
        if not keys:
            return []
        raws = await self._redis.mget(keys)
        return [LogEntry.from_json(raw) for raw in raws if raw is not None]

    async def heartbeat(self, token: str, now: datetime, timeout: timedelta) -> None:
        await self._redis.set(f"{self._prefix}:o:{token}", b"1", px=max(1, int(timeout.total_seconds() * 1000)))

    async def claim(self, receiver: str, fingerprint: str, token: str, ttl: timedelta, now: datetime) -> bool:
        return (await self.claim_many(receiver, [fingerprint], token, ttl, now))[0]

    async def release(self, receiver: str, fingerprint: str, token: str) -> None:
        await self.release_many(receiver, [fingerprint], token)

    async def claim_many(
        self, receiver: str, fingerprints: Sequence[str], token: str, ttl: timedelta, now: datetime
    ) -> list[bool]:
        if not fingerprints:
            return []
        keys = [self._key("c", receiver, fp) for fp in fingerprints]
        args = [token, int(ttl.total_seconds() * 1000), f"{self._prefix}:o:"]
        taken = await self._claim_many(keys=keys, args=args)
        return [bool(t) for t in taken]

    async def release_many(self, receiver: str, fingerprints: Sequence[str], token: str) -> None:
        if not fingerprints:
            return
        await self._release_many(keys=[self._key("c", receiver, fp) for fp in fingerprints], args=[token])


def entries_by_fingerprint(entries: Iterable[LogEntry]) -> Mapping[str, LogEntry]:
    return {e.alert.fingerprint: e for e in entries}

"""The dedup decision, table-tested (like Alertmanager's TestDedupStageNeedsUpdate), and the
notification-log contract run against the in-memory log (the Redis log runs the same contract
in tests/integration/test_redis_nflog.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from alerts.model import Alert
from alerts.nflog import (
    LogEntry,
    MemoryNotificationLog,
    NotificationLog,
    NotifyReason,
    ResendPolicy,
    needs_update,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
LABELS = {"alertname": "FollowUpDue", "team": "north", "client": "p-7f3a", "severity": "warning"}
M = timedelta(minutes=1)


def firing(start: datetime = T0) -> Alert:
    return Alert(LABELS, start)


def resolved(start: datetime = T0, end: datetime = T0 + 30 * M) -> Alert:
    return Alert(LABELS, start, end)


ONCE = ResendPolicy()  # Kafka, webhook: each transition once
AM = ResendPolicy(repeat_interval=M, resolved_retention=15 * M)  # Alertmanager
NO_RESOLVED = ResendPolicy(send_resolved=False)
N = NotifyReason

CASES = [
    # (id, entry, alert, now, policy, expected)
    ("first firing", None, firing(), T0, ONCE, N.NEW_FIRING),
    # when in doubt, send: the log may have been lost after the receiver was told it fired
    ("resolved, not in the log", None, resolved(), T0 + 30 * M, ONCE, N.RESOLVED_UNKNOWN),
    ("resolved, not in the log, receiver takes no resolved", None, resolved(), T0 + 30 * M, NO_RESOLVED,
     N.RESOLVED_NOT_SENT),
    ("same firing again", LogEntry(firing(), T0), firing(), T0 + 5 * M, ONCE, N.ALREADY_SENT),
    ("same firing, no repeat even after a day", LogEntry(firing(), T0), firing(), T0 + timedelta(days=1), ONCE, N.ALREADY_SENT),
    ("same firing inside the repeat interval", LogEntry(firing(), T0), firing(), T0 + 59 * timedelta(seconds=1), AM, N.ALREADY_SENT),
    ("same firing at the repeat interval", LogEntry(firing(), T0), firing(), T0 + M, AM, N.REPEAT),
    ("resolves", LogEntry(firing(), T0), resolved(), T0 + 30 * M, ONCE, N.RESOLVED),
    ("resolves, receiver takes no resolved", LogEntry(firing(), T0), resolved(), T0 + 30 * M, NO_RESOLVED, N.RESOLVED_NOT_SENT),
    ("resolved again", LogEntry(resolved(), T0 + 30 * M), resolved(), T0 + 31 * M, ONCE, N.ALREADY_SENT),
    ("resolved re-sent to Alertmanager within retention", LogEntry(resolved(), T0 + 30 * M), resolved(), T0 + 31 * M, AM, N.REPEAT),
    ("resolved not re-sent inside the interval", LogEntry(resolved(), T0 + 30 * M), resolved(), T0 + 30 * M + 30 * timedelta(seconds=1), AM, N.ALREADY_SENT),
    ("resolved not re-sent after retention", LogEntry(resolved(), T0 + 44 * M), resolved(), T0 + 45 * M, AM, N.ALREADY_SENT),
    ("old firing replayed after it resolved", LogEntry(resolved(), T0 + 30 * M), firing(), T0 + 31 * M, ONCE, N.STALE),
    ("re-fires with a later start", LogEntry(resolved(), T0 + 30 * M), firing(T0 + 40 * M), T0 + 40 * M, ONCE, N.NEW_FIRING),
    ("new episode while receiver thinks the old fires", LogEntry(firing(), T0), firing(T0 + 40 * M), T0 + 40 * M, ONCE, N.NEW_FIRING),
    ("firing of an older episode", LogEntry(firing(T0 + 40 * M), T0 + 40 * M), firing(), T0 + 41 * M, ONCE, N.STALE),
    ("resolution of an older episode", LogEntry(firing(T0 + 40 * M), T0 + 40 * M), resolved(), T0 + 41 * M, ONCE, N.STALE),
    ("resolved episode whose firing is not in the log", LogEntry(resolved(), T0 + 30 * M),
     resolved(T0 + 40 * M, T0 + 50 * M), T0 + 50 * M, ONCE, N.RESOLVED_UNKNOWN),
]


@pytest.mark.parametrize(("entry", "alert", "now", "policy", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_needs_update(entry: LogEntry | None, alert: Alert, now: datetime, policy: ResendPolicy, expected: NotifyReason) -> None:
    assert needs_update(entry, alert, now, policy) is expected


def test_reasons_say_whether_to_send_and_record() -> None:
    assert {r for r in NotifyReason if r.send} == {N.NEW_FIRING, N.RESOLVED, N.REPEAT, N.RESOLVED_UNKNOWN}
    assert {r for r in NotifyReason if r.record} == {
        N.NEW_FIRING, N.RESOLVED, N.REPEAT, N.RESOLVED_UNKNOWN, N.RESOLVED_NOT_SENT}


def test_entry_round_trips_through_json() -> None:
    entry = LogEntry(Alert(LABELS, T0, T0 + M, {"summary": "Follow-up due"}), T0 + 2 * M)
    assert LogEntry.from_json(entry.to_json()) == entry
    with pytest.raises(ValueError, match="not a notification log entry"):
        LogEntry.from_json(b'{"labels": {}}')


async def run_log_contract(
    log: NotificationLog, receiver: str = "contract", wait: Callable[[float], Awaitable[None]] | None = None
) -> None:
    """What every NotificationLog must do; run against memory here and Redis in integration.

    ``wait(seconds)`` lets that much real time pass, for a log that measures owners'
    time-outs by its own clock (Redis); the in-memory log goes by the ``now`` passed."""
    a = Alert(LABELS, T0)
    b = Alert({**LABELS, "client": "p-other"}, T0)
    assert await log.get_many(receiver, [a.fingerprint]) == {}
    await log.record(receiver, [LogEntry(a, T0)])
    assert await log.get_many(receiver, [a.fingerprint, b.fingerprint]) == {a.fingerprint: LogEntry(a, T0)}
    assert await log.get_many(receiver + "-other", [a.fingerprint]) == {}
    later = LogEntry(Alert(LABELS, T0, T0 + M), T0 + M)
    await log.record(receiver, [later, LogEntry(b, T0)])
    got = await log.get_many(receiver, [a.fingerprint, b.fingerprint])
    assert got == {a.fingerprint: later, b.fingerprint: LogEntry(b, T0)}
    assert sorted(e.alert.fingerprint for e in await log.entries(receiver)) == sorted([a.fingerprint, b.fingerprint])
    await log.record(receiver, [])

    ttl = timedelta(minutes=1)
    for owner in ("w1", "w2", "w3"):  # alive throughout
        await log.heartbeat(owner, T0, timedelta(minutes=10))
    assert await log.claim(receiver, a.fingerprint, "w1", ttl, T0)
    assert await log.claim(receiver, a.fingerprint, "w1", ttl, T0)  # held by w1 already
    assert not await log.claim(receiver, a.fingerprint, "w2", ttl, T0)
    assert await log.claim(receiver, b.fingerprint, "w2", ttl, T0)
    await log.release(receiver, a.fingerprint, "w2")  # not w2's: no effect
    assert not await log.claim(receiver, a.fingerprint, "w2", ttl, T0)
    await log.release(receiver, a.fingerprint, "w1")
    assert await log.claim(receiver, a.fingerprint, "w2", ttl, T0)

    # many at once: each as claim/release would answer it
    c = Alert({**LABELS, "client": "p-third"}, T0)
    assert await log.claim_many(receiver, [], "w3", ttl, T0) == []
    fps = [a.fingerprint, c.fingerprint, b.fingerprint]
    assert await log.claim_many(receiver, fps, "w3", ttl, T0) == [False, True, False]
    assert await log.claim_many(receiver, fps, "w2", ttl, T0) == [True, False, True]
    await log.release_many(receiver, fps, "w2")  # a and b were w2's; c stays w3's
    assert await log.claim_many(receiver, fps, "w3", ttl, T0) == [True, True, True]
    await log.release_many(receiver, [], "w3")

    # the claims of an owner that stopped beating (killed) are taken over after its time-out
    d = Alert({**LABELS, "client": "p-fourth"}, T0)
    timeout = timedelta(seconds=2)
    await log.heartbeat("killed", T0, timeout)
    assert await log.claim_many(receiver, [d.fingerprint], "killed", ttl, T0) == [True]
    await log.heartbeat("next", T0, 10 * timeout)
    assert await log.claim_many(receiver, [d.fingerprint], "next", ttl, T0 + timeout / 2) == [False]
    if wait is not None:
        await wait(timeout.total_seconds() * 1.25)
    assert await log.claim(receiver, d.fingerprint, "next", ttl, T0 + timeout * 1.25)
    assert not await log.claim(receiver, d.fingerprint, "killed", ttl, T0 + timeout * 1.25)  # next is alive
    # a claim whose owner never beat is nobody's
    e = Alert({**LABELS, "client": "p-fifth"}, T0)
    assert await log.claim(receiver, e.fingerprint, "silent", ttl, T0)
    assert await log.claim(receiver, e.fingerprint, "next", ttl, T0)


async def test_memory_log_contract() -> None:
    await run_log_contract(MemoryNotificationLog())

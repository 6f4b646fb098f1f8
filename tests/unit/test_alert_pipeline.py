"""The delivery stages with fake receivers, a fake clock and the in-memory log."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from alerts.model import Alert
from alerts.nflog import LogEntry, MemoryNotificationLog, ResendPolicy
from alerts.pipeline import Dispatcher, ReceiverSpec, RetryPolicy, WebhookTarget, build_dispatcher
from alerts.receivers import SendResult
from alerts.routing import Route, parse_matchers
from pathwatch.bootstrap import receivers_config
from pathwatch.config import Settings

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
S = timedelta(seconds=1)
M = timedelta(minutes=1)


def alert(client: str = "p-1", team: str = "north", start: datetime = T0, end: datetime | None = None) -> Alert:
    return Alert({"alertname": "FollowUpDue", "team": team, "client": client, "severity": "warning"}, start, end)


class FakeNotifier:
    def __init__(self, name: str, results: Iterable[SendResult] = ()) -> None:
        self.name = name
        self.results = list(results)
        self.batches: list[list[Alert]] = []
        self.attempts = 0

    async def send(self, alerts: Sequence[Alert]) -> SendResult:
        self.attempts += 1
        result = self.results.pop(0) if self.results else SendResult.success()
        if result.ok:
            self.batches.append(list(alerts))
        return result

    @property
    def delivered(self) -> list[tuple[str, str]]:
        return [(a.labels["client"], a.status.value) for batch in self.batches for a in batch]


class FlakyLog(MemoryNotificationLog):
    """The memory log, with an outage switch and a switch for failing only writes."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.writes_down = False

    def _check(self, write: bool = False) -> None:
        if self.down or (write and self.writes_down):
            raise RedisConnectionError("Connection refused")

    async def get_many(self, receiver: str, fingerprints: Iterable[str]) -> dict[str, LogEntry]:
        self._check()
        return await super().get_many(receiver, fingerprints)

    async def record(self, receiver: str, entries: Iterable[LogEntry]) -> None:
        self._check(write=True)
        await super().record(receiver, entries)

    async def heartbeat(self, token: str, now: datetime, timeout: timedelta) -> None:
        self._check(write=True)
        await super().heartbeat(token, now, timeout)

    async def claim(self, receiver: str, fingerprint: str, token: str, ttl: timedelta, now: datetime) -> bool:
        self._check()
        return await super().claim(receiver, fingerprint, token, ttl, now)

    async def release(self, receiver: str, fingerprint: str, token: str) -> None:
        self._check(write=True)
        await super().release(receiver, fingerprint, token)


ONCE = ResendPolicy()
DEFAULT_RETRY = RetryPolicy()


def dispatcher(notifier: FakeNotifier, log: MemoryNotificationLog | None = None, policy: ResendPolicy = ONCE,
               retry: RetryPolicy = DEFAULT_RETRY, worker_id: str | None = None, max_batch: int = 64) -> Dispatcher:
    return Dispatcher([ReceiverSpec(notifier, policy, max_batch)], [Route(notifier.name)], log or MemoryNotificationLog(),
                      clock=lambda: T0, retry=retry, worker_id=worker_id)


async def test_each_transition_delivered_once() -> None:
    hook = FakeNotifier("webhook")
    d = dispatcher(hook)
    await d.dispatch([alert("p-1"), alert("p-2")], T0)
    await d.dispatch([alert("p-1")], T0 + M)  # the same firing again (e.g. replayed)
    await d.dispatch([alert("p-1", end=T0 + 2 * M)], T0 + 2 * M)
    await d.dispatch([alert("p-1"), alert("p-1", end=T0 + 2 * M)], T0 + 3 * M)  # old transitions replayed
    assert hook.delivered == [("p-1", "firing"), ("p-2", "firing"), ("p-1", "resolved")]
    assert d.stats.get("webhook", "sent") == 3
    assert d.pending() == 0


async def test_firing_and_resolved_of_one_alert_go_in_order_in_separate_batches() -> None:
    hook = FakeNotifier("webhook")
    await dispatcher(hook).dispatch([alert("p-1"), alert("p-2"), alert("p-1", end=T0 + M)], T0 + M)
    assert [[(a.labels["client"], a.status.value) for a in b] for b in hook.batches] == [
        [("p-1", "firing"), ("p-2", "firing")],
        [("p-1", "resolved")],
    ]


async def test_a_restarted_worker_does_not_resend() -> None:
    log = MemoryNotificationLog()
    hook = FakeNotifier("webhook")
    await dispatcher(hook, log).dispatch([alert("p-1"), alert("p-2")], T0)
    await dispatcher(hook, log).dispatch([alert("p-2"), alert("p-1", end=T0 + M)], T0 + M)
    assert hook.delivered == [("p-1", "firing"), ("p-2", "firing"), ("p-1", "resolved")]


async def test_two_workers_on_one_log_deliver_once() -> None:
    log = MemoryNotificationLog()
    hook = FakeNotifier("webhook")
    first, second = dispatcher(hook, log, worker_id="w1"), dispatcher(hook, log, worker_id="w2")
    await first.dispatch([alert("p-1")], T0)
    await second.dispatch([alert("p-1"), alert("p-2")], T0)
    await first.dispatch([alert("p-2")], T0)
    assert hook.delivered == [("p-1", "firing"), ("p-2", "firing")]


async def test_a_claimed_alert_waits_for_the_other_worker() -> None:
    log = MemoryNotificationLog()
    hook = FakeNotifier("webhook")
    busy = alert("p-1")
    await log.heartbeat("other-worker", T0, M)  # alive
    assert await log.claim("webhook", busy.fingerprint, "other-worker", M, T0)
    d = dispatcher(hook, log, worker_id="me")
    await d.dispatch([busy], T0)
    assert hook.delivered == []
    assert d.pending() == 1
    await log.release("webhook", busy.fingerprint, "other-worker")
    await d.dispatch([], T0 + S)
    assert hook.delivered == [("p-1", "firing")]


async def test_alerts_another_worker_holds_do_not_hold_back_the_rest() -> None:
    # a worker killed mid-delivery leaves its claims until its heartbeat times out: the
    # alerts they cover wait, every other alert of the receiver goes at once
    log = MemoryNotificationLog()
    hook = FakeNotifier("webhook")
    stuck = alert("p-1")
    await log.heartbeat("killed-worker", T0, DEFAULT_RETRY.owner_timeout)
    assert await log.claim("webhook", stuck.fingerprint, "killed-worker", 2 * M, T0)
    d = dispatcher(hook, log, worker_id="me")
    await d.dispatch([stuck, alert("p-2"), alert("p-3")], T0)
    await d.dispatch([alert("p-4")], T0 + S / 2)
    assert hook.delivered == [("p-2", "firing"), ("p-3", "firing"), ("p-4", "firing")]
    assert d.pending() == 1
    assert d.stats.get("webhook", "contended") == 1
    await d.dispatch([alert("p-1", end=T0 + S)], T0 + S)  # its resolution: held too
    assert hook.delivered[3:] == []
    assert d.pending() == 2
    await log.release("webhook", stuck.fingerprint, "killed-worker")  # the claim was given back
    await d.dispatch([], T0 + 3 * S)
    assert hook.delivered[3:] == [("p-1", "firing"), ("p-1", "resolved")]  # in order
    assert d.pending() == 0


async def test_the_claims_of_a_killed_worker_are_taken_over_after_its_heartbeat_times_out() -> None:
    # issue 14 point 2: a SIGKILL left claims that held delivery back until they timed out
    log = MemoryNotificationLog()
    hook = FakeNotifier("webhook")
    killed = dispatcher(FakeNotifier("webhook", [SendResult.retry("the process dies here")]), log, worker_id="killed")
    await killed.dispatch([alert("p-1")], T0)  # claimed, beaten, never delivered: then SIGKILL
    assert await log.claim("webhook", alert("p-1").fingerprint, "killed", M, T0)  # still its claim
    restarted = dispatcher(hook, log, worker_id="restarted")
    await restarted.dispatch([alert("p-1"), alert("p-1", end=T0 + 5 * S)], T0 + 5 * S)
    assert hook.delivered == []
    assert restarted.stalled_seconds(T0 + 10 * S) == {"webhook": 5.0}
    timeout = DEFAULT_RETRY.owner_timeout
    await restarted.dispatch([], T0 + timeout)  # the killed worker's last beat is just in time
    assert hook.delivered == []
    await restarted.dispatch([], T0 + timeout + S)
    assert hook.delivered == [("p-1", "firing"), ("p-1", "resolved")]
    assert restarted.pending() == 0
    assert restarted.stalled_seconds(T0 + timeout + 2 * S) == {"webhook": 0.0}


async def test_a_live_worker_keeps_its_claims_by_beating() -> None:
    log = MemoryNotificationLog()
    busy = alert("p-1")
    other = dispatcher(FakeNotifier("webhook"), log, worker_id="other")
    assert await log.claim("webhook", busy.fingerprint, "other", M, T0)
    hook = FakeNotifier("webhook")
    me = dispatcher(hook, log, worker_id="me")
    timeout = DEFAULT_RETRY.owner_timeout
    for step in range(1, 8):  # the other worker beats on each of its own calls
        now = T0 + step * timeout / 2
        await other.dispatch([], now)
        await me.dispatch([busy] if step == 1 else [], now)
    assert hook.delivered == []


async def test_a_send_that_never_answers_is_retried_not_waited_for() -> None:
    class Hung(FakeNotifier):
        async def send(self, alerts: Sequence[Alert]) -> SendResult:
            if not self.attempts:
                self.attempts += 1
                await asyncio.Event().wait()  # a producer or HTTP peer that never answers
            return await super().send(alerts)

    hook = Hung("webhook")
    d = dispatcher(hook, retry=RetryPolicy(send_timeout=timedelta(milliseconds=10)))
    await d.dispatch([alert("p-1")], T0)
    assert d.stats.get("webhook", "retry") == 1
    assert d.pending() == 1
    assert d.stalled_seconds(T0 + 3 * S) == {"webhook": 3.0}
    await d.dispatch([], T0 + 2 * S)
    assert hook.delivered == [("p-1", "firing")]


async def test_a_lost_log_does_not_lose_resolves() -> None:
    # Redis restarted empty after the firing was delivered: the resolve is still sent
    hook = FakeNotifier("webhook")
    first = dispatcher(hook, MemoryNotificationLog())
    await first.dispatch([alert("p-1")], T0)
    after_loss = dispatcher(hook, MemoryNotificationLog())
    await after_loss.dispatch([alert("p-1", end=T0 + M)], T0 + M)
    assert hook.delivered == [("p-1", "firing"), ("p-1", "resolved")]
    await after_loss.dispatch([alert("p-1", end=T0 + M)], T0 + 2 * M)  # once
    assert len(hook.delivered) == 2


async def test_retryable_failure_backs_off_exponentially_then_delivers() -> None:
    hook = FakeNotifier("webhook", [SendResult.retry("HTTP 503"), SendResult.retry("HTTP 503")])
    d = dispatcher(hook, retry=RetryPolicy(initial=S, factor=2))
    await d.dispatch([alert("p-1")], T0)  # attempt 1 fails: wait 1 s
    await d.dispatch([], T0 + S / 2)  # too early: no attempt
    assert hook.attempts == 1
    await d.dispatch([], T0 + S)  # attempt 2 fails: wait 2 s
    await d.dispatch([], T0 + 2 * S)
    assert hook.attempts == 2
    await d.dispatch([alert("p-2")], T0 + 3 * S)  # attempt 3 succeeds, in order
    assert hook.delivered == [("p-1", "firing"), ("p-2", "firing")]
    assert d.stats.get("webhook", "retry") == 2


async def test_flush_ignores_backoff() -> None:
    hook = FakeNotifier("webhook", [SendResult.retry("HTTP 503")])
    d = dispatcher(hook, retry=RetryPolicy(initial=timedelta(hours=1)))
    await d.dispatch([alert("p-1")], T0)
    assert await d.flush(T0 + S) == 0
    assert hook.delivered == [("p-1", "firing")]


async def test_backoff_is_capped() -> None:
    policy = RetryPolicy(initial=S, factor=2, maximum=10 * S)
    assert [policy.delay(n).total_seconds() for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]


async def test_non_retryable_failure_drops_the_batch() -> None:
    hook = FakeNotifier("webhook", [SendResult.fail("HTTP 400")])
    d = dispatcher(hook)
    await d.dispatch([alert("p-1")], T0)
    await d.dispatch([alert("p-2")], T0 + S)
    assert hook.delivered == [("p-2", "firing")]
    assert d.stats.get("webhook", "failed") == 1
    assert d.pending() == 0


async def test_bounded_buffer_drops_the_oldest() -> None:
    hook = FakeNotifier("webhook", [SendResult.retry("down")] * 10)
    d = dispatcher(hook, retry=RetryPolicy(buffer_size=2, initial=timedelta(hours=1)), max_batch=1)
    await d.dispatch([alert("p-1"), alert("p-2"), alert("p-3")], T0)
    assert d.pending() == 2
    assert d.stats.get("webhook", "dropped_full") == 1
    hook.results = []
    await d.flush(T0 + S)
    assert hook.delivered == [("p-2", "firing"), ("p-3", "firing")]


async def test_log_outage_delays_but_never_duplicates_or_loses() -> None:
    log = FlakyLog()
    hook = FakeNotifier("webhook")
    d = dispatcher(hook, log)
    await d.dispatch([alert("p-1")], T0)
    log.down = True
    await d.dispatch([alert("p-2"), alert("p-1", end=T0 + M)], T0 + M)
    await d.dispatch([alert("p-2")], T0 + 2 * M)  # still down; the duplicate p-2 is buffered too
    assert hook.delivered == [("p-1", "firing")]
    assert d.stats.get("webhook", "storage_error") >= 1
    log.down = False
    await d.dispatch([], T0 + 10 * M)
    assert hook.delivered == [("p-1", "firing"), ("p-2", "firing"), ("p-1", "resolved")]
    assert d.pending() == 0


async def test_alertmanager_keeps_getting_its_alerts_while_the_log_is_down() -> None:
    # Alertmanager de-duplicates by itself: without the log, a re-send is harmless and a
    # missing one ends the alert there (endsAt a few re-send intervals ahead)
    log = FlakyLog()
    am = FakeNotifier("alertmanager")
    d = dispatcher(am, log, policy=ResendPolicy(repeat_interval=M, resolved_retention=15 * M))
    await d.dispatch([alert("p-1")], T0)
    log.down = True
    await d.dispatch([alert("p-2")], T0 + 30 * S)  # new while down: sent
    await d.dispatch([], T0 + 70 * S)  # p-1's re-send, from what this process knows
    await d.dispatch([alert("p-2", end=T0 + 80 * S)], T0 + 80 * S)  # resolved while down: sent
    assert am.delivered == [("p-1", "firing"), ("p-2", "firing"), ("p-1", "firing"), ("p-2", "resolved")]
    assert d.pending() == 0
    log.down = False
    await d.dispatch([], T0 + 100 * S)  # the log takes what was sent meanwhile
    assert set(await log.get_many("alertmanager", [alert("p-1").fingerprint, alert("p-2").fingerprint])) == {
        alert("p-1").fingerprint, alert("p-2").fingerprint}
    assert len(am.delivered) == 4


async def test_sent_but_unrecorded_is_remembered_until_the_log_takes_it() -> None:
    log = FlakyLog()
    hook = FakeNotifier("webhook")
    d = dispatcher(hook, log)
    log.writes_down = True
    await d.dispatch([alert("p-1")], T0)
    assert hook.delivered == [("p-1", "firing")]
    assert d.stats.get("webhook", "record_deferred") == 1
    log.writes_down = False
    await d.dispatch([alert("p-1")], T0 + M)
    assert hook.delivered == [("p-1", "firing")]
    assert (await log.get_many("webhook", [alert("p-1").fingerprint]))[alert("p-1").fingerprint].sent_at == T0
    # the claim kept during the outage is released once the log has the entry
    assert await log.claim("webhook", alert("p-1").fingerprint, "another", M, T0 + M)


async def test_alertmanager_policy_resends_firing_and_resolved_for_a_while() -> None:
    am = FakeNotifier("alertmanager")
    d = dispatcher(am, policy=ResendPolicy(repeat_interval=M, resolved_retention=15 * M))
    await d.dispatch([alert("p-1")], T0)
    await d.dispatch([], T0 + 30 * S)
    await d.dispatch([], T0 + M)  # repeat
    await d.dispatch([alert("p-1", end=T0 + 90 * S)], T0 + 90 * S)  # resolved
    await d.dispatch([], T0 + 2 * M)  # 30 s after the resolved send: not yet
    for minute in range(3, 20):
        await d.dispatch([], T0 + minute * M)
    # resolved re-sent each minute until 15 minutes after its end (T0 + 16.5 min)
    assert am.delivered == [("p-1", "firing")] * 2 + [("p-1", "resolved")] * 15
    assert d.stats.get("alertmanager", "repeated") == 15


async def test_restore_resumes_resends_after_restart() -> None:
    log = MemoryNotificationLog()
    policy = ResendPolicy(repeat_interval=M, resolved_retention=15 * M)
    am = FakeNotifier("alertmanager")
    await dispatcher(am, log, policy).dispatch([alert("p-1")], T0)
    restarted = dispatcher(am, log, policy)
    await restarted.restore()
    await restarted.dispatch([], T0 + 30 * S)
    await restarted.dispatch([], T0 + M)
    assert am.delivered == [("p-1", "firing")] * 2


async def test_routes_pick_receivers() -> None:
    north, kafka = FakeNotifier("north-webhook"), FakeNotifier("kafka")
    routes = [Route("kafka"), Route("north-webhook", tuple(parse_matchers('team="north", client=~".+"')))]
    d = Dispatcher([ReceiverSpec(kafka), ReceiverSpec(north)], routes, MemoryNotificationLog())
    await d.dispatch([alert("p-1", team="north"), alert("p-2", team="south")], T0)
    assert north.delivered == [("p-1", "firing")]
    assert kafka.delivered == [("p-1", "firing"), ("p-2", "firing")]


def test_dispatcher_rejects_unknown_or_duplicate_receivers() -> None:
    with pytest.raises(ValueError, match="unknown receivers"):
        Dispatcher([ReceiverSpec(FakeNotifier("a"))], [Route("b")], MemoryNotificationLog())
    with pytest.raises(ValueError, match="unique"):
        Dispatcher([ReceiverSpec(FakeNotifier("a")), ReceiverSpec(FakeNotifier("a"))], [], MemoryNotificationLog())


class NoProducer:
    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> None:
        return None


def test_build_dispatcher_from_settings() -> None:
    settings = Settings(alertmanager_url="http://127.0.0.1:9093", webhook_url="http://127.0.0.1:9999/hook")
    session = object()
    d = build_dispatcher(receivers_config(settings), None, NoProducer(), session, {"kafka": "", "alertmanager": 'alertname=~".+"',  # type: ignore[arg-type]
                         "webhook": "", "north": 'team="north"'},
                         webhooks={"north": WebhookTarget("http://127.0.0.1:9999/north")})
    assert d.receivers == ["kafka", "alertmanager", "webhook", "north"]
    assert build_dispatcher(receivers_config(Settings(alertmanager_url=None, webhook_url=None)), None, None, None).receivers == []
    with pytest.raises(ValueError, match="http_session"):
        build_dispatcher(receivers_config(settings), None, None, None)
    with pytest.raises(ValueError, match="unknown receivers"):
        build_dispatcher(receivers_config(Settings(alertmanager_url=None, webhook_url=None)), None, None, None, {"webhook": ""})

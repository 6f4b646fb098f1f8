"""Alert delivery: routing, dedup against the notification log, retry with backoff, a bounded
buffer and recording, written once for every receiver (STYLE.md 4).

Flow of :meth:`Dispatcher.dispatch`, per receiver ("lane"):

1. routing (:mod:`alerts.routing`) puts each alert state in the lanes whose route matches;
   each lane has a bounded FIFO buffer; when it is full the oldest state is dropped and counted;
2. a batch (distinct fingerprints, in order) is *claimed* in the log so two workers do not
   deliver the same alert at once, then each alert is checked with
   :func:`alerts.nflog.needs_update` against the receiver's log entry;
3. what needs sending is sent; on success the log is updated; on a retryable failure, or when
   the log is unreachable, the batch goes back to the front of the buffer and the lane waits
   (exponential backoff) before the next attempt; on a non-retryable failure the batch is
   dropped and counted;
4. receivers whose policy re-sends (Alertmanager) get firing alerts again every repeat
   interval, and resolved ones for the policy's retention.

Nothing is sent without consulting the log, so a Redis outage delays delivery but does not
duplicate it, except to receivers that re-send (Alertmanager): they de-duplicate by
themselves, so during an outage they get new states and re-sends from what this process
knows, and the log is written when it is back. A log that comes back empty (Redis lost its data) makes the dispatcher send what
it cannot rule out: resolved states are sent (:data:`alerts.nflog.NotifyReason.RESOLVED_UNKNOWN`),
and Alertmanager keeps getting the firing alerts this process knows of, each with an
``endsAt`` a few re-send intervals ahead, so an alert nobody re-sends resolves by itself.

Claims carry this process's token, and the dispatcher beats for it in the log on every call
(at most every quarter of ``RetryPolicy.owner_timeout``, and on a timer of the caller's). The claims of a process that died
(SIGKILL) are taken over once its last beat is ``owner_timeout`` old, so delivery resumes
within that time after a kill, whoever delivers next (its own restart or another process).
A send that does not answer within ``RetryPolicy.send_timeout`` counts as a retryable
failure, so a hung receiver or producer cannot hold a lane (and every lane after it) for good.
:meth:`Dispatcher.stalled_seconds` says how long each receiver has owed alert states without
delivering any (the ``pathwatch_alert_delivery_stalled_seconds`` gauge). When a send succeeded and the log write then failed, the entry is kept in memory
(and the claim is left to time out) until the log takes it. One window stays at-least-once:
a worker that dies between a successful send and the log write resends after restart.

The dispatcher owns no connections: the caller opens and closes the Redis client, the Kafka
producer and the HTTP session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from pydantic import SecretStr
from redis.exceptions import RedisError

from alerts.model import Alert, Status
from alerts.nflog import (
    LogEntry,
    MemoryNotificationLog,
    NotificationLog,
    NotifyReason,
    RedisNotificationLog,
    ResendPolicy,
    needs_update,
)
from alerts.receivers import (
    AlertmanagerReceiver,
    KafkaProducerLike,
    KafkaReceiver,
    Notifier,
    SendResult,
    WebhookReceiver,
)
from alerts.routing import Route, parse_routes, receivers_for

log = logging.getLogger(__name__)

STORAGE_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
ALERTMANAGER_RESOLVED_RETENTION = timedelta(minutes=15)
# a firing alert posted to Alertmanager ends this many re-send intervals later unless re-sent
# (Prometheus uses 4): a few missed re-sends do not end it, a process that lost track does
ALERTMANAGER_VALIDITY_RESENDS = 4


@dataclass(frozen=True, slots=True)
class ReceiverSpec:
    """A notifier with its re-send policy and largest batch."""

    notifier: Notifier
    policy: ResendPolicy = ResendPolicy()
    max_batch: int = 64

    @property
    def name(self) -> str:
        return self.notifier.name


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff after a failed attempt: ``initial × factor^(n-1)``, at most ``maximum``.

    ``buffer_size`` bounds each receiver's buffer; ``claim_ttl`` bounds how long a claim
    lives in the log at most; ``owner_timeout``: how long after its last heartbeat a
    process's claims are taken over by others (the bound on resuming after a kill);
    ``send_timeout``: a send not answered by then is a retryable failure.
    """

    initial: timedelta = timedelta(seconds=1)
    factor: float = 2.0
    maximum: timedelta = timedelta(minutes=5)
    buffer_size: int = 10_000
    claim_ttl: timedelta = timedelta(minutes=2)
    owner_timeout: timedelta = timedelta(seconds=15)
    send_timeout: timedelta = timedelta(seconds=30)

    def delay(self, attempts: int) -> timedelta:
        seconds = self.initial.total_seconds() * self.factor ** max(attempts - 1, 0)
        return min(timedelta(seconds=seconds), self.maximum)


@dataclass(slots=True)
class DispatchStats:
    """Counts per (receiver, outcome); outcomes: sent, repeated, skipped, dropped_full,
    failed, retry, storage_error, contended, record_deferred."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, receiver: str, outcome: str, n: int = 1) -> None:
        if n:
            self.counts[(receiver, outcome)] += n

    def get(self, receiver: str, outcome: str) -> int:
        return self.counts[(receiver, outcome)]


@dataclass(slots=True)
class _Lane:
    spec: ReceiverSpec
    queue: deque[Alert] = field(default_factory=deque)
    attempts: int = 0
    next_attempt: datetime | None = None
    unrecorded: dict[str, LogEntry] = field(default_factory=dict)
    # alert states another worker held the claim of: tried again from ``held_until`` on,
    # without holding back the rest of the lane
    held: list[Alert] = field(default_factory=list)
    held_until: datetime | None = None
    active: dict[str, Alert] = field(default_factory=dict)
    last_sent: dict[str, datetime] = field(default_factory=dict)
    # the batch being delivered now, and since when the lane owes states without delivering
    in_flight: int = 0
    owing_since: datetime | None = None

    def owed(self) -> int:
        return len(self.queue) + len(self.held) + self.in_flight

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def repeats(self) -> bool:
        return self.spec.policy.repeat_interval is not None


def _newer(candidate: Alert, known: Alert | None) -> bool:
    if known is None or candidate.starts_at > known.starts_at:
        return True
    return candidate.starts_at == known.starts_at and candidate.status is Status.RESOLVED


class Dispatcher:
    """Delivers alert transitions to receivers, each transition once per receiver.

    Call :meth:`dispatch` with the transitions the rules return, and also periodically with
    an empty list (on each tick) to drive re-sends and retries. :meth:`flush` tries every
    buffered alert now, ignoring backoff. Never raises for delivery or storage failures: they
    are retried, or dropped and counted in :attr:`stats`.
    """

    def __init__(
        self,
        receivers: Sequence[ReceiverSpec],
        routes: Sequence[Route],
        nflog: NotificationLog,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retry: RetryPolicy = RetryPolicy(),
        worker_id: str | None = None,
    ) -> None:
        names = [r.name for r in receivers]
        if len(set(names)) != len(names):
            raise ValueError(f"receiver names must be unique: {names}")
        unknown = {r.receiver for r in routes} - set(names)
        if unknown:
            raise ValueError(f"routes name unknown receivers: {sorted(unknown)}")
        self._lanes = {r.name: _Lane(r) for r in receivers}
        self._routes = list(routes)
        self._log = nflog
        self._clock = clock
        self._retry = retry
        self._token = worker_id or uuid.uuid4().hex
        self._lock = asyncio.Lock()
        self._beaten_at: datetime | None = None
        self.stats = DispatchStats()

    @property
    def receivers(self) -> list[str]:
        return list(self._lanes)

    def pending(self, receiver: str | None = None) -> int:
        """Alert states buffered (for one receiver, or all)."""
        lanes = self._lanes.values() if receiver is None else [self._lanes[receiver]]
        return sum(lane.owed() for lane in lanes)

    def stalled_seconds(self, now: datetime) -> dict[str, float]:
        """Per receiver: seconds since it last delivered while owing alert states (0 when it
        owes none). Reads no lock, so it answers while a delivery hangs."""
        stalled = {}
        for name, lane in self._lanes.items():
            since = lane.owing_since if lane.owed() else None
            stalled[name] = max(0.0, (now - since).total_seconds()) if since is not None else 0.0
        return stalled

    async def dispatch(self, alerts: Sequence[Alert], now: datetime) -> None:
        """Route, buffer and try to deliver ``alerts`` (transitions, oldest first) at ``now``."""
        await self.heartbeat(now)
        for alert in alerts:
            for name in receivers_for(alert, self._routes):
                lane = self._lanes[name]
                self._enqueue(lane, alert, now)
                if lane.repeats and _newer(alert, lane.active.get(alert.fingerprint)):
                    lane.active[alert.fingerprint] = alert
        await self._run(now, force=False)

    async def flush(self, now: datetime | None = None) -> int:
        """Try every buffered alert now, ignoring backoff; return how many remain buffered."""
        now = now or self._clock()
        await self.heartbeat(now)
        await self._run(now, force=True)
        return self.pending()

    async def close(self) -> None:
        """Flush once. What stays buffered is logged (by count) and lost with this process."""
        left = await self.flush()
        if left:
            log.warning("closing alert dispatcher with %d alert states undelivered", left)

    async def restore(self) -> None:
        """After a restart: reload re-send candidates of repeating receivers from the log.

        Raises the log's error if it is unreachable (call again later).
        """
        for lane in self._lanes.values():
            if not lane.repeats:
                continue
            for entry in await self._log.entries(lane.name):
                fp = entry.alert.fingerprint
                if _newer(entry.alert, lane.active.get(fp)):
                    lane.active[fp] = entry.alert
                lane.last_sent[fp] = max(entry.sent_at, lane.last_sent.get(fp, entry.sent_at))

    async def heartbeat(self, now: datetime) -> None:
        """Tell the log this process is alive, so its claims stand for ``owner_timeout``.
        Called by every :meth:`dispatch` and :meth:`flush`; call it also on a timer of its
        own (every few seconds, well inside ``owner_timeout``) so the beat does not depend on
        the dispatch rate. Writes at most every quarter time-out; never raises."""
        timeout = self._retry.owner_timeout
        if self._beaten_at is not None and self._beaten_at <= now < self._beaten_at + timeout / 4:
            return
        try:
            await self._log.heartbeat(self._token, now, timeout)
        except STORAGE_ERRORS:
            return  # the claims need the log too: they wait for it anyway
        self._beaten_at = now

    def _enqueue(self, lane: _Lane, alert: Alert, now: datetime) -> None:
        if not lane.owed():
            lane.owing_since = now
        if len(lane.queue) >= self._retry.buffer_size:
            lane.queue.popleft()
            self.stats.add(lane.name, "dropped_full")
            log.warning("alert buffer of receiver %s is full: dropped its oldest alert state", lane.name)
        lane.queue.append(alert)

    async def _run(self, now: datetime, force: bool) -> None:
        async with self._lock:
            for lane in self._lanes.values():
                self._schedule_repeats(lane, now)
                if lane.held and (force or lane.held_until is None or now >= lane.held_until):
                    lane.queue.extendleft(reversed(lane.held))  # older than what is queued
                    lane.held.clear()
                if not force and lane.next_attempt is not None and now < lane.next_attempt:
                    continue
                await self._drain(lane, now)

    def _schedule_repeats(self, lane: _Lane, now: datetime) -> None:
        policy = lane.spec.policy
        if policy.repeat_interval is None:
            return
        queued = {a.fingerprint for a in lane.queue}
        for fp, alert in list(lane.active.items()):
            if alert.ends_at is not None and now >= alert.ends_at + policy.resolved_retention:
                del lane.active[fp]
                continue
            last = lane.last_sent.get(fp)
            if fp not in queued and last is not None and now - last >= policy.repeat_interval:
                self._enqueue(lane, alert, now)

    async def _drain(self, lane: _Lane, now: datetime) -> None:
        if lane.unrecorded and not lane.queue:  # nothing to deliver: still hand the log what it missed
            with contextlib.suppress(*STORAGE_ERRORS):
                await self._write_unrecorded(lane)
        while lane.queue:
            batch = self._take_batch(lane)
            lane.in_flight = len(batch)
            try:
                retry = await self._deliver(lane, batch, now)
            finally:
                lane.in_flight = 0
            if retry is not None:
                lane.queue.extendleft(reversed(retry))
                lane.attempts += 1
                lane.next_attempt = now + self._retry.delay(lane.attempts)
                return
            lane.attempts = 0
            lane.next_attempt = None

    def _take_batch(self, lane: _Lane) -> list[Alert]:
        batch: list[Alert] = []
        seen: set[str] = set()
        while lane.queue and len(batch) < lane.spec.max_batch:
            fp = lane.queue[0].fingerprint
            if fp in seen:
                break
            seen.add(fp)
            batch.append(lane.queue.popleft())
        return batch

    async def _deliver(self, lane: _Lane, batch: list[Alert], now: datetime) -> list[Alert] | None:
        """One attempt at a batch. None when the batch is done with (sent, skipped, dropped,
        or held back because another worker holds the claim); else the alert states to put
        back, and the lane backs off."""
        name = lane.name
        claimed: list[str] = []
        try:
            await self._write_unrecorded(lane)
            # claims go out together (one round trip, not one per alert)
            claims = await self._log.claim_many(
                name, [a.fingerprint for a in batch], self._token, self._retry.claim_ttl, now
            )
            contended = [a for a, ok in zip(batch, claims, strict=True) if not ok]
            if contended:
                # Another live process holds these (a dead one's are taken over once its
                # heartbeat is owner_timeout old): hold them back a while and deliver the rest
                # now. Failing the whole batch held every later alert of the lane back.
                self.stats.add(name, "contended", len(contended))
                if lane.held_until is None:  # once per episode, not at each retry
                    log.info("receiver %s: %d alert states held back while another delivery process "
                             "holds their claims", name, len(contended))
                lane.held.extend(contended)
                lane.held_until = now + self._retry.initial
                batch = [a for a, ok in zip(batch, claims, strict=True) if ok]
                if not batch:
                    return None
            elif not lane.held:
                lane.held_until = None
            claimed = [a.fingerprint for a in batch]
            entries = await self._log.get_many(name, [a.fingerprint for a in batch])
        except STORAGE_ERRORS as exc:
            self.stats.add(name, "storage_error")
            await self._release(name, claimed)
            if not lane.repeats:
                log.warning("notification log unavailable for receiver %s (%s): will retry", name, type(exc).__name__)
                return batch
            # A re-sending receiver (Alertmanager) de-duplicates by itself: a needless send is
            # harmless, a missing re-send ends the alert there. Send from what this process
            # knows; the log is written when it is back (lane.unrecorded).
            log.warning("notification log unavailable for receiver %s (%s): sending without it",
                        name, type(exc).__name__)
            claimed, entries = [], {}

        entries.update(lane.unrecorded)
        decisions = [(a, needs_update(entries.get(a.fingerprint), a, now, lane.spec.policy)) for a in batch]
        for alert, reason in decisions:
            if reason is NotifyReason.ALREADY_SENT and alert.fingerprint in entries:
                lane.last_sent[alert.fingerprint] = entries[alert.fingerprint].sent_at
        to_send = [a for a, r in decisions if r.send]
        result = await self._send(lane, to_send) if to_send else SendResult.success()
        if not result.ok:
            await self._release(name, claimed)
            if result.retryable:
                self.stats.add(name, "retry")
                log.warning("receiver %s failed, will retry: %s", name, result.detail)
                return batch
            self.stats.add(name, "failed", len(to_send))
            log.error("receiver %s rejected %d alert states, dropped: %s", name, len(to_send), result.detail)
            lane.owing_since = now
            return None

        self.stats.add(name, "sent", sum(1 for _, r in decisions if r in (NotifyReason.NEW_FIRING, NotifyReason.RESOLVED)))
        self.stats.add(name, "repeated", sum(1 for _, r in decisions if r is NotifyReason.REPEAT))
        self.stats.add(name, "skipped", sum(1 for _, r in decisions if not r.send))
        lane.owing_since = now
        records = [LogEntry(a, now) for a, r in decisions if r.record]
        for entry in records:
            lane.last_sent[entry.alert.fingerprint] = now
        try:
            await self._log.record(name, records)
        except STORAGE_ERRORS as exc:
            # Keep the claims: they keep other workers off these alerts until the log has them.
            self.stats.add(name, "record_deferred", len(records))
            log.warning("could not record deliveries to %s (%s): kept in memory", name, type(exc).__name__)
            lane.unrecorded.update({e.alert.fingerprint: e for e in records})
            return None
        await self._release(name, claimed)
        return None

    async def _send(self, lane: _Lane, alerts: list[Alert]) -> SendResult:
        timeout = self._retry.send_timeout.total_seconds()
        try:
            return await asyncio.wait_for(lane.spec.notifier.send(alerts), timeout)
        except TimeoutError:
            return SendResult.retry(f"no answer within {timeout:g} s")

    async def _write_unrecorded(self, lane: _Lane) -> None:
        if not lane.unrecorded:
            return
        pending = list(lane.unrecorded.values())
        await self._log.record(lane.name, pending)
        for entry in pending:
            fp = entry.alert.fingerprint
            if lane.unrecorded.get(fp) is entry:
                del lane.unrecorded[fp]
        await self._log.release_many(lane.name, [entry.alert.fingerprint for entry in pending], self._token)

    async def _release(self, receiver: str, fingerprints: Sequence[str]) -> None:
        # a release that fails is left to time out with its claim
        with contextlib.suppress(*STORAGE_ERRORS):
            await self._log.release_many(receiver, fingerprints, self._token)


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """A named webhook receiver (for example one care team's)."""

    url: str
    token: SecretStr | None = None
    repeat_interval: timedelta | None = None


@dataclass(frozen=True, slots=True)
class ReceiversConfig:
    """The receivers a deployment configures (settings ``topics.alerts``, ``alertmanager_url``,
    ``alertmanager_resend``, ``webhook_url``, ``webhook_token``, ``alert_routes``)."""

    alerts_topic: str = "pathwatch.alerts"
    alertmanager_url: str | None = None
    alertmanager_resend: timedelta = timedelta(minutes=1)
    webhook_url: str | None = None
    webhook_token: SecretStr | None = None
    routes: Mapping[str, str] = field(default_factory=dict)


def build_dispatcher(
    config: ReceiversConfig,
    redis_client: Any | None,
    kafka_producer: KafkaProducerLike | None,
    http_session: aiohttp.ClientSession | None,
    routes: Sequence[Route] | Mapping[str, str | Sequence[str]] | None = None,
    *,
    webhooks: Mapping[str, WebhookTarget] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    retry: RetryPolicy = RetryPolicy(),
) -> Dispatcher:
    """Delivery to the receivers of ``config`` (the composition root builds ``config``).

    Receivers, by name: ``kafka`` (when ``kafka_producer`` is given; topic
    ``config.alerts_topic``), ``alertmanager`` (when ``config.alertmanager_url``; re-sends
    firing alerts every ``config.alertmanager_resend``, each valid for 4 of those, and
    resolved ones for 15 minutes),
    ``webhook`` (when ``config.webhook_url``, bearer ``config.webhook_token``), and each of
    ``webhooks``. ``routes`` (or ``config.routes`` when not empty) maps receiver names to
    label matchers; without routes every receiver gets every alert. The log is Redis when
    ``redis_client`` is given, otherwise in memory. Raises ``ValueError`` when an HTTP receiver
    is configured without ``http_session`` or a route names an unknown receiver.
    """
    specs: list[ReceiverSpec] = []
    if kafka_producer is not None:
        specs.append(ReceiverSpec(KafkaReceiver(kafka_producer, config.alerts_topic), ResendPolicy()))
    http_targets = bool(config.alertmanager_url or config.webhook_url or webhooks)
    if http_targets and http_session is None:
        raise ValueError("an HTTP receiver is configured but no http_session was given")
    if config.alertmanager_url:
        assert http_session is not None
        specs.append(
            ReceiverSpec(
                AlertmanagerReceiver(
                    http_session, config.alertmanager_url,
                    firing_validity=ALERTMANAGER_VALIDITY_RESENDS * config.alertmanager_resend, clock=clock,
                ),
                ResendPolicy(config.alertmanager_resend, ALERTMANAGER_RESOLVED_RETENTION),
            )
        )
    all_webhooks: dict[str, WebhookTarget] = {}
    if config.webhook_url:
        all_webhooks["webhook"] = WebhookTarget(config.webhook_url, config.webhook_token)
    all_webhooks.update(webhooks or {})
    for name, target in all_webhooks.items():
        assert http_session is not None
        specs.append(
            ReceiverSpec(
                WebhookReceiver(http_session, target.url, name=name, token=target.token),
                ResendPolicy(target.repeat_interval),
            )
        )
    if routes is None:
        routes = config.routes or None
    if routes is None:
        parsed = [Route(spec.name) for spec in specs]
    elif isinstance(routes, Mapping):
        parsed = parse_routes(routes)
    else:
        parsed = list(routes)
    nflog: NotificationLog = RedisNotificationLog(redis_client) if redis_client is not None else MemoryNotificationLog()
    return Dispatcher(specs, parsed, nflog, clock=clock, retry=retry)

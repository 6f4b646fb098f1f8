"""A real HTTP webhook receives Alertmanager version-4 payloads; the Redis notification log
keeps deliveries once-only across a worker restart and between concurrent workers."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
import redis.asyncio as redis
from pydantic import SecretStr

from alerts.model import Alert
from alerts.pipeline import build_dispatcher
from pathwatch.bootstrap import receivers_config
from pathwatch.config import Settings
from tests.integration.alert_fixtures import WebhookRecorder, http_session, webhook  # noqa: F401

pytestmark = pytest.mark.integration
T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


def stream(run: str, clients: int = 12) -> list[tuple[datetime, Alert]]:
    """(now, transition) in order: each client's FollowUpDue fires, two thirds resolve later."""
    out = []
    for i in range(clients):
        labels = {"alertname": "FollowUpDue", "team": "north", "client": f"p-{run[:6]}-{i}", "severity": "warning"}
        start = T0 + timedelta(minutes=i)
        out.append((start, Alert(labels, start, None, {"summary": "Follow-up due", "team": "north"})))
        if i % 3:
            out.append((start + timedelta(hours=1), Alert(labels, start, start + timedelta(hours=1))))
    out.sort(key=lambda pair: pair[0])
    return out


def expected(events: list[tuple[datetime, Alert]]) -> Counter[tuple[str, str, str]]:
    return Counter((a.fingerprint, a.status.value, a.starts_at.isoformat().replace("+00:00", "Z")) for _, a in events)


async def test_webhook_gets_version_4_payloads_with_bearer_token(webhook: WebhookRecorder, http_session: aiohttp.ClientSession) -> None:  # noqa: F811
    settings = Settings(webhook_url=webhook.url, webhook_token=SecretStr("s3cret"), alertmanager_url=None)
    d = build_dispatcher(receivers_config(settings), None, None, http_session)
    events = stream(uuid.uuid4().hex, clients=3)
    for now, alert in events:
        await d.dispatch([alert], now)
    assert Counter(webhook.transitions()) == expected(events)
    for payload, headers in zip(webhook.payloads, webhook.headers, strict=True):
        assert payload["version"] == "4"
        assert payload["receiver"] == "webhook"
        assert payload["status"] in {"firing", "resolved"}
        assert headers["Authorization"] == "Bearer s3cret"
        for item in payload["alerts"]:
            assert set(item) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}


async def test_webhook_5xx_is_retried_until_delivered_once(webhook: WebhookRecorder, http_session: aiohttp.ClientSession) -> None:  # noqa: F811
    d = build_dispatcher(receivers_config(Settings(webhook_url=webhook.url, alertmanager_url=None)), None, None, http_session)
    webhook.fail_next = 2
    alert = stream(uuid.uuid4().hex, clients=1)[0][1]
    await d.dispatch([alert], T0)
    assert webhook.payloads == []
    await d.flush(T0 + timedelta(seconds=1))
    await d.flush(T0 + timedelta(seconds=3))
    await d.dispatch([alert], T0 + timedelta(seconds=4))
    assert len(webhook.transitions()) == 1
    assert d.stats.get("webhook", "retry") == 2


async def test_worker_restart_mid_run_delivers_no_transition_twice(
    webhook: WebhookRecorder, http_session: aiohttp.ClientSession, redis_url: str  # noqa: F811
) -> None:
    events = stream(uuid.uuid4().hex)
    settings = Settings(webhook_url=webhook.url, alertmanager_url=None)
    client = redis.Redis.from_url(redis_url)
    try:
        first = build_dispatcher(receivers_config(settings), client, None, http_session)
        cut = len(events) * 2 // 3
        for now, alert in events[:cut]:
            await first.dispatch([alert], now)
        # the worker dies without closing; its successor re-reads the stream from an earlier offset
        restarted_client = redis.Redis.from_url(redis_url)
        second = build_dispatcher(receivers_config(settings), restarted_client, None, http_session)
        for now, alert in events[cut // 2:]:
            await second.dispatch([alert], now)
        await restarted_client.aclose()
    finally:
        await client.aclose()
    assert Counter(webhook.transitions()) == expected(events)
    assert max(Counter(webhook.transitions()).values()) == 1


async def test_concurrent_workers_deliver_each_transition_once(
    webhook: WebhookRecorder, http_session: aiohttp.ClientSession, redis_url: str  # noqa: F811
) -> None:
    events = stream(uuid.uuid4().hex)
    settings = Settings(webhook_url=webhook.url, alertmanager_url=None)
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        workers = [build_dispatcher(receivers_config(settings), c, None, http_session) for c in clients]

        async def run(worker_index: int) -> None:
            worker = workers[worker_index]
            for now, alert in events:
                await worker.dispatch([alert], now)
                await asyncio.sleep(0)
            # a claim held by the other worker makes this one wait and retry
            while worker.pending():
                await worker.flush(events[-1][0] + timedelta(minutes=1))
                await asyncio.sleep(0.05)

        await asyncio.gather(run(0), run(1))
    finally:
        for c in clients:
            await c.aclose()
    assert Counter(webhook.transitions()) == expected(events)

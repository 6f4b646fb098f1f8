"""The Redis notification log: the shared contract on the stack's Redis, and a Redis outage
on a private redis-server (stopped and started again) with nothing lost or duplicated."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta

import aiohttp
import pytest
import redis.asyncio as redis

from alerts.nflog import RedisNotificationLog
from alerts.pipeline import build_dispatcher
from pathwatch.bootstrap import receivers_config
from pathwatch.config import Settings
from tests.integration.alert_fixtures import (  # noqa: F401
    PrivateRedis,
    WebhookRecorder,
    http_session,
    private_redis,
    webhook,
)
from tests.integration.test_webhook_delivery import expected, stream
from tests.unit.test_nflog import run_log_contract

pytestmark = pytest.mark.integration


async def test_redis_log_contract(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"pathwatch:test:{uuid.uuid4().hex}"
    try:
        # Redis times owners out by its own clock: the contract lets real time pass there
        await run_log_contract(RedisNotificationLog(client, prefix=prefix, retention=timedelta(minutes=5)),
                               wait=asyncio.sleep)
        keys = [k.decode() async for k in client.scan_iter(match=f"{prefix}:*")]
        assert keys
        # keys hold receiver names and fingerprints (16 hex digits), or an owner's token (the
        # contract's names here), only: never a client id
        assert all(len(k.rsplit(":", 1)[1]) == 16 for k in keys if ":o:" not in k)
        assert all("p-" not in k for k in keys)
        ttl = await client.pttl(next(k for k in keys if ":e:" in k))
        assert 0 < ttl <= 5 * 60 * 1000
    finally:
        async for key in client.scan_iter(match=f"{prefix}:*"):
            await client.delete(key)
        await client.aclose()


async def test_redis_outage_loses_nothing_and_duplicates_nothing(
    private_redis: PrivateRedis, webhook: WebhookRecorder, http_session: aiohttp.ClientSession  # noqa: F811
) -> None:
    events = stream(uuid.uuid4().hex)
    client = redis.Redis.from_url(private_redis.url, socket_connect_timeout=1, socket_timeout=2)
    try:
        d = build_dispatcher(receivers_config(Settings(webhook_url=webhook.url, alertmanager_url=None)), client, None, http_session)
        third = len(events) // 3
        for now, alert in events[:third]:
            await d.dispatch([alert], now)
        delivered_before = len(webhook.transitions())
        assert delivered_before == third

        private_redis.stop()
        # the stream goes on, with some transitions seen twice (a redelivered Kafka batch)
        for now, alert in events[third - 2: 2 * third]:
            await d.dispatch([alert], now)
        assert len(webhook.transitions()) == delivered_before  # nothing sent without the log
        assert d.stats.get("webhook", "storage_error") >= 1
        assert d.pending() > 0

        private_redis.start()
        for now, alert in events[2 * third:]:
            await d.dispatch([alert], now)
        assert await d.flush(events[-1][0] + timedelta(hours=1)) == 0
    finally:
        await client.aclose()
    assert Counter(webhook.transitions()) == expected(events)

"""Redis loss is not alert loss (issue 14, point 3).

A live worker delivers through its own redis-server, which goes down mid-stream and comes
back empty (its data deleted: the notification log and the claims are gone) while the worker
owes resolves of alerts it delivered before. Afterwards the alerts topic's final state of
each alert, and Alertmanager's active alerts, equal the replay report's alerts: nothing
resolved is left firing, nothing firing is missing."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from kafka import KafkaConsumer

from alerts.model import fingerprint
from schemas.pseudonym import Pseudonymiser
from streams.publish import publish
from tests.integration.alert_fixtures import PrivateRedis, eventually, private_redis  # noqa: F401 - fixture
from tests.integration.live_fixtures import PSEUDONYM_KEY, live_stack, replay_report, scrape, wait_ready
from tests.integration.support import Process
from tests.integration.test_delivery_recovery import _contact, _referral


def _final_states(bootstrap: str, topic: str, clients: set[str]) -> dict[str, str]:
    """Fingerprint -> status of the last record of each of our clients' alerts on ``topic``."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=1000)
    final: dict[str, str] = {}
    try:
        for message in consumer:  # keyed by fingerprint: one alert's states in order
            state = json.loads(message.value)
            if state["labels"].get("client") in clients:
                final[state["fingerprint"]] = state["status"]
    finally:
        consumer.close()
    return final


async def _active_in_alertmanager(url: str, clients: set[str]) -> set[str]:
    async with aiohttp.ClientSession() as session, session.get(
        f"{url}/api/v2/alerts", params={"filter": 'alertname="ReferralWaiting"'}
    ) as response:
        assert response.status == 200
        alerts = await response.json()
    return {a["fingerprint"] for a in alerts
            if a["labels"].get("client") in clients and a["status"]["state"] == "active"}


async def test_redis_restarted_empty_mid_stream_leaves_no_stale_or_missing_alert(
    kafka_bootstrap: str, alertmanager_url: str, unique: str, tmp_path: Path, processes: list[Process],
    private_redis: PrivateRedis,  # noqa: F811 - the fixture
) -> None:
    stack = live_stack(kafka_bootstrap, private_redis.url, unique, tmp_path)
    stack.env.update(PATHWATCH_ALERT_CLOCK="wall", PATHWATCH_ALERTMANAGER_URL=alertmanager_url)
    pseudonym = Pseudonymiser(PSEUDONYM_KEY.encode()).pseudonym
    referred = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    n = 150
    first = [f"MRN-{unique}-a-{i}" for i in range(n)]
    second = [f"MRN-{unique}-b-{i}" for i in range(n)]
    clients = {pseudonym(s) for s in first + second}
    # emergency referrals a day old fire ReferralWaiting; contacts 20 hours later resolve them
    phase_a = tmp_path / "a.jsonl"
    phase_a.write_bytes(b"".join(_referral(s, referred) for s in first))
    phase_b = tmp_path / "b.jsonl"
    phase_b.write_bytes(b"".join(_contact(s, referred + timedelta(hours=20)) + _referral(t, referred)
                                 for s, t in zip(first, second, strict=True)))
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes(phase_a.read_bytes() + phase_b.read_bytes())
    report = replay_report(whole, stack.settings)
    expected = {fingerprint(a["labels"]): a["status"] for a in report["alerts"]
                if a["labels"].get("client") in clients}
    assert sorted(expected.values()).count("resolved") == n
    assert sorted(expected.values()).count("firing") == n
    firing = {fp for fp, status in expected.items() if status == "firing"}
    alerts_topic = stack.env["PATHWATCH_TOPICS__ALERTS"]

    worker = stack.worker("worker")
    processes.append(worker)
    await asyncio.to_thread(wait_ready, worker)
    await publish(stack.settings, phase_a, "events")

    async def first_delivered() -> Any:
        final = await asyncio.to_thread(_final_states, kafka_bootstrap, alerts_topic, clients)
        return len(final) >= n and await _active_in_alertmanager(alertmanager_url, clients)

    await eventually(first_delivered, timeout=120, interval=0.5)

    # Redis goes down; the resolves of the delivered alerts (and new firings) come meanwhile;
    # Redis comes back with nothing: the log of what was delivered is lost
    private_redis.stop()
    await publish(stack.settings, phase_b, "events")

    async def outage_met() -> Any:  # the worker has these transitions in hand and no log
        return 'outcome="storage_error"' in await asyncio.to_thread(scrape, worker)

    await eventually(outage_met, timeout=60, interval=0.5)
    shutil.rmtree(private_redis.dir / "appendonlydir", ignore_errors=True)
    private_redis.start()

    async def topic_settled() -> Any:
        final = await asyncio.to_thread(_final_states, kafka_bootstrap, alerts_topic, clients)
        return final == expected or None

    async def alertmanager_settled() -> Any:
        return await _active_in_alertmanager(alertmanager_url, clients) == firing or None

    try:
        await eventually(topic_settled, timeout=120, interval=1)
        await eventually(alertmanager_settled, timeout=120, interval=1)
    finally:
        final = await asyncio.to_thread(_final_states, kafka_bootstrap, alerts_topic, clients)
        wrong = {fp: (final.get(fp), status) for fp, status in expected.items() if final.get(fp) != status}
        print(f"\nalerts topic: {len(wrong)} of {len(expected)} alerts not in the report's state "
              f"({sum(1 for got, _ in wrong.values() if got == 'firing')} left firing); "
              f"Alertmanager active: {len(await _active_in_alertmanager(alertmanager_url, clients))}, "
              f"report firing: {len(firing)}")

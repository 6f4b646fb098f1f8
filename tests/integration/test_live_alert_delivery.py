"""End to end: a live worker's care-gap alerts reach Alertmanager, a webhook and the alerts
topic, fire by the wall clock, resolve when a late follow-up arrives, and are delivered once;
delivered by the worker itself, or by a ``pathwatch deliver`` beside a worker that leaves
delivery to it (``PATHWATCH_DELIVERY=separate``)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kafka import KafkaConsumer

from schemas.pseudonym import Pseudonymiser
from streams.publish import publish
from tests.integration.alert_fixtures import WebhookRecorder, eventually, webhook  # noqa: F401 - fixture
from tests.integration.live_fixtures import PSEUDONYM_KEY, live_stack, scrape, wait_ready
from tests.integration.support import Process


def _event(kind: str, ident: str, when: datetime, subject: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": ident, "source": "hospital/st-marys" if kind == "discharge" else "ehr/community",
         "type": kind, "time": when.isoformat(), "subject": subject, "data": data}
    ).encode()


async def _alertmanager_alerts(session: aiohttp.ClientSession, url: str, client: str) -> list[dict[str, Any]]:
    async with session.get(f"{url}/api/v2/alerts", params={"filter": f'client="{client}"'}) as response:
        assert response.status == 200
        return list(await response.json())


@pytest.mark.parametrize("delivery", ["worker", "separate"])
async def test_care_gap_alerts_are_delivered_once_and_resolve(
    kafka_bootstrap: str, redis_url: str, alertmanager_url: str, unique: str, tmp_path: Path,
    processes: list[Process], webhook: WebhookRecorder, delivery: str,  # noqa: F811 - the fixture
) -> None:
    stack = live_stack(kafka_bootstrap, redis_url, unique, tmp_path)
    stack.env.update(
        PATHWATCH_ALERT_CLOCK="wall",
        PATHWATCH_ALERTMANAGER_URL=alertmanager_url,
        PATHWATCH_WEBHOOK_URL=webhook.url,
        PATHWATCH_DELIVERY=delivery,
    )
    subject = f"MRN-{unique}"
    client = Pseudonymiser(PSEUDONYM_KEY.encode()).pseudonym(subject)
    discharged = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
    discharge = {"encounter_id": "enc-1", "facility": "st-marys", "setting": "inpatient", "psychiatric": True,
                 "disposition": "home", "team": "north"}
    first = tmp_path / "discharge.jsonl"
    first.write_bytes(_event("discharge", "d-1", discharged, subject, discharge) + b"\n")

    worker = stack.worker("worker")
    processes.append(worker)
    deliverer = worker
    if delivery == "separate":
        deliverer = stack.worker("deliver", "deliver")
        processes.append(deliverer)
        await asyncio.to_thread(wait_ready, deliverer)
    await asyncio.to_thread(wait_ready, worker)
    settings = stack.settings
    await publish(settings, first, "events")

    async def missed_firing() -> Any:
        return [a for p in webhook.payloads for a in p["alerts"]
                if a["labels"]["alertname"] == "FollowUpMissed" and a["status"] == "firing"]

    fired = (await eventually(missed_firing, timeout=60))[0]
    payload = next(p for p in webhook.payloads if fired in p["alerts"])
    assert payload["version"] == "4"
    assert fired["labels"] == {"alertname": "FollowUpMissed", "client": client, "severity": "critical", "team": "north"}
    assert subject not in json.dumps(webhook.payloads)

    async with aiohttp.ClientSession() as session:
        async def listed() -> Any:
            alerts = await _alertmanager_alerts(session, alertmanager_url, client)
            return {a["labels"]["alertname"]: a["fingerprint"] for a in alerts}

        in_am = await eventually(listed, timeout=60)
        assert in_am.get("FollowUpMissed") == fired["fingerprint"]

        # a follow-up dated within [d+1, d+7] arrives late: both alerts resolve
        late = tmp_path / "followup.jsonl"
        late.write_bytes(_event("contact", "c-1", discharged + timedelta(days=5), subject,
                                {"contact_id": "c1", "team": "north", "status": "attended", "mode": "telephone"}) + b"\n")
        await publish(settings, late, "events")

        async def resolved() -> Any:
            return [a for p in webhook.payloads for a in p["alerts"]
                    if a["fingerprint"] == fired["fingerprint"] and a["status"] == "resolved"]

        await eventually(resolved, timeout=60)

        async def gone_from_alertmanager() -> Any:
            alerts = await _alertmanager_alerts(session, alertmanager_url, client)
            active = [a for a in alerts if a["status"]["state"] == "active" and a["fingerprint"] == fired["fingerprint"]]
            return not active

        await eventually(gone_from_alertmanager, timeout=60)

    transitions = webhook.transitions()
    assert len(transitions) == len(set(transitions)), "a transition was delivered twice to the webhook"
    assert _delivered_to_webhook(scrape(deliverer)) >= 2  # firing and resolved
    if delivery == "separate":  # the worker leaves delivery to the deliver process
        assert "pathwatch_alert_deliveries_total{" not in scrape(worker)
        env = stack.env

        async def lag_topics() -> Any:  # consumer lag is exported every 5 s
            of_worker, of_deliverer = _consumer_lag_topics(scrape(worker)), _consumer_lag_topics(scrape(deliverer))
            return (of_worker, of_deliverer) if env["PATHWATCH_TOPICS__EVENTS"] in of_worker and of_deliverer else None

        of_worker, of_deliverer = await eventually(lag_topics, timeout=30)
        assert env["PATHWATCH_TOPICS__TRANSITIONS"] not in of_worker
        assert of_deliverer == {env["PATHWATCH_TOPICS__TRANSITIONS"]}

    consumer = KafkaConsumer(stack.env["PATHWATCH_TOPICS__ALERTS"], bootstrap_servers=kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    try:
        records = [(m.key, json.loads(m.value)) for m in consumer]
    finally:
        consumer.close()
    on_topic = {(r["fingerprint"], r["status"]) for _, r in records}
    assert (fired["fingerprint"], "firing") in on_topic
    assert (fired["fingerprint"], "resolved") in on_topic
    assert all(key == r["fingerprint"].encode() for key, r in records)


def _consumer_lag_topics(metrics: str) -> set[str]:
    return set(re.findall(r'pathwatch_consumer_lag_messages\{[^}]*topic="([^"]+)"', metrics))


def _delivered_to_webhook(metrics: str) -> float:
    lines = re.findall(r"^pathwatch_alert_deliveries_total\{([^}]*)\} (\S+)$", metrics, re.M)
    return sum(float(v) for labels, v in lines if 'receiver="webhook"' in labels and 'outcome="delivered"' in labels)


async def test_a_deliver_process_killed_mid_stream_loses_no_alert(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path,
    processes: list[Process], webhook: WebhookRecorder,  # noqa: F811 - the fixture
) -> None:
    stack = live_stack(kafka_bootstrap, redis_url, unique, tmp_path)
    stack.env.update(PATHWATCH_ALERT_CLOCK="wall", PATHWATCH_WEBHOOK_URL=webhook.url, PATHWATCH_DELIVERY="separate")
    stack.env.pop("PATHWATCH_ALERTMANAGER_URL", None)
    pseudonymiser = Pseudonymiser(PSEUDONYM_KEY.encode())
    referred = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    halves = []
    for half in range(2):  # emergency referrals a day old: each fires ReferralWaiting at once
        path = tmp_path / f"referrals-{half}.jsonl"
        subjects = [f"MRN-{unique}-{half}-{i}" for i in range(200)]
        path.write_bytes(b"".join(
            _event("referral.received", f"r-{s}", referred, s,
                   {"referral_id": f"REF-{s}", "team": "north", "urgency": "emergency", "referral_source": "self"})
            + b"\n" for s in subjects))
        halves.append((path, {pseudonymiser.pseudonym(s) for s in subjects}))

    worker, first = stack.worker("worker"), stack.worker("deliver-1", "deliver")
    processes.extend([worker, first])
    await asyncio.to_thread(wait_ready, worker)
    await asyncio.to_thread(wait_ready, first)

    def delivered() -> set[str]:
        return {a["labels"]["client"] for p in webhook.payloads for a in p["alerts"]
                if a["labels"]["alertname"] == "ReferralWaiting" and a["status"] == "firing"}

    async def some_delivered() -> Any:
        return delivered()

    await publish(stack.settings, halves[0][0], "events")
    await eventually(some_delivered, timeout=60)
    first.kill()  # SIGKILL: whatever it took and did not commit is read again by the next one
    await publish(stack.settings, halves[1][0], "events")
    second = stack.worker("deliver-2", "deliver")
    processes.append(second)
    await asyncio.to_thread(wait_ready, second)

    expected = halves[0][1] | halves[1][1]

    async def all_delivered() -> Any:
        return delivered() >= expected

    await eventually(all_delivered, timeout=90)
    assert delivered() == expected
    assert _delivered_to_webhook(scrape(second)) > 0  # the second process delivered some of them

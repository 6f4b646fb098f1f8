"""Delivery resumes by itself after a SIGKILL (issue 14, point 2).

A worker that delivers its own alerts (the default), or a ``pathwatch deliver`` beside a
worker, is killed with SIGKILL in the middle of a send (a webhook holds its request, so the
killed process holds the claims of what it was sending), and started again: every transition
it owed reaches the webhook and the alerts topic without manual action, well within the
bound (the killed process's claims are taken over 15 s after its last heartbeat; before, they
held their alerts back for the claims' full 2 minutes). The time from the SIGKILL to the
first webhook delivery after it, and to delivery complete, is printed (for
benchmarks/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from kafka import KafkaConsumer, TopicPartition

from schemas.pseudonym import Pseudonymiser
from streams.publish import publish
from tests.integration.alert_fixtures import eventually
from tests.integration.live_fixtures import PSEUDONYM_KEY, live_stack, scrape, wait_ready
from tests.integration.support import Process, free_port


def _event(kind: str, ident: str, when: datetime, subject: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": ident, "source": "ehr/community", "type": kind,
         "time": when.isoformat(), "subject": subject, "data": data}
    ).encode() + b"\n"


def _referral(subject: str, when: datetime) -> bytes:
    return _event("referral.received", f"r-{subject}", when, subject,
                  {"referral_id": f"REF-{subject}", "team": "north", "urgency": "emergency", "referral_source": "self"})


def _contact(subject: str, when: datetime) -> bytes:
    return _event("contact", f"c-{subject}", when, subject,
                  {"contact_id": f"C-{subject}", "team": "north", "status": "attended", "mode": "telephone"})


def _alerts_on_topic(bootstrap: str, topic: str) -> set[tuple[str, str]]:
    """(client, status) of every ReferralWaiting state on ``topic``, read to its end now by a
    new consumer (one kept polling across the test was seen to miss a partition's records)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    seen: set[tuple[str, str]] = set()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for messages in consumer.poll(timeout_ms=500).values():
                for message in messages:
                    state = json.loads(message.value)
                    if state["labels"]["alertname"] == "ReferralWaiting":
                        seen.add((state["labels"]["client"], state["status"]))
    finally:
        consumer.close()
    return seen


def _end_offsets(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


class GatedWebhook:
    """A webhook receiver that records ReferralWaiting states, and that can be made to hold
    requests unanswered (``gate`` cleared) so a sender is caught mid-send. A request whose
    sender is gone by the time the gate opens is not recorded: the sender never learned it
    was delivered, so it still owes it."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = 0
        self.seen: set[tuple[str, str]] = set()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.waiting += 1
        try:
            await self.gate.wait()
        finally:
            self.waiting -= 1
        if request.transport is None or request.transport.is_closing():
            return web.Response(status=503)
        for alert in json.loads(body)["alerts"]:
            if alert["labels"]["alertname"] == "ReferralWaiting":
                self.seen.add((alert["labels"]["client"], alert["status"]))
        return web.Response(status=200)


@pytest.fixture
async def gated_webhook() -> AsyncIterator[GatedWebhook]:
    hook = GatedWebhook()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    hook.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield hook
    finally:
        hook.gate.set()
        await runner.cleanup()


# from the SIGKILL to every owed state delivered: 13 to 16 s in these runs (the restart, about
# 10 s, and the owner time-out, 15 s, overlap); the claims' own 2 minutes (the previous code)
# are well outside the bound
COMPLETE_WITHIN_SECONDS = 75


@pytest.mark.parametrize("delivery", ["worker", "separate"])
async def test_a_process_killed_mid_delivery_delivers_everything_it_owed_after_restart(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path, processes: list[Process], delivery: str,
    gated_webhook: GatedWebhook,
) -> None:
    hook = gated_webhook
    stack = live_stack(kafka_bootstrap, redis_url, unique, tmp_path)
    stack.env.update(PATHWATCH_ALERT_CLOCK="wall", PATHWATCH_DELIVERY=delivery, PATHWATCH_WEBHOOK_URL=hook.url)
    command = "worker" if delivery == "worker" else "deliver"
    stack.env["PATHWATCH_ALERTMANAGER_URL"] = ""  # (the stack's environment names one)
    pseudonym = Pseudonymiser(PSEUDONYM_KEY.encode()).pseudonym
    referred = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    n = 300
    first = [f"MRN-{unique}-a-{i}" for i in range(n)]
    second = [f"MRN-{unique}-b-{i}" for i in range(n)]
    # emergency referrals a day old: each fires ReferralWaiting at once; a contact resolves it
    phase_a = tmp_path / "a.jsonl"
    phase_a.write_bytes(b"".join(_referral(s, referred) for s in first))
    phase_b = tmp_path / "b.jsonl"
    phase_b.write_bytes(b"".join(_contact(s, referred + timedelta(hours=20)) + _referral(t, referred)
                                 for s, t in zip(first, second, strict=True)))
    expected = {(pseudonym(s), "firing") for s in first + second} | {(pseudonym(s), "resolved") for s in first}

    worker = stack.worker("worker")
    processes.append(worker)
    deliverer = worker
    if delivery == "separate":
        deliverer = stack.worker("deliver-1", "deliver")
        processes.append(deliverer)
        await asyncio.to_thread(wait_ready, deliverer)
    await asyncio.to_thread(wait_ready, worker)
    alerts = stack.env["PATHWATCH_TOPICS__ALERTS"]
    await publish(stack.settings, phase_a, "events")

    async def all_first_fired() -> Any:
        return len(hook.seen) >= n

    await eventually(all_first_fired, timeout=120, interval=0.1)

    # the webhook stops answering: the deliverer is caught holding the claims of the
    # states it is sending, and killed there
    hook.gate.clear()
    await publish(stack.settings, phase_b, "events")

    transitions = stack.env["PATHWATCH_TOPICS__TRANSITIONS"]

    async def all_transitions_out_and_sending() -> Any:
        # every transition is on its topic (stage 1's own recovery after a kill is not
        # what this test times), and a send to the webhook is held right now
        return hook.waiting and _end_offsets(kafka_bootstrap, transitions) >= len(expected)

    await eventually(all_transitions_out_and_sending, timeout=120, interval=0.01)
    deliverer.kill()
    killed = time.monotonic()
    at_kill = len(hook.seen)
    assert at_kill < len(expected)

    restarted = stack.worker(f"{command}-2", command)
    processes.append(restarted)
    await asyncio.to_thread(wait_ready, restarted)
    hook.gate.set()  # the killed sender's request is long gone: not recorded

    async def resumed() -> Any:
        return len(hook.seen) > at_kill

    await eventually(resumed, timeout=COMPLETE_WITHIN_SECONDS, interval=0.05)
    resumed_after = time.monotonic() - killed

    async def complete() -> Any:
        return hook.seen >= expected

    try:
        await eventually(complete, timeout=max(1.0, COMPLETE_WITHIN_SECONDS - resumed_after), interval=0.05)
    except BaseException:
        on_topic = await asyncio.to_thread(_alerts_on_topic, kafka_bootstrap, alerts)
        for name, got in (("webhook", hook.seen), ("alerts topic", on_topic)):
            missing = sorted(status for _, status in expected - got)
            print(f"\n{name}: missing {len(missing)} ({missing.count('firing')} firing), "
                  f"e.g. {sorted(expected - got)[:3]}")
        try:  # what the restarted process says of its delivery
            print("\n".join(line for line in scrape(restarted).splitlines()
                            if line.startswith(("pathwatch_alert_deliver", "pathwatch_consumer_lag"))))
        except OSError as exc:
            print(f"restarted process's /metrics did not answer: {exc}")
        raise
    complete_after = time.monotonic() - killed
    print(f"\n{delivery}: SIGKILL to webhook delivery resumed: {resumed_after:.1f} s; to complete: "
          f"{complete_after:.1f} s ({at_kill} of {len(expected)} states at the webhook at the kill)")
    assert hook.seen == expected

    async def on_topic() -> Any:  # the webhook was last in each batch: the topic has them
        return await asyncio.to_thread(_alerts_on_topic, kafka_bootstrap, alerts) == expected

    await eventually(on_topic, timeout=30, interval=1)

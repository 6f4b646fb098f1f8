"""Receiver wire shapes and failure classification (no network: HTTP is in integration)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from alerts.model import Alert
from alerts.receivers import (
    AlertmanagerReceiver,
    KafkaReceiver,
    SendResult,
    WebhookReceiver,
    alert_json,
    rfc3339,
    status_retryable,
)

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
CARE = Alert(
    {"alertname": "FollowUpDue", "team": "north", "client": "p-7f3a", "severity": "warning"},
    T0,
    None,
    {"summary": "Follow-up due by 2025-03-04"},
)
DONE = Alert({"alertname": "FollowUpDue", "team": "north", "client": "p-0001", "severity": "warning"}, T0, T0 + timedelta(hours=5))


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (502, True), (503, True), (429, True), (400, False), (401, False), (404, False), (422, False)]
)
def test_status_retryable(status: int, retryable: bool) -> None:
    assert status_retryable(status) is retryable


def test_rfc3339_is_utc_with_z() -> None:
    from zoneinfo import ZoneInfo

    assert rfc3339(datetime(2025, 3, 1, 4, 30, tzinfo=ZoneInfo("America/New_York"))) == "2025-03-01T09:30:00Z"


def test_alertmanager_payload_omits_ends_at_while_firing() -> None:
    receiver = AlertmanagerReceiver(None, "http://am:9093/")  # type: ignore[arg-type]
    firing, resolved = receiver.payload([CARE, DONE])
    assert firing == {"labels": dict(CARE.labels), "annotations": dict(CARE.annotations), "startsAt": "2025-03-01T09:30:00Z"}
    assert resolved["endsAt"] == "2025-03-01T14:30:00Z"


def test_alertmanager_payload_gives_firing_alerts_an_end_a_few_resends_ahead() -> None:
    # as Prometheus does: an alert this process stops re-sending (it lost track of it) ends
    # by itself, whatever Alertmanager's resolve_timeout
    now = T0 + timedelta(hours=1)
    receiver = AlertmanagerReceiver(None, "http://am:9093/", firing_validity=timedelta(minutes=4),  # type: ignore[arg-type]
                                    clock=lambda: now)
    firing, resolved = receiver.payload([CARE, DONE])
    assert firing["endsAt"] == "2025-03-01T10:34:00Z"
    assert resolved["endsAt"] == "2025-03-01T14:30:00Z"  # a resolved alert keeps its own end


def test_dispatcher_posts_to_alertmanager_with_four_resend_intervals_of_validity() -> None:
    from alerts.pipeline import build_dispatcher
    from pathwatch.bootstrap import receivers_config
    from pathwatch.config import Settings

    now = T0 + timedelta(hours=1)
    settings = Settings(alertmanager_url="http://am:9093", alertmanager_resend=timedelta(minutes=2))
    dispatcher = build_dispatcher(receivers_config(settings), None, None, object(), clock=lambda: now)  # type: ignore[arg-type]
    receiver = dispatcher._lanes["alertmanager"].spec.notifier
    assert isinstance(receiver, AlertmanagerReceiver)
    assert receiver.payload([CARE])[0]["endsAt"] == "2025-03-01T10:38:00Z"


def test_webhook_payload_is_alertmanager_version_4() -> None:
    receiver = WebhookReceiver(None, "http://hook", name="north-webhook", token=SecretStr("t"))  # type: ignore[arg-type]
    body = receiver.payload([CARE, DONE])
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["receiver"] == "north-webhook"
    assert body["truncatedAlerts"] == 0
    assert body["groupLabels"] == {}
    assert body["commonLabels"] == {"alertname": "FollowUpDue", "severity": "warning", "team": "north"}
    assert body["commonAnnotations"] == {}
    assert set(body) == {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels",
                         "commonAnnotations", "externalURL", "alerts"}
    first, second = body["alerts"]
    assert first["status"] == "firing"
    assert first["endsAt"] == "0001-01-01T00:00:00Z"
    assert first["fingerprint"] == CARE.fingerprint
    assert second["status"] == "resolved"
    assert receiver.payload([DONE])["status"] == "resolved"
    assert "t" not in json.dumps(body["alerts"][0]["annotations"])  # the token is never in the body


class FakeProducer:
    def __init__(self, fail_with: Exception | None = None) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.fail_with = fail_with

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append((topic, value, key))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_kafka_receiver_writes_json_keyed_by_fingerprint() -> None:
    producer = FakeProducer()
    assert await KafkaReceiver(producer, "pathwatch.alerts").send([CARE, DONE]) == SendResult.success()
    (topic, value, key), (_, value2, _) = producer.sent
    assert topic == "pathwatch.alerts"
    assert key == CARE.fingerprint.encode()
    assert json.loads(value or b"") == alert_json(CARE)
    assert json.loads(value2 or b"")["endsAt"] == "2025-03-01T14:30:00Z"
    assert alert_json(CARE)["status"] == "firing"


class KafkaConnectionError(Exception):
    retriable = True


@pytest.mark.parametrize(
    ("error", "retryable"),
    [(KafkaConnectionError("down"), True), (TimeoutError(), True), (ConnectionRefusedError(), True), (ValueError("too big"), False)],
)
async def test_kafka_receiver_classifies_failures(error: Exception, retryable: bool) -> None:
    result = await KafkaReceiver(FakeProducer(error), "t").send([CARE])
    assert not result.ok
    assert result.retryable is retryable

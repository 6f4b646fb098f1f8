"""Receivers: each only sends a batch and says whether a failure is worth retrying.

Dedup, retry with backoff, buffering and recording are stages in :mod:`alerts.pipeline`,
written once for every receiver (STYLE.md 4). A failure is retryable when trying again later
may succeed: a 5xx or 429 answer, a connection error or a time-out. Any other non-2xx answer
(the receiver rejected what we sent) is not.

Wire shapes follow Alertmanager: ``POST /api/v2/alerts`` takes postable alerts. A firing alert
is posted with ``endsAt`` = now + ``firing_validity`` when one is set (as Prometheus posts
``now`` + 4 re-send intervals), otherwise without ``endsAt`` (Alertmanager then ends it after
its own ``resolve_timeout``); either way it stays active only while re-sent, which is why the
Alertmanager receiver's policy re-sends firing alerts, and an alert whose resolution never
comes does not stay active for good. The webhook receiver posts Alertmanager's webhook
payload, version 4.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import aiohttp
from pydantic import SecretStr

from alerts.model import Alert, Status

# Alertmanager prints an unset endsAt of a firing alert in webhooks as Go's zero time.
GO_ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class SendResult:
    """Outcome of one :meth:`Notifier.send`: ``ok``, or failed with ``retryable`` said."""

    ok: bool
    retryable: bool = False
    detail: str = ""

    @classmethod
    def success(cls) -> SendResult:
        return cls(ok=True)

    @classmethod
    def retry(cls, detail: str) -> SendResult:
        return cls(ok=False, retryable=True, detail=detail)

    @classmethod
    def fail(cls, detail: str) -> SendResult:
        return cls(ok=False, retryable=False, detail=detail)


class Notifier(Protocol):
    """A delivery target. ``send`` never raises for delivery failures: it returns them."""

    name: str

    async def send(self, alerts: Sequence[Alert]) -> SendResult: ...


def rfc3339(moment: datetime) -> str:
    """UTC with a ``Z``, as Alertmanager writes times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alert_json(alert: Alert) -> dict[str, Any]:
    """The alert as JSON-ready data (Alertmanager's field names, plus fingerprint and status)."""
    return {
        "fingerprint": alert.fingerprint,
        "status": alert.status.value,
        "labels": dict(sorted(alert.labels.items())),
        "annotations": dict(sorted(alert.annotations.items())),
        "startsAt": rfc3339(alert.starts_at),
        "endsAt": None if alert.ends_at is None else rfc3339(alert.ends_at),
    }


def status_retryable(status: int) -> bool:
    return status >= 500 or status == 429


async def _post(
    session: aiohttp.ClientSession, url: str, body: Any, headers: Mapping[str, str], timeout: float
) -> SendResult:
    try:
        async with session.post(
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            if 200 <= response.status < 300:
                return SendResult.success()
            text = (await response.text())[:200]
            detail = f"HTTP {response.status}: {text}"
            return SendResult.retry(detail) if status_retryable(response.status) else SendResult.fail(detail)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return SendResult.retry(f"{type(exc).__name__}: {exc}")


class AlertmanagerReceiver:
    """Posts to Alertmanager's ``/api/v2/alerts``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        name: str = "alertmanager",
        generator_url: str = "",
        timeout: float = 10.0,
        firing_validity: timedelta | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self._session = session
        self._url = base_url.rstrip("/") + "/api/v2/alerts"
        self._generator_url = generator_url
        self._timeout = timeout
        self._firing_validity = firing_validity
        self._clock = clock

    def payload(self, alerts: Sequence[Alert]) -> list[dict[str, Any]]:
        out = []
        for alert in alerts:
            item: dict[str, Any] = {
                "labels": dict(alert.labels),
                "annotations": dict(alert.annotations),
                "startsAt": rfc3339(alert.starts_at),
            }
            if alert.ends_at is not None:
                item["endsAt"] = rfc3339(alert.ends_at)
            elif self._firing_validity is not None:
                item["endsAt"] = rfc3339(self._clock() + self._firing_validity)
            if self._generator_url:
                item["generatorURL"] = self._generator_url
            out.append(item)
        return out

    async def send(self, alerts: Sequence[Alert]) -> SendResult:
        return await _post(self._session, self._url, self.payload(alerts), {}, self._timeout)


class WebhookReceiver:
    """Posts Alertmanager's webhook payload (version 4), one payload per batch.

    Each batch is its own "group" with no group labels; ``groupKey`` names the receiver.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        name: str = "webhook",
        token: SecretStr | None = None,
        external_url: str = "",
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self._session = session
        self._url = url
        self._token = token
        self._external_url = external_url
        self._timeout = timeout

    def payload(self, alerts: Sequence[Alert]) -> dict[str, Any]:
        items = []
        for alert in alerts:
            items.append(
                {
                    "status": alert.status.value,
                    "labels": dict(alert.labels),
                    "annotations": dict(alert.annotations),
                    "startsAt": rfc3339(alert.starts_at),
                    "endsAt": GO_ZERO_TIME if alert.ends_at is None else rfc3339(alert.ends_at),
                    "generatorURL": "",
                    "fingerprint": alert.fingerprint,
                }
            )
        firing = any(a.status is Status.FIRING for a in alerts)
        return {
            "version": "4",
            "groupKey": f'{{}}:{{receiver="{self.name}"}}',
            "truncatedAlerts": 0,
            "status": "firing" if firing else "resolved",
            "receiver": self.name,
            "groupLabels": {},
            "commonLabels": _common(a.labels for a in alerts),
            "commonAnnotations": _common(a.annotations for a in alerts),
            "externalURL": self._external_url,
            "alerts": items,
        }

    async def send(self, alerts: Sequence[Alert]) -> SendResult:
        headers = {}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        return await _post(self._session, self._url, self.payload(alerts), headers, self._timeout)


def _common(maps: Any) -> dict[str, str]:
    maps = list(maps)
    if not maps:
        return {}
    common = dict(maps[0])
    for m in maps[1:]:
        common = {k: v for k, v in common.items() if m.get(k) == v}
    return dict(sorted(common.items()))


class KafkaProducerLike(Protocol):
    """The part of ``aiokafka.AIOKafkaProducer`` used here: ``send`` queues a record and
    returns an awaitable that completes when the broker has it."""

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Awaitable[Any]: ...


class KafkaReceiver:
    """Writes each alert state to the alerts topic as JSON (:func:`alert_json`), keyed by
    fingerprint so one alert's states stay in order on one partition.

    A batch is queued at once and then awaited (one wait for the broker, not one per alert:
    per-alert waits could not keep up with 100 alerts a second). A failure part-way through
    is retried as a whole, so a consumer may see an alert state twice; states are keyed and
    idempotent, as they are after any at-least-once redelivery.
    """

    def __init__(self, producer: KafkaProducerLike, topic: str, *, name: str = "kafka") -> None:
        self.name = name
        self._producer = producer
        self._topic = topic

    async def send(self, alerts: Sequence[Alert]) -> SendResult:
        try:
            pending = [
                await self._producer.send(
                    self._topic,
                    value=json.dumps(alert_json(alert), sort_keys=True).encode(),
                    key=alert.fingerprint.encode(),
                )
                for alert in alerts
            ]
            await asyncio.gather(*pending)
        except Exception as exc:  # every producer failure becomes a SendResult
            detail = f"{type(exc).__name__}: {exc}"
            if _kafka_retryable(exc):
                return SendResult.retry(detail)
            return SendResult.fail(detail)
        return SendResult.success()


def _kafka_retryable(exc: BaseException) -> bool:
    if isinstance(exc, (TimeoutError, OSError)):
        return True
    if getattr(exc, "retriable", False):
        return True
    return type(exc).__name__ in {"KafkaTimeoutError", "KafkaConnectionError", "NodeNotReadyError"}

"""A real Alertmanager (the stack's) receives our alerts, lists them with our fingerprints,
and resolves them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from alerts.model import Alert
from alerts.nflog import MemoryNotificationLog, ResendPolicy
from alerts.pipeline import Dispatcher, ReceiverSpec, build_dispatcher
from alerts.receivers import AlertmanagerReceiver
from alerts.routing import Route
from pathwatch.bootstrap import receivers_config
from pathwatch.config import Settings
from tests.integration.alert_fixtures import eventually, http_session  # noqa: F401

pytestmark = pytest.mark.integration


async def am_alerts(session: aiohttp.ClientSession, base: str, run: str) -> dict[str, dict[str, Any]]:
    async with session.get(f"{base}/api/v2/alerts", params={"filter": f'test_run="{run}"'}) as response:
        assert response.status == 200
        return {a["fingerprint"]: a for a in await response.json()}


def run_alerts(run: str, now: datetime) -> list[Alert]:
    return [
        Alert({"alertname": "FollowUpMissed", "team": "north", "client": "p-7f3a2b", "severity": "critical",
               "test_run": run}, now - timedelta(hours=1), None,
              {"summary": "Follow-up missed: discharged 2025-02-20, no follow-up by 2025-02-27", "team": "north"}),
        Alert({"alertname": "SpecialCause", "team": "south-east", "measure": "followup_7d", "severity": "warning",
               "test_run": run}, now - timedelta(minutes=5), None, {"summary": "2 of 3 points beyond ...", "rule": "two_of_three"}),
        Alert({"alertname": "ReferralWaiting", "team": "équipe nord", "client": "p-ünïcode", "severity": "warning",
               "test_run": run}, now - timedelta(minutes=1)),
    ]


async def test_alertmanager_lists_our_fingerprints_and_resolves(alertmanager_url: str, http_session: aiohttp.ClientSession) -> None:  # noqa: F811
    run = uuid.uuid4().hex
    now = datetime.now(UTC)
    alerts = run_alerts(run, now)
    settings = Settings(alertmanager_url=alertmanager_url, webhook_url=None)
    d = build_dispatcher(receivers_config(settings), None, None, http_session)
    await d.dispatch(alerts, now)
    assert d.stats.get("alertmanager", "sent") == 3

    listed = await eventually(lambda: _when_count(am_alerts(http_session, alertmanager_url, run), 3))
    assert set(listed) == {a.fingerprint for a in alerts}
    for a in alerts:
        got = listed[a.fingerprint]
        assert got["labels"] == dict(a.labels)
        assert got["status"]["state"] == "active"
        assert abs(datetime.fromisoformat(got["startsAt"].replace("Z", "+00:00")) - a.starts_at) < timedelta(milliseconds=1)

    later = datetime.now(UTC)
    await d.dispatch([Alert(a.labels, a.starts_at, later, a.annotations) for a in alerts[:2]], later)
    remaining = await eventually(lambda: _when_count(am_alerts(http_session, alertmanager_url, run), 1))
    assert set(remaining) == {alerts[2].fingerprint}


async def _when_count(listing: Any, n: int) -> dict[str, dict[str, Any]] | bool:
    """The listing once it has ``n`` alerts (True for an empty one), else False."""
    got = await listing
    if len(got) != n:
        return False
    return got or True


async def test_resend_keeps_a_firing_alert_alive_with_its_start(alertmanager_url: str, http_session: aiohttp.ClientSession) -> None:  # noqa: F811
    run = uuid.uuid4().hex
    now = datetime.now(UTC)
    alert = run_alerts(run, now)[0]
    receiver = AlertmanagerReceiver(http_session, alertmanager_url)
    d = Dispatcher([ReceiverSpec(receiver, ResendPolicy(timedelta(minutes=1), timedelta(minutes=15)))],
                   [Route("alertmanager")], MemoryNotificationLog())
    await d.dispatch([alert], now)
    first = (await eventually(lambda: _when_count(am_alerts(http_session, alertmanager_url, run), 1)))[alert.fingerprint]
    # a minute later by our clock the dispatcher re-sends; Alertmanager extends endsAt, keeps startsAt
    await d.dispatch([], now + timedelta(minutes=1))
    assert d.stats.get("alertmanager", "repeated") == 1
    again = (await am_alerts(http_session, alertmanager_url, run))[alert.fingerprint]
    assert again["startsAt"] == first["startsAt"]
    assert again["endsAt"] >= first["endsAt"]
    # clean up: resolve it
    await d.dispatch([Alert(alert.labels, alert.starts_at, datetime.now(UTC))], now + timedelta(minutes=2))
    await eventually(lambda: _when_count(am_alerts(http_session, alertmanager_url, run), 0))


async def test_alertmanager_rejection_is_not_retried(alertmanager_url: str, http_session: aiohttp.ClientSession) -> None:  # noqa: F811
    # endsAt before startsAt: Alertmanager answers 400, which no retry can fix
    now = datetime.now(UTC)
    bad = Alert({"alertname": "Bad", "test_run": uuid.uuid4().hex}, now, now - timedelta(hours=1))
    result = await AlertmanagerReceiver(http_session, alertmanager_url).send([bad])
    assert not result.ok
    assert not result.retryable
    assert "400" in result.detail


async def test_unreachable_alertmanager_is_retryable(http_session: aiohttp.ClientSession) -> None:  # noqa: F811
    from tests.integration.support import free_port

    result = await AlertmanagerReceiver(http_session, f"http://127.0.0.1:{free_port()}").send(
        run_alerts("x", datetime.now(UTC))[:1]
    )
    assert not result.ok
    assert result.retryable

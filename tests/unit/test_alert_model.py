"""Alert identity: Alertmanager's own fingerprint test vectors (prometheus/common model)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alerts.model import Alert, Status, fingerprint

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # TestMetricToFingerprint / TestLabelsToSignature in prometheus/common model
        ({}, 14695981039346656037),
        ({"name": "garland, briggs", "fear": "love is not enough"}, 5799056148416392346),
    ],
)
def test_fingerprint_matches_alertmanager_test_vectors(labels: dict[str, str], expected: int) -> None:
    assert fingerprint(labels) == f"{expected:016x}"


def test_fingerprint_ignores_label_order() -> None:
    a = {"alertname": "FollowUpDue", "team": "north", "client": "p-1"}
    b = dict(reversed(list(a.items())))
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint({**a, "team": "south"})


def test_lifecycle_status() -> None:
    labels = {"alertname": "SpecialCause", "team": "north", "measure": "followup_7d", "severity": "warning"}
    firing = Alert(labels, T0)
    resolved = Alert(labels, T0, T0)
    assert firing.status is Status.FIRING
    assert resolved.status is Status.RESOLVED
    assert firing.fingerprint == resolved.fingerprint
    assert firing.identity() == resolved.identity()
    assert resolved.report_entry()["endsAt"] == "2025-03-01T09:00:00+00:00"

"""Label matchers and routes, Alertmanager semantics."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alerts.model import Alert
from alerts.routing import Matcher, Route, parse_matchers, parse_routes, receivers_for

T0 = datetime(2025, 3, 1, tzinfo=UTC)
CARE_GAP = {"alertname": "FollowUpMissed", "team": "north", "client": "p-7f3a", "severity": "critical"}
SYSTEM = {"alertname": "SpecialCause", "team": "north", "measure": "followup_7d", "severity": "warning"}


@pytest.mark.parametrize(
    ("matcher", "labels", "expected"),
    [
        ('team="north"', CARE_GAP, True),
        ('team="south"', CARE_GAP, False),
        ('team!="south"', CARE_GAP, True),
        ('alertname=~"FollowUp.*"', CARE_GAP, True),
        ('alertname=~"Follow"', CARE_GAP, False),  # anchored: a prefix is not a match
        ('alertname=~"FollowUpDue|FollowUpMissed"', CARE_GAP, True),
        ('alertname!~"FollowUp.*"', CARE_GAP, False),
        ('client=~".+"', CARE_GAP, True),  # care-gap alerts carry a client pseudonym
        ('client=~".+"', SYSTEM, False),  # a missing label is the empty string
        ('client=""', SYSTEM, True),
        ('client!=""', SYSTEM, False),
        ("team=north", CARE_GAP, True),  # unquoted value
        ('summary="a \\"quoted\\" word"', {"summary": 'a "quoted" word'}, True),
        ('alertname=~"FollowUp\\.+"', {"alertname": "FollowUp.."}, True),  # regex escapes kept
    ],
)
def test_matcher(matcher: str, labels: dict[str, str], expected: bool) -> None:
    assert Matcher.parse(matcher).matches(labels) is expected


@pytest.mark.parametrize("bad", ["team", "team==north", '1team="x"', 'x=~"("'])
def test_bad_matcher_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="matcher|regular expression"):
        Matcher.parse(bad)


def test_parse_matchers_with_braces_and_commas_in_values() -> None:
    matchers = parse_matchers('{team="north", alertname=~"FollowUpDue|ReferralWaiting", summary="a, b"}')
    assert [str(m) for m in matchers] == [
        'team="north"',
        'alertname=~"FollowUpDue|ReferralWaiting"',
        'summary="a, b"',
    ]


def test_team_north_care_gaps_go_to_its_webhook_and_everything_to_kafka() -> None:
    routes = parse_routes(
        {
            "kafka": "",
            "north-webhook": '{team="north", client=~".+"}',
            "alertmanager": ['alertname=~"RateOffTarget|SpecialCause"'],
        }
    )
    assert receivers_for(Alert(CARE_GAP, T0), routes) == ["kafka", "north-webhook"]
    assert receivers_for(Alert(SYSTEM, T0), routes) == ["kafka", "alertmanager"]
    south = Alert({**CARE_GAP, "team": "south"}, T0)
    assert receivers_for(south, routes) == ["kafka"]


def test_a_receiver_in_several_routes_receives_once() -> None:
    routes = [Route("w", tuple(parse_matchers('team="north"'))), Route("w", tuple(parse_matchers('severity="critical"')))]
    assert receivers_for(Alert(CARE_GAP, T0), routes) == ["w"]
    assert parse_routes([("w", 'team="north"'), ("w", 'team="south"')])[1].receiver == "w"

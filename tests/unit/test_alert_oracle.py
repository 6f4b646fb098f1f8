"""The replay's care-gap alerts equal a naive batch oracle computed straight from the JSON lines.

``tests/fixtures/alert_oracle.py`` reads DOMAIN.md section 4, the README's Decisions and the
runbook in one batch pass per client. The comparison uses readings decided where the texts are
silent (issue 15 item 6, docs/core-decisions.md): a readmission before the end of d+7 prevents
FollowUpMissed; an alert whose index event is cancelled after it fired ended at the cancel's
time and merges with an overlapping instance of its labels; a zero-length alert (resolved at
the instant it would fire) never fires. (FrequentCrisis keeps the team that started the run:
the oracle found the replay splitting it per crisis team, now fixed.) Not compared on dense
streams: FrequentCrisis runs that lose a crisis to a cancel (the oracle leaves cancelled
crises out altogether; the replay shows the run as it fired until the cancel).
Clients are compared by pseudonym (``Decoder`` with the replay's key).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from pathwatch.simulate import SimulationOptions, generate
from schemas.decode import Decoder
from streams.core import CoreConfig
from tests.fixtures.alert_oracle import AlertOracleConfig, alert_key, oracle_alerts
from tests.fixtures.core.build import replay_lines
from tests.unit.test_oracle import dense_stream

KEY = b"alert-oracle"
CARE_GAP = ("FollowUpDue", "FollowUpMissed", "ReferralWaiting", "FrequentCrisis", "Readmitted30d")
AS_REPLAY = {
    "crisis_team_per_crisis": False,
    "missed_prevented_by_readmission": True,
    "cancelled_index_fired_until_cancel": True,
    "waiting_resumes_at_cancel": True,
    "id_key": KEY,  # ties in time break on the pseudonymised id, as in the replay
}


def replay_alerts(lines: list[bytes], tz: str = "UTC") -> list[dict[str, Any]]:
    report = replay_lines(lines, CoreConfig(timezone=tz), KEY).report()
    return sorted((a for a in report["alerts"] if a["labels"]["alertname"] in CARE_GAP), key=alert_key)


def pseudonyms(lines: list[bytes]) -> dict[str, str]:
    decoder = Decoder(KEY, 1 << 20)
    out: dict[str, str] = {}
    for i, line in enumerate(lines):
        event = decoder.decode_line(line, "t", i)
        if hasattr(event, "client"):
            out[json.loads(line)["subject"]] = event.client
    return out


def diff(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> tuple[Counter[str], Counter[str]]:
    g = Counter(json.dumps(a, sort_keys=True) for a in got)
    w = Counter(json.dumps(a, sort_keys=True) for a in want)
    return g - w, w - g


@pytest.mark.parametrize("seed", [4, 5])
def test_simulated_alerts_equal_the_oracle(seed: int) -> None:
    lines = list(generate(SimulationOptions(clients=400, days=300, seed=seed)))
    got = replay_alerts(lines)
    want = oracle_alerts(lines, pseudonyms(lines), AlertOracleConfig(**AS_REPLAY))
    assert diff(got, want) == (Counter(), Counter())
    names = Counter(a["labels"]["alertname"] for a in want)
    assert set(names) == set(CARE_GAP), names
    assert len(want) > 80, names


DENSE_NAMES = ("FollowUpDue", "FollowUpMissed", "ReferralWaiting", "Readmitted30d")


@pytest.mark.parametrize(("seed", "tz"), [(1, "UTC"), (2, "America/New_York")])
def test_dense_alerts_equal_the_oracle(seed: int, tz: str) -> None:
    """Dense edge streams (ties, events at local midnight, cancels of anything): every
    instance of the four follow-up and referral alerts, edge cases of issue 15 item 6 included."""
    lines = dense_stream(seed, 2000, tz, days=300)
    got = [a for a in replay_alerts(lines, tz) if a["labels"]["alertname"] in DENSE_NAMES]
    want = [
        a
        for a in oracle_alerts(lines, pseudonyms(lines), AlertOracleConfig(tz=tz, **AS_REPLAY))
        if a["labels"]["alertname"] in DENSE_NAMES
    ]
    assert diff(got, want) == (Counter(), Counter())
    names = Counter(a["labels"]["alertname"] for a in want)
    assert min(names[n] for n in DENSE_NAMES) > 100, names

"""Care-gap alert edge cases (issue 15 item 6), decided as an operations lead would want.

- A resolving event at the very instant an alert would fire: the alert never fires (a
  zero-length alert reaches no one), for FollowUpDue (a follow-up or admission at the end of
  day d+2) and ReferralWaiting (a first contact at the target instant).
- A readmission (inpatient admission) before the end of day d+7 prevents FollowUpMissed: the
  client is back in hospital, so no "missed follow-up" page (and the discharge is out of the
  followup_7d denominator too).
- An alert whose index event is cancelled after it fired stays in the record as fired until
  the cancel's time (receivers were told; the cancel resolves it, as DOMAIN.md's FollowUpDue
  row says), and merges with an overlapping instance of the same labels like any other.
"""

from __future__ import annotations

from datetime import timedelta

from alerts.model import Alert
from streams.core import CoreConfig
from tests.fixtures.core.build import NY, Run, admission, cancel, contact, discharge, ny, referral, tick

CONFIG = CoreConfig(timezone=NY)


def _emitted(run: Run, name: str) -> list[Alert]:
    return [o for o in run.outputs if isinstance(o, Alert) and o.name == name]


def test_an_admission_at_the_follow_up_deadline_instant_raises_no_follow_up_due() -> None:
    run = Run([
        discharge(ny("2026-04-01 10:00"), team="north"),
        admission(ny("2026-04-04 00:00")),  # the end of d+2, to the microsecond
        tick(ny("2026-06-01 00:00")),
    ], CONFIG)
    assert _emitted(run, "FollowUpDue") == []  # not even a firing that resolves at once


def test_a_follow_up_at_the_deadline_instant_raises_no_follow_up_due() -> None:
    run = Run([
        discharge(ny("2026-04-01 10:00"), team="north"),
        contact(ny("2026-04-04 00:00"), team="north"),  # the first instant of day d+3
        tick(ny("2026-06-01 00:00")),
    ], CONFIG)
    assert _emitted(run, "FollowUpDue") == []
    assert run.outcome("followup_72h") is True  # in [d+1, d+3]


def test_a_first_contact_at_the_target_instant_raises_no_referral_waiting() -> None:
    # routine: 10 business days after Wed 2026-04-01 is Wed 04-15; the target passes at its end
    run = Run([
        referral(ny("2026-04-01 10:00"), team="north", urgency="routine"),
        contact(ny("2026-04-16 00:00"), team="north"),
        tick(ny("2026-06-01 00:00")),
    ], CONFIG)
    assert _emitted(run, "ReferralWaiting") == []
    assert run.outcome("seen_within_target") is False


def test_a_first_contact_just_after_an_emergency_target_raises_no_referral_waiting() -> None:
    run = Run([
        referral(ny("2026-04-01 10:00"), team="north", urgency="emergency"),
        contact(ny("2026-04-01 14:00") + timedelta(microseconds=1), team="north"),
        tick(ny("2026-06-01 00:00")),
    ], CONFIG)
    assert _emitted(run, "ReferralWaiting") == []
    assert run.outcome("seen_within_target") is False


def test_a_contact_a_moment_later_still_raises_the_alert() -> None:
    run = Run([
        discharge(ny("2026-04-01 10:00"), team="north"),
        contact(ny("2026-04-04 00:00") + timedelta(microseconds=1), team="north"),
        tick(ny("2026-06-01 00:00")),
    ], CONFIG)
    due = run.alerts("FollowUpDue")
    assert [(a.starts_at, a.ends_at) for a in due] == [  # type: ignore[attr-defined]
        (ny("2026-04-04 00:00"), ny("2026-04-04 00:00") + timedelta(microseconds=1))
    ]


def test_a_readmission_before_the_end_of_day_7_prevents_follow_up_missed() -> None:
    run = Run([
        discharge(ny("2026-04-01 10:00"), team="north"),
        admission(ny("2026-04-06 10:00")),  # d+5: back in hospital
        tick(ny("2026-06-01 00:00")),
    ], CONFIG)
    assert run.alerts("FollowUpMissed") == []
    assert [a.ends_at for a in run.alerts("FollowUpDue")] == [ny("2026-04-06 10:00")]  # type: ignore[attr-defined]
    assert run.outcome("followup_7d") is None  # out of the denominator as well


def test_a_readmission_alert_whose_admission_is_cancelled_merges_with_an_overlapping_one() -> None:
    first = admission(ny("2026-04-06 10:00"), id="a1")  # d+5
    run = Run([
        discharge(ny("2026-04-01 10:00"), team="north"),
        contact(ny("2026-04-02 10:00"), team="north"),
        first,
        admission(ny("2026-04-09 10:00"), id="a2"),  # d+8, while a1's alert fires
        cancel(ny("2026-04-10 10:00"), first),  # a1 entered in error, after its alert fired
        tick(ny("2026-06-01 00:00")),
    ], CONFIG)
    readmitted = run.alerts("Readmitted30d")
    assert [(a.starts_at, a.ends_at) for a in readmitted] == [  # type: ignore[attr-defined]
        (ny("2026-04-06 10:00"), ny("2026-04-16 10:00"))  # fired from a1, on through a2's 7 days
    ]


def test_an_alert_whose_index_event_is_cancelled_after_it_fired_ends_at_the_cancel() -> None:
    d = discharge(ny("2026-04-01 10:00"), team="north")
    run = Run([d, cancel(ny("2026-04-05 09:00"), d), tick(ny("2026-06-01 00:00"))], CONFIG)
    assert [(a.starts_at, a.ends_at) for a in run.alerts("FollowUpDue")] == [  # type: ignore[attr-defined]
        (ny("2026-04-04 00:00"), ny("2026-04-05 09:00"))
    ]
    assert run.alerts("FollowUpMissed") == []

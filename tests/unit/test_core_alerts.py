"""Care-gap alerts, cancels, duplicates and late events (DOMAIN.md sections 1, 2 and 4).

Allowed lateness is the default 72 hours, so an event is late once another event more than
72 hours newer has arrived. Times are America/New_York local.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.deadletter import DeadLetter, DeadLetterKind
from streams.core import Clock, CoreConfig, Duplicate, step
from tests.fixtures.core.build import (
    NY,
    Run,
    admission,
    cancel,
    closed,
    contact,
    crisis,
    discharge,
    ny,
    referral,
    tick,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def only(run: Run, name: str):  # type: ignore[no-untyped-def]
    found = run.alerts(name)
    assert len(found) == 1, found
    return found[0]


def test_followup_due_fires_at_end_of_d2_and_resolves_at_the_followup() -> None:
    r = Run([discharge(ny("2026-04-01 09:00"), team="north"), contact(ny("2026-04-05 11:00")), tick(ny("2026-04-20 00:00"))])
    a = only(r, "FollowUpDue")
    assert a.starts_at == utc("2026-04-04 04:00")  # end of local 2026-04-03 (EDT)
    assert a.ends_at == utc("2026-04-05 15:00")
    assert dict(a.labels) == {"alertname": "FollowUpDue", "team": "north", "client": "c1", "severity": "warning"}
    assert r.alerts("FollowUpMissed") == []  # follow-up on d+4 is within d+7


def test_followup_due_does_not_fire_with_a_followup_on_d2() -> None:
    r = Run([discharge(ny("2026-04-01 09:00")), contact(ny("2026-04-03 23:00")), tick(ny("2026-04-20 00:00"))])
    assert r.alerts() == []


def test_readmission_resolves_followup_due_and_fires_readmitted() -> None:
    r = Run([discharge(ny("2026-04-01 09:00"), team="north"), admission(ny("2026-04-06 10:00")), tick(ny("2026-05-20 00:00"))])
    due = only(r, "FollowUpDue")
    assert due.ends_at == utc("2026-04-06 14:00")
    readmitted = only(r, "Readmitted30d")
    assert (readmitted.starts_at, readmitted.ends_at) == (utc("2026-04-06 14:00"), utc("2026-04-13 14:00"))
    assert r.alerts("FollowUpMissed") == []  # excluded from followup_7d by the admission


def test_followup_missed_is_critical_and_stays_firing() -> None:
    r = Run([discharge(ny("2026-04-01 09:00"), team="north"), tick(ny("2026-04-20 00:00"))])
    missed = only(r, "FollowUpMissed")
    assert missed.starts_at == utc("2026-04-09 04:00")  # end of local 2026-04-08
    assert missed.ends_at is None
    assert missed.labels["severity"] == "critical"
    assert "2026-04-08" in missed.annotations["description"]


def test_late_followup_after_missed_fired_resolves_it_and_counts_a_correction() -> None:
    events = [
        discharge(ny("2026-04-01 09:00"), team="north"),
        tick(ny("2026-04-13 00:00")),  # watermark 2026-04-10: FollowUpMissed (end of 04-08) fires
        contact(ny("2026-04-06 10:00")),  # late: dated d+5, inside [d+1, d+7]
        tick(ny("2026-06-01 00:00")),
    ]
    r = Run(events)
    missed = only(r, "FollowUpMissed")
    assert missed.ends_at == missed.starts_at  # resolved; the follow-up's own time is earlier
    assert r.outcome("followup_7d") is True
    assert r.outcome("followup_72h") is False
    seven = [o for o in r.outputs if getattr(o, "measure", "") == "followup_7d"]
    assert [(o.numerator, o.correction) for o in seven] == [(False, False), (True, True)]  # type: ignore[attr-defined]
    assert r.report()["events"]["corrections"] == 1
    report_alert = [a for a in r.report()["alerts"] if a["labels"]["alertname"] == "FollowUpMissed"]
    assert report_alert[0]["status"] == "resolved"


def test_referral_waiting_emergency_is_critical_and_resolves_on_contact() -> None:
    r = Run([referral(ny("2026-04-01 10:00"), urgency="emergency"), contact(ny("2026-04-01 16:00")),
             tick(ny("2026-04-10 00:00"))])
    a = only(r, "ReferralWaiting")
    assert a.labels["severity"] == "critical"
    assert (a.starts_at, a.ends_at) == (utc("2026-04-01 18:00"), utc("2026-04-01 20:00"))


def test_referral_waiting_resolves_on_closure_and_not_before_target() -> None:
    r = Run([referral(ny("2026-04-01 10:00"), urgency="urgent"),
             referral(ny("2026-04-01 11:00"), urgency="urgent", referral_id="r2", team="south"),
             closed(ny("2026-04-01 12:00"), referral_id="r2"),  # closed before its target: never fires
             closed(ny("2026-04-06 09:00")), tick(ny("2026-04-20 00:00"))])
    a = only(r, "ReferralWaiting")
    assert a.labels["team"] == "north"
    assert a.labels["severity"] == "warning"
    assert (a.starts_at, a.ends_at) == (utc("2026-04-03 04:00"), utc("2026-04-06 13:00"))


def test_frequent_crisis_fires_at_k_and_ends_when_the_oldest_ages_out() -> None:
    r = Run([crisis(ny("2026-04-01 10:00"), team="north"), crisis(ny("2026-04-10 10:00"), team="north"),
             crisis(ny("2026-04-20 10:00"), team="north"), crisis(ny("2026-04-25 10:00"), team="north"),
             tick(ny("2026-07-01 00:00"))])
    a = only(r, "FrequentCrisis")  # the 4th crisis overlaps: one instance
    assert a.starts_at == utc("2026-04-20 14:00")
    assert a.ends_at == utc("2026-05-10 14:00")  # 2026-04-10 10:00 local + 30 x 24 h


def test_a_waiting_alert_resumes_when_the_contact_that_ended_it_is_cancelled() -> None:
    # urgent referral Wednesday 2026-04-01: target the end of Thursday; seen Monday, but that
    # contact is cancelled on Tuesday: the client is unseen after all, so the alert fires again
    # from the cancel (a new instance: a receiver already told "resolved" is told again)
    seen = contact(ny("2026-04-06 09:00"), id="k")
    r = Run([referral(ny("2026-04-01 10:00"), urgency="urgent"), seen, cancel(ny("2026-04-07 09:00"), seen),
             tick(ny("2026-04-20 00:00"))])
    waiting = sorted(r.alerts("ReferralWaiting"), key=lambda a: a.starts_at)  # type: ignore[attr-defined]
    assert [(a.starts_at, a.ends_at) for a in waiting] == [
        (utc("2026-04-03 04:00"), utc("2026-04-06 13:00")),
        (utc("2026-04-07 13:00"), None),
    ]


def test_frequent_crisis_keeps_the_team_that_started_the_run() -> None:
    # the 4th crisis names another team while the count is still 3 or more: one instance, the
    # first team's, ending when the count falls below 3 (2026-04-10 + 30 x 24 h), not two
    r = Run([crisis(ny("2026-04-01 10:00"), team="north"), crisis(ny("2026-04-10 10:00"), team="north"),
             crisis(ny("2026-04-20 10:00"), team="north"), crisis(ny("2026-04-25 10:00"), team="south"),
             tick(ny("2026-07-01 00:00"))])
    a = only(r, "FrequentCrisis")
    assert a.labels["team"] == "north"
    assert (a.starts_at, a.ends_at) == (utc("2026-04-20 14:00"), utc("2026-05-10 14:00"))


def test_two_crises_do_not_fire() -> None:
    r = Run([crisis(ny("2026-04-01 10:00")), crisis(ny("2026-04-10 10:00")), tick(ny("2026-07-01 00:00"))])
    assert r.alerts() == []


@pytest.mark.parametrize("cancel_first", [False, True], ids=["cancel-after-target", "cancel-before-target"])
def test_cancelled_followup_does_not_count(cancel_first: bool) -> None:
    fu = contact(ny("2026-04-02 10:00"))
    c = cancel(ny("2026-04-02 12:00"), fu)
    middle = [c, fu] if cancel_first else [fu, c]
    r = Run([discharge(ny("2026-04-01 09:00")), *middle, tick(ny("2026-06-01 00:00"))])
    assert r.outcome("followup_72h") is False
    assert r.report()["events"] == {"accepted": 4, "duplicates": 0, "dead_letters": 0, "corrections": 0, "dead_letters_by_kind": {}}
    assert only(r, "FollowUpDue").starts_at == utc("2026-04-04 04:00")


def test_cancel_after_the_window_closed_is_a_correction_in_any_order() -> None:
    fu = contact(ny("2026-04-02 10:00"))
    c = cancel(ny("2026-04-06 12:00"), fu)
    for order in ([fu, c], [c, fu]):
        r = Run([discharge(ny("2026-04-01 09:00")), *order, tick(ny("2026-06-01 00:00"))])
        assert r.outcome("followup_72h") is False
        # 72h closed (end of 04-04) before the cancel (04-06): emitted True, corrected to False.
        # 7d and 30d close after the cancel: emitted once, False.
        assert r.report()["events"]["corrections"] == 1
        seventy_two = [o for o in r.outputs if getattr(o, "measure", "") == "followup_72h"]
        assert [o.numerator for o in seventy_two] == [True, False]  # type: ignore[attr-defined]


def test_cancelled_discharge_retracts_and_resolves() -> None:
    d = discharge(ny("2026-04-01 09:00"))
    r = Run([d, tick(ny("2026-04-12 00:00")), cancel(ny("2026-04-11 12:00"), d), tick(ny("2026-06-01 00:00"))])
    assert r.obs == {}
    assert all(a.status.value == "resolved" for a in r.alerts())
    assert only(r, "FollowUpDue").ends_at == utc("2026-04-11 16:00")


def test_orphan_cancel_becomes_a_dead_letter() -> None:
    ghost = contact(ny("2026-04-02 10:00"))
    r = Run([cancel(ny("2026-04-02 12:00"), ghost), tick(ny("2026-04-06 00:00"))])
    dead = [o for o in r.outputs if isinstance(o, DeadLetter)]
    assert [d.kind for d in dead] == [DeadLetterKind.ORPHAN_CANCEL]
    assert r.report()["events"]["dead_letters"] == 1


def test_duplicates_change_nothing() -> None:
    fu = contact(ny("2026-04-02 10:00"))
    r = Run([discharge(ny("2026-04-01 09:00")), fu, fu, tick(ny("2026-06-01 00:00")), fu])
    assert r.report()["events"] == {
        "accepted": 3, "duplicates": 2, "dead_letters": 0, "corrections": 0, "dead_letters_by_kind": {}
    }
    assert r.outcome("followup_72h") is True


def test_step_reports_duplicates_and_state_round_trips() -> None:
    from streams.core import ClientState

    config = CoreConfig(timezone=NY)
    e = referral(ny("2026-04-01 10:00"))
    clock = Clock.at(ny("2026-03-30 00:00"))
    state, outs = step(None, e, clock, config)
    assert outs == []
    assert state is not None
    again = ClientState.from_bytes(state.to_bytes())
    assert again == state
    state2, outs = step(again, e, clock, config)
    assert outs == [Duplicate(e.source, e.id)]

"""Table-driven tests for every precise rule of DOMAIN.md section 3 (hand-checked outcomes).

Zone America/New_York: DST starts 2026-03-08 02:00 local, ends 2026-11-01 02:00 local.
US holidays: Memorial Day Monday 2026-05-25. Outcomes read: None = no observation (not in the
denominator), True/False = numerator, a float = the wait in days.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from pathwatch.parts import core_config
from tests.fixtures.core.build import (
    NY,
    Run,
    admission,
    closed,
    contact,
    crisis,
    discharge,
    ny,
    referral,
    tick,
)

END = tick(ny("2026-12-31 00:00"))  # far enough that every window has closed


def run(*events):  # type: ignore[no-untyped-def]
    return Run([*events, END])


FOLLOWUP_CASES = [
    # (id, events, expected followup_72h, followup_7d, followup_30d, readmission_30d)
    (
        "local day boundary across spring-forward: 23:59 on d+3 counts",
        [discharge(ny("2026-03-07 23:30")), contact(ny("2026-03-10 23:59"))],
        True, True, True, False,
    ),
    (
        "local day boundary across spring-forward: 00:01 on d+4 misses 72h",
        [discharge(ny("2026-03-07 23:30")), contact(ny("2026-03-11 00:01"))],
        False, True, True, False,
    ),
    (
        "fall-back day (25 hours): follow-up on d+3 at 23:30 counts",
        [discharge(ny("2026-10-29 22:00")), contact(ny("2026-11-01 23:30"))],
        True, True, True, False,
    ),
    (
        "follow-up on the discharge day does not count",
        [discharge(ny("2026-04-01 09:00")), contact(ny("2026-04-01 17:00"))],
        False, False, False, False,
    ),
    (
        "telephone counts, text does not, did_not_attend does not",
        [discharge(ny("2026-04-01 09:00")), contact(ny("2026-04-02 10:00"), mode="text"),
         contact(ny("2026-04-03 10:00"), status="did_not_attend"), contact(ny("2026-04-05 10:00"), mode="telephone")],
        False, True, True, False,
    ),
    (
        "same-day admission is a transfer: out of follow-up denominators, not a readmission",
        [discharge(ny("2026-04-01 09:00")), admission(ny("2026-04-01 20:00"))],
        None, None, None, False,
    ),
    (
        "admission before any follow-up excludes the discharge",
        [discharge(ny("2026-04-01 09:00")), admission(ny("2026-04-03 09:00")), contact(ny("2026-04-05 10:00"))],
        None, None, None, True,
    ),
    (
        "follow-up before the admission keeps the discharge (and counts)",
        [discharge(ny("2026-04-01 09:00")), contact(ny("2026-04-02 10:00")), admission(ny("2026-04-03 09:00"))],
        True, True, True, True,
    ),
    (
        "admission after the 72h window only excludes from the longer windows",
        [discharge(ny("2026-04-01 09:00")), admission(ny("2026-04-06 09:00")), contact(ny("2026-04-20 10:00"))],
        False, None, None, True,
    ),
    (
        "observation-stay admission does not exclude or readmit",
        [discharge(ny("2026-04-01 09:00")), admission(ny("2026-04-02 09:00"), setting="observation")],
        False, False, False, False,
    ),
    (
        "readmission on d+30 counts, on d+31 not (local days)",
        [discharge(ny("2026-04-01 23:00")), admission(ny("2026-05-01 23:30"))],
        False, False, None, True,
    ),
    (
        "readmission on d+31 is not a readmission",
        [discharge(ny("2026-04-01 23:00")), admission(ny("2026-05-02 00:30"))],
        False, False, False, False,
    ),
]


@pytest.mark.parametrize(
    ("events", "fu72", "fu7", "fu30", "readmit"),
    [c[1:] for c in FOLLOWUP_CASES],
    ids=[c[0] for c in FOLLOWUP_CASES],
)
def test_followup_and_readmission(events, fu72, fu7, fu30, readmit) -> None:  # type: ignore[no-untyped-def]
    r = run(*events)
    assert r.outcome("followup_72h") == fu72
    assert r.outcome("followup_7d") == fu7
    assert r.outcome("followup_30d") == fu30
    assert r.outcome("readmission_30d") == readmit


@pytest.mark.parametrize(
    "disposition",
    ["died", "acute_transfer", "nonacute_transfer", "prison_or_court"],
)
def test_ineligible_dispositions_are_not_index_events(disposition: str) -> None:
    r = run(discharge(ny("2026-04-01 09:00"), disposition=disposition))
    assert r.obs == {}


@pytest.mark.parametrize(
    ("kw"), [{"setting": "observation"}, {"psychiatric": False}], ids=["observation", "not-psychiatric"]
)
def test_ineligible_discharges(kw: dict) -> None:
    assert run(discharge(ny("2026-04-01 09:00"), **kw)).obs == {}


REFERRAL_CASES = [
    # (id, urgency, referral time, contact time or None, seen_within_target, wait days)
    ("emergency: exactly 4 hours is within", "emergency", "2026-04-01 10:00", "2026-04-01 14:00", True, 0.166667),
    ("emergency: 4 hours and a second is not", "emergency", "2026-04-01 10:00", "2026-04-01 14:00:01", False, 0.166678),
    ("emergency across spring-forward: 4 real hours", "emergency", "2026-03-08 00:30", "2026-03-08 05:30", True, 0.166667),
    ("urgent Friday before Memorial Day: Tuesday is within", "urgent", "2026-05-22 16:00", "2026-05-26 23:00", True, 4.291667),
    ("urgent Friday before Memorial Day: Wednesday is not", "urgent", "2026-05-22 16:00", "2026-05-27 08:00", False, 4.666667),
    ("routine: 10 business days over the holiday is Monday June 8", "routine", "2026-05-22 09:00", "2026-06-08 18:00", True, 17.375),
    ("routine: Tuesday June 9 is late", "routine", "2026-05-22 09:00", "2026-06-09 08:00", False, 17.958333),
    ("never seen: target passed, not within", "routine", "2026-05-22 09:00", None, False, None),
]


@pytest.mark.parametrize(
    ("urgency", "ref_at", "contact_at", "within", "wait"),
    [c[1:] for c in REFERRAL_CASES],
    ids=[c[0] for c in REFERRAL_CASES],
)
def test_seen_within_target(urgency: str, ref_at: str, contact_at: str | None, within: bool, wait: float | None) -> None:
    events = [referral(ny(ref_at), urgency=urgency)]
    if contact_at is not None:
        events.append(contact(ny(contact_at), team="north"))
    r = run(*events)
    assert r.outcome("seen_within_target") is within
    got = r.outcome("referral_wait_days")
    # waits are in days to two decimals, exact halves up
    assert (got is None) if wait is None else got == float(Decimal(wait).quantize(Decimal("0.01"), ROUND_HALF_UP))


def test_referral_contacts_are_its_team_or_carry_its_id() -> None:
    r = run(
        referral(ny("2026-04-01 09:00"), team="north", referral_id="r9"),
        contact(ny("2026-04-02 09:00"), team="south"),  # another team, no id: not the referral's
        contact(ny("2026-04-03 09:00"), team="south", referral_id="r9", status="did_not_attend"),
        contact(ny("2026-04-06 09:00"), team="north"),
    )
    assert r.outcome("first_contact_dna") is True
    assert r.outcome("referral_wait_days") == pytest.approx(5.0)
    assert r.outcome("lost_before_contact") is False
    assert {o.team for o in r.obs.values()} == {"north"}  # type: ignore[attr-defined]


LOST_CASES = [
    ("closed declined without contact: lost", [closed(ny("2026-04-10 09:00"), reason="declined")], True),
    ("closed as seen without contact: known, not lost", [closed(ny("2026-04-10 09:00"), reason="seen")], False),
    ("attended contact: not lost", [contact(ny("2026-04-05 09:00"))], False),
    ("only a did-not-attend, then closed no_contact: lost",
     [contact(ny("2026-04-05 09:00"), status="did_not_attend"), closed(ny("2026-04-20 09:00"), reason="no_contact")], True),
    ("open past 28 days with no contact: lost", [], True),
    ("contact after closure does not count", [closed(ny("2026-04-10 09:00"), reason="other"), contact(ny("2026-04-11 09:00"))], True),
]


@pytest.mark.parametrize(("events", "lost"), [c[1:] for c in LOST_CASES], ids=[c[0] for c in LOST_CASES])
def test_lost_before_contact(events: list, lost: bool) -> None:
    r = run(referral(ny("2026-04-01 09:00")), *events)
    assert r.outcome("lost_before_contact") is lost


def test_open_past_limit_then_seen_is_a_correction() -> None:
    r = run(referral(ny("2026-04-01 09:00")), contact(ny("2026-05-15 09:00")))
    assert r.outcome("lost_before_contact") is False
    lost = [o for o in r.outputs if getattr(o, "measure", "") == "lost_before_contact"]
    assert [(o.numerator, o.correction) for o in lost] == [(True, False), (False, True)]  # type: ignore[attr-defined]
    assert r.report()["events"]["corrections"] == 1


def test_first_contact_dna_needs_a_first_contact() -> None:
    assert run(referral(ny("2026-04-01 09:00"))).outcome("first_contact_dna") is None
    r = run(referral(ny("2026-04-01 09:00")), contact(ny("2026-04-02 09:00"), status="did_not_attend"))
    assert r.outcome("first_contact_dna") is True


CRISIS_CASES = [
    ("exactly 30x24h earlier is a repeat", "2026-04-01 09:00", "2026-05-01 09:00", True),
    ("30 days and a second earlier is not", "2026-04-01 08:59:59", "2026-05-01 09:00", False),
    ("same instant is not strictly earlier", "2026-05-01 09:00", "2026-05-01 09:00", False),
]


@pytest.mark.parametrize(("first", "second", "repeat"), [c[1:] for c in CRISIS_CASES], ids=[c[0] for c in CRISIS_CASES])
def test_repeat_crisis(first: str, second: str, repeat: bool) -> None:
    r = run(crisis(ny(first), id="a"), crisis(ny(second), id="b"))
    found = {o.key.split("\x1f")[-1]: o.numerator for o in r.measure("repeat_crisis_30d")}  # type: ignore[attr-defined]
    assert found["b"] is repeat
    assert found["a"] is False


TEAM_CASES = [
    ("discharge's own team wins", [referral(ny("2026-04-01 09:00"), team="north")], "east", "east"),
    ("latest referral before the discharge", [referral(ny("2026-04-01 09:00"), team="north")], None, "north"),
    ("latest attended contact after the referral", [referral(ny("2026-04-01 09:00"), team="north"),
                                                    contact(ny("2026-04-02 09:00"), team="south")], None, "south"),
    ("a did-not-attend contact does not assign", [referral(ny("2026-04-01 09:00"), team="north"),
                                                  contact(ny("2026-04-02 09:00"), team="south", status="did_not_attend")], None, "north"),
    ("nothing before: unassigned", [], None, "unassigned"),
    ("a referral after the discharge does not count", [referral(ny("2026-04-09 09:00"), team="north")], None, "unassigned"),
]


@pytest.mark.parametrize(("before", "team", "expected"), [c[1:] for c in TEAM_CASES], ids=[c[0] for c in TEAM_CASES])
def test_responsible_team(before: list, team: str | None, expected: str) -> None:
    r = run(*before, discharge(ny("2026-04-05 09:00"), team=team))
    [o] = r.measure("followup_7d")
    assert o.team == expected  # type: ignore[attr-defined]
    teams = {row["team"] for row in r.report()["measures"]}
    assert expected in teams
    assert "*" in teams


def test_config_from_settings() -> None:
    from pathwatch.config import load_settings

    s = load_settings(timezone=NY, holidays="GB", holidays_subdivision="ENG", frequent_crisis="5-in-365",
                      allowed_lateness="48h")
    c = core_config(s)
    assert (c.timezone, c.holidays_country, c.holidays_subdivision) == (NY, "GB", "ENG")
    assert (c.frequent_crisis_k, c.frequent_crisis_days) == (5, 365)
    assert c.allowed_lateness == timedelta(hours=48)

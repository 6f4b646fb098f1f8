"""A cancelled event re-issued with the same (source, id) stands (DOMAIN.md section 1).

HL7 gives an admission and a discharge the ids ``<visit>:A01`` / ``<visit>:A03``, so A03 (the
discharge), A13 (cancel: entered in error), A03 (the corrected discharge) names one id twice;
canonical publishers may do the same. The rule (docs/events.md, "Cancels, duplicates and re-issues"): the events of
one (source, id) that differ (in time or data) are its versions, in the order they arrive; the
i-th cancel of it (cancels in time order) cancels the i-th version at the cancel's time, and
the first version no cancel is left for stands, from that cancel's time on. A version beyond that stands only once a
further cancel comes; a repeat identical to a version is a duplicate. So the final report does
not depend on where the cancels arrive (first, between, last), only on the order of the
versions themselves, which their publisher sends in order on one key.
"""

from __future__ import annotations

from datetime import timedelta
from itertools import permutations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.model import Event
from streams.core import CoreConfig
from tests.fixtures.core.build import (
    NY,
    Run,
    admission,
    cancel,
    contact,
    discharge,
    draw_history,
    ny,
    referral,
    tick,
)

CONFIG = CoreConfig(timezone=NY)
START = ny("2026-03-01 00:00")


def _report(events: list[Event]) -> dict:
    return Run([*events, tick(ny("2026-06-01 00:00"))], CONFIG).report()


def _discharges(run: Run) -> set[tuple[str, object]]:
    return {(o.measure, o.index_time) for o in run.obs.values() if o.measure.startswith("followup_")}  # type: ignore[attr-defined]


def test_a_corrected_discharge_after_a_cancel_stands_with_its_own_time() -> None:
    wrong = discharge(ny("2026-04-06 10:00"), team="north", id="v1:A03", source="hospital/h")
    cancelled = cancel(ny("2026-04-06 11:00"), wrong, id="v1:A13:m2")
    corrected = discharge(ny("2026-04-03 09:30"), team="north", id="v1:A03", source="hospital/h")
    follow_up = contact(ny("2026-04-05 10:00"), team="north")  # day 2 after the corrected one
    run = Run([wrong, cancelled, corrected, follow_up, tick(ny("2026-06-01 00:00"))], CONFIG)
    followups = {o.measure: o for o in run.obs.values() if o.measure.startswith("followup_")}  # type: ignore[attr-defined]
    assert set(followups) == {"followup_72h", "followup_7d", "followup_30d"}
    assert {o.index_time for o in followups.values()} == {ny("2026-04-03 09:30")}
    assert all(o.numerator for o in followups.values())
    assert run.engine.counters.as_dict() == {"accepted": 5, "duplicates": 0, "dead_letters": 0, "corrections": 0, "dead_letters_by_kind": {}}


def test_the_same_versions_and_cancel_in_any_arrival_order_give_one_report() -> None:
    wrong = discharge(ny("2026-04-06 10:00"), team="north", id="v1:A03", source="hospital/h")
    cancelled = cancel(ny("2026-04-06 11:00"), wrong, id="v1:A13:m2")
    corrected = discharge(ny("2026-04-03 09:30"), team="north", id="v1:A03", source="hospital/h")
    # the cancel first, between the two versions, or after both: the corrected version stands
    orders = [[wrong, cancelled, corrected], [cancelled, wrong, corrected], [wrong, corrected, cancelled]]
    reports = [_report(order) for order in orders]
    assert reports[1] == reports[0]
    assert reports[2] == reports[0]
    rows = {(r["measure"], r["team"]): r["denominator"] for r in reports[0]["measures"]}
    assert rows[("followup_30d", "north")] == 1  # one discharge stands
    alerts = {a["labels"]["alertname"]: a["startsAt"] for a in reports[0]["alerts"]}
    assert alerts["FollowUpMissed"] == "2026-04-11T04:00:00+00:00"  # end of 04-10 (d+7 of 04-03)


def test_a_readmission_corrected_after_a_cancel_counts_once_at_its_own_time() -> None:
    first = discharge(ny("2026-04-01 10:00"), team="north", id="d")
    admit = admission(ny("2026-04-20 10:00"), id="v2:A01", source="hospital/h")
    undo = cancel(ny("2026-04-20 12:00"), admit, id="v2:A11:m9")
    again = admission(ny("2026-04-25 10:00"), id="v2:A01", source="hospital/h")
    for order in permutations([admit, undo, again]):
        if order.index(admit) > order.index(again):
            continue  # versions arrive in their publisher's order
        run = Run([first, contact(ny("2026-04-02 10:00"), team="north"), *order, tick(ny("2026-06-20 00:00"))], CONFIG)
        assert run.outcome("readmission_30d") is True, order
        assert ny("2026-04-25 10:00") in {a.starts_at for a in run.alerts("Readmitted30d")}, order  # type: ignore[attr-defined]


def test_a_repeat_of_an_event_not_cancelled_is_a_duplicate_and_so_is_an_identical_re_issue() -> None:
    d = discharge(ny("2026-04-06 10:00"), team="north", id="v1:A03", source="hospital/h")
    run = Run([d, d, tick(ny("2026-06-01 00:00"))], CONFIG)
    assert run.engine.counters.duplicates == 1
    # identical to the cancelled version: the publisher repeated it; it does not stand
    c = cancel(ny("2026-04-06 11:00"), d, id="v1:A13:m2")
    for order in ([d, c, d], [d, d, c]):
        run = Run([*order, tick(ny("2026-06-01 00:00"))], CONFIG)
        assert run.measure("followup_30d") == [], order
        assert run.engine.counters.duplicates == 1


def test_a_re_issue_without_a_cancel_changes_nothing_until_one_comes() -> None:
    first = discharge(ny("2026-04-06 10:00"), team="north", id="v1:A03", source="hospital/h")
    second = discharge(ny("2026-04-03 09:30"), team="south", id="v1:A03", source="hospital/h")
    run = Run([first, second, tick(ny("2026-06-01 00:00"))], CONFIG)
    assert {o.team for o in run.measure("followup_30d")} == {"north"}  # type: ignore[attr-defined]
    assert {o.index_time for o in run.measure("followup_30d")} == {ny("2026-04-06 10:00")}  # type: ignore[attr-defined]


def test_canonical_json_lines_re_issue_the_same_way() -> None:
    import json

    from tests.fixtures.core.build import replay_lines

    def line(id_: str, time: str, type_: str, data: dict) -> bytes:
        return json.dumps({"specversion": "1.0", "id": id_, "source": "hospital/h", "type": type_,
                           "time": time, "subject": "MRN-1", "data": data}).encode()

    stay = {"encounter_id": "E1", "facility": "h", "setting": "inpatient", "psychiatric": True,
            "disposition": "home", "team": "north"}
    lines = [
        line("E1:discharge", "2026-04-06T10:00:00-04:00", "discharge", stay),
        line("E1:cancel", "2026-04-06T11:00:00-04:00", "cancel", {"cancels": "E1:discharge"}),
        line("E1:discharge", "2026-04-03T09:30:00-04:00", "discharge", stay),
        line("E1:discharge", "2026-04-03T09:30:00-04:00", "discharge", stay),  # a repeat: duplicate
        line("tick", "2026-06-01T00:00:00-04:00", "admission",
             {"encounter_id": "T", "facility": "h", "setting": "observation", "psychiatric": False}),
    ]
    report = replay_lines(lines, CONFIG, b"k").report()
    assert report["events"] == {"accepted": 4, "duplicates": 1, "dead_letters": 0, "corrections": 0, "dead_letters_by_kind": {}}
    rows = {(r["measure"], r["team"]): r["denominator"] for r in report["measures"]}
    assert rows[("followup_30d", "north")] == 1
    missed = [a for a in report["alerts"] if a["labels"]["alertname"] == "FollowUpMissed"]
    assert [a["startsAt"] for a in missed] == ["2026-04-11T04:00:00+00:00"]


@st.composite
def _streams_with_re_issues(draw: st.DrawFn) -> list[tuple[Event, timedelta]]:
    """Random histories (as the order-independence test draws them) where some events are
    cancelled and re-issued with the same (source, id) and another time; each event with an
    arrival delay within the lateness, a re-issue never arriving before what it re-issues."""
    events = draw_history(draw, draw(st.integers(1, 30)), START, 40, 3, ["north", "south"])
    out: list[tuple[Event, timedelta]] = [(e, timedelta(hours=draw(st.integers(0, 72)))) for e in events]
    originals = [e for e in events if e.type != "cancel"]
    for _ in range(draw(st.integers(1, 4)) if originals else 0):
        target = draw(st.sampled_from(originals))
        shift = timedelta(minutes=30 * draw(st.integers(-96, 96)))
        again = Event(target.source, target.id, target.type, target.time + shift, target.client, target.data)
        first = next(d for e, d in out if e is target)
        delay = max(timedelta(hours=draw(st.integers(0, 72))), target.time + first - again.time)
        out.append((again, delay))
        if draw(st.booleans()):
            when = target.time + timedelta(minutes=30 * draw(st.integers(0, 96)))
            out.append((cancel(when, target, id=f"x{len(out)}"), timedelta(hours=draw(st.integers(0, 72)))))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_streams_with_re_issues())
def test_where_cancels_arrive_does_not_change_what_stands(stream: list[tuple[Event, timedelta]]) -> None:
    """Two arrival orders within the lateness that keep each key's versions in their order
    (cancels anywhere) give the same report."""
    def arrival(order: list[tuple[Event, timedelta]]) -> list[Event]:
        return [e for e, _ in order]

    by_arrival = sorted(stream, key=lambda p: p[0].time + p[1])
    in_time = sorted(stream, key=lambda p: p[0].time)
    # keep the versions of each key in their arrival order in both (a stable fix-up)
    def keep_versions(order: list[tuple[Event, timedelta]]) -> list[tuple[Event, timedelta]]:
        ranks: dict[tuple[str, str], list[tuple[Event, timedelta]]] = {}
        for p in by_arrival:
            if p[0].type != "cancel":
                ranks.setdefault(p[0].key, []).append(p)
        seen: dict[tuple[str, str], int] = {}
        fixed = []
        for p in order:
            if p[0].type == "cancel":
                fixed.append(p)
                continue
            i = seen.get(p[0].key, 0)
            seen[p[0].key] = i + 1
            fixed.append(ranks[p[0].key][i])
        return fixed

    a, b = arrival(keep_versions(by_arrival)), arrival(keep_versions(in_time))
    ra, rb = Run([*a, tick(ny("2026-06-01 00:00"))], CONFIG).report(), Run([*b, tick(ny("2026-06-01 00:00"))], CONFIG).report()
    assert ra == rb


def test_a_re_issue_unlocked_by_a_cancel_arriving_last_changes_nothing_already_final() -> None:
    """Found by the property above: a re-issue (dated before the watermark) waiting for its
    cancel stands from the cancel's time, not from its own, so a cancel arriving after the
    watermark passed the re-issue's time moves nothing that was final before the cancel. (The
    first version's seen_within_target, final before the cancel, is revised once when the
    re-issue replaces it: one correction, whichever the order.)"""
    v0 = referral(ny("2026-03-17 08:30"), team="south", urgency="emergency", referral_id="r2", id="e4")
    v1 = referral(ny("2026-03-17 08:00"), team="south", urgency="emergency", referral_id="r2", id="e4")
    undo = cancel(ny("2026-03-19 08:30"), v0, id="x6")
    later = referral(ny("2026-03-20 13:00"), team="north", urgency="urgent", referral_id="r0", id="e3")
    reports = [_report(order) for order in ([v0, v1, later, undo], [v0, v1, undo, later])]
    assert reports[0] == reports[1]
    assert reports[0]["events"]["corrections"] == 1

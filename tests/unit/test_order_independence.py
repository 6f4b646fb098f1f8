"""Property: the final report does not depend on arrival order within the allowed lateness.

Streams are generated over a few clients and about 50 days (across the spring DST change in
America/New_York), with every event type, cancels of earlier events and duplicates. An
arrival order is "within the allowed lateness" when every event arrives before any event more
than the lateness newer than it: each event gets an arrival key time + delay with the delay
in [0, lateness], and events arrive sorted by that key. The report (measures, waits, alerts
with status, counters including corrections) must equal the report of the same events in
time order.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.model import Event
from streams.core import CoreConfig
from streams.engine import Engine
from tests.fixtures.core.build import (
    admission,
    cancel,
    closed,
    contact,
    crisis,
    discharge,
    ny,
    referral,
)

START = ny("2026-03-01 00:00")
CONFIG = CoreConfig(timezone="America/New_York")
LATENESS = CONFIG.allowed_lateness
TEAMS = ["north", "south"]


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[Event, timedelta]]:
    n = draw(st.integers(min_value=1, max_value=40))
    events: list[Event] = []
    for i in range(n):
        client = f"c{draw(st.integers(0, 3))}"
        when = START + timedelta(minutes=30 * draw(st.integers(0, 50 * 48)))
        kind = draw(st.sampled_from(["referral", "closed", "contact", "crisis", "admission", "discharge", "cancel", "dup"]))
        team = draw(st.sampled_from(TEAMS))
        ref = f"r{draw(st.integers(0, 2))}"
        kw = {"client": client, "id": f"e{i}"}
        if kind == "referral":
            e = referral(when, team=team, referral_id=ref, urgency=draw(st.sampled_from(["emergency", "urgent", "routine"])), **kw)
        elif kind == "closed":
            e = closed(when, referral_id=ref, reason=draw(st.sampled_from(["seen", "declined", "no_contact"])), **kw)
        elif kind == "contact":
            e = contact(when, team=team, status=draw(st.sampled_from(["attended", "attended", "did_not_attend", "cancelled"])),
                        mode=draw(st.sampled_from(["face_to_face", "telephone", "text"])),
                        referral_id=draw(st.sampled_from([None, ref])), **kw)
        elif kind == "crisis":
            e = crisis(when, team=draw(st.sampled_from([None, team])), **kw)
        elif kind == "admission":
            e = admission(when, setting=draw(st.sampled_from(["inpatient", "inpatient", "observation"])), **kw)
        elif kind == "discharge":
            e = discharge(when, team=draw(st.sampled_from([None, team])),
                          disposition=draw(st.sampled_from(["home", "home", "died"])), **kw)
        elif kind == "cancel" and events:
            target = draw(st.sampled_from(events))
            later = target.time + timedelta(minutes=30 * draw(st.integers(0, 20 * 48)))
            e = cancel(later, target, id=f"e{i}")
        elif kind == "dup" and events:
            e = draw(st.sampled_from(events))
        else:
            continue
        events.append(e)
    hours = int(LATENESS / timedelta(hours=1))
    return [(e, timedelta(hours=draw(st.integers(0, hours)))) for e in events]


def replay(events: list[Event]) -> dict:
    engine = Engine(CONFIG)
    for e in events:
        engine.feed(e)
    engine.finish()
    return engine.report()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_arrival_order_within_lateness_does_not_change_the_report(stream: list[tuple[Event, timedelta]]) -> None:
    in_time_order = [e for e, _ in sorted(stream, key=lambda p: p[0].time)]
    shuffled = [e for e, _ in sorted(stream, key=lambda p: p[0].time + p[1])]
    assert replay(shuffled) == replay(in_time_order)


def test_the_generator_makes_interesting_reports() -> None:
    """Guard against a vacuous property: a fixed, hand-made stream does produce outcomes."""
    events = [
        referral(ny("2026-03-01 09:00"), id="a"),
        discharge(ny("2026-03-02 09:00"), id="b"),
        contact(ny("2026-03-04 09:00"), id="c"),
        crisis(ny("2026-03-05 09:00"), id="d"),
        admission(ny("2026-04-20 09:00"), setting="observation", id="e"),
    ]
    report = replay(events)
    dens = {(r["measure"], r["team"]): r["denominator"] for r in report["measures"]}
    assert dens[("followup_7d", "north")] == 1
    assert dens[("seen_within_target", "*")] == 1

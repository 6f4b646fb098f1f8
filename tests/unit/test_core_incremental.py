"""Property: the incremental evaluation of the core equals the full re-derivation.

By default the core re-derives, at each breakpoint, only the index events that the changes
since the previous evaluation can affect, and re-derives the alerts only when they may change
(``streams.core._INCREMENTAL``). With the switch off it re-derives everything at every
breakpoint: the reference. On generated streams (every event type, cancels, duplicates, late
and shuffled arrivals, spans long enough for pruning), every output of every fed event, of
``finish`` and the final report must be the same in both modes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streams.core as core
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
TEAMS = ["north", "south"]


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Event], int]:
    n = draw(st.integers(min_value=1, max_value=45))
    # mostly dense streams (many interactions), sometimes spread over most of a year (pruning)
    span_days = draw(st.sampled_from([20, 50, 50, 300]))
    clients = draw(st.integers(1, 3))
    events: list[Event] = []
    for i in range(n):
        client = f"c{draw(st.integers(0, clients - 1))}"
        when = START + timedelta(minutes=30 * draw(st.integers(0, span_days * 48)))
        kind = draw(st.sampled_from(
            ["referral", "closed", "contact", "contact", "crisis", "admission", "discharge", "cancel", "dup"]
        ))
        team = draw(st.sampled_from(TEAMS))
        ref = f"r{draw(st.integers(0, 2))}"
        kw = {"client": client, "id": f"e{i}"}
        if kind == "referral":
            e = referral(when, team=team, referral_id=ref,
                         urgency=draw(st.sampled_from(["emergency", "urgent", "routine"])), **kw)
        elif kind == "closed":
            e = closed(when, referral_id=ref, reason=draw(st.sampled_from(["seen", "declined", "no_contact"])), **kw)
        elif kind == "contact":
            e = contact(when, team=team,
                        status=draw(st.sampled_from(["attended", "attended", "did_not_attend", "cancelled"])),
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
    # arrival: time plus a delay of up to twice the lateness (so some events are late)
    hours = 2 * int(CONFIG.allowed_lateness / timedelta(hours=1))
    delays = [timedelta(hours=draw(st.integers(0, hours))) for _ in events]
    order = sorted(range(len(events)), key=lambda i: events[i].time + delays[i])
    return [events[i] for i in order], draw(st.integers(1, 2))


@contextmanager
def incremental(on: bool) -> Iterator[None]:
    saved = core._INCREMENTAL
    core._INCREMENTAL = on
    try:
        yield
    finally:
        core._INCREMENTAL = saved


def run(events: list[Event], partitions: int, on: bool) -> tuple[list[list[object]], dict]:
    with incremental(on):
        engine = Engine(CONFIG)
        outputs: list[list[object]] = [engine.feed(e, partition=hash(e.client) % partitions) for e in events]
        outputs.append(list(engine.finish()))
        return outputs, engine.report()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_incremental_outputs_equal_the_full_rederivation(stream: tuple[list[Event], int]) -> None:
    events, partitions = stream
    assert run(events, partitions, True) == run(events, partitions, False)


def test_the_switch_selects_the_reference() -> None:
    """Guard against a vacuous property: with the switch off, the incremental helpers are not
    used, so the two runs above really are different code paths."""
    calls = []
    original = core._affected_observations

    def spy(*args: object) -> list[core.Rec]:
        calls.append(1)
        return original(*args)  # type: ignore[arg-type]

    events = [referral(ny("2026-03-01 09:00"), id="a"), contact(ny("2026-03-02 09:00"), id="b"),
              discharge(ny("2026-03-10 09:00"), id="c"), contact(ny("2026-03-12 09:00"), id="d")]
    core._affected_observations = spy  # type: ignore[assignment]
    try:
        off, _ = run(events, 1, False)
        assert not calls
        on, _ = run(events, 1, True)
        assert calls
    finally:
        core._affected_observations = original  # type: ignore[assignment]
    assert on == off
    assert any(o for o in on)

"""Property: the incremental evaluation of the core equals the full re-derivation.

By default the core re-derives, at each breakpoint, only the index events that the changes
since the previous evaluation can affect, and re-derives the alerts only when they may change
(``CoreConfig.incremental``). With the switch off it re-derives everything at every
breakpoint: the reference. On generated streams (every event type, cancels, duplicates, late
and shuffled arrivals, spans long enough for pruning), every output of every fed event, of
``finish`` and the final report must be the same in both modes.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streams.core as core
from schemas.model import Event
from streams.core import CoreConfig
from streams.engine import Engine
from tests.fixtures.core.build import contact, discharge, draw_history, ny, referral

START = ny("2026-03-01 00:00")
CONFIG = CoreConfig(timezone="America/New_York")
TEAMS = ["north", "south"]


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Event], int]:
    n = draw(st.integers(min_value=1, max_value=45))
    # mostly dense streams (many interactions), sometimes spread over most of a year (pruning)
    span_days = draw(st.sampled_from([20, 50, 50, 300]))
    clients = draw(st.integers(1, 3))
    kinds = ("referral", "closed", "contact", "contact", "crisis", "admission", "discharge", "cancel", "dup")
    events = draw_history(draw, n, START, span_days, clients, TEAMS, kinds)
    # arrival: time plus a delay of up to twice the lateness (so some events are late)
    hours = 2 * int(CONFIG.allowed_lateness / timedelta(hours=1))
    delays = [timedelta(hours=draw(st.integers(0, hours))) for _ in events]
    order = sorted(range(len(events)), key=lambda i: events[i].time + delays[i])
    return [events[i] for i in order], draw(st.integers(1, 2))


def run(events: list[Event], partitions: int, on: bool) -> tuple[list[list[object]], dict]:
    engine = Engine(dataclasses.replace(CONFIG, incremental=on))
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

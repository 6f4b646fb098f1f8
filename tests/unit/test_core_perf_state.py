"""The pending-breakpoint list kept in ``ClientState.pending`` is only a cache.

A state whose list is dropped (as for a state written before the field existed, or by a
driver that round-trips states through bytes) must give exactly the outputs of one that
keeps it, for live-like clocks (alert clock ahead of the watermark) and replay-like ones.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.model import Event
from streams.core import ClientState, Clock, Output, step, sweep
from tests.fixtures.core.build import discharge, ny, referral
from tests.unit.test_core_incremental import CONFIG, streams


def drive(events: list[Event], ahead: list[int], drop: bool) -> list[list[Output]]:
    """Feed ``events`` client by client as a live stage 1 would: watermark = largest time less
    the lateness, alert clock ``ahead`` hours later; sweep each client once its due is reached."""
    states: dict[str, ClientState] = {}
    top = None
    result: list[list[Output]] = []
    for e, hours in zip(events, ahead, strict=True):
        top = e.time if top is None else max(top, e.time)
        w = top - CONFIG.allowed_lateness
        clock = Clock(w, w + timedelta(hours=hours))
        state = states.get(e.client)
        if drop and state is not None:
            state = ClientState.from_bytes(state.to_bytes())
            state.pending = None
        new, outs = step(state, e, clock, CONFIG)
        states.pop(e.client, None)
        if new is not None:
            states[e.client] = new
        for client in sorted(states):
            s = states[client]
            if s.due is not None and s.due <= clock.alert_us:
                if drop:
                    s = ClientState.from_bytes(s.to_bytes())
                    s.pending = None
                s2, more = sweep(s, clock, CONFIG)
                outs = [*outs, *more]
                states.pop(client)
                if s2 is not None:
                    states[client] = s2
        result.append(outs)
    return result


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.data())
def test_kept_pending_breakpoints_change_no_output(stream: tuple[list[Event], int], data: st.DataObject) -> None:
    events, _ = stream
    ahead = [data.draw(st.sampled_from([0, 0, 5, 30, 100])) for _ in events]
    assert drive(events, ahead, drop=False) == drive(events, ahead, drop=True)


def test_a_state_written_without_the_pending_list_still_decodes_and_advances() -> None:
    events = [referral(ny("2026-03-01 09:00"), id="a"), discharge(ny("2026-03-02 09:00"), id="b")]
    state = None
    for e in events:
        state, _ = step(state, e, Clock.at(ny("2026-03-01 00:00")), CONFIG)
    assert state is not None
    assert state.pending is not None
    old = msgspec.msgpack.decode(state.to_bytes())  # the serialised form, by wire name
    del old["pend"]
    decoded = ClientState.from_bytes(msgspec.msgpack.encode(old))
    assert decoded.pending is None
    late = Clock.at(ny("2026-04-15 00:00"))
    kept, outs_kept = sweep(state, late, CONFIG)
    again, outs_decoded = sweep(decoded, late, CONFIG)
    assert outs_kept == outs_decoded
    # hand-checked: the routine referral was never seen and the discharge never followed up,
    # so by mid-April both have observations and alerts
    assert any(getattr(o, "measure", None) == "followup_7d" for o in outs_kept)
    assert any(getattr(o, "name", None) == "FollowUpMissed" for o in outs_kept)

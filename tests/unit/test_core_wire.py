"""Client states written by earlier versions still load (issue 16: state fields renamed).

``tests/fixtures/core/client_states_main.hex`` holds, one per line, the serialised client
state after each event of :func:`scenario`, written by ``streams/core.py`` as it was on main
(commit 5fcbc90: short field names, input offsets and corrections in the core's state),
with the corrections counted the way live stage 1 counts them. Driving the same events
through today's code must give states equal to the decoded ones, with the same serialised
map, and the core alone must read them too (it ignores stage 1's bookkeeping). Main wrote no
case-mix strata (issue 18): they are left out of today's states before comparing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import msgspec

from schemas.model import Event
from streams.core import K_CRISIS, K_DISCHARGE, ClientState, Clock, CoreConfig, Observation
from streams.live_state import LiveClientState, applied, live_step
from tests.fixtures.core.build import cancel, contact, crisis, discharge, ny, referral

CONFIG = CoreConfig(timezone="America/New_York")
WRITTEN_BY_MAIN = Path(__file__).parents[1] / "fixtures" / "core" / "client_states_main.hex"


def scenario() -> list[tuple[Event, int, datetime]]:
    """(event, input sequence number, watermark): a referral left unseen, a discharge with no
    follow-up (alerts fire), two crises and a cancel, a contact that corrects, and months
    later a new referral (the first history is pruned: kept team pair, ``pruned_before``);
    sequence numbers of both inputs."""
    r1 = referral(ny("2026-01-05 09:00"), id="r1", team="north")
    d1 = discharge(ny("2026-01-10 09:00"), id="d1", team="north")
    c1 = crisis(ny("2026-01-12 09:00"), id="k1")
    c2 = crisis(ny("2026-01-20 09:00"), id="k2")
    x1 = cancel(ny("2026-01-21 09:00"), c2, id="x1")
    ct = contact(ny("2026-01-30 09:00"), id="t1", team="north")
    r2 = referral(ny("2026-07-01 09:00"), id="r2", team="south", urgency="urgent", referral_id="r2")
    late = contact(ny("2026-07-02 09:00"), id="t2", team="south", referral_id="r2", status="did_not_attend")
    out = []
    for seq, (e, lag) in enumerate([(r1, 0), (d1, 0), (c1, 0), (c2, 0), (x1, 0), (ct, 0), (r2, 0), (late, 5)], 1):
        out.append((e, seq * 2 + (seq % 2), e.time + timedelta(days=lag) - timedelta(hours=72)))
    return out


def without_strata(state: LiveClientState) -> LiveClientState:
    """``state`` as main wrote it, before strata (issue 18): no stratum on emitted
    observations, no setting or disposition kept on crisis and discharge records."""
    recs = [msgspec.structs.replace(r, detail="") if r.kind in (K_CRISIS, K_DISCHARGE) else r for r in state.recs]
    obs = {k: msgspec.structs.replace(o, stratum="") for k, o in state.obs.items()}
    return msgspec.structs.replace(state, recs=recs, obs=obs)


def test_states_written_by_main_decode_to_the_same_state() -> None:
    written = [bytes.fromhex(line) for line in WRITTEN_BY_MAIN.read_text().split()]
    events = scenario()
    assert len(written) == len(events)
    state: LiveClientState | None = None
    for (event, seq, watermark), raw in zip(events, written, strict=True):
        before = 0 if state is None else state.corrections
        state, outs = live_step(state, event, Clock.at(watermark), CONFIG, seq)
        assert state is not None
        state.corrections = before + sum(1 for o in outs if isinstance(o, Observation) and o.correction)
        old = LiveClientState.from_bytes(raw)
        assert old == without_strata(state)
        written_today = msgspec.msgpack.decode(without_strata(state).to_bytes())
        if "obs" in written_today:  # (left out when empty) the stratum is appended to each
            written_today["obs"] = {k: o[:5] for k, o in written_today["obs"].items()}
        assert written_today == msgspec.msgpack.decode(raw)
        assert applied(old, seq) is True
        core_only = ClientState.from_bytes(raw)
        assert core_only.obs_until == state.obs_until
        assert core_only.recs == without_strata(state).recs
    assert state is not None
    assert state.pruned_before > 0
    assert state.last_assigned_team == "north"
    assert state.corrections == 1

"""Case-mix strata: carried by observations, counted by stage 2, adjusted on the board.

The stratum of an observation is a field of its index event (docs/board.md, "Case mix"): the
referral's urgency, the crisis's setting, the discharge's disposition. The replay and
``report --from-live`` count it in the same stage-2 windows, so both build the same cells.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from board.sections import CASE_MIX_NOTE, case_mix, cells_of
from schemas.model import Event
from streams.core import ClientState, CoreConfig, Observation
from streams.report import strata_sections
from streams.windows import TeamWindows
from tests.fixtures.core.build import (
    NY,
    Run,
    contact,
    crisis,
    discharge,
    draw_history,
    ny,
    referral,
    tick,
)

CONFIG = CoreConfig(timezone=NY)


def _strata(windows: TeamWindows) -> list[dict]:
    return strata_sections(windows)["strata"]


def test_observations_written_before_strata_still_decode() -> None:
    old = {
        "measure": "seen_within_target", "key": "k1", "team": "north",
        "index_time": datetime(2026, 3, 2, tzinfo=UTC), "numerator": True, "wait_days": None,
        "retracted": False, "correction": False,
    }
    decoded = Observation.from_bytes(msgspec.msgpack.encode(old))
    assert decoded == Observation("seen_within_target", "k1", "north", datetime(2026, 3, 2, tzinfo=UTC), True)
    assert decoded.stratum == ""
    # a stage-1 state whose emitted observations have no stratum loads too
    state = {"client": "p1", "obs": {"k1": ["seen_within_target", "north", 0, True, None]}}
    assert ClientState.from_bytes(msgspec.msgpack.encode(state)).obs["k1"].stratum == ""


def test_an_observation_carries_its_index_events_stratum() -> None:
    events = [
        referral(ny("2026-03-02 09:00"), urgency="emergency", client="a"),
        contact(ny("2026-03-02 10:00"), referral_id="r1", client="a"),
        crisis(ny("2026-03-03 09:00"), team="north", setting="emergency_department", client="b"),
        discharge(ny("2026-03-04 09:00"), team="north", disposition="against_medical_advice", client="c"),
        tick(ny("2026-06-01 00:00")),
    ]
    strata = {o.measure: o.stratum for o in Run(events, CONFIG).obs.values()}
    assert strata == {
        "seen_within_target": "emergency", "referral_wait_days": "emergency",
        "lost_before_contact": "emergency", "first_contact_dna": "emergency",
        "repeat_crisis_30d": "emergency_department",
        "followup_72h": "against_medical_advice", "followup_7d": "against_medical_advice",
        "followup_30d": "against_medical_advice", "readmission_30d": "against_medical_advice",
    }


def _referrals(team: str, urgency: str, on_time: int, late: int) -> list[Event]:
    """``on_time + late`` referrals of ``team``, one client each, seen on time or late."""
    events = []
    start = ny("2026-03-02 09:00")  # a Monday
    for i in range(on_time + late):
        client = f"{team}-{urgency}-{i}"
        when = start + timedelta(hours=i)
        # emergency: 4 hours; routine: 10 business days (CoreConfig's defaults)
        seen = when + (timedelta(hours=1) if i < on_time else timedelta(days=20))
        events.append(referral(when, team=team, urgency=urgency, referral_id="r1", client=client))
        events.append(contact(seen, team=team, referral_id="r1", client=client))
    return events


def test_a_team_seeing_mostly_emergencies_is_compared_with_its_own_mix() -> None:
    """seen_within_target. north: 4 of 8 emergencies and 2 of 2 routine referrals seen on time
    (6 of 10); south: 1 of 2 emergencies and 6 of 8 routine (7 of 10). The provider's rates
    by urgency: emergency 5/10 = 0.5, routine 8/10 = 0.8. Expected: north 8 x 0.5 + 2 x 0.8
    = 5.6, south 2 x 0.5 + 8 x 0.8 = 7.4. Crude, north (60%) looks worse than south (70%);
    for its mix it does better than expected (6 / 5.6) and south worse (7 / 7.4). Below 10
    events the intervals are exact Poisson: 95% limits of a count of 6 are 2.2019 and
    13.0591, of 7 are 2.8143 and 14.4227 (published tables)."""
    events = [
        *_referrals("north", "emergency", 4, 4), *_referrals("north", "routine", 2, 0),
        *_referrals("south", "emergency", 1, 1), *_referrals("south", "routine", 6, 2),
        tick(ny("2026-06-01 00:00")),
    ]
    rows = _strata(Run(events, CONFIG).engine.windows)
    assert [(r["team"], r["stratum"], r["numerator"], r["denominator"]) for r in rows
            if r["measure"] == "seen_within_target"] == [
        ("north", "emergency", 4, 8), ("north", "routine", 2, 2),
        ("south", "emergency", 1, 2), ("south", "routine", 6, 8),
    ]
    section = case_mix(cells_of({"strata": rows}))
    [seen] = [m for m in section["measures"] if m["measure"] == "seen_within_target"]
    assert seen["strata"] == "urgency"
    north, south = seen["teams"]
    assert (north["team"], north["observed"], north["denominator"]) == ("north", 6, 10)
    assert north["expected"] == pytest.approx(5.6)
    assert north["ratio"] == pytest.approx(6 / 5.6)
    assert (north["lower"], north["upper"]) == pytest.approx((2.2019 / 5.6, 13.0591 / 5.6), abs=1e-4)
    assert (south["team"], south["observed"], south["denominator"]) == ("south", 7, 10)
    assert south["expected"] == pytest.approx(7.4)
    assert south["ratio"] == pytest.approx(7 / 7.4)
    assert (south["lower"], south["upper"]) == pytest.approx((2.8143 / 7.4, 14.4227 / 7.4), abs=1e-4)
    assert "age band" in section["note"]  # what the adjustment leaves out is said beside it


def test_without_strata_the_section_says_why() -> None:
    assert case_mix(cells_of({"measures": []})) == {"note": CASE_MIX_NOTE, "measures": []}
    # only teams that are not compared (unassigned): nothing to show either
    rows = [{"measure": "repeat_crisis_30d", "team": "unassigned", "stratum": "crisis_line",
             "numerator": 1, "denominator": 3}]
    assert case_mix(cells_of({"strata": rows}))["measures"] == []


def _live_windows(run: Run) -> TeamWindows:
    """Stage 2 as ``report --from-live`` rebuilds it: the latest observation of each key."""
    windows = TeamWindows(CONFIG)
    for o in run.obs.values():
        windows.apply(Observation.from_bytes(o.to_bytes()))
    return windows


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_live_reports_cells_are_the_replays(data: st.DataObject) -> None:
    """Revisions, team moves and retractions on the way leave the replay's counts per stratum
    equal to those of the latest observations (what the live report reads back)."""
    events = draw_history(data.draw, 40, ny("2026-03-01 00:00"), 40, 4, ["north", "south"])
    run = Run([*events, tick(ny("2026-06-01 00:00"))], CONFIG)
    replayed = _strata(run.engine.windows)
    assert strata_sections(run.engine.windows) == strata_sections(_live_windows(run))  # weekly rows too
    assert case_mix(cells_of({"strata": replayed})) == case_mix(cells_of({"strata": _strata(_live_windows(run))}))

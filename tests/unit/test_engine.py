"""The in-process driver: report shape, watermark, system rules hook, bounded state."""

from __future__ import annotations

import gc
import io
from datetime import datetime

import pytest

from alerts.model import Alert
from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.decode import Decoder
from streams.calendar import to_us
from streams.core import RATE_MEASURES, CoreConfig, Observation
from streams.engine import REPLAY_GC_THRESHOLD, Engine, replay_gc
from streams.replay import replay_stream
from streams.windows import TeamWindows
from tests.fixtures.core.build import contact, crisis, discharge, ny, referral, tick

CONFIG = CoreConfig(timezone="America/New_York")


def test_report_shape_every_measure_every_team_and_star() -> None:
    e = Engine(CONFIG)
    e.feed(referral(ny("2026-04-01 09:00"), team="north"))
    e.feed(contact(ny("2026-04-02 09:00"), team="south", client="c2"))
    e.feed(discharge(ny("2026-04-03 09:00"), client="c3"))
    e.feed(tick(ny("2026-06-01 00:00")))
    e.feed_dead_letter(DeadLetter(DeadLetterKind.NOT_JSON, "x", "", Origin(), b"{"))
    e.finish()
    report = e.report()
    assert list(report) == ["watermark", "measures", "waits", "alerts", "events"]
    assert report["watermark"] == "2026-06-01T04:00:00+00:00"
    pairs = {(r["measure"], r["team"]) for r in report["measures"]}
    assert pairs == {(m, t) for m in RATE_MEASURES for t in ("*", "north", "south", "unassigned")}
    assert {r["team"] for r in report["waits"]} == {"*", "north", "south", "unassigned"}
    assert report["events"] == {
        "accepted": 4, "duplicates": 0, "dead_letters": 1, "corrections": 0, "dead_letters_by_kind": {"not_json": 1}
    }
    alerts = report["alerts"]
    keys = [(a["startsAt"], a["labels"]["alertname"]) for a in alerts]
    assert keys == sorted(keys)


class FakeRules:
    def __init__(self) -> None:
        self.calls: list[datetime] = []

    def evaluate(self, windows: TeamWindows, watermark: datetime) -> list[Alert]:
        self.calls.append(watermark)
        return [Alert({"alertname": "RateOffTarget", "team": "north", "measure": "followup_7d"}, watermark)]


def test_system_rules_called_on_local_day_boundaries_and_at_finish() -> None:
    rules = FakeRules()
    e = Engine(CONFIG, rules)
    e.feed(tick(ny("2026-04-04 12:00")))  # watermark 04-01 12:00 local
    e.feed(tick(ny("2026-04-04 18:00")))  # same local day
    e.feed(tick(ny("2026-04-05 01:00")))  # watermark 04-02 01:00: a new local day
    assert len(rules.calls) == 1
    e.finish()
    assert len(rules.calls) == 2
    assert any(a["labels"]["alertname"] == "RateOffTarget" for a in e.report()["alerts"])


def test_clients_with_nothing_open_keep_only_their_last_team() -> None:
    e = Engine(CONFIG)
    e.feed(referral(ny("2026-01-05 09:00")))
    e.feed(contact(ny("2026-01-06 09:00"), team="north"))
    assert "c1" in e.clients
    e.feed(tick(ny("2026-09-01 00:00")))
    assert "c1" not in e.clients  # pruned once older than the horizon, but for one (time, team) pair
    state = e.state("c1")
    assert state is not None
    assert (state.recs, state.obs, state.alerts, state.due) == ([], {}, {}, None)
    assert (state.last_assigned_at, state.last_assigned_team) == (to_us(ny("2026-01-06 09:00")), "north")
    assert len(state.to_bytes()) < 120  # held serialised until the client's next event
    assert e.report()["measures"]  # its observations stay counted


def test_clients_with_no_team_ever_cost_nothing() -> None:
    e = Engine(CONFIG)
    e.feed(crisis(ny("2026-01-05 09:00")))
    e.feed(tick(ny("2026-09-01 00:00")))
    assert e.state("c1") is None


def test_corrections_counted_from_outputs() -> None:
    e = Engine(CONFIG)
    outs = e.feed(referral(ny("2026-04-01 09:00")))
    outs += e.feed(tick(ny("2026-05-10 00:00")))  # open past 28 days: lost
    outs += e.feed(contact(ny("2026-04-20 09:00")))  # late contact: seen, lost revised
    revised = [o for o in outs if isinstance(o, Observation) and o.correction]
    # seen after its target: seen_within_target stays False (no revision); wait and first
    # contact are first emissions; only lost_before_contact is revised
    assert [o.measure for o in revised] == ["lost_before_contact"]
    e.finish()
    assert e.report()["events"]["corrections"] == 1


def test_empty_input() -> None:
    e = Engine(CONFIG)
    e.finish()
    report = e.report()
    assert report["watermark"] is None
    assert [(r["team"], r["denominator"]) for r in report["measures"]] == [("*", 0)] * len(RATE_MEASURES)


def test_dead_letters_by_kind_count_decoder_rejects_and_orphan_cancels() -> None:
    # imported here: main's module import line changes beside this branch
    from tests.fixtures.core.build import cancel

    e = Engine(CONFIG)
    e.feed_dead_letter(DeadLetter(DeadLetterKind.SCHEMA, "data.team: required", "data", Origin(), b"{}"))
    e.feed_dead_letter(DeadLetter(DeadLetterKind.NOT_JSON, "x", "", Origin(), b"{"))
    e.feed_dead_letter(DeadLetter(DeadLetterKind.SCHEMA, "data.urgency: not one of", "data", Origin(), b"{}"))
    e.feed(cancel(ny("2026-04-02 12:00"), contact(ny("2026-04-02 10:00"))))
    e.feed(tick(ny("2026-04-06 00:00")))
    e.finish()
    events = e.report()["events"]
    assert events["dead_letters"] == 4
    # sorted by kind, so the same input writes the same report bytes
    assert list(events["dead_letters_by_kind"].items()) == [("not_json", 1), ("orphan_cancel", 1), ("schema", 2)]
    assert sum(events["dead_letters_by_kind"].values()) == events["dead_letters"]


def test_no_dead_letters_is_an_empty_breakdown() -> None:
    e = Engine(CONFIG)
    e.feed(referral(ny("2026-04-01 09:00")))
    e.finish()
    assert e.report()["events"]["dead_letters_by_kind"] == {}



class _Spy:
    """An engine stand-in that notes the collector's threshold when fed."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int]] = []

    def feed(self, event: object) -> None:
        self.seen.append(gc.get_threshold())

    def feed_dead_letter(self, letter: object) -> None:
        self.seen.append(gc.get_threshold())


def test_replay_gc_raises_the_threshold_inside_and_restores_it_after() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    spy = _Spy()
    replay_stream(io.BytesIO(b"not json\n"), spy, Decoder(b"k", 1 << 20), "x")  # type: ignore[arg-type]
    assert spy.seen == [(REPLAY_GC_THRESHOLD, before[1], before[2])]
    assert gc.get_threshold() == before
    with replay_gc(5_000):
        assert gc.get_threshold()[0] == 5_000
        with replay_gc(1_000):  # nested: the outer setting stands
            assert gc.get_threshold()[0] == 5_000
        assert gc.get_threshold()[0] == 5_000
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), replay_gc():
        raise RuntimeError("boom")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen

"""The all-teams series ``*`` live without a broker (:mod:`streams.live_overall`): the shares
that stage-2 partitions publish, merged by the worker that holds ``*``, draw the replay's
``*`` chart; the shares topic as read (latest per team); when a worker sends its shares."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.evidence import ServiceChange
from alerts.rules import SystemAlertRules
from pathwatch import parts, simulate
from pathwatch.config import Settings
from pathwatch.parts import core_config
from schemas.decode import Decoder
from schemas.model import ALL_TEAMS, Event
from streams.calendar import to_us
from streams.changes import change_rebase, local_date_in
from streams.core import CoreConfig, Observation
from streams.engine import Engine
from streams.live import partition_for
from streams.live_changes import LiveChanges, change_times
from streams.live_overall import (
    REFRESH_SECONDS,
    SharePublisher,
    Shares,
    decode_share,
    encode_share,
    overall_charts,
    partition_key,
    withdrawn,
)
from streams.windows import TeamWindows

KEY = b"test-key"
TOPIC = "pathwatch.overall-shares"
TEAMS = ("north", "south", "east")


class SplitWindows(TeamWindows):
    """The replay's windows (all teams in one), also kept per team as stage 2 keeps them
    (an observation goes to its team's windows, a retraction too)."""

    def __init__(self, config: CoreConfig) -> None:
        super().__init__(config)
        self.per_team: dict[str, TeamWindows] = {}

    def apply(self, obs: Observation) -> None:
        super().apply(obs)
        self.per_team.setdefault(obs.team, TeamWindows(self.config)).apply(obs)

    def prune(self, watermark: datetime) -> None:
        super().prune(watermark)
        for windows in self.per_team.values():
            windows.prune(watermark)


def provider_wide_change() -> ServiceChange:
    raw = json.dumps(
        {"specversion": "1.0", "id": "e-star", "source": "ops", "type": "service.change",
         "time": "2025-04-07T00:00:00+00:00",
         "data": {"change_id": "star", "team": ALL_TEAMS, "measures": ["lost_before_contact", "seen_within_target"],
                  "description": "one discharge checklist for every team"}}
    ).encode()  # fmt: skip
    found = LiveChanges(Decoder(KEY, 65536))
    assert found.apply("pathwatch.changes", 0, 0, b"star", raw) is None
    [change] = found.changes()
    return change


@pytest.fixture(scope="module")
def replay() -> tuple[Engine, SplitWindows, SystemAlertRules, list[ServiceChange], Any]:
    """A simulated half-year of three teams, north recording a change at week 12, and one
    provider-wide change."""
    settings = Settings()
    options = simulate.SimulationOptions(
        clients=1500, teams=TEAMS, days=182, seed=7, changes=(simulate.parse_change("north:seen_within_target:0.95@12"),),
    )
    dec = Decoder(KEY, settings.max_message_bytes)
    engine = Engine(core_config(settings))
    windows = engine.windows = SplitWindows(core_config(settings))
    for number, line in enumerate(simulate.generate(options), start=1):
        result = dec.decode_line(line, "half-year", number)
        assert isinstance(result, Event), result
        engine.feed(result)
    engine.finish()
    changes = [*engine.changes.changes(), provider_wide_change()]
    rules = SystemAlertRules(parts.rules_config(settings))
    return engine, windows, rules, changes, local_date_in(ZoneInfo(settings.timezone))


def published(shares: Shares, partitions: list[list[str]], windows: SplitWindows, first_offset: int = 0) -> int:
    """Each partition's publisher sends its teams' shares to ``shares`` (as the topic carries
    them); returns the next offset."""
    offset = first_offset
    for teams in partitions:
        publisher = SharePublisher(TOPIC)
        pending = publisher.pending({team: windows.per_team[team] for team in teams}, 0.0)
        for topic, key, value, _, _ in publisher.records(pending):
            assert shares.apply(topic, 0, offset, key, value) is None
            offset += 1
        publisher.sent(pending)
    return offset


def replays_star(engine: Engine, rules: SystemAlertRules, changes: list[ServiceChange], local_date: Any) -> list[Any]:
    assert engine.watermark is not None
    report = rules.charts(engine.windows, engine.watermark, TEAMS, change_rebase(changes, local_date))
    return [e for e in report if e["team"] == ALL_TEAMS]


def test_the_shares_of_two_partitions_draw_the_replays_star_chart(replay: Any) -> None:
    engine, windows, rules, changes, local_date = replay
    assert set(TEAMS) < set(windows.per_team), "and unassigned"
    expected = replays_star(engine, rules, changes, local_date)
    charted = {e["measure"] for e in expected if e["points"]}
    assert {"seen_within_target", "lost_before_contact", "repeat_crisis_30d"} <= charted, charted
    lost = next(e for e in expected if e["measure"] == "lost_before_contact")
    assert {p["group"] for p in lost["points"]} == {0, 1}, "the provider-wide change starts a group"

    shares = Shares()
    published(shares, [["north"], sorted(set(windows.per_team) - {"north"})], windows)
    live = overall_charts(rules, shares.windows(engine.windows.config), engine.watermark, changes, local_date)
    assert live == expected


def test_a_missing_share_draws_another_chart(replay: Any) -> None:
    engine, windows, rules, changes, local_date = replay
    shares = Shares()
    published(shares, [["north"]], windows)
    live = overall_charts(rules, shares.windows(engine.windows.config), engine.watermark, changes, local_date)
    assert live != replays_star(engine, rules, changes, local_date)


def test_a_share_sent_again_replaces_the_old_one(replay: Any) -> None:
    """After a rebalance the team's new worker sends its share again: it replaces, never adds."""
    engine, windows, rules, changes, local_date = replay
    shares = Shares()
    everyone = sorted(windows.per_team)
    offset = published(shares, [everyone[:1], everyone[1:]], windows)
    version = shares.version
    published(shares, [everyone[:2], everyone[2:]], windows, offset)
    assert shares.version == version, "the same counts change nothing"
    live = overall_charts(rules, shares.windows(engine.windows.config), engine.watermark, changes, local_date)
    assert live == replays_star(engine, rules, changes, local_date)


def test_a_tombstone_withdraws_a_share_and_a_bad_record_is_a_dead_letter(replay: Any) -> None:
    _, windows, _, _, _ = replay
    shares = Shares()
    counts = windows.per_team["north"].weekly_counts()
    assert shares.apply(TOPIC, 0, 0, b"north", encode_share(counts)) is None
    assert shares.version == 1
    assert shares.apply(TOPIC, 0, 1, b"north", None) is None
    assert shares.version == 2
    assert shares.windows(windows.config).weekly_counts() == {}
    for offset, (key, value) in enumerate([(b"north", b"{}"), (b"north", b'{"v": 9, "weeks": {}}'),
                                           (None, encode_share(counts))], 2):  # fmt: skip
        letter = shares.apply(TOPIC, 0, offset, key, value)
        assert letter is not None
        assert letter.origin.offset == offset
    assert shares.version == 2


def test_a_share_round_trips_and_carries_weekly_counts_only(replay: Any) -> None:
    _, windows, _, _, _ = replay
    counts = windows.per_team["south"].weekly_counts()
    assert len(counts["seen_within_target"]) >= 20, "a half-year of weeks"
    raw = encode_share(counts)
    assert decode_share(raw) == counts
    assert set(json.loads(raw)) == {"v", "weeks"}


def test_a_publisher_sends_what_changed_and_everything_when_its_teams_change(replay: Any) -> None:
    _, windows, _, _, _ = replay
    north, south = windows.per_team["north"], windows.per_team["south"]
    publisher = SharePublisher(TOPIC)
    first = publisher.pending({"north": north, "south": south}, 0.0)
    assert [team for team, _ in first] == ["north", "south"]
    publisher.sent(first)
    assert publisher.pending({"north": north, "south": south}, 1.0) == []
    east = windows.per_team["east"]  # other counts under south's name: south's share changed
    changed = publisher.pending({"north": north, "south": east}, 2.0)
    assert [team for team, _ in changed] == ["south"]
    assert publisher.pending({"north": north}, 3.0) == [("north", encode_share(north.weekly_counts()))]
    publisher.sent([("north", encode_share(north.weekly_counts()))])
    assert publisher.pending({"north": north}, 3.0 + REFRESH_SECONDS) != [], "refreshed"


def test_provider_wide_changes_are_markers_of_star_only_when_asked(replay: Any) -> None:
    _, _, _, changes, _ = replay
    assert set(change_times(changes, ["north"])) == {("north", "seen_within_target")}
    star = change_times(changes, ["north", ALL_TEAMS])
    assert set(star) == {("north", "seen_within_target"), (ALL_TEAMS, "lost_before_contact"),
                         (ALL_TEAMS, "seen_within_target")}


def test_the_mdc_dashboards_team_variable_can_offer_star() -> None:
    """Grafana regex-escapes the values of a multi-value variable (``*`` goes as ``\\*``); a
    single-value one would send ``team=~"*"``, which is not a valid regular expression."""
    dashboard = json.loads((Path(__file__).parents[2] / "deploy/grafana/dashboards/mdc.json").read_text())
    [team] = [v for v in dashboard["templating"]["list"] if v["name"] == "team"]
    assert team["multi"] is True
    assert team["query"]["query"] == "label_values(pathwatch_spc_mean, team)", "every exported team, '*' included"


def test_a_team_stage_2_no_longer_holds_is_withdrawn_and_stops_holding_star_back() -> None:
    """After a restart a worker does not hold a team none of whose observations is left: its
    last share (old counts, old watermark) would stay in ``*`` and hold the ``*`` alerts back
    for good. The worker holding that team's partition withdraws it; no other worker does."""
    n = 4
    old, new = to_us(datetime(2026, 3, 2, tzinfo=UTC)), to_us(datetime(2026, 3, 9, tzinfo=UTC))
    week = {"followup_7d": {date(2026, 2, 23).toordinal(): [1, 2]}}
    shares = Shares()
    records = [(b"north", encode_share(week, old)), (b"east", encode_share(week, new))]
    records += [(partition_key(q), encode_share({}, new)) for q in range(n)]
    for offset, (key, value) in enumerate(records):
        assert shares.apply(TOPIC, 0, offset, key, value) is None
    assert shares.lowest(n) == old, "north's old share holds '*' back"
    north = partition_for(b"north", n)
    on_north = sorted(t for t in ("north", "east") if partition_for(t.encode(), n) == north)
    assert withdrawn(shares, [], [north], n) == [t for t in shares.teams() if t in on_north]
    assert withdrawn(shares, ["north", "east"], [north], n) == [], "teams held stand"
    others = [q for q in range(n) if q != north]
    assert "north" not in withdrawn(shares, [], others, n), "only the holder of its partition withdraws it"
    shares.apply(TOPIC, 0, len(records), b"north", None)  # the tombstone, read back
    assert shares.lowest(n) == new
    assert "north" not in shares.teams()

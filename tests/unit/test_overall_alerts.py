"""The system alerts of ``*`` live without a broker (:mod:`streams.overall_alerts`): two
stage-2 partitions publish their teams' shares stamped with their watermark, and the worker
holding ``*`` raises the replay's ``*`` SpecialCause transitions from them, never evaluating
past the lowest watermark among the shares; a worker taking ``*`` over carries an open alert on."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts.model import Alert
from alerts.rules import SPECIAL_CAUSE, SystemAlertRules
from pathwatch import parts, simulate
from pathwatch.config import Settings
from pathwatch.parts import core_config
from schemas.decode import Decoder
from schemas.model import ALL_TEAMS, Event
from streams.calendar import to_us
from streams.core import CoreConfig
from streams.engine import Engine
from streams.live_overall import ALERTS_KEY, SharePublisher, Shares, Stamp, decode_stamped
from streams.overall_alerts import OverallAlerts
from tests.unit.test_live_overall import TOPIC, SplitWindows

PARTITIONS = [["north"], ["east", "south"]]
"""The teams of each stage-2 partition (two partitions)."""


class Publishing:
    """Each stage-2 partition's worker publishing its shares stamped with ``watermark``."""

    def __init__(self) -> None:
        self.publishers = [SharePublisher(TOPIC) for _ in PARTITIONS]
        self.offset = 0

    def publish(self, shares: Shares, windows: SplitWindows, watermark: datetime, partitions: Sequence[int]) -> None:
        us = to_us(watermark)
        for q in partitions:
            publisher = self.publishers[q]
            held = {team: windows.per_team[team] for team in PARTITIONS[q] if team in windows.per_team}
            pending = publisher.pending(held, 0.0, Stamp(us, windows.config.calendar.day_of(us), [q]))
            for topic, key, value, _, _ in publisher.records(pending):
                assert shares.apply(topic, 0, self.offset, key, value) is None
                self.offset += 1
            publisher.sent(pending)


class ReplayAndOwner:
    """The replay's system rules, and at each of their evaluations (a local day entered) both
    partitions publishing at that watermark and the ``*`` owner stepping over the shares."""

    def __init__(self, settings: Settings, windows: SplitWindows) -> None:
        self.rules = SystemAlertRules(parts.rules_config(settings))
        self.windows = windows
        self.shares = Shares()
        self.publishing = Publishing()
        self.owner = OverallAlerts(parts.rules_config(settings), windows.config, len(PARTITIONS))
        self.live: list[Alert] = []
        self.replayed: list[Alert] = []

    def evaluate(self, windows: Any, watermark: datetime) -> list[Alert]:
        out = self.rules.evaluate(windows, watermark)
        self.replayed += [a for a in out if a.labels["team"] == ALL_TEAMS and a.labels["alertname"] == SPECIAL_CAUSE]
        self.publishing.publish(self.shares, self.windows, watermark, range(len(PARTITIONS)))
        step = self.owner.step(self.shares)
        self.live += step.alerts
        if step.state is not None:
            self.shares.apply(TOPIC, 0, 0, ALERTS_KEY, step.state)
        return out


def replayed(config: CoreConfig, settings: Settings) -> tuple[Engine, ReplayAndOwner]:
    options = simulate.SimulationOptions(clients=1500, teams=("north", "south", "east"), days=182, seed=8)
    dec = Decoder(b"test-key", settings.max_message_bytes)
    windows = SplitWindows(config)
    both = ReplayAndOwner(settings, windows)
    engine = Engine(config, both)
    engine.windows = windows
    for number, line in enumerate(simulate.generate(options), start=1):
        event = dec.decode_line(line, "half-year", number)
        assert isinstance(event, Event), event
        engine.feed(event)
    return engine, both


@pytest.fixture(scope="module")
def replay() -> tuple[Engine, ReplayAndOwner]:
    """A simulated half-year of three teams, fed without its end (``finish``: the end of
    input evaluates off the day schedule, as a live worker does not)."""
    settings = Settings()
    return replayed(core_config(settings), settings)


def key(alerts: Sequence[Alert]) -> list[tuple[Any, ...]]:
    return [(a.fingerprint, dict(a.labels), a.starts_at, a.ends_at, a.annotations) for a in alerts]


def test_the_owner_raises_the_replays_star_special_cause_from_two_partitions_shares(replay: Any) -> None:
    _, both = replay
    assert any(a.ends_at is None for a in both.replayed), "a * SpecialCause fires"
    assert any(a.ends_at is not None for a in both.replayed), "and resolves"
    assert key(both.live) == key(both.replayed)


def owner() -> OverallAlerts:
    """A worker's ``*`` alerts as it takes ``*`` (no state of its own)."""
    settings = Settings()
    return OverallAlerts(parts.rules_config(settings), core_config(settings), len(PARTITIONS))


def first_fired(both: ReplayAndOwner) -> Alert:
    """The replay's first ``*`` SpecialCause (its firing transition)."""
    return next(a for a in both.replayed if a.ends_at is None)


def test_no_evaluation_past_the_lowest_share_watermark(replay: Any) -> None:
    _, both = replay
    first, star, shares, publishing = first_fired(both), owner(), Shares(), Publishing()
    publishing.publish(shares, both.windows, first.starts_at, [0])
    assert shares.lowest(len(PARTITIONS)) is None, "partition 1 has no mark yet"
    assert star.step(shares).alerts == []
    earlier = first.starts_at - timedelta(days=14)
    publishing.publish(shares, both.windows, earlier, [1])  # partition 1 two weeks behind
    assert shares.lowest(len(PARTITIONS)) == to_us(earlier)
    step = star.step(shares)
    assert all(a.starts_at == earlier for a in step.alerts)
    assert first.fingerprint not in {a.fingerprint for a in step.alerts}, "not judged at partition 0's watermark"
    assert star.step(shares).alerts == [], "the same day: not again"
    publishing.publish(shares, both.windows, first.starts_at, [1])
    assert first.fingerprint in {a.fingerprint for a in star.step(shares).alerts}


def test_a_worker_taking_star_over_carries_an_open_alert_on(replay: Any) -> None:
    _, both = replay
    first, star, shares, publishing = first_fired(both), owner(), Shares(), Publishing()
    publishing.publish(shares, both.windows, first.starts_at, [0, 1])
    step = star.step(shares)
    assert first.fingerprint in {a.fingerprint for a in step.alerts}
    assert step.state is not None
    shares.apply(TOPIC, 0, 99, ALERTS_KEY, step.state)
    successor = owner()
    assert successor.step(shares).alerts == [], "the open alert carries on: no new startsAt"
    assert key(successor.rules.firing()) == key(star.rules.firing())
    afresh = owner()
    shares.apply(TOPIC, 0, 100, ALERTS_KEY, None)
    assert first.fingerprint in {a.fingerprint for a in afresh.step(shares).alerts}, "without the state: fires again"


def test_a_publisher_sends_every_share_and_its_marks_stamped_on_each_new_day(replay: Any) -> None:
    _, both = replay
    held = {team: both.windows.per_team[team] for team in ("east", "south")}
    calendar = both.windows.config.calendar
    publisher = SharePublisher(TOPIC)
    morning, evening, next_day = (to_us(datetime(2025, 4, d, h, tzinfo=UTC)) for d, h in ((1, 6), (1, 20), (2, 1)))
    day = calendar.day_of(morning)
    first = publisher.pending(held, 0.0, Stamp(morning, day, [1, 3]))
    assert [key for key, _ in first] == ["east", "south", "\x00stage2:1", "\x00stage2:3"]
    assert {decode_stamped(share)[1] for _, share in first} == {morning}
    publisher.sent(first)
    assert publisher.pending(held, 1.0, Stamp(evening, day, [1, 3])) == [], "the same day, the same counts"
    again = publisher.pending(held, 2.0, Stamp(next_day, day + 1, [1, 3]))
    assert [key for key, _ in again] == [key for key, _ in first]
    assert {decode_stamped(share)[1] for _, share in again} == {next_day}

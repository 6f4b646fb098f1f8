"""The partition runner (streams/runner.py): the one time policy of replay and live stage 1."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from streams.calendar import US_PER_DAY, US_PER_HOUR, to_us
from streams.core import ClientState, CoreConfig
from streams.runner import NEVER, DayBoundary, Marks, PartitionRunner, watermark_us

LATENESS = 72 * US_PER_HOUR
H = US_PER_HOUR
T0 = to_us(datetime(2026, 3, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (event time or ("until", t)) -> watermark after each step
        ([T0], [T0 - LATENESS]),
        ([T0, T0 + 5 * H], [T0 - LATENESS, T0 + 5 * H - LATENESS]),
        # a late event (and an earlier event within the lateness) never moves it back
        ([T0 + 10 * H, T0 - 100 * H, T0 + 1 * H], [T0 + 10 * H - LATENESS] * 3),
        # ``until`` raises it; a lower ``until`` or an old event then does not lower it
        ([T0, ("until", T0 + 1 * H), ("until", T0 - 5 * H), T0 + 2 * H], [T0 - LATENESS, T0 + H, T0 + H, T0 + H]),
        # ``until`` before any event: the watermark is the until
        ([("until", T0), T0 + 100 * H], [T0, T0 + 100 * H - LATENESS]),
    ],
)
def test_the_watermark_never_goes_back(steps: list[int | tuple[str, int]], expected: list[int]) -> None:
    runner = PartitionRunner(LATENESS)
    marks = Marks()
    assert runner.watermark_us(marks) is None
    seen = []
    for s in steps:
        if isinstance(s, tuple):
            PartitionRunner.advance_to(marks, s[1])
        else:
            before = watermark_us(marks, LATENESS)
            assert runner.watermark_after(marks, s) == max(before if before is not None else NEVER,
                                                           s - LATENESS)
            runner.arrive(marks, s)
        seen.append(runner.watermark_us(marks))
    assert seen == expected
    assert all(b >= a for a, b in zip(seen, seen[1:], strict=False))


@pytest.mark.parametrize(
    ("times", "late", "advanced"),
    [
        ([T0], [False], [True]),  # the first event is never late
        ([T0, T0 - LATENESS], [False, False], [True, False]),  # at the watermark: on time
        ([T0, T0 - LATENESS - 1], [False, True], [True, False]),  # just before it: late
        ([T0, T0 + H, T0 - 80 * H, T0 + H], [False, False, True, False], [True, True, False, False]),
        ([T0, T0 - 10 * H, T0 - 73 * H], [False, False, True], [True, False, False]),
    ],
)
def test_late_counting(times: list[int], late: list[bool], advanced: list[bool]) -> None:
    runner = PartitionRunner(LATENESS)
    marks = Marks()
    arrivals = [runner.arrive(marks, t) for t in times]
    assert [a.late for a in arrivals] == late
    assert [a.advanced for a in arrivals] == advanced
    assert marks.max_us == max(times)


def test_an_event_before_an_until_is_late() -> None:
    runner = PartitionRunner(LATENESS)
    marks = Marks()
    runner.arrive(marks, T0)
    PartitionRunner.advance_to(marks, T0 + 10 * H)
    assert runner.arrive(marks, T0 + 9 * H).late
    assert not runner.arrive(marks, T0 + 10 * H).late


def _state(client: str, due: int | None, alert_due: int | None = None) -> ClientState:
    return ClientState(client, due=due, alert_due=alert_due)


@pytest.mark.parametrize(
    ("dues", "clock", "expected"),
    [
        # client -> due; clock; clients returned, in due order
        ({"a": 30, "b": 10, "c": 20}, 25, ["b", "c"]),
        ({"a": 30, "b": 10, "c": 20}, 30, ["b", "c", "a"]),
        ({"a": 30, "b": 10, "c": 20}, 5, []),
        ({"a": 10, "b": 10}, 10, ["a", "b"]),  # the due itself is reached
    ],
)
def test_sweeps_take_due_clients_in_due_order(dues: dict[str, int], clock: int, expected: list[str]) -> None:
    runner = PartitionRunner(LATENESS)
    states = {c: _state(c, d) for c, d in dues.items()}
    for c, s in states.items():
        runner.schedule(c, s)
    assert list(runner.take_due(clock, clock, states.get)) == expected
    assert list(runner.take_due(clock, clock, states.get)) == []  # each once


def test_a_moved_or_gone_due_is_skipped_and_the_new_one_kept() -> None:
    runner = PartitionRunner(LATENESS)
    states = {"a": _state("a", 10), "b": _state("b", 20), "c": _state("c", 15)}
    for c, s in states.items():
        runner.schedule(c, s)
    states["a"] = _state("a", 40)  # a step moved a's due: its old entry is stale
    runner.schedule("a", states["a"])
    del states["c"]  # c's state is gone (nothing left)
    assert list(runner.take_due(25, 25, states.get)) == ["b"]
    assert list(runner.take_due(40, 40, states.get)) == ["a"]


def test_schedule_does_not_push_a_due_already_in_the_heap() -> None:
    runner = PartitionRunner(LATENESS)
    state = _state("a", 10)
    runner.schedule("a", state)
    runner.schedule("a", state, pushed=10)
    runner.schedule("a", None)
    assert len(runner) == 1


def test_one_clock_takes_the_later_of_the_two_and_the_alert_heap_the_alert_clock() -> None:
    states = {"a": _state("a", 50, 12), "b": _state("b", 11, 60)}
    one = PartitionRunner(LATENESS)
    two = PartitionRunner(LATENESS, alert_heap=True)
    for runner in (one, two):
        for c, s in states.items():
            runner.schedule(c, s)
    # replay: one heap of ``due``, reached by the later clock
    assert list(one.take_due(10, 55, states.get)) == ["b", "a"]
    # live: the watermark takes ``due``, the alert clock ``alert_due``; a client due by both
    # is taken once
    assert list(two.take_due(11, 12, states.get)) == ["b", "a"]
    swept = {c: _state(c, None) for c in states}  # the sweeps left nothing due
    assert list(two.take_due(100, 100, swept.get)) == []


def test_restore_rebuilds_the_heaps_from_stored_states() -> None:
    states = {"a": _state("a", 30, 5), "b": _state("b", 10), "c": _state("c", None)}
    runner = PartitionRunner(LATENESS, alert_heap=True)
    runner.restore(states.values())
    assert len(runner) == 3
    assert list(runner.take_due(10, 5, states.get)) == ["b", "a"]


NY = CoreConfig(timezone="America/New_York").calendar


def _ny_day(d: date) -> int:
    return d.toordinal()


@pytest.mark.parametrize(
    ("first", "watermarks", "expected"),
    [
        # local day of each watermark (New York) -> days entered at each call
        (False, ["2026-03-01 12:00", "2026-03-01 23:59"], [[], []]),
        (True, ["2026-03-01 12:00", "2026-03-01 23:59"], [[date(2026, 3, 1)], []]),
        (False, ["2026-03-01 12:00", "2026-03-02 00:00", "2026-03-02 09:00"], [[], [date(2026, 3, 2)], []]),
        # a jump over several days: every day crossed, once, oldest first
        (False, ["2026-03-01 12:00", "2026-03-04 01:00"],
         [[], [date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)]]),
        # back and forth (another partition's lower watermark): nothing entered again
        (False, ["2026-03-03 12:00", "2026-03-01 12:00", "2026-03-03 13:00", "2026-03-04 00:01"],
         [[], [], [], [date(2026, 3, 4)]]),
        # the local day, not UTC's: 03:00 UTC on 03-02 is still 03-01 in New York
        (False, ["2026-03-01 12:00", "2026-03-01 22:00"], [[], []]),
    ],
)
def test_the_day_boundary_fires_once_per_day_crossed(first: bool, watermarks: list[str], expected: list[list[date]]) -> None:
    days = DayBoundary(NY, first=first)
    got = []
    for text in watermarks:
        local = datetime.fromisoformat(text).replace(tzinfo=NY.tz)
        got.append([date.fromordinal(d) for d in days.cross(to_us(local))])
    assert got == expected


def test_the_day_boundary_over_a_year_of_hourly_watermarks_names_each_day_once() -> None:
    days = DayBoundary(NY, first=True)
    start = to_us(datetime(2026, 1, 1, 5, tzinfo=UTC))
    entered: list[int] = []
    for hour in range(0, 365 * 24, 7):  # every 7 hours, across both daylight-saving changes
        entered.extend(days.cross(start + hour * H))
    assert entered == list(range(entered[0], entered[-1] + 1))
    assert len(entered) == len(set(entered)) >= 364
    assert US_PER_DAY == 24 * H

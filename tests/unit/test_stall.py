"""The stall watch's decision (streams/stall.py) and delivery's read offsets."""

from __future__ import annotations

import pytest

from streams.delivery import DeliveredOffsets
from streams.live import APPLY, GAP, SEEN
from streams.stall import StallWatch, waiting_for


@pytest.mark.parametrize(
    ("expected", "committed", "waits"),
    [
        (None, None, None),
        (10, None, 10),
        (None, 4, 4),
        (10, 4, 4),  # applied before a restart, dropped after it: never acknowledged
        (4, 10, 4),
    ],
)
def test_a_partition_waits_for_the_lower_of_its_next_and_committed_offsets(
    expected: int | None, committed: int | None, waits: int | None
) -> None:
    assert waiting_for(expected, committed) == waits


def test_a_partition_behind_at_its_first_check_is_read_again_at_once() -> None:
    """The first check follows a recovery: what faust fetched meanwhile was dropped."""
    watch = StallWatch()
    actions = [watch.check("tp", 10, 4, 12) for _ in range(7)]
    assert actions == [("rewind", 4), None, None, ("rewind", 4), None, None, ("empty", 4)]
    watch.clear()  # a rebalance: the next check is a first one again
    assert watch.check("tp", 10, 4, 12) == ("rewind", 4)


def test_a_partition_stuck_below_its_end_is_read_again_twice_then_called_empty() -> None:
    watch = StallWatch()
    assert watch.check("tp", 4, 4, 4) is None  # caught up at the first check
    actions = [watch.check("tp", 10, 4, 12) for _ in range(10)]
    assert actions == [None, None, ("rewind", 4), None, None, ("rewind", 4), None, None, ("empty", 4), None]


def test_progress_or_a_drained_partition_resets_the_count() -> None:
    watch = StallWatch()
    assert watch.check("tp", 5, 5, 5) is None
    assert [watch.check("tp", 5, 5, 9) for _ in range(2)] == [None, None]
    assert watch.check("tp", 6, 6, 9) is None  # moved: counting starts again
    assert watch.check("tp", 6, 6, 9) is None
    assert watch.check("tp", 9, 9, 9) is None  # caught up
    assert [watch.check("tp", 9, 9, 12) for _ in range(3)] == [None, None, ("rewind", 9)]


def test_partitions_are_counted_apart_and_clear_forgets_them() -> None:
    watch = StallWatch()
    assert watch.check("a", 1, 1, 1) is None
    assert watch.check("b", 2, 2, 2) is None
    for _ in range(2):
        assert watch.check("a", 1, 1, 5) is None
    assert watch.check("b", 2, 2, 5) is None
    assert watch.check("a", 1, 1, 5) == ("rewind", 1)
    assert watch.check("b", 2, 2, 5) is None  # b has waited two checks only


def test_delivery_goes_on_from_the_committed_offset_and_stops_at_a_gap() -> None:
    delivered = DeliveredOffsets()
    assert delivered.expected(0, 7) == 7  # nothing read since the assignment
    assert [delivered.admit(0, o, 7) for o in (7, 8)] == [APPLY, APPLY]
    assert delivered.admit(0, 5, 7) == SEEN  # read again after a seek: delivered again, de-duplicated
    assert delivered.expected(0, 7) == 9
    assert delivered.admit(0, 11, 7) == GAP  # 9 and 10 were dropped: read again from 9
    assert delivered.expected(0, 7) == 9
    assert [delivered.admit(0, o, 7) for o in (9, 10, 11)] == [APPLY, APPLY, APPLY]


def test_a_first_message_past_the_committed_offset_is_a_gap() -> None:
    """The restarted worker's case: records from the committed offset on were fetched while
    the tables recovered and dropped; the first message delivered is a later one."""
    delivered = DeliveredOffsets()
    assert delivered.admit(3, 48, 40) == GAP
    assert delivered.expected(3, None) == 40
    assert delivered.admit(3, 40, 40) == APPLY


def test_with_nothing_committed_the_log_start_is_expected_first() -> None:
    """A brand-new group reads a partition from its log start: a first message past it is a
    gap (records dropped before the group's first commit), not retention."""
    delivered = DeliveredOffsets()
    assert delivered.admit(2, 17, None, log_start=12) == GAP
    assert delivered.expected(2, None) == 12
    assert [delivered.admit(2, o, None, log_start=12) for o in (12, 13)] == [APPLY, APPLY]
    fresh = DeliveredOffsets()
    assert fresh.admit(2, 12, None, log_start=12) == APPLY  # nothing dropped
    assert fresh.admit(4, 30, 30, log_start=0) == APPLY  # a committed offset is what counts


def test_with_nothing_committed_anything_goes_and_retention_moves_the_next_offset() -> None:
    delivered = DeliveredOffsets()
    assert delivered.expected(1, None) is None
    assert delivered.admit(1, 30, None) == APPLY
    assert delivered.admit(1, 40, None) == GAP
    delivered.accept(1, 45)  # 31 to 44 were removed by retention before they were read
    assert delivered.admit(1, 45, None) == APPLY
    delivered.forget()
    assert delivered.expected(1, 12) == 12

"""The stall watch's decision: when a partition has stopped moving and must be read again.

faust's consumer drops records it fetches while the tables recover or across a rebalance,
with its position already past them, and nothing fetches them again. Every few seconds the
worker compares, per assigned partition of the topics it guards, the offset it is waiting
for with the partition's end; :class:`StallWatch` says when to read the partition again.
Pure: the worker's timer (``streams/app.py``) does the seeking and logging.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Literal

Action = tuple[Literal["rewind", "empty"], int]
"""``("rewind", offset)``: read the partition again from ``offset``; ``("empty", offset)``:
read again twice and nothing came, the offsets from ``offset`` hold no message (a
publisher's transaction marker ends the partition): wait for new messages."""

REWIND_AT = (3, 6)  # checks without progress before each of the two reads again
EMPTY_AT = 9


def waiting_for(expected: int | None, committed: int | None) -> int | None:
    """The offset a partition waits for: the lower of the stage's next offset and the group's
    committed one (None: neither is known).

    The committed offset counts because records dropped after a restart that the stage had
    already applied before it (its positions table says so) are never acknowledged, and
    faust commits nothing past an unacknowledged range: the partition's lag would stay for
    good. Read again, they are seen as redeliveries and acknowledged."""
    known = [o for o in (expected, committed) if o is not None]
    return min(known) if known else None


class StallWatch:
    """Per partition, how many checks in a row it waited for the same offset below its end.

    The first check of a partition (after the watch starts, or after :meth:`clear`) that
    finds it behind its end reads it again at once: that check follows a recovery or a
    rebalance, when faust has just dropped what it fetched (its own seek to the committed
    offsets does not fetch them again on every partition), and a restarted worker should
    not wait three checks to deliver. Reading again what is merely in flight costs one
    fetch: it is seen as a redelivery."""

    def __init__(self) -> None:
        self._waits: dict[Hashable, tuple[int, int]] = {}
        self._checked: set[Hashable] = set()

    def clear(self) -> None:
        """Forget every count (a rebalance or a recovery is under way)."""
        self._waits.clear()
        self._checked.clear()

    def check(self, tp: Hashable, expected: int | None, committed: int | None, end: int | None) -> Action | None:
        """One check of ``tp``: ``expected`` the stage's next offset, ``committed`` the
        group's, ``end`` the partition's high-water mark. Returns what to do, if anything."""
        offset = waiting_for(expected, committed)
        first = tp not in self._checked
        self._checked.add(tp)
        if offset is None or end is None or end <= offset:
            self._waits.pop(tp, None)
            return None
        last, count = self._waits.get(tp, (None, 0))
        count = REWIND_AT[0] if first else count + 1 if last == offset else 1
        self._waits[tp] = (offset, count)
        if count in REWIND_AT:
            return ("rewind", offset)
        if count == EMPTY_AT:
            return ("empty", offset)
        return None

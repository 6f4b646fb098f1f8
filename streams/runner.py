"""One partition's time policy, written once for both drivers: watermark, due-time heaps,
late counting and the local-day boundary.

The replay engine (:mod:`streams.engine`) and live stage 1 (:mod:`streams.live`) keep one
:class:`PartitionRunner` per input partition; the engine and live stage 2 keep one
:class:`DayBoundary` for the system rules. Nothing here reads a clock, a broker or a store:
the drivers pass event times, hand over client states and say where states are kept.

* The watermark of a partition is the largest event time seen less the allowed lateness,
  raised to ``until_us`` when the driver advanced the partition on purpose (live: a tick's
  ``until``; replay: the end of input). It never goes back.
* An event is late when its time is before the watermark it arrives at.
* A client is due once the watermark reaches :attr:`streams.core.ClientState.due` (or, with
  a separate alert clock, once that clock reaches ``alert_due``). Due times wait in min-heaps
  with lazy deletion: an entry whose client's due has moved since it was pushed is skipped,
  so a sweep touches only clients that are due, in due order, each once per clock.
* Stage 2 (and the replay's windows) prune and evaluate the system rules once each time the
  watermark enters a later local day (:class:`DayBoundary`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from streams.calendar import Calendar
from streams.core import ClientState

NEVER = -(1 << 62)
"""No event time yet (smaller than any real instant)."""


class TimeMarks(Protocol):
    """Where a driver keeps a partition's event-time marks (live: the partition's metadata,
    stored with its table; replay: :class:`Marks`). Both in microseconds, :data:`NEVER` when
    unset."""

    max_us: int
    until_us: int


@dataclass(slots=True)
class Marks:
    """A partition's event-time marks kept in memory (the replay engine)."""

    max_us: int = NEVER
    until_us: int = NEVER


@dataclass(frozen=True, slots=True)
class Arrival:
    """What one event did to its partition's marks: ``late`` (its time was before the
    watermark it arrived at) and ``advanced`` (it raised the largest event time: due clients
    may need a sweep)."""

    late: bool
    advanced: bool


def watermark_us(marks: TimeMarks, lateness_us: int) -> int | None:
    """The partition's watermark: the largest event time less ``lateness_us``, or ``until_us``
    when that is later; None when nothing was seen and no ``until`` given."""
    if marks.max_us == NEVER and marks.until_us == NEVER:
        return None
    return max(marks.max_us - lateness_us, marks.until_us)


class PartitionRunner:
    """The due-time heaps of one partition's clients, and the marks' rules.

    ``alert_heap``: keep a second heap for ``alert_due``, swept by the alert clock (live, where
    care-gap alerts follow the wall clock). Without it (replay: one clock) ``due`` alone is
    enough, as :func:`streams.core.next_due` explains, and a client is due once the later of
    the two clocks reaches it. Not thread-safe.
    """

    __slots__ = ("lateness_us", "_due", "_alert_due")

    def __init__(self, lateness_us: int, *, alert_heap: bool = False) -> None:
        self.lateness_us = lateness_us
        self._due: list[tuple[int, str]] = []
        self._alert_due: list[tuple[int, str]] | None = [] if alert_heap else None

    # -- marks ------------------------------------------------------------------------------------

    def watermark_us(self, marks: TimeMarks) -> int | None:
        """See :func:`watermark_us`."""
        return watermark_us(marks, self.lateness_us)

    def watermark_after(self, marks: TimeMarks, t_us: int) -> int:
        """The watermark once an event of time ``t_us`` has arrived (``marks`` unchanged: a
        driver steps the event at this clock, then records it with :meth:`arrive`)."""
        return max(max(marks.max_us, t_us) - self.lateness_us, marks.until_us)

    def arrive(self, marks: TimeMarks, t_us: int) -> Arrival:
        """Note an event of time ``t_us`` in ``marks`` (its largest event time never goes
        back) and say whether it was late and whether it moved the watermark's source."""
        late = marks.max_us != NEVER and t_us < max(marks.max_us - self.lateness_us, marks.until_us)
        advanced = t_us > marks.max_us
        if advanced:
            marks.max_us = t_us
        return Arrival(late, advanced)

    @staticmethod
    def advance_to(marks: TimeMarks, until_us: int) -> None:
        """Hold the watermark at ``until_us`` or later from now on (never lowers it)."""
        if until_us > marks.until_us:
            marks.until_us = until_us

    # -- due-time heaps -------------------------------------------------------------------------------

    def schedule(self, client: str, state: ClientState | None, pushed: int | None = None) -> None:
        """Keep ``client``'s due times after a step or sweep left it in ``state``. ``pushed``:
        a due already in the heap for this client (not pushed again)."""
        if state is None:
            return
        due = state.due
        if due is not None and due != pushed:
            heapq.heappush(self._due, (due, client))
        alert_due = state.alert_due
        if self._alert_due is not None and alert_due is not None:
            heapq.heappush(self._alert_due, (alert_due, client))

    def restore(self, states: Iterable[ClientState]) -> None:
        """Rebuild the heaps from stored states (after a restart or a rebalance)."""
        self._due = [(s.due, s.client) for s in states if s.due is not None]
        heapq.heapify(self._due)
        if self._alert_due is not None:
            self._alert_due = [(s.alert_due, s.client) for s in states if s.alert_due is not None]
            heapq.heapify(self._alert_due)

    def __len__(self) -> int:
        """Entries waiting (stale ones included)."""
        return len(self._due) + (len(self._alert_due) if self._alert_due is not None else 0)

    def take_due(
        self, watermark_us: int, alert_us: int, load: Callable[[str], ClientState | None]
    ) -> dict[str, ClientState]:
        """Pop every client due by the clocks, each once, in due order: ``load(client)`` gives
        its current state, and an entry whose client's due moved since it was pushed is
        dropped. The driver sweeps each returned state and gives the result back to
        :meth:`schedule` (a sweep evaluates everything up to the clock, so a client due
        between the watermark and the alert clock is not swept twice)."""
        found: dict[str, ClientState] = {}
        heap = self._due
        alert_heap = self._alert_due
        until = watermark_us if alert_heap is not None else max(watermark_us, alert_us)
        while heap and heap[0][0] <= until:
            due, client = heapq.heappop(heap)
            state = load(client)
            if state is not None and state.due == due:
                found[client] = state
        if alert_heap is not None:
            while alert_heap and alert_heap[0][0] <= alert_us:
                due, client = heapq.heappop(alert_heap)
                if client in found:
                    continue
                state = load(client)
                if state is not None and state.alert_due == due:
                    found[client] = state
        return found


class DayBoundary:
    """When a watermark enters a later local day: the schedule of stage 2's pruning and of
    the system rules, the same in replay and live.

    :meth:`cross` returns the local days (ordinals) entered since the last call, oldest
    first, each day once: a jump over several days is one answer naming all of them (the
    drivers evaluate once, at the new watermark: the windows already hold what came after
    the skipped days).

    ``first``: whether the first watermark seen counts as entering its day. Live stage 2 says
    yes: a worker (re)started holds windows but no system-rule state, and evaluates at once.
    The replay says no: it starts with empty windows, so there is nothing to evaluate yet.
    """

    __slots__ = ("calendar", "day", "first")

    def __init__(self, calendar: Calendar, *, first: bool) -> None:
        self.calendar = calendar
        self.first = first
        self.day: int | None = None

    def cross(self, watermark_us: int) -> range:
        """The days entered by ``watermark_us`` (empty: none; a watermark that went back
        enters nothing)."""
        day = self.calendar.day_of(watermark_us)
        last = self.day
        if last is not None and day <= last:
            return range(0)
        self.day = day
        if last is None:
            return range(day, day + 1) if self.first else range(0)
        return range(last + 1, day + 1)

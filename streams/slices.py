"""Long jobs in slices, so a worker's event loop keeps answering.

The loop that runs stage 1 and stage 2 also answers ``/metrics`` and ``/health``, sends the
consumer group's heartbeats and fires the timers. A batch of thousands of events, a day's
rule evaluation over every team, or a send of thousands of records, run in one go, hold it
for hundreds of milliseconds (a backfill once held it for seconds). The jobs call
:meth:`Slicer.pause` between small pieces of work; it lets the loop run once the current
slice has used its time (``SLICE_SECONDS``), and costs a clock read otherwise.

A request needs a few turns of the loop (accept, read, answer), each of which may wait for
one slice, so short slices keep ``/metrics`` answering quickly during a backfill
(benchmarks/RESULTS.md, ``bench_live.py --backfill``)."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

SLICE_SECONDS = 0.005


class Slicer:
    """Yields to the event loop at most every ``seconds`` of work (see the module)."""

    __slots__ = ("seconds", "clock", "_since", "yields")

    def __init__(self, seconds: float = SLICE_SECONDS, clock: Callable[[], float] = time.perf_counter) -> None:
        self.seconds = seconds
        self.clock = clock
        self._since = clock()
        self.yields = 0  # how many times the loop was let run (tests read it)

    def used(self) -> bool:
        """Whether the current slice has used its time."""
        return self.clock() - self._since >= self.seconds

    async def pause(self) -> None:
        """Let the event loop run when the current slice has used its time; a new slice then
        starts."""
        if self.clock() - self._since >= self.seconds:
            await asyncio.sleep(0)
            self.yields += 1
            self._since = self.clock()


T = TypeVar("T")
R = TypeVar("R")


async def in_slices(items: Sequence[T], run: Callable[[Sequence[T], R | None], R], step: int = 25) -> R:
    """``run`` over ``items`` ``step`` at a time, each call continuing the result of the one
    before (``None`` for the first), the event loop let run between them (:class:`Slicer`)."""
    slicer = Slicer()
    done = run(items[:step], None)
    for i in range(step, len(items), step):
        await slicer.pause()
        done = run(items[i : i + step], done)
    return done


class LoopLagProbe:
    """How late the event loop runs a probe due every ``interval`` seconds: the longest time
    something held the loop, near enough, exported as ``pathwatch_event_loop_lag_seconds``
    (``observe``) so a held loop shows on a dashboard, not only in slow ``/metrics`` answers."""

    def __init__(self, observe: Callable[[float], None], interval: float = 0.1) -> None:
        self.observe = observe
        self.interval = interval

    async def run(self) -> None:
        """Probe until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.observe(max(0.0, loop.time() - due))


def freeze_long_lived() -> None:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze``).

    Called once a process has built what lives as long as it does (imported modules, the
    faust app, its stages): a full collection then walks only what was made since, instead
    of the hundreds of thousands of objects the imports alone make, each time holding the
    event loop (benchmarks/RESULTS.md, the backfill's ``/metrics`` answers). A frozen object that later becomes garbage is still freed by reference counting; only a
    reference cycle among frozen objects stays (none is made again and again)."""
    gc.collect()
    gc.freeze()


__all__ = ["SLICE_SECONDS", "LoopLagProbe", "Slicer", "freeze_long_lived", "in_slices"]

"""Work in slices (streams.slices): the event loop is let run once a slice's time is used,
and the loop-lag probe reports how late the loop ran it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from streams.slices import LoopLagProbe, Slicer, in_slices


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_slice_yields_only_once_its_time_is_used() -> None:
    clock = FakeClock()
    slicer = Slicer(1.0, clock)  # times exact in binary: no rounding decides a yield

    async def work() -> list[int]:
        seen = []
        for _ in range(10):
            clock.now += 0.25  # each piece of work takes a quarter of a slice
            await slicer.pause()
            seen.append(slicer.yields)
        return seen

    # a yield after every fourth piece (a slice's time), counted from the last yield
    assert asyncio.run(work()) == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]


def test_a_pause_lets_other_tasks_run() -> None:
    async def main() -> list[str]:
        order: list[str] = []
        slicer = Slicer(0.0)  # every pause yields

        async def other() -> None:
            order.append("other")

        task = asyncio.ensure_future(other())
        order.append("before")
        await slicer.pause()
        order.append("after")
        await task
        return order

    assert asyncio.run(main()) == ["before", "other", "after"]


def test_the_probe_reports_how_long_the_loop_was_held() -> None:
    lags: list[float] = []

    async def main() -> None:
        probe = asyncio.ensure_future(LoopLagProbe(lags.append, interval=0.01).run())
        await asyncio.sleep(0.05)  # the probe runs a few times on a free loop
        free = len(lags)
        time.sleep(0.3)  # noqa: ASYNC251 - holding the loop is the point
        await asyncio.sleep(0.05)
        probe.cancel()
        assert free >= 1

    asyncio.run(main())
    # the probe due during the hold ran at least 0.3 s - 0.01 s late; never negative
    assert max(lags) >= 0.29
    assert min(lags) >= 0.0


def test_in_slices_continues_each_result_and_covers_every_item() -> None:
    calls: list[tuple[list[int], int | None]] = []

    def run(part: Sequence[int], into: int | None) -> int:
        calls.append((list(part), into))
        return (into or 0) + sum(part)

    assert asyncio.run(in_slices(list(range(10)), run, step=4)) == 45
    assert calls == [([0, 1, 2, 3], None), ([4, 5, 6, 7], 6), ([8, 9], 28)]

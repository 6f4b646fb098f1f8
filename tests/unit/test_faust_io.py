"""Stage 1's input batches and table writes without faust's per-message work
(``streams/faust_io.py``), over in-memory stand-ins for faust's app, consumer and producer.
faust's own flow control object is used as it is. The fetch loop itself runs in every
integration test of the live worker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from mode.utils.queues import FlowControlEvent

from streams.faust_io import (
    FAUST_DRAIN_SHA256,
    DirectTable,
    Intake,
    ack,
    batches,
    faust_drain_source_hash,
    send_changelog,
)


@dataclass
class _Msg:
    offset: int
    generation_id: int = 1
    tracked: bool = False


@dataclass
class _Consumer:
    tracked: list[int] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)

    def track_message(self, message: _Msg) -> None:
        self.tracked.append(message.offset)

    def ack(self, message: _Msg) -> bool:
        self.acked.append(message.offset)
        return True


@dataclass
class _App:
    flow_control: FlowControlEvent
    consumer: _Consumer = field(default_factory=_Consumer)
    consumer_generation_id: int = 1
    should_stop: bool = False


def _app(intake: Intake) -> _App:
    flow = FlowControlEvent()
    flow.manage_queue(intake)  # type: ignore[arg-type]
    flow.resume()
    return _App(flow)


async def test_a_batch_returns_as_soon_as_it_is_full_and_otherwise_after_the_wait() -> None:
    intake = Intake(frozenset({"events"}))
    for n in range(5):
        intake.offer(_Msg(n))
    full = await asyncio.wait_for(intake.batch(3, within=60), 1)
    assert [m.offset for m in full] == [0, 1, 2]
    rest = await asyncio.wait_for(intake.batch(3, within=0.05), 1)
    assert [m.offset for m in rest] == [3, 4]
    assert len(intake) == 0


async def test_a_batch_waits_for_its_first_message_then_takes_what_comes_within_the_wait() -> None:
    intake = Intake(frozenset({"events"}))
    task = asyncio.create_task(intake.batch(10, within=0.2))
    await asyncio.sleep(0.05)
    assert not task.done()
    intake.offer(_Msg(0))
    await asyncio.sleep(0.02)
    intake.offer(_Msg(1))
    taken = await asyncio.wait_for(task, 1)
    assert [m.offset for m in taken] == [0, 1]


async def test_a_full_intake_holds_the_fetch_loop_until_a_batch_is_taken() -> None:
    intake = Intake(frozenset({"events"}), limit=4)
    for n in range(4):
        intake.offer(_Msg(n))
    assert intake.full()
    waiting = asyncio.create_task(intake.space())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await intake.batch(2, within=0)
    await asyncio.wait_for(waiting, 1)
    assert not intake.full()


async def test_flow_control_clears_the_intake_on_a_rebalance() -> None:
    intake = Intake(frozenset({"events"}), limit=2)
    app = _app(intake)
    intake.offer(_Msg(0))
    intake.offer(_Msg(1))
    assert intake.full()
    app.flow_control.suspend()
    app.flow_control.clear()
    assert len(intake) == 0
    assert not intake.full()


async def test_batches_track_what_they_yield_and_drop_messages_of_an_earlier_generation() -> None:
    intake = Intake(frozenset({"events"}))
    app = _app(intake)
    app.consumer_generation_id = 2
    intake.offer(_Msg(0, generation_id=1))
    intake.offer(_Msg(1, generation_id=2))
    intake.offer(_Msg(2, generation_id=2))
    stream = batches(app, intake, 10, 0)
    batch = await asyncio.wait_for(anext(stream), 1)
    assert [m.offset for m in batch] == [1, 2]
    assert all(m.tracked for m in batch)
    assert app.consumer.tracked == [1, 2]
    assert app.consumer.acked == []
    ack(app, batch)
    assert app.consumer.acked == [1, 2]


async def test_batches_wait_while_flow_is_suspended() -> None:
    intake = Intake(frozenset({"events"}))
    app = _app(intake)
    app.flow_control.suspend()
    intake.offer(_Msg(0))
    stream = batches(app, intake, 10, 0)
    task = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    assert not task.done()
    assert app.consumer.tracked == []
    app.flow_control.resume()  # same generation: the batch taken before is processed
    batch = await asyncio.wait_for(task, 1)
    assert [m.offset for m in batch] == [0]


class _Store(dict[bytes, bytes]):
    pass


@dataclass
class _Table:
    data: _Store = field(default_factory=_Store)


def test_a_direct_table_writes_its_store_and_queues_each_write_for_the_changelog() -> None:
    table = _Table()
    direct = DirectTable(table)
    direct[b"a"] = b"1"
    direct[b"b"] = b"2"
    direct[b"a"] = b"3"
    direct.pop(b"b")
    direct.pop(b"missing", None)
    assert table.data == {b"a": b"3"}
    assert direct.get(b"a") == b"3"
    assert b"b" not in direct
    assert len(direct) == 1
    assert list(direct) == [b"a"]
    assert direct.changelog() == [(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"b", None)]
    assert direct.changelog() == []


@dataclass
class _Producer:
    fail_on: bytes | None = None
    sent: list[tuple[str, bytes, bytes | None, int]] = field(default_factory=list)

    async def send(self, topic: str, key: bytes, value: bytes | None, partition: int, timestamp: Any,
                   headers: Any) -> asyncio.Future[None]:
        self.sent.append((topic, key, value, partition))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if key == self.fail_on:
            done.set_exception(RuntimeError("broker refused"))
        else:
            done.set_result(None)
        return done


async def test_changelog_records_are_sent_in_order_to_their_key_partition() -> None:
    producer = _Producer()
    await send_changelog(producer, "cl", [(b"a", b"1"), (b"bb", None)], len)
    assert producer.sent == [("cl", b"a", b"1", 1), ("cl", b"bb", None, 2)]


async def test_a_changelog_send_failure_is_raised() -> None:
    producer = _Producer(fail_on=b"bb")
    with pytest.raises(RuntimeError, match="broker refused"):
        await send_changelog(producer, "cl", [(b"a", b"1"), (b"bb", b"2")], len)


def test_the_fetch_loop_copied_from_faust_is_the_installed_faust_s() -> None:
    # streams/faust_io.py runs a copy of faust's Consumer._drain_messages with one branch
    # added; after a faust upgrade, review the copy against the new original and update the hash
    assert faust_drain_source_hash() == FAUST_DRAIN_SHA256


def test_the_worker_consumer_waits_briefly_for_fetches() -> None:
    # faust 0.15 creates its aiokafka consumer with fetch_max_wait_ms=1500; a fetch of quiet
    # partitions then held back the busy ones for up to 1.5 s (streams/faust_io.py)
    from streams.faust_io import PathwatchApp

    async def created_wait() -> int:
        app = PathwatchApp("pw-unit-fetch-wait", broker="kafka://127.0.0.1:1", web_enabled=False)
        app.fetch_max_wait_ms = 75
        consumer: Any = app.consumer  # built, not started: nothing connects
        created = consumer._thread._create_worker_consumer(consumer.transport)
        return int(created._fetch_max_wait_ms)

    assert asyncio.run(created_wait()) == 75

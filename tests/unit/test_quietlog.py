"""Kafka client logs during an outage: one line per kind and node per interval, with a count
(issue 14, point 7). A fake clock: no test sleeps."""

from __future__ import annotations

import io
import logging
import uuid

import pytest

from pathwatch.quietlog import RepeatFilter, install_filter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def record(msg: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_an_outage_becomes_one_line_per_interval_with_a_count() -> None:
    clock = FakeClock()
    f = RepeatFilter(30, clock)
    passed = []
    for i in range(35_000):  # the 9-second outage: 35,128 lines
        clock.advance(9 / 35_000)
        r = record("Unable connect to node with id %s: %s", 1, f"[Errno 111] Connect call failed attempt {i}")
        if f.filter(r):
            passed.append(r.getMessage())
    assert passed == ["Unable connect to node with id 1: [Errno 111] Connect call failed attempt 0"]
    clock.advance(30)
    r = record("Unable connect to node with id %s: %s", 1, "[Errno 111] Connect call failed attempt 35000")
    assert f.filter(r)
    assert r.getMessage().endswith("(34999 similar messages suppressed in the last 39 s)")
    assert r.levelno == logging.ERROR


def test_a_record_with_its_count_formats_through_fausts_formatter() -> None:
    """faust's worker logs through mode's ExtensionFormatter, which turned ``args=None`` into
    ``(None,)`` and printed "--- Logging error ---" instead of the line."""
    from mode.utils.logging import ExtensionFormatter

    clock = FakeClock()
    f = RepeatFilter(30, clock)
    f.filter(record("Marking the coordinator dead (node %s)for group %s.", 1, "pw"))
    f.filter(record("Marking the coordinator dead (node %s)for group %s.", 1, "pw"))
    clock.advance(31)
    r = record("Marking the coordinator dead (node %s)for group %s.", 1, "pw")
    assert f.filter(r)
    text = ExtensionFormatter(io.StringIO(), fmt="%(message)s").format(r)
    assert text == "Marking the coordinator dead (node 1)for group pw. (1 similar messages suppressed in the last 31 s)"


def test_each_node_keeps_its_own_line() -> None:
    f = RepeatFilter(30, FakeClock())
    lines = [record("Failed fetch messages from %s: %s", node, "NodeNotReadyError") for node in (1, 2, 1, 2, 3)]
    assert [f.filter(r) for r in lines] == [True, True, False, False, True]


def test_kinds_differ_by_logger_and_text_not_by_numbers() -> None:
    f = RepeatFilter(30, FakeClock())
    assert f.filter(record("Bootstrap failed (backoff 0.11 secs)", name="kafka.net.manager"))
    assert not f.filter(record("Bootstrap failed (backoff 21.49 secs)", name="kafka.net.manager"))
    assert f.filter(record("Bootstrap failed (backoff 0.11 secs)", name="kafka.net.connection"))
    assert f.filter(record("Heartbeat failed: %r", "RebalanceInProgress", name="kafka.net.manager"))


def test_info_and_debug_are_left_alone() -> None:
    f = RepeatFilter(30, FakeClock())
    assert all(f.filter(record("Joined group", level=logging.INFO)) for _ in range(5))


def test_installed_on_existing_and_later_loggers_only_under_the_watched_names(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lib = f"fakelib{uuid.uuid4().hex[:8]}"
    existing = logging.getLogger(f"{lib}.conn")
    original_class = logging.getLoggerClass()
    try:
        install_filter(RepeatFilter(30, FakeClock()), [lib])
        later = logging.getLogger(f"{lib}.consumer.fetcher")
        other = logging.getLogger(f"other{lib}.conn")
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                existing.error("Unable connect to node with id 1")
                later.warning("Failed fetch messages from 1")
                other.error("Unable connect to node with id 1")
    finally:
        logging.setLoggerClass(original_class)
    by_logger = [r.name for r in caplog.records]
    assert by_logger.count(existing.name) == 1
    assert by_logger.count(later.name) == 1
    assert by_logger.count(other.name) == 3

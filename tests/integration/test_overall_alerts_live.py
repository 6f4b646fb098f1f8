"""Issue 17 item 5 live: two real workers raise the replay's SpecialCause of ``*`` (the
all-teams series), once, from the shares topic (streams/overall_alerts.py).

A simulated stream of three teams is cut where the replay's first ``*`` SpecialCause is
judged at the end of input (the replay's ``finish`` evaluates once past its day schedule, at
the largest event time: the watermark ``report --from-live --until end`` flushes the workers
to). Live, the worker holding ``*`` evaluates when the lowest watermark stamped on the shares
enters a local day: at that same watermark, after the flush. The transitions topic then holds
that one ``*`` SpecialCause, equal to the replay's in name, labels and startsAt, and no other.
"""

from __future__ import annotations

import asyncio
import io
import re
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from alerts.model import Alert
from alerts.rules import SPECIAL_CAUSE, SystemAlertRules
from pathwatch import parts, simulate
from pathwatch.parts import core_config
from schemas.decode import Decoder
from schemas.model import ALL_TEAMS, Event
from streams.delivery import alert_from_bytes
from streams.engine import Engine
from streams.live_overall import ALERTS_KEY
from streams.live_report import END, _read_all, live_report
from tests.integration.live_fixtures import PSEUDONYM_KEY, live_stack, scrape, wait_ready
from tests.integration.support import Process

SIMULATION = simulate.SimulationOptions(clients=1500, teams=("north", "south", "east"), days=182, seed=8)


def star_special_causes(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.labels.get("team") == ALL_TEAMS and a.labels["alertname"] == SPECIAL_CAUSE]


def replayed(lines: list[bytes], settings: Any) -> Engine:
    """The replay (with the system rules) of ``lines``, finished."""
    engine = Engine(core_config(settings), SystemAlertRules(parts.rules_config(settings)))
    decoder = Decoder(PSEUDONYM_KEY.encode(), settings.max_message_bytes)
    for number, line in enumerate(lines, 1):
        event = decoder.decode_line(line, "star", number)
        assert isinstance(event, Event), event
        engine.feed(event)
    engine.finish()
    return engine


def cut_where_star_fires_at_the_end(lines: list[bytes], settings: Any, decoder: Decoder) -> list[bytes]:
    """``lines`` before the local midnight that starts the day of the first ``*`` SpecialCause,
    plus the allowed lateness: the replay's day schedule has not reached that day, its end of
    input has."""
    [first, *_] = sorted(star_special_causes(replayed(lines, settings).alerts()), key=lambda a: a.starts_at)
    day = first.starts_at.astimezone(UTC).date()
    cut = datetime(day.year, day.month, day.day, tzinfo=UTC) + settings.allowed_lateness
    kept = []
    for number, line in enumerate(lines, 1):
        event = decoder.decode_line(line, "star", number)
        assert isinstance(event, Event), event
        if event.time < cut:
            kept.append(line)
    return kept


async def star_transitions(settings: Any) -> list[Alert]:
    records = await _read_all(settings.kafka_bootstrap, settings.topics.transitions, settings.partitions, None, 60)
    return star_special_causes([alert_from_bytes(value) for _, _, value in records if value is not None])


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("star-alerts")
    stack = live_stack(kafka_bootstrap, redis_url, uuid.uuid4().hex[:10], tmp)
    settings = stack.settings
    assert settings.timezone == "UTC", "the cut below takes local midnight in UTC"
    out = io.BytesIO()
    simulate.write(SIMULATION, out)
    decoder = Decoder(PSEUDONYM_KEY.encode(), settings.max_message_bytes)
    lines = cut_where_star_fires_at_the_end(out.getvalue().splitlines(), settings, decoder)
    events = tmp / "events.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in lines))
    replay = replayed(lines, settings)
    workers: list[Process] = []
    try:
        workers.extend([stack.worker("worker-a"), stack.worker("worker-b")])
        for worker in workers:
            wait_ready(worker)
        stack.publish(events)
        live = asyncio.run(live_report(settings, END, 240, config=core_config(settings)))
        yield stack, replay, live, workers
    finally:
        for worker in workers:
            worker.kill(signal.SIGKILL)


def test_the_replays_star_special_cause_is_judged_at_the_end_of_input(deployment: Any) -> None:
    _, replay, live, _ = deployment
    assert live["watermark"] == replay.report()["watermark"]
    [star] = star_special_causes(replay.alerts())
    assert star.ends_at is None
    assert replay.watermark is not None
    assert star.starts_at > replay.watermark, "judged by finish (one microsecond past the last event)"


def test_two_workers_send_the_replays_star_special_cause_exactly_once(deployment: Any) -> None:
    stack, replay, _, workers = deployment
    [expected] = star_special_causes(replay.alerts())
    # the worker holding '*' evaluates once every share is stamped with the flushed watermark
    # (its MDC timer, every tick of 1 s here): wait for the transition, then ten ticks more
    deadline = time.monotonic() + 90
    while not (found := asyncio.run(star_transitions(stack.settings))) and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(10)
    found = asyncio.run(star_transitions(stack.settings))
    assert [(a.labels, a.starts_at, a.ends_at) for a in found] == [(expected.labels, expected.starts_at, None)]
    for worker in workers:
        assert worker.proc is not None
        assert worker.proc.poll() is None, worker.output()[-3000:]


def test_the_shares_topic_keeps_the_star_alert_state(deployment: Any) -> None:
    stack, replay, _, _ = deployment
    settings = stack.settings
    records = asyncio.run(_read_all(settings.kafka_bootstrap, settings.topics.overall_shares, 1, None, 60))
    [state] = [value for _, key, value in records if key == ALERTS_KEY][-1:]
    assert state is not None
    kept = SystemAlertRules(parts.rules_config(settings))
    kept.load(state)
    [expected] = star_special_causes(replay.alerts())
    assert [(a.labels, a.starts_at) for a in kept.firing()] == [(expected.labels, expected.starts_at)]


def test_a_worker_taking_star_over_carries_the_open_alert_on(deployment: Any) -> None:
    """The last test of the module: it stops both workers. A new worker of the group holds
    every team and ``*``; it starts from the ``*`` state on the shares topic and evaluates at
    once, at the same watermark: without that state it would send the firing again."""
    stack, replay, _, workers = deployment
    [expected] = star_special_causes(replay.alerts())
    for worker in workers:
        worker.kill(signal.SIGTERM)
    successor = stack.worker("worker-c")
    workers.append(successor)
    wait_ready(successor)
    # it exports the '*' charts right after its '*' step (streams/live_changes.py, _export)
    star_chart = re.compile(r'pathwatch_spc_mean\{[^}]*team="\*"')
    deadline = time.monotonic() + 90
    while not star_chart.search(scrape(successor)) and time.monotonic() < deadline:
        time.sleep(1)
    assert star_chart.search(scrape(successor)), successor.output()[-3000:]
    time.sleep(5)  # its transitions, if any, are sent before the gauges are set; a margin
    found = asyncio.run(star_transitions(stack.settings))
    assert [(a.labels, a.starts_at, a.ends_at) for a in found] == [(expected.labels, expected.starts_at, None)]

"""A real Prometheus scrapes two real pathwatch workers while a simulated stream flows (issue 7).

One isolated deployment (its own topics and consumer group on the stack's Kafka, alert clock
``event``) runs two ``pathwatch worker`` processes; /usr/bin/prometheus (Debian's package)
scrapes both every second with deploy/prometheus/rules loaded. A simulated stream is
published, and ``live_report`` flushes the workers to the replay's final watermark. Then:

- every PromQL expression of every dashboard panel and every recording rule returns at
  least one series, and every alerting rule evaluates with every metric it reads present
  (an alert's condition is false on a healthy stream; promtool unit tests cover firing);
- ``sum by (team, measure)`` of the workers' measure gauges equals the replay's
  trailing-window rates (``window_days``) at its final watermark, ``*`` included (each
  worker exports its partial ``*`` over the teams it holds).

A missing prometheus binary FAILS the test (integration tests never skip).
"""

from __future__ import annotations

import asyncio
import io
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pathwatch.simulate import SimulationOptions, write
from streams.engine import Engine
from streams.publish import publish
from tests.integration.live_fixtures import (
    PSEUDONYM_KEY,
    LiveStack,
    assert_equivalent,
    live_stack,
    replay_engine,
    wait_ready,
)
from tests.integration.prometheus_fixtures import (
    JOB,
    alerting_rules_missing_series,
    dashboards_without_series,
    prometheus_binary,
    recording_rules_without_series,
    samples,
    start_prometheus,
)
from tests.integration.support import Process

# Large enough that the trailing window holds cells of 5 or more for most measures at ``*``
# (the dashboards show only unsuppressed cells), small enough to run in about a minute.
# 90 days so that 30-day outcome windows close inside the data (follow-up and readmission
# cells trail the watermark by their window).
SIMULATION = SimulationOptions(clients=2500, days=90, seed=21, bad_fraction=0.002)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@dataclass
class Deployment:
    stack: LiveStack
    workers: list[Process]
    prometheus: str
    engine: Engine
    window_days: int


def _simulate(path: Path) -> Path:
    out = io.BytesIO()
    write(SIMULATION, out)
    path.write_bytes(out.getvalue())
    return path


def _wait_scraped_after(base: str, moment: float, targets: int, timeout: float = 30) -> None:
    """Until every target has a successful scrape that started after ``moment`` (Unix seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        stamps = samples(base, f'timestamp(up{{job="{JOB}"}} == 1)', "instance")
        if len(stamps) == targets and min(stamps.values()) > moment:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"Prometheus did not scrape every worker after the flush: {stamps}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def deployment(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    prometheus_binary()  # fail before starting anything when it is missing
    tmp = tmp_path_factory.mktemp("prometheus-workers")
    events = _simulate(tmp / "events.jsonl")
    stack = live_stack(kafka_bootstrap, redis_url, uuid.uuid4().hex[:10], tmp)
    # a stream this small has cells under 5 (readmissions above all); suppression itself is
    # covered by the promtool unit tests, so here only empty cells are hidden
    stack.env["PATHWATCH_SMALL_CELL"] = "1"
    settings = stack.settings
    engine = replay_engine(events, settings, PSEUDONYM_KEY)
    assert engine.watermark is not None
    started: list[Process] = []
    server = None
    try:
        started.extend([stack.worker("worker-a"), stack.worker("worker-b")])
        for worker in started:
            wait_ready(worker)
        server = start_prometheus(tmp, [f"127.0.0.1:{w.web_port}" for w in started])  # type: ignore[attr-defined]
        stack.publish(events)
        live = stack.report(engine.watermark)
        # The replay report is built by the same engine: the live state itself is right, so
        # any difference found below is in how the gauges are exported.
        assert_equivalent(live, engine.report())
        # one hospital message, so the adapters' per-partner counter has its series: an
        # admission dated 1899, which the adapter builds (unlinked) and the decoder then
        # dead-letters (outside the time window), so that no measure or count above moves
        hl7 = tmp / "partner.hl7"
        hl7.write_bytes((FIXTURES / "hl7" / "a01_admit.hl7").read_bytes().replace(b"20260225080000", b"18990225080000"))
        asyncio.run(publish(settings, hl7, "hl7"))
        # gauges follow the windows once per tick (1 s here): let them settle, then scrape
        _wait_scraped_after(server.base, time.time() + 3, len(started))
        for worker in started:
            assert worker.proc is not None
            assert worker.proc.poll() is None, worker.output()[-3000:]
        yield Deployment(stack, started, server.base, engine, settings.window_days)
    finally:
        if server is not None:
            server.stop()
        for worker in started:
            worker.kill(signal.SIGKILL)


def test_both_workers_are_scraped_and_share_the_partitions(deployment: Deployment) -> None:
    topic = deployment.stack.env["PATHWATCH_TOPICS__CLIENTS"]
    owners = samples(
        deployment.prometheus,
        f'count by (instance) (pathwatch_watermark_timestamp_seconds{{topic="{topic}"}})',
        "instance",
    )
    assert len(owners) == 2, f"both workers should own clients partitions: {owners}"
    assert sum(owners.values()) == deployment.stack.settings.partitions


def test_events_total_counts_accepted_events_across_workers(deployment: Deployment) -> None:
    # docs/metrics.md: events accepted (valid, not duplicates); the replay counts the same
    counters = deployment.engine.counters
    total = samples(deployment.prometheus, f'sum(pathwatch_events_total{{job="{JOB}"}})')
    assert total == {(): counters.accepted}, f"replay: {counters.as_dict()}"


def test_measure_sums_across_workers_equal_the_replay_trailing_window(deployment: Deployment) -> None:
    engine = deployment.engine
    assert engine.watermark is not None
    expected: dict[tuple[str, ...], tuple[int, int]] = {
        (r.team, r.measure): (r.numerator, r.denominator)
        for r in engine.windows.rates(engine.watermark, deployment.window_days)
    }
    assert any(den >= 5 for _, den in expected.values()), "the stream is too small to test anything"
    base = deployment.prometheus
    numerators = samples(base, "sum by (team, measure) (pathwatch_measure_numerator)", "team", "measure")
    denominators = samples(base, "sum by (team, measure) (pathwatch_measure_denominator)", "team", "measure")
    actual = {
        key: (int(numerators.get(key, -1)), int(denominators.get(key, -1)))
        for key in numerators.keys() | denominators.keys()
    }
    wrong = {
        key: {"prometheus": actual.get(key), "replay": expected.get(key)}
        for key in sorted(expected.keys() | actual.keys())
        if actual.get(key) != expected.get(key)
    }
    assert not wrong, f"cells differing from the replay's trailing {deployment.window_days} days: {wrong}"


def test_referral_counts_across_workers_equal_the_replay_trailing_window(deployment: Deployment) -> None:
    engine = deployment.engine
    assert engine.watermark is not None
    expected = {
        (w.team,): float(w.count) for w in engine.windows.waits(engine.watermark, deployment.window_days)
    }
    actual = samples(deployment.prometheus, "sum by (team) (pathwatch_referral_wait_referrals)", "team")
    assert actual == expected


def test_every_dashboard_expression_returns_a_series(deployment: Deployment) -> None:
    # the measure group of the rules runs every 15 s, so allow for one evaluation after the flush
    empty = dashboards_without_series(deployment.prometheus, time.monotonic() + 20)
    assert not empty, "no series for:\n" + "\n".join(empty)


def test_every_recording_rule_returns_a_series(deployment: Deployment) -> None:
    empty = recording_rules_without_series(deployment.prometheus, time.monotonic() + 20)
    assert not empty, "no series for:\n" + "\n".join(empty)


def test_every_alerting_rule_evaluates_on_present_series(deployment: Deployment) -> None:
    missing = alerting_rules_missing_series(deployment.prometheus, time.monotonic() + 20)
    assert not missing, "alerting rules read metrics with no series:\n" + "\n".join(missing)

"""Issue 17 live: a ``service.change`` round-trips through the changes topic; the live report
equals the replay's ``spc`` and ``changes`` on the same input; two real workers export the
Making Data Count gauges of the teams they hold, which a real Prometheus scrapes, and every
query of the Making Data Count dashboard (its service-change annotation included) finds data.

One isolated deployment (its own topics, the changes topic included, and consumer group on
the stack's Kafka). A simulated half-year with one change recorded for north at week 12 (a
lasting rise of seen_within_target): the change is published to the changes topic before the
workers start (they read it from the beginning, as a restarted worker does), the other events
to the events topic. A missing prometheus binary FAILS the test.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from pathwatch import parts, simulate
from pathwatch.cli import main
from pathwatch.parts import core_config
from streams.changes import publish_change
from streams.live_changes import read_changes
from streams.live_report import END, live_report
from tests.integration.live_fixtures import LiveStack, live_stack, wait_ready
from tests.integration.prometheus_fixtures import (
    DASHBOARDS,
    prometheus_binary,
    samples,
    start_prometheus,
    wait_for_series,
)
from tests.integration.support import Process
from tests.promql import dashboard_targets, grafana_to_promql

SIMULATION = simulate.SimulationOptions(
    clients=2200, teams=("north", "south", "east"), days=182, seed=8, bad_fraction=0.0,
    changes=(simulate.parse_change("north:seen_within_target:0.95@12"),),
)  # fmt: skip


@dataclass
class Deployment:
    stack: LiveStack
    prometheus: str
    change: dict[str, Any]
    live: dict[str, Any]
    replay: dict[str, Any]


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    prometheus_binary()  # fail before starting anything when it is missing
    tmp = tmp_path_factory.mktemp("mdc-live")
    out = io.BytesIO()
    simulate.write(SIMULATION, out)
    lines = out.getvalue().splitlines()
    [change] = [json.loads(line) for line in lines if b'"service.change"' in line]
    everything, events = tmp / "all.jsonl", tmp / "events.jsonl"
    everything.write_bytes(out.getvalue())
    events.write_bytes(b"".join(line + b"\n" for line in lines if b'"service.change"' not in line))

    stack = live_stack(kafka_bootstrap, redis_url, uuid.uuid4().hex[:10], tmp)
    stack.env["PATHWATCH_SMALL_CELL"] = "1"  # the dashboard's weekly cells; suppression: promtool tests
    settings = stack.settings
    publish_change(change, parts.decoder(settings, live=False), settings)

    mp = pytest.MonkeyPatch()
    for name, value in stack.env.items():
        mp.setenv(name, value)
    replayed = tmp / "replay.json"
    assert main(["replay", str(everything), "--report", str(replayed)]) == 0
    replay = json.loads(replayed.read_text())

    workers: list[Process] = []
    server = None
    try:
        workers.extend([stack.worker("worker-a"), stack.worker("worker-b")])
        for worker in workers:
            wait_ready(worker)
        server = start_prometheus(tmp, [f"127.0.0.1:{w.web_port}" for w in workers])  # type: ignore[attr-defined]
        stack.publish(events)
        live = asyncio.run(live_report(settings, END, 240, config=core_config(settings), spc=parts.spc_parts(settings)))
        for worker in workers:
            assert worker.proc is not None
            assert worker.proc.poll() is None, worker.output()[-3000:]
        yield Deployment(stack, server.base, change, live, replay)
    finally:
        mp.undo()
        if server is not None:
            server.stop()
        for worker in workers:
            worker.kill(signal.SIGKILL)


def test_the_change_round_trips_through_the_changes_topic(deployment: Deployment) -> None:
    settings = deployment.stack.settings
    found = asyncio.run(read_changes(settings.kafka_bootstrap, settings.topics.changes, parts.decoder(settings, live=False), 60))
    [change] = found.changes()
    data = deployment.change["data"]
    assert (change.change_id, change.team, change.measures) == (data["change_id"], "north", ("seen_within_target",))
    assert change.time == datetime.fromisoformat(deployment.change["time"])


def test_the_live_report_has_the_replays_spc_and_changes(deployment: Deployment) -> None:
    live, replay = deployment.live, deployment.replay
    assert live["watermark"] == replay["watermark"]
    [entry] = replay["changes"]
    assert entry["evidence"]["seen_within_target"]["grade"] != "too_early"
    north = next(e for e in replay["spc"] if (e["team"], e["measure"]) == ("north", "seen_within_target"))
    assert {p["group"] for p in north["points"]} == {0, 1}, "the change starts a group"
    assert live["changes"] == replay["changes"]
    assert live["spc"] == replay["spc"]


def _latest(deployment: Deployment) -> dict[tuple[str, ...], dict[str, Any]]:
    """(team, measure) -> the live report's chart entry, for the teams' charts with points."""
    return {(e["team"], e["measure"]): e for e in deployment.live["spc"] if e["team"] != "*" and e["points"]}


def test_the_workers_gauges_are_the_reports_latest_points(deployment: Deployment) -> None:
    charts = _latest(deployment)
    assert charts
    expected: dict[tuple[str, ...], tuple[Any, ...]] = {
        key: (e["points"][-1]["value"], e["points"][-1]["mean"], e["points"][-1]["upper"], e["variation"])
        for key, e in charts.items()
    }
    base = deployment.prometheus

    def scraped() -> dict[tuple[str, ...], tuple[Any, ...]]:
        by = ("team", "measure")
        value = samples(base, "max by (team, measure) (pathwatch_spc_value)", *by)
        mean = samples(base, "max by (team, measure) (pathwatch_spc_mean)", *by)
        upper = samples(base, "max by (team, measure) (pathwatch_spc_upper_limit)", *by)
        icon = samples(base, "max by (team, measure, pathwatch_spc_variation) (pathwatch_spc_variation) == 1",
                       *by, "pathwatch_spc_variation")  # fmt: skip
        icons = {(t, m): v for t, m, v in icon}
        return {k: (value[k], mean.get(k), upper.get(k), icons.get(k)) for k in value}

    # the gauges follow the windows once per tick (1 s here) and Prometheus scrapes every second
    deadline = time.monotonic() + 60
    while (actual := scraped()) != expected and time.monotonic() < deadline:
        time.sleep(1)
    keys = set(expected) | set(actual)
    differing = {k: (actual.get(k), expected.get(k)) for k in keys if actual.get(k) != expected.get(k)}
    assert not differing, f"(prometheus, report) differ: {differing}"


def test_the_change_is_a_dashboard_annotation(deployment: Deployment) -> None:
    dashboard = json.loads((DASHBOARDS / "mdc.json").read_text())
    [annotation] = dashboard["annotations"]["list"]
    answer = wait_for_series(deployment.prometheus, grafana_to_promql(annotation["expr"]), time.monotonic() + 60)
    found = {(s["metric"]["team"], s["metric"]["measure"], s["metric"]["change"]): float(s["value"][1])
             for s in answer["data"]["result"]}  # fmt: skip
    moment = datetime.fromisoformat(deployment.change["time"]).timestamp() * 1000
    assert found == {("north", "seen_within_target", "1"): moment}


def test_every_query_of_the_mdc_dashboard_returns_a_series(deployment: Deployment) -> None:
    dashboard = json.loads((DASHBOARDS / "mdc.json").read_text())
    deadline = time.monotonic() + 30  # the recording rule runs every 15 s
    empty = []
    for title, _, target in dashboard_targets(dashboard):
        answer = wait_for_series(deployment.prometheus, grafana_to_promql(target["expr"]), deadline)
        assert answer["status"] == "success", f"{title}: {answer}"
        if not answer["data"]["result"]:
            empty.append(f"{title} / {target['refId']}: {target['expr']}")
    assert not empty, "no series for:\n" + "\n".join(empty)

"""Issue 17 live: a ``service.change`` round-trips through the changes topic; the live report
equals the replay's ``spc`` and ``changes`` on the same input; two real workers export the
Making Data Count gauges of the teams they hold, and exactly one of them those of ``*`` (from
the shares topic, streams/live_overall.py), which a real Prometheus scrapes; every query of the
Making Data Count dashboard (its service-change annotation included) finds data; a worker
started after both stopped exports the same charts and change markers.

One isolated deployment (its own topics, the changes and shares topics included, and consumer
group on the stack's Kafka). A simulated half-year with one change recorded for north at week
12 (a lasting rise of seen_within_target) and a provider-wide one (``*``, lost_before_contact)
four weeks before: the changes are published to the changes topic before the workers start
(they read it from the beginning, as a restarted worker does), the other events to the events
topic. A missing prometheus binary FAILS the test.
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
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pathwatch import parts, simulate
from pathwatch.cli import main
from pathwatch.parts import core_config
from schemas.model import ALL_TEAMS
from streams.changes import publish_change
from streams.live_changes import read_changes
from streams.live_report import END, live_report
from tests.integration.live_fixtures import LiveStack, live_stack, scrape, wait_ready
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
    provider_wide: dict[str, Any]
    live: dict[str, Any]
    replay: dict[str, Any]
    workers: list[Process]


def provider_wide_change(change: dict[str, Any]) -> dict[str, Any]:
    """A change for every team (``*``) to lost_before_contact, four weeks before ``change``."""
    time = (datetime.fromisoformat(change["time"]) - timedelta(weeks=4)).isoformat()
    data = {"change_id": "all-teams-triage", "team": ALL_TEAMS, "measures": ["lost_before_contact"],
            "description": "one triage rota for every team"}  # fmt: skip
    return {**change, "id": "change-all-teams-triage", "time": time, "data": data}


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    prometheus_binary()  # fail before starting anything when it is missing
    tmp = tmp_path_factory.mktemp("mdc-live")
    out = io.BytesIO()
    simulate.write(SIMULATION, out)
    lines = out.getvalue().splitlines()
    [change] = [json.loads(line) for line in lines if b'"service.change"' in line]
    provider_wide = provider_wide_change(change)
    everything, events = tmp / "all.jsonl", tmp / "events.jsonl"
    everything.write_bytes(out.getvalue() + json.dumps(provider_wide).encode() + b"\n")
    events.write_bytes(b"".join(line + b"\n" for line in lines if b'"service.change"' not in line))

    stack = live_stack(kafka_bootstrap, redis_url, uuid.uuid4().hex[:10], tmp)
    stack.env["PATHWATCH_SMALL_CELL"] = "1"  # the dashboard's weekly cells; suppression: promtool tests
    settings = stack.settings
    for recorded in (change, provider_wide):
        publish_change(recorded, parts.decoder(settings, live=False), settings)

    mp = pytest.MonkeyPatch()
    for name, value in stack.env.items():
        mp.setenv(name, value)
    replayed = tmp / "replay.json"
    assert main(["replay", str(everything), "--report", str(replayed)]) == 0
    replay = json.loads(replayed.read_text())

    workers: list[Process] = []  # the restart test adds one
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
        yield Deployment(stack, server.base, change, provider_wide, live, replay, workers)
    finally:
        mp.undo()
        if server is not None:
            server.stop()
        for worker in workers:
            worker.kill(signal.SIGKILL)


def test_the_change_round_trips_through_the_changes_topic(deployment: Deployment) -> None:
    settings = deployment.stack.settings
    found = asyncio.run(read_changes(settings.kafka_bootstrap, settings.topics.changes, parts.decoder(settings, live=False), 60))
    [star, change] = sorted(found.changes(), key=lambda c: c.time)
    data = deployment.change["data"]
    assert (change.change_id, change.team, change.measures) == (data["change_id"], "north", ("seen_within_target",))
    assert change.time == datetime.fromisoformat(deployment.change["time"])
    assert (star.team, star.measures) == (ALL_TEAMS, ("lost_before_contact",))


def test_the_live_report_has_the_replays_spc_and_changes(deployment: Deployment) -> None:
    live, replay = deployment.live, deployment.replay
    assert live["watermark"] == replay["watermark"]
    [entry] = [e for e in replay["changes"] if e["team"] == "north"]
    assert entry["evidence"]["seen_within_target"]["grade"] != "too_early"
    for team, measure in (("north", "seen_within_target"), (ALL_TEAMS, "lost_before_contact")):
        chart = next(e for e in replay["spc"] if (e["team"], e["measure"]) == (team, measure))
        assert {p["group"] for p in chart["points"]} == {0, 1}, f"the change starts a group of {team}"
    assert live["changes"] == replay["changes"]
    assert live["spc"] == replay["spc"]


def _latest(deployment: Deployment) -> dict[tuple[str, ...], tuple[Any, ...]]:
    """(team, measure) -> the live report's latest point (value, mean, upper limit) and
    variation icon, for the charts with points, ``*``'s included."""
    charts = {(e["team"], e["measure"]): e for e in deployment.live["spc"] if e["points"]}
    assert (ALL_TEAMS, "lost_before_contact") in charts
    return {
        key: (e["points"][-1]["value"], e["points"][-1]["mean"], e["points"][-1]["upper"], e["variation"])
        for key, e in charts.items()
    }


def test_the_workers_gauges_are_the_reports_latest_points(deployment: Deployment) -> None:
    expected = _latest(deployment)
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


def test_one_worker_exports_each_chart_and_change_star_included(deployment: Deployment) -> None:
    by = ("team", "measure", "instance")
    exporters: dict[tuple[str, str], set[str]] = {}
    for team, measure, instance in samples(deployment.prometheus, "count by (team, measure, instance) (pathwatch_spc_mean)", *by):
        exporters.setdefault((team, measure), set()).add(instance)
    for team, measure, instance in samples(
        deployment.prometheus, "count by (team, measure, instance) (pathwatch_service_change_timestamp_seconds)", *by
    ):
        exporters.setdefault((team, f"change of {measure}"), set()).add(instance)
    assert (ALL_TEAMS, "lost_before_contact") in exporters
    assert (ALL_TEAMS, "change of lost_before_contact") in exporters
    shared = {key: instances for key, instances in exporters.items() if len(instances) != 1}
    assert not shared, f"exported by more than one worker: {shared}"


def test_the_change_is_a_dashboard_annotation(deployment: Deployment) -> None:
    dashboard = json.loads((DASHBOARDS / "mdc.json").read_text())
    [annotation] = dashboard["annotations"]["list"]
    answer = wait_for_series(deployment.prometheus, grafana_to_promql(annotation["expr"]), time.monotonic() + 60)
    found = {(s["metric"]["team"], s["metric"]["measure"], s["metric"]["change"]): float(s["value"][1])
             for s in answer["data"]["result"]}  # fmt: skip
    assert found == _markers(deployment, 1000)


def _markers(deployment: Deployment, scale: float = 1) -> dict[tuple[str, str, str], float]:
    """(team, measure, change) -> the effective time of the deployment's changes (seconds x ``scale``)."""
    return {
        ("north", "seen_within_target", "1"): datetime.fromisoformat(deployment.change["time"]).timestamp() * scale,
        (ALL_TEAMS, "lost_before_contact", "1"): datetime.fromisoformat(deployment.provider_wide["time"]).timestamp()
        * scale,
    }


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


def test_the_mdc_dashboard_offers_star_and_its_panels_find_its_series(deployment: Deployment) -> None:
    dashboard = json.loads((DASHBOARDS / "mdc.json").read_text())
    [variable] = [v for v in dashboard["templating"]["list"] if v["name"] == "team"]
    offered = samples(deployment.prometheus, variable["query"]["query"].replace("label_values(", "group by (team) (")
                      .replace(", team)", ")"), "team")  # fmt: skip
    assert (ALL_TEAMS,) in offered
    # Grafana escapes regex metacharacters in a multi-value variable's values: '*' goes as \\*
    deadline = time.monotonic() + 30
    for title, _, target in dashboard_targets(dashboard):
        expr = grafana_to_promql(target["expr"].replace("$team", "\\\\*"))
        teams = {s["metric"].get("team") for s in wait_for_series(deployment.prometheus, expr, deadline)["data"]["result"]}
        assert teams == {ALL_TEAMS}, f"{title} / {target['refId']}: {expr} gave {teams}"


def test_a_worker_started_after_both_stopped_exports_the_same_charts_and_markers(deployment: Deployment) -> None:
    """The last test of the module: it stops the workers. A new worker of the same group holds
    every team and ``*``: it reads the changes and shares topics again from the beginning."""
    for worker in deployment.workers:
        worker.kill(signal.SIGTERM)
    restarted = deployment.stack.worker("worker-c")
    deployment.workers.append(restarted)
    wait_ready(restarted)
    expected = (_markers(deployment), _latest(deployment))
    deadline = time.monotonic() + 90
    while (actual := _exported(restarted)) != expected and time.monotonic() < deadline:
        time.sleep(1)
    assert actual == expected


def _exported(worker: Process) -> tuple[dict[tuple[str, str, str], float], dict[tuple[str, ...], tuple[Any, ...]]]:
    """The change markers and the charts' latest points (value, mean, upper limit, variation
    icon) on ``worker``'s metrics page."""
    markers: dict[tuple[str, str, str], float] = {}
    charts: dict[str, dict[tuple[str, str], Any]] = {"value": {}, "mean": {}, "upper_limit": {}, "variation": {}}
    for family in text_string_to_metric_families(scrape(worker)):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "pathwatch_service_change_timestamp_seconds":
                markers[(labels["team"], labels["measure"], labels["change"])] = sample.value
            elif sample.name == "pathwatch_spc_variation" and sample.value == 1:
                charts["variation"][(labels["team"], labels["measure"])] = labels["pathwatch_spc_variation"]
            elif sample.name.removeprefix("pathwatch_spc_") in ("value", "mean", "upper_limit"):
                charts[sample.name.removeprefix("pathwatch_spc_")][(labels["team"], labels["measure"])] = sample.value
    latest = {
        key: (value, charts["mean"].get(key), charts["upper_limit"].get(key), charts["variation"].get(key))
        for key, value in charts["value"].items()
    }
    return markers, latest

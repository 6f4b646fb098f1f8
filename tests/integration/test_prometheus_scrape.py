"""A real Prometheus scrapes a process exposing the metrics bundle and evaluates our rules.

Starts /usr/bin/prometheus (Debian's package) on a free port with its data in a tmp dir,
scraping every second a child process that builds :class:`pathwatch.metrics.Metrics`
and fills it. Then every PromQL expression of every dashboard panel and every recording
rule must return at least one series; every alerting rule must evaluate, and every
selector in it must return a series (an alert's condition is false on a healthy stream;
promtool unit tests cover when each fires). test_prometheus_workers.py does the same with
two real workers fed a simulated stream. A missing prometheus binary FAILS the test.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pathwatch.metrics import label_guard
from tests.integration.prometheus_fixtures import (
    alerting_rules_missing_series,
    child_env,
    dashboards_without_series,
    get,
    prometheus_binary,
    query,
    recording_rules_without_series,
    rules,
    start_prometheus,
    wait_for_series,
)
from tests.integration.support import Process, free_port

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
m.count_rerouted("pathwatch.events")
m.count_adapter_event("hospital/st-marys", False)
m.count_adapter_event("hospital/st-marys", True)
m.set_delivery_stalled({"alertmanager": 0.0})
# the Making Data Count gauges (a bundle of their own): north's latest judged week, a change
from pathwatch.mdc_metrics import MdcMetrics
mdc = MdcMetrics(registry)
mdc.set_charts([{
    "team": "north", "measure": "seen_within_target", "target": 0.8, "variation": "improvement_high",
    "assurance": "inconsistent",
    "points": [{"week": "2026-03-02", "value": 0.75, "numerator": 30, "denominator": 40, "mean": 0.7,
                "upper": 0.95, "lower": 0.45, "trial": False}],
}])
mdc.set_changes({("north", "seen_within_target"): [datetime(2026, 3, 1, tzinfo=UTC)]})
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


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    prometheus_binary()  # fail before starting anything when it is missing
    tmp = tmp_path_factory.mktemp("prometheus")
    exporter_port = free_port()
    exporter = Process(
        [sys.executable, "-c", EXPORTER, str(exporter_port)], env=child_env(), log=tmp / "exporter.log"
    ).start()
    server = None
    try:
        server = start_prometheus(tmp, [f"127.0.0.1:{exporter_port}"])
        # rate() needs two samples; recording groups run on their own interval (15 s).
        wait_for_series(server.base, "pathwatch:measure_rate:suppressed", time.monotonic() + 45)
        yield server.base
    finally:
        if server is not None:
            server.stop()
        exporter.kill()


def test_every_dashboard_expression_returns_a_series(prometheus: str) -> None:
    empty = dashboards_without_series(prometheus, time.monotonic() + 30)
    assert not empty, "no series for:\n" + "\n".join(empty)


def test_every_recording_rule_returns_a_series(prometheus: str) -> None:
    empty = recording_rules_without_series(prometheus, time.monotonic() + 30)
    assert not empty, "no series for:\n" + "\n".join(empty)


def test_every_alerting_rule_evaluates_on_present_series(prometheus: str) -> None:
    missing = alerting_rules_missing_series(prometheus, time.monotonic() + 30)
    assert not missing, "alerting rules read metrics with no series:\n" + "\n".join(missing)


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

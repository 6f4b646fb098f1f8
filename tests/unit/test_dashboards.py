"""Grafana provisioning: fixed uids, one datasource uid, and only catalogued metrics in PromQL."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pathwatch.metric_names import metric_names
from tests.promql import dashboard_targets, grafana_to_promql, metric_names_in, rule_exprs

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy/grafana/dashboards"
PROVISIONING = ROOT / "deploy/grafana/provisioning"
RULES = ROOT / "deploy/prometheus/rules"
DATASOURCE_UID = "pathwatch-prometheus"
EXPECTED_UIDS = {
    "pathwatch-access": "Access",
    "pathwatch-crisis": "Crisis",
    "pathwatch-after-discharge": "After discharge",
    "pathwatch-pipeline": "Pipeline health",
    "pathwatch-mdc": "Making Data Count",
}
# Series Prometheus itself adds for every scrape target.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def recording_rule_names() -> set[str]:
    names: set[str] = set()
    for path in RULES.glob("*.yml"):
        names |= {name for kind, name, _ in rule_exprs(yaml.safe_load(path.read_text())) if kind == "record"}
    return names


def catalogue() -> set[str]:
    return set(metric_names()) | recording_rule_names() | PROMETHEUS_SERIES


def test_datasource_has_the_fixed_uid() -> None:
    docs = [yaml.safe_load(p.read_text()) for p in (PROVISIONING / "datasources").glob("*.yml")]
    sources = [ds for doc in docs for ds in doc["datasources"]]
    assert [ds["uid"] for ds in sources] == [DATASOURCE_UID]
    assert sources[0]["type"] == "prometheus"


def test_dashboard_provider_points_at_a_path() -> None:
    docs = [yaml.safe_load(p.read_text()) for p in (PROVISIONING / "dashboards").glob("*.yml")]
    providers = [p for doc in docs for p in doc["providers"]]
    assert providers
    assert all(p["type"] == "file" and p["options"]["path"] for p in providers)


def test_every_expected_dashboard_exists_once_with_its_uid() -> None:
    found = {d["uid"]: d["title"] for d in load_dashboards().values()}
    assert set(found) == set(EXPECTED_UIDS)
    for uid, words in EXPECTED_UIDS.items():
        assert words in found[uid]


@pytest.mark.parametrize("name", sorted(load_dashboards()))
def test_every_panel_and_target_uses_the_datasource_uid(name: str) -> None:
    dashboard = load_dashboards()[name]
    targets = list(dashboard_targets(dashboard))
    assert targets, f"{name} has no queries"
    for title, panel, target in targets:
        assert panel["datasource"]["uid"] == DATASOURCE_UID, title
        assert target["datasource"]["uid"] == DATASOURCE_UID, title
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == DATASOURCE_UID, variable["name"]


@pytest.mark.parametrize("name", sorted(load_dashboards()))
def test_every_metric_in_every_panel_is_catalogued(name: str) -> None:
    known = catalogue()
    for title, _, target in dashboard_targets(load_dashboards()[name]):
        used = metric_names_in(grafana_to_promql(target["expr"]))
        assert used, f"{name} / {title}: no metric found in {target['expr']!r}"
        assert used <= known, f"{name} / {title}: not in the catalogue: {sorted(used - known)}"


@pytest.mark.parametrize("name", sorted(load_dashboards()))
def test_team_template_variable(name: str) -> None:
    variables = {v["name"]: v for v in load_dashboards()[name]["templating"]["list"]}
    team = variables["team"]
    query = team["query"]["query"] if isinstance(team["query"], dict) else team["query"]
    match = re.fullmatch(r"label_values\((\w[\w:]*), team\)", query)
    assert match, query
    assert match.group(1) in catalogue()


MEASURE_SOURCES = {
    "pathwatch_measure_numerator",
    "pathwatch_measure_denominator",
    "pathwatch_measure_rate_ratio",
}
RAW_CELL_RULES = {
    "pathwatch:measure_numerator:sum",
    "pathwatch:measure_denominator:sum",
    "pathwatch:measure_rate:ratio",
}


@pytest.mark.parametrize("name", sorted(load_dashboards()))
def test_dashboards_show_only_suppressed_cells(name: str) -> None:
    """Small cells: measure panels read the :suppressed series, never raw counts or rates."""
    for title, _, target in dashboard_targets(load_dashboards()[name]):
        used = metric_names_in(grafana_to_promql(target["expr"]))
        assert not used & (MEASURE_SOURCES | RAW_CELL_RULES), f"{name} / {title} reads unsuppressed cells"
        assert "pathwatch_referral_wait_days" not in used, f"{name} / {title} reads unsuppressed waits"
        assert "pathwatch_care_gap_alerts_open" not in used, f"{name} / {title} reads unsuppressed counts"


def test_panel_ids_unique_and_team_filter_on_team_metrics() -> None:
    for name, dashboard in load_dashboards().items():
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
        for title, _, target in dashboard_targets(dashboard):
            if "team" in target.get("legendFormat", ""):
                assert '$team"' in target["expr"], f"{name} / {title} ignores the team variable"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('sum by (team, measure) (pathwatch_measure_numerator{team=~".*"})', {"pathwatch_measure_numerator"}),
        ("histogram_quantile(0.5, sum by (le) (rate(a_bucket[1m])))", {"a_bucket"}),
        ('x{a="sum(b)"} / on (team) group_left () y > bool 5 and z offset 5m', {"x", "y", "z"}),
        ("clamp_min(sum(a) + (sum(b) or vector(0)), 1e-9)", {"a", "b"}),
        ("a:b:c and on () max(d) > 1 / 60", {"a:b:c", "d"}),
    ],
)
def test_promql_reader_finds_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names_in(expr) == names

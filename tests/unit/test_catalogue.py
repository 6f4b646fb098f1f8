"""The one catalogue (schemas/catalogue.py): every user of measures and alert names agrees with it.

Dashboards, Prometheus rules and their tests may name only catalogued measures and alerts, and
the specification and runbook list every one of them, so a renamed or added measure fails here
instead of showing an empty panel.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest

from schemas import catalogue
from schemas.model import RateMeasure

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_FILES = sorted(
    [
        *(ROOT / "deploy/grafana/dashboards").glob("*.json"),
        *(ROOT / "deploy/prometheus/rules").glob("*.yml"),
        *(ROOT / "deploy/prometheus/tests").glob("*.yml"),
        *(ROOT / "deploy/alertmanager").glob("*.yml"),
    ]
)
# measure="x", measure=~"a|b" (PromQL matchers, escaped in JSON or not), and YAML test labels
_MATCHER = r'{label}\s*(?:=~|!~|!=|=|:)\s*\\?["\']?([A-Za-z0-9_|.*]+)'
_ALERT_RULE = re.compile(r"^\s*-?\s*alert:\s*([A-Za-z0-9_]+)", re.MULTILINE)


def _matched(label: str, text: str) -> set[str]:
    names: set[str] = set()
    for value in re.findall(_MATCHER.format(label=label), text):
        names.update(part for part in value.split("|") if part and not set(part) & set(".*"))
    return names


def measures_named(text: str) -> set[str]:
    """Measure names a deploy file mentions in a ``measure`` matcher or label."""
    return _matched(r"\bmeasure", text)


def alerts_named(text: str) -> set[str]:
    """Alert names a deploy file defines (``alert:``) or matches (``alertname``)."""
    return _matched(r"\balertname", text) | set(_ALERT_RULE.findall(text))


def test_the_event_contract_names_the_catalogues_rate_measures() -> None:
    assert get_args(RateMeasure) == catalogue.RATE_MEASURES


def test_names_are_unique_and_every_measure_is_complete() -> None:
    assert len(set(catalogue.MEASURE_NAMES)) == len(catalogue.MEASURE_CATALOGUE)
    assert len(catalogue.ALERT_NAMES) == len(catalogue.CARE_GAP_ALERTS) + len(catalogue.SYSTEM_ALERTS) + len(
        catalogue.OPERATIONAL_ALERTS
    )
    for measure in catalogue.MEASURE_CATALOGUE:
        assert measure.label, measure.name
        assert measure.definition.endswith("."), measure.name
        assert measure.direction in ("higher", "lower"), measure.name


def test_the_core_rules_metrics_summary_and_board_use_the_catalogue() -> None:
    from alerts import rules
    from board import text
    from pathwatch import config, metrics
    from pathwatch.cli import summary
    from streams import core

    assert core.RATE_MEASURES == catalogue.RATE_MEASURES
    assert core.MEASURES == catalogue.MEASURE_NAMES
    assert tuple(rules.RATE_MEASURES) == catalogue.RATE_MEASURES
    assert {m: d.value for m, d in rules.RATE_MEASURES.items()} == {
        m: catalogue.DIRECTIONS[m] for m in catalogue.RATE_MEASURES
    }
    assert set(rules.SEVERITY) == set(catalogue.SYSTEM_ALERTS)
    assert metrics.MEASURES == catalogue.RATE_MEASURES
    assert summary.RATE_MEASURES == catalogue.RATE_MEASURES
    assert set(summary.SHORT_LABELS) == set(catalogue.MEASURE_NAMES)
    assert dict(catalogue.DEFAULT_RATE_TARGETS) == config.DEFAULT_RATE_TARGETS
    assert set(text.MEASURE_ORDER) == set(catalogue.RATE_MEASURES)
    assert set(text.DEFINITIONS) == set(catalogue.MEASURE_NAMES)
    assert {m: catalogue.DIRECTIONS[m] for m in catalogue.RATE_MEASURES} == text.DIRECTION


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: p.name)
def test_deploy_files_name_only_catalogued_measures_and_alerts(path: Path) -> None:
    text = path.read_text()
    assert measures_named(text) <= set(catalogue.MEASURE_NAMES), path
    assert alerts_named(text) <= catalogue.ALERT_NAMES, path


def test_the_checks_see_what_they_check() -> None:
    # The extractors must find names in each kind of file, else the test above passes vacuously.
    seen_measures = set().union(*(measures_named(p.read_text()) for p in DEPLOY_FILES))
    seen_alerts = set().union(*(alerts_named(p.read_text()) for p in DEPLOY_FILES))
    assert seen_measures == set(catalogue.RATE_MEASURES)
    assert set(catalogue.CARE_GAP_ALERTS) <= seen_alerts
    assert set(catalogue.OPERATIONAL_ALERTS) <= seen_alerts
    assert measures_named('x{measure=~\\"followup_7d|made_up\\"}') == {"followup_7d", "made_up"}
    assert alerts_named("      - alert: Unknown\n") == {"Unknown"}


@pytest.mark.parametrize("name", [*catalogue.MEASURE_NAMES, *catalogue.CARE_GAP_ALERTS, *catalogue.SYSTEM_ALERTS])
def test_the_specification_lists_every_measure_and_alert(name: str) -> None:
    assert f"| `{name}` |" in (ROOT / "docs/specification.md").read_text()


@pytest.mark.parametrize("name", sorted(catalogue.ALERT_NAMES))
def test_the_runbook_says_what_to_do_for_every_alert(name: str) -> None:
    assert name in (ROOT / "docs/runbook.md").read_text()

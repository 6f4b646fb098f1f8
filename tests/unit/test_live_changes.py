"""The live parts of issue 17 without a broker: the changes topic as a worker and the live
report read it (:class:`streams.live_changes.LiveChanges`), the charts a worker exports for
the teams it holds, and the Making Data Count gauges (:class:`pathwatch.mdc_metrics.MdcMetrics`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry

from alerts.rules import SystemAlertRules
from pathwatch import parts, simulate
from pathwatch.config import Settings
from pathwatch.mdc_metrics import MAX_CHANGES, MdcMetrics
from pathwatch.metric_names import metric_names
from pathwatch.parts import core_config
from schemas.deadletter import DeadLetter, Origin
from schemas.decode import Decoder
from schemas.model import ALL_TEAMS, Event
from streams.changes import ChangeRegister, change_rebase, local_date_in
from streams.engine import Engine
from streams.live_changes import LiveChanges, change_times, team_charts
from tests.promql import dashboard_targets, grafana_to_promql, metric_names_in

KEY = b"test-key"
TOPIC = "pathwatch.changes"


def change(change_id: str, event_id: str, day: str = "2026-03-02", team: str = "north", **data: Any) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": event_id, "source": "ops", "type": "service.change",
         "time": f"{day}T00:00:00+00:00",
         "data": {"change_id": change_id, "team": team, "description": "warm hand-offs", **data}}
    ).encode()  # fmt: skip


def cancel(target: str, event_id: str) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": event_id, "source": "ops", "type": "cancel",
         "time": "2026-03-03T00:00:00+00:00", "subject": "change", "data": {"cancels": target}}
    ).encode()  # fmt: skip


def decoder() -> Decoder:
    return Decoder(KEY, 65536)


def live(*records: tuple[bytes | None, bytes | None]) -> LiveChanges:
    found = LiveChanges(decoder())
    for offset, (key, value) in enumerate(records):
        assert found.apply(TOPIC, 0, offset, key, value) is None
    return found


def replayed(*values: bytes) -> ChangeRegister:
    register = ChangeRegister()
    for raw in values:
        event = decoder().decode(raw, Origin(file="x"))
        assert isinstance(event, Event)
        if register.handles(event):
            register.feed(event)
    return register


# (what, records of the topic as (key, value), the replay input in the same order)
LOGS = [
    ("one change", [(b"a", change("a", "e1"))], [change("a", "e1")]),
    ("a correction replaces it", [(b"a", change("a", "e1")), (b"a", change("a", "e2", "2026-04-06"))],
     [change("a", "e1"), change("a", "e2", "2026-04-06")]),
    ("a cancel withdraws it", [(b"a", change("a", "e1")), (b"b", change("b", "e2")), (b"a", cancel("e1", "c1"))],
     [change("a", "e1"), change("b", "e2"), cancel("e1", "c1")]),
    ("a re-issue after the cancel stands", [(b"a", change("a", "e1")), (b"a", cancel("e1", "c1")),
                                            (b"a", change("a", "e3"))],
     [change("a", "e1"), cancel("e1", "c1"), change("a", "e3")]),
    ("no key: kept by offset", [(None, change("a", "e1")), (None, change("b", "e2"))],
     [change("a", "e1"), change("b", "e2")]),
]  # fmt: skip


@pytest.mark.parametrize(("what", "records", "replay"), LOGS, ids=[w for w, _, _ in LOGS])
def test_the_topic_gives_the_changes_the_replay_gives(
    what: str, records: list[tuple[bytes | None, bytes]], replay: list[bytes]
) -> None:
    assert live(*records).changes() == replayed(*replay).changes(), what


@pytest.mark.parametrize(("what", "records", "replay"), LOGS, ids=[w for w, _, _ in LOGS])
def test_compaction_changes_nothing(what: str, records: list[tuple[bytes | None, bytes]], replay: list[bytes]) -> None:
    """The compacted topic keeps the latest record per key: read alone, it gives the same changes."""
    latest: dict[bytes, int] = {key: i for i, (key, _) in enumerate(records) if key is not None}
    compacted = [r for i, r in enumerate(records) if r[0] is None or latest[r[0]] == i]
    assert live(*compacted).changes() == live(*records).changes(), what


def test_a_tombstone_withdraws_its_key() -> None:
    found = live((b"a", change("a", "e1")), (b"b", change("b", "e2")))
    before = found.version
    assert found.apply(TOPIC, 0, 2, b"a", None) is None
    assert [c.change_id for c in found.changes()] == ["b"]
    assert found.version > before


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b"not json", "JSON"),
        (change("a", "e1", description="rang MRN-004242"), "identifier"),
        (json.dumps({"specversion": "1.0", "id": "r1", "source": "ehr", "type": "referral.received",
                     "time": "2026-03-03T00:00:00+00:00", "subject": "MRN-1",
                     "data": {"referral_id": "R1", "team": "north", "urgency": "urgent", "referral_source": "gp"}}).encode(),
         "service.change and cancel"),
    ],
)  # fmt: skip
def test_a_bad_record_is_a_dead_letter_with_the_reason_and_changes_nothing(value: bytes, words: str) -> None:
    found = live((b"b", change("b", "e2")))
    dead = found.apply(TOPIC, 0, 5, b"a", value)
    assert isinstance(dead, DeadLetter)
    assert words.lower() in dead.reason.lower(), dead.reason
    assert (dead.origin.topic, dead.origin.offset) == (TOPIC, 5)
    assert [c.change_id for c in found.changes()] == ["b"]


# -- the charts and gauges of a worker ------------------------------------------------------------


@pytest.fixture(scope="module")
def replay() -> tuple[Engine, SystemAlertRules, Any]:
    """A small simulated half-year of two teams, north recording a change at week 14."""
    settings = Settings()
    options = simulate.SimulationOptions(
        clients=1500, teams=("north", "south"), days=182, seed=5, duplicate_fraction=0.0, cancel_fraction=0.0,
        changes=(simulate.parse_change("north:seen_within_target:0.95@14"),),
    )  # fmt: skip
    dec = Decoder(KEY, settings.max_message_bytes)
    engine = Engine(core_config(settings))
    for number, line in enumerate(simulate.generate(options), start=1):
        result = dec.decode_line(line, "half-year", number)
        assert isinstance(result, Event), result
        engine.feed(result)
    engine.finish()
    return engine, SystemAlertRules(parts.rules_config(settings)), local_date_in(ZoneInfo(settings.timezone))


def test_a_worker_charts_its_teams_as_the_report_does(replay: tuple[Engine, SystemAlertRules, Any]) -> None:
    engine, rules, local_date = replay
    assert engine.watermark is not None
    changes = engine.changes.changes()
    assert len(changes) == 1
    report = rules.charts(engine.windows, engine.watermark, ["north", "south"], change_rebase(changes, local_date))
    live_charts = team_charts(rules, engine.windows, ["north", "south"], engine.watermark, changes, local_date)
    assert live_charts == [e for e in report if e["team"] != ALL_TEAMS]
    [north] = [e for e in live_charts if (e["team"], e["measure"]) == ("north", "seen_within_target")]
    assert {p["group"] for p in north["points"]} == {0, 1}, "the change starts a group"
    without = team_charts(rules, engine.windows, ["north"], engine.watermark, [], local_date)
    assert [e for e in without if e["measure"] == "seen_within_target"] != [north]


def test_the_gauges_carry_the_latest_point_and_icons(replay: tuple[Engine, SystemAlertRules, Any]) -> None:
    engine, rules, local_date = replay
    assert engine.watermark is not None
    changes = engine.changes.changes()
    entries = team_charts(rules, engine.windows, ["north", "south"], engine.watermark, changes, local_date)
    registry = CollectorRegistry()
    gauges = MdcMetrics(registry)
    gauges.set_charts(entries)
    charted = [e for e in entries if e["points"]]
    assert charted
    for entry in charted:
        labels = {"team": entry["team"], "measure": entry["measure"]}
        last = entry["points"][-1]
        assert registry.get_sample_value("pathwatch_spc_value", labels) == last["value"]
        assert registry.get_sample_value("pathwatch_spc_numerator", labels) == last["numerator"]
        assert registry.get_sample_value("pathwatch_spc_denominator", labels) == last["denominator"]
        assert registry.get_sample_value("pathwatch_spc_mean", labels) == last["mean"]
        assert registry.get_sample_value("pathwatch_spc_upper_limit", labels) == last["upper"]
        assert registry.get_sample_value("pathwatch_spc_lower_limit", labels) == last["lower"]
        assert registry.get_sample_value("pathwatch_spc_target", labels) == entry["target"]
        assert registry.get_sample_value("pathwatch_spc_trial", labels) == float(last["trial"])
        icon = {**labels, "pathwatch_spc_variation": entry["variation"]}
        assert registry.get_sample_value("pathwatch_spc_variation", icon) == 1.0
        if entry["assurance"] is not None:
            icon = {**labels, "pathwatch_spc_assurance": entry["assurance"]}
            assert registry.get_sample_value("pathwatch_spc_assurance", icon) == 1.0
    # replace semantics: a team no longer held stops being exported
    gauges.set_charts([e for e in entries if e["team"] == "south"])
    assert registry.get_sample_value("pathwatch_spc_value", {"team": "north", "measure": "followup_7d"}) is None


def test_the_change_series_are_bounded_per_team_and_measure() -> None:
    found = live(*[(f"c{i}".encode(), change(f"c{i}", f"e{i}", f"2026-03-{i + 1:02d}", measures=["followup_7d"]))
                   for i in range(MAX_CHANGES + 2)])  # fmt: skip
    found.apply(TOPIC, 0, 99, b"s", change("s", "es", team="south"))
    registry = CollectorRegistry()
    gauges = MdcMetrics(registry)
    gauges.set_changes(change_times(found.changes(), ["north"]))
    exported = {
        s.labels["change"]: s.value
        for m in registry.collect() if m.name == "pathwatch_service_change_timestamp_seconds"
        for s in m.samples
    }  # fmt: skip
    assert len(exported) == MAX_CHANGES
    assert exported["1"] == datetime(2026, 3, MAX_CHANGES + 2, tzinfo=UTC).timestamp(), "1 is the latest"
    assert registry.get_sample_value(
        "pathwatch_service_change_timestamp_seconds", {"team": "south", "measure": "followup_7d", "change": "1"}
    ) is None, "a team this worker does not hold"


def test_a_label_the_guard_refuses_writes_nothing() -> None:
    registry = CollectorRegistry()
    with pytest.raises(ValueError, match="label value refused"):
        MdcMetrics(registry).set_changes({("MRN-004242", "followup_7d"): [datetime(2026, 3, 2, tzinfo=UTC)]})
    assert registry.get_sample_value(
        "pathwatch_service_change_timestamp_seconds", {"team": "MRN-004242", "measure": "followup_7d", "change": "1"}
    ) is None


# -- the provisioned dashboard ------------------------------------------------------------------------

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy/grafana/dashboards/mdc.json"
RAW_WEEKLY_CELLS = {"pathwatch_spc_value", "pathwatch_spc_numerator", "pathwatch_spc_denominator"}


def test_the_dashboard_reads_the_weekly_value_only_suppressed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used: set[str] = set()
    for title, _, target in dashboard_targets(dashboard):
        names = metric_names_in(grafana_to_promql(target["expr"]))
        assert not names & RAW_WEEKLY_CELLS, f"{title} reads an unsuppressed weekly cell"
        used |= names
    assert "pathwatch:spc_value:suppressed" in used
    assert {"pathwatch_spc_mean", "pathwatch_spc_upper_limit", "pathwatch_spc_lower_limit", "pathwatch_spc_target",
            "pathwatch_spc_variation", "pathwatch_spc_assurance"} <= used  # fmt: skip


def test_service_changes_are_an_annotation_from_a_catalogued_series() -> None:
    [annotation] = json.loads(DASHBOARD.read_text())["annotations"]["list"]
    assert annotation["datasource"]["uid"] == "pathwatch-prometheus"
    assert annotation["useValueForTime"] is True, "the series' value is the change's time (ms)"
    assert '$team"' in annotation["expr"]
    assert metric_names_in(grafana_to_promql(annotation["expr"])) == {"pathwatch_service_change_timestamp_seconds"}
    assert "pathwatch_service_change_timestamp_seconds" in metric_names()

"""Service changes (issue 17 item 1, replay): decoding, the register of changes that stand,
``pathwatch change add``, the simulator's recorded changes, and a simulated year judged.

The simulated years are small (one team, 1,300 clients: about 13 referrals a week, enough for
the default minimum weekly denominator of 10) and run in a couple of seconds each; the sweep
over many seeds is ``benchmarks/change_evidence.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.rules import SystemAlertRules
from alerts.spc import Direction
from board.html import render_html
from board.suppress import SuppressionPolicy
from pathwatch import parts, simulate
from pathwatch.cli import main
from pathwatch.config import Settings
from pathwatch.parts import core_config
from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.decode import Decoder
from schemas.model import Event, ServiceChange
from streams.changes import ChangeRegister, change_event, change_rebase, judge_changes, local_date_in
from streams.engine import Engine

KEY = b"test-key"
ORIGIN = Origin(file="changes.jsonl", line=1)
BASE: dict[str, Any] = {
    "specversion": "1.0",
    "id": "chg-1",
    "source": "ops/north",
    "type": "service.change",
    "time": "2026-03-02T00:00:00+00:00",
    "data": {"change_id": "north-warm-handoffs", "team": "north", "description": "warm hand-offs at discharge"},
}


def event(data: dict[str, Any] | None = None, **attrs: Any) -> bytes:
    obj = {**BASE, **attrs, "data": {**BASE["data"], **(data or {})}}
    return json.dumps(obj).encode()


# (what, raw, expected data)
VALID = [
    ("measures absent: all", event(), ServiceChange("north-warm-handoffs", "north", "warm hand-offs at discharge")),
    ("measures null", event({"measures": None}), ServiceChange("north-warm-handoffs", "north", "warm hand-offs at discharge")),
    ("team * and a direction", event({"team": "*", "measures": ["readmission_30d"], "expected_direction": "lower"}),
     ServiceChange("north-warm-handoffs", "*", "warm hand-offs at discharge", ("readmission_30d",), "lower")),
    ("subject null tolerated", event(subject=None), ServiceChange("north-warm-handoffs", "north", "warm hand-offs at discharge")),
    ("words with few digits", event({"description": "a 7-day call back, 2 nurses, 24h"}),
     ServiceChange("north-warm-handoffs", "north", "a 7-day call back, 2 nurses, 24h")),
]


@pytest.mark.parametrize(("what", "raw", "data"), VALID, ids=[row[0] for row in VALID])
def test_valid_service_changes_decode_without_a_client(what: str, raw: bytes, data: ServiceChange) -> None:
    result = Decoder(KEY, 65536).decode(raw, ORIGIN)
    assert isinstance(result, Event), result
    assert result.type == "service.change"
    assert result.client == ""
    assert result.data == data


def test_with_configured_teams_star_passes_and_an_unknown_team_is_refused() -> None:
    decoder = Decoder(KEY, 65536, teams=["north", "south"])
    assert isinstance(decoder.decode(event({"team": "*"}), ORIGIN), Event)
    refused = decoder.decode(event({"team": "west"}), ORIGIN)
    assert isinstance(refused, DeadLetter)
    assert (refused.kind, refused.path) == (DeadLetterKind.SCHEMA, "data.team")


def test_a_refused_description_never_repeats_itself() -> None:
    refused = Decoder(KEY, 65536).decode(event({"description": "rang NHS-943-476-5919 back"}), ORIGIN)
    assert isinstance(refused, DeadLetter)
    assert "943" not in refused.reason


# -- the register of changes ------------------------------------------------------------------


def decoded(raw: bytes) -> Event:
    result = Decoder(KEY, 65536).decode(raw, ORIGIN)
    assert isinstance(result, Event), result
    return result


def cancel(target: str, source: str = "ops/north", event_id: str = "cancel-1") -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": event_id, "source": source, "type": "cancel",
         "time": "2026-03-03T00:00:00+00:00", "subject": "change", "data": {"cancels": target}}
    ).encode()


def engine_over(*lines: bytes) -> Engine:
    engine = Engine(core_config(Settings()))
    for raw in lines:
        engine.feed(decoded(raw))
    return engine


def test_a_change_is_counted_and_kept_aside_from_the_clients() -> None:
    engine = engine_over(event(), event())
    assert engine.counters.as_dict() == {"accepted": 1, "duplicates": 1, "dead_letters": 0, "corrections": 0, "dead_letters_by_kind": {}}
    assert engine.clients == {}
    assert engine.watermark is None  # a change (perhaps planned ahead) moves no watermark
    [change] = engine.changes.changes()
    assert (change.change_id, change.team, change.measures) == ("north-warm-handoffs", "north", None)
    assert change.time == datetime(2026, 3, 2, tzinfo=UTC)


def test_a_cancel_naming_the_change_withdraws_it_and_a_reissue_stands() -> None:
    engine = engine_over(event(), cancel("chg-1"))
    assert engine.changes.changes() == []
    assert engine.counters.accepted == 2
    assert engine.counters.dead_letters == 0
    engine.feed(decoded(event()))
    assert [c.change_id for c in engine.changes.changes()] == ["north-warm-handoffs"]


def test_a_cancel_from_another_source_goes_to_the_core() -> None:
    register = ChangeRegister()
    register.feed(decoded(event()))
    assert not register.handles(decoded(cancel("chg-1", source="ehr/community")))
    assert register.handles(decoded(cancel("chg-1")))


def test_the_last_event_of_a_change_id_replaces_the_earlier() -> None:
    engine = engine_over(event(), event({"description": "warm hand-offs, revised"}, id="chg-2"))
    [change] = engine.changes.changes()
    assert change.description == "warm hand-offs, revised"


def test_a_change_rebases_its_own_teams_charts_for_its_measures() -> None:
    register = ChangeRegister()
    register.feed(decoded(event({"measures": ["followup_7d"]})))
    register.feed(decoded(event({"change_id": "all-triage", "team": "*"}, id="chg-3", time="2026-04-01T23:30:00-04:00")))
    rebase = change_rebase(register.changes(), local_date_in(ZoneInfo("America/New_York")))
    assert rebase[("north", "followup_7d")] == [date(2026, 3, 1)]  # midnight UTC is the evening before
    assert ("north", "followup_30d") not in rebase
    assert rebase[("*", "repeat_crisis_30d")] == [date(2026, 4, 1)]
    assert len([k for k in rebase if k[0] == "*"]) == 8


# -- pathwatch change add -----------------------------------------------------------------------


def test_change_add_appends_a_valid_line(tmp_path: Path) -> None:
    out = tmp_path / "changes.jsonl"
    argv = ["change", "add", "--team", "north", "--measures", "followup_7d", "--date", "2026-03-01",
            "--description", "warm hand-offs at discharge", "--expected-direction", "higher", "--out", str(out)]
    assert main(argv) == 0
    assert main([*argv[:-2], "--id", "north-second", "--out", str(out)]) == 0
    lines = out.read_bytes().splitlines()
    assert len(lines) == 2
    first = decoded(lines[0])
    assert isinstance(first.data, ServiceChange)
    assert first.data == ServiceChange(
        "north-20260301-warm-hand-offs-at", "north", "warm hand-offs at discharge", ("followup_7d",), "higher"
    )
    assert first.time == datetime(2026, 3, 1, tzinfo=UTC)
    assert json.loads(lines[1])["data"]["change_id"] == "north-second"


def test_change_add_refuses_client_data_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "changes.jsonl"
    argv = ["change", "add", "--team", "north", "--date", "2026-03-01",
            "--description", "called MRN-004242 back", "--out", str(out)]
    assert main(argv) == 2
    assert not out.exists()
    assert "looks like an identifier" in capsys.readouterr().err


def year_with_changes(tmp_path: Path, second: str) -> tuple[Path, Path, Path]:
    """(events, changes, report) paths: a simulated year of team north, and two changes to
    its seen_within_target appended to the changes file: ``kept``, then ``second``."""
    events, changes, report = tmp_path / "year.jsonl", tmp_path / "changes.jsonl", tmp_path / "report.json"
    options = simulate.SimulationOptions(clients=150, teams=("north",), days=120, seed=4)
    events.write_bytes(b"".join(line + b"\n" for line in simulate.generate(options)))
    add = ["change", "add", "--team", "north", "--measures", "seen_within_target", "--description", "same-day triage"]
    assert main([*add, "--date", "2025-03-03", "--id", "kept", "--out", str(changes)]) == 0
    assert main([*add, "--date", "2025-04-07", "--id", second, "--out", str(changes)]) == 0
    return events, changes, report


def test_change_cancel_withdraws_the_change_from_the_file_it_was_appended_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, changes, report = year_with_changes(tmp_path, "mistaken")
    assert main(["change", "cancel", "mistaken", "--reason", "recorded twice", "--out", str(changes)]) == 0
    cancel_line = json.loads(changes.read_bytes().splitlines()[-1])
    mistaken = json.loads(changes.read_bytes().splitlines()[1])
    assert cancel_line["type"] == "cancel"
    assert (cancel_line["source"], cancel_line["data"]["cancels"]) == (mistaken["source"], mistaken["id"])
    assert main(["replay", str(events), str(changes), "--report", str(report)]) == 0
    written = json.loads(report.read_text())
    assert [entry["change_id"] for entry in written["changes"]] == ["kept"]
    assert written["events"]["dead_letters"] == 0
    capsys.readouterr()
    assert main(["change", "cancel", "mistaken", "--out", str(changes)]) == 2, "it no longer stands"
    assert "no change 'mistaken' stands" in capsys.readouterr().err
    assert main(["change", "cancel", "kept", "--out", str(tmp_path / "missing.jsonl")]) == 2


def test_change_event_in_local_time() -> None:
    obj = change_event("*", None, date(2026, 3, 1), "one triage line", ZoneInfo("America/New_York"))
    assert obj["time"] == "2026-03-01T00:00:00-05:00"
    assert obj["data"] == {"change_id": "all-20260301-one-triage-line", "team": "*", "description": "one triage line"}


# -- the simulator --------------------------------------------------------------------------------


def test_parse_change() -> None:
    assert simulate.parse_change("north:followup_7d:0.9@30") == simulate.RecordedChange("north", "followup_7d", 0.9, 30)
    assert simulate.parse_change("north:repeat_crisis:-@3") == simulate.RecordedChange("north", "repeat_crisis_30d", None, 3)
    with pytest.raises(ValueError, match="week"):
        simulate.parse_change("north:followup_7d:-@0")


def test_the_simulator_records_the_change_at_the_start_of_its_week() -> None:
    options = simulate.SimulationOptions(
        clients=20, teams=("north",), days=70, changes=(simulate.parse_change("north:seen_within_target:-@3"),)
    )
    lines = [json.loads(line) for line in simulate.generate(options)]
    [change] = [line for line in lines if line["type"] == "service.change"]
    assert change["time"] == "2025-01-20T00:00:00+00:00"  # start 2025-01-06 (a Monday), week 3
    assert change["data"]["measures"] == ["seen_within_target"]
    assert "subject" not in change
    assert isinstance(decoded(json.dumps(change).encode()).data, ServiceChange)


# -- a simulated year, judged -------------------------------------------------------------------------

CHANGE_WEEK = 27
MEASURE = "seen_within_target"


def judged_year(seed: int, rate: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the chart of north's MEASURE, the change's evidence) for one simulated year in which
    north records a change to MEASURE at CHANGE_WEEK (``rate`` ``-``: one that does nothing)."""
    settings = Settings()
    options = simulate.SimulationOptions(
        clients=1300, teams=("north",), seed=seed, duplicate_fraction=0.0, cancel_fraction=0.0,
        changes=(simulate.parse_change(f"north:{MEASURE}:{rate}@{CHANGE_WEEK}"),),
    )
    decoder = Decoder(KEY, settings.max_message_bytes)
    engine = Engine(core_config(settings))
    for number, line in enumerate(simulate.generate(options), start=1):
        result = decoder.decode_line(line, "year", number)
        assert isinstance(result, Event), result
        engine.feed(result)
    engine.finish()
    assert engine.watermark is not None
    rules = SystemAlertRules(parts.rules_config(settings))
    local_date = local_date_in(ZoneInfo(settings.timezone))
    changes = engine.changes.changes()
    charts = rules.charts(engine.windows, engine.watermark, ["north"], change_rebase(changes, local_date))
    [entry] = judge_changes(rules.config, engine.windows, engine.watermark, changes, local_date)
    [chart] = [c for c in charts if (c["team"], c["measure"]) == ("north", MEASURE)]
    return chart, entry


@pytest.fixture(scope="module")
def improved() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [judged_year(seed, "0.97") for seed in (1, 2)]


@pytest.fixture(scope="module")
def no_effect() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [judged_year(seed, "-") for seed in (1, 2)]


def test_a_lasting_improvement_starts_a_group_at_its_week_and_is_sustained(
    improved: list[tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    change_monday = (date(2025, 1, 6) + (CHANGE_WEEK - 1) * (date(2025, 1, 13) - date(2025, 1, 6))).isoformat()
    for chart, entry in improved:
        first_of_group_1 = next(p["week"] for p in chart["points"] if p["group"] == 1)
        assert first_of_group_1 == change_monday
        assert {p["group"] for p in chart["points"]} == {0, 1}
        evidence = entry["evidence"][MEASURE]
        assert set(entry["evidence"]) == {MEASURE}
        assert evidence["grade"] == "sustained"
        assert evidence["first_week"] == change_monday
        low, high = evidence["interval"]
        assert 0 < low <= evidence["difference"] <= high


def test_a_change_that_does_nothing_grades_no_signal(no_effect: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    for chart, entry in no_effect:
        assert any(p["group"] == 1 for p in chart["points"])
        evidence = entry["evidence"][MEASURE]
        assert evidence["grade"] == "no_signal"
        assert evidence["direction"] == Direction.HIGHER_IS_BETTER.value
        low, high = evidence["interval"]
        assert low < 0 < high


def test_the_board_card_renders_for_the_recorded_change(improved: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    chart, entry = improved[0]
    report = {
        "watermark": "2026-01-05T00:00:00+00:00", "measures": [], "waits": [], "alerts": [],
        "events": {"accepted": 0, "duplicates": 0, "dead_letters": 0, "corrections": 0},
        "spc": [chart], "changes": [entry],
    }
    page = render_html(report, policy=SuppressionPolicy.named("small_cell", 5))
    assert f'data-change="{entry["change_id"]}"' in page
    card = page[page.index(f'data-change="{entry["change_id"]}"'):]
    assert "simulated change to seen_within_target from week 27" in card
    assert 'data-chart="change"' in card
    assert "Sustained" in card
    assert 'id="no-changes"' not in page


def test_replay_of_events_and_a_file_of_changes_reports_them(tmp_path: Path) -> None:
    events, changes, report = year_with_changes(tmp_path, "withdrawn")
    withdrawn = json.loads(changes.read_bytes().splitlines()[1])
    changes.write_bytes(changes.read_bytes() + cancel(withdrawn["id"], source=withdrawn["source"]) + b"\n")
    assert main(["replay", str(events), str(changes), "--report", str(report)]) == 0
    written = json.loads(report.read_text())
    [entry] = written["changes"]
    assert (entry["change_id"], entry["team"], entry["measures"]) == ("kept", "north", ["seen_within_target"])
    assert set(entry["evidence"]) == {"seen_within_target"}
    assert entry["evidence"]["seen_within_target"]["first_week"] == "2025-03-03"
    assert written["events"]["dead_letters"] == 0

"""``pathwatch replay``: JSON lines in, the section 6 report out, byte-stable."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from pathwatch.cli.replay import run_replay
from pathwatch.config import load_settings


def line(id_: str, type_: str, time: str, data: dict, subject: str = "NHS-123") -> str:
    return json.dumps({"specversion": "1.0", "id": id_, "source": "ehr/community", "type": type_,
                       "time": time, "subject": subject, "data": data})


LINES = [
    line("1", "referral.received", "2026-04-01T09:00:00-04:00", {"referral_id": "r1", "team": "north", "urgency": "urgent"}),
    line("2", "discharge", "2026-04-02T10:00:00-04:00", {"encounter_id": "e1", "facility": "st-marys", "setting": "inpatient",
                                                          "psychiatric": True, "disposition": "home"}),
    line("3", "contact", "2026-04-03T10:00:00-04:00", {"contact_id": "k1", "team": "north", "status": "attended",
                                                        "mode": "face_to_face"}),
    line("3", "contact", "2026-04-03T10:00:00-04:00", {"contact_id": "k1", "team": "north", "status": "attended",
                                                        "mode": "face_to_face"}),
    "this is not json",
    "",
    line("4", "crisis", "2026-06-01T10:00:00-04:00", {"crisis_id": "x1", "setting": "crisis_line"}, subject="NHS-999"),
]


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    return path


def test_replay_writes_the_report_and_is_byte_stable(events_file: Path, tmp_path: Path) -> None:
    settings = load_settings(timezone="America/New_York")
    out = io.StringIO()
    console = Console(file=out, width=200)
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert run_replay(str(events_file), first, settings, console) == 0
    assert run_replay(str(events_file), second, settings, console) == 0
    assert first.read_bytes() == second.read_bytes()
    report = json.loads(first.read_bytes())
    assert report["events"] == {
        "accepted": 4, "duplicates": 1, "dead_letters": 1, "corrections": 0,
        "dead_letters_by_kind": {"not_json": 1}, "unlinked": 0,
    }
    assert report["watermark"] == "2026-06-01T14:00:00+00:00"
    rows = {(r["measure"], r["team"]): (r["numerator"], r["denominator"]) for r in report["measures"]}
    assert rows[("followup_72h", "north")] == (1, 1)
    # urgent referral on Wednesday 04-01: target is Thursday 04-02; seen Friday, so not within
    assert rows[("seen_within_target", "*")] == (0, 1)
    # the other client's crisis has no team and no history: unassigned, not a repeat
    assert rows[("repeat_crisis_30d", "unassigned")] == (0, 1)
    text = out.getvalue()
    assert "PATHWATCH_PSEUDONYM_KEY is not set" in text
    assert "NHS-123" not in first.read_text()
    assert "NHS-123" not in text
    assert "fu_72h" in text  # short measure labels (pathwatch.cli.summary.SHORT_LABELS)


def test_replay_from_stdin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(("\n".join(LINES) + "\n").encode()))
    monkeypatch.setattr("sys.stdin", stdin)
    report = tmp_path / "r.json"
    assert run_replay("-", report, load_settings(timezone="America/New_York"), Console(file=io.StringIO())) == 0
    assert json.loads(report.read_bytes())["events"]["accepted"] == 4


def test_missing_input_is_exit_2(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_replay(str(tmp_path / "nope.jsonl"), None, load_settings(), Console(file=out)) == 2
    assert "cannot read" in out.getvalue()

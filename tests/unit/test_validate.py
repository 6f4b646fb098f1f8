"""``run_validate``: per-record errors with line numbers, a summary, exit status, no raw subjects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from pathwatch.cli.validate import run_validate
from pathwatch.config import Settings
from schemas.validate import detect_format

FIXTURES = Path(__file__).parents[1] / "fixtures"
SUBJECTS = ("NHS-943-476-5919", "NHS-943-476-5920", "MRN-000123", "MRN-000300", "MRN-004242", "pat-43")


def run(path: Path | str, fmt: str = "auto") -> tuple[int, str]:
    console = Console(record=True, width=400, color_system=None)
    status = run_validate(str(path), Settings(), console, fmt)
    return status, console.export_text()


def test_valid_events_exit_zero() -> None:
    status, out = run(FIXTURES / "events" / "valid.jsonl")
    assert status == 0
    assert "14 events record(s): 14 valid (14 event(s)), 0 invalid" in out


def test_mixed_events_report_each_bad_line() -> None:
    status, out = run(FIXTURES / "events" / "mixed.jsonl")
    assert status == 1
    lines = out.splitlines()
    assert lines[0] == "line 3: schema: data.urgency: 'soon' is not one of emergency, urgent, routine"
    assert lines[1] == "line 5: not_json: not JSON: JSON is malformed: invalid character (byte 4)"
    assert lines[2].startswith("line 7: unknown_type: type: 'appointment' is not a known event type")
    assert "6 events record(s): 3 valid (3 event(s)), 3 invalid, 0 with nothing to publish" in lines[3]
    assert "[not_json: 1, schema: 1, unknown_type: 1]" in lines[3]
    for subject in SUBJECTS:
        assert subject not in out


def test_hl7_batch() -> None:
    status, out = run(FIXTURES / "hl7" / "batch.hl7")
    assert status == 1
    lines = out.splitlines()
    assert lines[0].startswith("message 4 (line 17): hl7: PV1-36: discharge disposition 'ZZ'")
    assert lines[1].startswith("message 5 (line 21): hl7: EVN-6: '20260230091500-0500'")
    assert "6 hl7 record(s): 2 valid (2 event(s)), 2 invalid, 2 with nothing to publish" in lines[2]
    for subject in SUBJECTS:
        assert subject not in out


@pytest.mark.parametrize("name", ["a01_admit.hl7", "a03_mllp_v23.hl7", "a13_cancel_discharge.hl7"])
def test_hl7_single_messages_are_valid(name: str) -> None:
    status, out = run(FIXTURES / "hl7" / name)
    assert status == 0, out


def test_fhir_bundle_and_encounter() -> None:
    assert run(FIXTURES / "fhir" / "bundle.json")[0] == 0
    status, out = run(FIXTURES / "fhir" / "encounter_finished.json")
    assert status == 0
    assert "1 fhir record(s): 1 valid (2 event(s))" in out


def test_fhir_ndjson_with_a_bad_line(tmp_path: Path) -> None:
    good = json.loads((FIXTURES / "fhir" / "encounter_finished.json").read_text())
    bad = dict(good, period={"start": "2026-02-24T19:30:00-05:00"})
    path = tmp_path / "encounters.ndjson"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    status, out = run(path)
    assert status == 1
    assert out.splitlines()[0] == "line 2: fhir: period.end: a finished Encounter needs period.end"
    assert "MRN-004242" not in out


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    assert run(tmp_path / "nope.jsonl")[0] == 2
    assert run(FIXTURES / "events" / "valid.jsonl", fmt="xml")[0] == 2


def test_forced_format() -> None:
    status, out = run(FIXTURES / "events" / "valid.jsonl", fmt="hl7")
    assert status == 1
    assert "not an HL7 v2 message" in out


def test_empty_file_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert run(path)[0] == 0


def test_rich_markup_in_reasons_is_printed_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    line = json.loads((FIXTURES / "events" / "valid.jsonl").read_text().splitlines()[0])
    line["data"]["urgency"] = "[bold]soon[/bold]"
    path.write_text(json.dumps(line) + "\n")
    assert "'[bold]soon[/bold]'" in run(path)[1]


@pytest.mark.parametrize(
    ("name", "head", "kind"),
    [("x.hl7", b"", "hl7"), ("x.txt", b"MSH|^~\\&|", "hl7"), ("x.txt", b"\x0bMSH|", "hl7"),
     ("x.json", b'{"resourceType": "Bundle"}', "fhir"), ("x.ndjson", b'{"resourceType": "Encounter"}\n{"a"', "fhir"),
     ("x.jsonl", b'{"specversion": "1.0"}\n', "events"), ("x", b"garbage", "events")],
)
def test_detect_format(name: str, head: bytes, kind: str) -> None:
    assert detect_format(name, head) == kind

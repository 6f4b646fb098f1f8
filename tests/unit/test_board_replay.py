"""``pathwatch replay EVENTS --html FILE``: the board sections in the JSON, the page on disk."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from pathwatch import parts
from pathwatch.cli import main
from pathwatch.cli.replay import run_replay
from pathwatch.config import load_settings
from tests.unit.test_replay import LINES

ROOT = Path(__file__).parents[2]


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    return path


def test_replay_writes_the_board_page_and_its_json_sections(events_file: Path, tmp_path: Path) -> None:
    report_path, html_path = tmp_path / "r.json", tmp_path / "board" / "r.html"
    settings = load_settings(timezone="America/New_York", cost_table=ROOT / "deploy" / "costs.example.toml")
    out = io.StringIO()
    assert run_replay(str(events_file), report_path, settings, Console(file=out, width=200), html_path=html_path) == 0
    report = json.loads(report_path.read_text())
    assert {"funnels", "case_mix", "value"} <= set(report)
    assert report["strata"]  # the observations carry strata
    assert report["case_mix"]["measures"]
    assert all(row["stratum"] for row in report["strata"])
    assert report["value"]["note"].startswith("No value")  # no spc section yet
    page = html_path.read_text()
    assert hashlib.sha256(events_file.read_bytes()).hexdigest() in page
    assert f"board report written to {html_path}" in out.getvalue()


def test_a_bad_cost_table_fails_before_the_replay(events_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "costs.toml"
    bad.write_text('version = "1"\n[[item]]\nitem = "crisis_episode"\ncost = 520\n')
    settings = load_settings(cost_table=bad)
    with pytest.raises(ValueError, match="'currency'"):
        run_replay(str(events_file), None, settings, Console(file=io.StringIO()))


def test_pdf_needs_html(events_file: Path, tmp_path: Path) -> None:
    status = main(["replay", str(events_file), "--pdf", str(tmp_path / "r.pdf")])
    assert status == 2
    assert not (tmp_path / "r.pdf").exists()


def test_several_input_files_are_each_hashed(events_file: Path, tmp_path: Path) -> None:

    other = tmp_path / "other.jsonl"
    other.write_text(LINES[0] + "\n")
    html = tmp_path / "b.html"
    parts.board(load_settings()).write({"measures": [], "waits": [], "events": {}}, html, None,
                                                [str(events_file), str(other)])
    page = html.read_text()
    for path in (events_file, other):
        assert f"{path.name}: {hashlib.sha256(path.read_bytes()).hexdigest()}" in page

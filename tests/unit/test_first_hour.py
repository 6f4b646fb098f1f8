"""The first hour of a new user (issue 14, point 10): every mistake gets one clear line naming
the setting or command that fixes it, and a non-zero exit where the command did not do its job.

No broker is needed: "Kafka unreachable" is a loopback port nobody listens on.
"""

from __future__ import annotations

import copy
import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from pathwatch.cli import main
from pathwatch.config import Settings, load_settings
from streams.ports import TopicNames

ROOT = Path(__file__).resolve().parents[2]
EVENT = (
    '{"specversion":"1.0","id":"1","source":"ehr/x","type":"crisis","time":"2026-01-01T00:00:00Z",'
    '"subject":"MRN-000123","data":{"crisis_id":"c","setting":"crisis_line"}}'
)


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening (bound then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def no_stack(monkeypatch: pytest.MonkeyPatch, closed_port: int) -> None:
    for name in ("PATHWATCH_KAFKA_BOOTSTRAP", "PATHWATCH_REDIS_URL", "PATHWATCH_PSEUDONYM_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATHWATCH_KAFKA_BOOTSTRAP", f"127.0.0.1:{closed_port}")
    monkeypatch.setenv("PATHWATCH_ALLOW_DEV_KEY", "true")


@pytest.fixture
def listening() -> Iterator[int]:
    """A loopback port another process (here: this test) is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------- --config


def test_a_missing_config_file_is_an_error_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "pathwatch.toml"
    assert main(["--config", str(missing), "validate", str(tmp_path / "x.jsonl")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(missing) in line
    assert "no such file" in line


def test_a_toml_syntax_error_names_the_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "pathwatch.toml"
    config.write_text('timezone = "UTC"\nwindow_days = \n')
    assert main(["--config", str(config), "validate", str(tmp_path / "x.jsonl")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(config) in line
    assert "line 2" in line


def test_an_unknown_toml_key_names_the_file_and_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "pathwatch.toml"
    config.write_text("windows_days = 14\n")
    assert main(["--config", str(config), "validate", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert str(config) in err
    assert "windows_days" in err


def test_every_setting_is_documented_with_its_variable_and_toml_key() -> None:
    doc = (ROOT / "docs/configuration.md").read_text()
    for name in Settings.model_fields:
        if name == "topics":
            continue
        assert f"`PATHWATCH_{name.upper()}`" in doc, name
        assert f"`{name}`" in doc, name
    for name in TopicNames.__dataclass_fields__:
        assert f"`PATHWATCH_TOPICS__{name.upper()}`" in doc, name
        assert f"`topics.{name}`" in doc, name


# ---------------------------------------------------------------- Kafka not reachable


def test_publish_without_the_stack_says_how_to_reach_kafka(
    no_stack: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(EVENT + "\n")
    assert main(["publish", str(events)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "PATHWATCH_KAFKA_BOOTSTRAP" in line
    assert "scripts/stack env" in line


def test_report_without_the_stack_says_how_to_reach_kafka(no_stack: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--from-live"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "PATHWATCH_KAFKA_BOOTSTRAP" in line
    assert "scripts/stack env" in line


def test_a_worker_on_a_taken_port_names_the_web_port_setting(
    no_stack: None, listening: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATHWATCH_WEB_PORT", str(listening))
    assert main(["worker"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "PATHWATCH_WEB_PORT" in line
    assert str(listening) in line


def test_deliver_on_a_taken_port_names_the_web_port_setting(
    no_stack: None, listening: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATHWATCH_WEB_PORT", str(listening))
    assert main(["deliver"]) == 2
    assert "PATHWATCH_WEB_PORT" in _one_error_line(capsys.readouterr().err)


# ---------------------------------------------------------------- publish input


def test_publish_of_a_missing_file_is_one_line_before_any_broker(
    no_stack: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(["publish", str(missing)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(missing) in line
    assert "PATHWATCH_KAFKA_BOOTSTRAP" not in line  # the file is read before Kafka is contacted


def test_publish_of_an_empty_file_says_so_and_exits_1(
    no_stack: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert main(["publish", str(empty)]) == 1
    assert "holds no records" in capsys.readouterr().out


def test_publish_dash_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas.pseudonym import Pseudonymiser
    from streams.publish import records

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO((EVENT + "\nnot json\n").encode())))
    kind, items = records("-", "auto", Pseudonymiser(b"k"))
    assert kind == "events"
    assert [value for _, value in items] == [EVENT.encode(), b"not json"]


# ---------------------------------------------------------------- replay hints


def _replay(path: Path) -> tuple[int, str]:
    from pathwatch.cli.replay import run_replay

    out = io.StringIO()
    status = run_replay(str(path), None, load_settings(), Console(file=out, width=200))
    return status, out.getvalue()


def test_replay_of_an_empty_file_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    status, text = _replay(empty)
    assert status == 1
    assert "no records" in text


def test_replay_of_a_file_of_dead_letters_asks_about_the_format(tmp_path: Path) -> None:
    csv = tmp_path / "events.csv"
    csv.write_text("id,type,time\n1,crisis,2026-01-01\n2,contact,2026-01-02\n")
    status, text = _replay(csv)
    assert status == 1
    assert "3 of 3 records were dead letters: is this the right file/format?" in text


def test_replay_with_some_good_records_exits_0(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(EVENT + "\nnot json\n")
    status, text = _replay(mixed)
    assert status == 0
    assert "right file" not in text


# ---------------------------------------------------------------- report --from-live


REPORT: dict[str, Any] = {
    "watermark": "2026-01-05T00:00:00+00:00",
    "measures": [{"measure": "followup_7d", "team": "north", "numerator": 7, "denominator": 9}],
    "waits": [],
    "alerts": [],
    "events": {"accepted": 10, "duplicates": 0, "dead_letters": 1, "corrections": 0},
}


def test_report_from_live_prints_the_replay_summary_not_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pathwatch.cli import report as live_report

    async def fake(settings: Settings, until: Any, timeout: float = 0, charts: Any = None, **_: Any) -> dict[str, Any]:
        return copy.deepcopy(REPORT)

    monkeypatch.setattr(live_report, "live_report", fake)
    monkeypatch.setattr(live_report, "check_kafka", lambda settings: None)
    out = io.StringIO()
    assert live_report.run_live_report(load_settings(), Console(file=out, width=200), None, None, 5) == 0
    text = out.getvalue()
    assert "Measures" in text
    assert "7/9" in text
    assert '"measures"' not in text
    path = tmp_path / "live.json"
    assert live_report.run_live_report(load_settings(), Console(file=io.StringIO()), path, None, 5) == 0
    written = json.loads(path.read_text())
    assert {k: written[k] for k in REPORT} == REPORT
    assert {"funnels", "case_mix", "value"} <= set(written)  # the board's sections, as replay writes them


def test_report_from_live_writes_the_board_page(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pathwatch.cli import report as live_report

    async def fake(settings: Settings, until: Any, timeout: float = 0, charts: Any = None, **_: Any) -> dict[str, Any]:
        return copy.deepcopy(REPORT)

    monkeypatch.setattr(live_report, "live_report", fake)
    monkeypatch.setattr(live_report, "check_kafka", lambda settings: None)
    out, page = io.StringIO(), tmp_path / "board.html"
    assert live_report.run_live_report(load_settings(), Console(file=out, width=200), None, None, 5, html_path=page) == 0
    assert f"board report written to {page}" in out.getvalue()
    text = page.read_text(encoding="utf-8")
    assert "the live workers&#39; state" in text
    with pytest.raises(ValueError, match="give --html FILE too"):
        live_report.run_live_report(load_settings(), Console(file=out), None, None, 5, pdf_path=tmp_path / "b.pdf")

"""``pathwatch report --from-live`` as a user runs it: the replay's terminal summary, the JSON
with ``--report``, and ``--until end`` (the largest event time seen, the replay's end of
input) giving the replay's report of the same file, its ``spc`` and board sections included,
and ``--html`` writing the board page from it. An ``--until`` the live watermark has already
passed changes nothing, and the command says so."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pathwatch.cli import main
from tests.integration.live_fixtures import assert_equivalent, live_stack, replay_report, simulate, wait_ready
from tests.integration.support import Process


def test_report_until_end_equals_the_replay_and_prints_its_summary(
    kafka_bootstrap: str,
    redis_url: str,
    unique: str,
    tmp_path: Path,
    processes: list[Process],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = simulate(tmp_path / "events.jsonl", clients=400, days=60, seed=11, bad_fraction=0.002)
    stack = live_stack(kafka_bootstrap, redis_url, unique, tmp_path)
    expected = replay_report(events, stack.settings)
    worker = stack.worker("worker")
    processes.append(worker)
    wait_ready(worker)
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    assert main(["publish", str(events)]) == 0
    capsys.readouterr()

    out, page = tmp_path / "live.json", tmp_path / "live.html"
    command = ["report", "--from-live", "--until", "end", "--report", str(out), "--html", str(page), "--timeout", "240"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "Measures (watermark" in printed
    assert f"report written to {out}" in printed
    assert f"board report written to {page}" in printed
    assert '"measures"' not in printed
    live = json.loads(out.read_text())
    assert_equivalent(live, expected)

    # the Making Data Count charts and the board's sections are those `pathwatch replay` computes
    replayed = tmp_path / "replay.json"
    assert main(["replay", str(events), "--report", str(replayed)]) == 0
    capsys.readouterr()
    replay = json.loads(replayed.read_text())
    assert any(entry["points"] for entry in replay["spc"])
    assert live["spc"] == replay["spc"]
    for section in ("funnels", "case_mix", "value", "strata", "strata_weekly"):
        assert live[section] == replay[section], section
    assert live["case_mix"]["measures"]  # the observations carry their strata on the live path too
    assert any(line["measure"] == "ed_crisis" for line in live["value"]["lines"]) or live["value"]["note"]
    board = page.read_text(encoding="utf-8")
    drawn = re.findall(r'<figure data-chart="spc" data-measure="([^"]+)" data-team="([^"]+)"', board)
    undrawn = [(m, t) for m, teams in re.findall(r'<p class="no-chart" data-chart="spc" data-measure="([^"]+)" '
                                                  r'data-teams="([^"]+)"', board) for t in teams.split()]
    assert sorted(drawn + undrawn) == sorted((e["measure"], e["team"]) for e in live["spc"])  # a chart or a line each
    assert drawn
    assert "live workers" in board

    assert main(["report", "--from-live", "--until", "2000-01-01T00:00:00+00:00"]) == 0
    printed = capsys.readouterr().out
    assert "which so changed nothing; --until end" in printed
    # the partitions stay where --until end took them: the replay's watermark, not 1 µs past it
    assert f"the live watermark {expected['watermark']} is already past" in printed

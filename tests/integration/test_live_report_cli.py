"""``pathwatch report --from-live`` as a user runs it: the replay's terminal summary, the JSON
with ``--report``, and ``--until end`` (the largest event time seen, the replay's end of
input) giving the replay's report of the same file. An ``--until`` the live watermark has
already passed changes nothing, and the command says so."""

from __future__ import annotations

import json
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

    out = tmp_path / "live.json"
    assert main(["report", "--from-live", "--until", "end", "--report", str(out), "--timeout", "240"]) == 0
    printed = capsys.readouterr().out
    assert "Measures (watermark" in printed
    assert f"report written to {out}" in printed
    assert '"measures"' not in printed
    assert_equivalent(json.loads(out.read_text()), expected)

    assert main(["report", "--from-live", "--until", "2000-01-01T00:00:00+00:00"]) == 0
    printed = capsys.readouterr().out
    assert "which so changed nothing; --until end" in printed
    # the partitions stay where --until end took them: the replay's watermark, not 1 µs past it
    assert f"the live watermark {expected['watermark']} is already past" in printed

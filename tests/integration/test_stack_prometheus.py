"""`scripts/stack up` starts Prometheus (Debian's) for users without Docker: it loads the
repository's rules, alerts to the stack's Alertmanager and scrapes the local worker (6066)
and deliver (6067) ports; `status` and `env` print the UIs' addresses.

The test runs the script with a stack directory of its own (free ports, its own pids), starts
only Alertmanager and Prometheus, and stops them; the shared stack is never touched.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.prometheus_fixtures import get

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "scripts/stack"


def _stack(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(STACK), *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"scripts/stack {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    env = dict(os.environ, PATHWATCH_STACK_DIR=str(tmp_path / "stack"))
    try:
        _stack(env, "up", "alertmanager", "prometheus")
        ports = dict(
            line.split("=", 1) for line in (tmp_path / "stack/ports.env").read_text().splitlines() if "=" in line
        )
        yield env, ports
    finally:
        _stack(env, "down")


def test_stack_up_starts_prometheus_with_our_rules_alerting_to_the_stack(
    own_stack: tuple[dict[str, str], dict[str, str]],
) -> None:
    env, ports = own_stack
    base = f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}"
    alertmanager = f"127.0.0.1:{ports['ALERTMANAGER_PORT']}"

    rules = {r["name"] for g in get(base, "/api/v1/rules")["data"]["groups"] for r in g["rules"]}
    assert "PathwatchWorkerDown" in rules

    def scraped() -> set[str]:
        targets = get(base, "/api/v1/targets")["data"]["activeTargets"]
        return {t["labels"]["instance"] for t in targets if t["labels"]["job"] == "pathwatch"}

    def alertmanagers() -> list[str]:
        return [a["url"] for a in get(base, "/api/v1/alertmanagers")["data"]["activeAlertmanagers"]]

    # Prometheus applies discovered targets and Alertmanagers a few seconds after start
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (scraped() and alertmanagers()):
        time.sleep(0.5)
    assert scraped() == {"127.0.0.1:6066", "127.0.0.1:6067"}
    assert any(alertmanager in url for url in alertmanagers()), alertmanagers()

    status = _stack(env, "status")
    assert "prometheus: running" in status
    for text in (status, _stack(env, "env")):
        assert f"http://{alertmanager}/#/alerts" in text
        assert f"{base}/graph" in text

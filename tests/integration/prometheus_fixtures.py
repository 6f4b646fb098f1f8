"""Helpers for tests where a real Prometheus (Debian's package) scrapes pathwatch processes.

Shared by test_prometheus_scrape.py (a stand-in exporter) and test_prometheus_workers.py
(two real workers): find the binary (missing FAILS, integration tests never skip), start it
on a free loopback port with its data in a tmp dir and our rules loaded, query its HTTP
API, and list every PromQL expression of the dashboards and rules.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.support import Process, free_port
from tests.promql import dashboard_targets, grafana_to_promql, rule_exprs, selectors

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy/prometheus/rules"
DASHBOARDS = ROOT / "deploy/grafana/dashboards"
JOB = "pathwatch"


def prometheus_binary() -> str:
    """Path of the prometheus binary; FAILS the calling test when it is not installed."""
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found is None:
        pytest.fail("prometheus not found: apt-get install prometheus (integration tests never skip)")
    return found


def get(base: str, path: str, **params: str) -> dict[str, Any]:
    url = f"{base}{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback only
        return json.loads(response.read())


def query(base: str, expr: str) -> dict[str, Any]:
    """The API's answer to an instant query of ``expr`` at the current time."""
    return get(base, "/api/v1/query", query=expr)


def wait_for_series(base: str, expr: str, deadline: float) -> dict[str, Any]:
    """Query until ``expr`` returns a series or ``deadline`` (monotonic) passes; return the last answer."""
    while True:
        answer = query(base, expr)
        if answer["status"] == "success" and answer["data"]["result"]:
            return answer
        if time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


def samples(base: str, expr: str, *labels: str) -> dict[tuple[str, ...], float]:
    """An instant vector as {values of ``labels``: value}; raises if two series share a key."""
    out: dict[tuple[str, ...], float] = {}
    answer = query(base, expr)
    assert answer["status"] == "success", answer
    for series in answer["data"]["result"]:
        key = tuple(series["metric"].get(label, "") for label in labels)
        assert key not in out, f"{expr}: two series for {key}"
        out[key] = float(series["value"][1])
    return out


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass
class PrometheusServer:
    """A running Prometheus: ``base`` is its HTTP address; ``process`` is killed by :meth:`stop`."""

    base: str
    process: Process

    def stop(self) -> None:
        self.process.kill(15)


def start_prometheus(tmp: Path, targets: list[str], timeout: float = 60) -> PrometheusServer:
    """Start Prometheus on a free loopback port scraping ``targets`` (host:port, /metrics) every
    second under job ``pathwatch``, with deploy/prometheus/rules loaded and its data in ``tmp``.

    Returns once every target has been scraped up; FAILS the test (after stopping the server)
    if that does not happen within ``timeout`` seconds or the binary is missing.
    """
    binary = prometheus_binary()
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in sorted(RULES_DIR.glob("*.yml"))],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = Process(
        [
            binary,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        env=child_env(),
        log=tmp / "prometheus.log",
    ).start()
    server = PrometheusServer(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if len(query(server.base, f'up{{job="{JOB}"}} == 1')["data"]["result"]) == len(targets):
                return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"Prometheus never scraped all of {targets}:\n{process.output()[-3000:]}")
        time.sleep(0.5)


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, PromQL) for every target of every dashboard, Grafana variables substituted."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for title, _, target in dashboard_targets(json.loads(path.read_text())):
            found.append((f"{path.stem} / {title} / {target['refId']}", grafana_to_promql(target["expr"])))
    return found


def rules() -> list[tuple[str, str, str]]:
    """(kind, name, expr) for every rule in deploy/prometheus/rules; kind is record or alert."""
    return [
        rule
        for path in sorted(RULES_DIR.glob("*.yml"))
        for rule in rule_exprs(yaml.safe_load(path.read_text()))
    ]


def dashboards_without_series(base: str, deadline: float) -> list[str]:
    """Every dashboard expression that still returns no series at ``deadline`` (each must
    at least be a valid query)."""
    empty = []
    for where, expr in dashboard_exprs():
        answer = wait_for_series(base, expr, deadline)
        assert answer["status"] == "success", f"{where}: {answer}"
        if not answer["data"]["result"]:
            empty.append(f"{where}: {expr}")
    return empty


def recording_rules_without_series(base: str, deadline: float) -> list[str]:
    """Every recording rule whose name or expression still returns no series at ``deadline``."""
    empty = []
    for kind, name, expr in rules():
        if kind != "record":
            continue
        for text in (name, expr):
            if not wait_for_series(base, text, deadline)["data"]["result"]:
                empty.append(f"{name}: {text}")
    return empty


def alerting_rules_missing_series(base: str, deadline: float) -> list[str]:
    """Every series an alerting rule reads that is still absent at ``deadline`` (an alert's
    condition is false on a healthy stream, so its inputs are checked, not its result; each
    rule must at least be a valid query)."""
    missing = []
    for kind, name, expr in rules():
        if kind != "alert":
            continue
        answer = query(base, expr)
        assert answer["status"] == "success", f"{name}: {answer}"
        for selector in selectors(expr):
            if not wait_for_series(base, selector, deadline)["data"]["result"]:
                missing.append(f"{name}: {selector}")
    return missing



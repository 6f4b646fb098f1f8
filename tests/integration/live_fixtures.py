"""Helpers for live-pipeline integration tests: unique settings, worker processes, replay reference."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import time
import urllib.request
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pathwatch.config import load_settings
from pathwatch.parts import core_config
from pathwatch.simulate import SimulationOptions, write
from schemas.deadletter import DeadLetter, Origin
from schemas.decode import Decoder
from streams.engine import Engine
from streams.live_report import live_report
from streams.publish import publish
from tests.integration.support import Process, free_port, python_module_args

PSEUDONYM_KEY = "integration-test-key"
CARE_GAP = {"FollowUpDue", "FollowUpMissed", "ReferralWaiting", "FrequentCrisis", "Readmitted30d"}


@dataclass
class LiveStack:
    """One isolated pathwatch deployment on the shared broker: its own topics and group."""

    env: dict[str, str]
    tmp: Path

    @property
    def settings(self) -> Any:
        overrides = {k.removeprefix("PATHWATCH_").lower(): v for k, v in self.env.items() if k.startswith("PATHWATCH_")}
        topics = {k.removeprefix("topics__"): overrides.pop(k) for k in list(overrides) if k.startswith("topics__")}
        return load_settings(topics=topics, **overrides)

    def worker(self, name: str, command: str = "worker") -> Process:
        """A ``pathwatch worker`` (or, with ``command="deliver"``, a ``pathwatch deliver``)."""
        env = dict(os.environ, **self.env, PATHWATCH_WEB_PORT=str(free_port()))
        proc = Process(python_module_args("pathwatch.cli", command), env, self.tmp / f"{name}.log")
        proc.web_port = int(env["PATHWATCH_WEB_PORT"])  # type: ignore[attr-defined]
        return proc.start()

    def publish(self, path: Path) -> int:
        return asyncio.run(publish(self.settings, path, "events"))

    def report(self, until: datetime | None, timeout: float = 240) -> dict[str, Any]:
        return asyncio.run(live_report(self.settings, until, timeout, config=core_config(self.settings)))


def live_stack(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp: Path, partitions: int = 8, alert_clock: str = "event"
) -> LiveStack:
    """``alert_clock="wall"``: the default settings (care-gap alerts by the wall clock)."""
    # letters only: topic names appear as metric labels, and the label guard refuses digit runs
    unique = unique.translate(str.maketrans("0123456789", "ghijklmnop"))
    env = {
        "PATHWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PATHWATCH_REDIS_URL": redis_url,
        "PATHWATCH_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "PATHWATCH_ALERT_CLOCK": alert_clock,
        "PATHWATCH_APP_ID": f"pw-{unique}",
        "PATHWATCH_PARTITIONS": str(partitions),
        "PATHWATCH_BROKER_SESSION_TIMEOUT": "10",
        "PATHWATCH_BROKER_HEARTBEAT_INTERVAL": "1",
        "PATHWATCH_BROKER_REBALANCE_TIMEOUT": "20",
        "PATHWATCH_TICK_INTERVAL": "1s",
    }
    for topic in ("events", "hl7", "fhir", "clients", "observations", "alerts", "transitions", "dead_letters", "changes",
                  "overall_shares"):
        env[f"PATHWATCH_TOPICS__{topic.upper()}"] = f"{topic}-{unique}"
    return LiveStack(env, tmp)


def simulate(
    path: Path, clients: int, days: int, seed: int, bad_fraction: float = 0.0, start: date | None = None
) -> Path:
    out = io.BytesIO()
    options = SimulationOptions(clients=clients, days=days, seed=seed, bad_fraction=bad_fraction)
    if start is not None:
        options = replace(options, start=start)
    write(options, out)
    path.write_bytes(out.getvalue())
    return path


def replay_engine(path: Path, settings: Any, pseudonym_key: str = PSEUDONYM_KEY) -> Engine:
    """The in-process reference over a JSONL file, finished (end of input = end of time):
    the same decoding and core as the workers, one partition."""
    engine = Engine(core_config(settings))
    decoder = Decoder(pseudonym_key.encode(), settings.max_message_bytes)
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        result = decoder.decode(line, Origin(file=str(path), line=number))
        if isinstance(result, DeadLetter):
            engine.feed_dead_letter(result)
        else:
            engine.feed(result)
    engine.finish()
    return engine


def replay_report(path: Path, settings: Any) -> dict[str, Any]:
    """The replay report of ``path`` (see :func:`replay_engine`)."""
    return replay_engine(path, settings).report()


def care_gap(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in report["alerts"] if a["labels"]["alertname"] in CARE_GAP]


def assert_same_outcomes(live: dict[str, Any], replay: dict[str, Any]) -> None:
    """Measures, waits and care-gap alerts of the live report equal the replay's."""
    assert live["watermark"] == replay["watermark"]
    differing = [(r, m) for r, m in zip(replay["measures"], live["measures"], strict=False) if r != m]
    assert live["measures"] == replay["measures"], differing[:10]
    assert live["waits"] == replay["waits"]
    assert care_gap(live) == care_gap(replay)


def assert_same_measures(live: dict[str, Any], replay: dict[str, Any]) -> None:
    """Measures, waits and event counters of the live report equal the replay's (what event
    time decides under every alert clock; care-gap alerts follow the wall clock by default)."""
    assert live["watermark"] == replay["watermark"]
    differing = [(r, m) for r, m in zip(replay["measures"], live["measures"], strict=False) if r != m]
    assert live["measures"] == replay["measures"], differing[:10]
    assert live["waits"] == replay["waits"]
    assert live["events"] == replay["events"], (live["events"], replay["events"])


def assert_equivalent(live: dict[str, Any], replay: dict[str, Any]) -> None:
    assert_same_outcomes(live, replay)
    assert live["events"] == replay["events"], (live["events"], replay["events"])


def wait_ready(proc: Process, timeout: float = 90) -> None:
    """Until the worker's /ready says so (its partitions assigned and tables recovered)."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{proc.web_port}/ready"  # type: ignore[attr-defined]
    while time.monotonic() < deadline:
        assert proc.proc is not None
        if proc.proc.poll() is not None:
            raise AssertionError(f"worker exited:\n{proc.output()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
                if json.loads(response.read()).get("ready"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"worker not ready in {timeout}s:\n{proc.output()[-3000:]}")


def scrape(proc: Process) -> str:
    url = f"http://127.0.0.1:{proc.web_port}/metrics"  # type: ignore[attr-defined]
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
        return response.read().decode()


def wait_flowing(proc: Process, events: int, timeout: float = 60) -> None:
    """Wait (at most ``timeout`` seconds) until a worker has accepted at least ``events``
    events of one type and source: the stream is flowing through stage 1."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for value in re.findall(r"pathwatch_events_total\{[^}]*\} (\d+)", scrape(proc)):
            if float(value) >= events:
                return
        time.sleep(0.2)

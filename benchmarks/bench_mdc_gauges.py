"""How long one refresh of a worker's Making Data Count gauges takes (issue 17 item 6).

The worker recomputes them about once a tick on its event loop (streams/live_changes.py):
merge the teams' windows, draw every team's chart of every rate measure with the recorded
changes' groups, and set the gauges. This replays a simulated year (``--clients`` clients,
the default teams, one recorded change) and times that refresh at the final watermark, as a
worker holding every team would run it.

    .venv/bin/python benchmarks/bench_mdc_gauges.py --clients 6000 --repeat 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry

from alerts.rules import SystemAlertRules
from pathwatch import parts, simulate
from pathwatch.config import Settings
from pathwatch.mdc_metrics import MdcMetrics
from pathwatch.parts import core_config
from schemas.deadletter import DeadLetter
from schemas.decode import Decoder
from schemas.model import ALL_TEAMS
from streams.changes import local_date_in
from streams.engine import Engine
from streams.live_changes import change_times, team_charts
from streams.windows import TeamWindows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=6000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    settings = Settings()
    options = simulate.SimulationOptions(
        clients=args.clients, seed=1, changes=(simulate.parse_change("north:followup_7d:0.9@27"),)
    )
    decoder = Decoder(b"mdc-benchmark", settings.max_message_bytes)
    config = core_config(settings)
    engine = Engine(config)
    for number, line in enumerate(simulate.generate(options), start=1):
        result = decoder.decode_line(line, "simulated", number)
        if not isinstance(result, DeadLetter):
            engine.feed(result)
    engine.finish()
    assert engine.watermark is not None
    rules = SystemAlertRules(parts.rules_config(settings))
    local_date = local_date_in(ZoneInfo(settings.timezone))
    gauges = MdcMetrics(CollectorRegistry())
    teams = [t for t in engine.windows.teams() if t != ALL_TEAMS]
    changes = engine.changes.changes()
    seconds = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        merged = TeamWindows.merged([engine.windows], config)
        gauges.set_charts(team_charts(rules, merged, teams, engine.watermark, changes, local_date))
        gauges.set_changes(change_times(changes, teams))
        seconds.append(time.perf_counter() - start)
    print(
        f"{len(teams)} teams x 8 measures, {engine.counters.accepted} events: one refresh "
        f"median {statistics.median(seconds) * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms ({args.repeat} runs)"
    )


if __name__ == "__main__":
    main()

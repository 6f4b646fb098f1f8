"""The ``pathwatch`` command: the composition root.

Settings are read here once (environment, then ``--config FILE.toml``) and passed down;
nothing below reads the environment. Subcommands import their modules lazily so that
``pathwatch --help`` and ``pathwatch replay`` do not pay for faust's import time.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from pathwatch.config import Settings, load_settings

DESCRIPTION = """\
pathwatch watches community mental health care pathways: people lost between referral and
first contact, repeat crises, and no follow-up after a psychiatric hospital discharge.
It keeps rolling measures per team, raises care-gap and churn alerts, and exports metrics.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pathwatch", description=DESCRIPTION)
    parser.add_argument("--config", type=Path, help="a TOML settings file (environment PATHWATCH_* wins)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    replay = sub.add_parser("replay", help="run the core in-process over a file of events and report")
    replay.add_argument("events", help="JSON lines in arrival order (a path, or - for standard input)")
    replay.add_argument("--report", type=Path, help="write the machine-readable report here")
    replay.add_argument("--html", type=Path, help="write the board report (one self-contained HTML file) here")
    replay.add_argument("--pdf", type=Path, help="print the board report to this PDF (needs --html and chromium)")

    simulate = sub.add_parser("simulate", help="generate a realistic, seeded event stream (JSON lines)")
    simulate.add_argument("--out", default="-", help="output path, or - for standard output")
    simulate.add_argument("--clients", type=int, help="number of clients (default: a mid-sized provider)")
    simulate.add_argument("--teams", help="comma-separated team names")
    simulate.add_argument("--start", type=date.fromisoformat, help="first day (YYYY-MM-DD)")
    simulate.add_argument("--days", type=int, help="length of the period in days")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--max-delay", help="largest publication delay, e.g. 72h (at most the lateness)")
    simulate.add_argument("--duplicate-fraction", type=float)
    simulate.add_argument("--cancel-fraction", type=float)
    simulate.add_argument("--bad-fraction", type=float)
    simulate.add_argument("--beyond-lateness-fraction", type=float)
    simulate.add_argument(
        "--inject",
        action="append",
        default=[],
        metavar="TEAM:MEASURE:RATE@WEEK",
        help="inject churn, e.g. north:followup_7d:0.45@20 (repeatable)",
    )

    validate = sub.add_parser("validate", help="check a file of events, HL7 v2 messages or FHIR bundles")
    validate.add_argument("file")
    validate.add_argument("--format", default="auto", choices=["auto", "events", "hl7", "fhir"])

    worker = sub.add_parser("worker", help="run a live faust worker (needs Kafka and Redis)")
    worker.add_argument("faust_args", nargs=argparse.REMAINDER, help="extra arguments for faust's worker")

    deliver = sub.add_parser(
        "deliver", help="deliver alert transitions for workers run with PATHWATCH_DELIVERY=separate"
    )
    deliver.add_argument("faust_args", nargs=argparse.REMAINDER, help="extra arguments for faust's worker")

    publish = sub.add_parser("publish", help="load events (JSON lines, HL7, FHIR) into the input topics")
    publish.add_argument("file")
    publish.add_argument("--format", default="auto", choices=["auto", "events", "hl7", "fhir"])

    report = sub.add_parser("report", help="read the live workers' state as a replay-style report")
    report.add_argument("--from-live", action="store_true", required=True)
    report.add_argument("--report", type=Path, help="write the report here (default: standard output)")
    report.add_argument("--until", help="advance every partition to this event time first (RFC 3339)")
    report.add_argument("--timeout", type=float, default=60.0)
    return parser


def _simulate(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    import dataclasses

    from pathwatch import simulate
    from pathwatch.config import parse_duration

    options = simulate.SimulationOptions.mid_sized(seed=args.seed, tz=settings.timezone)
    changes: dict[str, Any] = {}
    for name in ("clients", "start", "days", "duplicate_fraction", "cancel_fraction", "bad_fraction"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.beyond_lateness_fraction is not None:
        changes["beyond_lateness_fraction"] = args.beyond_lateness_fraction
    if args.teams:
        changes["teams"] = tuple(t.strip() for t in args.teams.split(",") if t.strip())
    if args.max_delay:
        delay = parse_duration(args.max_delay)
        if not isinstance(delay, timedelta):
            raise ValueError(f"--max-delay {args.max_delay!r} is not a duration")
        changes["max_delay"] = delay
    if args.inject:
        changes["injections"] = tuple(simulate.parse_injection(text) for text in args.inject)
    options = dataclasses.replace(options, **changes)
    if args.out == "-":
        count = simulate.write(options, sys.stdout.buffer)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "wb") as out:
            count = simulate.write(options, out)
    Console(stderr=True).print(f"[green]simulated {count:,} events[/green] -> {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=args.command in ("simulate",))
    try:
        settings = load_settings(args.config)
    except (ValidationError, ValueError, OSError) as exc:
        Console(stderr=True).print(f"[red]pathwatch: bad settings[/red]\n{exc}")
        return 2

    try:
        if args.command == "replay":
            from alerts.rules import AlertRulesConfig, SystemAlertRules
            from streams.replay import run_replay

            rules = SystemAlertRules(AlertRulesConfig.from_settings(settings))
            return run_replay(
                args.events, args.report, settings, console, system_rules=rules, html_path=args.html, pdf_path=args.pdf
            )
        if args.command == "simulate":
            return _simulate(args, settings, console)
        if args.command == "validate":
            from schemas.validate import run_validate

            return run_validate(args.file, settings, console, fmt=args.format)
        if args.command == "worker":
            from streams.worker import run_worker

            return run_worker(settings, list(args.faust_args))
        if args.command == "deliver":
            from streams.worker import run_deliver

            return run_deliver(settings, list(args.faust_args))
        if args.command == "publish":
            from streams.publish import run_publish

            return run_publish(args.file, settings, console, fmt=args.format)
        if args.command == "report":
            from streams.live_report import run_live_report

            return run_live_report(settings, console, args.report, args.until, args.timeout)
    except ValueError as exc:
        Console(stderr=True).print(f"[red]pathwatch {args.command}:[/red] {exc}")
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())

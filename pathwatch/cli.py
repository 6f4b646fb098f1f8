"""The ``pathwatch`` command: the composition root.

Settings are read here once (environment, then ``--config FILE.toml``) and passed down;
nothing below reads the environment. Subcommands import their modules lazily so that
``pathwatch --help`` and ``pathwatch replay`` do not pay for faust's import time.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from pathwatch.config import Settings, SettingsFileError, load_settings
from pathwatch.quietlog import quiet_library_logs

LOUD_LIBRARY_COMMANDS = frozenset({"worker", "deliver", "publish", "report", "deadletters"})
"""Commands whose Kafka clients log every failed attempt during a broker outage."""

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
    replay.add_argument(
        "events",
        nargs="+",
        help="JSON lines in arrival order (a path, or - for standard input), HL7 v2 or FHIR files; "
        "several files are merged by the time each record was sent (docs/events.md)",
    )
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
    simulate.add_argument(
        "--change",
        action="append",
        default=[],
        metavar="TEAM:MEASURE:RATE@WEEK",
        help="inject a change and record it as a service.change event, e.g. north:followup_7d:0.9@30; "
        "RATE - records a change that moves nothing (repeatable)",
    )

    change = sub.add_parser("change", help="record a service change (for the charts and 'did it work?')")
    change_sub = change.add_subparsers(dest="change_command", required=True, metavar="ACTION")
    add = change_sub.add_parser("add", help="append one service.change event to a JSON-lines file (docs/spc.md)")
    add.add_argument("--team", required=True, help="the team, or * for the whole provider")
    add.add_argument("--measures", help="comma-separated rate measures (default: all)")
    add.add_argument("--date", required=True, type=date.fromisoformat, help="local date it took effect (YYYY-MM-DD)")
    add.add_argument("--description", required=True, help="what changed, plain text (no client data, ids or dates)")
    add.add_argument("--expected-direction", choices=["higher", "lower"])
    add.add_argument("--id", dest="change_id", help="the change's id (default: team, date and first words)")
    add.add_argument(
        "--out", type=Path,
        help="JSON-lines file to append to (- for standard output); without it, publish to the changes topic",
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
    report.add_argument(
        "--until",
        help="advance every partition to this event time first (RFC 3339, inclusive), or 'end': to the "
        "largest event time seen, as replay's end of input",
    )
    report.add_argument("--timeout", type=float, default=60.0)
    report.add_argument("--html", type=Path, help="write the board report (one self-contained HTML file) here")
    report.add_argument("--pdf", type=Path, help="print the board report to this PDF (needs --html and chromium)")

    dead = sub.add_parser(
        "deadletters", help="count dead letters by reason, show them, and re-publish chosen ones after a fix"
    )
    dead.add_argument("--show", type=int, default=0, metavar="N", help="print N dead letters (a preview, no values)")
    dead.add_argument(
        "--show-original", action="store_true",
        help="with --show, print each original as received (may hold client identifiers)",
    )
    dead.add_argument("--kind", action="append", default=[], help="only this kind (repeatable), e.g. not_json")
    dead.add_argument("--reason", action="append", default=[], help="only reasons containing this text (repeatable)")
    dead.add_argument(
        "--origin", action="append", default=[],
        help="only from this topic, or origins starting so, e.g. pathwatch.hl7[2] (repeatable)",
    )
    dead.add_argument("--republish", action="store_true", help="send the chosen dead letters again")
    dead.add_argument("--all", action="store_true", help="with --republish and no filter: every dead letter")
    dead.add_argument("--to", metavar="TOPIC", help="re-publish to TOPIC instead of the topic each came from")
    dead.add_argument("--timeout", type=float, default=60.0)
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
    if args.change:
        changes["changes"] = tuple(simulate.parse_change(text) for text in args.change)
    options = dataclasses.replace(options, **changes)
    if args.out == "-":
        count = simulate.write(options, sys.stdout.buffer)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "wb") as out:
            count = simulate.write(options, out)
    Console(stderr=True).print(f"[green]simulated {count:,} events[/green] -> {args.out}")
    return 0


def _error(command: str, message: str) -> None:
    """One line on standard error (never wrapped: it names a setting or a command to run)."""
    Console(stderr=True, highlight=False).print(
        f"[red]pathwatch {command}:[/red] {escape(message)}", soft_wrap=True
    )


def settings_errors(exc: ValidationError, config: Path | None) -> list[str]:
    """One line per invalid setting, naming its environment variable and TOML key."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc)
        if not loc:
            lines.append(str(error["msg"]))
            continue
        env = "PATHWATCH_" + loc[0].upper()
        if loc[0] == "topics" and len(loc) > 1:
            env = "PATHWATCH_TOPICS__" + loc[1].upper()
        if error["type"] == "extra_forbidden":
            where = f" in {config}" if config is not None else ""
            lines.append(f"{key}{where}: not a setting (every setting is listed in docs/configuration.md)")
        else:
            toml = f" or {key} in {config}" if config is not None else ""
            lines.append(f"{key} ({env}{toml}): {error['msg']}")
    return lines


def web_port_taken(settings: Settings) -> str | None:
    """Why the worker's web port cannot be used, or None when it is free.

    Checked before faust starts, whose own failure is a 40-line traceback. Binds with
    SO_REUSEADDR, as aiohttp does, so a port in TIME_WAIT is not taken for busy."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.web_host, settings.web_port))
        except OSError as exc:
            return (
                f"cannot serve /health and /metrics on {settings.web_host}:{settings.web_port} "
                f"({exc.strerror or exc}; another worker or deliver?): set PATHWATCH_WEB_PORT to a free "
                f"port, e.g. PATHWATCH_WEB_PORT={settings.web_port + 1}"
            )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=args.command in ("simulate",))
    try:
        settings = load_settings(args.config)
    except SettingsFileError as exc:
        _error("--config", str(exc))
        return 2
    except ValidationError as exc:
        for line in settings_errors(exc, args.config):
            _error("settings", line)
        return 2
    except (ValueError, OSError) as exc:
        _error("settings", str(exc))
        return 2
    if args.command in LOUD_LIBRARY_COMMANDS:
        quiet_library_logs()

    try:
        return _dispatch(args, settings, console)
    except ValueError as exc:
        _error(args.command, str(exc))
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    if args.command == "replay":
        from functools import partial

        from alerts.rules import AlertRulesConfig, SystemAlertRules
        from streams.changes import judge_changes
        from streams.replay import run_replay

        rules = SystemAlertRules(AlertRulesConfig.from_settings(settings))
        return run_replay(
            args.events,
            args.report,
            settings,
            console,
            system_rules=rules,
            charts=rules.charts,
            html_path=args.html,
            pdf_path=args.pdf,
            changes=partial(judge_changes, rules.config),
        )
    if args.command == "simulate":
        return _simulate(args, settings, console)
    if args.command == "change":
        from streams.changes import run_change_add

        return run_change_add(args, settings, console)
    if args.command == "validate":
        from schemas.validate import run_validate

        return run_validate(args.file, settings, console, fmt=args.format)
    if args.command in ("worker", "deliver"):
        if args.command == "worker":
            settings.pseudonym_key_bytes(live=True)
        taken = web_port_taken(settings)
        if taken is not None:
            raise ValueError(taken)
        from streams.topics import check_kafka

        check_kafka(settings)
        from pathwatch.bootstrap import run_deliver, run_worker

        run = run_worker if args.command == "worker" else run_deliver
        return run(settings, list(args.faust_args))
    if args.command == "publish":
        from streams.publish import run_publish

        return run_publish(args.file, settings, console, fmt=args.format)
    if args.command == "report":
        from alerts.rules import AlertRulesConfig, SystemAlertRules
        from streams.live_report import run_live_report

        charts = SystemAlertRules(AlertRulesConfig.from_settings(settings)).charts
        return run_live_report(
            settings, console, args.report, args.until, args.timeout, charts=charts, html_path=args.html, pdf_path=args.pdf
        )
    if args.command == "deadletters":
        from streams.deadletters import Selection, run_deadletters

        selection = Selection(tuple(args.kind), tuple(args.reason), tuple(args.origin))
        return run_deadletters(
            settings, console, show=args.show, show_original=args.show_original, selection=selection,
            republish=args.republish, republish_all=args.all, to=args.to, timeout=args.timeout,
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())

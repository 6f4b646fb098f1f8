"""The ``pathwatch`` command line: arguments only (argparse), one function per command group.

Imports nothing but the standard library, so ``pathwatch --help`` stays fast; the commands'
modules are imported when a command runs (:func:`pathwatch.cli.main`).
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

DESCRIPTION = """\
pathwatch watches community mental health care pathways: people lost between referral and
first contact, repeat crises, and no follow-up after a psychiatric hospital discharge.
It keeps rolling measures per team, raises care-gap and churn alerts, and exports metrics.
"""

if TYPE_CHECKING:
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def parser() -> argparse.ArgumentParser:
    """The whole command line; ``args.command`` names the command chosen."""
    top = argparse.ArgumentParser(prog="pathwatch", description=DESCRIPTION)
    top.add_argument("--config", type=Path, help="a TOML settings file (environment PATHWATCH_* wins)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _replay(sub)
    _simulate(sub)
    _change(sub)
    _validate(sub)
    _live(sub)
    _report(sub)
    _deadletters(sub)
    return top


def _replay(sub: Commands) -> None:
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


def _simulate(sub: Commands) -> None:
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


def _change(sub: Commands) -> None:
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
    cancel = change_sub.add_parser(
        "cancel", help="withdraw a recorded service change (its charts' group and its evidence go)"
    )
    cancel.add_argument("change_id", help="the change's id, as `change add` printed it")
    cancel.add_argument("--reason", help="why, plain text (no client data)")
    cancel.add_argument(
        "--out", type=Path,
        help="the JSON-lines file the change was appended to: the cancel is appended to it; "
        "without it, the change is looked up on the changes topic and the cancel published there",
    )


def _validate(sub: Commands) -> None:
    validate = sub.add_parser("validate", help="check a file of events, HL7 v2 messages or FHIR bundles")
    validate.add_argument("file")
    validate.add_argument("--format", default="auto", choices=["auto", "events", "hl7", "fhir"])


def _live(sub: Commands) -> None:
    worker = sub.add_parser("worker", help="run a live faust worker (needs Kafka and Redis)")
    worker.add_argument("faust_args", nargs=argparse.REMAINDER, help="extra arguments for faust's worker")

    deliver = sub.add_parser(
        "deliver", help="deliver alert transitions for workers run with PATHWATCH_DELIVERY=separate"
    )
    deliver.add_argument("faust_args", nargs=argparse.REMAINDER, help="extra arguments for faust's worker")

    publish = sub.add_parser("publish", help="load events (JSON lines, HL7, FHIR) into the input topics")
    publish.add_argument("file")
    publish.add_argument("--format", default="auto", choices=["auto", "events", "hl7", "fhir"])


def _report(sub: Commands) -> None:
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


def _deadletters(sub: Commands) -> None:
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

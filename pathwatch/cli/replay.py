"""``pathwatch replay FILE... --report REPORT.json``: the core over files of events, and a summary."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from alerts.rules import SystemAlertRules
from pathwatch import parts
from pathwatch.cli.summary import render_summary, write_board
from pathwatch.config import Settings
from pathwatch.parts import core_config
from schemas.decode import Decoder
from schemas.validate import detect_format
from streams.engine import Engine, SystemRules
from streams.replay import PROGRESS_MIN_BYTES, ReplayInput, replay_files, replay_stream
from streams.report import SpcParts, dumps_report, replay_verdict, spc_sections, strata_sections


def run(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    spc = parts.spc_parts(settings)
    return run_replay(
        args.events,
        args.report,
        settings,
        console,
        system_rules=SystemAlertRules(spc.rules),
        spc=spc,
        html_path=args.html,
        pdf_path=args.pdf,
    )


def run_replay(
    events: str | Sequence[str],
    report_path: Path | None,
    settings: Settings,
    console: Console,
    system_rules: SystemRules | None = None,
    spc: SpcParts | None = None,
    html_path: Path | None = None,
    pdf_path: Path | None = None,
) -> int:
    """Replay ``events`` (one path or ``-``, or several), write the JSON report to
    ``report_path`` if given, print a summary. One JSON-lines input is read as a stream in
    arrival order; anything else through :func:`streams.replay.replay_files`. The report's
    ``events`` gains ``unlinked``: events built from HL7/FHIR whose subject is hospital-local.
    With ``spc`` (``pathwatch.parts.spc_parts``) the report gains ``"spc"``: the Making Data
    Count chart of every team and rate measure at the end of input, each recorded service
    change starting a group on its team's charts, and ``"changes"``: one entry per service
    change that stands, with its evidence per measure (:func:`streams.report.spc_sections`).
    Returns the exit status: 0 done, 1 when the input held no records or only dead letters
    (with a hint), 2 when an input cannot be read or a report cannot be written. The board
    report goes to ``html_path`` (and its print to ``pdf_path``) if given. Raises ValueError
    for a bad cost table or ``pdf_path`` without ``html_path``, before replaying."""
    from board.run import Board  # the board's plotting libraries load only for a replay

    Board.check_paths(html_path, pdf_path)
    board = parts.board(settings)
    names = [events] if isinstance(events, str) else list(events)
    if settings.pseudonym_key is None:
        console.print(
            "[yellow]warning:[/] PATHWATCH_PSEUDONYM_KEY is not set; using the fixed development key "
            "(pseudonyms are not protected)"
        )
    engine = Engine(core_config(settings), system_rules)
    try:
        seen = _read(names, engine, parts.decoder(settings, live=False), settings, console)
    except OSError as exc:
        console.print(f"[red]error:[/] cannot read {exc.filename or ', '.join(names)}: {exc.strerror or exc}")
        return 2
    engine.finish()
    report = engine.report()
    report["events"]["unlinked"] = seen.unlinked
    if spc is not None:
        report.update(spc_sections(report, engine.windows, spc, engine.changes.changes()))
    report.update(strata_sections(engine.windows))  # the board's counts by stratum (docs/board.md)
    report.update(board.sections(report))
    if report_path is not None:
        try:
            report_path.write_bytes(dumps_report(report))
        except OSError as exc:
            console.print(f"[red]error:[/] cannot write {report_path}: {exc.strerror or exc}")
            return 2
    if html_path is not None and not write_board(board, report, html_path, pdf_path, events, console):
        return 2
    render_summary(report, console, settings.small_cell)
    line = _summary_line(seen)
    if line is not None:
        console.print(line, markup=False, highlight=False)
    if report_path is not None:
        console.print(f"report written to {report_path}")
    if html_path is not None:
        console.print(f"board report written to {html_path}" + (f" and {pdf_path}" if pdf_path else ""))
    status, hint = replay_verdict(report, " ".join(names))
    if hint is not None:
        console.print(f"[yellow]warning:[/] {hint}", soft_wrap=True)
    return status


def _read(names: list[str], engine: Engine, decoder: Decoder, settings: Settings, console: Console) -> ReplayInput:
    """Feed the inputs to ``engine``: one JSON-lines input as a stream (with a progress bar
    for a large file), anything else through the adapters. Raises ``OSError``."""
    if len(names) == 1 and names[0] == "-" and _stdin_is_json_lines():
        replay_stream(sys.stdin.buffer, engine, decoder, "-")
    elif len(names) == 1 and names[0] != "-" and _is_json_lines(Path(names[0])):
        path = Path(names[0])
        size = path.stat().st_size
        with path.open("rb") as stream:
            if size >= PROGRESS_MIN_BYTES:
                columns = (TextColumn("replay"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
                with Progress(*columns, console=console, transient=True) as progress:
                    task = progress.add_task("replay", total=size)
                    replay_stream(stream, engine, decoder, path.name, lambda done: progress.update(task, completed=done))
            else:
                replay_stream(stream, engine, decoder, path.name)
    else:
        return replay_files(names, engine, decoder, parts.adapter_options(settings))
    return ReplayInput()


def _summary_line(seen: ReplayInput) -> str | None:
    if not seen.adapted and not seen.nothing_to_publish:
        return None
    built = sum(seen.adapted.values())
    by_source = Counter({source: n for (source, linked), n in seen.adapted.items() if not linked})
    line = f"hospital events: {built} built from HL7/FHIR, {seen.unlinked} without a linking identifier"
    if by_source:
        line += " (" + ", ".join(f"{source}: {n}" for source, n in sorted(by_source.items())) + ")"
    return line + f"; {seen.nothing_to_publish} record(s) with nothing to publish"


def _stdin_is_json_lines() -> bool:
    """True unless standard input can be peeked at and starts like HL7 or FHIR."""
    peek = getattr(sys.stdin.buffer, "peek", None)
    return peek is None or detect_format("-", peek(65536)[:65536]) == "events"


def _is_json_lines(path: Path) -> bool:
    """True when ``path`` holds JSON lines of events (read as a stream); raises ``OSError``."""
    with path.open("rb") as stream:
        head = stream.read(65536)
    return detect_format(str(path), head) == "events"

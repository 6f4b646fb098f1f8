"""``pathwatch replay EVENTS --report REPORT.json``: the core over a file of JSON lines.

Reads CloudEvents JSON lines in arrival order from a path or ``-`` (standard input), decodes
each with :class:`schemas.decode.Decoder` (validation and pseudonymisation), runs them through
:class:`streams.engine.Engine` on partition 0, and writes the section 6 report. Lines that
hold only whitespace are skipped (a trailing newline is not an event); every other line is
either an event or a counted dead letter.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from pathwatch.config import Settings
from schemas.deadletter import DeadLetter
from schemas.decode import Decoder
from streams.core import CoreConfig
from streams.engine import Engine, SystemRules
from streams.report import dumps_report, render_summary

PROGRESS_MIN_BYTES = 8 * 1024 * 1024
_PROGRESS_EVERY = 4096
_BLANK = frozenset(b" \t\r\n\x0b\x0c")


def replay_stream(
    stream: BinaryIO,
    engine: Engine,
    decoder: Decoder,
    name: str,
    progress: Progress | None = None,
    task: int | None = None,
) -> None:
    """Feed every line of ``stream`` to ``engine`` (does not call ``finish``)."""
    feed = engine.feed
    decode = decoder.decode_line
    done = 0
    show = progress is not None and task is not None
    for number, line in enumerate(stream, start=1):
        done += len(line)
        raw = line.rstrip(b"\r\n")
        if not raw or (raw[0] in _BLANK and not raw.strip()):
            continue
        result = decode(raw, name, number)
        if type(result) is DeadLetter:
            engine.feed_dead_letter(result)
        else:
            feed(result)  # type: ignore[arg-type]
        if show and number % _PROGRESS_EVERY == 0:
            progress.update(task, completed=done)  # type: ignore[arg-type, union-attr]
    if progress is not None and task is not None:
        progress.update(task, completed=done)  # type: ignore[arg-type]


def run_replay(
    events: str,
    report_path: Path | None,
    settings: Settings,
    console: Console,
    system_rules: SystemRules | None = None,
    html_path: Path | None = None,
    pdf_path: Path | None = None,
) -> int:
    """Replay ``events`` (a path or ``-``), write the JSON report to ``report_path`` if given,
    the board report to ``html_path`` (and its print to ``pdf_path``) if given, print a
    summary. Returns the exit status: 0 done, 2 when the input cannot be read or a report
    cannot be written. Raises ValueError for a bad cost table or ``pdf_path`` without
    ``html_path``, before replaying."""
    from board.run import Board  # the board's plotting libraries load only for a replay

    if pdf_path is not None and html_path is None:
        raise ValueError("--pdf prints the board report: give --html FILE too")
    board = Board.from_settings(settings)
    if settings.pseudonym_key is None:
        console.print(
            "[yellow]warning:[/] PATHWATCH_PSEUDONYM_KEY is not set; using the fixed development key "
            "(pseudonyms are not protected)"
        )
    decoder = Decoder(settings.pseudonym_key_bytes(live=False), settings.max_message_bytes)
    engine = Engine(CoreConfig.from_settings(settings), system_rules)
    try:
        if events == "-":
            replay_stream(sys.stdin.buffer, engine, decoder, "-")
        else:
            path = Path(events)
            size = path.stat().st_size
            with path.open("rb") as stream:
                if size >= PROGRESS_MIN_BYTES:
                    columns = (
                        TextColumn("replay"), BarColumn(), DownloadColumn(), TimeRemainingColumn()
                    )
                    with Progress(*columns, console=console, transient=True) as progress:
                        task = progress.add_task("replay", total=size)
                        replay_stream(stream, engine, decoder, path.name, progress, task)
                else:
                    replay_stream(stream, engine, decoder, path.name)
    except OSError as exc:
        console.print(f"[red]error:[/] cannot read {events}: {exc.strerror or exc}")
        return 2
    engine.finish()
    report = engine.report()
    report.update(board.sections(report))
    if report_path is not None:
        try:
            report_path.write_bytes(dumps_report(report))
        except OSError as exc:
            console.print(f"[red]error:[/] cannot write {report_path}: {exc.strerror or exc}")
            return 2
    if html_path is not None:
        try:
            board.write(report, html_path, pdf_path, events)
        except (OSError, RuntimeError) as exc:
            console.print(f"[red]error:[/] cannot write the board report: {exc}")
            return 2
    render_summary(report, console, settings.small_cell)
    if report_path is not None:
        console.print(f"report written to {report_path}")
    if html_path is not None:
        console.print(f"board report written to {html_path}" + (f" and {pdf_path}" if pdf_path else ""))
    return 0

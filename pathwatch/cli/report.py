"""``pathwatch report --from-live``: the live workers' state as a replay-style report and summary."""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime
from pathlib import Path

from rich.console import Console

from pathwatch import parts
from pathwatch.cli.summary import render_summary, write_board
from pathwatch.config import Settings
from pathwatch.parts import core_config
from streams.live_report import END, live_report
from streams.report import SpcParts, dumps_report
from streams.topics import check_kafka


def run(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    return run_live_report(
        settings, console, args.report, args.until, args.timeout, spc=parts.spc_parts(settings), html_path=args.html,
        pdf_path=args.pdf,
    )


def run_live_report(
    settings: Settings,
    console: Console,
    report_path: Path | None,
    until: str | None,
    timeout: float,
    spc: SpcParts | None = None,
    html_path: Path | None = None,
    pdf_path: Path | None = None,
) -> int:
    """Print the summary ``replay`` prints, and write the
    JSON report to ``report_path`` if given, with ``spc`` and ``changes`` (given ``spc``) and the board's
    sections as ``replay`` writes them, and the board page to ``html_path`` (its print to
    ``pdf_path``) if given. ``until`` is RFC 3339 or ``end`` (the largest event time seen).
    Returns 0, or 2 when the board page cannot be written; raises ``ValueError`` (exit 2) for
    a bad ``until``, a bad cost table, ``pdf_path`` without ``html_path`` or an unreachable
    Kafka, ``TimeoutError`` when the workers do not answer."""
    from board.run import Board  # the board's plotting libraries load only for a report

    Board.check_paths(html_path, pdf_path)
    board = parts.board(settings)
    moment: datetime | str | None = None
    if until == END:
        moment = END
    elif until:
        try:
            moment = datetime.fromisoformat(until)
        except ValueError:
            raise ValueError(f"--until {until!r} is neither an RFC 3339 time nor 'end'") from None
        if moment.tzinfo is None:
            raise ValueError(f"--until {until!r} needs an offset (RFC 3339), e.g. {until}+00:00")
    check_kafka(settings)
    try:
        report = asyncio.run(live_report(settings, moment, timeout, config=core_config(settings), spc=spc))
    except TimeoutError:
        raise ValueError(
            f"the workers did not answer within {timeout:g} s (--timeout): is a `pathwatch worker` running "
            "against this Kafka (PATHWATCH_KAFKA_BOOTSTRAP)?"
        ) from None
    report.update(board.sections(report))
    if html_path is not None and not write_board(board, report, html_path, pdf_path, None, console):
        return 2
    render_summary(report, console, settings.small_cell)
    if isinstance(moment, datetime) and report["watermark"] is not None:
        watermark = datetime.fromisoformat(report["watermark"])
        if watermark > moment:
            console.print(
                f"[yellow]note:[/] the live watermark {report['watermark']} is already past --until {until}, "
                "which so changed nothing; --until end advances to the largest event time seen",
                soft_wrap=True,
            )
    if report_path is not None:
        report_path.write_bytes(dumps_report(report))
        console.print(f"report written to {report_path}", soft_wrap=True)
    if html_path is not None:
        console.print(f"board report written to {html_path}" + (f" and {pdf_path}" if pdf_path else ""), soft_wrap=True)
    return 0

"""``pathwatch deadletters``: count dead letters by kind and reason, show them, and re-publish
chosen ones after a fix. Previews never show a value (``streams.deadletters.preview``); the
original is printed only with ``--show-original``, after a warning."""

from __future__ import annotations

import argparse
import asyncio

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pathwatch.config import Settings
from schemas.pseudonym import Pseudonymiser
from streams.deadletters import (
    REASON_TABLE_CHARS,
    Selection,
    StoredDeadLetter,
    count_by_reason,
    distinct,
    preview,
    read_dead_letters,
    republish_plan,
    send_plan,
    short,
)
from streams.topics import check_kafka


def run(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    selection = Selection(tuple(args.kind), tuple(args.reason), tuple(args.origin))
    return run_deadletters(
        settings, console, show=args.show, show_original=args.show_original, selection=selection,
        republish=args.republish, republish_all=args.all, to=args.to, timeout=args.timeout,
    )


def print_counts(records: list[StoredDeadLetter], console: Console, title: str) -> None:
    table = Table(title=title)
    table.add_column("kind")
    table.add_column("reason")
    table.add_column("count", justify="right")
    for kind, reason, n in count_by_reason(records):
        table.add_row(kind, escape(short(reason, REASON_TABLE_CHARS)), f"{n:,}")
    console.print(table)


def print_records(records: list[StoredDeadLetter], console: Console, show_original: bool) -> None:
    for r in records:
        letter = r.letter
        cut = f" (cut: {len(letter.original):,} of {r.original_length:,} bytes kept)" if r.cut else ""
        console.print(
            f"[bold]#{r.offset}[/bold] {letter.kind.value} from {escape(letter.origin.describe())}"
            f" at {escape(letter.path or '-')}: {escape(letter.reason)}",
            soft_wrap=True,
        )
        console.print(f"    preview: {escape(preview(letter.original))}{cut}", soft_wrap=True)
        if show_original:
            text = letter.original.decode("utf-8", "replace").replace("\r", "\n")
            console.print("    original:", soft_wrap=True)
            console.print(escape(text), soft_wrap=True, highlight=False)


SHOW_ORIGINAL_WARNING = (
    "warning: --show-original prints rejected input as received: it may hold client identifiers "
    "(names, record numbers, dates of birth). Do not copy it into tickets, chat or logs."
)


def run_deadletters(
    settings: Settings,
    console: Console,
    *,
    show: int = 0,
    show_original: bool = False,
    selection: Selection | None = None,
    republish: bool = False,
    republish_all: bool = False,
    to: str | None = None,
    timeout: float = 60.0,
) -> int:
    """Counts by kind and reason, ``show`` records, and with
    ``republish`` sends the selected ones again. Returns 0, or 1 when ``republish`` matched
    nothing it could send. Raises ``ValueError`` for a ``republish`` without a selection
    (``republish_all`` is the explicit "everything")."""
    selection = selection or Selection()
    if republish and selection.empty and not republish_all:
        raise ValueError("--republish needs --kind, --reason or --origin to choose dead letters (or --all)")
    check_kafka(settings)
    stored, unreadable = asyncio.run(read_dead_letters(settings, timeout))
    unique = distinct(stored)
    chosen = [r for r in unique if selection(r)]
    repeats = len(stored) - len(unique)
    console.print(
        f"{settings.topics.dead_letters}: {len(unique):,} dead letters"
        + (f" ({repeats:,} sent again after a restart, counted once)" if repeats else "")
        + (f", {unreadable:,} records that are not dead letters" if unreadable else ""),
        soft_wrap=True,
    )
    if not unique:
        return 0
    print_counts(chosen, console, "Dead letters by reason" + ("" if selection.empty else " (selected)"))
    if show:
        if show_original:
            Console(stderr=True).print(f"[yellow]{SHOW_ORIGINAL_WARNING}[/yellow]", soft_wrap=True)
        print_records(chosen[:show], console, show_original)
    if not republish:
        return 0
    pseudonymiser = None
    if (to or settings.topics.events) == settings.topics.events:
        pseudonymiser = Pseudonymiser(settings.pseudonym_key_bytes(live=True))
    plan, result = republish_plan(chosen, settings, to, pseudonymiser)
    if plan:
        asyncio.run(send_plan(settings, plan))
    sent = ", ".join(f"{topic}: {n:,}" for topic, n in sorted(result.sent.items())) or "none"
    skipped = []
    if result.cut:
        skipped.append(f"{result.cut:,} cut to fit the topic (not the original any more)")
    if result.no_topic:
        skipped.append(f"{result.no_topic:,} not from an input topic (use --to TOPIC)")
    console.print(
        f"re-published {len(plan):,} of {len(chosen):,} selected dead letters ({sent})"
        + (f"; skipped {'; '.join(skipped)}" if skipped else ""),
        soft_wrap=True,
    )
    return 0 if plan else 1



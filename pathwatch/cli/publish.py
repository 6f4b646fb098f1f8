"""``pathwatch publish FILE``: load events into the input topics, as a partner system would."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from aiokafka.errors import KafkaError
from kafka.errors import KafkaError as AdminKafkaError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from pathwatch.config import Settings
from streams.publish import Progress as OnProgress
from streams.publish import publish
from streams.topics import STACK_HINT

PROGRESS_MIN_RECORDS = 1000
"""Files with fewer records publish without a progress bar."""


def run(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    return run_publish(args.file, settings, console, fmt=args.format)


def run_publish(file: str, settings: Settings, console: Console, fmt: str = "auto") -> int:
    """Publish ``file``: exit status 0 when everything was acknowledged by the broker, 1 when
    the file holds no records. Raises ``ValueError`` (the CLI prints it, exit 2) for an
    unreadable file, an unreachable broker or a failed send."""
    try:
        with _progress_bar(console) as on_progress:
            count = asyncio.run(publish(settings, file, fmt, on_progress))
    except (KafkaError, AdminKafkaError) as exc:
        raise ValueError(f"Kafka at {settings.kafka_bootstrap} failed: {exc}; {STACK_HINT}") from None
    if count == 0:
        console.print(f"[yellow]nothing published:[/] {file} holds no records", soft_wrap=True)
        return 1
    console.print(f"[green]published {count:,} records[/green]")
    return 0


@contextmanager
def _progress_bar(console: Console) -> Iterator[OnProgress]:
    """A transient progress bar, shown once a file of at least ``PROGRESS_MIN_RECORDS`` reports."""
    bar: Progress | None = None
    task: TaskID | None = None

    def on_progress(topic: str, done: int, total: int) -> None:
        nonlocal bar, task
        if total < PROGRESS_MIN_RECORDS:
            return
        if bar is None:
            columns = (TextColumn(f"publishing to {topic}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            bar = Progress(*columns, console=console, transient=True)
            bar.start()
            task = bar.add_task("publish", total=total)
        if task is not None:
            bar.update(task, completed=done)

    try:
        yield on_progress
    finally:
        if bar is not None:
            bar.stop()

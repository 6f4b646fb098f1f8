"""``pathwatch change add``: record a service change (for the charts and "did it work?")."""

from __future__ import annotations

import argparse
from zoneinfo import ZoneInfo

from rich.console import Console

from pathwatch import parts
from pathwatch.config import Settings
from streams.changes import change_event, publish_change, write_change


def run(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Build and check one change, then append it to ``--out`` or, without it, publish it to
    the changes topic (exit 0). Raises ``ValueError`` (exit 2) when the change is refused,
    ``--out`` cannot be written or Kafka fails."""
    measures = [m.strip() for m in args.measures.split(",") if m.strip()] if args.measures else None
    event = change_event(
        args.team, measures, args.date, args.description, ZoneInfo(settings.timezone),
        args.expected_direction, args.change_id,
    )
    decoder = parts.decoder(settings, live=False)
    if args.out is None:
        publish_change(event, decoder, settings)
        console.print(
            f"change {event['data']['change_id']} published to {settings.topics.changes}", markup=False, highlight=False
        )
        return 0
    try:
        write_change(event, decoder, args.out)
    except OSError as exc:
        raise ValueError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    if str(args.out) != "-":
        console.print(f"change {event['data']['change_id']} appended to {args.out}", markup=False, highlight=False)
    return 0

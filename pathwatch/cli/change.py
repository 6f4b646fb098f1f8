"""``pathwatch change add`` and ``pathwatch change cancel``: record a service change (for the
charts and "did it work?"), or withdraw one."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from rich.console import Console

from pathwatch import parts
from pathwatch.config import Settings
from streams.changes import cancel_event, change_event, file_changes, publish_change, write_change


def run(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Build and check one change, then append it to ``--out`` or, without it, publish it to
    the changes topic (exit 0). Raises ``ValueError`` (exit 2) when the change is refused,
    ``--out`` cannot be written or Kafka fails."""
    if args.change_command == "cancel":
        return cancel(args, settings, console)
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


def cancel(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Withdraw change ``args.change_id``: find the event of it that stands (in ``--out``, or
    on the changes topic) and append or publish a ``cancel`` naming it (exit 0). Raises
    ``ValueError`` (exit 2) when no such change stands, or the file or Kafka fails."""
    decoder = parts.decoder(settings, live=False)
    change_id = args.change_id
    if args.out is not None:
        try:
            register, raw_ids = file_changes(args.out, decoder)
        except OSError as exc:
            raise ValueError(f"cannot read {args.out}: {exc.strerror or exc}") from None
        where = str(args.out)
    else:
        from streams.live_changes import read_changes
        from streams.topics import check_kafka

        check_kafka(settings)
        found = asyncio.run(read_changes(settings.kafka_bootstrap, settings.topics.changes, decoder))
        register, raw_ids = found.register(), found.raw_ids
        where = f"the changes topic {settings.topics.changes}"
    target = register.standing(change_id)
    if target is None or target.key not in raw_ids:
        raise ValueError(f"no change {change_id!r} stands in {where} (already cancelled, or never recorded)")
    event = cancel_event(target, raw_ids[target.key], datetime.now(UTC), args.reason)
    if args.out is None:
        publish_change(event, decoder, settings, change_id=change_id)
        console.print(f"change {change_id} withdrawn: cancel published to {settings.topics.changes}", markup=False, highlight=False)
        return 0
    try:
        write_change(event, decoder, args.out)
    except OSError as exc:
        raise ValueError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    console.print(f"change {change_id} withdrawn: cancel appended to {args.out}", markup=False, highlight=False)
    return 0

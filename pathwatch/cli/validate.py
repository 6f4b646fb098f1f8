"""``pathwatch validate FILE``: check a file of events, HL7 v2 messages or FHIR resources and
print each invalid record with its line (or message) number and reason, then a summary."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from rich.console import Console

from pathwatch import parts
from pathwatch.config import Settings
from schemas.validate import FORMATS, check_input


def run(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    return run_validate(args.file, settings, console, fmt=args.format)


def run_validate(path: str, settings: Settings, console: Console, fmt: str = "auto") -> int:
    """Validate ``path`` (``-`` for standard input) and print per-record errors and a summary.

    ``fmt`` is ``auto`` (by extension and content), ``events`` (JSON lines), ``hl7`` or
    ``fhir`` (one resource or Bundle per file, or NDJSON). Records are read as ``publish``
    sends them (:func:`schemas.validate.read_input`) and checked as a worker handles them
    (:func:`schemas.validate.check_input`). Returns 0 when every record is valid, 1 when any is invalid, 2 when
    the file cannot be read or ``fmt`` is unknown.
    """
    if fmt not in FORMATS:
        console.print(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}", markup=False, highlight=False)
        return 2
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        console.print(f"cannot read {path}: {exc.strerror or exc}", markup=False, highlight=False)
        return 2
    checked = check_input(path, data, parts.decoder(settings, live=False), parts.adapter_options(settings), fmt)
    for note in checked.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for result in checked.records:
        counts["records"] += 1
        if not result.events and not result.dead_letters:
            counts["ignored"] += 1
            continue
        counts["events"] += len(result.events)
        if not result.dead_letters:
            counts["valid"] += 1
            continue
        counts["invalid"] += 1
        for problem in result.dead_letters:
            reasons[problem.kind.value] += 1
            console.print(
                f"{result.record.label}: {problem.kind.value}: {problem.reason}", markup=False, highlight=False
            )
    summary = (
        f"{path}: {counts['records']} {checked.kind} record(s): {counts['valid']} valid "
        f"({counts['events']} event(s)), {counts['invalid']} invalid, {counts['ignored']} with nothing to publish"
    )
    if reasons:
        summary += " [" + ", ".join(f"{name}: {n}" for name, n in sorted(reasons.items())) + "]"
    console.print(summary, markup=False, highlight=False)
    return 1 if counts["invalid"] else 0



"""``pathwatch validate FILE``: check a file of events, HL7 v2 messages or FHIR resources.

Every record goes through the same path as live input (adapter, then
:class:`schemas.decode.Decoder`); each rejected record is printed with its line (or message)
number and its reason, then a summary. Output never holds a raw subject: reasons are
redacted and accepted events are only counted.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec
from rich.console import Console

from schemas.adapters import AdapterOptions
from schemas.deadletter import DeadLetter, Origin
from schemas.decode import Decoder
from schemas.fhir import FHIRAdapter
from schemas.hl7 import HL7Adapter, split_messages

if TYPE_CHECKING:
    from pathwatch.config import Settings

FORMATS: Final = ("auto", "events", "hl7", "fhir")
_HL7_STARTS: Final = (b"\x0b", b"MSH", b"FHS", b"BHS")


@dataclass(frozen=True, slots=True)
class _Record:
    label: str
    origin: Origin
    raw: bytes


def detect_format(path: str, head: bytes) -> str:
    """``events``, ``hl7`` or ``fhir`` from the extension and the first bytes of the file."""
    suffix = Path(path).suffix.lower()
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if suffix == ".hl7" or start.startswith(_HL7_STARTS):
        return "hl7"
    first_line = start.split(b"\n", 1)[0]
    for candidate in (start, first_line):
        try:
            doc = msgspec.json.decode(candidate)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
            continue
        if isinstance(doc, dict) and "resourceType" in doc:
            return "fhir"
        return "events"
    return "events"


def run_validate(path: str, settings: Settings, console: Console, fmt: str = "auto") -> int:
    """Validate ``path`` (``-`` for standard input) and print per-record errors and a summary.

    ``fmt`` is ``auto`` (by extension and content), ``events`` (JSON lines), ``hl7`` or
    ``fhir`` (one resource or Bundle per file, or NDJSON). Returns 0 when every record is
    valid, 1 when any is invalid, 2 when the file cannot be read or ``fmt`` is unknown.
    """
    if fmt not in FORMATS:
        console.print(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}", markup=False, highlight=False)
        return 2
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        console.print(f"cannot read {path}: {exc.strerror or exc}", markup=False, highlight=False)
        return 2
    kind = detect_format(path, data[:65536]) if fmt == "auto" else fmt
    decoder = Decoder(settings.pseudonym_key_bytes(live=False), settings.max_message_bytes)
    options = AdapterOptions.from_settings(settings)
    hl7, fhir = HL7Adapter(options), FHIRAdapter(options)
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for record in _records(path, data, kind):
        counts["records"] += 1
        if len(record.raw) > decoder.max_bytes:
            lines: list[bytes] | DeadLetter = [record.raw]  # the decoder reports it as oversized
        elif kind == "hl7":
            lines = hl7.convert(record.raw, record.origin)
        elif kind == "fhir":
            lines = fhir.convert(record.raw, record.origin)
        else:
            lines = [record.raw]
        if not isinstance(lines, DeadLetter) and not lines:
            counts["ignored"] += 1
            continue
        problem = lines if isinstance(lines, DeadLetter) else _first_dead_letter(decoder, lines, record.origin)
        if problem is None:
            counts["valid"] += 1
            counts["events"] += len(lines) if isinstance(lines, list) else 0
            continue
        counts["invalid"] += 1
        reasons[problem.kind.value] += 1
        console.print(f"{record.label}: {problem.kind.value}: {problem.reason}", markup=False, highlight=False)
    summary = (
        f"{path}: {counts['records']} {kind} record(s): {counts['valid']} valid "
        f"({counts['events']} event(s)), {counts['invalid']} invalid, {counts['ignored']} with nothing to publish"
    )
    if reasons:
        summary += " [" + ", ".join(f"{name}: {n}" for name, n in sorted(reasons.items())) + "]"
    console.print(summary, markup=False, highlight=False)
    return 1 if counts["invalid"] else 0


def _first_dead_letter(decoder: Decoder, lines: list[bytes], origin: Origin) -> DeadLetter | None:
    for line in lines:
        result = decoder.decode(line, origin)
        if isinstance(result, DeadLetter):
            return result
    return None


def _records(path: str, data: bytes, kind: str) -> Iterator[_Record]:
    name = "-" if path == "-" else path
    if kind == "hl7":
        for number, (line, message) in enumerate(split_messages(data), start=1):
            yield _Record(f"message {number} (line {line})", Origin(file=name, line=line), message)
        return
    if kind == "fhir" and not _is_ndjson(data):
        yield _Record(name, Origin(file=name), data)
        return
    for number, text in enumerate(data.split(b"\n"), start=1):
        if text.strip():
            yield _Record(f"line {number}", Origin(file=name, line=number), text.rstrip(b"\r"))


def _is_ndjson(data: bytes) -> bool:
    try:
        msgspec.json.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return True
    return False

"""Checking a file of events, HL7 v2 messages or FHIR resources (the command
``pathwatch validate FILE``: :mod:`pathwatch.cli.validate`).

A file is split into records the one way ``publish`` also uses (:func:`read_input`: JSON
lines, HL7 v2 messages, a FHIR document or one per NDJSON line; a UTF-8 byte order mark at the
start is stripped, with a note), and every record goes through the same path as live input
(adapter, then :class:`schemas.decode.Decoder`): :func:`check_input` returns each record's
events and dead letters, and the command prints each dead letter with its line (or message)
number and its reason, then a summary. Output never holds a raw subject: reasons are redacted
and accepted events are only counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from schemas.adapters import AdapterOptions
from schemas.deadletter import DeadLetter, Origin
from schemas.decode import Decoder
from schemas.fhir import FHIRAdapter
from schemas.hl7 import HL7Adapter, split_messages
from schemas.model import Event

FORMATS: Final = ("auto", "events", "hl7", "fhir")
_HL7_STARTS: Final = (b"\x0b", b"MSH", b"FHS", b"BHS")


BOM: Final = b"\xef\xbb\xbf"
"""The UTF-8 byte order mark. At the start of a file it is stripped (with a note); at the start
of a message the decoder ignores it (RFC 8259 allows a parser to)."""
DETECT_BYTES: Final = 65536


@dataclass(frozen=True, slots=True)
class Record:
    """One input record of a file: one JSON line, HL7 v2 message, FHIR document or NDJSON line."""

    label: str
    origin: Origin
    raw: bytes


@dataclass(frozen=True, slots=True)
class InputFile:
    """A file split into the records ``publish`` sends and ``validate`` checks (one each)."""

    kind: str
    records: list[Record]
    notes: list[str]


@dataclass(frozen=True, slots=True)
class Checked:
    """What the live path makes of one record: its accepted events and its dead letters
    (both empty: nothing to publish)."""

    record: Record
    events: list[Event]
    dead_letters: list[DeadLetter]


@dataclass(frozen=True, slots=True)
class CheckedInput:
    kind: str
    records: list[Checked]
    notes: list[str]


def read_input(path: str, data: bytes, fmt: str = "auto") -> InputFile:
    """Split ``data`` (the contents of ``path``; ``-`` for standard input) into records, the one
    way ``validate`` and ``publish`` both read files.

    ``fmt`` is ``auto`` (by extension and the first 64 KiB), ``events`` (one record per
    non-blank line), ``hl7`` (one per message) or ``fhir`` (the whole document, or one per
    non-blank line of NDJSON). A UTF-8 byte order mark at the start of the file is stripped and
    noted. Raises ``ValueError`` for an unknown ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    notes = []
    if data.startswith(BOM):
        data = data[len(BOM) :]
        notes.append("a UTF-8 byte order mark at the start of the file was ignored")
    kind = detect_format(path, data[:DETECT_BYTES]) if fmt == "auto" else fmt
    return InputFile(kind, list(_records(path, data, kind)), notes)


def check_input(
    path: str, data: bytes, decoder: Decoder, options: AdapterOptions, fmt: str = "auto"
) -> CheckedInput:
    """Every record of the file through the live path (the adapters built with ``options``,
    then ``decoder``), without stopping at the first bad line of a record. Raises
    ``ValueError`` for an unknown ``fmt``."""
    read = read_input(path, data, fmt)
    hl7, fhir = HL7Adapter(options), FHIRAdapter(options)
    out = []
    for record in read.records:
        if read.kind == "hl7" and len(record.raw) <= decoder.max_bytes:
            lines: list[bytes] | DeadLetter = hl7.convert(record.raw, record.origin)
        elif read.kind == "fhir" and len(record.raw) <= decoder.max_bytes:
            lines = fhir.convert(record.raw, record.origin)
        else:
            lines = [record.raw]  # an oversized message is reported by the decoder as such
        if isinstance(lines, DeadLetter):
            out.append(Checked(record, [], [lines]))
            continue
        results = [decoder.decode(line, record.origin) for line in lines]
        events = [r for r in results if isinstance(r, Event)]
        out.append(Checked(record, events, [r for r in results if isinstance(r, DeadLetter)]))
    return CheckedInput(read.kind, out, read.notes)


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


def _records(path: str, data: bytes, kind: str) -> Iterator[Record]:
    name = "-" if path == "-" else path
    if kind == "hl7":
        for number, (line, message) in enumerate(split_messages(data), start=1):
            yield Record(f"message {number} (line {line})", Origin(file=name, line=line), message)
        return
    if kind == "fhir" and not _is_ndjson(data):
        yield Record(name, Origin(file=name), data)
        return
    for number, text in enumerate(data.split(b"\n"), start=1):
        if text.strip():
            yield Record(f"line {number}", Origin(file=name, line=number), text.rstrip(b"\r"))


def _is_ndjson(data: bytes) -> bool:
    try:
        msgspec.json.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return True
    return False

"""The core over files of events (the command ``pathwatch replay FILE... --report REPORT.json``:
:mod:`pathwatch.cli.replay`).

One file of CloudEvents JSON lines (a path or ``-``, standard input) is read in arrival order,
line by line, as before: each line is decoded with :class:`schemas.decode.Decoder`
(validation and pseudonymisation) and run through :class:`streams.engine.Engine` on
partition 0. Lines that hold only whitespace are skipped (a trailing newline is not an
event); every other line is either an event or a counted dead letter.

HL7 v2 files and FHIR files (one resource or Bundle, or NDJSON), and several files at once in
any mix, go through :func:`replay_files`: each record through the same adapters and
identifier policy as the live ingestion (:class:`schemas.hl7.HL7Adapter`,
:class:`schemas.fhir.FHIRAdapter`, built with the options given), then the decoder. Files are merged
in a deterministic order that keeps each file's own order: a k-way merge by the time each
record was sent (HL7 MSH-7, FHIR ``meta.lastUpdated`` (a Bundle's own, else its
``timestamp``, else its first entry's), JSON lines ``time``); a record without a readable
sent time takes the previous record's of its file (the file's first records: the earliest
possible time); ties go to the file named first, then to the earlier record of the file.
Each file's format is detected as ``pathwatch validate`` detects it.
"""

from __future__ import annotations

import heapq
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo

import msgspec

from schemas import fhir, hl7
from schemas.adapters import AdapterOptions
from schemas.deadletter import DeadLetter, Origin
from schemas.decode import Decoder
from schemas.validate import detect_format
from streams.engine import Engine, replay_gc

PROGRESS_MIN_BYTES = 8 * 1024 * 1024
_PROGRESS_EVERY = 4096
_BLANK = frozenset(b" \t\r\n\x0b\x0c")
_EARLIEST = datetime.min.replace(tzinfo=UTC)


class _Time(msgspec.Struct):
    time: str | None = None


_time_of = msgspec.json.Decoder(_Time)


@dataclass(frozen=True, slots=True)
class Record:
    """One record of an input file: when it was sent (the merge key), its format, bytes and origin."""

    sent: datetime
    kind: str  # "events", "hl7" or "fhir"
    raw: bytes
    origin: Origin


@dataclass(slots=True)
class ReplayInput:
    """What the adapters saw in a replay: records with nothing to publish, and the events
    they built by ``source`` and whether the subject is linked (the identifier policy)."""

    nothing_to_publish: int = 0
    adapted: Counter[tuple[str, bool]] = field(default_factory=Counter)

    def count_subject(self, source: str, linked: bool) -> None:
        self.adapted[(source, linked)] += 1

    @property
    def unlinked(self) -> int:
        return sum(n for (_, linked), n in self.adapted.items() if not linked)


@replay_gc()
def replay_stream(
    stream: BinaryIO,
    engine: Engine,
    decoder: Decoder,
    name: str,
    on_progress: Callable[[int], object] | None = None,
) -> None:
    """Feed every line of ``stream`` to ``engine`` (does not call ``finish``); ``on_progress``
    is told the bytes read so far every few thousand lines and at the end."""
    feed = engine.feed
    decode = decoder.decode_line
    done = 0
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
        if on_progress is not None and number % _PROGRESS_EVERY == 0:
            on_progress(done)
    if on_progress is not None:
        on_progress(done)


def _sent_of_line(raw: bytes, tz: tzinfo) -> datetime | None:
    try:
        text = _time_of.decode(raw).time
        parsed = datetime.fromisoformat(text) if text else None
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return None
    return parsed if parsed is None or parsed.tzinfo is not None else parsed.replace(tzinfo=tz)


def _read(name: str) -> bytes:
    return sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()


def file_records(name: str, data: bytes, tz: tzinfo) -> Iterator[Record]:
    """The records of one file, in file order, each with its sent time (see the module
    docstring); ``data`` is the whole file."""
    kind = detect_format(name, data[:65536])
    file = "-" if name == "-" else Path(name).name
    last = _EARLIEST
    if kind == "hl7":
        for line, message in hl7.split_messages(data):
            last = hl7.sent_time(message, tz) or last
            yield Record(last, kind, message, Origin(file=file, line=line))
        return
    if kind == "fhir" and _one_document(data):
        yield Record(fhir.sent_time(data, tz) or last, kind, data, Origin(file=file))
        return
    for number, text in enumerate(data.split(b"\n"), start=1):
        raw = text.rstrip(b"\r")
        if not raw.strip():
            continue
        sent = fhir.sent_time(raw, tz) if kind == "fhir" else _sent_of_line(raw, tz)
        last = sent or last
        yield Record(last, kind, raw, Origin(file=file, line=number))


def _one_document(data: bytes) -> bool:
    try:
        msgspec.json.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return False
    return True


def merge_records(files: Sequence[tuple[str, bytes]], tz: tzinfo) -> Iterator[Record]:
    """The records of ``files`` ((name, whole content) each) in replay order: by sent time,
    each file's own order kept, ties to the file named first (``heapq.merge`` is stable)."""
    return heapq.merge(*(file_records(name, data, tz) for name, data in files), key=lambda r: r.sent)


@replay_gc()
def replay_files(
    names: Sequence[str], engine: Engine, decoder: Decoder, options: AdapterOptions
) -> ReplayInput:
    """Feed every record of ``names`` (paths, ``-`` for standard input) to ``engine`` in the
    merged order of the module docstring (does not call ``finish``). Raises ``OSError`` when a
    file cannot be read (before anything is fed)."""
    seen = ReplayInput()
    adapters: dict[str, Callable[[bytes, Origin], list[bytes] | DeadLetter]] = {
        "hl7": hl7.HL7Adapter(options, seen.count_subject).convert,
        "fhir": fhir.FHIRAdapter(options, seen.count_subject).convert,
    }
    files = [(name, _read(name)) for name in names]
    for record in merge_records(files, ZoneInfo(options.timezone)):
        convert = adapters.get(record.kind)
        if convert is None or len(record.raw) > decoder.max_bytes:  # the decoder names it oversized
            lines: list[bytes] | DeadLetter = [record.raw]
        else:
            lines = convert(record.raw, record.origin)
        if isinstance(lines, DeadLetter):
            engine.feed_dead_letter(lines)
            continue
        if not lines:
            seen.nothing_to_publish += 1
        for line in lines:
            result = decoder.decode(line, record.origin)
            if isinstance(result, DeadLetter):
                engine.feed_dead_letter(result)
            else:
                engine.feed(result)
    return seen

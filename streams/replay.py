"""``pathwatch replay FILE... --report REPORT.json``: the core over files of events.

One file of CloudEvents JSON lines (a path or ``-``, standard input) is read in arrival order,
line by line, as before: each line is decoded with :class:`schemas.decode.Decoder`
(validation and pseudonymisation) and run through :class:`streams.engine.Engine` on
partition 0. Lines that hold only whitespace are skipped (a trailing newline is not an
event); every other line is either an event or a counted dead letter.

HL7 v2 files and FHIR files (one resource or Bundle, or NDJSON), and several files at once in
any mix, go through :func:`replay_files`: each record through the same adapters and
identifier policy as the live ingestion (:class:`schemas.hl7.HL7Adapter`,
:class:`schemas.fhir.FHIRAdapter`, built from settings), then the decoder. Files are merged
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
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

import msgspec
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from alerts.evidence import ServiceChange
from pathwatch.config import Settings
from schemas import fhir, hl7
from schemas.adapters import AdapterOptions
from schemas.deadletter import DeadLetter, Origin
from schemas.decode import Decoder
from schemas.validate import detect_format
from streams.changes import LocalDate, change_rebase, local_date_in
from streams.core import CoreConfig
from streams.engine import Engine, SystemRules
from streams.report import Charts, dumps_report, render_summary, replay_verdict, spc_section, strata_sections
from streams.windows import TeamWindows

# (windows, watermark, service changes, local date) -> the report's "changes" entries
Changes = Callable[[TeamWindows, datetime, Sequence[ServiceChange], LocalDate], list[dict[str, Any]]]

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


def _summary_line(seen: ReplayInput) -> str | None:
    if not seen.adapted and not seen.nothing_to_publish:
        return None
    built = sum(seen.adapted.values())
    by_source = Counter({source: n for (source, linked), n in seen.adapted.items() if not linked})
    line = f"hospital events: {built} built from HL7/FHIR, {seen.unlinked} without a linking identifier"
    if by_source:
        line += " (" + ", ".join(f"{source}: {n}" for source, n in sorted(by_source.items())) + ")"
    return line + f"; {seen.nothing_to_publish} record(s) with nothing to publish"


def run_replay(
    events: str | Sequence[str],
    report_path: Path | None,
    settings: Settings,
    console: Console,
    system_rules: SystemRules | None = None,
    charts: Charts | None = None,
    html_path: Path | None = None,
    pdf_path: Path | None = None,
    changes: Changes | None = None,
) -> int:
    """Replay ``events`` (one path or ``-``, or several), write the JSON report to
    ``report_path`` if given, print a summary. One JSON-lines input is read as a stream in
    arrival order; anything else through :func:`replay_files`. The report's ``events`` gains
    ``unlinked``: events built from HL7/FHIR whose subject is hospital-local. With ``charts``
    (``alerts.rules.SystemAlertRules.charts``) the report gains ``"spc"``: the Making Data
    Count chart of every team and rate measure at the end of input, each recorded service
    change starting a group on its team's charts; with ``changes`` (:func:`streams.changes.judge_changes` bound to
    the rules' settings) it gains ``"changes"``: one entry per service change that stands,
    with its evidence per measure. Returns the exit status:
    0 done, 1 when the input held no records or only dead letters (with a hint), 2 when an
    input cannot be read or a report cannot be written. The board report goes to
    ``html_path`` (and its print to ``pdf_path``) if given. Raises ValueError for a bad cost
    table or ``pdf_path`` without ``html_path``, before replaying."""
    from board.run import Board  # the board's plotting libraries load only for a replay

    Board.check_paths(html_path, pdf_path)
    board = Board.from_settings(settings)
    names = [events] if isinstance(events, str) else list(events)
    if settings.pseudonym_key is None:
        console.print(
            "[yellow]warning:[/] PATHWATCH_PSEUDONYM_KEY is not set; using the fixed development key "
            "(pseudonyms are not protected)"
        )
    decoder = Decoder.from_settings(settings, live=False)
    engine = Engine(CoreConfig.from_settings(settings), system_rules)
    seen = ReplayInput()
    try:
        if len(names) == 1 and names[0] == "-" and _stdin_is_json_lines():
            replay_stream(sys.stdin.buffer, engine, decoder, "-")
        elif len(names) == 1 and names[0] != "-" and _is_json_lines(Path(names[0])):
            path = Path(names[0])
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
        else:
            seen = replay_files(names, engine, decoder, AdapterOptions.from_settings(settings))
    except OSError as exc:
        console.print(f"[red]error:[/] cannot read {exc.filename or ', '.join(names)}: {exc.strerror or exc}")
        return 2
    engine.finish()
    report = engine.report()
    report["events"]["unlinked"] = seen.unlinked
    report.update(strata_sections(engine.windows))  # the board's counts by stratum (docs/board.md)
    if charts is not None:
        watermark = engine.watermark
        local_date = local_date_in(ZoneInfo(settings.timezone))
        recorded = engine.changes.changes()
        report["spc"] = spc_section(report, engine.windows, charts, change_rebase(recorded, local_date))
        if changes is not None:
            report["changes"] = [] if watermark is None else changes(engine.windows, watermark, recorded, local_date)
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
    line = _summary_line(seen)
    if line is not None:
        console.print(line, markup=False, highlight=False)
    if report_path is not None:
        console.print(f"report written to {report_path}")
    if html_path is not None:
        console.print(f"board report written to {html_path}" + (f" and {pdf_path}" if pdf_path else ""))
    status, hint = replay_verdict(report, " ".join(names))
    if hint is not None:
        console.print(f"[yellow]warning:[/] {hint}", soft_wrap=True)
    return status


def _stdin_is_json_lines() -> bool:
    """True unless standard input can be peeked at and starts like HL7 or FHIR."""
    peek = getattr(sys.stdin.buffer, "peek", None)
    return peek is None or detect_format("-", peek(65536)[:65536]) == "events"


def _is_json_lines(path: Path) -> bool:
    """True when ``path`` holds JSON lines of events (read as a stream); raises ``OSError``."""
    with path.open("rb") as stream:
        head = stream.read(65536)
    return detect_format(str(path), head) == "events"

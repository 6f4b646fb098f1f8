"""Load events into the input topics, as a partner system would (the command
``pathwatch publish FILE``: :mod:`pathwatch.cli.publish`).

JSON lines (format ``events``) go to the ``events`` topic keyed by the client pseudonym (DOMAIN.md section 1:
the Kafka key is the client identifier after pseudonymisation), so the key needs the
pseudonymisation key like a live worker. A line that cannot be read is still published
(unkeyed): the workers dead-letter it with the reason, which is the point of publishing
bad input. HL7 v2 files are split into messages for the ``hl7`` topic; FHIR files go whole
(one resource or bundle per message) to the ``fhir`` topic. ``-`` reads standard input, as
``replay`` and ``validate`` do (the format is then told from the content alone).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec
from aiokafka import AIOKafkaProducer

from schemas.pseudonym import Pseudonymiser
from schemas.validate import read_input
from streams.topics import KafkaSettings, check_kafka, ensure_topics


class _Subject(msgspec.Struct):
    subject: str


_subject = msgspec.json.Decoder(_Subject)


class _ChangeData(msgspec.Struct):
    change_id: str


class _Change(msgspec.Struct):
    type: str
    data: _ChangeData


_change = msgspec.json.Decoder(_Change)


def split_changes(items: list[tuple[bytes | None, bytes]]) -> tuple[list[tuple[bytes | None, bytes]], list[tuple[bytes | None, bytes]]]:
    """(events, service changes) of a JSON-lines file's records: a ``service.change`` goes to
    the changes topic keyed by its ``change_id`` (workers read changes only there), in order;
    every other record, valid or not, stays an event (the worker dead-letters what is bad)."""
    events: list[tuple[bytes | None, bytes]] = []
    changes: list[tuple[bytes | None, bytes]] = []
    for key, raw in items:
        try:
            change = _change.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            change = None
        if change is not None and change.type == "service.change":
            changes.append((change.data.change_id.encode(), raw))
        else:
            events.append((key, raw))
    return events, changes

Progress = Callable[[str, int, int], object]
"""Called with (topic, records acknowledged so far, records in all) while publishing."""


class PublishSettings(KafkaSettings, Protocol):
    """What :func:`publish` reads: Kafka, and the pseudonymisation key (``pathwatch.config.Settings``)."""

    def pseudonym_key_bytes(self, *, live: bool) -> bytes: ...


def read_bytes(path: str | Path) -> bytes:
    """The bytes of ``path``, or of standard input for ``-``. Raises ``ValueError`` naming the
    file when it cannot be read."""
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None


def records(
    path: str | Path, fmt: str, pseudonymiser: Pseudonymiser
) -> tuple[str, list[tuple[bytes | None, bytes]]]:
    """(topic kind, [(key, value)]) for the file (``-``: standard input), split as
    ``pathwatch validate`` splits it (:func:`schemas.validate.read_input`: FHIR NDJSON one
    message per line, a leading UTF-8 byte order mark stripped)."""
    read = read_input("-" if str(path) == "-" else str(path), read_bytes(path), fmt)
    if read.kind != "events":
        return read.kind, [(None, record.raw) for record in read.records]
    out: list[tuple[bytes | None, bytes]] = []
    for record in read.records:
        try:
            key: bytes | None = pseudonymiser.pseudonym(_subject.decode(record.raw).subject).encode()
        except (msgspec.DecodeError, msgspec.ValidationError):
            key = None
        out.append((key, record.raw))
    return "events", out


async def publish(
    settings: PublishSettings, path: str | Path, fmt: str, on_progress: Progress | None = None
) -> int:
    """Publish every record of ``path`` (``-``: standard input); return the count.

    The file is read before Kafka is contacted, and Kafka is not contacted for an empty one.
    ``on_progress`` is told every 1,000 acknowledged records and at the end. Raises
    ``ValueError`` when the file cannot be read or Kafka cannot be reached, and the client's
    errors (``KafkaError``) on other broker failures."""
    pseudonymiser = Pseudonymiser(settings.pseudonym_key_bytes(live=True))
    kind, items = records(path, fmt, pseudonymiser)
    topic = {"events": settings.topics.events, "hl7": settings.topics.hl7, "fhir": settings.topics.fhir}[kind]
    if not items:
        return 0
    batches = [(topic, items)]
    if kind == "events":
        events, changes = split_changes(items)
        batches = [(t, chunk) for t, chunk in ((settings.topics.changes, changes), (topic, events)) if chunk]
    check_kafka(settings)
    ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        for name, chunk in batches:  # the changes first: a worker rebases at them as it reads events
            report = None if on_progress is None else (lambda done, n=name, c=chunk: on_progress(n, done, len(c)))
            if report is not None:
                report(0)
            await send_records(producer, name, chunk, report)
    finally:
        await producer.stop()
    return len(items)


async def send_records(
    producer: AIOKafkaProducer,
    topic: str,
    items: list[tuple[bytes | None, bytes]],
    on_progress: Callable[[int], object] | None = None,
) -> None:
    """Send ``items`` in order, waiting for the broker's acknowledgements every 1,000 records
    and at the end. Raises on a broker error."""
    pending = []
    for i, (key, value) in enumerate(items, 1):
        pending.append(await producer.send(topic, value=value, key=key))
        if i % 1000 == 0:
            await asyncio.gather(*pending)
            pending.clear()
            if on_progress is not None:
                on_progress(i)
    await asyncio.gather(*pending)
    if on_progress is not None:
        on_progress(len(items))

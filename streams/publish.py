"""``pathwatch publish FILE``: load events into the input topics, as a partner system would.

JSON lines go to the ``events`` topic keyed by the client pseudonym (DOMAIN.md section 1:
the Kafka key is the client identifier after pseudonymisation), so the key needs the
pseudonymisation key like a live worker. A line that cannot be read is still published
(unkeyed): the workers dead-letter it with the reason, which is the point of publishing
bad input. HL7 v2 files are split into messages for the ``hl7`` topic; FHIR files go whole
(one resource or bundle per message) to the ``fhir`` topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pathwatch.config import Settings
from schemas.pseudonym import Pseudonymiser
from streams.topics import ensure_topics

_HL7_START, _HL7_END = b"\x0b", b"\x1c"


class _Subject(msgspec.Struct):
    subject: str


_subject = msgspec.json.Decoder(_Subject)


def detect_format(path: Path, head: bytes) -> str:
    """``jsonl``, ``hl7`` or ``fhir`` from the extension, else from the first bytes."""
    suffix = path.suffix.lower()
    if suffix in (".hl7", ".adt"):
        return "hl7"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    stripped = head.lstrip(b"\x0b \r\n\t")
    if stripped.startswith(b"MSH"):
        return "hl7"
    if stripped.startswith(b"{") and b'"resourceType"' in head[:4096]:
        return "fhir"
    return "jsonl"


def split_hl7(data: bytes) -> Iterator[bytes]:
    """Messages of an HL7 v2 file: MLLP-framed, or plain with each message starting at ``MSH``."""
    if _HL7_START in data:
        for frame in data.split(_HL7_START)[1:]:
            message = frame.split(_HL7_END, 1)[0].strip()
            if message:
                yield message
        return
    current: list[bytes] = []
    for line in data.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r"):
        if line.startswith(b"MSH") and current:
            yield b"\r".join(current)
            current = []
        if line.strip():
            current.append(line)
    if current:
        yield b"\r".join(current)


def records(path: Path, fmt: str, pseudonymiser: Pseudonymiser) -> tuple[str, list[tuple[bytes | None, bytes]]]:
    """(topic kind, [(key, value)]) for the file."""
    data = path.read_bytes()
    if fmt == "auto":
        fmt = detect_format(path, data[:8192])
    if fmt == "hl7":
        return "hl7", [(None, message) for message in split_hl7(data)]
    if fmt == "fhir":
        return "fhir", [(None, data)]
    out: list[tuple[bytes | None, bytes]] = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            key: bytes | None = pseudonymiser.pseudonym(_subject.decode(line).subject).encode()
        except (msgspec.DecodeError, msgspec.ValidationError):
            key = None
        out.append((key, line))
    return "jsonl", out


async def publish(settings: Settings, path: Path, fmt: str, console: Console | None = None) -> int:
    """Publish every record of ``path``; return the count. Raises on broker errors."""
    pseudonymiser = Pseudonymiser(settings.pseudonym_key_bytes(live=True))
    kind, items = records(path, fmt, pseudonymiser)
    topic = {"jsonl": settings.topics.events, "hl7": settings.topics.hl7, "fhir": settings.topics.fhir}[kind]
    ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        with Progress(
            TextColumn(f"publishing to {topic}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=console, disable=console is None or len(items) < 1000, transient=True,
        ) as progress:
            task = progress.add_task("publish", total=len(items))
            pending = []
            for i, (key, value) in enumerate(items, 1):
                pending.append(await producer.send(topic, value=value, key=key))
                if i % 1000 == 0:
                    await asyncio.gather(*pending)
                    pending.clear()
                    progress.update(task, completed=i)
            await asyncio.gather(*pending)
            progress.update(task, completed=len(items))
    finally:
        await producer.stop()
    return len(items)


def run_publish(file: str, settings: Settings, console: Console, fmt: str = "auto") -> int:
    """The CLI's ``publish``: exit status 0 when everything was acknowledged by the broker."""
    count = asyncio.run(publish(settings, Path(file), fmt, console))
    console.print(f"[green]published {count:,} records[/green]")
    return 0

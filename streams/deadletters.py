"""Dead letters: what was rejected and why, and sending it again after a fix (the command:
:mod:`pathwatch.cli.deadletters`).

The dead-letter topic holds one record per rejected input, written by
:meth:`schemas.deadletter.DeadLetter.to_record` (value: the original bytes; headers: kind,
reason, path, origin, original length and SHA-256). Records of the older JSON format (one
JSON object with ``original_base64``) are read too.

Dead letters are sent at least once: a batch processed again after a crash sends its dead
letters again, the same records. Two records are the same dead letter when their origin,
kind, path and original (SHA-256) agree; counts, listings and re-publishing take each once.

The originals may hold client identifiers (the raw ``subject``, names, record numbers,
dates of birth in HL7): listings show a preview of their shape that never includes a
subject or any other value but an event's ``type`` and ``source``; the original itself is
printed only with ``--show-original``, after a warning.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.deadletter import HEADER, DeadLetter, DeadLetterKind, Origin
from schemas.pseudonym import Pseudonymiser
from streams.topics import KafkaSettings

PREVIEW_VALUE_CHARS = 60
REASON_TABLE_CHARS = 120


class _OldOrigin(msgspec.Struct):
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    file: str | None = None
    line: int | None = None


class _OldRecord(msgspec.Struct):
    kind: str
    reason: str = ""
    path: str = ""
    origin: _OldOrigin | None = None
    original_base64: str = ""


_old_decoder = msgspec.json.Decoder(_OldRecord)


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """One record of the dead-letter topic, read back."""

    letter: DeadLetter
    offset: int
    original_length: int
    """Length of the input as received; larger than ``len(letter.original)`` when it was cut."""
    sha256: str
    identity: tuple[str, ...]
    """Equal for the same dead letter sent twice (see the module docstring)."""

    @property
    def cut(self) -> bool:
        return len(self.letter.original) < self.original_length


def parse_record(value: bytes | None, headers: Sequence[tuple[str, bytes]] | None, offset: int = -1) -> StoredDeadLetter:
    """Read one dead-letter record, new (headers) or old (JSON) format.

    Raises ``ValueError`` when the record is neither."""
    names = {k: v for k, v in headers or () if k.startswith(HEADER)}
    if HEADER + "kind" in names:
        try:
            letter = DeadLetter.from_record(value, list(names.items()))
        except (KeyError, ValueError, msgspec.DecodeError) as exc:
            raise ValueError(f"dead letter at offset {offset}: bad headers ({exc})") from None
        original = letter.original
        length_text = names.get(HEADER + "original.length", b"").decode("ascii", "replace")
        length = int(length_text) if length_text.isdigit() else len(original)
        sha = names.get(HEADER + "original.sha256", b"").decode("ascii", "replace")
        if not sha:
            sha = hashlib.sha256(original).hexdigest()
        origin_header = names.get(HEADER + "origin", b"").decode("utf-8", "replace")
        identity = (origin_header, letter.kind.value, letter.path, sha)
        return StoredDeadLetter(letter, offset, length, sha, identity)
    try:
        old = _old_decoder.decode(value or b"")
        original = base64.b64decode(old.original_base64, validate=True)
        kind = DeadLetterKind(old.kind)
    except (msgspec.DecodeError, msgspec.ValidationError, binascii.Error, ValueError):
        raise ValueError(f"record at offset {offset} is not a dead letter (no {HEADER}kind header, not JSON)") from None
    o = old.origin or _OldOrigin()
    letter = DeadLetter(kind, old.reason, old.path, Origin(o.topic, o.partition, o.offset, o.file, o.line), original)
    sha = hashlib.sha256(original).hexdigest()
    return StoredDeadLetter(letter, offset, len(original), sha, ("json", hashlib.sha256(value or b"").hexdigest()))


def distinct(records: Iterable[StoredDeadLetter]) -> list[StoredDeadLetter]:
    """The first record of each dead letter (a dead letter sent again is dropped)."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for record in records:
        if record.identity not in seen:
            seen.add(record.identity)
            out.append(record)
    return out


async def read_dead_letters(settings: KafkaSettings, timeout: float = 60.0) -> tuple[list[StoredDeadLetter], int]:
    """Every record of the dead-letter topic up to its end: (the dead letters, the number of
    records that are not dead letters). An absent topic reads as empty. Raises
    ``TimeoutError`` when the end is not reached in ``timeout`` seconds."""
    topic = settings.topics.dead_letters
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return [], 0
        # the consumer learns the topic's partitions once it reads one of them
        first = TopicPartition(topic, 0)
        consumer.assign([first])
        await consumer.end_offsets([first])
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        letters: list[StoredDeadLetter] = []
        unreadable = 0
        async with asyncio.timeout(timeout):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    for m in messages:
                        try:
                            letters.append(parse_record(m.value, list(m.headers or ()), m.offset))
                        except ValueError:
                            unreadable += 1
        return letters, unreadable
    finally:
        await consumer.stop()


def count_by_reason(records: Iterable[StoredDeadLetter]) -> list[tuple[str, str, int]]:
    """(kind, reason, count), most frequent first, then by kind and reason."""
    counts = Counter((r.letter.kind.value, r.letter.reason) for r in records)
    return sorted(((k, reason, n) for (k, reason), n in counts.items()), key=lambda t: (-t[2], t[0], t[1]))


def short(text: str, limit: int = PREVIEW_VALUE_CHARS) -> str:
    """``text`` with unprintable characters blanked, cut to ``limit`` characters (with an ellipsis)."""
    text = "".join(c if c.isprintable() else " " for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def preview(original: bytes) -> str:
    """The shape of an original, never its values: for an event its ``type``, ``source`` and
    the names of its fields; for FHIR the resource types; for HL7 the message type and
    segment names; otherwise only the length. Never raises."""
    if not original:
        return "empty"
    size = f"{len(original):,} bytes"
    start = original.lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"MSH"):
        segments = [s[:3].decode("ascii", "replace") for s in start.replace(b"\n", b"\r").split(b"\r") if s.strip()]
        fields = start.split(b"\r", 1)[0].split(b"|")
        kind = fields[8].decode("ascii", "replace") if len(fields) > 8 else "?"
        return f"HL7 v2 {short(kind, 20)}, segments {' '.join(short(s, 3) for s in segments[:20])}, {size}"
    try:
        doc = msgspec.json.decode(start)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return f"not JSON, {size}"
    if isinstance(doc, dict) and "resourceType" in doc:
        kind = str(doc.get("resourceType"))
        entries = doc.get("entry")
        if isinstance(entries, list):
            types = Counter(
                str(e.get("resource", {}).get("resourceType", "?")) if isinstance(e, dict) and isinstance(e.get("resource"), dict) else "?"
                for e in entries
            )
            inner = ", ".join(f"{n} {short(t, 30)}" for t, n in sorted(types.items()))
            return f"FHIR {short(kind, 30)} ({inner or 'no entries'}), {size}"
        return f"FHIR {short(kind, 30)}, {size}"
    if isinstance(doc, dict):
        parts = []
        for name in ("type", "source"):
            if isinstance(doc.get(name), str):
                parts.append(f"{name}={short(doc[name])}")
        keys = [short(str(k), 30) for k in doc]
        data = doc.get("data")
        if isinstance(data, dict):
            keys = [f"data{{{','.join(short(str(k), 30) for k in data)}}}" if k == "data" else k for k in keys]
        parts.append(f"fields {','.join(keys)}")
        return f"JSON {' '.join(parts)}, {size}"
    return f"JSON {type(doc).__name__}, {size}"


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a command acts on: any of ``kinds`` (exact), any of ``reasons``
    (case-insensitive substring of the reason), any of ``origins`` (an origin topic's name,
    or the start of an origin such as ``pathwatch.events[3]`` or a file name). Empty: all."""

    kinds: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.kinds or self.reasons or self.origins)

    def __call__(self, record: StoredDeadLetter) -> bool:
        letter = record.letter
        if self.kinds and letter.kind.value not in self.kinds:
            return False
        if self.reasons and not any(r.lower() in letter.reason.lower() for r in self.reasons):
            return False
        if self.origins:
            where = letter.origin.describe()
            if not any(letter.origin.topic == o or where.startswith(o) for o in self.origins):
                return False
        return True


@dataclass
class RepublishResult:
    sent: Counter[str]
    cut: int = 0
    no_topic: int = 0


def republish_plan(
    records: Iterable[StoredDeadLetter], settings: KafkaSettings, to: str | None, pseudonymiser: Pseudonymiser | None
) -> tuple[list[tuple[str, bytes | None, bytes]], RepublishResult]:
    """(topic, key, value) for each dead letter to send again, and what was skipped: originals
    cut to fit (they are not the input any more) and, without ``to``, dead letters that did
    not come from an input topic (a file, or an internal topic). A record for the events
    topic is keyed by its subject's pseudonym, as ``pathwatch publish`` does."""
    inputs = {settings.topics.events, settings.topics.hl7, settings.topics.fhir}
    plan: list[tuple[str, bytes | None, bytes]] = []
    result = RepublishResult(Counter())
    for record in records:
        if record.cut:
            result.cut += 1
            continue
        topic = to or record.letter.origin.topic
        if topic is None or (to is None and topic not in inputs):
            result.no_topic += 1
            continue
        key = None
        if topic == settings.topics.events and pseudonymiser is not None:
            key = _event_key(record.letter.original, pseudonymiser)
        plan.append((topic, key, record.letter.original))
        result.sent[topic] += 1
    return plan, result


class _Subject(msgspec.Struct):
    subject: str


_subject = msgspec.json.Decoder(_Subject)


def _event_key(value: bytes, pseudonymiser: Pseudonymiser) -> bytes | None:
    try:
        return pseudonymiser.pseudonym(_subject.decode(value).subject).encode()
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


async def send_plan(settings: KafkaSettings, plan: list[tuple[str, bytes | None, bytes]]) -> None:
    """Send every (topic, key, value), in order, and wait for the broker's acknowledgements."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
        max_request_size=max(1024 * 1024, settings.max_message_bytes + 64 * 1024),
    )
    await producer.start()
    try:
        pending = [await producer.send(topic, value=value, key=key) for topic, key, value in plan]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def dead_letter_count(records: Iterable[StoredDeadLetter]) -> int:
    """Inputs dead-lettered: distinct dead letters (see the module docstring)."""
    return len(distinct(records))


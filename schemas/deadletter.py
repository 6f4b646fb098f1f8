"""Dead-letter records: bad input is never dropped silently (DOMAIN.md section 1).

Every driver turns a rejected input into one :class:`DeadLetter` holding the reason, the
path of the offending field, where the input came from and the original bytes. ``kind``
is a bounded category, safe as a metric label; ``reason`` is specific and human-readable.
A dead-letter record may carry the raw input (the original bytes) and so is written only
to the dead-letter topic, never to logs or metrics.

On Kafka a dead letter is written as Kafka Connect writes its dead-letter queue: the record's
value is the original bytes, unchanged, and the reason, path, kind and origin travel in
headers (:meth:`DeadLetter.to_record`, :meth:`DeadLetter.from_record`). A dead letter is so
never larger than its input plus a few bounded headers; where even that would not fit the
limit given, the value keeps the first bytes and the headers carry the original length and
its SHA-256, so what was lost is known.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from enum import StrEnum

import msgspec


class DeadLetterKind(StrEnum):
    """Why an input was rejected; bounded, used as the ``reason`` metric label."""

    OVERSIZED = "oversized"
    NOT_JSON = "not_json"
    UNKNOWN_TYPE = "unknown_type"
    SCHEMA = "schema"
    ORPHAN_CANCEL = "orphan_cancel"
    HL7 = "hl7"
    FHIR = "fhir"
    NULL_VALUE = "null_value"
    PROCESSING = "processing_error"
    OUTPUT_TOO_LARGE = "output_too_large"
    IDENTIFIER_LIKE = "identifier_like"


HEADER = "pathwatch.errors."
"""Prefix of the dead-letter headers (as Kafka Connect's ``__connect.errors.``)."""
REASON_MAX_CHARS = 2000
"""Longest reason or path kept in a header; a longer one is cut and ends with an ellipsis."""
_HEADROOM = 4096
"""Bytes kept free below a record limit for the headers and Kafka's record overhead."""


def _cut(text: str) -> str:
    return text if len(text) <= REASON_MAX_CHARS else text[: REASON_MAX_CHARS - 1] + "\u2026"


class _OriginWire(msgspec.Struct):
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an input came from: a topic position, or a file line (1-based)."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    file: str | None = None
    line: int | None = None

    def to_json(self) -> bytes:
        return msgspec.json.encode(
            {"topic": self.topic, "partition": self.partition, "offset": self.offset, "file": self.file, "line": self.line}
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Origin:
        d = msgspec.json.decode(raw, type=_OriginWire)
        return cls(d.topic, d.partition, d.offset, d.file, d.line)

    def describe(self) -> str:
        if self.topic is not None:
            return f"{self.topic}[{self.partition}]@{self.offset}"
        if self.line is not None:
            return f"{self.file or '-'}:{self.line}"
        return self.file or "-"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    kind: DeadLetterKind
    reason: str
    path: str
    origin: Origin
    original: bytes

    def to_json(self) -> bytes:
        """The record written to the dead-letter topic (original bytes base64-encoded)."""
        return msgspec.json.encode(
            {
                "kind": self.kind.value,
                "reason": self.reason,
                "path": self.path,
                "origin": {
                    "topic": self.origin.topic,
                    "partition": self.origin.partition,
                    "offset": self.origin.offset,
                    "file": self.origin.file,
                    "line": self.origin.line,
                },
                "original_base64": base64.b64encode(self.original).decode("ascii"),
            }
        )

    def to_record(self, max_bytes: int | None = None) -> tuple[bytes, list[tuple[str, bytes]]]:
        """The Kafka record value and headers of this dead letter.

        The value is the original bytes; with ``max_bytes`` (the topic's record limit) an
        original that would not fit beside the headers is cut to its first bytes, and the
        headers ``original.length`` and ``original.sha256`` always say what it was.
        Never raises for any dead letter."""
        value = self.original
        if max_bytes is not None and len(value) > max_bytes - _HEADROOM:
            value = value[: max(0, max_bytes - _HEADROOM)]
        headers = [
            (HEADER + "kind", self.kind.value.encode()),
            (HEADER + "reason", _cut(self.reason).encode("utf-8", "replace")),
            (HEADER + "path", _cut(self.path).encode("utf-8", "replace")),
            (HEADER + "origin", self.origin.to_json()),
            (HEADER + "original.length", str(len(self.original)).encode()),
            (HEADER + "original.sha256", hashlib.sha256(self.original).hexdigest().encode()),
        ]
        return value, headers

    @classmethod
    def from_record(cls, value: bytes | None, headers: list[tuple[str, bytes]] | None) -> DeadLetter:
        """Read back a record written by :meth:`to_record` (a cut original stays cut:
        compare ``len(original)`` with the ``original.length`` header)."""
        h = {k[len(HEADER) :]: v for k, v in headers or () if k.startswith(HEADER)}
        return cls(
            kind=DeadLetterKind(h["kind"].decode()),
            reason=h.get("reason", b"").decode("utf-8", "replace"),
            path=h.get("path", b"").decode("utf-8", "replace"),
            origin=Origin.from_json(h["origin"]) if "origin" in h else Origin(),
            original=value or b"",
        )

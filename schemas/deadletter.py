"""Dead-letter records: bad input is never dropped silently (DOMAIN.md section 1).

Every driver turns a rejected input into one :class:`DeadLetter` holding the reason, the
path of the offending field, where the input came from and the original bytes. ``kind``
is a bounded category, safe as a metric label; ``reason`` is specific and human-readable.
A dead-letter record may carry the raw input (the original bytes) and so is written only
to the dead-letter topic, never to logs or metrics.
"""

from __future__ import annotations

import base64
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


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an input came from: a topic position, or a file line (1-based)."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    file: str | None = None
    line: int | None = None

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

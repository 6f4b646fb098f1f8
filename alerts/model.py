"""Alert identity and lifecycle, Alertmanager style (DOMAIN.md section 4, STYLE.md 5).

An alert's identity is its label set; its fingerprint is computed exactly as Alertmanager's
``model.LabelSet.Fingerprint`` (FNV-1a 64 over label names and values, sorted by name, each
followed by the 0xff separator byte), printed as 16 lower-case hex digits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1
_SEPARATOR = 0xFF


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's label-set fingerprint as 16 hex digits."""
    return _fingerprint(tuple(sorted(labels.items())))


@lru_cache(maxsize=1 << 16)  # an alert's fingerprint is asked for at each of its transitions
def _fingerprint(pairs: tuple[tuple[str, str], ...]) -> str:
    h = _FNV_OFFSET
    for pair in pairs:
        for part in pair:
            for byte in part.encode("utf-8"):
                h = ((h ^ byte) * _FNV_PRIME) & _MASK
            h = ((h ^ _SEPARATOR) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


class Status(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert state. ``ends_at`` is None while firing with no known end.

    ``labels`` never carry raw identifiers: care-gap alerts carry the client pseudonym.
    """

    labels: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        return Status.FIRING if self.ends_at is None else Status.RESOLVED

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    def identity(self) -> tuple[tuple[str, str], ...]:
        """Sorted label pairs: equal for the same alert, hashable."""
        return tuple(sorted(self.labels.items()))

    def report_entry(self) -> dict[str, Any]:
        """The shape used in the replay report (DOMAIN.md section 6)."""
        return {
            "labels": dict(sorted(self.labels.items())),
            "status": self.status.value,
            "startsAt": self.starts_at.isoformat(),
            "endsAt": None if self.ends_at is None else self.ends_at.isoformat(),
        }

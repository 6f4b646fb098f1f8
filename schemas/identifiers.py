"""What may become a label: the one test of "looks like an identifier", and the team slug.

Values that end up as metric or alert labels, Redis keys or changelog keys (a ``team``, a
``source``) must be bounded categories, never a client, referral, encounter or event id
(DOMAIN.md section 5). :func:`identifier_problem` is used both at decode (an event carrying
such a value is dead-lettered, kind ``identifier_like``) and by the metrics label guard
(:func:`pathwatch.metrics.label_guard`), so the two cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Final

MAX_LABEL_LENGTH: Final = 64
TEAM_MAX_LENGTH: Final = 40
TEAM_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]*$"
"""A team is a short lowercase slug: ``a-z 0-9 _ -``, starting with a letter or digit, at most
40 characters (``north``, ``south-east``, ``crisis_team``)."""

_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")
_DIGIT_RUN = re.compile(r"\d{4,}")
_MRN = re.compile(r"[A-Za-z]{2,}-?\d{4,}")
_TOKEN = re.compile(r"[A-Za-z0-9+=]+")
_TEAM = re.compile(TEAM_PATTERN)


def identifier_problem(value: str) -> str | None:
    """Why ``value`` looks like an identifier rather than a category, or ``None`` if it does not.

    Refused: values longer than 64 characters; UUIDs; runs of 16 or more hex digits
    (pseudonyms, fingerprints); runs of 4 or more digits (MRNs, NHS numbers, numeric event
    ids, ``ABC-12345``); values longer than 24 characters that contain a digit; and single
    tokens of 32 or more characters (base64 pseudonyms). Team names, measure names,
    dead-letter kinds, publisher names such as ``hospital/st-marys``, topic names and small
    partition numbers pass. The answer never repeats the value: it might be the very
    identifier being kept out.
    """
    if len(value) > MAX_LABEL_LENGTH:
        return f"longer than {MAX_LABEL_LENGTH} characters"
    if _UUID.search(value):
        return "looks like a UUID"
    if _HEX_RUN.search(value):
        return "contains a run of 16+ hex digits"
    if _MRN.search(value) or _DIGIT_RUN.search(value):
        return "contains a run of 4+ digits"
    if len(value) > 24 and any(ch.isdigit() for ch in value):
        return "longer than 24 characters with digits"
    if any(len(token) >= 32 for token in _TOKEN.findall(value)):
        return "contains a 32+ character token"
    return None


def is_team_slug(value: str) -> bool:
    """True when ``value`` matches :data:`TEAM_PATTERN` within :data:`TEAM_MAX_LENGTH`."""
    return len(value) <= TEAM_MAX_LENGTH and _TEAM.match(value) is not None

"""Pseudonymisation of client identifiers at ingestion (DOMAIN.md section 5).

The pseudonym of a ``subject`` is the first 32 hexadecimal digits (128 bits) of
``HMAC-SHA256(key, subject.encode("utf-8"))``. It is deterministic for a given key: the same
subject always maps to the same pseudonym, so per-client state (trackers, Redis, the Kafka key)
works on pseudonyms alone. The subject is used exactly as published (no trimming or case
folding): publishers must send one spelling of an identifier. One key serves every source, so
two publishers that use the same identifier for a client are linked; different identifiers are
not. Changing the key changes every pseudonym (and so starts every client's history afresh).
"""

from __future__ import annotations

import hashlib
from typing import Final

PSEUDONYM_HEX_DIGITS: Final = 32
_BLOCK: Final = 64  # SHA-256's block size in bytes (RFC 2104's B)


class Pseudonymiser:
    """Keyed HMAC-SHA256 pseudonyms. Build once per process with the secret key."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        """Raises ``ValueError`` for an empty key (an empty HMAC key gives no protection)."""
        if not key:
            raise ValueError("the pseudonymisation key must not be empty")
        # RFC 2104 with the keyed pad states hashed once: every subject and publisher id of
        # every event is pseudonymised, and hmac.digest re-hashes both pads on each call
        # (about half its time). A test holds this to hmac.digest and RFC 4231.
        padded = (hashlib.sha256(key).digest() if len(key) > _BLOCK else bytes(key)).ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def pseudonym(self, subject: str) -> str:
        """The pseudonym of ``subject``: 32 lowercase hex digits. Never raises for a ``str``.

        Lone surrogates (which cannot come from valid UTF-8 JSON) are encoded with
        ``surrogatepass`` so every Python string has a pseudonym.
        """
        inner = self._inner.copy()
        inner.update(subject.encode("utf-8", "surrogatepass"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[:PSEUDONYM_HEX_DIGITS]

    def __repr__(self) -> str:
        return "Pseudonymiser(key=**********)"

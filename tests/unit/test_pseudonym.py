"""Pseudonyms: keyed HMAC-SHA256, first 32 hex digits, deterministic."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.pseudonym import Pseudonymiser


def test_rfc_4231_test_case_2() -> None:
    # RFC 4231 section 4.3: HMAC-SHA-256(key "Jefe", "what do ya want for nothing?")
    # = 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843
    assert Pseudonymiser(b"Jefe").pseudonym("what do ya want for nothing?") == "5bdcc146bf60754e6a042426089575c7"


@given(st.binary(min_size=1, max_size=200), st.text(max_size=300))
def test_equals_the_standard_library_hmac(key: bytes, subject: str) -> None:
    # keys longer than the 64-byte block are hashed first (RFC 2104)
    expected = hmac.digest(key, subject.encode("utf-8", "surrogatepass"), "sha256").hex()[:32]
    assert Pseudonymiser(key).pseudonym(subject) == expected


def test_deterministic_and_keyed() -> None:
    a, b = Pseudonymiser(b"key-a"), Pseudonymiser(b"key-b")
    assert a.pseudonym("NHS-1") == Pseudonymiser(b"key-a").pseudonym("NHS-1")
    assert a.pseudonym("NHS-1") != b.pseudonym("NHS-1")
    assert a.pseudonym("NHS-1") != a.pseudonym("NHS-2")


def test_no_normalisation() -> None:
    p = Pseudonymiser(b"k")
    assert len({p.pseudonym("nhs-1"), p.pseudonym("NHS-1"), p.pseudonym(" NHS-1")}) == 3


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        Pseudonymiser(b"")


def test_repr_hides_the_key() -> None:
    assert "secret" not in repr(Pseudonymiser(b"secret"))


@given(st.text())
def test_shape_and_no_trace_of_the_subject(subject: str) -> None:
    value = Pseudonymiser(b"k").pseudonym(subject)
    assert len(value) == 32
    assert set(value) <= set("0123456789abcdef")

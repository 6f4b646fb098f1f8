"""The dead-letter record on Kafka: original bytes as the value, the reason in headers."""

import hashlib

import pytest

from schemas.deadletter import HEADER, REASON_MAX_CHARS, DeadLetter, DeadLetterKind, Origin


def _dead(original: bytes, reason: str = "not JSON: expecting value") -> DeadLetter:
    return DeadLetter(DeadLetterKind.NOT_JSON, reason, "data.team", Origin("pathwatch.events", 3, 17), original)


def test_a_record_round_trips_with_the_original_bytes_as_its_value() -> None:
    dead = _dead(b"\xff{not json")
    value, headers = dead.to_record()
    assert value == b"\xff{not json"
    assert DeadLetter.from_record(value, headers) == dead


@pytest.mark.parametrize("size", [900_000, 1_048_576])
def test_a_record_never_exceeds_the_limit_and_says_what_was_cut(size: int) -> None:
    original = b"x" * size
    value, headers = _dead(original).to_record(max_bytes=1_000_000)
    assert len(value) + sum(len(k) + len(v) for k, v in headers) <= 1_000_000
    h = dict(headers)
    assert h[HEADER + "original.length"] == str(size).encode()
    assert h[HEADER + "original.sha256"] == hashlib.sha256(original).hexdigest().encode()


def test_a_long_reason_is_cut_in_its_header() -> None:
    value, headers = _dead(b"{}", reason="r" * 10 * REASON_MAX_CHARS).to_record()
    assert len(dict(headers)[HEADER + "reason"].decode()) == REASON_MAX_CHARS


def test_a_file_origin_round_trips() -> None:
    origin = Origin(file="events.jsonl", line=12)
    assert Origin.from_json(origin.to_json()) == origin

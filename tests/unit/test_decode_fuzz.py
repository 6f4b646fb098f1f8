"""Decode never raises, gives exactly one outcome with a reason, and its two paths agree.

* a seeded mutation loop sends 12,000 random and mutated inputs (byte flips, truncations,
  splices, structural edits of valid events, random bytes) through ``Decoder.decode``;
* Hypothesis checks that the msgspec fast path accepts an event iff the shipped JSON Schema
  does, for generated and mutated events.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.decode import AwareDatetime, Decoder, schema_errors
from schemas.model import DATA_TYPES, EVENT_TYPES, Event
from schemas.pseudonym import Pseudonymiser

FIXTURES = Path(__file__).parents[1] / "fixtures" / "events"
VALID_LINES = (FIXTURES / "valid.jsonl").read_bytes().splitlines()
VALID = [json.loads(line) for line in VALID_LINES]
SUBJECT = "SUBJ-4471-XQ"
ORIGIN = Origin(file="fuzz", line=1)
FUZZ_INPUTS = 12_000

INTERESTING: list[Any] = [
    None, True, False, 0, 1, -1, 1.5, 1e300, "", " ", "1.0", "x", "é", "\u0000", SUBJECT, [], [1], {}, {"a": 1},
    "2026-03-01T10:00:00Z", "2026-03-01T10:00:00", "2026-03-01t10:00:00+0100", "2026-13-01T10:00:00Z",
    "2026-03-01 10:00:00.123456789-05:00", "2026-02-29T10:00:00Z", "2024-02-29T10:00:00Z", "0000-01-01T00:00:00Z",
    "2026-03-01T23:59:60Z", "2026-03-01T10:00:00+24:00", "2026-03-01T10:00Z", "２026-03-01T10:00:00Z",
    "2026-03-01T10:00:00Z\n", *EVENT_TYPES, "emergency", "urgent", "soon", "attended", "inpatient", "home", "hospice",
]


def _with_subject(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj, subject=SUBJECT)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, (*prefix, key))
    return out


def _set(obj: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target = obj
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def _delete(obj: dict[str, Any], path: tuple[Any, ...]) -> None:
    target = obj
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]


def _structural_mutant(rng: random.Random) -> bytes:
    obj = copy.deepcopy(_with_subject(rng.choice(VALID)))
    for _ in range(rng.randint(1, 3)):
        paths = _paths(obj)
        if not paths:
            break
        path = rng.choice(paths)
        action = rng.random()
        if action < 0.5:
            _set(obj, path, copy.deepcopy(rng.choice(INTERESTING)))
        elif action < 0.75:
            _delete(obj, path)
        else:
            _set(obj, (*path[:-1], rng.choice(["extra", "type", "data", "subject"])), copy.deepcopy(rng.choice(INTERESTING)))
    return json.dumps(obj, ensure_ascii=rng.random() < 0.5).encode()


def _byte_mutant(rng: random.Random) -> bytes:
    raw = bytearray(json.dumps(_with_subject(rng.choice(VALID))).encode())
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(5)
        pos = rng.randrange(len(raw) or 1)
        if action == 0 and raw:
            raw[pos] = rng.randrange(256)
        elif action == 1:
            raw.insert(pos, rng.choice(b'{}[]",:\\ 0aZ\xff\xc3'))
        elif action == 2 and raw:
            del raw[pos : pos + rng.randint(1, 8)]
        elif action == 3:
            raw = raw[:pos]
        else:
            other = json.dumps(rng.choice(VALID)).encode()
            cut = rng.randrange(len(other))
            raw = raw[:pos] + other[cut:]
    return bytes(raw)


def _random_input(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.4:
        return _structural_mutant(rng)
    if kind < 0.8:
        return _byte_mutant(rng)
    if kind < 0.9:
        return rng.randbytes(rng.randint(0, 200))
    return json.dumps(rng.choice(INTERESTING)).encode()  # read only


def _subject_of(raw: bytes) -> str | None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return SUBJECT if SUBJECT.encode() in raw else None
    subject = obj.get("subject") if isinstance(obj, dict) else None
    return subject if isinstance(subject, str) else None


def test_ten_thousand_random_and_mutated_inputs() -> None:
    rng = random.Random(20260301)
    decoder = Decoder(b"fuzz-key", 4096)
    outcomes = {"event": 0, **{kind.value: 0 for kind in DeadLetterKind}}
    for _ in range(FUZZ_INPUTS):
        raw = _random_input(rng)
        result = decoder.decode(raw, ORIGIN)  # must not raise
        if isinstance(result, Event):
            outcomes["event"] += 1
            obj = msgspec.json.decode(raw)
            assert schema_errors(obj) == [], raw
            expected = Pseudonymiser(b"fuzz-key").pseudonym(obj["subject"]) if obj.get("subject") else ""
            assert result.client == expected
        else:
            assert isinstance(result, DeadLetter)
            outcomes[result.kind.value] += 1
            assert result.reason.strip(), raw
            subject = _subject_of(raw)
            if subject:
                assert subject not in result.reason, (raw, result.reason)
            assert result.original == raw
            assert result.origin == ORIGIN
    assert sum(outcomes.values()) == FUZZ_INPUTS
    # The generator must reach every outcome the decoder can give a publisher's bytes.
    for outcome in ("event", "not_json", "unknown_type", "schema"):
        assert outcomes[outcome] > 100, outcomes


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_one_dead_letter(raw: bytes) -> None:
    result = Decoder(b"k", 4096).decode(raw, ORIGIN)
    assert isinstance(result, DeadLetter | Event)
    if isinstance(result, DeadLetter):
        assert result.reason


# Generated events for the agreement test: valid fixtures with Hypothesis-chosen edits.
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(INTERESTING) | st.text(max_size=12)
    | st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=5,
)


@st.composite
def _events(draw: st.DrawFn) -> dict[str, Any]:
    obj = copy.deepcopy(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(obj)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["set", "delete", "retype", "add"]))
        if action == "set":
            _set(obj, path, copy.deepcopy(draw(_values)))  # INTERESTING holds shared dicts and lists
        elif action == "delete":
            _delete(obj, path)
        elif action == "retype":
            obj["type"] = draw(st.sampled_from(EVENT_TYPES))
        else:
            _set(obj, (*path[:-1], draw(st.text(max_size=8))), copy.deepcopy(draw(_values)))
    return obj


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_events())
def test_fast_path_accepts_exactly_what_the_json_schema_accepts(obj: dict[str, Any]) -> None:
    raw = msgspec.json.encode(obj)
    decoder = Decoder(b"k", 1 << 20)
    result = decoder.decode(raw, ORIGIN)
    schema_ok = schema_errors(obj) == []
    event_type = obj.get("type")
    if isinstance(event_type, str) and event_type not in EVENT_TYPES:
        schema_ok = False
    if schema_ok and isinstance(result, DeadLetter):
        # what the schema cannot say (time window, label-bound values) is checked after it
        time = msgspec.convert(obj["time"], AwareDatetime)
        data = msgspec.convert(obj["data"], DATA_TYPES[obj["type"]])
        problem = decoder.problem(obj["source"], time, data)
        assert problem is not None, (obj, result)
        assert (result.kind, result.path, result.reason) == problem
        return
    assert isinstance(result, Event) == schema_ok, (obj, result)

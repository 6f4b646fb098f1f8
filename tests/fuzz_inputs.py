"""A reusable, seeded fuzz set of input records, and the accounting that must hold for it.

:func:`fuzz_records` mixes valid simulated events (with exact repeats as duplicates) with
generated and mutated records for the three input topics: tombstones, oversized and large
messages, deep nesting, bad UTF-8, extreme times, wrong types, huge fields, identifier-like
teams, unknown types, truncations and byte flips of valid events, and the HL7 v2 and FHIR
mutations of issue 14 point 6 (HL7 cut inside MSH, PV1-45 with month 13; FHIR status
``bogus``, class ``XYZ``, a Bundle with one bad entry, status ``teleported`` without a
period). Every named case appears at least once; the rest is drawn at random.

:func:`account` runs records through the same decoding as the workers and a replay
:class:`streams.engine.Engine`, and returns the counts of the identity of DOMAIN.md section 1
(accepted + duplicates + dead letters + nothing to publish = what came in). It is used by
``tests/unit/test_fuzz_accounting.py``, ``tests/integration/test_fuzz_live.py`` and
``benchmarks/fuzz_accounting.py``.
"""

from __future__ import annotations

import io
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pathwatch import parts
from pathwatch.simulate import SimulationOptions, write
from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.decode import Decoder
from schemas.fhir import FHIRAdapter
from schemas.hl7 import HL7Adapter
from schemas.model import Event
from streams.engine import Engine

Topic = Literal["events", "hl7", "fhir"]
FIXTURES = Path(__file__).parent / "fixtures"
_A01 = (FIXTURES / "hl7" / "a01_admit.hl7").read_bytes()
_A03 = (FIXTURES / "hl7" / "a03_discharge.hl7").read_bytes()
_ENCOUNTER: dict[str, Any] = json.loads((FIXTURES / "fhir" / "encounter_finished.json").read_text())
_BUNDLE: dict[str, Any] = json.loads((FIXTURES / "fhir" / "bundle.json").read_text())


@dataclass(frozen=True, slots=True)
class FuzzRecord:
    """One message for an input topic (``value`` ``None``: a Kafka tombstone)."""

    topic: Topic
    value: bytes | None
    case: str


@dataclass
class Accounting:
    """Counts over a fuzz set. ``units`` is what must be accounted for: one per canonical
    record, and per HL7 v2 or FHIR message one per event line it converts to (or one when it
    is dead-lettered whole or has nothing to publish)."""

    records: int = 0
    units: int = 0
    accepted: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    orphan_cancels: int = 0
    nothing: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)

    def balanced(self) -> bool:
        """accepted + duplicates + dead letters + nothing to publish = units. An orphan cancel
        is counted twice by the engine (accepted, then dead-lettered when its target never
        comes), so it is taken once off the dead letters."""
        return self.accepted + self.duplicates + self.dead_letters - self.orphan_cancels + self.nothing == self.units

    def summary(self) -> str:
        kinds = ", ".join(f"{k}: {n}" for k, n in sorted(self.by_kind.items()))
        return (
            f"records {self.records}, units {self.units}: accepted {self.accepted}, duplicates {self.duplicates}, "
            f"dead letters {self.dead_letters} (orphan cancels {self.orphan_cancels}), nothing to publish "
            f"{self.nothing}; balanced: {self.balanced()} [{kinds}]"
        )


def _simulated(seed: int, wanted: int) -> list[bytes]:
    out = io.BytesIO()
    clients = max(20, wanted // 8)
    # the same months as the HL7 and FHIR fixtures (February and March 2026): simulated events
    # a year older would all arrive behind the fixtures' watermark, past the history's horizon,
    # where a repeat can no longer be told from a first copy
    write(SimulationOptions(clients=clients, days=120, seed=seed, start=date(2025, 11, 3)), out)
    return out.getvalue().splitlines()[:wanted]


def _set(line: bytes, path: str, value: Any) -> bytes:
    obj = json.loads(line)
    *parents, last = path.split(".")
    target = obj
    for part in parents:
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]
    target[last] = value
    return json.dumps(obj).encode()


def _hl7_vary(message: bytes, rng: random.Random) -> bytes:
    n = rng.randrange(10**6)
    return (
        message.replace(b"MSG-A0", f"MSG-{n}-A0".encode())
        .replace(b"V100^", f"V{n}^".encode())
        .replace(b"MRN-000123", f"MRN-{n:06d}".encode())
    )


def _encounter(rng: random.Random, **changes: Any) -> dict[str, Any]:
    n = rng.randrange(10**6)
    doc = dict(_ENCOUNTER, id=f"enc-{n}", **changes)
    doc["subject"] = {"identifier": {"value": f"MRN-{n:06d}"}}
    return doc


def _named_cases(max_bytes: int, big_bytes: int) -> dict[str, Callable[[random.Random, bytes], FuzzRecord]]:
    huge = min(big_bytes, max_bytes - 4096)

    def ev(case: str, make: Callable[[random.Random, bytes], bytes | None]) -> Callable[[random.Random, bytes], FuzzRecord]:
        return lambda rng, base: FuzzRecord("events", make(rng, base), case)

    def hl7(case: str, make: Callable[[random.Random], bytes | None]) -> Callable[[random.Random, bytes], FuzzRecord]:
        return lambda rng, _: FuzzRecord("hl7", make(rng), case)

    def fhir(case: str, make: Callable[[random.Random], Any]) -> Callable[[random.Random, bytes], FuzzRecord]:
        return lambda rng, _: FuzzRecord("fhir", _fhir_bytes(make(rng)), case)

    bad_bundle = dict(_BUNDLE)
    bad_bundle["entry"] = [*_BUNDLE["entry"][:2], {"resource": dict(_ENCOUNTER, id="enc-bad", status="bogus")}]
    cases: dict[str, Callable[[random.Random, bytes], FuzzRecord]] = {
        "tombstone": ev("tombstone", lambda rng, base: None),
        "oversized": ev("oversized", lambda rng, base: b"x" * (max_bytes + 1)),
        "large_not_json": ev("large_not_json", lambda rng, base: b"\x00not json " * (huge // 10)),
        "deep_nesting": ev("deep_nesting", lambda rng, base: b"[" * 50_000 + b"]" * 50_000),
        "deep_nesting_in_data": ev(
            "deep_nesting_in_data", lambda rng, base: base.replace(b'"data":{', b'"data":{"x":' + b"[" * 20_000 + b"]" * 20_000 + b",")
        ),
        "bad_utf8": ev("bad_utf8", lambda rng, base: base.replace(b'"data":{', b'"data":{"note":"\xff\xfe",', 1)),
        "time_year_1": ev("time_year_1", lambda rng, base: _set(base, "time", "0001-01-01T00:00:00+00:00")),
        "time_year_9999": ev("time_year_9999", lambda rng, base: _set(base, "time", "9999-12-31T23:59:59+00:00")),
        "time_1899": ev("time_1899", lambda rng, base: _set(base, "time", "1899-12-31T12:00:00Z")),
        "time_no_offset": ev("time_no_offset", lambda rng, base: _set(base, "time", "2025-03-01T10:00:00")),
        "wrong_type_team": ev("wrong_type_team", lambda rng, base: _set(base, "data.team", 7)),
        "wrong_type_time": ev("wrong_type_time", lambda rng, base: _set(base, "time", 1_700_000_000)),
        "wrong_type_data": ev("wrong_type_data", lambda rng, base: _set(base, "data", [1, 2, 3])),
        "wrong_type_id": ev("wrong_type_id", lambda rng, base: _set(base, "id", {"a": 1})),
        "huge_team": ev("huge_team", lambda rng, base: _set(base, "data.team", "n" * (huge - len(base)))),
        "huge_unknown_field": ev("huge_unknown_field", lambda rng, base: _set(base, "padding", "p" * (huge - len(base)))),
        "long_id": ev("long_id", lambda rng, base: _set(base, "id", "i" * 5000)),
        "identifier_team_nhs": ev("identifier_team_nhs", lambda rng, base: _set(base, "data.team", "943-476-5919")),
        "identifier_team_mrn": ev("identifier_team_mrn", lambda rng, base: _set(base, "data.team", f"mrn{rng.randrange(10**6):06d}")),
        "identifier_team_uuid": ev(
            "identifier_team_uuid", lambda rng, base: _set(base, "data.team", "3f2504e0-4f89-11d3-9a0c-0305e82c3301")
        ),
        "identifier_source": ev("identifier_source", lambda rng, base: _set(base, "source", "ehr/client-94347659")),
        "team_not_slug": ev("team_not_slug", lambda rng, base: _set(base, "data.team", "North Team")),
        "unknown_type": ev("unknown_type", lambda rng, base: _set(base, "type", "appointment")),
        "missing_subject": ev("missing_subject", lambda rng, base: json.dumps({k: v for k, v in json.loads(base).items() if k != "subject"}).encode()),
        "not_an_object": ev("not_an_object", lambda rng, base: b"[" + base + b"]"),
        "empty": ev("empty", lambda rng, base: b""),
        "whitespace": ev("whitespace", lambda rng, base: b"  \t "),
        "truncated": ev("truncated", lambda rng, base: base[: rng.randrange(1, len(base))]),
        "byte_flip": ev("byte_flip", lambda rng, base: _flip(rng, base)),
        "bom_prefixed": ev("bom_prefixed", lambda rng, base: b"\xef\xbb\xbf" + _set(base, "id", f"bom-{rng.randrange(10**9)}")),
        "orphan_cancel": ev(
            "orphan_cancel",
            lambda rng, base: _set(_set(_set(base, "type", "cancel"), "data", {"cancels": f"never-{rng.randrange(10**9)}"}), "id", f"c-{rng.randrange(10**9)}"),
        ),
        "hl7_a01": hl7("hl7_a01", lambda rng: _hl7_vary(_A01, rng)),
        "hl7_a03": hl7("hl7_a03", lambda rng: _hl7_vary(_A03, rng)),
        "hl7_cut_in_msh": hl7("hl7_cut_in_msh", lambda rng: _A03[: rng.randrange(12, _A03.index(b"\r"))]),
        "hl7_cut_at_trigger": hl7("hl7_cut_at_trigger", lambda rng: _A03[: _A03.index(b"ADT^A03") + 6]),  # reads as "A0"
        "hl7_pv1_45_month_13": hl7(
            "hl7_pv1_45_month_13",
            # PV1-45 only (EVN-6 carries the same time and stays valid)
            lambda rng: _hl7_vary(_A03, rng).replace(
                b"|20260225080000-0500|20260301094500-0500", b"|20260225080000-0500|20261301094500-0500"
            ),
        ),
        # an update of patient details: a valid message with nothing to publish
        "hl7_a08_update": hl7(
            "hl7_a08_update", lambda rng: _hl7_vary(_A03, rng).replace(b"ADT^A03", b"ADT^A08").replace(b"EVN|A03", b"EVN|A08")
        ),
        "hl7_garbage": hl7("hl7_garbage", lambda rng: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))),
        "hl7_tombstone": hl7("hl7_tombstone", lambda rng: None),
        "fhir_encounter": fhir("fhir_encounter", lambda rng: _encounter(rng)),
        "fhir_status_bogus": fhir("fhir_status_bogus", lambda rng: _encounter(rng, status="bogus")),
        "fhir_class_xyz": fhir("fhir_class_xyz", lambda rng: _encounter(rng, **{"class": {"code": "XYZ"}})),
        "fhir_bundle_one_bad_entry": fhir("fhir_bundle_one_bad_entry", lambda rng: bad_bundle),
        "fhir_teleported_no_period": fhir(
            "fhir_teleported_no_period", lambda rng: {k: v for k, v in _encounter(rng, status="teleported").items() if k != "period"}
        ),
        "fhir_end_year_9999": fhir(
            "fhir_end_year_9999",
            lambda rng: _encounter(rng, period={"start": "2026-02-24T19:30:00-05:00", "end": "9999-12-31T23:59:59+00:00"}),
        ),
        "fhir_not_json": fhir("fhir_not_json", lambda rng: b"{resourceType: Encounter"),
        "fhir_tombstone": fhir("fhir_tombstone", lambda rng: None),
    }
    return cases


def _fhir_bytes(doc: Any) -> bytes | None:
    if doc is None or isinstance(doc, bytes):
        return doc
    return json.dumps(doc).encode()


def _flip(rng: random.Random, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(rng.randrange(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


BIG_CASES = frozenset({"oversized", "large_not_json", "huge_team", "huge_unknown_field"})


def fuzz_records(count: int = 2000, seed: int = 14, *, max_bytes: int = 1 << 20, big_bytes: int = 900_000) -> list[FuzzRecord]:
    """``count`` records (at least one of each named case), seeded; about half valid events.

    ``max_bytes`` is the decoder's limit (``oversized`` records are one byte over it);
    ``big_bytes`` the size of the large records below it (``large_not_json``, ``huge_team``,
    ``huge_unknown_field``), which must fit the broker's record limit when sent live. The
    large cases are drawn rarely (they dominate the bytes)."""
    rng = random.Random(seed)
    cases = _named_cases(max_bytes, big_bytes)
    valid = _simulated(seed, max(100, count // 2))
    out: list[FuzzRecord] = [make(rng, rng.choice(valid)) for make in cases.values()]
    small = [name for name in cases if name not in BIG_CASES]
    kept: list[bytes] = []
    while len(out) < count:
        draw = rng.random()
        if draw < 0.45:
            line = valid[len(kept) % len(valid)]
            kept.append(line)
            out.append(FuzzRecord("events", line, "valid"))
        elif draw < 0.50 and kept:
            out.append(FuzzRecord("events", rng.choice(kept), "duplicate"))
        elif draw < 0.505:
            out.append(cases[rng.choice(sorted(BIG_CASES))](rng, rng.choice(valid)))
        else:
            out.append(cases[rng.choice(small)](rng, rng.choice(valid)))
    rng.shuffle(out)
    return _retries_follow_their_original(out[:count])


def _retries_follow_their_original(records: list[FuzzRecord]) -> list[FuzzRecord]:
    """Move each ``duplicate`` right after the first valid copy of its event, as a publisher's
    retry follows its original: a copy shuffled to months after it (behind the watermark, past
    the history's horizon) would not be recognised as a duplicate, and whether the set held a
    recognisable one would hang on the seed. A duplicate whose original is not in the set
    stays where it was."""
    originals = {r.value for r in records if r.case == "valid"}
    waiting: dict[bytes | None, list[FuzzRecord]] = {}
    for r in records:
        if r.case == "duplicate" and r.value in originals:
            waiting.setdefault(r.value, []).append(r)
    out: list[FuzzRecord] = []
    for r in records:
        if r.case == "duplicate" and r.value in originals:
            continue
        out.append(r)
        if r.case == "valid":
            out.extend(waiting.pop(r.value, []))
    return out


@dataclass
class Pipeline:
    """The decoding every driver does, and a replay engine behind it."""

    decoder: Decoder
    hl7: HL7Adapter
    fhir: FHIRAdapter
    engine: Engine

    @classmethod
    def build(cls, settings: Any, engine: Engine) -> Pipeline:
        options = parts.adapter_options(settings)
        return cls(parts.decoder(settings, live=False), HL7Adapter(options), FHIRAdapter(options), engine)


def account(records: list[FuzzRecord], pipeline: Pipeline) -> Accounting:
    """Feed ``records`` through decoding and the replay engine, finish it, and count. Raises
    whatever the code under test raises (a fuzz test wants to see it)."""
    counts = Accounting()
    engine = pipeline.engine
    orphans = 0

    def feed(result: Event | DeadLetter) -> None:
        nonlocal orphans
        if isinstance(result, DeadLetter):
            counts.by_kind[result.kind.value] += 1
            engine.feed_dead_letter(result)
            return
        outputs = engine.feed(result)
        orphans += sum(1 for o in outputs if isinstance(o, DeadLetter) and o.kind is DeadLetterKind.ORPHAN_CANCEL)

    for offset, record in enumerate(records):
        counts.records += 1
        origin = Origin(topic=record.topic, partition=0, offset=offset)
        if record.topic == "events" or record.value is None:
            counts.units += 1
            feed(pipeline.decoder.decode(record.value, origin))
            continue
        convert = pipeline.hl7.convert if record.topic == "hl7" else pipeline.fhir.convert
        lines = convert(record.value, origin)
        if isinstance(lines, DeadLetter):
            counts.units += 1
            feed(lines)
        elif not lines:
            counts.units += 1
            counts.nothing += 1
        else:
            counts.units += len(lines)
            for line in lines:
                feed(pipeline.decoder.decode(line, origin))
    outputs = engine.finish()
    orphans += sum(1 for o in outputs if isinstance(o, DeadLetter) and o.kind is DeadLetterKind.ORPHAN_CANCEL)
    report = engine.report()["events"]
    counts.accepted = report["accepted"]
    counts.duplicates = report["duplicates"]
    counts.dead_letters = report["dead_letters"]
    counts.orphan_cancels = orphans
    counts.by_kind["orphan_cancel"] += orphans
    return counts

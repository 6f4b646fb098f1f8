"""``pathwatch validate``, ``pathwatch replay`` and publish-then-worker agree on every record.

The worker side is modelled message by message exactly as the live app handles what
``publish`` sends (``streams.publish.records``): a canonical event through
``Decoder.decode`` (stage 1), an HL7 v2 or FHIR message through its adapter, then each line
through ``Decoder.decode`` (ingestion). The live worker itself is exercised by
``tests/integration/test_fuzz_live.py``.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest

from pathwatch import parts
from pathwatch.config import Settings
from pathwatch.parts import core_config
from schemas.deadletter import DeadLetter, Origin
from schemas.fhir import FHIRAdapter
from schemas.hl7 import HL7Adapter
from schemas.pseudonym import Pseudonymiser
from schemas.validate import check_input
from streams.engine import Engine
from streams.publish import records
from streams.replay import replay_stream

FIXTURES = Path(__file__).parents[1] / "fixtures"
BOM = b"\xef\xbb\xbf"
SETTINGS = Settings(pseudonym_key="agreement")
EVENT = json.loads((FIXTURES / "events" / "valid.jsonl").read_bytes().splitlines()[0])
ENCOUNTER = json.loads((FIXTURES / "fhir" / "encounter_finished.json").read_text())
A03 = (FIXTURES / "hl7" / "a03_discharge.hl7").read_bytes()

Outcome = tuple[int, tuple[tuple[str, str], ...]]  # (events accepted, sorted (kind, path) of dead letters)


def _event(**changes: object) -> bytes:
    return json.dumps(dict(EVENT, **changes)).encode()


def _encounter(**changes: object) -> bytes:
    return json.dumps(dict(ENCOUNTER, **changes)).encode()


def _outcome(events: int, dead: list[DeadLetter]) -> Outcome:
    return events, tuple(sorted((d.kind.value, d.path) for d in dead))


def worker(path: Path) -> list[Outcome]:
    """What a worker makes of what ``publish`` sends for ``path``, message by message."""
    decoder = parts.decoder(SETTINGS, live=True)
    options = parts.adapter_options(SETTINGS)
    adapters = {"hl7": HL7Adapter(options).convert, "fhir": FHIRAdapter(options).convert}
    kind, items = records(path, "auto", Pseudonymiser(b"agreement"))
    out = []
    for offset, (_, value) in enumerate(items):
        origin = Origin(topic=kind, partition=0, offset=offset)
        lines = [value] if kind == "events" else adapters[kind](value, origin)
        if isinstance(lines, DeadLetter):
            out.append(_outcome(0, [lines]))
            continue
        results = [decoder.decode(line, origin) for line in lines]
        dead = [r for r in results if isinstance(r, DeadLetter)]
        out.append(_outcome(len(results) - len(dead), dead))
    return out


def validate(path: Path) -> list[Outcome]:
    checked = check_input(str(path), path.read_bytes(), parts.decoder(SETTINGS, live=False), parts.adapter_options(SETTINGS))
    return [_outcome(len(r.events), r.dead_letters) for r in checked.records]


def replay(path: Path) -> tuple[int, int]:
    engine = Engine(core_config(SETTINGS))
    replay_stream(io.BytesIO(path.read_bytes()), engine, parts.decoder(SETTINGS, live=False), path.name)
    engine.finish()
    counts = engine.report()["events"]
    return counts["accepted"] + counts["duplicates"], counts["dead_letters"]


EXTREME = ("0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+00:00")

CASES: dict[str, tuple[str, bytes]] = {
    "events-bom": ("x.jsonl", BOM + _event() + b"\n" + _event(id="e2") + b"\n"),
    "events-extreme-times": ("x.jsonl", b"\n".join(_event(id=f"t{i}", time=t) for i, t in enumerate(EXTREME))),
    "events-long-team": ("x.jsonl", _event(data=dict(EVENT["data"], team="n" * 800)) + b"\n" + _event(id="ok")),
    "fhir-ndjson": ("x.ndjson", _encounter() + b"\n" + _encounter(id="enc-2") + b"\n"),
    "fhir-ndjson-long-first-line": (
        "x.ndjson",
        _encounter(meta={"tag": [{"code": "x" * 9000}]}) + b"\n" + _encounter(id="enc-2", status="bogus") + b"\n",
    ),
    "fhir-bom": ("x.json", BOM + json.dumps(ENCOUNTER, indent=2).encode()),
    "fhir-extreme-end": (
        "x.json",
        _encounter(period={"start": "2026-02-24T19:30:00-05:00", "end": "9999-12-31T23:59:59+00:00"}),
    ),
    "hl7-bom": ("x.hl7", BOM + A03),
    "hl7-year-1": ("x.hl7", A03.replace(b"20260301094500-0500\r", b"00010101094500-0500\r")),
}


@pytest.mark.parametrize("case", CASES)
def test_validate_agrees_with_publish_and_the_worker(case: str, tmp_path: Path) -> None:
    name, data = CASES[case]
    path = tmp_path / name
    path.write_bytes(data)
    assert validate(path) == worker(path)


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("events")])
def test_validate_agrees_with_replay(case: str, tmp_path: Path) -> None:
    name, data = CASES[case]
    path = tmp_path / name
    path.write_bytes(data)
    outcomes = validate(path)
    assert replay(path) == (sum(e for e, _ in outcomes), sum(len(d) for _, d in outcomes))


def test_what_the_cases_decide(tmp_path: Path) -> None:
    """The decisions themselves: a BOM is stripped, extreme times and long teams are dead
    letters naming the field, FHIR NDJSON is one message per line."""
    verdicts = {}
    for case, (name, data) in CASES.items():
        path = tmp_path / f"{case}-{name}"
        path.write_bytes(data)
        verdicts[case] = validate(path)
    assert verdicts["events-bom"] == [(1, ()), (1, ())]
    assert verdicts["events-extreme-times"] == [(0, (("schema", "time"),))] * 2
    assert verdicts["events-long-team"] == [(0, (("schema", "data.team"),)), (1, ())]
    assert verdicts["fhir-ndjson"] == [(2, ()), (2, ())]
    assert verdicts["fhir-ndjson-long-first-line"][0] == (2, ())
    assert verdicts["fhir-bom"] == [(2, ())]
    assert Counter(kind for _, dead in verdicts["fhir-extreme-end"] for kind in dead) == {("schema", "time"): 1}
    assert verdicts["hl7-bom"] == [(1, ())]


def test_validate_notes_a_stripped_bom(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(BOM + _event() + b"\n")
    checked = check_input(str(path), path.read_bytes(), parts.decoder(SETTINGS, live=False), parts.adapter_options(SETTINGS))
    assert any("byte order mark" in note for note in checked.notes)

"""Issue 14: every one of 2,000 generated and mutated records is accounted for through the
replay engine (accepted + duplicates + dead letters + nothing to publish = what came in), and
nothing raises."""

from __future__ import annotations

import json
from collections import Counter

from pathwatch.config import Settings
from pathwatch.parts import core_config
from streams.engine import Engine
from tests.fuzz_inputs import Pipeline, _named_cases, account, fuzz_records

SETTINGS = Settings(pseudonym_key="fuzz")
TEAM_TYPES = ("referral.received", "contact", "crisis", "discharge")


def test_the_fuzz_set_holds_every_named_case() -> None:
    records = fuzz_records(2000, seed=14)
    assert len(records) == 2000
    cases = Counter(r.case for r in records)
    assert set(_named_cases(1 << 20, 900_000)) <= set(cases)
    assert cases["valid"] + cases["duplicate"] >= 800
    assert sum(1 for r in records if r.value is None) >= 3
    assert fuzz_records(50, seed=3) == fuzz_records(50, seed=3)


def test_two_thousand_fuzz_records_through_the_replay_engine_add_up() -> None:
    records = fuzz_records(2000, seed=14)
    counts = account(records, Pipeline.build(SETTINGS, Engine(core_config(SETTINGS))))
    assert counts.records == 2000
    assert counts.units >= 2000
    assert counts.balanced(), counts.summary()
    assert counts.accepted > 500
    assert counts.duplicates > 0
    for kind in ("null_value", "oversized", "not_json", "schema", "identifier_like", "unknown_type", "hl7", "fhir"):
        assert counts.by_kind[kind] > 0, (kind, counts.summary())
    assert counts.nothing > 0


def _has_team(value: bytes | None) -> bool:
    # a team on a type without one (admission, closure, cancel) is an unknown field, ignored
    return value is not None and json.loads(value)["type"] in TEAM_TYPES


def test_extreme_times_and_identifier_teams_never_reach_the_engine() -> None:
    records = [
        r
        for r in fuzz_records(2000, seed=15)
        if r.case.startswith(("time_", "identifier_source")) or (r.case.startswith("identifier_team") and _has_team(r.value))
    ]
    assert len(records) > 50
    counts = account(records, Pipeline.build(SETTINGS, Engine(core_config(SETTINGS))))
    assert counts.accepted == 0
    assert counts.dead_letters == len(records)

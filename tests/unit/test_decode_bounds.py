"""Issue 14, decode side: tombstones, the time window, string bounds, label-bound values and
publisher ids kept out of everything stored."""

from __future__ import annotations

import copy
import hashlib
import hmac
import io
import json
from pathlib import Path
from typing import Any

import pytest

from pathwatch import parts
from pathwatch.config import Settings
from pathwatch.parts import core_config
from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.decode import TIME_MAX, TIME_MIN, Decoder
from schemas.identifiers import identifier_problem
from schemas.model import Event, encode_event
from streams.engine import Engine
from streams.replay import replay_stream

FIXTURES = Path(__file__).parents[1] / "fixtures" / "events"
VALID_LINES = (FIXTURES / "valid.jsonl").read_bytes().splitlines()
VALID = {json.loads(line)["id"]: json.loads(line) for line in VALID_LINES}
KEY = b"bounds-key"
ORIGIN = Origin(topic="pathwatch.events", partition=0, offset=7)


def _pseudonym(value: str) -> str:
    return hmac.new(KEY, value.encode(), hashlib.sha256).hexdigest()[:32]


def _with(base_id: str, path: str, value: Any) -> bytes:
    obj = copy.deepcopy(VALID[base_id])
    *parents, last = path.split(".")
    target = obj
    for part in parents:
        target = target[part]
    target[last] = value
    return json.dumps(obj).encode()


@pytest.fixture
def decoder() -> Decoder:
    return Decoder(KEY, 1 << 20)


def test_a_tombstone_is_a_null_value_dead_letter(decoder: Decoder) -> None:
    result = decoder.decode(None, ORIGIN)
    assert isinstance(result, DeadLetter)
    assert result.kind is DeadLetterKind.NULL_VALUE
    assert result.original == b""
    assert result.origin == ORIGIN
    assert "tombstone" in result.reason


@pytest.mark.parametrize(
    "time",
    [
        "0001-01-01T00:00:00+00:00",
        "9999-12-31T23:59:59+00:00",
        "1899-12-31T23:59:59Z",
        "2100-01-01T00:00:00Z",
        "2099-12-31T23:30:00-05:00",  # 2100-01-01T04:30Z
        "0001-01-01T00:00:00-05:00",
    ],
)
def test_a_time_outside_the_window_is_a_dead_letter_naming_time(decoder: Decoder, time: str) -> None:
    raw = _with("ref-1001", "time", time)
    for result in (decoder.decode(raw, ORIGIN), decoder.decode_line(raw, "f", 1)):
        assert isinstance(result, DeadLetter), time
        assert result.kind is DeadLetterKind.SCHEMA
        assert result.path == "time"
        assert "1900-01-01" in result.reason
        assert "2100-01-01" in result.reason


@pytest.mark.parametrize("time", ["1900-01-01T00:00:00Z", "2099-12-31T23:59:59.999999Z", "1899-12-31T23:00:00-05:00"])
def test_the_window_edges_are_accepted_and_replay_runs(decoder: Decoder, time: str) -> None:
    raw = _with("ref-1001", "time", time)
    event = decoder.decode(raw, ORIGIN)
    assert isinstance(event, Event)
    assert TIME_MIN <= event.time < TIME_MAX
    engine = Engine(core_config(Settings()))
    replay_stream(io.BytesIO(raw + b"\n" + _with("V100:A03", "time", time)), engine, decoder, "edge")
    engine.finish()
    assert engine.report()["events"]["accepted"] == 2


@pytest.mark.parametrize(
    ("base", "path", "limit"),
    [
        ("ref-1001", "id", 128),
        ("ref-1001", "source", 64),
        ("ref-1001", "subject", 256),
        ("ref-1001", "data.referral_id", 128),
        ("ref-1001", "data.referral_source", 64),
        ("con-1", "data.contact_id", 128),
        ("con-1", "data.referral_id", 128),
        ("cri-1", "data.crisis_id", 128),
        ("V100:A01", "data.encounter_id", 128),
        ("V100:A01", "data.facility", 128),
        ("V100:A13:MSG9", "data.cancels", 128),
        ("V100:A13:MSG9", "data.reason", 256),
    ],
)
def test_every_string_is_bounded(decoder: Decoder, base: str, path: str, limit: int) -> None:
    value = ("ab-" * limit)[:limit]  # not one long token: a source must not look like an identifier
    at_limit = decoder.decode(_with(base, path, value), ORIGIN)
    assert isinstance(at_limit, Event), at_limit
    over = decoder.decode(_with(base, path, value + "c"), ORIGIN)
    assert isinstance(over, DeadLetter)
    assert over.kind is DeadLetterKind.SCHEMA
    assert over.path == path
    assert f"longer than {limit}" in over.reason


def test_an_800_kb_team_is_a_small_dead_letter(decoder: Decoder) -> None:
    result = decoder.decode(_with("ref-1001", "data.team", "n" * 800_000), ORIGIN)
    assert isinstance(result, DeadLetter)
    assert result.path == "data.team"
    assert len(result.reason) < 200


@pytest.mark.parametrize(
    ("base", "path"),
    [("ref-1001", "data.team"), ("con-1", "data.team"), ("cri-2", "data.team"), ("V100:A03", "data.team")],
)
@pytest.mark.parametrize("value", ["NHS-943-476-5919", "9434765919", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "mrn12345"])
def test_an_identifier_like_team_is_refused_without_echoing_it(
    decoder: Decoder, base: str, path: str, value: str
) -> None:
    result = decoder.decode(_with(base, path, value), ORIGIN)
    assert isinstance(result, DeadLetter)
    assert result.kind in (DeadLetterKind.IDENTIFIER_LIKE, DeadLetterKind.SCHEMA)
    assert result.path == path
    assert value not in result.reason
    assert value.lower() not in result.reason


def test_an_identifier_like_source_is_refused(decoder: Decoder) -> None:
    result = decoder.decode(_with("ref-1001", "source", "ehr/patient-9434765919"), ORIGIN)
    assert isinstance(result, DeadLetter)
    assert result.kind is DeadLetterKind.IDENTIFIER_LIKE
    assert result.path == "source"
    assert "9434765919" not in result.reason


@pytest.mark.parametrize("team", ["North", "north team", "équipe", "*", "-north", "n" * 41])
def test_a_team_must_be_a_short_lowercase_slug(decoder: Decoder, team: str) -> None:
    result = decoder.decode(_with("ref-1001", "data.team", team), ORIGIN)
    assert isinstance(result, DeadLetter), team
    assert result.kind is DeadLetterKind.SCHEMA
    assert result.path == "data.team"


@pytest.mark.parametrize("team", ["north", "south-east", "crisis_team", "team2", ("north-" * 7)[:40]])
def test_slug_teams_pass_without_a_configured_list(decoder: Decoder, team: str) -> None:
    assert isinstance(decoder.decode(_with("ref-1001", "data.team", team), ORIGIN), Event)


def test_configured_teams_are_the_only_teams_accepted() -> None:
    decoder = Decoder(KEY, 1 << 20, teams=("north", "south"))
    assert isinstance(decoder.decode(_with("ref-1001", "data.team", "south"), ORIGIN), Event)
    result = decoder.decode(_with("con-1", "data.team", "west"), ORIGIN)
    assert isinstance(result, DeadLetter)
    assert result.kind is DeadLetterKind.SCHEMA
    assert result.path == "data.team"
    assert "configured teams" in result.reason
    # an optional team that is absent is fine
    assert isinstance(decoder.decode(VALID_LINES[6], ORIGIN), Event)


def test_configured_teams_must_be_slugs() -> None:
    with pytest.raises(ValueError, match="team"):
        Decoder(KEY, 1 << 20, teams=("North Team",))


def test_from_settings_passes_the_configured_teams() -> None:
    decoder = parts.decoder(Settings(teams=["north"]), live=False)
    assert isinstance(decoder.decode(_with("con-1", "data.team", "south"), ORIGIN), DeadLetter)
    assert isinstance(decoder.decode(VALID_LINES[0], ORIGIN), Event)


def test_publisher_ids_are_pseudonymised_consistently(decoder: Decoder) -> None:
    referral = decoder.decode(VALID_LINES[0], ORIGIN)
    contact = decoder.decode(json.dumps(VALID["con-1"]).encode(), ORIGIN)
    discharge = decoder.decode(json.dumps(VALID["V100:A03"]).encode(), ORIGIN)
    cancel = decoder.decode(json.dumps(VALID["V100:A13:MSG9"]).encode(), ORIGIN)
    crisis = decoder.decode(json.dumps(VALID["cri-1"]).encode(), ORIGIN)
    for event in (referral, contact, discharge, cancel, crisis):
        assert isinstance(event, Event)
    assert isinstance(referral, Event)
    assert isinstance(contact, Event)
    assert isinstance(discharge, Event)
    assert isinstance(cancel, Event)
    assert isinstance(crisis, Event)
    assert referral.id == _pseudonym("ref-1001")
    assert referral.key == ("ehr/community", _pseudonym("ref-1001"))
    assert referral.data.referral_id == contact.data.referral_id == _pseudonym("R-1001")  # type: ignore[union-attr]
    assert contact.data.contact_id == _pseudonym("C-1")  # type: ignore[union-attr]
    assert discharge.data.encounter_id == _pseudonym("V100")  # type: ignore[union-attr]
    assert crisis.data.crisis_id == _pseudonym("K-1")  # type: ignore[union-attr]
    assert cancel.data.cancels == discharge.id == _pseudonym("V100:A03")  # type: ignore[union-attr]
    for event, raw in ((referral, "R-1001"), (contact, "C-1"), (discharge, "V100"), (cancel, "V100:A03")):
        stored = encode_event(event)
        assert raw.encode() not in stored
        assert json.loads(stored)["id"] not in ("ref-1001", "con-1", "V100:A03", "V100:A13:MSG9")


def test_decode_line_and_decode_agree_on_pseudonymised_ids(decoder: Decoder) -> None:
    for number, line in enumerate(VALID_LINES, 1):
        assert decoder.decode_line(line, "f", number) == decoder.decode(line, ORIGIN)


def test_identifier_problem_is_the_metrics_guard() -> None:
    from pathwatch.metrics import label_guard

    for value in ("north", "hospital/st-marys", "followup_7d", "0", "7"):
        assert identifier_problem(value) is None
        assert label_guard(value) == value
    for value in ("NHS-943-476-5919", "abcdef0123456789abcdef", "x" * 65):
        assert identifier_problem(value) is not None
        with pytest.raises(ValueError, match="label value refused"):
            label_guard(value)


def test_the_teams_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathwatch.config import load_settings

    monkeypatch.setenv("PATHWATCH_TEAMS", '["north", "south"]')
    decoder = parts.decoder(load_settings(), live=False)
    assert decoder.teams == frozenset({"north", "south"})

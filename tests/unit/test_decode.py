"""The decode path: valid and invalid examples of every event type, dead-letter kinds and reasons."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pathwatch import parts
from pathwatch.config import Settings
from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.decode import Decoder
from schemas.model import (
    EVENT_TYPES,
    Admission,
    Cancel,
    Contact,
    Crisis,
    Discharge,
    Event,
    ReferralClosed,
    ReferralReceived,
    decode_internal,
    encode_event,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "events"
KEY = b"test-key"
ORIGIN = Origin(topic="pathwatch.events", partition=3, offset=42)
VALID_LINES = (FIXTURES / "valid.jsonl").read_bytes().splitlines()
VALID = {json.loads(line)["id"]: json.loads(line) for line in VALID_LINES}
DELETE = object()


def with_(base_id: str, path: str, value: Any) -> bytes:
    """The valid fixture ``base_id`` with the field at dotted ``path`` set (or deleted)."""
    obj = copy.deepcopy(VALID[base_id])
    *parents, last = path.split(".")
    target = obj
    for part in parents:
        target = target[part]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return json.dumps(obj).encode()


def p(value: str) -> str:
    """The pseudonym of ``value`` under ``KEY`` (subjects and publisher ids alike)."""
    return hmac.new(KEY, value.encode(), hashlib.sha256).hexdigest()[:32]


ID_FIELDS = {"referral_id", "contact_id", "encounter_id", "crisis_id", "cancels"}


@pytest.fixture
def decoder() -> Decoder:
    return Decoder(KEY, 1024 * 1024)


def test_every_type_has_a_valid_example() -> None:
    assert {obj["type"] for obj in VALID.values()} == set(EVENT_TYPES)


@pytest.mark.parametrize("line", VALID_LINES, ids=lambda line: json.loads(line)["id"])
def test_valid_examples_decode_to_events(decoder: Decoder, line: bytes) -> None:
    obj = json.loads(line)
    event = decoder.decode(line, ORIGIN)
    assert isinstance(event, Event), event
    assert (event.source, event.id, event.type) == (obj["source"], p(obj["id"]), obj["type"])
    assert event.key == (obj["source"], p(obj["id"]))
    assert event.time == datetime.fromisoformat(obj["time"])
    assert event.time.tzinfo is not None
    expected_client = hmac.new(KEY, obj["subject"].encode(), hashlib.sha256).hexdigest()[:32] if "subject" in obj else ""
    assert event.client == expected_client
    for name, value in obj["data"].items():
        got = getattr(event.data, name)
        assert (list(got) if isinstance(got, tuple) else got) == (
            p(value) if name in ID_FIELDS and value is not None else value
        )


def test_decoded_fields_are_typed(decoder: Decoder) -> None:
    expected = {
        "ref-1001": ReferralReceived(p("R-1001"), "north", "urgent", "gp"),
        "close-1001": ReferralClosed(p("R-1001"), "seen"),
        "con-1": Contact(p("C-1"), "north", "attended", "face_to_face", p("R-1001")),
        "cri-1": Crisis(p("K-1"), "crisis_line", None),
        "V100:A01": Admission(p("V100"), "st-marys", "inpatient", True),
        "V101:A03": Discharge(p("V101"), "st-marys", "observation", False, "against_medical_advice", None),
        "c-9": Cancel(p("con-2"), None),
    }
    for event_id, data in expected.items():
        event = decoder.decode(json.dumps(VALID[event_id]).encode(), ORIGIN)
        assert isinstance(event, Event)
        assert event.data == data


def test_time_keeps_its_offset(decoder: Decoder) -> None:
    event = decoder.decode(json.dumps(VALID["ref-1003"]).encode(), ORIGIN)
    assert isinstance(event, Event)
    assert event.time.utcoffset() == timedelta(hours=-5)
    assert event.time == datetime(2026, 3, 3, 3, 5, tzinfo=UTC)


def test_decoded_event_survives_the_internal_codec(decoder: Decoder) -> None:
    for line in VALID_LINES:
        event = decoder.decode(line, ORIGIN)
        assert isinstance(event, Event)
        assert decode_internal(encode_event(event)) == event


# (fixture id, field path, new value, kind, error path, reason)
INVALID = [
    ("ref-1001", "data.urgency", "soon", "schema", "data.urgency",
     "data.urgency: 'soon' is not one of emergency, urgent, routine"),
    ("ref-1001", "data.team", DELETE, "schema", "data.team", "data.team: required field is missing"),
    ("ref-1001", "data.team", "", "schema", "data.team", "data.team: must not be empty"),
    ("ref-1001", "data.referral_source", 7, "schema", "data.referral_source",
     "data.referral_source: expected string or null, got integer"),
    ("close-1001", "data.reason", "discharged", "schema", "data.reason",
     "data.reason: 'discharged' is not one of seen, declined, no_contact, transferred, other"),
    ("close-1001", "data.referral_id", None, "schema", "data.referral_id",
     "data.referral_id: expected string, got null"),
    ("con-1", "data.status", "dna", "schema", "data.status",
     "data.status: 'dna' is not one of attended, did_not_attend, cancelled"),
    ("con-1", "data.mode", "letter", "schema", "data.mode",
     "data.mode: 'letter' is not one of face_to_face, telephone, video, text, other"),
    ("con-1", "data.referral_id", "", "schema", "data.referral_id", "data.referral_id: must not be empty"),
    ("cri-1", "data.setting", "police", "schema", "data.setting",
     "data.setting: 'police' is not one of crisis_line, mobile_team, crisis_center, emergency_department"),
    ("cri-1", "data.crisis_id", DELETE, "schema", "data.crisis_id", "data.crisis_id: required field is missing"),
    ("V100:A01", "data.psychiatric", "yes", "schema", "data.psychiatric",
     "data.psychiatric: expected boolean, got string"),
    ("V100:A01", "data.setting", "outpatient", "schema", "data.setting",
     "data.setting: 'outpatient' is not one of inpatient, observation"),
    ("V100:A03", "data.disposition", "hospice", "schema", "data.disposition",
     "data.disposition: 'hospice' is not one of home, community_residence, acute_transfer, "
     "nonacute_transfer, against_medical_advice, died, prison_or_court, other"),
    ("V100:A03", "data.disposition", DELETE, "schema", "data.disposition",
     "data.disposition: required field is missing"),
    ("V100:A13:MSG9", "data.cancels", DELETE, "schema", "data.cancels", "data.cancels: required field is missing"),
    ("V100:A13:MSG9", "data", [], "schema", "data", "data: expected object, got array"),
    # The envelope, whatever the type.
    ("con-1", "specversion", "0.3", "schema", "specversion", "specversion: must be '1.0', got '0.3'"),
    ("con-1", "specversion", 1.0, "schema", "specversion", "specversion: must be '1.0', got 1.0"),
    ("con-1", "id", "", "schema", "id", "id: must not be empty"),
    ("con-1", "source", DELETE, "schema", "source", "source: required field is missing"),
    ("con-1", "time", "2026-03-04T11:00:00", "schema", "time",
     "time: '2026-03-04T11:00:00' has no UTC offset (RFC 3339 needs Z or +hh:mm)"),
    ("con-1", "time", "2026-02-30T11:00:00Z", "schema", "time",
     "time: '2026-02-30T11:00:00Z' is not an RFC 3339 date-time with a UTC offset"),
    ("con-1", "time", "04/03/2026 11:00", "schema", "time",
     "time: '04/03/2026 11:00' is not an RFC 3339 date-time with a UTC offset"),
    ("con-1", "time", 1772622000, "schema", "time", "time: expected string, got integer"),
    ("con-1", "subject", DELETE, "schema", "subject", "subject: required field is missing"),
    ("con-1", "subject", 12345, "schema", "subject", "subject: expected string, got integer"),
    ("con-1", "data", DELETE, "schema", "data", "data: required field is missing"),
    ("con-1", "type", DELETE, "schema", "type", "type: required field is missing"),
    ("con-1", "type", 3, "schema", "type", "type: expected string, got integer"),
    ("con-1", "type", "appointment", "unknown_type", "type",
     "type: 'appointment' is not a known event type (one of referral.received, referral.closed, contact, "
     "crisis, admission, discharge, cancel, service.change)"),
    ("con-1", "type", "", "unknown_type", "type",
     "type: '' is not a known event type (one of referral.received, referral.closed, contact, "
     "crisis, admission, discharge, cancel, service.change)"),
    # service.change: a team's change, never client data
    ("chg-1", "subject", "MRN-000123", "schema", "subject", "subject: expected null, got string"),
    ("chg-1", "data.change_id", DELETE, "schema", "data.change_id", "data.change_id: required field is missing"),
    ("chg-1", "data.change_id", "warm handoffs", "schema", "data.change_id",
     "data.change_id: must be letters, digits, '.', '_', ':' or '-', starting with a letter or digit"),
    ("chg-1", "data.team", "North Team", "schema", "data.team",
     "data.team: must be a short lowercase slug (a-z, 0-9, _ and -, at most 40 characters) or *"),
    ("chg-1", "data.measures", ["referral_wait_days"], "schema", "data.measures[0]",
     "data.measures[0]: 'referral_wait_days' is not one of followup_72h, followup_7d, followup_30d, "
     "readmission_30d, seen_within_target, lost_before_contact, first_contact_dna, repeat_crisis_30d"),
    ("chg-1", "data.measures", [], "schema", "data.measures", "data.measures: [] should be non-empty"),
    ("chg-1", "data.description", DELETE, "schema", "data.description",
     "data.description: required field is missing"),
    ("chg-1", "data.description", "", "schema", "data.description", "data.description: must not be empty"),
    ("chg-1", "data.description", "x" * 501, "schema", "data.description",
     "data.description: longer than 500 characters"),
    ("chg-1", "data.description", "warm\nhand-offs", "schema", "data.description",
     "data.description: must be one line of plain text (no control characters)"),
    ("chg-1", "data.description", "called back MRN-004242 first", "identifier_like", "data.description",
     "data.description: a word looks like an identifier (contains a run of 4+ digits); "
     "describe the change without client data, ids or dates"),
    ("chg-1", "data.description", "warm hand-offs from 2026-03-01", "identifier_like", "data.description",
     "data.description: a word looks like an identifier (contains a run of 4+ digits); "
     "describe the change without client data, ids or dates"),
    ("chg-1", "data.description", "see 3f2b9c1e-8d4a-4b6e-9f10-2c3d4e5f6a7b", "identifier_like", "data.description",
     "data.description: a word looks like an identifier (looks like a UUID); "
     "describe the change without client data, ids or dates"),
    ("chg-1", "data.expected_direction", "up", "schema", "data.expected_direction",
     "data.expected_direction: 'up' is not one of higher, lower"),
]


@pytest.mark.parametrize(
    ("base", "field", "value", "kind", "path", "reason"),
    INVALID,
    ids=[f"{row[0]}-{row[1]}-{row[2] if row[2] is not DELETE else 'missing'}" for row in INVALID],
)
def test_invalid_examples_dead_letter_with_specific_reason(
    decoder: Decoder, base: str, field: str, value: Any, kind: str, path: str, reason: str
) -> None:
    raw = with_(base, field, value)
    result = decoder.decode(raw, ORIGIN)
    assert isinstance(result, DeadLetter)
    assert (result.kind.value, result.path, result.reason) == (kind, path, reason)
    assert result.origin == ORIGIN
    assert result.original == raw


def test_every_type_has_invalid_examples() -> None:
    assert {VALID[row[0]]["type"] for row in INVALID} == set(EVENT_TYPES)


def test_several_bad_fields_name_the_first_and_count_the_rest(decoder: Decoder) -> None:
    obj = copy.deepcopy(VALID["con-1"])
    obj["data"]["status"] = "maybe"
    obj["data"]["mode"] = "pigeon"
    obj["time"] = "yesterday"
    result = decoder.decode(json.dumps(obj).encode(), ORIGIN)
    assert isinstance(result, DeadLetter)
    assert result.path == "time"
    assert result.reason.endswith("(and 2 more fields with errors)")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON: Input data was truncated"),
        (b"{", "not JSON: Input data was truncated"),
        (b"hello", "not JSON: JSON is malformed: invalid character (byte 0)"),
        (b'{"a": NaN}', "not JSON: JSON is malformed: invalid character (byte 6)"),
        (b"\xff\xfe{}", "not UTF-8: invalid byte at offset 0"),
        (b'{"subject": "caf\xe9"}', "not UTF-8: invalid byte at offset 16"),
        (b"[" * 5000, "not JSON: nested too deeply"),
    ],
)
def test_not_json(decoder: Decoder, raw: bytes, reason: str) -> None:
    result = decoder.decode(raw, ORIGIN)
    assert isinstance(result, DeadLetter)
    assert (result.kind, result.reason, result.path) == (DeadLetterKind.NOT_JSON, reason, "")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"[1, 2]", "event: expected a JSON object, got array"), (b'"x"', "event: expected a JSON object, got string"),
     (b"null", "event: expected a JSON object, got null")],
)
def test_json_that_is_not_an_object(decoder: Decoder, raw: bytes, reason: str) -> None:
    result = decoder.decode(raw, ORIGIN)
    assert isinstance(result, DeadLetter)
    assert (result.kind, result.reason) == (DeadLetterKind.SCHEMA, reason)


def test_oversized_is_rejected_before_parsing() -> None:
    decoder = Decoder(KEY, 1024)
    valid_but_big = with_("ref-1001", "data.referral_source", "x" * 2000)
    result = decoder.decode(valid_but_big, ORIGIN)
    assert isinstance(result, DeadLetter)
    assert result.kind is DeadLetterKind.OVERSIZED
    assert result.reason.startswith(f"message is {len(valid_but_big)} bytes, over the limit of 1024 bytes")
    assert result.original == valid_but_big[:1024]
    # Exactly at the limit is accepted.
    exact = VALID_LINES[0] + b" " * (1024 - len(VALID_LINES[0]))
    assert isinstance(decoder.decode(exact, ORIGIN), Event)


def test_oversized_garbage_is_oversized_not_not_json() -> None:
    result = Decoder(KEY, 1024).decode(b"\xff" * 5000, ORIGIN)
    assert isinstance(result, DeadLetter)
    assert result.kind is DeadLetterKind.OVERSIZED


def test_dead_letter_record_carries_origin_and_original_bytes(decoder: Decoder) -> None:
    raw = with_("ref-1001", "data.urgency", "soon")
    result = decoder.decode(raw, ORIGIN)
    assert isinstance(result, DeadLetter)
    record = json.loads(result.to_json())
    assert record["kind"] == "schema"
    assert record["path"] == "data.urgency"
    assert record["origin"] == {"topic": "pathwatch.events", "partition": 3, "offset": 42, "file": None, "line": None}
    assert base64.b64decode(record["original_base64"]) == raw


def test_unknown_fields_are_ignored(decoder: Decoder) -> None:
    raw = with_("con-1", "data.location", "clinic 4")
    event = decoder.decode(raw, ORIGIN)
    assert isinstance(event, Event)
    assert event.data == Contact(p("C-1"), "north", "attended", "face_to_face", p("R-1001"))


def test_decode_obj_matches_decode(decoder: Decoder) -> None:
    for line in VALID_LINES:
        assert decoder.decode_obj(json.loads(line), line, ORIGIN) == decoder.decode(line, ORIGIN)
    bad = json.loads(with_("ref-1001", "data.urgency", "soon"))
    result = decoder.decode_obj(bad, b"original", ORIGIN)
    assert isinstance(result, DeadLetter)
    assert result.reason == "data.urgency: 'soon' is not one of emergency, urgent, routine"
    assert result.original == b"original"


def test_decode_obj_with_unencodable_values_is_a_dead_letter(decoder: Decoder) -> None:
    obj = dict(VALID["con-1"], extra=object())
    result = decoder.decode_obj(obj, b"x", ORIGIN)
    assert isinstance(result, DeadLetter)
    assert result.kind is DeadLetterKind.SCHEMA
    assert result.reason == "event: not JSON-compatible (TypeError)"


def test_decode_obj_accepts_aware_datetimes(decoder: Decoder) -> None:
    obj = dict(VALID["con-1"], time=datetime(2026, 3, 1, tzinfo=UTC))
    event = decoder.decode_obj(obj, b"x", ORIGIN)
    assert isinstance(event, Event)
    assert event.time == datetime(2026, 3, 1, tzinfo=UTC)


def test_deduplication_key_is_source_and_id(decoder: Decoder) -> None:
    a = decoder.decode(VALID_LINES[0], ORIGIN)
    b = decoder.decode(with_("ref-1001", "source", "ehr/other"), ORIGIN)
    c = decoder.decode(with_("ref-1001", "time", "2026-03-09T09:15:00+00:00"), ORIGIN)
    assert isinstance(a, Event)
    assert isinstance(b, Event)
    assert isinstance(c, Event)
    assert a.key != b.key
    assert a.key == c.key == ("ehr/community", p("ref-1001"))


def test_raw_subject_never_reaches_an_event(decoder: Decoder) -> None:
    for line in VALID_LINES:
        subject = json.loads(line).get("subject")
        event = decoder.decode(line, ORIGIN)
        if subject is None:  # service.change: no subject, no client
            assert isinstance(event, Event)
            assert event.client == ""
            continue
        assert isinstance(event, Event)
        assert subject not in repr(event)
        assert subject.encode() not in encode_event(event)
        assert subject not in msgspec.json.encode(msgspec.structs.asdict(event)).decode()


@pytest.mark.parametrize(
    "mutation",
    [
        ("data.urgency", "SUBJ-77123"),
        ("type", "SUBJ-77123"),
        ("specversion", "SUBJ-77123"),
        ("time", "SUBJ-77123"),
        ("data.team", ["SUBJ-77123"]),
        ("data.urgency", "x-SUBJ-77123-y"),
    ],
)
def test_reasons_never_contain_the_subject(decoder: Decoder, mutation: tuple[str, Any]) -> None:
    raw = with_("ref-1001", "subject", "SUBJ-77123")
    obj = json.loads(raw)
    field, value = mutation
    *parents, last = field.split(".")
    target = obj
    for part in parents:
        target = target[part]
    target[last] = value
    result = decoder.decode(json.dumps(obj).encode(), ORIGIN)
    assert isinstance(result, DeadLetter)
    assert "SUBJ-77123" not in result.reason
    assert "SUBJ-77123" not in result.path
    assert b"SUBJ-77123" in result.original  # the original goes, whole, to the dead-letter topic only


def test_subject_with_quotes_is_redacted_in_escaped_form_too(decoder: Decoder) -> None:
    subject = "O'Brien\n01"
    raw = json.dumps(dict(VALID["ref-1001"], subject=subject, type=subject)).encode()
    result = decoder.decode(raw, ORIGIN)
    assert isinstance(result, DeadLetter)
    assert "Brien" not in result.reason


def test_from_settings_refuses_live_without_key() -> None:
    with pytest.raises(ValueError, match="PATHWATCH_PSEUDONYM_KEY"):
        parts.decoder(Settings(), live=True)
    assert isinstance(parts.decoder(Settings(allow_dev_key=True), live=True), Decoder)
    assert isinstance(parts.decoder(Settings(), live=False), Decoder)


def test_from_settings_uses_the_key_and_limit() -> None:
    settings = Settings(pseudonym_key="s3cret", max_message_bytes=2048)
    decoder = parts.decoder(settings, live=True)
    assert decoder.max_bytes == 2048
    event = decoder.decode(VALID_LINES[0], ORIGIN)
    assert isinstance(event, Event)
    assert event.client == hmac.new(b"s3cret", b"NHS-943-476-5919", hashlib.sha256).hexdigest()[:32]

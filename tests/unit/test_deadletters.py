"""``pathwatch deadletters``: reading both record formats, counting a dead letter sent twice
once, previews that never show a value, selections, and what re-publishing would send."""

from __future__ import annotations

import pytest

from pathwatch.config import load_settings
from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.pseudonym import Pseudonymiser
from streams.deadletters import (
    Selection,
    count_by_reason,
    dead_letter_count,
    distinct,
    parse_record,
    preview,
    republish_plan,
)

SETTINGS = load_settings()
EVENTS, HL7 = SETTINGS.topics.events, SETTINGS.topics.hl7
EVENT = (
    b'{"specversion":"1.0","id":"ev-1","source":"ehr/community","type":"contact","time":"2026-01-01T00:00:00Z",'
    b'"subject":"MRN-000123","data":{"contact_id":"c-77","team":"north","status":"attended","mode":"video"}}'
)
HL7_MESSAGE = (
    b"MSH|^~\\&|ADT|ST-MARYS|PW|PW|202601011200||ADT^A03|MSG1|P|2.5\r"
    b"PID|1||MRN-000123^^^ST-MARYS||DOE^JANE||19800101|F\rPV1|1|I|PSY^1^1\r"
)


def letter(original: bytes, kind: DeadLetterKind = DeadLetterKind.SCHEMA, offset: int = 5, path: str = "$.data",
           reason: str = "'team' is a required property", topic: str | None = EVENTS) -> DeadLetter:
    origin = Origin(topic, 0, offset) if topic else Origin(file="events.jsonl", line=offset)
    return DeadLetter(kind, reason, path, origin, original)


def stored(dl: DeadLetter, offset: int = 0, max_bytes: int | None = None):  # type: ignore[no-untyped-def]
    value, headers = dl.to_record(max_bytes)
    return parse_record(value, headers, offset)


def test_the_header_format_reads_back() -> None:
    r = stored(letter(EVENT), offset=9)
    assert r.letter == letter(EVENT)
    assert r.offset == 9
    assert r.original_length == len(EVENT)
    assert not r.cut


def test_the_old_json_format_reads_back() -> None:
    dl = letter(EVENT, DeadLetterKind.NOT_JSON)
    r = parse_record(dl.to_json(), None, 3)
    assert r.letter == dl


def test_a_record_that_is_no_dead_letter_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="offset 4 is not a dead letter"):
        parse_record(b"hello", [], 4)


def test_a_dead_letter_sent_twice_counts_once_but_two_entries_of_one_input_count_twice() -> None:
    first = stored(letter(EVENT), 0)
    again = stored(letter(EVENT), 1)  # its batch processed again after a crash
    other_entry = stored(letter(EVENT, path="$.entry[1]"), 2)  # the same input, another bad entry
    orphan_a = stored(letter(b'{"id":"a"}', DeadLetterKind.ORPHAN_CANCEL, topic=None), 3)
    orphan_b = stored(letter(b'{"id":"b"}', DeadLetterKind.ORPHAN_CANCEL, topic=None), 4)
    records = [first, again, other_entry, orphan_a, orphan_b]
    assert distinct(records) == [first, other_entry, orphan_a, orphan_b]
    assert dead_letter_count(records) == 4
    old = letter(EVENT).to_json()
    assert dead_letter_count([parse_record(old, None, 0), parse_record(old, None, 1)]) == 1


def test_counts_by_kind_and_reason() -> None:
    records = [stored(letter(EVENT, offset=i)) for i in range(3)]
    records.append(stored(letter(b"x", DeadLetterKind.NOT_JSON, reason="not JSON")))
    assert count_by_reason(records) == [
        ("schema", "'team' is a required property", 3),
        ("not_json", "not JSON", 1),
    ]


@pytest.mark.parametrize(
    ("original", "shows", "never"),
    [
        (EVENT, ["type=contact", "source=ehr/community", "data{contact_id,team,status,mode}"],
         [b"MRN-000123", b"c-77", b"ev-1", b"north"]),
        (HL7_MESSAGE, ["HL7 v2 ADT^A03", "MSH PID PV1"], [b"MRN-000123", b"DOE", b"JANE", b"19800101"]),
        (b'{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Encounter","subject":'
         b'{"reference":"Patient/MRN-000123"}}}]}', ["FHIR Bundle (1 Encounter)"], [b"MRN-000123"]),
        (b"MRN-000123,DOE,JANE", ["not JSON, 19 bytes"], [b"MRN-000123", b"DOE"]),
        (b"", ["empty"], []),
        (b'"MRN-000123"', ["JSON str"], [b"MRN-000123"]),
    ],
)
def test_a_preview_shows_the_shape_never_a_value(original: bytes, shows: list[str], never: list[bytes]) -> None:
    text = preview(original)
    for part in shows:
        assert part in text
    for value in never:
        assert value.decode() not in text


def test_a_selection_by_kind_reason_and_origin() -> None:
    a = stored(letter(EVENT, DeadLetterKind.SCHEMA, topic=EVENTS))
    b = stored(letter(HL7_MESSAGE, DeadLetterKind.HL7, reason="PV1-45: month 13", topic=HL7))
    assert [r for r in (a, b) if Selection(kinds=("hl7",))(r)] == [b]
    assert [r for r in (a, b) if Selection(reasons=("MONTH",))(r)] == [b]
    assert [r for r in (a, b) if Selection(origins=(EVENTS,))(r)] == [a]
    assert [r for r in (a, b) if Selection(origins=(f"{HL7}[0]",))(r)] == [b]
    assert Selection().empty
    assert [r for r in (a, b) if Selection()(r)] == [a, b]


def test_republish_returns_inputs_to_their_topic_keyed_like_publish() -> None:
    pseudonyms = Pseudonymiser(b"k")
    event = stored(letter(EVENT, topic=EVENTS))
    hl7 = stored(letter(HL7_MESSAGE, DeadLetterKind.HL7, topic=HL7))
    from_file = stored(letter(EVENT, topic=None))
    internal = stored(letter(EVENT, topic=SETTINGS.topics.clients))
    cut = stored(letter(b"x" * 10_000, DeadLetterKind.OVERSIZED), max_bytes=8_192)
    assert cut.cut
    plan, result = republish_plan([event, hl7, from_file, internal, cut], SETTINGS, None, pseudonyms)
    assert plan == [
        (EVENTS, pseudonyms.pseudonym("MRN-000123").encode(), EVENT),
        (HL7, None, HL7_MESSAGE),
    ]
    assert (result.cut, result.no_topic) == (1, 2)
    plan, result = republish_plan([event, from_file], SETTINGS, "fixed.events", pseudonyms)
    assert [(t, v) for t, _, v in plan] == [("fixed.events", EVENT), ("fixed.events", EVENT)]


def test_the_dead_letter_topic_retention_is_a_setting() -> None:
    from streams.topics import topic_specs

    def retention(settings):  # type: ignore[no-untyped-def]
        spec = next(s for s in topic_specs(settings) if s.name == settings.topics.dead_letters)
        return int(spec.config["retention.ms"])

    assert retention(load_settings()) == 30 * 24 * 3600 * 1000
    assert retention(load_settings(dead_letter_retention="14d")) == 14 * 24 * 3600 * 1000

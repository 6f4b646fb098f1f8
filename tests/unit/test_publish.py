"""pathwatch publish: records are keyed by the client pseudonym (never the raw subject)."""

from __future__ import annotations

from pathlib import Path

from schemas.pseudonym import Pseudonymiser
from streams.publish import records, split_changes

PSEUDONYMS = Pseudonymiser(b"k")


def test_event_lines_are_keyed_by_pseudonym_and_bad_lines_still_published(tmp_path: Path) -> None:
    good = b'{"specversion":"1.0","id":"1","source":"ehr/x","type":"crisis","time":"2026-01-01T00:00:00Z","subject":"MRN-000123","data":{"crisis_id":"c","setting":"crisis_line"}}'
    path = tmp_path / "events.jsonl"
    path.write_bytes(good + b"\nnot json\n\n")
    kind, items = records(path, "auto", PSEUDONYMS)
    assert kind == "events"
    assert items == [(PSEUDONYMS.pseudonym("MRN-000123").encode(), good), (None, b"not json")]
    assert all(b"MRN-000123" not in (key or b"") for key, _ in items)


def test_hl7_files_are_split_into_messages(tmp_path: Path) -> None:
    message = b"MSH|^~\\&|ADT|ST-MARYS|PW|PW|202601011200||ADT^A03|MSG{n}|P|2.5\rPID|1||MRN-1\r"
    path = tmp_path / "feed.hl7"
    path.write_bytes(b"\x0b" + message.replace(b"{n}", b"1") + b"\x1c\r\x0b" + message.replace(b"{n}", b"2") + b"\x1c\r")
    kind, items = records(path, "auto", PSEUDONYMS)
    assert kind == "hl7"
    assert [value.split(b"|")[9] for _, value in items] == [b"MSG1", b"MSG2"]
    assert all(key is None for key, _ in items)


def test_fhir_files_go_whole(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_bytes(b'{"resourceType": "Bundle", "entry": []}')
    kind, items = records(path, "auto", PSEUDONYMS)
    assert kind == "fhir"
    assert items == [(None, path.read_bytes())]


def test_service_changes_of_an_events_file_go_to_the_changes_topic_keyed_by_change_id(tmp_path: Path) -> None:
    """A simulated file with a recorded change (`pathwatch simulate --change`) published
    whole: the change must reach the topic the workers read changes from, not the events."""
    event = b'{"specversion":"1.0","id":"1","source":"ehr/x","type":"crisis","time":"2026-01-01T00:00:00Z","subject":"MRN-1","data":{"crisis_id":"c","setting":"crisis_line"}}'
    change = b'{"specversion":"1.0","id":"2","source":"pathwatch/change","type":"service.change","time":"2026-03-01T00:00:00Z","data":{"change_id":"north-2026-03-01","team":"north","description":"warm hand-offs"}}'
    odd = b'{"type":"service.change","data":{}}'  # no change_id: stays an event, dead-lettered by the worker
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([event, change, odd]) + b"\n")
    _, items = records(path, "auto", PSEUDONYMS)
    events, changes = split_changes(items)
    assert changes == [(b"north-2026-03-01", change)]
    assert [value for _, value in events] == [event, odd]

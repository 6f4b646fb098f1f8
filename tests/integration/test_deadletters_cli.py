"""``pathwatch deadletters`` on the real Kafka, over records written with
``DeadLetter.to_record`` (the live stages' format) and one of the older JSON format: counts by
reason with a repeat counted once, listings that never print a subject unless asked, and
re-publishing chosen originals to the topic they came from or another."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pathwatch.cli import main
from pathwatch.config import load_settings
from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.pseudonym import Pseudonymiser
from streams.deadletters import dead_letter_count, read_dead_letters

SUBJECT = "MRN-000123"
EVENT = (
    b'{"specversion":"1.0","id":"ev-1","source":"ehr/community","type":"contact","time":"2026-01-01T00:00:00Z",'
    b'"subject":"MRN-000123","data":{"contact_id":"c-77","status":"attended","mode":"video"}}'
)
HL7 = b"MSH|^~\\&|ADT|ST-MARYS|PW|PW|202601011200||ADT^A03|MSG1|P|2.5\rPID|1||MRN-000123^^^ST-MARYS||DOE^JANE\r"


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, list[tuple[str, bytes]]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value, headers in records:
            await producer.send_and_wait(topic, value=value, headers=headers)
    finally:
        await producer.stop()


async def _read(bootstrap: str, topic: str, count: int) -> list[tuple[bytes | None, bytes | None]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        out: list[tuple[bytes | None, bytes | None]] = []
        async with asyncio.timeout(30):
            while len(out) < count:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    out.extend((m.key, m.value) for m in messages)
        end = (await consumer.end_offsets([tp]))[tp]
        assert end == count, f"{topic} holds {end} records, expected {count}"
        return out
    finally:
        await consumer.stop()


@pytest.fixture
def topics(kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    names = {
        "dead_letters": f"pw-test-dl-{unique}",
        "events": f"pw-test-events-{unique}",
        "hl7": f"pw-test-hl7-{unique}",
        "fixed": f"pw-test-fixed-{unique}",
    }
    monkeypatch.setenv("PATHWATCH_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("PATHWATCH_TOPICS__DEAD_LETTERS", names["dead_letters"])
    monkeypatch.setenv("PATHWATCH_TOPICS__EVENTS", names["events"])
    monkeypatch.setenv("PATHWATCH_TOPICS__HL7", names["hl7"])
    monkeypatch.setenv("PATHWATCH_PSEUDONYM_KEY", "test-key")
    schema = DeadLetter(DeadLetterKind.SCHEMA, "'team' is a required property", "$.data",
                        Origin(names["events"], 3, 41), EVENT)
    hl7 = DeadLetter(DeadLetterKind.HL7, "PV1-45: month 13 is not a month", "PV1-45", Origin(names["hl7"], 0, 7), HL7)
    not_json = DeadLetter(DeadLetterKind.NOT_JSON, "not JSON: expecting value", "", Origin(names["events"], 1, 2),
                          b"MRN-000123,DOE,JANE")
    huge = DeadLetter(DeadLetterKind.OVERSIZED, "larger than max_message_bytes", "",
                      Origin(names["events"], 0, 9), b"x" * 20_000)
    records = [schema.to_record(), hl7.to_record(), schema.to_record(), not_json.to_record(), huge.to_record(10_000)]
    old = DeadLetter(DeadLetterKind.NOT_JSON, "not JSON (old format)", "", Origin(names["events"], 2, 5), b"{oops")
    records.append((old.to_json(), []))
    asyncio.run(_produce(kafka_bootstrap, names["dead_letters"], records))
    return names


def test_deadletters_counts_lists_and_republishes(
    topics: dict[str, str], kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deadletters"]) == 0
    out = capsys.readouterr().out
    assert "5 dead letters (1 sent again after a restart, counted once)" in out
    assert "'team' is a required property" in out
    assert SUBJECT not in out

    assert main(["deadletters", "--show", "10"]) == 0
    captured = capsys.readouterr()
    assert "HL7 v2 ADT^A03" in captured.out
    assert "cut: 5,904 of 20,000 bytes kept" in captured.out
    assert SUBJECT not in captured.out + captured.err
    assert "DOE" not in captured.out + captured.err

    assert main(["deadletters", "--show", "1", "--kind", "not_json", "--reason", "expecting", "--show-original"]) == 0
    captured = capsys.readouterr()
    assert "may hold client identifiers" in captured.err
    assert "MRN-000123,DOE,JANE" in captured.out

    assert main(["deadletters", "--republish"]) == 2
    assert "--republish needs --kind" in capsys.readouterr().err

    assert main(["deadletters", "--republish", "--kind", "schema"]) == 0
    assert "re-published 1 of 1 selected dead letters" in capsys.readouterr().out
    key = Pseudonymiser(b"test-key").pseudonym(SUBJECT).encode()
    assert asyncio.run(_read(kafka_bootstrap, topics["events"], 1)) == [(key, EVENT)]

    assert main(["deadletters", "--republish", "--origin", topics["hl7"], "--to", topics["fixed"]]) == 0
    assert asyncio.run(_read(kafka_bootstrap, topics["fixed"], 1)) == [(None, HL7)]

    assert main(["deadletters", "--republish", "--kind", "oversized"]) == 1
    assert "skipped 1 cut to fit" in capsys.readouterr().out


def test_the_live_report_counts_each_dead_letter_once(topics: dict[str, str]) -> None:
    stored, unreadable = asyncio.run(read_dead_letters(load_settings()))
    assert (len(stored), unreadable) == (6, 0)
    assert dead_letter_count(stored) == 5

"""HL7 v2 ADT adapter: each trigger, MLLP, batches, missing fields, bad dates, unknown dispositions."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from schemas.adapters import AdapterOptions
from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.decode import Decoder
from schemas.hl7 import DISPOSITIONS, HL7Adapter, split_messages
from schemas.model import Event

FIXTURES = Path(__file__).parents[1] / "fixtures" / "hl7"
ORIGIN = Origin(topic="pathwatch.hl7", partition=0, offset=7)
EST = timezone(timedelta(hours=-5))
ADAPTER = HL7Adapter(AdapterOptions(timezone="America/New_York"))


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def edit(raw: bytes, segment: str, field: int, value: str | None) -> bytes:
    """Set (or with None, drop the segment) field ``field`` of the first ``segment``: a test helper only."""
    lines = raw.decode().strip("\r").split("\r")
    out = []
    for line in lines:
        if line.startswith(segment + "|") and value is None:
            continue
        if line.startswith(segment + "|"):
            parts = line.split("|")
            index = field if segment != "MSH" else field - 1
            parts += [""] * (index + 1 - len(parts))
            parts[index] = value
            line = "|".join(parts)
            segment = "\x00"  # only the first
        out.append(line)
    return "\r".join(out).encode()


def one(raw: bytes, adapter: HL7Adapter = ADAPTER) -> dict[str, Any]:
    result = adapter.convert(raw, ORIGIN)
    assert isinstance(result, list), result
    assert len(result) == 1
    return json.loads(result[0])


def test_a01_becomes_admission() -> None:
    event = one(fixture("a01_admit.hl7"))
    assert event == {
        "specversion": "1.0", "id": "V100:A01", "source": "hospital/st-marys", "type": "admission",
        "time": "2026-02-25T08:00:00-05:00", "subject": "ST-MARYS|MRN-000123", "datacontenttype": "application/json",
        "hl7controlid": "MSG-A01-0001", "hl7trigger": "A01",
        "data": {"encounter_id": "V100", "facility": "st-marys", "setting": "inpatient", "psychiatric": True},
    }  # fmt: skip


def test_a03_becomes_discharge() -> None:
    event = one(fixture("a03_discharge.hl7"))
    assert (event["id"], event["type"], event["time"]) == ("V100:A03", "discharge", "2026-03-01T09:45:00-05:00")
    assert event["data"] == {"encounter_id": "V100", "facility": "st-marys", "setting": "inpatient",
                             "psychiatric": True, "disposition": "home"}  # fmt: skip


def test_a11_cancels_the_admission_of_the_same_visit() -> None:
    admit, cancel = one(fixture("a01_admit.hl7")), one(fixture("a11_cancel_admit.hl7"))
    assert cancel["type"] == "cancel"
    assert cancel["data"]["cancels"] == admit["id"] == "V100:A01"
    assert cancel["id"] == "V100:A11:MSG-A11-0001"
    assert cancel["source"] == admit["source"]
    # EVN-2 has no offset: MSH-7 states the sender's offset (-0500).
    assert cancel["time"] == "2026-02-25T09:30:00-05:00"


def test_a13_cancels_the_discharge_of_the_same_visit() -> None:
    discharge, cancel = one(fixture("a03_discharge.hl7")), one(fixture("a13_cancel_discharge.hl7"))
    assert cancel["data"]["cancels"] == discharge["id"] == "V100:A03"
    assert cancel["id"] == "V100:A13:MSG-A13-0001"


def test_mllp_framed_v23_without_offsets_uses_the_configured_zone() -> None:
    event = one(fixture("a03_mllp_v23.hl7"))
    assert event["source"] == "hospital/riverside-general"
    assert event["subject"] == "RIVERSIDE|RG-778812"
    # No EVN-6: PV1-45 13:30 local; New York is on EST (-05:00) on 2 March 2026.
    assert datetime.fromisoformat(event["time"]) == datetime(2026, 3, 2, 13, 30, tzinfo=EST)
    assert event["data"]["disposition"] == "died"
    assert event["data"]["psychiatric"] is False


def test_every_adapter_output_decodes_and_hides_the_subject() -> None:
    decoder = Decoder(b"k", 1 << 20)
    for name in ("a01_admit.hl7", "a03_discharge.hl7", "a11_cancel_admit.hl7", "a13_cancel_discharge.hl7",
                 "a03_mllp_v23.hl7"):  # fmt: skip
        result = ADAPTER.convert(fixture(name), ORIGIN)
        assert isinstance(result, list)
        for line in result:
            event = decoder.decode(line, ORIGIN)
            assert isinstance(event, Event), event
            assert event.client == decoder.pseudonymiser.pseudonym(json.loads(line)["subject"])
            assert "MRN-000123" not in repr(event)
            assert "RG-778812" not in repr(event)


def test_split_messages_of_a_batch_file() -> None:
    parts = split_messages(fixture("batch.hl7"))
    assert [line for line, _ in parts] == [3, 9, 13, 17, 21, 25]
    assert all(message.startswith(b"MSH|") for _, message in parts)
    assert parts[0][1] == fixture("a01_admit.hl7").rstrip(b"\r")


def test_split_messages_with_mllp_frames_back_to_back() -> None:
    a, b = fixture("a01_admit.hl7"), fixture("a03_discharge.hl7")
    data = b"\x0b" + a + b"\x1c\r" + b"\x0b" + b + b"\x1c\r"
    parts = split_messages(data)
    assert [message for _, message in parts] == [a.rstrip(b"\r"), b.rstrip(b"\r")]


def test_split_messages_keeps_leading_garbage_as_a_message() -> None:
    parts = split_messages(b"hello\n" + fixture("a01_admit.hl7"))
    assert parts[0] == (1, b"hello")
    result = ADAPTER.convert(parts[0][1], ORIGIN)
    assert isinstance(result, DeadLetter)
    assert result.reason == "not an HL7 v2 message: it does not start with an MSH segment"


def test_batch_outcomes() -> None:
    outcomes = [ADAPTER.convert(message, ORIGIN) for _, message in split_messages(fixture("batch.hl7"))]
    kinds = ["events" if isinstance(o, list) and o else "none" if isinstance(o, list) else o.path for o in outcomes]
    # A01; A08 (not used); outpatient A01 (not used); unknown disposition; bad date; A03.
    assert kinds == ["events", "none", "none", "PV1-36", "EVN-6", "events"]


A03 = fixture("a03_discharge.hl7")

# (segment, field, new value or None to drop the segment, error path, reason)
BAD = [
    ("PID", 3, "", "PID-3", "PID-3: patient identifier is missing"),
    ("PID", 3, None, "PID-3", "PID-3: patient identifier is missing"),
    ("PV1", 36, "", "PV1-36", "PV1-36: discharge disposition is missing"),
    ("PV1", 36, "ZZ", "PV1-36", "PV1-36: discharge disposition 'ZZ' is not a known code (UB-04 discharge status "
     "such as 01 home, 02 acute transfer, 07 against advice, 20 died)"),
    ("PV1", 2, "", "PV1-2", "PV1-2: patient class is missing"),
    ("PV1", 1, None, "PV1", "PV1: patient visit segment is missing"),
    ("EVN", 6, "20260230094500-0500", "EVN-6",
     "EVN-6: '20260230094500-0500' is not a valid HL7 date/time (YYYYMMDD[HHMM[SS[.S]]][+/-ZZZZ])"),
    ("EVN", 6, "yesterday", "EVN-6",
     "EVN-6: 'yesterday' is not a valid HL7 date/time (YYYYMMDD[HHMM[SS[.S]]][+/-ZZZZ])"),
    ("EVN", 6, "202603", "EVN-6", "EVN-6: '202603' is not a valid HL7 date/time (YYYYMMDD[HHMM[SS[.S]]][+/-ZZZZ])"),
    ("EVN", 6, "20260301094500+2500", "EVN-6",
     "EVN-6: '20260301094500+2500' is not a valid HL7 date/time (YYYYMMDD[HHMM[SS[.S]]][+/-ZZZZ])"),
    ("PV1", 45, "20261301", "PV1-45", "PV1-45: '20261301' is not a valid HL7 date/time (YYYYMMDD[HHMM[SS[.S]]][+/-ZZZZ])"),
    ("MSH", 10, "", "MSH-10", "MSH-10: message control id is missing"),
    ("MSH", 4, "", "MSH-4", "MSH-4: sending facility is missing and no default facility is configured"),
    ("MSH", 9, "ORU^R01^ORU_R01", "MSH-9", "MSH-9: message type 'ORU' is not ADT"),
    ("MSH", 12, "3.0", "MSH-12", "MSH-12: The version 3.0 is not supported"),
]


@pytest.mark.parametrize(("segment", "field", "value", "path", "reason"), BAD, ids=[f"{r[0]}-{r[1]}-{r[2]}" for r in BAD])
def test_bad_messages_dead_letter_naming_the_field(segment: str, field: int, value: str | None, path: str,
                                                   reason: str) -> None:
    raw = edit(A03, segment, field, value)
    result = ADAPTER.convert(raw, ORIGIN)
    assert isinstance(result, DeadLetter), result
    assert (result.kind, result.path, result.reason) == (DeadLetterKind.HL7, path, reason)
    assert result.original == raw
    assert result.origin == ORIGIN
    assert "MRN-000123" not in result.reason


@pytest.mark.parametrize("raw", [b"", b"garbage", b"MSH|", b"MSH|^~\\&|A", b"\x0b\x1c\r", b"MSH|^^^^|x", b"\xff\xfe" * 10,
                                 A03 + b"\rXYZ|1", A03 + b"\r" + A03])
def test_unreadable_input_is_one_dead_letter(raw: bytes) -> None:
    result = ADAPTER.convert(raw, ORIGIN)
    assert isinstance(result, DeadLetter)
    assert result.kind is DeadLetterKind.HL7
    assert result.reason
    assert "MRN-000123" not in result.reason


def test_no_visit_number_and_no_account_number() -> None:
    result = ADAPTER.convert(edit(edit(A03, "PV1", 19, ""), "PID", 18, ""), ORIGIN)
    assert isinstance(result, DeadLetter)
    assert (result.path, result.reason) == ("PV1-19", "PV1-19: visit number is missing (and PID-18 account number is empty)")


def test_default_facility_when_msh4_is_empty() -> None:
    adapter = HL7Adapter(AdapterOptions(facility="St Mary's"))
    event = one(edit(A03, "MSH", 4, ""), adapter)
    assert event["source"] == "hospital/st-mary-s"


def test_pid18_account_number_when_no_visit_number() -> None:
    event = one(edit(A03, "PV1", 19, ""))
    assert event["id"] == "ACC-555:A03"


def test_subject_is_the_first_identifier_present() -> None:
    event = one(edit(A03, "PID", 3, "~NHS-1^^^NHS^NH"))
    assert event["subject"] == "NHS|NHS-1"


def test_escaped_identifier_is_unescaped() -> None:
    event = one(edit(A03, "PID", 3, "A\\T\\B^^^X^MR"))
    assert event["subject"] == "X|A&B"


@pytest.mark.parametrize(
    ("evn6", "pv145", "evn2", "expected"),
    [
        ("20260301094500-0500", "20260301080000-0500", "20260301100000", datetime(2026, 3, 1, 9, 45, tzinfo=EST)),
        ("", "20260301080000-0500", "20260301100000", datetime(2026, 3, 1, 8, 0, tzinfo=EST)),
        ("", "", "20260301100000", datetime(2026, 3, 1, 10, 0, tzinfo=EST)),
        ("", "", "", datetime(2026, 3, 1, 10, 0, tzinfo=EST)),  # MSH-7
        ("20260301094500+0100", "", "", datetime(2026, 3, 1, 9, 45, tzinfo=timezone(timedelta(hours=1)))),
        ("20260301", "", "", datetime(2026, 3, 1, 0, 0, tzinfo=EST)),
        ("202603010945", "", "", datetime(2026, 3, 1, 9, 45, tzinfo=EST)),
        ("20260301094512.25-0500", "", "", datetime(2026, 3, 1, 9, 45, 12, 250000, tzinfo=EST)),
    ],
)
def test_event_time_order(evn6: str, pv145: str, evn2: str, expected: datetime) -> None:
    raw = edit(edit(edit(A03, "EVN", 6, evn6), "PV1", 45, pv145), "EVN", 2, evn2)
    assert datetime.fromisoformat(one(raw)["time"]) == expected


def test_offsetless_time_with_offsetless_msh7_uses_configured_zone() -> None:
    raw = edit(edit(A03, "MSH", 7, "20260701100000"), "EVN", 6, "20260701094500")
    adapter = HL7Adapter(AdapterOptions(timezone="America/New_York"))
    assert one(raw, adapter)["time"] == "2026-07-01T09:45:00-04:00"  # EDT in July


@pytest.mark.parametrize(
    ("code", "disposition"),
    [("01", "home"), ("1", "home"), ("02", "acute_transfer"), ("03", "nonacute_transfer"), ("07", "against_medical_advice"),
     ("20", "died"), ("21", "prison_or_court"), ("65", "acute_transfer"), ("62", "nonacute_transfer"),
     ("50", "other"), ("community_residence", "community_residence")],
)
def test_dispositions(code: str, disposition: str) -> None:
    assert one(edit(A03, "PV1", 36, code))["data"]["disposition"] == disposition


def test_disposition_table_uses_domain_values_only() -> None:
    assert set(DISPOSITIONS.values()) <= {"home", "community_residence", "acute_transfer", "nonacute_transfer",
                                          "against_medical_advice", "died", "prison_or_court", "other"}


@pytest.mark.parametrize(
    ("pv1_2", "pv1_18", "setting"),
    [("I", "", "inpatient"), ("I", "OBS", "observation"), ("OBS", "", "observation"), ("O", "OBS", "observation"),
     ("E", "", None), ("O", "", None), ("P", "", None)],
)
def test_patient_class(pv1_2: str, pv1_18: str, setting: str | None) -> None:
    result = ADAPTER.convert(edit(edit(A03, "PV1", 2, pv1_2), "PV1", 18, pv1_18), ORIGIN)
    assert isinstance(result, list)
    if setting is None:
        assert result == []
    else:
        assert json.loads(result[0])["data"]["setting"] == setting


@pytest.mark.parametrize(
    ("service", "dg1_codes", "psychiatric"),
    [
        ("PSY", [], True),
        ("MH", [], True),
        ("MED", [], False),
        ("MED", [("F32.9", "1")], True),
        ("MED", [("X78.0", "")], True),
        ("MED", [("X84", "")], False),
        ("MED", [("E11.9", "1"), ("F32.9", "2")], False),  # principal diagnosis decides
        ("MED", [("E11.9", ""), ("f329", "")], True),  # no priorities: any diagnosis
    ],
)
def test_psychiatric_rule(service: str, dg1_codes: list[tuple[str, str]], psychiatric: bool) -> None:
    raw = edit(A03, "PV1", 10, service)
    lines = [line for line in raw.decode().split("\r") if not line.startswith("DG1")]
    lines += [f"DG1|{i}||{code}^dx^I10||20260225|A|||||||||{priority}" for i, (code, priority) in enumerate(dg1_codes, 1)]
    assert one("\r".join(lines).encode())["data"]["psychiatric"] is psychiatric


def test_configured_psychiatric_services() -> None:
    adapter = HL7Adapter(AdapterOptions(psychiatric_services=("BEH",), psychiatric_diagnosis_prefixes=()))
    assert one(edit(A03, "PV1", 10, "BEH"), adapter)["data"]["psychiatric"] is True
    assert one(edit(A03, "PV1", 10, "PSY"), adapter)["data"]["psychiatric"] is False


def test_other_adt_triggers_give_no_event() -> None:
    assert ADAPTER.convert(edit(A03, "MSH", 9, "ADT^A08^ADT_A01"), ORIGIN) == []


# Issue 14 point 6: a message cut off inside MSH used to give "nothing to publish" (no event,
# no dead letter) because its trigger read as ``A0`` or was missing.
MSH_CUT = b"MSH|^~\\&|EPIC|ST-MARYS^2.16.840.1.113883.3.1^ISO|PATHWATCH|CMHT|20260301100000-0500||ADT"


@pytest.mark.parametrize(
    ("raw", "path", "reason"),
    [
        (MSH_CUT + b"^A0", "MSH-9", "MSH-9: trigger event 'A0' is not an HL7 trigger code (a letter and two digits)"),
        (MSH_CUT + b"^", "MSH-9", "MSH-9: trigger event is missing"),
        (MSH_CUT, "MSH-9", "MSH-9: trigger event is missing"),
        (MSH_CUT + b"^A08^ADT_A01|", "MSH-10", "MSH-10: message control id is missing"),
    ],
)
def test_message_cut_off_inside_msh_is_a_dead_letter(raw: bytes, path: str, reason: str) -> None:
    result = ADAPTER.convert(raw, ORIGIN)
    assert isinstance(result, DeadLetter), result
    assert (result.kind, result.path, result.reason) == (DeadLetterKind.HL7, path, reason)
    assert result.original == raw


def test_a03_with_month_13_in_pv1_45_and_no_evn_6_names_pv1_45() -> None:
    result = ADAPTER.convert(edit(edit(A03, "EVN", 6, ""), "PV1", 45, "20261301094500-0500"), ORIGIN)
    assert isinstance(result, DeadLetter), result
    assert result.path == "PV1-45"


# Issue 15 item 1: the identifier policy (schemas.adapters.choose_subject) applied to PID-3.
MEDICAID = "urn:oid:2.16.840.1.113883.4.3.36"


@pytest.mark.parametrize(
    ("pid3", "policy", "subject", "linked"),
    [
        ("MRN-000123^^^ST-MARYS^MR~9434765919^^^NHS^NH", (), "ST-MARYS|MRN-000123", False),
        ("MRN-000123^^^ST-MARYS^MR~9434765919^^^NHS^NH", ("NHS",), "NHS|9434765919", True),
        ("MRN-000123^^^ST-MARYS^MR~9434765919^^^NHS^NH", ("NH",), "NH|9434765919", True),
        ("MRN-000123^^^ST-MARYS^MR~M77^^^&2.16.840.1.113883.4.3.36&ISO^MA", (MEDICAID,), f"{MEDICAID}|M77", True),
        ("MRN-000123^^^ST-MARYS&2.16.840.1.113883.3.1&ISO^MR", (), "ST-MARYS|MRN-000123", False),
        ("MRN-000123^^^&2.16.840.1.113883.3.1&ISO^MR", (), "2.16.840.1.113883.3.1|MRN-000123", False),
        ("MRN-000123^^^^MR", (MEDICAID,), "hospital/st-marys|MRN-000123", False),
    ],
)
def test_identifier_policy_on_pid_3(pid3: str, policy: tuple[str, ...], subject: str, linked: bool) -> None:
    counted: list[tuple[str, bool]] = []
    adapter = HL7Adapter(AdapterOptions(linking_systems=policy), lambda source, linked: counted.append((source, linked)))
    assert one(edit(A03, "PID", 3, pid3), adapter)["subject"] == subject
    assert counted == [("hospital/st-marys", linked)]


def test_nothing_is_counted_for_a_dead_letter_or_nothing_to_publish() -> None:
    counted: list[tuple[str, bool]] = []
    adapter = HL7Adapter(AdapterOptions(), lambda source, linked: counted.append((source, linked)))
    assert isinstance(adapter.convert(edit(A03, "PV1", 36, "ZZ"), ORIGIN), DeadLetter)
    assert adapter.convert(edit(A03, "PV1", 2, "O"), ORIGIN) == []
    assert counted == []


def test_the_same_mrn_at_two_hospitals_gives_two_subjects() -> None:
    st_marys = one(edit(A03, "PID", 3, "55555^^^^MR"))
    riverside = one(edit(edit(A03, "PID", 3, "55555^^^^MR"), "MSH", 4, "RIVERSIDE"))
    assert st_marys["subject"] == "hospital/st-marys|55555"
    assert riverside["subject"] == "hospital/riverside|55555"

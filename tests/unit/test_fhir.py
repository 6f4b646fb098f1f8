"""FHIR R4 Encounter adapter: statuses, classes, dispositions, bundles, missing fields, bad dates."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schemas.adapters import AdapterOptions
from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.decode import Decoder
from schemas.fhir import FHIRAdapter
from schemas.model import Event

FIXTURES = Path(__file__).parents[1] / "fixtures" / "fhir"
ORIGIN = Origin(topic="pathwatch.fhir", partition=1, offset=9)
ADAPTER = FHIRAdapter(AdapterOptions(timezone="America/New_York"))
FINISHED = json.loads((FIXTURES / "encounter_finished.json").read_text())
DELETE = object()


def variant(path: str, value: Any, base: dict[str, Any] = FINISHED) -> bytes:
    doc = copy.deepcopy(base)
    *parents, last = path.split(".")
    target = doc
    for part in parents:
        target = target.setdefault(part, {})
    if value is DELETE:
        target.pop(last, None)
    else:
        target[last] = value
    return json.dumps(doc).encode()


def events(raw: bytes, adapter: FHIRAdapter = ADAPTER) -> list[dict[str, Any]]:
    result = adapter.convert(raw, ORIGIN)
    assert isinstance(result, list), result
    return [json.loads(line) for line in result]


def test_finished_encounter_gives_admission_and_discharge() -> None:
    admission, discharge = events(json.dumps(FINISHED).encode())
    assert (admission["id"], admission["type"], admission["time"]) == (
        "Encounter/enc-7001:admission", "admission", "2026-02-24T19:30:00-05:00")
    assert (discharge["id"], discharge["type"], discharge["time"]) == (
        "Encounter/enc-7001:discharge", "discharge", "2026-03-01T11:15:00-05:00")
    assert discharge["source"] == "hospital/st-marys"
    assert discharge["subject"] == "urn:oid:2.16.840.1.113883.3.1.2|MRN-004242"
    assert discharge["data"] == {"encounter_id": "enc-7001", "facility": "st-marys", "setting": "inpatient",
                                 "psychiatric": True, "disposition": "home"}  # fmt: skip


def test_bundle() -> None:
    out = events((FIXTURES / "bundle.json").read_bytes())
    assert [e["id"] for e in out] == ["Encounter/enc-7002:admission", "Encounter/enc-6990:cancel:admission",
                                      "Encounter/enc-6990:cancel:discharge"]  # fmt: skip
    admission = out[0]
    assert admission["data"]["setting"] == "observation"
    assert admission["data"]["psychiatric"] is True  # X78.9XXA via the bundled Condition
    # from the server-local Patient reference, namespaced by the hospital
    assert admission["subject"] == "hospital/riverside-general|Patient/pat-43"
    assert admission["source"] == "hospital/riverside-general"
    assert out[1]["data"]["cancels"] == "Encounter/enc-6990:admission"
    assert out[1]["time"] == "2026-03-03T09:00:00+00:00"


def test_outputs_decode_and_hide_the_subject() -> None:
    decoder = Decoder(b"k", 1 << 20)
    for raw in (json.dumps(FINISHED).encode(), (FIXTURES / "bundle.json").read_bytes()):
        result = ADAPTER.convert(raw, ORIGIN)
        assert isinstance(result, list)
        for line in result:
            event = decoder.decode(line, ORIGIN)
            assert isinstance(event, Event), event
            for raw_subject in ("MRN-004242", "pat-43", "MRN-004299"):
                assert raw_subject not in repr(event)


@pytest.mark.parametrize(
    ("status", "types"),
    [("in-progress", ["admission"]), ("onleave", ["admission"]), ("finished", ["admission", "discharge"]),
     ("entered-in-error", ["cancel", "cancel"]), ("planned", []), ("arrived", []), ("cancelled", [])],
)
def test_statuses(status: str, types: list[str]) -> None:
    assert [e["type"] for e in events(variant("status", status))] == types


@pytest.mark.parametrize(("code", "setting"), [("IMP", "inpatient"), ("ACUTE", "inpatient"), ("OBSENC", "observation"),
                                               ("AMB", None), ("EMER", None)])
def test_classes(code: str, setting: str | None) -> None:
    out = events(variant("class", {"code": code}))
    assert [e["data"]["setting"] for e in out] == ([] if setting is None else [setting, setting])


@pytest.mark.parametrize(
    ("system", "code", "disposition"),
    [("http://terminology.hl7.org/CodeSystem/discharge-disposition", "home", "home"),
     ("http://terminology.hl7.org/CodeSystem/discharge-disposition", "alt-home", "community_residence"),
     ("http://terminology.hl7.org/CodeSystem/discharge-disposition", "exp", "died"),
     ("http://terminology.hl7.org/CodeSystem/discharge-disposition", "aadvice", "against_medical_advice"),
     ("http://terminology.hl7.org/CodeSystem/discharge-disposition", "psy", "acute_transfer"),
     ("http://terminology.hl7.org/CodeSystem/discharge-disposition", "snf", "nonacute_transfer"),
     ("https://www.nubc.org/CodeSystem/PatDischargeStatus", "21", "prison_or_court")],
)
def test_dispositions(system: str, code: str, disposition: str) -> None:
    raw = variant("hospitalization.dischargeDisposition", {"coding": [{"system": system, "code": code}]})
    assert events(raw)[1]["data"]["disposition"] == disposition


def test_date_only_end_is_local_midnight() -> None:
    discharge = events(variant("period.end", "2026-03-01"))[1]
    assert datetime.fromisoformat(discharge["time"]) == datetime(2026, 3, 1, tzinfo=ZoneInfo("America/New_York"))


BAD = [
    ("period.end", DELETE, "period.end", "period.end: a finished Encounter needs period.end"),
    ("period.end", "2026-02-30T10:00:00-05:00", "period.end", None),
    ("period.end", "2026-03-01T10:00:00", "period.end", None),  # FHIR: a time needs an offset
    ("period.end", "yesterday", "period.end", None),
    ("hospitalization", DELETE, "hospitalization.dischargeDisposition",
     "hospitalization.dischargeDisposition: discharge disposition is missing"),
    ("hospitalization.dischargeDisposition", {"coding": [{"code": "beach"}]}, "hospitalization.dischargeDisposition",
     "hospitalization.dischargeDisposition: 'beach' is not a known discharge disposition code "
     "(http://terminology.hl7.org/CodeSystem/discharge-disposition or UB-04)"),
    ("subject", DELETE, "subject", "subject: patient identifier or Patient reference is missing"),
    ("subject", {"reference": "Group/g1"}, "subject", "subject: patient identifier or Patient reference is missing"),
    ("serviceProvider", DELETE, "serviceProvider",
     "serviceProvider: hospital is missing and no default facility is configured"),
    ("class", [{"code": "IMP"}], "class", None),
    ("resourceType", "Patient", "resourceType", "resourceType: 'Patient' is not Encounter or Bundle"),
]


@pytest.mark.parametrize(("field", "value", "path", "reason"), BAD, ids=[f"{r[0]}-{r[1] is DELETE}" for r in BAD])
def test_bad_encounters(field: str, value: Any, path: str, reason: str | None) -> None:
    raw = variant(field, value)
    result = ADAPTER.convert(raw, ORIGIN)
    assert isinstance(result, DeadLetter), result
    assert result.kind is DeadLetterKind.FHIR
    assert result.path == path
    if reason is not None:
        assert result.reason == reason
    assert result.reason.startswith(path)
    assert result.original == raw
    assert "MRN-004242" not in result.reason
    assert "pat-42" not in result.reason


def test_bad_encounter_in_bundle_names_the_entry() -> None:
    bundle = json.loads((FIXTURES / "bundle.json").read_text())
    bundle["entry"][1]["resource"]["period"]["start"] = "2026-13-01T00:00:00Z"
    result = ADAPTER.convert(json.dumps(bundle).encode(), ORIGIN)
    assert isinstance(result, DeadLetter)
    assert result.path == "entry[1].resource.period.start"


def test_subject_identifier_in_a_bad_subject_is_redacted() -> None:
    raw = variant("subject", {"identifier": {"value": "MRN-SECRET-1"}, "reference": 12})
    result = ADAPTER.convert(raw, ORIGIN)
    assert isinstance(result, DeadLetter)
    assert "MRN-SECRET-1" not in result.reason


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'"x"', b'{"resourceType": "Bundle", "entry": 5}', b"\xff",
                                 b'{"resourceType": "Bundle", "entry": [1, {"resource": 2}]}'])
def test_unreadable(raw: bytes) -> None:
    result = ADAPTER.convert(raw, ORIGIN)
    if isinstance(result, list):
        assert result == []
    else:
        assert result.kind is DeadLetterKind.FHIR
        assert result.reason


def test_default_facility() -> None:
    adapter = FHIRAdapter(AdapterOptions(facility="Northgate"))
    assert events(variant("serviceProvider", DELETE), adapter)[0]["source"] == "hospital/northgate"


# Issue 14 point 6: an unknown status or class used to give "nothing to publish" (no event,
# no dead letter), and a Bundle published its good entries beside a bad one.
@pytest.mark.parametrize(
    ("field", "value", "path", "reason"),
    [
        ("status", "bogus", "status", "status: 'bogus' is not an Encounter status (planned, arrived, triaged, "
         "in-progress, onleave, finished, cancelled, entered-in-error, unknown)"),
        ("class", {"code": "XYZ"}, "class", "class: 'XYZ' is not an encounter class of "
         "http://terminology.hl7.org/CodeSystem/v3-ActCode (AMB, EMER, FLD, HH, IMP, ACUTE, NONAC, OBSENC, PRENC, SS, VR)"),
    ],
)
def test_unknown_status_or_class_is_a_dead_letter(field: str, value: Any, path: str, reason: str) -> None:
    result = ADAPTER.convert(variant(field, value), ORIGIN)
    assert isinstance(result, DeadLetter), result
    assert (result.kind, result.path, result.reason) == (DeadLetterKind.FHIR, path, reason)


def test_teleported_without_a_period_names_the_status() -> None:
    doc = copy.deepcopy(FINISHED)
    doc["status"] = "teleported"
    del doc["period"]
    result = ADAPTER.convert(json.dumps(doc).encode(), ORIGIN)
    assert isinstance(result, DeadLetter), result
    assert result.path == "status"


@pytest.mark.parametrize(
    ("bad", "path"),
    [({"status": "bogus"}, "entry[1].resource.status"), ({"class": {"code": "XYZ"}}, "entry[1].resource.class")],
)
def test_a_bundle_with_one_bad_entry_publishes_none(bad: dict[str, Any], path: str) -> None:
    good = copy.deepcopy(FINISHED)
    wrong = {**copy.deepcopy(FINISHED), "id": "enc-7009", **bad}
    raw = json.dumps({"resourceType": "Bundle", "type": "collection",
                      "entry": [{"resource": good}, {"resource": wrong}]}).encode()  # fmt: skip
    result = ADAPTER.convert(raw, ORIGIN)
    assert isinstance(result, DeadLetter), result
    assert result.path == path


@pytest.mark.parametrize(("entries", "path"), [([1], "entry[0]"), ([{"resource": 2}], "entry[0].resource"),
                                               ([{"resource": {"id": "x"}}], "entry[0].resource.resourceType")])
def test_a_bundle_entry_that_is_not_a_resource_is_a_dead_letter(entries: list[Any], path: str) -> None:
    raw = json.dumps({"resourceType": "Bundle", "entry": [{"resource": FINISHED}, *entries]}).encode()
    result = ADAPTER.convert(raw, ORIGIN)
    assert isinstance(result, DeadLetter), result
    assert result.path == path.replace("[0]", "[1]")


# Issue 15 item 1: the identifier policy (schemas.adapters.choose_subject) on Encounter.subject
# and on the referenced Patient's identifiers.
MEDICAID = "urn:oid:2.16.840.1.113883.4.3.36"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
PATIENT = {"resourceType": "Patient", "id": "pat-42",
           "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.1.2", "value": "MRN-004242"},
                          {"system": MEDICAID, "value": "MCD-9", "type": {"coding": [{"code": "MA"}]}}]}  # fmt: skip


def bundle_with_patient(encounter: dict[str, Any]) -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "https://fhir.st-marys.example/Patient/pat-42", "resource": PATIENT},
        {"resource": encounter}]}).encode()  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "policy", "subject", "linked"),
    [
        (json.dumps(FINISHED).encode(), (MEDICAID,), "urn:oid:2.16.840.1.113883.3.1.2|MRN-004242", False),
        (variant("subject", {"identifier": {"system": NHS, "value": "9434765919"}}), (MEDICAID, NHS),
         f"{NHS}|9434765919", True),
        (bundle_with_patient(FINISHED), (MEDICAID,), f"{MEDICAID}|MCD-9", True),
        (bundle_with_patient(FINISHED), ("MA",), "MA|MCD-9", True),
        (bundle_with_patient(FINISHED), (), "urn:oid:2.16.840.1.113883.3.1.2|MRN-004242", False),
        (bundle_with_patient({**FINISHED, "subject": {"reference": "Patient/pat-42"}}), (NHS,),
         "urn:oid:2.16.840.1.113883.3.1.2|MRN-004242", False),
        (variant("subject", {"reference": "Patient/pat-42"}), (MEDICAID,), "hospital/st-marys|Patient/pat-42", False),
    ],
)
def test_identifier_policy(raw: bytes, policy: tuple[str, ...], subject: str, linked: bool) -> None:
    counted: list[tuple[str, bool]] = []
    adapter = FHIRAdapter(AdapterOptions(linking_systems=policy), lambda source, linked: counted.append((source, linked)))
    out = events(raw, adapter)
    assert {e["subject"] for e in out} == {subject}
    assert counted == [("hospital/st-marys", linked)] * len(out) == [("hospital/st-marys", linked)] * 2


def test_nothing_is_counted_for_a_bundle_that_is_dead_lettered() -> None:
    counted: list[tuple[str, bool]] = []
    adapter = FHIRAdapter(AdapterOptions(), lambda source, linked: counted.append((source, linked)))
    wrong = {**copy.deepcopy(FINISHED), "id": "enc-7009", "status": "bogus"}
    raw = json.dumps({"resourceType": "Bundle", "entry": [{"resource": FINISHED}, {"resource": wrong}]}).encode()
    assert isinstance(adapter.convert(raw, ORIGIN), DeadLetter)
    assert counted == []


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (FINISHED, "2026-03-01T15:00:00-05:00"),
        ({"resourceType": "Bundle", "meta": {"lastUpdated": "2026-03-04T00:00:00Z"}, "timestamp": "2026-03-05T00:00:00Z",
          "entry": [{"resource": FINISHED}]}, "2026-03-04T00:00:00+00:00"),
        ({"resourceType": "Bundle", "timestamp": "2026-03-05T00:00:00Z", "entry": [{"resource": FINISHED}]},
         "2026-03-05T00:00:00+00:00"),
        ({"resourceType": "Bundle", "entry": [{"resource": FINISHED}]}, "2026-03-01T15:00:00-05:00"),
        ({"resourceType": "Bundle", "timestamp": "2026-03-05", "entry": []}, "2026-03-05T00:00:00-05:00"),
        ({"resourceType": "Bundle", "timestamp": "soon", "entry": 3}, None),
        ({"resourceType": "Encounter"}, None),
    ],
)
def test_sent_time_orders_replay_files(doc: dict[str, Any], expected: str | None) -> None:
    from schemas.fhir import sent_time

    sent = sent_time(json.dumps(doc).encode(), ZoneInfo("America/New_York"))
    assert (sent.isoformat() if sent else None) == expected

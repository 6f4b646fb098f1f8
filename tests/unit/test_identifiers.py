"""The identifier policy (issue 15 item 1, DOMAIN.md section 1): one pure decision, table-driven.

``choose_subject(identifiers, linking_systems, local_namespace)`` takes the first identifier
whose system is on the configured, ordered list of systems that link people across publishers
and builds ``system|value``; without one, the first identifier namespaced by its own system
(HL7 assigning authority, FHIR ``identifier.system``) or else by the hospital, counted as
unlinked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.adapters import PersonIdentifier, Subject, choose_subject

MEDICAID = "urn:oid:2.16.840.1.113883.4.3.36"
MPI = "REGIONAL-MPI"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
POLICY = (MEDICAID, MPI, NHS)


def hl7(value: str, namespace: str = "", universal: str = "", universal_type: str = "", type_code: str = "") -> PersonIdentifier:
    return PersonIdentifier.from_hl7(value, namespace, universal, universal_type, type_code)


CASES = [
    # (name, identifiers, policy, local namespace, expected subject, linked)
    ("same MRN value at St Mary's", [hl7("55555", "ST-MARYS", type_code="MR")], POLICY, "hospital/st-marys",
     "ST-MARYS|55555", False),
    ("same MRN value at Riverside", [hl7("55555", "RIVERSIDE", type_code="MR")], POLICY, "hospital/riverside",
     "RIVERSIDE|55555", False),
    ("no assigning authority: the hospital namespaces it", [hl7("55555", type_code="MR")], POLICY, "hospital/st-marys",
     "hospital/st-marys|55555", False),
    ("Medicaid ID by universal id (ISO OID) links", [hl7("55555", "ST-MARYS", type_code="MR"),
                                                     hl7("MCD-1", "", "2.16.840.1.113883.4.3.36", "ISO", "MA")],
     POLICY, "hospital/st-marys", f"{MEDICAID}|MCD-1", True),
    ("Medicaid ID by namespace id links", [hl7("MCD-1", "REGIONAL-MPI")], POLICY, "hospital/x", f"{MPI}|MCD-1", True),
    ("identifier type code on the list links", [hl7("12345", "STATE", type_code="MA")], ("MA",), "hospital/x",
     "MA|12345", True),
    ("list order is preference, not repetition order",
     [hl7("NHS-1", NHS), hl7("M-1", MPI), hl7("MCD-1", "", "2.16.840.1.113883.4.3.36", "ISO")], POLICY, "hospital/x",
     f"{MEDICAID}|MCD-1", True),
    ("empty policy: local", [hl7("MCD-1", "", "2.16.840.1.113883.4.3.36", "ISO")], (), "hospital/x",
     "2.16.840.1.113883.4.3.36|MCD-1", False),
    ("empty values are skipped", [hl7("", MPI), hl7("L-1", "LOCAL")], POLICY, "hospital/x", "LOCAL|L-1", False),
    ("FHIR identifier with a listed system", [PersonIdentifier("943 476 5919", (NHS,))], POLICY, "hospital/x",
     f"{NHS}|943 476 5919", True),
    ("FHIR server-local Patient reference", [PersonIdentifier("Patient/pat-43")], POLICY, "hospital/riverside",
     "hospital/riverside|Patient/pat-43", False),
    ("nothing", [], POLICY, "hospital/x", None, False),
]


@pytest.mark.parametrize(("name", "identifiers", "policy", "local", "subject", "linked"), CASES, ids=[c[0] for c in CASES])
def test_choose_subject(name: str, identifiers: list[PersonIdentifier], policy: tuple[str, ...], local: str,
                        subject: str | None, linked: bool) -> None:
    chosen = choose_subject(identifiers, policy, local)
    assert chosen == (None if subject is None else Subject(subject, linked))


def test_the_same_mrn_value_at_two_hospitals_is_two_people() -> None:
    a = choose_subject([hl7("55555", "ST-MARYS", type_code="MR")], POLICY, "hospital/st-marys")
    b = choose_subject([hl7("55555", "RIVERSIDE", type_code="MR")], POLICY, "hospital/riverside")
    c = choose_subject([hl7("55555", type_code="MR")], POLICY, "hospital/st-marys")
    d = choose_subject([hl7("55555", type_code="MR")], POLICY, "hospital/riverside")
    assert len({s.value for s in (a, b, c, d) if s is not None}) == 4


def test_a_shared_medicaid_id_links_a_hospital_discharge_to_the_community_record() -> None:
    hospital = choose_subject([hl7("55555", "ST-MARYS", type_code="MR"),
                               hl7("MCD-1", "", "2.16.840.1.113883.4.3.36", "ISO", "MA")], POLICY, "hospital/st-marys")
    fhir = choose_subject([PersonIdentifier("MCD-1", (MEDICAID,))], POLICY, "hospital/riverside")
    community = f"{MEDICAID}|MCD-1"  # what a canonical publisher sends as `subject`
    assert hospital == fhir == Subject(community, True)


def test_unlinked_events_are_counted_by_source() -> None:
    from prometheus_client import CollectorRegistry

    from pathwatch.metrics import Metrics
    from schemas.adapters import AdapterOptions
    from schemas.deadletter import Origin
    from schemas.hl7 import HL7Adapter

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    adapter = HL7Adapter(AdapterOptions(linking_systems=("NHS",)), metrics.count_adapter_event)
    a03 = (Path(__file__).parents[1] / "fixtures" / "hl7" / "a03_discharge.hl7").read_bytes()
    assert isinstance(adapter.convert(a03, Origin()), list)  # carries an NHS number: linked
    assert isinstance(adapter.convert(a03.replace(b"~9434765919^^^NHS^NH", b""), Origin()), list)
    assert isinstance(adapter.convert(a03.replace(b"~9434765919^^^NHS^NH", b""), Origin()), list)
    sample = registry.get_sample_value
    assert sample("pathwatch_adapter_events_total", {"source": "hospital/st-marys", "linked": "true"}) == 1
    assert sample("pathwatch_adapter_events_total", {"source": "hospital/st-marys", "linked": "false"}) == 2

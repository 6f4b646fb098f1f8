"""FHIR R4 ``Encounter`` resources (alone or in a Bundle) -> CloudEvents lines for the decoder.

Each Encounter is validated against the R4 structure with fhir.resources (its R4B models,
structurally identical for Encounter), then mapped:

* ``status`` in-progress or onleave with ``period.start``: an ``admission`` at period.start;
* ``status`` finished: the ``admission`` (when period.start is known) and a ``discharge`` at
  ``period.end`` (a finished Encounter without period.end is rejected);
* ``status`` entered-in-error: a ``cancel`` of the admission, and of the discharge when
  period.end is set, timed at ``meta.lastUpdated`` (else period.end, else period.start);
* planned, arrived, triaged, cancelled, unknown: nothing to publish;
* any other status, or a ``class`` code outside the R4 value set (v3 ActEncounterCode), is a
  dead letter naming the field (fhir.resources does not check code values).

Ids: ``Encounter/<id>:admission``, ``Encounter/<id>:discharge`` and
``Encounter/<id>:cancel:<admission|discharge>``, where ``<id>`` is the logical id (else the
first identifier value). Resending a snapshot repeats the same ids, so duplicates change
nothing, and an entered-in-error snapshot names its targets without state.

``subject``: ``system|value`` by the identifier policy (:func:`schemas.adapters.choose_subject`)
over ``Encounter.subject.identifier``, the identifiers of the referenced Patient (contained or
in the same Bundle) and, last, the server-local ``Patient/<id>`` reference (namespaced by the
hospital). ``source`` is ``hospital/<facility>`` with the facility from
``serviceProvider`` (identifier value, else the Organization id, else display; slugged),
else the configured facility. ``class`` IMP, ACUTE, NONAC -> inpatient, OBSENC ->
observation; other classes give no event. Psychiatric: ``serviceType`` codes, and diagnosis
codes from ``reasonCode`` and from Conditions named by ``diagnosis.condition`` (contained or
in the same Bundle), through :class:`schemas.adapters.AdapterOptions`. A date without a time
is local midnight in the configured timezone. ``hospitalization.dischargeDisposition``
codes map through :data:`DISPOSITIONS` (the HL7 discharge-disposition code system), then
UB-04 codes, then pathwatch's own values.

A Bundle is converted whole or not at all: one bad Encounter, or an entry that is not a
resource, dead-letters the Bundle, with a path such as ``entry[2].resource.period.end``.
"""

from __future__ import annotations

from datetime import date, datetime, time, tzinfo
from typing import Any, Final, get_args

import msgspec
from fhir.resources.R4B.encounter import Encounter
from pydantic import ValidationError

from schemas.adapters import (
    HOSPITAL_SOURCE_PREFIX,
    AdapterOptions,
    PersonIdentifier,
    SubjectCounter,
    choose_subject,
    cloud_event,
    redact,
    slug,
)
from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.hl7 import DISPOSITIONS as UB04_DISPOSITIONS
from schemas.model import Disposition

# http://terminology.hl7.org/CodeSystem/discharge-disposition
DISPOSITIONS: Final[dict[str, Disposition]] = {
    "home": "home",
    "alt-home": "community_residence",
    "other-hcf": "nonacute_transfer",
    "hosp": "other",  # hospice
    "long": "nonacute_transfer",
    "aadvice": "against_medical_advice",
    "exp": "died",
    "psy": "acute_transfer",
    "rehab": "nonacute_transfer",
    "snf": "nonacute_transfer",
    "oth": "other",
}
STATUSES: Final = ("planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
                   "entered-in-error", "unknown")  # fmt: skip
ACT_CODE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# The R4 Encounter.class value set (v3 ActEncounterCode); only the CLASSES below give events.
ENCOUNTER_CLASSES: Final = ("AMB", "EMER", "FLD", "HH", "IMP", "ACUTE", "NONAC", "OBSENC", "PRENC", "SS", "VR")
CLASSES: Final[dict[str, str]] = {"IMP": "inpatient", "ACUTE": "inpatient", "NONAC": "inpatient", "OBSENC": "observation"}
_OWN_DISPOSITIONS: Final = frozenset(get_args(Disposition))


class _Reject(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


class FHIRAdapter:
    """Turns an Encounter or a Bundle of them into CloudEvents lines (see the module docstring)."""

    def __init__(self, options: AdapterOptions | None = None, count_subject: SubjectCounter | None = None) -> None:
        """``count_subject`` (optional) is called for each event built, with its source and
        whether its subject is linked (the unlinked-events metric)."""
        self._options = options or AdapterOptions()
        self._tz = self._options.tz
        self._count_subject = count_subject

    def convert(self, raw: bytes, origin: Origin) -> list[bytes] | DeadLetter:
        """FHIR JSON -> CloudEvents JSON lines with the raw subject (possibly none), or one
        ``DeadLetter`` of kind ``fhir`` whose ``original`` is ``raw``. Never raises (given a
        ``count_subject`` that does not)."""
        subjects: list[str] = []
        tally: list[tuple[str, bool]] = []
        try:
            lines = self._convert(raw, subjects, tally)
            if self._count_subject is not None:
                for source, linked in tally:
                    self._count_subject(source, linked)
            return lines
        except _Reject as exc:
            return DeadLetter(DeadLetterKind.FHIR, redact(exc.reason, subjects), exc.path, origin, raw)
        except Exception as exc:  # a model surprise must not stop a worker
            return DeadLetter(DeadLetterKind.FHIR, f"not a readable FHIR resource ({type(exc).__name__})", "", origin, raw)

    def _convert(self, raw: bytes, subjects: list[str], tally: list[tuple[str, bool]]) -> list[bytes]:
        try:
            doc = msgspec.json.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError) as exc:
            raise _Reject("", f"not JSON: {type(exc).__name__}") from exc
        if not isinstance(doc, dict):
            raise _Reject("", "not a FHIR resource: expected a JSON object")
        kind = doc.get("resourceType")
        if kind == "Encounter":
            return self._encounter(doc, "", {}, subjects, tally)
        if kind != "Bundle":
            raise _Reject("resourceType", f"resourceType: {str(kind)[:40]!r} is not Encounter or Bundle")
        entries = doc.get("entry") or []
        if not isinstance(entries, list):
            raise _Reject("entry", "entry: expected an array")
        resources = [_entry_resource(entry, index) for index, entry in enumerate(entries)]
        # Conditions and Patients the Encounters reference, by fullUrl and by Type/id.
        bundled: dict[str, dict[str, Any]] = {}
        for entry, resource in zip(entries, resources, strict=True):
            if resource.get("resourceType") in ("Condition", "Patient"):
                if isinstance(entry.get("fullUrl"), str):
                    bundled[entry["fullUrl"]] = resource
                bundled[f"{resource['resourceType']}/{resource.get('id')}"] = resource
        out: list[bytes] = []
        for index, resource in enumerate(resources):
            if resource.get("resourceType") == "Encounter":
                out += self._encounter(resource, f"entry[{index}].resource.", bundled, subjects, tally)
        return out

    def _encounter(
        self,
        doc: dict[str, Any],
        prefix: str,
        bundled: dict[str, dict[str, Any]],
        subjects: list[str],
        tally: list[tuple[str, bool]],
    ) -> list[bytes]:
        subject_doc = doc.get("subject")
        if isinstance(subject_doc, dict):
            subjects += [str(v) for v in (subject_doc.get("reference"), (subject_doc.get("identifier") or {}).get("value"))
                         if isinstance(v, str)]  # fmt: skip
        try:
            enc = Encounter.model_validate(doc)
        except ValidationError as exc:
            first = exc.errors(include_input=False, include_url=False)[0]
            loc = ".".join(str(part) for part in first["loc"] if part != "root")
            raise _Reject(prefix + loc, f"{prefix}{loc}: {first['msg']}") from exc
        identifiers = _person_identifiers(enc, doc, bundled)
        subjects += [identifier.value for identifier in identifiers]
        if not identifiers:
            raise _Reject(prefix + "subject", f"{prefix}subject: patient identifier or Patient reference is missing")
        encounter_id = enc.id or next((i.value for i in enc.identifier or [] if i.value), None)
        if not encounter_id:
            raise _Reject(prefix + "id", f"{prefix}id: the Encounter has no id and no identifier")
        status = enc.status
        # fhir.resources does not check code values: an unknown status or class must be a
        # dead letter, not "nothing to publish".
        if status not in STATUSES:
            raise _Reject(prefix + "status", f"{prefix}status: {str(status)[:30]!r} is not an Encounter status "
                          f"({', '.join(STATUSES)})")  # fmt: skip
        class_code = str(getattr(enc.class_fhir, "code", "") or "")
        if class_code.upper() not in ENCOUNTER_CLASSES:
            raise _Reject(prefix + "class", f"{prefix}class: {class_code[:30]!r} is not an encounter class of "
                          f"{ACT_CODE_SYSTEM} ({', '.join(ENCOUNTER_CLASSES)})")  # fmt: skip
        if status not in ("in-progress", "onleave", "finished", "entered-in-error"):
            return []
        setting = CLASSES.get(class_code.upper())
        if setting is None:
            return []
        facility = _facility(enc) or slug(self._options.facility or "")
        if not facility:
            raise _Reject(prefix + "serviceProvider",
                          f"{prefix}serviceProvider: hospital is missing and no default facility is configured")  # fmt: skip
        source = HOSPITAL_SOURCE_PREFIX + facility
        subject = choose_subject(identifiers, self._options.linking_systems, source)
        assert subject is not None  # identifiers hold values only
        subjects.append(subject.value)
        start = self._time(getattr(enc.period, "start", None))
        end = self._time(getattr(enc.period, "end", None))
        base = f"Encounter/{encounter_id}"
        common: dict[str, Any] = {"source": source, "subject": subject.value}
        if status == "entered-in-error":
            when = self._time(getattr(enc.meta, "lastUpdated", None)) or end or start
            if when is None:
                raise _Reject(prefix + "meta.lastUpdated", f"{prefix}meta.lastUpdated: no time for the cancel "
                              "(and no period)")  # fmt: skip
            targets = ["admission"] + (["discharge"] if end is not None else [])
            tally += [(source, subject.linked)] * len(targets)
            return [cloud_event(event_id=f"{base}:cancel:{target}", event_type="cancel", time=when,
                                data={"cancels": f"{base}:{target}", "reason": "FHIR Encounter entered-in-error"},
                                **common) for target in targets]  # fmt: skip
        psychiatric = self._options.is_psychiatric(_service_codes(enc), _diagnosis_codes(enc, doc, bundled))
        data: dict[str, Any] = {"encounter_id": encounter_id, "facility": facility, "setting": setting,
                                "psychiatric": psychiatric}  # fmt: skip
        out: list[bytes] = []
        if start is not None:
            out.append(cloud_event(event_id=f"{base}:admission", event_type="admission", time=start, data=data, **common))
        elif status != "finished":
            raise _Reject(prefix + "period.start", f"{prefix}period.start: admission time is missing")
        if status == "finished":
            if end is None:
                raise _Reject(prefix + "period.end", f"{prefix}period.end: a finished Encounter needs period.end")
            disposition = _disposition(enc, prefix)
            out.append(cloud_event(event_id=f"{base}:discharge", event_type="discharge", time=end,
                                   data={**data, "disposition": disposition}, **common))  # fmt: skip
        tally += [(source, subject.linked)] * len(out)
        return out

    def _time(self, value: object) -> datetime | None:
        if isinstance(value, datetime):
            return value if value.tzinfo is not None else value.replace(tzinfo=self._tz)
        if isinstance(value, date):
            return datetime.combine(value, time(0), tzinfo=self._tz)
        return None


def sent_time(raw: bytes, default_tz: tzinfo) -> datetime | None:
    """When a resource was sent, for ordering files in ``pathwatch replay``: its
    ``meta.lastUpdated``; for a Bundle its own ``meta.lastUpdated``, else ``timestamp``, else
    the first entry's ``meta.lastUpdated``. ``None`` when there is none or it is not a FHIR
    instant or date (a date is local midnight in ``default_tz``)."""
    try:
        doc = msgspec.json.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    candidates = [(doc.get("meta") or {}).get("lastUpdated") if isinstance(doc.get("meta"), dict) else None]
    if doc.get("resourceType") == "Bundle":
        candidates.append(doc.get("timestamp"))
        entries = doc.get("entry")
        for entry in entries if isinstance(entries, list) else []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            meta = resource.get("meta") if isinstance(resource, dict) else None
            if isinstance(meta, dict):
                candidates.append(meta.get("lastUpdated"))
                break
    for value in candidates:
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                continue
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=default_tz)
    return None


def _entry_resource(entry: object, index: int) -> dict[str, Any]:
    """The resource of Bundle entry ``index``; anything else rejects the whole Bundle."""
    where = f"entry[{index}]"
    if not isinstance(entry, dict):
        raise _Reject(where, f"{where}: expected a Bundle entry (a JSON object)")
    resource = entry.get("resource")
    if not isinstance(resource, dict):
        raise _Reject(f"{where}.resource", f"{where}.resource: expected a FHIR resource (a JSON object)")
    if not isinstance(resource.get("resourceType"), str):
        raise _Reject(f"{where}.resource.resourceType", f"{where}.resource.resourceType: missing")
    return resource


def _person_identifiers(
    enc: Encounter, doc: dict[str, Any], bundled: dict[str, dict[str, Any]]
) -> list[PersonIdentifier]:
    """The patient's identifiers with a value, in order: ``subject.identifier``, those of the
    referenced Patient (contained or in the Bundle), then the server-local ``Patient/<id>``."""
    ref = enc.subject
    if ref is None:
        return []
    found: list[PersonIdentifier] = []
    if ref.identifier is not None and ref.identifier.value:
        ident = ref.identifier
        type_codes = _codes([ident.type] if ident.type is not None else [])
        systems = (str(ident.system),) if ident.system else ()
        found.append(PersonIdentifier(str(ident.value), systems, type_codes[0] if type_codes else ""))
    reference = str(ref.reference or "")
    contained = {f"#{r.get('id')}": r for r in doc.get("contained") or [] if isinstance(r, dict)}
    patient = contained.get(reference) or bundled.get(reference)
    if isinstance(patient, dict) and patient.get("resourceType") == "Patient":
        for ident in patient.get("identifier") or []:
            if not isinstance(ident, dict) or not isinstance(ident.get("value"), str) or not ident["value"]:
                continue
            system = ident.get("system")
            coding = (ident.get("type") or {}).get("coding") if isinstance(ident.get("type"), dict) else None
            codes = [c["code"] for c in coding or [] if isinstance(c, dict) and isinstance(c.get("code"), str)]
            found.append(PersonIdentifier(ident["value"], (system,) if isinstance(system, str) and system else (),
                                          codes[0] if codes else ""))  # fmt: skip
    head, _, tail = reference.rstrip("/").rpartition("/")
    if head.endswith("Patient") and tail:
        found.append(PersonIdentifier(f"Patient/{tail}"))
    return found


def _facility(enc: Encounter) -> str:
    provider = enc.serviceProvider
    if provider is None:
        return ""
    if provider.identifier is not None and provider.identifier.value:
        return slug(str(provider.identifier.value))
    reference = str(provider.reference or "")
    if "Organization/" in reference:
        return slug(reference.rpartition("/")[2])
    return slug(str(provider.display or ""))


def _codes(concepts: Any) -> list[str]:
    return [str(coding.code) for concept in concepts or [] for coding in concept.coding or [] if coding.code]


def _service_codes(enc: Encounter) -> list[str]:
    service = enc.serviceType
    return _codes([service] if service is not None else [])


def _diagnosis_codes(enc: Encounter, doc: dict[str, Any], bundle: dict[str, dict[str, Any]]) -> list[str]:
    codes = _codes(enc.reasonCode)
    contained = {f"#{r.get('id')}": r for r in doc.get("contained") or [] if isinstance(r, dict)}
    for diagnosis in enc.diagnosis or []:
        reference = str(getattr(diagnosis.condition, "reference", "") or "")
        condition = contained.get(reference) or bundle.get(reference)
        code = condition.get("code") if isinstance(condition, dict) and condition.get("resourceType") == "Condition" else None
        if isinstance(code, dict):
            codes += [str(c.get("code")) for c in code.get("coding") or [] if isinstance(c, dict) and c.get("code")]
    return codes


def _disposition(enc: Encounter, prefix: str) -> str:
    path = prefix + "hospitalization.dischargeDisposition"
    concept = getattr(enc.hospitalization, "dischargeDisposition", None)
    codes = _codes([concept] if concept is not None else [])
    if not codes:
        raise _Reject(path, f"{path}: discharge disposition is missing")
    for code in codes:
        for table in (DISPOSITIONS, UB04_DISPOSITIONS):
            if code in table:
                return table[code]
        if code.lower() in _OWN_DISPOSITIONS:
            return code.lower()
    raise _Reject(path, f"{path}: {codes[0][:20]!r} is not a known discharge disposition code "
                  "(http://terminology.hl7.org/CodeSystem/discharge-disposition or UB-04)")  # fmt: skip

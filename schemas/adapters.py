"""What the HL7 v2 and FHIR adapters share: options, the psychiatric rule, CloudEvent lines.

An adapter turns a partner hospital's message into CloudEvents JSON lines *with the raw
subject*, exactly as a publisher would send them; each line then goes through
:meth:`schemas.decode.Decoder.decode`, which validates and pseudonymises it. Adapter output
must therefore never be written to a topic or a log: it goes straight into the decoder.

Default psychiatric rule (settings ``psychiatric_services`` and
``psychiatric_diagnosis_prefixes``): a stay is psychiatric when its hospital service (HL7
PV1-10, FHIR ``Encounter.serviceType``) is one of ``PSY``, ``PSI``, ``MH``, or when a
diagnosis code (HL7 DG1-3, FHIR ``Encounter.reasonCode`` or a referenced ``Condition``)
starts with ``F`` (ICD-10 mental and behavioural disorders) or ``X7``, ``X80``-``X83``
(ICD-10 intentional self-harm, X71-X83 in HEDIS FUH; the ``X7`` prefix also takes
X70-X79). Codes are compared without dots and case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec

_SLUG = re.compile(r"[^a-z0-9._-]+")
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")

SubjectCounter = Callable[[str, bool], object]
"""Called once per event an adapter builds, with its ``source`` and whether its subject is
linked (:func:`choose_subject`); the drivers count unlinked events with it. Must not raise."""


@dataclass(frozen=True, slots=True)
class PersonIdentifier:
    """One identifier a message carries for its patient, as the adapters read it.

    ``systems`` are the names of the system that issued it, most specific first (HL7 PID-3.4
    namespace id, then universal id and its ``urn:oid:`` form; FHIR ``identifier.system``);
    ``type_code`` is its identifier type (HL7 PID-3.5, FHIR ``identifier.type`` code).
    """

    value: str
    systems: tuple[str, ...] = ()
    type_code: str = ""

    @classmethod
    def from_hl7(
        cls, value: str, namespace: str = "", universal: str = "", universal_type: str = "", type_code: str = ""
    ) -> PersonIdentifier:
        """A PID-3 repetition (CX): ID, assigning authority (HD: namespace id, universal id and
        its type) and identifier type code. An ISO universal id (an OID) is also known by its
        ``urn:oid:`` form, the way FHIR writes the same system."""
        systems = [namespace, universal]
        if universal and (universal_type.upper() == "ISO" or _OID.match(universal)):
            systems.append(f"urn:oid:{universal}")
        return cls(value, tuple(s for s in systems if s), type_code)


@dataclass(frozen=True, slots=True)
class Subject:
    """The ``subject`` an adapter publishes (``system|value``) and whether it links people
    across publishers (its system is on the configured list)."""

    value: str
    linked: bool


def choose_subject(
    identifiers: Sequence[PersonIdentifier], linking_systems: Sequence[str], local_namespace: str
) -> Subject | None:
    """The identifier policy (DOMAIN.md section 1): who a hospital message is about.

    ``linking_systems`` is the configured, ordered list of systems that link people across
    publishers (a state Medicaid ID OID, a regional MPI, the NHS number). The list is in order
    of preference: for its first system that any identifier carries (in ``systems`` or as its
    ``type_code``), the first such identifier gives the subject ``<listed system>|<value>``,
    linked. So two publishers that carry the same identifiers in another order agree.

    Without one, the first identifier with a value gives ``<its first system>|<value>``, or
    ``<local_namespace>|<value>`` when it names no system (the drivers pass
    ``hospital/<facility>``), unlinked: a hospital-local number never collides with another
    hospital's. ``None`` when no identifier has a value. Values are taken as they are (no
    escaping of ``|``), so the same value under two systems is two people.
    """
    present = [identifier for identifier in identifiers if identifier.value]
    for system in linking_systems:
        for identifier in present:
            if system in identifier.systems or (identifier.type_code and system == identifier.type_code):
                return Subject(f"{system}|{identifier.value}", True)
    if not present:
        return None
    first = present[0]
    namespace = first.systems[0] if first.systems else local_namespace
    return Subject(f"{namespace}|{first.value}", False)


@dataclass(frozen=True, slots=True)
class AdapterOptions:
    """Options of the HL7 and FHIR adapters (``pathwatch.parts.adapter_options`` builds them from settings).

    ``facility`` names the hospital when a message does not (HL7 MSH-4, FHIR
    ``serviceProvider``); ``timezone`` (IANA) reads HL7 times without an offset and FHIR
    dates without a time; ``linking_systems`` is the identifier policy of
    :func:`choose_subject` (setting ``linking_identifier_systems``).
    """

    psychiatric_services: tuple[str, ...] = ("PSY", "PSI", "MH")
    psychiatric_diagnosis_prefixes: tuple[str, ...] = ("F", "X7", "X80", "X81", "X82", "X83")
    facility: str | None = None
    timezone: str = "UTC"
    linking_systems: tuple[str, ...] = ()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_psychiatric(self, services: Iterable[str], diagnoses: Iterable[str]) -> bool:
        """True when a service is psychiatric or a diagnosis code has a psychiatric prefix."""
        wanted = {service.strip().upper() for service in self.psychiatric_services}
        if any(service.strip().upper() in wanted for service in services):
            return True
        prefixes = tuple(prefix.replace(".", "").strip().upper() for prefix in self.psychiatric_diagnosis_prefixes)
        return any(code.replace(".", "").strip().upper().startswith(prefixes) for code in diagnoses if code.strip())


def slug(text: str) -> str:
    """A facility name as used in ``source`` (``hospital/<slug>``) and ``facility``: lower case,
    runs of other characters than ``a-z 0-9 . _ -`` replaced by ``-``."""
    return _SLUG.sub("-", text.strip().lower()).strip("-")


HOSPITAL_SOURCE_PREFIX: Final = "hospital/"

_encoder = msgspec.json.Encoder()


def cloud_event(
    *, event_id: str, source: str, event_type: str, time: datetime, subject: str, data: dict[str, Any], **extensions: str
) -> bytes:
    """One CloudEvents 1.0 JSON line, as a publisher would send it (``time`` must be aware)."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "time": time.isoformat(),
        "subject": subject,
        "datacontenttype": "application/json",
        **extensions,
        "data": data,
    }
    return _encoder.encode(event)


def redact(reason: str, secrets: Iterable[str]) -> str:
    """``reason`` with every non-empty value of ``secrets`` (raw identifiers) masked."""
    for secret in secrets:
        if secret and secret in reason:
            reason = reason.replace(secret, "<subject>")
    return reason

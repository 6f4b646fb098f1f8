"""Typed, validated, pseudonymised events: the one shape every stage downstream of decoding sees.

An ``Event`` is what the decode path (``schemas.decode``) produces from a CloudEvents 1.0
message after validation and pseudonymisation. It carries ``client`` (the keyed HMAC
pseudonym of the publisher's ``subject``), never the raw identifier. Internal Kafka topics
carry ``Event`` values encoded with :func:`encode_event`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from schemas.identifiers import TEAM_MAX_LENGTH, TEAM_PATTERN

EventType = Literal[
    "referral.received",
    "referral.closed",
    "contact",
    "crisis",
    "admission",
    "discharge",
    "cancel",
    "service.change",
]
EVENT_TYPES: Final[tuple[str, ...]] = (
    "referral.received",
    "referral.closed",
    "contact",
    "crisis",
    "admission",
    "discharge",
    "cancel",
    "service.change",
)

Urgency = Literal["emergency", "urgent", "routine"]
CloseReason = Literal["seen", "declined", "no_contact", "transferred", "other"]
ContactStatus = Literal["attended", "did_not_attend", "cancelled"]
ContactMode = Literal["face_to_face", "telephone", "video", "text", "other"]
CrisisSetting = Literal["crisis_line", "mobile_team", "crisis_center", "emergency_department"]
EncounterSetting = Literal["inpatient", "observation"]
Disposition = Literal[
    "home",
    "community_residence",
    "acute_transfer",
    "nonacute_transfer",
    "against_medical_advice",
    "died",
    "prison_or_court",
    "other",
]

# Every string is bounded (issue 14: an 800 KB team made a 1.6 MB derived record). The JSON
# Schemas in schemas/json say the same with minLength, maxLength and the team pattern.
ID_MAX_LENGTH: Final = 128
SOURCE_MAX_LENGTH: Final = 64  # a metric label (events_total): at most 64, like every label
SUBJECT_MAX_LENGTH: Final = 256
FACILITY_MAX_LENGTH: Final = 128
REFERRAL_SOURCE_MAX_LENGTH: Final = 64
REASON_MAX_LENGTH: Final = 256
CHANGE_ID_MAX_LENGTH: Final = 64
DESCRIPTION_MAX_LENGTH: Final = 500

NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_MAX_LENGTH)]
"""A publisher's id (event, referral, contact, encounter, crisis): pseudonymised at decode."""
Source = Annotated[str, msgspec.Meta(min_length=1, max_length=SOURCE_MAX_LENGTH)]
Subject = Annotated[str, msgspec.Meta(min_length=1, max_length=SUBJECT_MAX_LENGTH)]
Team = Annotated[str, msgspec.Meta(min_length=1, max_length=TEAM_MAX_LENGTH, pattern=TEAM_PATTERN)]
Facility = Annotated[str, msgspec.Meta(min_length=1, max_length=FACILITY_MAX_LENGTH)]
ReferralSource = Annotated[str, msgspec.Meta(max_length=REFERRAL_SOURCE_MAX_LENGTH)]
Reason = Annotated[str, msgspec.Meta(max_length=REASON_MAX_LENGTH)]
ChangeId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=CHANGE_ID_MAX_LENGTH, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]
ChangeTeam = Annotated[
    str, msgspec.Meta(min_length=1, max_length=TEAM_MAX_LENGTH, pattern=r"^([a-z0-9][a-z0-9_-]*|\*)$")
]
"""A team slug, or ``*`` for the whole provider."""
Description = Annotated[
    str, msgspec.Meta(min_length=1, max_length=DESCRIPTION_MAX_LENGTH, pattern="^[^\u0000-\u001f\u007f]*$")
]
"""One line of plain text (no control characters)."""
RateMeasure = Literal[
    "followup_72h",
    "followup_7d",
    "followup_30d",
    "readmission_30d",
    "seen_within_target",
    "lost_before_contact",
    "first_contact_dna",
    "repeat_crisis_30d",
]
ExpectedDirection = Literal["higher", "lower"]

UNASSIGNED: Final = "unassigned"
ALL_TEAMS: Final = "*"


class ReferralReceived(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    referral_id: Id
    team: Team
    urgency: Urgency
    referral_source: ReferralSource | None = None


class ReferralClosed(msgspec.Struct, frozen=True):
    referral_id: Id
    reason: CloseReason


class Contact(msgspec.Struct, frozen=True):
    contact_id: Id
    team: Team
    status: ContactStatus
    mode: ContactMode
    referral_id: Id | None = None


class Crisis(msgspec.Struct, frozen=True):
    crisis_id: Id
    setting: CrisisSetting
    team: Team | None = None


class Admission(msgspec.Struct, frozen=True):
    encounter_id: Id
    facility: Facility
    setting: EncounterSetting
    psychiatric: bool


class Discharge(msgspec.Struct, frozen=True):
    encounter_id: Id
    facility: Facility
    setting: EncounterSetting
    psychiatric: bool
    disposition: Disposition
    team: Team | None = None


class Cancel(msgspec.Struct, frozen=True):
    cancels: Id
    reason: Reason | None = None


class ServiceChange(msgspec.Struct, frozen=True):
    """A change a team made (``service.change``): per team, never per client.

    ``measures`` None means every rate measure; ``expected_direction`` None means each
    measure's improvement direction. The decoder also refuses a ``description`` with a word
    that looks like an identifier (:func:`schemas.identifiers.identifier_problem`).
    """

    change_id: ChangeId
    team: ChangeTeam
    description: Description
    measures: Annotated[tuple[RateMeasure, ...], msgspec.Meta(min_length=1, max_length=8)] | None = None
    expected_direction: ExpectedDirection | None = None


EventData = ReferralReceived | ReferralClosed | Contact | Crisis | Admission | Discharge | Cancel | ServiceChange

DATA_TYPES: Final[dict[str, type[msgspec.Struct]]] = {
    "referral.received": ReferralReceived,
    "referral.closed": ReferralClosed,
    "contact": Contact,
    "crisis": Crisis,
    "admission": Admission,
    "discharge": Discharge,
    "cancel": Cancel,
    "service.change": ServiceChange,
}


class Event(msgspec.Struct, frozen=True):
    """A validated event. ``time`` is timezone-aware; ``client`` is the pseudonym (empty for a
    ``service.change``, which has no subject)."""

    source: str
    id: str
    type: EventType
    time: datetime
    client: str
    data: EventData

    @property
    def key(self) -> tuple[str, str]:
        """The de-duplication key (``source``, ``id``) of DOMAIN.md section 1."""
        return (self.source, self.id)


class _WireEvent(msgspec.Struct, frozen=True):
    source: str
    id: str
    type: EventType
    time: datetime
    client: str
    data: msgspec.Raw


_encoder = msgspec.json.Encoder()
_wire_decoder = msgspec.json.Decoder(_WireEvent)
_data_decoders = {name: msgspec.json.Decoder(cls) for name, cls in DATA_TYPES.items()}


def encode_event(event: Event) -> bytes:
    """Encode an ``Event`` for an internal topic (JSON; ``client`` only, never ``subject``)."""
    return _encoder.encode(event)


def decode_internal(raw: bytes) -> Event:
    """Decode bytes written by :func:`encode_event`. Raises ``msgspec.ValidationError`` on bad input."""
    wire = _wire_decoder.decode(raw)
    data = _data_decoders[wire.type].decode(wire.data)
    return Event(wire.source, wire.id, wire.type, wire.time, wire.client, data)  # type: ignore[arg-type]

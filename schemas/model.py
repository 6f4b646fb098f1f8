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

EventType = Literal[
    "referral.received",
    "referral.closed",
    "contact",
    "crisis",
    "admission",
    "discharge",
    "cancel",
]
EVENT_TYPES: Final[tuple[str, ...]] = (
    "referral.received",
    "referral.closed",
    "contact",
    "crisis",
    "admission",
    "discharge",
    "cancel",
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

# Identifiers and team names must be non-empty when decoded from a publisher's message;
# the JSON Schemas in schemas/json say the same with minLength 1.
NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]

UNASSIGNED: Final = "unassigned"
ALL_TEAMS: Final = "*"


class ReferralReceived(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    referral_id: NonEmptyStr
    team: NonEmptyStr
    urgency: Urgency
    referral_source: str | None = None


class ReferralClosed(msgspec.Struct, frozen=True):
    referral_id: NonEmptyStr
    reason: CloseReason


class Contact(msgspec.Struct, frozen=True):
    contact_id: NonEmptyStr
    team: NonEmptyStr
    status: ContactStatus
    mode: ContactMode
    referral_id: NonEmptyStr | None = None


class Crisis(msgspec.Struct, frozen=True):
    crisis_id: NonEmptyStr
    setting: CrisisSetting
    team: NonEmptyStr | None = None


class Admission(msgspec.Struct, frozen=True):
    encounter_id: NonEmptyStr
    facility: NonEmptyStr
    setting: EncounterSetting
    psychiatric: bool


class Discharge(msgspec.Struct, frozen=True):
    encounter_id: NonEmptyStr
    facility: NonEmptyStr
    setting: EncounterSetting
    psychiatric: bool
    disposition: Disposition
    team: NonEmptyStr | None = None


class Cancel(msgspec.Struct, frozen=True):
    cancels: NonEmptyStr
    reason: str | None = None


EventData = ReferralReceived | ReferralClosed | Contact | Crisis | Admission | Discharge | Cancel

DATA_TYPES: Final[dict[str, type[msgspec.Struct]]] = {
    "referral.received": ReferralReceived,
    "referral.closed": ReferralClosed,
    "contact": Contact,
    "crisis": Crisis,
    "admission": Admission,
    "discharge": Discharge,
    "cancel": Cancel,
}


class Event(msgspec.Struct, frozen=True):
    """A validated event. ``time`` is timezone-aware; ``client`` is the pseudonym."""

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

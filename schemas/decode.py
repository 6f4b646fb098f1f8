"""The one decode path: bytes from any publisher -> a validated, pseudonymised ``Event`` or a ``DeadLetter``.

Every driver (replay, live workers, ``pathwatch validate``, the HL7 and FHIR adapters) calls
:meth:`Decoder.decode`. It has two paths that accept exactly the same inputs:

* the fast path decodes the CloudEvents envelope and its ``data`` in one msgspec pass into
  the typed structs of :mod:`schemas.model` (replay must run at about 100k events/s);
* when the fast path rejects an input, the slow path works out why: not UTF-8 or not JSON,
  an unknown ``type``, or the first violation of the shipped JSON Schema (draft 2020-12,
  ``schemas/json/<type>.schema.json``) with its path, e.g.
  ``data.urgency: 'soon' is not one of emergency, urgent, routine``.

Oversized inputs are rejected before any parsing; a null value (a Kafka tombstone) is a
dead letter of kind ``null_value``. One UTF-8 byte order mark at the start of a message is
ignored (RFC 8259 lets a parser do so; files saved by Windows tools start with one), so
``validate``, ``replay`` and the workers agree on such a first line. Beyond the schema, an accepted event must have:

* a ``time`` within the fixed window :data:`TIME_MIN` (1900-01-01T00:00:00Z, inclusive) to
  :data:`TIME_MAX` (2100-01-01T00:00:00Z, exclusive): the core adds up to a year and the
  lateness to event times, which overflows Python's datetime near years 1 and 9999; the
  window is absolute (not relative to today) so a replay gives the same answer any day;
* a ``source`` and ``team`` that do not look like identifiers
  (:func:`schemas.identifiers.identifier_problem`, kind ``identifier_like``), and a ``team``
  that is one of the configured teams, or without a configured list a short lowercase slug.

The raw ``subject`` is replaced by its keyed pseudonym (:mod:`schemas.pseudonym`) and never
appears in a reason; so are the publisher's ids (the event ``id``, ``referral_id``,
``contact_id``, ``encounter_id``, ``crisis_id`` and a cancel's ``cancels``), with the same
key, so de-duplication by (``source``, ``id``), cancels and a contact's ``referral_id`` still
match. A reason never repeats an identifier-like value. A dead-letter record holds the
original bytes and so goes only to the dead-letter topic.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cache, lru_cache
from importlib import resources
from typing import Annotated, Any, Final, Literal, cast

import jsonschema
import msgspec
from jsonschema.exceptions import ValidationError, best_match

from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.identifiers import TEAM_MAX_LENGTH, identifier_problem, is_team_slug
from schemas.model import (
    ALL_TEAMS,
    DATA_TYPES,
    EVENT_TYPES,
    Admission,
    Cancel,
    Contact,
    Crisis,
    Discharge,
    Event,
    EventData,
    EventType,
    Id,
    ReferralClosed,
    ReferralReceived,
    ServiceChange,
    Source,
    Subject,
)
from schemas.pseudonym import Pseudonymiser

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]

SCHEMA_BASE_URI: Final = "https://schemas.pathwatch.org/events/v1/"
ENVELOPE: Final = "envelope"
_REASON_VALUE_CHARS: Final = 60
_HAS_TIME_NO_OFFSET = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?$")
_MSGSPEC_PATH = re.compile(r" - at `\$(.*)`$")
PSEUDONYM_CACHE_SIZE: Final = 65_536
_BOM: Final = b"\xef\xbb\xbf"
TIME_MIN: Final = datetime(1900, 1, 1, tzinfo=UTC)
"""Earliest accepted event time (inclusive)."""
TIME_MAX: Final = datetime(2100, 1, 1, tzinfo=UTC)
"""Accepted event times are before this instant."""
_WINDOW: Final = "1900-01-01T00:00:00Z to 2100-01-01T00:00:00Z"
_TEAM_RULE: Final = f"a short lowercase slug (a-z, 0-9, _ and -, at most {TEAM_MAX_LENGTH} characters)"
_ID_FIELDS: Final[dict[type, tuple[str, ...]]] = {
    ReferralReceived: ("referral_id",),
    ReferralClosed: ("referral_id",),
    Contact: ("contact_id", "referral_id"),
    Crisis: ("crisis_id",),
    Admission: ("encounter_id",),
    Discharge: ("encounter_id",),
    Cancel: ("cancels",),
    ServiceChange: (),
}


class _Attributes(msgspec.Struct, frozen=True, tag_field="type"):
    specversion: Literal["1.0"]
    id: Id
    source: Source
    time: AwareDatetime


class _Envelope(_Attributes, frozen=True):
    subject: Subject


class _ReferralReceivedEnvelope(_Envelope, frozen=True, tag="referral.received"):
    data: ReferralReceived


class _ReferralClosedEnvelope(_Envelope, frozen=True, tag="referral.closed"):
    data: ReferralClosed


class _ContactEnvelope(_Envelope, frozen=True, tag="contact"):
    data: Contact


class _CrisisEnvelope(_Envelope, frozen=True, tag="crisis"):
    data: Crisis


class _AdmissionEnvelope(_Envelope, frozen=True, tag="admission"):
    data: Admission


class _DischargeEnvelope(_Envelope, frozen=True, tag="discharge"):
    data: Discharge


class _CancelEnvelope(_Envelope, frozen=True, tag="cancel"):
    data: Cancel


class _ServiceChangeEnvelope(_Attributes, frozen=True, tag="service.change"):
    # A change is about a team, never a client: a subject is refused (null is tolerated).
    data: ServiceChange
    subject: None = None


_ENVELOPES: Final[tuple[type[_Attributes], ...]] = (
    _ReferralReceivedEnvelope,
    _ReferralClosedEnvelope,
    _ContactEnvelope,
    _CrisisEnvelope,
    _AdmissionEnvelope,
    _DischargeEnvelope,
    _CancelEnvelope,
    _ServiceChangeEnvelope,
)
_TYPE_OF: Final[dict[type[_Attributes], EventType]] = {
    cls: cast(EventType, cls.__struct_config__.tag) for cls in _ENVELOPES
}
_AnyEnvelope = (
    _ReferralReceivedEnvelope
    | _ReferralClosedEnvelope
    | _ContactEnvelope
    | _CrisisEnvelope
    | _AdmissionEnvelope
    | _DischargeEnvelope
    | _CancelEnvelope
    | _ServiceChangeEnvelope
)


@cache
def _load_schema(name: str) -> dict[str, Any]:
    text = resources.files("schemas").joinpath("json", f"{name}.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def schema_for(event_type: str) -> dict[str, Any]:
    """The shipped JSON Schema of ``event_type`` (or ``"envelope"``), as a fresh dict.

    Raises ``KeyError`` for a name that is neither an event type nor ``"envelope"``.
    """
    if event_type not in DATA_TYPES and event_type != ENVELOPE:
        raise KeyError(event_type)
    return copy.deepcopy(_load_schema(event_type))


_format_checker = jsonschema.FormatChecker(formats=())


@_format_checker.checks("date-time")
def _is_aware_datetime(value: object) -> bool:
    # The schema's date-time must accept exactly what the fast path accepts, so both use msgspec.
    if not isinstance(value, str):
        return True
    try:
        msgspec.convert(value, AwareDatetime)
    except msgspec.ValidationError:
        return False
    return True


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_load_schema(name), format_checker=_format_checker)


def schema_errors(obj: object) -> list[ValidationError]:
    """Every JSON Schema violation of ``obj`` (empty when valid), against its type's schema.

    An object whose ``type`` is not a known event type is checked against the envelope
    schema only. Used by :class:`Decoder` and by tests comparing the two paths.
    """
    event_type = obj.get("type") if isinstance(obj, dict) else None
    name = event_type if isinstance(event_type, str) and event_type in DATA_TYPES else ENVELOPE
    return list(_validator(name).iter_errors(obj))


class Decoder:
    """Decodes publisher messages. Build one per worker; ``decode`` is safe to call at any rate."""

    __slots__ = ("_max_bytes", "_pseudonymiser", "_fast", "_pseudonym", "_teams")

    def __init__(self, key: bytes, max_bytes: int, teams: Iterable[str] | None = None) -> None:
        """``key`` is the HMAC key (non-empty); ``max_bytes`` the largest accepted message;
        ``teams`` the configured teams (``None`` or empty: any team that is a short lowercase
        slug). Raises ``ValueError`` for a bad limit or a configured team that is not a slug or
        looks like an identifier."""
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        chosen = frozenset(teams or ())
        for team in sorted(chosen):
            if not is_team_slug(team) or identifier_problem(team) is not None:
                raise ValueError(f"configured team {team!r} is not {_TEAM_RULE} that does not look like an identifier")
        self._teams = chosen
        self._max_bytes = max_bytes
        self._pseudonymiser = Pseudonymiser(key)
        self._fast = msgspec.json.Decoder(_AnyEnvelope)
        # A client's events come in bursts: a bounded LRU of pseudonyms saves most of the
        # HMACs. It lives in process memory only and is never logged or exported.
        self._pseudonym = lru_cache(maxsize=PSEUDONYM_CACHE_SIZE)(self._pseudonymiser.pseudonym)

    @property
    def pseudonymiser(self) -> Pseudonymiser:
        return self._pseudonymiser

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def teams(self) -> frozenset[str]:
        """The configured teams (empty: any slug team is accepted)."""
        return self._teams

    def decode(self, raw: bytes | None, origin: Origin) -> Event | DeadLetter:
        """One message -> an ``Event`` (``client`` = pseudonym of ``subject``, ids pseudonymised)
        or one ``DeadLetter``.

        Never raises, whatever the value: ``None`` (a Kafka tombstone) is a ``null_value``
        dead letter with empty original bytes. Inputs longer than ``max_bytes`` are rejected
        unread; their dead-letter record keeps only the first ``max_bytes`` bytes, so that the
        record itself stays publishable.
        """
        try:
            if raw is None:
                return DeadLetter(
                    DeadLetterKind.NULL_VALUE, "message has a null value (a Kafka tombstone): no event", "", origin, b""
                )
            size = len(raw)
            if size > self._max_bytes:
                return DeadLetter(
                    DeadLetterKind.OVERSIZED,
                    f"message is {size} bytes, over the limit of {self._max_bytes} bytes "
                    f"(the dead-letter record keeps the first {self._max_bytes})",
                    "",
                    origin,
                    bytes(raw[: self._max_bytes]),
                )
            return self._decode(raw, bytes(raw), origin)
        except Exception as exc:  # last resort: decode must never raise
            return _failed(exc, raw, origin)

    def decode_line(self, raw: bytes, file: str, line: int) -> Event | DeadLetter:
        """``decode(raw, Origin(file=file, line=line))``, building the ``Origin`` only for a
        dead letter (the replay's per-line path). Never raises."""
        if len(raw) <= self._max_bytes:
            buf = bytes(raw)
            if buf.startswith(_BOM):
                buf = buf[len(_BOM) :]
            try:
                if not buf.isascii():
                    buf.decode("utf-8")
                env = self._fast.decode(buf)
            except Exception:  # explained, with the origin, by the full path below
                env = None
            if env is not None:
                try:
                    return self._accept(env, buf, None) or self._event(env)
                except Exception as exc:  # last resort, as in decode
                    return _failed(exc, raw, Origin(file=file, line=line))
        return self.decode(raw, Origin(file=file, line=line))

    def decode_obj(self, obj: Mapping[str, Any], raw: bytes, origin: Origin) -> Event | DeadLetter:
        """Decode an already-parsed CloudEvent (a JSON-compatible mapping); ``raw`` is kept as
        the original bytes of any dead-letter record. Never raises."""
        try:
            encoded = msgspec.json.encode(obj)
        except Exception as exc:  # any unencodable value is a schema problem of this input
            return DeadLetter(
                DeadLetterKind.SCHEMA, f"event: not JSON-compatible ({type(exc).__name__})", "", origin, raw
            )
        if len(encoded) > self._max_bytes:
            return DeadLetter(
                DeadLetterKind.OVERSIZED,
                f"event is {len(encoded)} bytes as JSON, over the limit of {self._max_bytes} bytes",
                "",
                origin,
                bytes(raw[: self._max_bytes]),
            )
        try:
            return self._decode(encoded, raw, origin)
        except Exception as exc:  # last resort: decode must never raise
            return _failed(exc, raw, origin)

    def _decode(self, buf: bytes, original: bytes, origin: Origin) -> Event | DeadLetter:
        if buf.startswith(_BOM):
            buf = buf[len(_BOM) :]
        try:
            # msgspec skips unknown fields without checking their UTF-8; the contract is
            # "not UTF-8 is not JSON" whatever field the bad byte is in.
            if not buf.isascii():
                buf.decode("utf-8")
            env = self._fast.decode(buf)
        except Exception as exc:  # msgspec errors, UnicodeDecodeError, RecursionError: all explained below
            return self._explain(buf, original, origin, exc)
        return self._accept(env, original, origin) or self._event(env)

    def _accept(self, env: _Attributes, original: bytes, origin: Origin | None) -> DeadLetter | None:
        """The checks the schema cannot state (time window, label-bound values), or ``None``."""
        problem = self.problem(env.source, env.time, getattr(env, "data", None))
        if problem is None:
            return None
        kind, path, reason = problem
        return DeadLetter(kind, reason, path, origin if origin is not None else Origin(), original)

    def problem(self, source: str, time: datetime, data: object) -> tuple[DeadLetterKind, str, str] | None:
        """(kind, path, reason) of the first check beyond the JSON Schema that a schema-valid
        event fails, or ``None``: the time window, then ``source``, then ``data.team`` (``*``
        allowed for a service change), then a service change's ``data.description`` (no word
        that looks like an identifier). Reasons never repeat a source, team or description."""
        if not TIME_MIN <= time < TIME_MAX:
            shown = time.isoformat()
            return DeadLetterKind.SCHEMA, "time", f"time: {shown!r} is outside the accepted window {_WINDOW}"
        found = _identifier_problem(source)
        if found is not None:
            reason = f"source: looks like an identifier ({found}); a source names a publisher"
            return DeadLetterKind.IDENTIFIER_LIKE, "source", reason
        team = getattr(data, "team", None)
        if isinstance(data, ServiceChange):
            found = _description_problem(data.description)
            if found is not None:
                reason = (
                    f"data.description: a word looks like an identifier ({found}); "
                    "describe the change without client data, ids or dates"
                )
                return DeadLetterKind.IDENTIFIER_LIKE, "data.description", reason
            if team == ALL_TEAMS:
                return None
        if isinstance(team, str):
            found = _identifier_problem(team)
            if found is not None:
                reason = f"data.team: looks like an identifier ({found}); a team is a bounded category"
                return DeadLetterKind.IDENTIFIER_LIKE, "data.team", reason
            if self._teams:
                if team not in self._teams:
                    reason = "data.team: is not one of the configured teams (setting PATHWATCH_TEAMS)"
                    return DeadLetterKind.SCHEMA, "data.team", reason
            elif not is_team_slug(team):
                return DeadLetterKind.SCHEMA, "data.team", f"data.team: must be {_TEAM_RULE}"
        return None

    def _event(self, env: _Attributes) -> Event:
        ids = self._pseudonymiser.pseudonym
        data: EventData = env.data  # type: ignore[attr-defined]
        changes = {name: ids(value) for name in _ID_FIELDS[type(data)] if (value := getattr(data, name)) is not None}
        subject = env.subject if isinstance(env, _Envelope) else None
        return Event(
            env.source,
            ids(env.id),
            _TYPE_OF[type(env)],
            env.time,
            "" if subject is None else self._pseudonym(subject),
            msgspec.structs.replace(data, **changes),
        )

    def _explain(self, buf: bytes, original: bytes, origin: Origin, fast_error: BaseException) -> DeadLetter:
        try:
            return _explain(buf, original, origin, fast_error)
        except Exception as exc:  # last resort: decode must never raise
            return DeadLetter(
                DeadLetterKind.SCHEMA, f"event: could not be checked ({type(exc).__name__})", "", origin, original
            )


# Sources and teams are few: the regular expressions run once per distinct value.
_identifier_problem = lru_cache(maxsize=4096)(identifier_problem)
_WORD_SPLIT = re.compile(r"[\s,;()\[\]{}\"'`]+")


def _description_problem(text: str) -> str | None:
    """Why a word of a service change's description looks like an identifier, or ``None``.

    Each word is put to :func:`identifier_problem` (so an MRN, an NHS number, a date such as
    2026-03-01 or a UUID is refused); the answer never repeats the word."""
    for word in _WORD_SPLIT.split(text):
        found = identifier_problem(word.strip(".:!?")) if word else None
        if found is not None:
            return found
    return None


def _failed(exc: Exception, raw: object, origin: Origin) -> DeadLetter:
    original = bytes(raw) if isinstance(raw, bytes | bytearray | memoryview) else b""
    reason = f"event: could not be decoded ({type(exc).__name__})"
    return DeadLetter(DeadLetterKind.PROCESSING, reason, "", origin, original)


def _explain(buf: bytes, original: bytes, origin: Origin, fast_error: BaseException) -> DeadLetter:
    try:
        buf.decode("utf-8")
    except UnicodeDecodeError as exc:
        return DeadLetter(
            DeadLetterKind.NOT_JSON, f"not UTF-8: invalid byte at offset {exc.start}", "", origin, original
        )
    try:
        obj = msgspec.json.decode(buf)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return DeadLetter(DeadLetterKind.NOT_JSON, f"not JSON: {exc}", "", origin, original)
    except RecursionError:
        return DeadLetter(DeadLetterKind.NOT_JSON, "not JSON: nested too deeply", "", origin, original)
    if not isinstance(obj, dict):
        return DeadLetter(
            DeadLetterKind.SCHEMA, f"event: expected a JSON object, got {_kind(obj)}", "", origin, original
        )
    subject = obj.get("subject")
    event_type = obj.get("type")
    if isinstance(event_type, str) and event_type not in DATA_TYPES:
        reason = f"type: {_short(event_type, subject)} is not a known event type (one of {', '.join(EVENT_TYPES)})"
        return DeadLetter(DeadLetterKind.UNKNOWN_TYPE, _redact(reason, subject), "type", origin, original)
    errors = schema_errors(obj)
    if not errors:
        # The two paths disagree (tests guard against it); still reject, with msgspec's words.
        message = str(fast_error)
        match = _MSGSPEC_PATH.search(message)
        path = _dotted_msgspec(match.group(1)) if match else ""
        reason = f"{path or 'event'}: {_MSGSPEC_PATH.sub('', message)}"
        return DeadLetter(DeadLetterKind.SCHEMA, _redact(reason, subject), path, origin, original)
    primary = best_match(errors)
    assert primary is not None
    path, reason = describe_error(primary, subject)
    # A bad time breaks both its pattern and its format: count fields, not violations.
    more = len({describe_error(error)[0] for error in errors} - {path})
    if more:
        reason += f" (and {more} more field{'s' if more > 1 else ''} with errors)"
    return DeadLetter(DeadLetterKind.SCHEMA, _redact(reason, subject), path, origin, original)


def describe_error(error: ValidationError, subject: object = None) -> tuple[str, str]:
    """(path, reason) of one JSON Schema violation, in pathwatch's words.

    The path is dotted (``data.urgency``, ``items[2]``); for a missing field it names the
    field. Values are quoted only for enumerations, constants and times, cut to 60
    characters, and never when they are the event's ``subject`` (pass it as ``subject``).
    """
    path = _dotted(error.absolute_path)
    validator = error.validator
    instance = error.instance
    expected: Any = error.validator_value
    if validator == "required":
        missing = next(
            (name for name in expected if error.message == f"{name!r} is a required property"),
            None,
        )
        if missing is not None:
            path = f"{path}.{missing}" if path else str(missing)
        return path, f"{path or 'event'}: required field is missing"
    where = path or "event"
    if validator == "maxLength":
        return path, f"{where}: longer than {expected} characters"
    if validator == "pattern" and (path == "team" or path.endswith(".team")):
        return path, f"{where}: must be {_TEAM_RULE}" + (" or *" if "|" in str(expected) else "")
    if validator == "pattern" and path == "data.description":
        return path, f"{where}: must be one line of plain text (no control characters)"
    if validator == "pattern" and path == "data.change_id":
        return path, f"{where}: must be letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
    if validator == "type":
        names = " or ".join(expected) if isinstance(expected, list) else str(expected)
        return path, f"{where}: expected {names}, got {_kind(instance)}"
    if path == "subject" or path.startswith("subject."):
        return path, f"{where}: is not valid ({validator})"
    if validator == "enum":
        options = ", ".join(str(v) for v in expected if v is not None)
        return path, f"{where}: {_short(instance, subject)} is not one of {options}"
    if validator == "const":
        return path, f"{where}: must be {_short(expected, subject)}, got {_short(instance, subject)}"
    if validator == "minLength":
        return path, f"{where}: must not be empty"
    if validator in ("pattern", "format"):
        if isinstance(instance, str) and _HAS_TIME_NO_OFFSET.match(instance):
            return path, f"{where}: {_short(instance, subject)} has no UTC offset (RFC 3339 needs Z or +hh:mm)"
        return path, f"{where}: {_short(instance, subject)} is not an RFC 3339 date-time with a UTC offset"
    return path, f"{where}: {error.message}"


def _dotted(parts: Any) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _dotted_msgspec(path: str) -> str:
    return path[1:] if path.startswith(".") else path


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _short(value: object, subject: object = None) -> str:
    if isinstance(value, str) and value == subject:
        return "<subject>"
    if isinstance(value, str):
        cut = value if len(value) <= _REASON_VALUE_CHARS else value[:_REASON_VALUE_CHARS] + "..."
        return repr(cut)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    return f"an {_kind(value)}" if _kind(value)[0] in "aeiou" else f"a {_kind(value)}"


def _redact(reason: str, subject: object) -> str:
    # A reason is built from field values; should one equal the subject, hide it all the same.
    if isinstance(subject, str) and subject:
        for form in (subject, repr(subject)[1:-1]):
            if form in reason:
                reason = reason.replace(form, "<subject>")
    return reason

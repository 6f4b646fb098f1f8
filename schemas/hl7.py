"""HL7 v2 ADT from partner hospitals -> CloudEvents lines for :class:`schemas.decode.Decoder`.

Parsing is hl7apy's (tolerant validation, any version it knows, 2.1 to 2.8.2); this module
only maps fields. Triggers and the events they become:

======  ===========================  =============================================
A01     admit                        ``admission``, id ``<visit>:A01``
A03     discharge                    ``discharge``, id ``<visit>:A03``
A11     cancel admit                 ``cancel`` of ``<visit>:A01``, id ``<visit>:A11:<MSH-10>``
A13     cancel discharge             ``cancel`` of ``<visit>:A03``, id ``<visit>:A13:<MSH-10>``
======  ===========================  =============================================

Event ids. A cancel must name the id of the event it withdraws, but an A11/A13 carries only
its own control id (MSH-10), not the original message's. So admissions and discharges are
identified by the visit they belong to: ``<visit>`` is the visit number PV1-19 (first
component), or the patient account number PID-18 when PV1-19 is empty; the A11/A13 for the
same visit then names ``<visit>:A01`` / ``<visit>:A03`` without any state. A resent A01/A03
is a duplicate (same id) and changes nothing. Known limit: a visit discharged, cancelled
(A13) and discharged again yields the same id ``<visit>:A03`` twice.

Other fields: ``source`` is ``hospital/<MSH-4>`` (first component, slugged; the configured
facility when MSH-4 is empty) and ``data.facility`` the same slug; ``subject`` is
``system|value`` from PID-3 by the identifier policy (:func:`schemas.adapters.choose_subject`:
a repetition whose assigning authority PID-3.4 or type PID-3.5 is a configured linking system,
else the first repetition namespaced by its assigning authority or the hospital); ``time`` is EVN-6 (event occurred), else PV1-44
(A01) or PV1-45 (A03), else EVN-2 (recorded), else MSH-7. An HL7 time without an offset
takes MSH-7's offset, else the configured timezone. Setting: PV1-2 ``I`` is inpatient
(observation when PV1-18 patient type is ``OBS``); PV1-2 ``OBS`` is observation; other
patient classes (emergency, outpatient, ...) are not hospital stays the measures use and
give no event. PV1-36 maps through :data:`DISPOSITIONS` (UB-04 patient discharge status,
the usual content of the user-defined HL7 table 0112; pathwatch's own values are accepted
too). Psychiatric: :meth:`schemas.adapters.AdapterOptions.is_psychiatric` over PV1-10 and
the DG1-3 codes (only DG1 with priority DG1-15 = 1 when any has one).

Other ADT triggers (A04, A08, ...) give an empty list: nothing to publish, once the header
is whole (MSH-9 a trigger code such as ``A08``, MSH-10 present: a message cut off inside MSH
is a dead letter, not "nothing to publish"). Anything that
cannot be turned into events is one ``DeadLetter`` of kind ``hl7`` whose reason names the
HL7 field (e.g. ``PV1-36``) and never contains the patient identifier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Final, get_args

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import InvalidEncodingChars, InvalidName, UnsupportedVersion
from hl7apy.parser import parse_message

from schemas.adapters import (
    HOSPITAL_SOURCE_PREFIX,
    AdapterOptions,
    PersonIdentifier,
    Subject,
    SubjectCounter,
    choose_subject,
    cloud_event,
    redact,
    slug,
)
from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.model import Disposition

SUPPORTED_TRIGGERS: Final = ("A01", "A03", "A11", "A13")

# UB-04 / NUBC patient discharge status codes -> DOMAIN.md dispositions. Hospice (50, 51)
# is "other" for home hospice and a non-acute transfer for a hospice facility; 09 (admitted
# as an inpatient of this hospital) and 65/93 (psychiatric hospital) are acute transfers.
DISPOSITIONS: Final[dict[str, Disposition]] = {
    "01": "home", "06": "home", "08": "home", "81": "home", "86": "home",
    "02": "acute_transfer", "05": "acute_transfer", "09": "acute_transfer", "43": "acute_transfer",
    "65": "acute_transfer", "66": "acute_transfer", "82": "acute_transfer", "85": "acute_transfer",
    "88": "acute_transfer", "93": "acute_transfer", "94": "acute_transfer",
    "03": "nonacute_transfer", "04": "nonacute_transfer", "51": "nonacute_transfer",
    "61": "nonacute_transfer", "62": "nonacute_transfer", "63": "nonacute_transfer",
    "64": "nonacute_transfer", "70": "nonacute_transfer", "83": "nonacute_transfer",
    "84": "nonacute_transfer", "89": "nonacute_transfer", "90": "nonacute_transfer",
    "91": "nonacute_transfer", "92": "nonacute_transfer", "95": "nonacute_transfer",
    "07": "against_medical_advice",
    "20": "died", "40": "died", "41": "died", "42": "died",
    "21": "prison_or_court", "87": "prison_or_court",
    "30": "other", "50": "other", "69": "other",
}  # fmt: skip
_OWN_DISPOSITIONS: Final = frozenset(get_args(Disposition))
_OBSERVATION_TYPES: Final = frozenset({"OBS", "OBV", "OBSERVATION"})
_DTM = re.compile(
    r"^(?P<y>\d{4})(?P<mo>\d{2})(?P<d>\d{2})(?:(?P<h>\d{2})(?:(?P<mi>\d{2})(?:(?P<s>\d{2})(?:\.(?P<f>\d{1,6}))?)?)?)?"
    r"(?P<tz>[+-]\d{4})?$"
)
_TRIGGER = re.compile(r"^[A-Z][0-9]{2}$")
_MLLP_START, _MLLP_END = "\x0b", "\x1c"
_SEGMENT_BREAK = re.compile(r"\r\n|\n|\r")
_BATCH_SEGMENTS: Final = ("FHS", "BHS", "BTS", "FTS")


class _Reject(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Visit:
    trigger: str
    control_id: str
    facility: str
    subject: Subject
    visit: str
    setting: str | None
    psychiatric: bool


def split_messages(data: bytes) -> list[tuple[int, bytes]]:
    """Split a file of HL7 v2 messages: ``(segment line number of MSH, message bytes)`` each.

    Segments may end in CR, LF or CRLF; MLLP framing (0x0b ... 0x1c 0x0d) and batch
    segments (FHS, BHS, BTS, FTS) are dropped. Text before the first MSH is returned as a
    message of its own, so that it is reported rather than lost. Line numbers count segments
    (1-based), which is what an editor shows for LF- or CRLF-separated files.
    """
    text = data.replace(_MLLP_START.encode(), b"").replace(_MLLP_END.encode(), b"\n")
    messages: list[tuple[int, list[bytes]]] = []
    for number, segment in enumerate(re.split(rb"\r\n|\n|\r", text), start=1):
        if not segment.strip() or segment[:3].decode("latin-1") in _BATCH_SEGMENTS:
            continue
        if segment.startswith(b"MSH") or not messages:
            messages.append((number, []))
        messages[-1][1].append(segment)
    return [(number, b"\r".join(segments)) for number, segments in messages]


class HL7Adapter:
    """Turns one HL7 v2 ADT message into CloudEvents lines (see the module docstring)."""

    def __init__(self, options: AdapterOptions | None = None, count_subject: SubjectCounter | None = None) -> None:
        """``count_subject`` (optional) is called for each event built, with its source and
        whether its subject is linked (the unlinked-events metric)."""
        self._options = options or AdapterOptions()
        self._tz = self._options.tz
        self._count_subject = count_subject

    def convert(self, raw: bytes, origin: Origin) -> list[bytes] | DeadLetter:
        """One message (MLLP framing tolerated) -> CloudEvents JSON lines with the raw subject,
        ``[]`` for a trigger or patient class that gives no event, or one ``DeadLetter``
        (kind ``hl7``) whose ``original`` is ``raw``. Never raises (given a
        ``count_subject`` that does not)."""
        subjects: list[str] = []
        try:
            lines, visit = self._convert(raw, subjects)
            if visit is not None and self._count_subject is not None:
                self._count_subject(HOSPITAL_SOURCE_PREFIX + visit.facility, visit.subject.linked)
            return lines
        except _Reject as exc:
            return DeadLetter(DeadLetterKind.HL7, redact(exc.reason, subjects), exc.path, origin, raw)
        except Exception as exc:  # a parser surprise must not stop a worker
            reason = f"not a readable HL7 v2 message ({type(exc).__name__})"
            return DeadLetter(DeadLetterKind.HL7, reason, "", origin, raw)

    def _convert(self, raw: bytes, subjects: list[str]) -> tuple[list[bytes], _Visit | None]:
        message = _parse(raw)
        enc = message.encoding_chars
        read = _Reader(enc)
        msh = _segment(message, "MSH")
        assert msh is not None
        message_type = read.component(msh, "msh_9", 1)
        trigger = read.component(msh, "msh_9", 2) or read.component(_segment(message, "EVN"), "evn_1", 1)
        if message_type != "ADT":
            raise _Reject("MSH-9", f"MSH-9: message type {message_type or '(empty)'!r} is not ADT")
        # A message cut off inside MSH still parses; its header is checked before a trigger
        # we do not use is taken as "nothing to publish", so the cut is a dead letter.
        if not trigger:
            raise _Reject("MSH-9", "MSH-9: trigger event is missing")
        if not _TRIGGER.match(trigger):
            raise _Reject("MSH-9", f"MSH-9: trigger event {trigger[:10]!r} is not an HL7 trigger code (a letter and two digits)")
        if not read.component(msh, "msh_10", 1):
            raise _Reject("MSH-10", "MSH-10: message control id is missing")
        if trigger not in SUPPORTED_TRIGGERS:
            return [], None
        visit = self._visit(message, read, trigger, subjects)
        if visit.setting is None:
            return [], None
        return [self._event(message, read, visit)], visit

    def _visit(self, message: Any, read: _Reader, trigger: str, subjects: list[str]) -> _Visit:
        msh = _segment(message, "MSH")
        pid = _segment(message, "PID")
        pv1 = _segment(message, "PV1")
        control_id = read.component(msh, "msh_10", 1)
        if not control_id:
            raise _Reject("MSH-10", "MSH-10: message control id is missing")
        facility = slug(read.component(msh, "msh_4", 1)) or slug(self._options.facility or "")
        if not facility:
            raise _Reject("MSH-4", "MSH-4: sending facility is missing and no default facility is configured")
        identifiers = []
        for rep in read.repetitions(pid, "pid_3"):
            namespace, universal, universal_type = read.subcomponents(rep, 4, 3)
            identifiers.append(
                PersonIdentifier.from_hl7(read.of(rep, 1), namespace, universal, universal_type, read.of(rep, 5))
            )
        subjects += [identifier.value for identifier in identifiers]
        chosen = choose_subject(identifiers, self._options.linking_systems, HOSPITAL_SOURCE_PREFIX + facility)
        if chosen is None:
            raise _Reject("PID-3", "PID-3: patient identifier is missing")
        subjects.append(chosen.value)
        if pv1 is None:
            raise _Reject("PV1", "PV1: patient visit segment is missing")
        visit = read.component(pv1, "pv1_19", 1) or read.component(pid, "pid_18", 1)
        if not visit:
            raise _Reject("PV1-19", "PV1-19: visit number is missing (and PID-18 account number is empty)")
        patient_class = read.component(pv1, "pv1_2", 1).upper()
        patient_type = read.component(pv1, "pv1_18", 1).upper()
        if not patient_class and trigger in ("A01", "A03"):
            raise _Reject("PV1-2", "PV1-2: patient class is missing")
        setting = _setting(patient_class, patient_type) if patient_class else "inpatient"
        services = [read.component(pv1, "pv1_10", 1)]
        diagnoses = [(read.component(dg1, "dg1_3", 1), read.component(dg1, "dg1_15", 1))
                     for dg1 in message.children.get("DG1") or []]  # fmt: skip
        principal = [code for code, priority in diagnoses if priority == "1"]
        codes = principal or [code for code, _ in diagnoses]
        psychiatric = self._options.is_psychiatric(services, codes)
        return _Visit(trigger, control_id, facility, chosen, visit, setting, psychiatric)

    def _event(self, message: Any, read: _Reader, visit: _Visit) -> bytes:
        msh = _segment(message, "MSH")
        evn = _segment(message, "EVN")
        pv1 = _segment(message, "PV1")
        default_tz: tzinfo = self._tz
        msh_7 = read.component(msh, "msh_7", 1)
        msh_7_match = _DTM.match(msh_7)
        if msh_7_match and msh_7_match.group("tz"):
            # HL7: a time without an offset is in the sender's zone, which MSH-7 may state.
            default_tz = _hl7_time(msh_7, "MSH-7", default_tz).tzinfo or default_tz
        candidates: list[tuple[str, str]] = [("EVN-6", read.component(evn, "evn_6", 1))]
        if visit.trigger == "A01":
            candidates.append(("PV1-44", read.component(pv1, "pv1_44", 1)))
        elif visit.trigger == "A03":
            candidates.append(("PV1-45", read.component(pv1, "pv1_45", 1)))
        candidates += [("EVN-2", read.component(evn, "evn_2", 1)), ("MSH-7", msh_7)]
        times = [(path, _hl7_time(value, path, default_tz)) for path, value in candidates if value]
        if not times:
            raise _Reject("EVN-6", "EVN-6, EVN-2 and MSH-7: no event time in the message")
        time = times[0][1]
        source = HOSPITAL_SOURCE_PREFIX + visit.facility
        extensions = {"hl7controlid": visit.control_id, "hl7trigger": visit.trigger}
        base: dict[str, Any] = {"source": source, "time": time, "subject": visit.subject.value, **extensions}
        if visit.trigger == "A01":
            data = {"encounter_id": visit.visit, "facility": visit.facility, "setting": visit.setting,
                    "psychiatric": visit.psychiatric}  # fmt: skip
            return cloud_event(event_id=f"{visit.visit}:A01", event_type="admission", data=data, **base)
        if visit.trigger == "A03":
            data = {"encounter_id": visit.visit, "facility": visit.facility, "setting": visit.setting,
                    "psychiatric": visit.psychiatric,
                    "disposition": _disposition(read.component(pv1, "pv1_36", 1))}  # fmt: skip
            return cloud_event(event_id=f"{visit.visit}:A03", event_type="discharge", data=data, **base)
        target, what = ("A01", "admit") if visit.trigger == "A11" else ("A03", "discharge")
        data = {"cancels": f"{visit.visit}:{target}", "reason": f"HL7 {visit.trigger} cancel {what}"}
        return cloud_event(
            event_id=f"{visit.visit}:{visit.trigger}:{visit.control_id}", event_type="cancel", data=data, **base
        )


def sent_time(message: bytes, default_tz: tzinfo) -> datetime | None:
    """When a message was sent: MSH-7, read without parsing the message (for ordering files
    in ``pathwatch replay``). ``None`` when there is no MSH or MSH-7 is not a valid time; an
    MSH-7 without an offset is in ``default_tz``."""
    text = message.lstrip(b"\x0b \t\r\n").decode("latin-1")
    if not text.startswith("MSH") or len(text) < 8:
        return None
    field_sep, component_sep = text[3], text[4]
    fields = _SEGMENT_BREAK.split(text, maxsplit=1)[0].split(field_sep)
    if len(fields) < 7:
        return None
    try:
        return _hl7_time(fields[6].split(component_sep)[0].strip(), "MSH-7", default_tz)
    except _Reject:
        return None


def _parse(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # HL7 v2's usual 8-bit charset; MSH-18 is rarely right anyway
    text = text.replace(_MLLP_START, "").replace(_MLLP_END, "").strip("\r\n \t")
    text = "\r".join(line for line in _SEGMENT_BREAK.split(text) if line.strip())
    if not text.startswith("MSH"):
        raise _Reject("MSH", "not an HL7 v2 message: it does not start with an MSH segment")
    if text.count("\rMSH") > 0:
        raise _Reject("MSH", "more than one HL7 message: split the file into messages first")
    try:
        return parse_message(text, find_groups=False, validation_level=VALIDATION_LEVEL.TOLERANT)
    except UnsupportedVersion as exc:
        raise _Reject("MSH-12", f"MSH-12: {exc}") from exc
    except (InvalidName, InvalidEncodingChars) as exc:
        raise _Reject("", f"not a readable HL7 v2 message: {exc}") from exc


def _segment(message: Any, name: str) -> Any:
    found = message.children.get(name)
    return found[0] if found else None


class _Reader:
    """Reads components of hl7apy fields by position, unescaped; '' when absent."""

    def __init__(self, enc: dict[str, str]) -> None:
        self._component_sep = enc["COMPONENT"]
        self._subcomponent_sep = enc["SUBCOMPONENT"]
        self._escape = enc["ESCAPE"]
        self._unescape: dict[str, str] = {
            "F": enc["FIELD"], "S": enc["COMPONENT"], "T": enc["SUBCOMPONENT"], "R": enc["REPETITION"],
            "E": enc["ESCAPE"],
        }  # fmt: skip

    def repetitions(self, segment: Any, field: str) -> list[Any]:
        if segment is None:
            return []
        try:
            return list(getattr(segment, field))
        except Exception:  # hl7apy raises ChildNotFound for fields a version does not define
            return []

    def component(self, segment: Any, field: str, index: int) -> str:
        reps = self.repetitions(segment, field)
        return self.of(reps[0], index) if reps else ""

    def of(self, field: Any, index: int) -> str:
        for child in getattr(field, "children", []) or []:
            suffix = str(child.name or "").rpartition("_")[2]
            if suffix.isdigit() and int(suffix) == index:
                return self._clean(child.to_er7())
        if index == 1:
            return self._clean(field.to_er7().split(self._component_sep)[0])
        return ""

    def subcomponents(self, field: Any, index: int, count: int) -> list[str]:
        """The first ``count`` subcomponents of component ``index`` (e.g. CX.4's HD), '' when absent."""
        raw = ""
        for child in getattr(field, "children", []) or []:
            suffix = str(child.name or "").rpartition("_")[2]
            if suffix.isdigit() and int(suffix) == index:
                raw = child.to_er7()
                break
        parts = [self._unescaped(part.strip()) for part in raw.split(self._subcomponent_sep)]
        return (parts + [""] * count)[:count]

    def _unescaped(self, text: str) -> str:
        if self._escape in text:
            for code, char in self._unescape.items():
                text = text.replace(f"{self._escape}{code}{self._escape}", char)
        return text

    def _clean(self, text: str) -> str:
        text = text.split(self._component_sep)[0] if self._component_sep in text else text
        if self._escape in text:
            for code, char in self._unescape.items():
                text = text.replace(f"{self._escape}{code}{self._escape}", char)
        return text.strip()


def _setting(patient_class: str, patient_type: str) -> str | None:
    if patient_class == "I":
        return "observation" if patient_type in _OBSERVATION_TYPES else "inpatient"
    if patient_class in _OBSERVATION_TYPES or patient_type in _OBSERVATION_TYPES:
        return "observation"
    return None


def _disposition(code: str) -> str:
    if not code:
        raise _Reject("PV1-36", "PV1-36: discharge disposition is missing")
    if code in DISPOSITIONS:
        return DISPOSITIONS[code]
    if code.zfill(2) in DISPOSITIONS:
        return DISPOSITIONS[code.zfill(2)]
    if code.lower() in _OWN_DISPOSITIONS:
        return code.lower()
    raise _Reject(
        "PV1-36",
        f"PV1-36: discharge disposition {code[:20]!r} is not a known code "
        "(UB-04 discharge status such as 01 home, 02 acute transfer, 07 against advice, 20 died)",
    )


def _hl7_time(value: str, path: str, default_tz: tzinfo) -> datetime:
    """An HL7 DTM (at least to the day) as an aware datetime; offset-less times take ``default_tz``."""
    match = _DTM.match(value)
    bad = _Reject(path, f"{path}: {value[:30]!r} is not a valid HL7 date/time (YYYYMMDD[HHMM[SS[.S]]][+/-ZZZZ])")
    if not match:
        raise bad
    parts = match.groupdict()
    try:
        offset = parts["tz"]
        if offset:
            sign = -1 if offset[0] == "-" else 1
            hours, minutes = int(offset[1:3]), int(offset[3:5])
            if hours > 23 or minutes > 59:
                raise ValueError(offset)
            zone: tzinfo = timezone(sign * timedelta(hours=hours, minutes=minutes))
        else:
            zone = default_tz
        return datetime(
            int(parts["y"]), int(parts["mo"]), int(parts["d"]), int(parts["h"] or 0), int(parts["mi"] or 0),
            int(parts["s"] or 0), int((parts["f"] or "0").ljust(6, "0")), tzinfo=zone,
        )  # fmt: skip
    except ValueError as exc:
        raise bad from exc

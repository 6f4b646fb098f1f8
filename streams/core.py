"""The pure measure core, stage 1: one client's history in, observations and care-gap alerts out.

Drivers (the in-process replay :mod:`streams.engine` and the live faust workers) call
:func:`step` for every validated event of a client and :func:`sweep` when the client is due
(:func:`next_due`); neither holds business rules. No clock, broker or I/O is read here.

How outcomes are derived (decisions, DOMAIN.md sections 2 to 4)
---------------------------------------------------------------
* Time is integer microseconds (UTC) inside the core; local days come from
  :class:`streams.calendar.Calendar`.
* The client's de-duplicated events within the horizon are kept sorted by
  (time, source, id). Every outcome is a pure function of that history *as of* an instant
  ``x``: an event is visible at ``x`` when its time is before ``x`` and it has not been
  cancelled by a cancel whose time is before ``x`` (a cancel takes effect at its own time,
  whichever arrived first). Because on-time events (time >= watermark on arrival) can only
  become visible after the watermark, the outcomes seen at any watermark do not depend on
  arrival order.
* Outputs change only at breakpoints (an event or cancel becoming visible, a window closing, a
  target passing, a scheduled alert end). When the watermark advances, the core evaluates every
  breakpoint it crosses in order, so the sequence of emitted values per observation key, and
  with it the number of corrections, is the same for any arrival order within the allowed
  lateness. A late event (time before the point already evaluated) re-evaluates the present
  and its revisions are flagged as corrections.
* Observations are emitted when final (the watermark passes the end of their window, or for
  seen / waits / first contact when the deciding contact is visible). Any later emission for
  the same key is a correction (``correction=True``); an observation whose index event no
  longer exists is retracted (``retracted=True``, also a correction). When a revision moves an
  observation to another team, the core first retracts it from the old team with
  ``correction=False`` (bookkeeping for per-team stage 2) and then emits it for the new team
  with ``correction=True``: one correction.
* Care-gap alerts are evaluated as of the alert clock (the watermark in replay). ``startsAt`` is
  the deadline instant (FollowUpDue end of local day d+2, FollowUpMissed end of d+7,
  ReferralWaiting the target instant, FrequentCrisis the crisis that reaches K,
  Readmitted30d the admission); ``endsAt`` the resolving event's time, or the instant the
  condition ends (Readmitted30d 7 days after it fires, FrequentCrisis when the oldest crisis
  of the run leaves the D-day window). A fired alert whose condition vanishes because of a
  late event or a cancel resolves at max(startsAt, that event's time); it is kept as the
  episode it was (``EmittedAlert.cut_at``), so an overlapping episode of the same identity
  continues it. FollowUpDue fires only when neither a follow-up nor an inpatient admission
  came by its deadline; FollowUpMissed only when the discharge is in the followup_7d
  denominator and not in its numerator (a readmission by the end of d+7 prevents it).
  FollowUpDue and ReferralWaiting fire just after their deadline instant, so an event at
  that instant that ends them comes first and no zero-length alert is raised. Overlapping
  episodes of one identity (alertname, team, client, severity) merge into one instance. An unresolved FollowUpMissed stays firing; when its discharge leaves the horizon
  the core forgets it and emits nothing more for it.
* A window [d+a, d+b] closes at the end of local day d+b. An admission excludes a discharge
  from a follow-up denominator when its time is at or after the discharge and on a local day
  no later than d+b (before the close instant), and no follow-up in the window came strictly
  before it.
* Referral targets: emergency, contact time <= referral time + H hours (the target passes just
  after that instant); urgent / routine, contact local day no later than the Nth business day
  after the referral's local day (passes at the end of that day). "Open past the limit" means
  the watermark is after referral time + limit days.
* Responsible team at t: the event's own team, else the team of the latest referral or
  attended contact strictly before t (however long ago; no older than ``team_memory_days``
  when that is set), else ``unassigned``. When history is pruned, the latest such assignment
  among the pruned records is kept as one (time, team) pair (``ClientState.last_assigned_at``/``last_assigned_team``),
  so the answer does not depend on pruning and a client with nothing else left costs a few
  bytes.
* Cancels: a cancel whose target has not arrived is held; when the watermark passes the
  cancel's time (the target could no longer be on time) it becomes an ORPHAN_CANCEL dead
  letter. A repeat of an event identical to one held (same time, type and data) within the
  horizon changes nothing and yields a :class:`Duplicate` output so drivers can count it;
  one that differs is a re-issue (another version), which stands once a cancel is left for
  each version before it (:func:`_settle_versions`, docs/events.md).
* Bounded state: events older than the horizon (longest look-back + longest forward window +
  allowed lateness) are pruned, except that nothing after the earliest still-open referral
  is pruned (for at most ``max_referral_age_days``). A client with nothing left is ``None``.
"""

from __future__ import annotations

import bisect
import sys
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Final

import msgspec

from alerts.model import Alert
from schemas.catalogue import RATE_MEASURES
from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from schemas.model import (
    UNASSIGNED,
    Admission,
    Cancel,
    Contact,
    Crisis,
    Discharge,
    Event,
    ReferralClosed,
    ReferralReceived,
)
from streams.calendar import US_PER_DAY, US_PER_HOUR, Calendar, from_us, to_us

WAIT_MEASURES: Final[tuple[str, ...]] = ("referral_wait_days",)
MEASURES: Final[tuple[str, ...]] = RATE_MEASURES + WAIT_MEASURES

FOLLOWUP_WINDOWS: Final[tuple[tuple[str, int], ...]] = (
    ("followup_72h", 3),
    ("followup_7d", 7),
    ("followup_30d", 30),
)
READMISSION_DAYS: Final = 30
REPEAT_CRISIS_DAYS: Final = 30
FOLLOWUP_DUE_DAYS: Final = 2
FOLLOWUP_MISSED_DAYS: Final = 7
# history kept behind the longest window (was the team look-back's 90 days: kept as it was,
# so that cancels and late events reach as far back as before)
HISTORY_DAYS: Final = 90

_INELIGIBLE_DISPOSITIONS: Final = frozenset({"died", "acute_transfer", "nonacute_transfer", "prison_or_court"})
_FOLLOWUP_MODES: Final = frozenset({"face_to_face", "telephone", "video"})
_NEVER: Final = -(1 << 62)

_FULL_OBS: Final = 1
_FULL_ALERTS: Final = 2

# Record kinds
K_REFERRAL: Final = 0
K_CLOSED: Final = 1
K_CONTACT: Final = 2
K_CRISIS: Final = 3
K_ADMISSION: Final = 4
K_DISCHARGE: Final = 5
K_CANCEL: Final = 6


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """Everything the core needs to decide outcomes (from the settings:
    :func:`pathwatch.parts.core_config`).

    ``incremental``: re-derive only the index events a change can affect (the default);
    False re-derives everything at every breakpoint (slower, same outputs: tests compare the
    two)."""

    timezone: str = "UTC"
    holidays_country: str = "US"
    holidays_subdivision: str | None = None
    allowed_lateness: timedelta = timedelta(hours=72)
    window_days: int = 28
    referral_open_limit_days: int = 28
    target_emergency_hours: float = 4.0
    target_urgent_business_days: int = 1
    target_routine_business_days: int = 10
    frequent_crisis_k: int = 3
    frequent_crisis_days: int = 30
    readmitted_alert_days: int = 7
    team_memory_days: int | None = None  # None: the responsible team has no age limit
    max_referral_age_days: int = 365
    incremental: bool = True
    calendar: Calendar = field(init=False, compare=False, repr=False)
    lateness_us: int = field(init=False, compare=False, repr=False)
    horizon_us: int = field(init=False, compare=False, repr=False)
    expiry_us: int = field(init=False, compare=False, repr=False)
    max_referral_age_us: int = field(init=False, compare=False, repr=False)
    memory_us: int = field(init=False, compare=False, repr=False)
    targets: dict[tuple[str, int], int] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        from zoneinfo import ZoneInfo

        object.__setattr__(self, "targets", {})  # (urgency, local day) -> target instant

        object.__setattr__(
            self, "calendar", Calendar(ZoneInfo(self.timezone), self.holidays_country, self.holidays_subdivision)
        )
        lateness = self.allowed_lateness // timedelta(microseconds=1)
        object.__setattr__(self, "lateness_us", lateness)
        # how far behind the watermark an event can still change an outcome: the longest
        # look-back (the crisis windows; the history kept for late cancels and revisions,
        # ``HISTORY_DAYS``; the team look-up keeps its own pair, see ``ClientState.last_assigned_at``) plus
        # the longest forward window
        back = max(HISTORY_DAYS, REPEAT_CRISIS_DAYS, self.frequent_crisis_days)
        memory = (self.team_memory_days or 0) * US_PER_DAY
        object.__setattr__(self, "memory_us", memory if memory else 1 << 62)
        target = (self.target_routine_business_days * 7) // 5 + 14  # business days + holidays
        forward = max(READMISSION_DAYS + 1, self.referral_open_limit_days + 1, target, self.readmitted_alert_days)
        object.__setattr__(self, "horizon_us", (back + forward + 2) * US_PER_DAY + lateness)
        # a follow-up alert the data never ends expires when its discharge's outcomes are final
        # (the longest window, two days, the lateness): before its look-back can be pruned
        object.__setattr__(self, "expiry_us", (forward + 2) * US_PER_DAY + lateness)
        # a referral is followed (held open, its waiting alert kept) at most this long
        object.__setattr__(self, "max_referral_age_us", self.max_referral_age_days * US_PER_DAY)

    def final_lag_days(self, measure: str) -> int:
        """Calendar days after an index event's local day by which its outcome is final
        (used by stage 2 to tell which weeks are complete)."""
        if measure.startswith("followup_"):
            return dict(FOLLOWUP_WINDOWS)[measure]
        if measure == "readmission_30d":
            return READMISSION_DAYS
        if measure == "repeat_crisis_30d":
            return 0
        if measure == "seen_within_target":
            return (self.target_routine_business_days * 7) // 5 + 14
        return self.referral_open_limit_days + 1


class Clock:
    """The two clocks of a step: ``watermark`` decides measure finality, ``alert_clock`` when
    care-gap alerts fire (live: the wall clock; replay: the watermark). Kept in microseconds
    (``watermark_us``, ``alert_us``); the aware datetimes are made only when asked for, so a
    driver that moves the clock at every event builds none. Immutable."""

    __slots__ = ("watermark_us", "alert_us")

    watermark_us: int
    alert_us: int

    def __init__(self, watermark: datetime, alert_clock: datetime) -> None:
        self._set(to_us(watermark), to_us(alert_clock))

    def _set(self, watermark_us: int, alert_us: int) -> None:
        object.__setattr__(self, "watermark_us", watermark_us)
        object.__setattr__(self, "alert_us", alert_us)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Clock is immutable")

    @classmethod
    def at(cls, instant: datetime) -> Clock:
        """Both clocks at one instant (replay)."""
        t = to_us(instant)
        return cls.of_us(t, t)

    @classmethod
    def of_us(cls, watermark_us: int, alert_us: int) -> Clock:
        """The clocks at instants given in microseconds since the epoch (UTC)."""
        clock = object.__new__(cls)
        clock._set(watermark_us, alert_us)
        return clock

    @property
    def watermark(self) -> datetime:
        return from_us(self.watermark_us)

    @property
    def alert_clock(self) -> datetime:
        return from_us(self.alert_us)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Clock):
            return NotImplemented
        return self.watermark_us == other.watermark_us and self.alert_us == other.alert_us

    def __hash__(self) -> int:
        return hash((self.watermark_us, self.alert_us))

    def __repr__(self) -> str:
        return f"Clock(watermark={self.watermark.isoformat()}, alert_clock={self.alert_clock.isoformat()})"


class Observation(msgspec.Struct, frozen=True):
    """One measure observation for one index event (stage 1 -> stage 2).

    ``key`` is unique per index event and measure; stage 2 upserts by it. ``numerator`` is the
    outcome for rate measures (False for waits); ``wait_days`` is set for referral_wait_days.
    ``retracted``: the observation no longer exists (stage 2 removes ``key`` from ``team``).
    ``correction``: it revises an observation already emitted. ``stratum``: the index event's
    case-mix stratum (the referral's urgency; the crisis's setting; the discharge's
    disposition; docs/board.md), "" in observations written before strata existed.
    """

    measure: str
    key: str
    team: str
    index_time: datetime
    numerator: bool = False
    wait_days: float | None = None
    retracted: bool = False
    correction: bool = False
    stratum: str = ""

    def to_bytes(self) -> bytes:
        return _obs_encoder.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Observation:
        return _obs_decoder.decode(raw)


@dataclass(frozen=True, slots=True)
class Duplicate:
    """An event whose (source, id) was already seen: it changed nothing (drivers count it)."""

    source: str
    id: str


Output = Observation | Alert | DeadLetter | Duplicate

_obs_encoder = msgspec.msgpack.Encoder()
_obs_decoder = msgspec.msgpack.Decoder(Observation)


class Rec(msgspec.Struct, array_like=True):
    """One event of a client's history, flattened (an array on the wire: fields are stored by
    position, so renaming one changes nothing written).

    ``detail`` is what the kind needs of the event's status: a contact's status, a referral's
    urgency, a closure's reason. ``flag`` is the kind's yes/no: a contact counts as a follow-up,
    a discharge is eligible, an admission is inpatient, a cancel's target has arrived.
    ``cancelled_at`` is the time of the cancel that cancelled it (or ``_NEVER``); for a cancel
    record, ``ref`` is its target id. ``tag`` is the driver's opaque tag of the event (see
    :func:`step`; -1 when the driver gives none; the core never reads it). ``content_hash`` is
    a checksum of the event's type and data: with ``t`` it tells a re-issue of (src, id)
    (another version) from a repeat; ``version`` is the version's number among those of its
    (src, id), in arrival order; ``stands_from`` (a re-issue's) the instant from which it
    stands: the time of the cancel that made room for it (``_NEVER``: from its own time)."""

    t: int
    src: str
    id: str
    kind: int
    day: int
    team: str = ""
    ref: str = ""
    detail: str = ""
    flag: bool = False
    cancelled_at: int = _NEVER
    tag: int = -1
    content_hash: int = 0
    version: int = 0
    stands_from: int = _NEVER


class EmittedObs(msgspec.Struct, array_like=True):
    measure: str
    team: str
    t: int
    num: bool
    wait: float | None
    stratum: str = ""  # "": emitted before strata existed (not revised for a stratum alone)


class EmittedAlert(msgspec.Struct, array_like=True):
    name: str
    team: str
    severity: str
    start: int
    end: int | None
    summary: str
    description: str
    # the earliest event time the instance was derived from (its anchor's look-back); once the
    # history before it is pruned the instance is frozen (see ``ClientState.pruned_before``)
    context_start: int = _NEVER
    # an instance whose episode vanished while it fired (its index event cancelled, or a late
    # event undid it): the instant it was cut off. It still takes part in merging as the
    # episode [start, cut] it was, so an overlapping episode of the same labels continues it
    cut_at: int = _NEVER


class ClientState(msgspec.Struct, omit_defaults=True):
    """One client's stage-1 state. Serialise with :meth:`to_bytes` for a changelog table.

    Holds only the pseudonym ``client``, the de-duplicated history within the horizon (which
    is also the de-duplication key set), held cancels (cancel records whose target has not
    arrived), what has been emitted, and how far it has been evaluated. On the wire the
    fields keep the short names earlier versions wrote (``name=``), so stored states load.
    """

    client: str
    recs: list[Rec] = msgspec.field(default_factory=list)
    obs: dict[str, EmittedObs] = msgspec.field(default_factory=dict)
    alerts: dict[str, EmittedAlert] = msgspec.field(default_factory=dict)
    # the instants up to which observations (by the watermark) and care-gap alerts (by the
    # alert clock) have been evaluated
    obs_until: int = msgspec.field(default=_NEVER, name="mw")
    alerts_until: int = msgspec.field(default=_NEVER, name="aw")
    # when a sweep could next change something: ``due`` once the watermark (or, in replay, the
    # one clock) reaches it, ``alert_due`` once the alert clock does (see :func:`next_due`)
    due: int | None = None
    alert_due: int | None = msgspec.field(default=None, name="adue")
    # no pruning before this instant (an open or recently decided referral holds its history)
    prune_hold: int = msgspec.field(default=_NEVER, name="hold")
    # what the next evaluation re-derives in full (``_FULL_OBS``, ``_FULL_ALERTS``): set
    # after pruning, when what remains may have depended on what went
    rederive: int = msgspec.field(default=0, name="full")
    # the breakpoints after min(obs_until, alerts_until), sorted and unique, as of the last
    # evaluation; None: unknown (a new or changed history, or a state written before this
    # field), re-listed
    pending: list[int] | None = msgspec.field(default=None, name="pend")
    # history before this instant has been pruned: an index event whose look-back reaches
    # before it (see :func:`_context_start`) is no longer re-derived; what it emitted stands
    pruned_before: int = msgspec.field(default=_NEVER, name="kept")
    # the latest referral or attended contact among the pruned history: its time and team
    # (the responsible-team look-up falls back on it; ``_NEVER``: none)
    last_assigned_at: int = msgspec.field(default=_NEVER, name="lt")
    last_assigned_team: str = msgspec.field(default="", name="lteam")

    def to_bytes(self) -> bytes:
        return _state_encoder.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ClientState:
        return _state_decoder.decode(raw)


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(ClientState)


def _sort_key(r: Rec) -> tuple[int, str, str]:
    return (r.t, r.src, r.id)


# ---------------------------------------------------------------------------------------------
# Turning events into records


def _record(event: Event, cal: Calendar) -> Rec:
    rec = _flatten(event, cal)
    rec.content_hash = zlib.crc32(_content_encoder.encode((event.type, event.data)))
    return rec


_content_encoder = msgspec.msgpack.Encoder()


def _flatten(event: Event, cal: Calendar) -> Rec:
    t = to_us(event.time)
    day = cal.day_of(t)
    d = event.data
    if isinstance(d, Contact):
        followup = d.status == "attended" and d.mode in _FOLLOWUP_MODES
        return Rec(t, event.source, event.id, K_CONTACT, day, d.team, d.referral_id or "", d.status, followup)
    if isinstance(d, Discharge):
        eligible = d.setting == "inpatient" and d.psychiatric and d.disposition not in _INELIGIBLE_DISPOSITIONS
        return Rec(t, event.source, event.id, K_DISCHARGE, day, d.team or "", "", d.disposition, eligible)
    if isinstance(d, Admission):
        return Rec(t, event.source, event.id, K_ADMISSION, day, "", "", "", d.setting == "inpatient")
    if isinstance(d, ReferralReceived):
        return Rec(t, event.source, event.id, K_REFERRAL, day, d.team, d.referral_id, d.urgency)
    if isinstance(d, ReferralClosed):
        return Rec(t, event.source, event.id, K_CLOSED, day, "", d.referral_id, d.reason)
    if isinstance(d, Crisis):
        return Rec(t, event.source, event.id, K_CRISIS, day, d.team or "", "", d.setting)
    if isinstance(d, Cancel):
        return Rec(t, event.source, event.id, K_CANCEL, day, "", d.cancels)
    raise TypeError(f"unknown event data {type(d).__name__}")


# ---------------------------------------------------------------------------------------------
# Derivation as of an instant


def _visible(recs: list[Rec], x: int) -> list[Rec]:
    out = []
    for r in recs:
        if r.t >= x:
            break
        if r.kind != K_CANCEL and (r.cancelled_at == _NEVER or r.cancelled_at >= x) and r.stands_from < x:
            out.append(r)
    return out


_NO_TEAM: Final[tuple[int, str]] = (_NEVER, "")


def _responsible(vis: list[Rec], t: int, memory_us: int, last: tuple[int, str] = _NO_TEAM) -> str:
    """Team of the latest referral or attended contact strictly before ``t`` within memory,
    among the history held and ``last`` (the latest one of the pruned history, time and team)."""
    i = bisect.bisect_left(vis, t, key=lambda r: r.t) - 1
    floor = t - memory_us
    lt = last[0]
    while i >= 0:
        r = vis[i]
        if r.t < floor or r.t < lt:
            break  # (an event older than the pruned pair arrived late: the pair is later)
        if r.kind == K_REFERRAL or (r.kind == K_CONTACT and r.detail == "attended"):
            return r.team
        i -= 1
    if lt != _NEVER and floor <= lt < t:
        return last[1]
    return UNASSIGNED


def _context_start(r: Rec, config: CoreConfig) -> int:
    """The earliest event time the outcomes of index event ``r`` (observations and the alerts
    it anchors) can depend on: the crisis look-backs for a crisis. A referral looks only
    forward; the team look-up does not reach into pruned history (its latest answer there is
    kept, ``ClientState.last_assigned_at``)."""
    if r.kind == K_REFERRAL:
        return r.t
    back = 0
    if r.kind == K_CRISIS:
        back = max(back, REPEAT_CRISIS_DAYS * US_PER_DAY, config.frequent_crisis_days * US_PER_DAY)
    return r.t - back


def _frozen(r: Rec, kept: int, config: CoreConfig) -> bool:
    """Whether index event ``r`` is past re-deriving: it was in the history when the part of
    its look-back before ``kept`` was pruned, so a derivation now would see less than the
    one whose outputs stand (a crisis would lose its earlier crisis, a discharge its team).
    An event dated before ``kept`` arrived after that pruning: it is derived from what is held."""
    return r.t >= kept > _context_start(r, config)


@dataclass(slots=True)
class _Referral:
    rec: Rec
    target_pass: int
    target_label: int
    closure: Rec | None
    first: Rec | None
    seen: Rec | None


def _target(r: Rec, config: CoreConfig) -> tuple[int, int]:
    """(instant from which the target has passed, instant shown as the target)."""
    if r.detail == "emergency":
        deadline = r.t + int(config.target_emergency_hours * US_PER_HOUR)
        return deadline + 1, deadline
    key = (r.detail, r.day)
    eod = config.targets.get(key)
    if eod is None:
        n = config.target_urgent_business_days if r.detail == "urgent" else config.target_routine_business_days
        eod = config.calendar.end_of_day(config.calendar.add_business_days(r.day, n))
        config.targets[key] = eod
    return eod, eod


def _referral(r: Rec, vis: list[Rec], config: CoreConfig) -> _Referral:
    closure = None
    for c in vis:
        if c.kind == K_CLOSED and c.ref == r.ref and c.t >= r.t:
            closure = c
            break
    first = seen = None
    limit = closure.t if closure is not None else None
    for c in vis:
        if c.kind != K_CONTACT or c.t < r.t:
            continue
        if limit is not None and c.t > limit:
            break
        if c.detail == "cancelled" or (c.team != r.team and c.ref != r.ref):
            continue
        if first is None:
            first = c
        if c.detail == "attended":
            seen = c
            break
    tp, tl = _target(r, config)
    return _Referral(r, tp, tl, closure, first, seen)


# (measure, team, index time, numerator, wait, stratum)
ObsValue = tuple[str, str, int, bool, float | None, str]


def _key(measure: str, r: Rec) -> str:
    return f"{measure}\x1f{r.src}\x1f{r.id}"


def derive_observations(
    recs: list[Rec], x: int, config: CoreConfig, kept: int = _NEVER, frozen: set[str] | None = None,
    last: tuple[int, str] = _NO_TEAM,
) -> dict[str, ObsValue]:
    """Every observation that exists as of instant ``x`` (final outcomes only), by key.

    Index events :func:`_frozen` by ``kept`` are skipped; their observation keys are added to
    ``frozen`` when given (what was emitted for them stands). ``last``: the pruned history's
    latest team assignment (:func:`_responsible`)."""
    vis = _visible(recs, x)
    memory = config.memory_us
    out: dict[str, ObsValue] = {}
    for r in vis:
        kind = r.kind
        if kind in (K_REFERRAL, K_CRISIS) or (kind == K_DISCHARGE and r.flag):
            if kept != _NEVER and _frozen(r, kept, config):
                if frozen is not None:
                    frozen.update(_key(m, r) for m in _MEASURES_OF[kind])
                continue
            _observations_of(r, vis, x, config, memory, out, last)
    return out


def _observations_of(
    r: Rec, vis: list[Rec], x: int, config: CoreConfig, memory: int, out: dict[str, ObsValue],
    last: tuple[int, str] = _NO_TEAM,
) -> None:
    """The observations of one visible index event ``r`` as of ``x``, added to ``out``."""
    kind = r.kind
    if kind == K_DISCHARGE:
        cal = config.calendar
        d = r.day
        team = r.team or _responsible(vis, r.t, memory, last)
        start = cal.end_of_day(d)
        for measure, b in FOLLOWUP_WINDOWS:
            close = cal.end_of_day(d + b)
            if x < close:
                break
            fu = adm = None
            for c in vis:
                if c.t >= close:
                    break
                if fu is None and c.kind == K_CONTACT and c.flag and c.t >= start:
                    fu = c
                elif adm is None and c.kind == K_ADMISSION and c.flag and c.t >= r.t:
                    adm = c
            excluded = adm is not None and not (fu is not None and fu.t < adm.t)
            if not excluded:
                out[_key(measure, r)] = (measure, team, r.t, fu is not None, None, r.detail)
        close = cal.end_of_day(d + READMISSION_DAYS)
        if x >= close:
            readmitted = any(
                c.kind == K_ADMISSION and c.flag and start <= c.t < close for c in vis
            )
            out[_key("readmission_30d", r)] = ("readmission_30d", team, r.t, readmitted, None, r.detail)
    elif kind == K_REFERRAL:
        ref = _referral(r, vis, config)
        team = r.team
        seen = ref.seen
        if seen is not None:
            out[_key("seen_within_target", r)] = (
                "seen_within_target", team, r.t, seen.t < ref.target_pass, None, r.detail
            )
            # days to two decimals, exact halves up, from whole microseconds (no float rounding)
            wait = ((seen.t - r.t) * 100 + US_PER_DAY // 2) // US_PER_DAY / 100
            out[_key("referral_wait_days", r)] = ("referral_wait_days", team, r.t, False, wait, r.detail)
            out[_key("lost_before_contact", r)] = ("lost_before_contact", team, r.t, False, None, r.detail)
        else:
            if x >= ref.target_pass:
                out[_key("seen_within_target", r)] = ("seen_within_target", team, r.t, False, None, r.detail)
            open_limit = r.t + config.referral_open_limit_days * US_PER_DAY
            if ref.closure is not None:
                # unseen and open past the limit is lost; only a contact revises that, not a
                # later closure as seen (DOMAIN.md section 3)
                lost = ref.closure.detail != "seen" or ref.closure.t > open_limit
                out[_key("lost_before_contact", r)] = ("lost_before_contact", team, r.t, lost, None, r.detail)
            elif x > open_limit:
                out[_key("lost_before_contact", r)] = ("lost_before_contact", team, r.t, True, None, r.detail)
        if ref.first is not None:
            out[_key("first_contact_dna", r)] = (
                "first_contact_dna", team, r.t, ref.first.detail == "did_not_attend", None, r.detail
            )
    elif kind == K_CRISIS:
        team = r.team or _responsible(vis, r.t, memory, last)
        floor = r.t - REPEAT_CRISIS_DAYS * US_PER_DAY
        repeat = any(c.kind == K_CRISIS and floor <= c.t < r.t for c in vis)
        out[_key("repeat_crisis_30d", r)] = ("repeat_crisis_30d", team, r.t, repeat, None, r.detail)


@dataclass(slots=True)
class _Episode:
    name: str
    team: str
    severity: str
    start: int
    end: int | None  # known end as of x, else None
    text: tuple[int, ...]  # what :func:`_texts` needs; the text is built only when emitted
    context_start: int  # the earliest event time it depends on (its anchor's :func:`_context_start`)
    frozen: EmittedAlert | None = None  # an emitted instance kept as it stands (pruned context)


def _day(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


_URGENCIES: Final = ("emergency", "urgent", "routine")


def _texts(e: _Episode, config: CoreConfig) -> tuple[str, str]:
    """The (summary, description) annotations of an alert episode."""
    name, team, text = e.name, e.team, e.text
    if name == "FollowUpDue":
        d = text[0]
        return (
            "No follow-up 72 hours after psychiatric discharge",
            f"Discharged {_day(d)}; follow-up was due by the end of {_day(d + 2)}; team {team}.",
        )
    if name == "FollowUpMissed":
        d = text[0]
        return (
            "No follow-up within 7 days of psychiatric discharge",
            f"Discharged {_day(d)}; no follow-up by the end of {_day(d + 7)}; team {team}.",
        )
    if name == "Readmitted30d":
        return (
            "Readmitted within 30 days of psychiatric discharge",
            f"Discharged {_day(text[0])}; admitted {_day(text[1])}; team {team}.",
        )
    if name == "ReferralWaiting":
        day, label, urgency = text
        target = from_us(label).astimezone(config.calendar.tz)
        return (
            f"{_URGENCIES[urgency].capitalize()} referral not seen by its target",
            f"Referred {_day(day)}; target {target:%Y-%m-%d %H:%M}; team {team}.",
        )
    return (
        f"{config.frequent_crisis_k} crises within {config.frequent_crisis_days} days",
        f"Latest crisis {_day(text[0])}; team {team}.",
    )


def derive_alerts(
    recs: list[Rec], x: int, config: CoreConfig, kept: int = _NEVER, emitted: dict[str, EmittedAlert] | None = None,
    assigned: tuple[int, str] = _NO_TEAM,
) -> dict[str, _Episode]:
    """Care-gap alert instances as of instant ``x`` (merged per identity), by instance key.

    Episodes anchored on an index event :func:`_frozen` by ``kept`` are not derived; instead the
    ``emitted`` instances whose context was pruned take part as they stand."""
    vis = _visible(recs, x)
    episodes: list[_Episode] = []
    crises: list[Rec] = []
    pruned = kept != _NEVER
    if emitted:
        # instances whose context was pruned take part as they stand; cut-off ones as they were
        episodes.extend(
            _Episode(e.name, e.team, e.severity, e.start, e.end if frozen else e.cut_at, (), e.context_start, e)
            for e in emitted.values()
            for frozen in (pruned and e.context_start < kept,)
            if frozen or e.cut_at != _NEVER
        )
    for r in vis:
        kind = r.kind
        if pruned and kind != K_CRISIS and _frozen(r, kept, config):
            continue
        if kind == K_DISCHARGE and r.flag:
            episodes.extend(_discharge_episodes(r, vis, x, config, assigned))
        elif kind == K_REFERRAL:
            episodes.extend(_referral_episodes(r, recs, x, config))
        elif kind == K_CRISIS:
            crises.append(r)
    episodes.extend(_crisis_episodes(crises, vis, x, config, kept, emitted, assigned))
    return _merge(episodes, x)


def _discharge_episodes(r: Rec, vis: list[Rec], x: int, config: CoreConfig, assigned: tuple[int, str]) -> list[_Episode]:
    """FollowUpDue, FollowUpMissed and Readmitted30d of one eligible discharge, as of ``x``."""
    cal = config.calendar
    memory = config.memory_us
    episodes: list[_Episode] = []
    ctx = _context_start(r, config)
    expiry = r.t + config.expiry_us
    d = r.day
    team = r.team or _responsible(vis, r.t, memory, assigned)
    start = cal.end_of_day(d)
    due = cal.end_of_day(d + FOLLOWUP_DUE_DAYS)
    # fires just after its deadline instant, so that what happens at that very instant
    # is seen first: a follow-up or admission then ends it before it began (no alert)
    if x > due:
        blocked = False
        end = None
        for c in vis:
            is_fu = c.kind == K_CONTACT and c.flag and c.t >= start
            is_adm = c.kind == K_ADMISSION and c.flag and c.t >= r.t
            if not (is_fu or is_adm):
                continue
            if c.t <= due:
                blocked = True
            else:
                end = c.t
            break
        if not blocked:
            episodes.append(
                _Episode("FollowUpDue", team, "warning", due, _expire(end, expiry, x), (d,), ctx)
            )
    missed = cal.end_of_day(d + FOLLOWUP_MISSED_DAYS)
    if x >= missed:
        blocked = any(
            c.t < missed
            and (
                (c.kind == K_CONTACT and c.flag and c.t >= start)
                or (c.kind == K_ADMISSION and c.flag and c.t >= r.t)
            )
            for c in vis
        )
        if not blocked:
            episodes.append(
                _Episode("FollowUpMissed", team, "critical", missed, _expire(None, expiry, x), (d,), ctx)
            )
    close = cal.end_of_day(d + READMISSION_DAYS)
    span = config.readmitted_alert_days * US_PER_DAY
    for c in vis:
        if c.kind == K_ADMISSION and c.flag and start <= c.t < close:
            end_at = c.t + span
            episodes.append(
                _Episode("Readmitted30d", team, "warning", c.t, end_at if end_at <= x else None, (d, c.day), ctx)
            )
    return episodes


def _referral_episodes(r: Rec, recs: list[Rec], x: int, config: CoreConfig) -> list[_Episode]:
    """ReferralWaiting of one referral, as of ``x``."""
    episodes: list[_Episode] = []
    target_pass, target_label = _target(r, config)
    if x <= target_pass:
        return []  # as FollowUpDue: a contact at the instant the target passes comes first
    severity = "critical" if r.detail == "emergency" else "warning"
    urgency = _URGENCIES.index(r.detail)
    expiry = r.t + config.max_referral_age_us
    for start, end_t in _waiting(r, recs, target_pass, target_label, x):
        if x >= expiry and start >= expiry:
            break
        if end_t is not None and end_t <= max(start, target_pass):
            continue  # ended by the time it would fire: it never fires
        episodes.append(
            _Episode(
                "ReferralWaiting", r.team, severity, start, _expire(end_t, expiry, x),
                (r.day, target_label, urgency), r.t,
            )
        )
    return episodes


def _crisis_episodes(
    crises: list[Rec], vis: list[Rec], x: int, config: CoreConfig, kept: int,
    emitted: dict[str, EmittedAlert] | None, assigned: tuple[int, str],
) -> list[_Episode]:
    """FrequentCrisis runs over the visible crises, as of ``x``."""
    memory = config.memory_us
    pruned = kept != _NEVER
    episodes: list[_Episode] = []
    k = config.frequent_crisis_k
    span = config.frequent_crisis_days * US_PER_DAY
    # A run (the count at K or more without a break) keeps the team of the crisis that started
    # it: "resolves: count falls below K", whichever teams the later crises of the run name.
    run_end: int | None = None
    run_team: str | None = None
    run_ctx = 0
    for i in range(k - 1, len(crises)):
        first, last = crises[i - k + 1], crises[i]
        if last.t - first.t >= span:
            continue
        end_at = first.t + span
        frozen = pruned and _frozen(last, kept, config)
        ctx = _context_start(last, config)
        if run_end is not None and last.t <= run_end:
            run_end = max(run_end, end_at)
        else:
            run_end = end_at
            # a run started by a crisis past re-deriving keeps the team of the instance it
            # raised (as emitted); its later crises do not start instances of their own teams
            run_team = _run_team(emitted, last.t) if frozen else last.team or _responsible(vis, last.t, memory, assigned)
            run_ctx = ctx
        if frozen:
            continue
        if run_team is not None:
            team, ctx = run_team, min(run_ctx, ctx)
        else:
            team = last.team or _responsible(vis, last.t, memory, assigned)
        episodes.append(
            _Episode("FrequentCrisis", team, "warning", last.t, end_at if end_at <= x else None, (last.day,), ctx)
        )
    return episodes


def _run_team(emitted: dict[str, EmittedAlert] | None, t: int) -> str | None:
    """The team of the emitted FrequentCrisis instance in force at ``t`` (the latest to start
    at or before it, if it had not ended before it); None when there is none."""
    found: EmittedAlert | None = None
    for e in (emitted or {}).values():
        if (
            e.name == "FrequentCrisis"
            and e.start <= t
            and (e.end is None or e.end >= t)
            and (found is None or e.start > found.start)
        ):
            found = e
    return None if found is None else found.team


def _waiting(r: Rec, recs: list[Rec], target_pass: int, target_label: int, x: int) -> list[tuple[int, int | None]]:
    """When referral ``r`` waited past its target, as it was known at each instant before
    ``x``: (start, end or None) intervals. An attended contact of the referral or its closure
    ends the wait from its time while it stands; if it is cancelled, the wait resumes at the
    cancel's time (a new alert instance: the client is unseen after all). The first interval
    starts at the target (shown as ``target_label``)."""
    settled: list[tuple[int, int | None]] = []  # (a, b): settled for instants in (a, b]
    for c in recs:
        if c.t >= x:
            break
        if c.t < r.t:
            continue
        if _ends_wait(r, c):
            stood = max(c.t, c.stands_from)  # a re-issue stands from the cancel that made room for it
            if (c.cancelled_at != _NEVER and c.cancelled_at <= stood) or stood >= x:
                continue  # cancelled by a cancel dated at or before it: it never stood
            settled.append((stood, c.cancelled_at if c.cancelled_at != _NEVER and c.cancelled_at < x else None))
    out: list[tuple[int, int | None]] = []
    start: int | None = target_pass
    label = target_label
    for a, b in sorted(settled, key=lambda ab: ab[0]):
        if start is None:
            break
        if b is not None and b <= start:
            continue  # settled and unsettled again before the wait (re)started
        if a >= start:
            out.append((label, a))
        if b is None:
            start = None
        else:
            start = label = b
    if start is not None:
        out.append((label, None))
    return out


def _expire(end: int | None, expiry: int, x: int) -> int | None:
    """An episode's end, no later than ``expiry`` once ``x`` has reached it: a follow-up alert
    ends when its discharge's outcomes are final (``CoreConfig.expiry_us``), a waiting alert
    when its referral is no longer followed (``max_referral_age_days``), whatever ends it
    later. (Without it they would fire for as long as the history is held.)"""
    if x >= expiry and (end is None or end > expiry):
        return expiry
    return end


def _merge(episodes: list[_Episode], x: int) -> dict[str, _Episode]:
    groups: dict[tuple[str, str, str], list[_Episode]] = {}
    for e in episodes:
        groups.setdefault((e.name, e.team, e.severity), []).append(e)
    out: dict[str, _Episode] = {}
    for (name, team, severity), eps in groups.items():
        eps.sort(key=lambda e: e.start)
        cur: _Episode | None = None
        for e in eps:
            if cur is not None and (cur.end is None or e.start <= cur.end):
                if cur.end is not None:
                    cur.end = None if e.end is None else max(cur.end, e.end)
                cur.context_start = min(cur.context_start, e.context_start)
                continue
            if cur is not None:
                out[f"{name}\x1f{team}\x1f{severity}\x1f{cur.start}"] = cur
            cur = e  # episodes are fresh from derive_alerts: merging may change its end
        if cur is not None:
            out[f"{name}\x1f{team}\x1f{severity}\x1f{cur.start}"] = cur
    return out


# ---------------------------------------------------------------------------------------------
# Emission


def _emit_observations(state: ClientState, x: int, config: CoreConfig, outs: list[Output]) -> None:
    """Full re-derivation as of ``x``: emit every difference from what has been emitted."""
    frozen: set[str] = set()
    derived = derive_observations(state.recs, x, config, state.pruned_before, frozen, (state.last_assigned_at, state.last_assigned_team))
    emitted = state.obs
    _upsert_observations(emitted, derived, outs)
    if len(emitted) != len(derived) or any(k not in derived for k in emitted):
        for key in [k for k in emitted if k not in derived and k not in frozen]:
            old = emitted.pop(key)
            outs.append(Observation(old.measure, key, old.team, from_us(old.t), retracted=True, correction=True))


def _upsert_observations(emitted: dict[str, EmittedObs], derived: dict[str, ObsValue], outs: list[Output]) -> None:
    for key, (measure, team, t, num, wait, stratum) in derived.items():
        old = emitted.get(key)
        if (
            old is not None and old.team == team and old.num == num and old.wait == wait and old.t == t
            and (old.stratum == stratum or not old.stratum)
        ):
            continue
        index_time = from_us(t)
        correction = old is not None
        if old is not None and old.team != team:
            outs.append(Observation(measure, key, old.team, from_us(old.t), retracted=True))
        outs.append(Observation(measure, key, team, index_time, num, wait, False, correction, stratum))
        emitted[key] = EmittedObs(measure, team, t, num, wait, stratum)


_MEASURES_OF: Final[dict[int, tuple[str, ...]]] = {
    K_DISCHARGE: ("followup_72h", "followup_7d", "followup_30d", "readmission_30d"),
    K_REFERRAL: ("seen_within_target", "referral_wait_days", "lost_before_contact", "first_contact_dna"),
    K_CRISIS: ("repeat_crisis_30d",),
}


def _emit_observations_of(
    state: ClientState, x: int, index: list[Rec], config: CoreConfig, outs: list[Output]
) -> None:
    """Like :func:`_emit_observations`, re-deriving only the index events ``index`` (in history
    order): the caller knows that no other index event's observations changed."""
    recs = state.recs
    vis = _visible(recs, x)
    memory = config.memory_us
    last = (state.last_assigned_at, state.last_assigned_team)
    derived: dict[str, ObsValue] = {}
    if any(r.version for r in recs):
        # versions of one (src, id) share their observation keys: re-derive them together
        keys = {(r.src, r.id) for r in index}
        index = [r for r in recs if r.kind in _MEASURES_OF and (r.src, r.id) in keys]
    kept = state.pruned_before
    if kept != _NEVER:
        index = [r for r in index if not _frozen(r, kept, config)]
    for r in index:
        if r.t < x and (r.cancelled_at == _NEVER or r.cancelled_at >= x) and r.stands_from < x:
            _observations_of(r, vis, x, config, memory, derived, last)
    emitted = state.obs
    _upsert_observations(emitted, derived, outs)
    gone = None
    for r in index:
        for measure in _MEASURES_OF[r.kind]:
            key = _key(measure, r)
            if key in emitted and key not in derived:
                if gone is None:
                    gone = set()
                gone.add(key)
    if gone:
        for key in [k for k in emitted if k in gone]:
            old = emitted.pop(key)
            outs.append(Observation(old.measure, key, old.team, from_us(old.t), retracted=True, correction=True))


# ---------------------------------------------------------------------------------------------
# Which index events a change between two evaluation instants can affect
#
# Outputs as of x are a function of the visible history and of x. Between two evaluation
# instants p < x the visible history changes by the records that appear (time in [p, x)) or
# disappear (cancel time in [p, x)), and x crosses the index events' thresholds in (p, x].
# An index event whose thresholds were not crossed and which depends on none of the changed
# records has the same outcomes at x as at p, so only the others are re-derived. The rules
# below are deliberately wider than the derivation needs (tests compare with the full
# re-derivation on generated streams).


def _changes(recs: list[Rec], p: int, x: int) -> list[Rec]:
    """Records (not cancels) whose visibility may differ between instants ``p`` and ``x``."""
    out = []
    i = bisect.bisect_left(recs, p, key=_rec_t)
    for r in recs[i:]:
        if r.t >= x:
            break
        if r.kind != K_CANCEL:
            out.append(r)
    for r in recs:
        if (r.cancelled_at != _NEVER and p <= r.cancelled_at < x and r.t < p) or (p <= r.stands_from < x and r.t < p):
            out.append(r)
    return out


def _rec_t(r: Rec) -> int:
    return r.t


def _depends(r: Rec, c: Rec, memory: int) -> bool:
    """Whether the outcomes (observations and alerts) of index event ``r`` may depend on ``c``."""
    if c is r:
        return True
    ck = c.kind
    rk = r.kind
    if rk == K_REFERRAL:
        return ck in (K_CONTACT, K_CLOSED) and c.t >= r.t
    # discharges and crises: the responsible team
    if (ck == K_REFERRAL or (ck == K_CONTACT and c.detail == "attended")) and r.t - memory <= c.t < r.t:
        return True
    if rk == K_DISCHARGE:
        return ck in (K_CONTACT, K_ADMISSION) and c.flag and c.t >= r.t
    if rk == K_CRISIS:
        return ck == K_CRISIS and r.t - REPEAT_CRISIS_DAYS * US_PER_DAY <= c.t < r.t
    return False


def _affected_observations(
    recs: list[Rec], p: int, x: int, config: CoreConfig, changes: list[Rec] | None = None
) -> list[Rec]:
    """The index events whose observations may differ between instants ``p`` < ``x``
    (``changes``: :func:`_changes` of the same arguments, if already known)."""
    if changes is None:
        changes = _changes(recs, p, x)
    cal = config.calendar
    memory = config.memory_us
    limit = config.referral_open_limit_days * US_PER_DAY
    out = []
    for r in recs:
        kind = r.kind
        settled: int | None = None
        if kind == K_DISCHARGE:
            if not r.flag:
                continue
            d = r.day
            hit = (
                p < cal.end_of_day(d + 3) <= x
                or p < cal.end_of_day(d + 7) <= x
                or p < cal.end_of_day(d + READMISSION_DAYS) <= x
            )
        elif kind == K_REFERRAL:
            to_target = p < _target(r, config)[0] <= x
            to_limit = p < r.t + limit + 1 <= x
            if not (to_target or to_limit or changes):
                continue
            # a referral's observations depend only on what comes up to its earliest attended
            # contact or closure: changes after one visible at both instants cannot move them;
            # passing the open limit changes nothing then, passing the target only when that
            # is a closure (not seen: seen_within_target appears, false)
            first = _settling(recs, r, p, x)
            if first is None:
                hit = to_target or to_limit
            else:
                hit = to_target and first.kind == K_CLOSED
                settled = first.t
        elif kind == K_CRISIS:
            hit = False
        else:
            continue
        if not hit and changes:
            for c in changes:
                if (settled is None or c.t <= settled) and _depends(r, c, memory):
                    hit = True
                    break
        if hit:
            out.append(r)
    return out


def _alerts_may_change(
    recs: list[Rec], p: int, x: int, config: CoreConfig, changes: list[Rec] | None = None
) -> bool:
    """Whether the care-gap alerts as of ``x`` may differ from those as of ``p`` < ``x``
    (``changes``: :func:`_changes` of the same arguments, if already known; not modified)."""
    changes = _changes(recs, p, x) if changes is None else list(changes)
    cal = config.calendar
    memory = config.memory_us
    readmit = config.readmitted_alert_days * US_PER_DAY
    crisis_span = config.frequent_crisis_days * US_PER_DAY
    max_age = config.max_referral_age_us
    crises = 0
    for c in recs:
        kind = c.kind
        if kind == K_CRISIS:
            crises += 1
        elif kind == K_ADMISSION and c.flag and p < c.t + readmit <= x:
            changes.append(c)  # a Readmitted30d episode of a discharge before it may end
    frequent = crises >= config.frequent_crisis_k
    for r in recs:
        kind = r.kind
        if kind == K_DISCHARGE:
            if not r.flag:
                continue
            if p < r.t + config.expiry_us <= x:
                return True  # its follow-up alerts expire
            d = r.day
            start = cal.end_of_day(d)
            if x <= start:
                continue  # no episode before the day after the discharge
            due = cal.end_of_day(d + FOLLOWUP_DUE_DAYS)
            missed = cal.end_of_day(d + FOLLOWUP_MISSED_DAYS)
            # crossing a deadline starts an episode unless a follow-up (or admission) visible
            # at both instants came before it (a change of it is among ``changes``)
            if (p <= due < x and not _followed_up(recs, r, start, due + 1, p, x)) or (
                p < missed <= x and not _followed_up(recs, r, start, missed, p, x)
            ):
                return True
        elif kind == K_REFERRAL:
            if p < r.t + max_age <= x:
                return True  # its waiting alert expires
            target_pass = _target(r, config)[0]
            if x <= target_pass:
                continue  # no episode until just after the target passes
            settled = _settled_at(recs, r, p, x)
            if p <= target_pass and (settled is None or settled >= target_pass):
                return True
            if settled is not None:
                # its episode ends at its earliest attended contact or closure: a change after
                # one visible at both instants cannot move it
                for c in changes:
                    if c.t <= settled and _depends(r, c, memory):
                        return True
                continue
        elif kind == K_CRISIS:
            if not frequent:
                continue
            if p < r.t + crisis_span <= x:
                return True
        else:
            continue
        for c in changes:
            if _depends(r, c, memory) or (kind == K_CRISIS and c.kind == K_CRISIS):
                return True
    return False


def _followed_up(recs: list[Rec], r: Rec, start: int, before: int, p: int, x: int) -> bool:
    """Whether discharge ``r`` has a follow-up contact (from ``start``, the end of its day) or
    an inpatient admission before ``before`` that is visible both as of ``p`` and ``x``."""
    end = min(before, p)
    for c in recs:
        if c.t >= end:
            return False
        if (c.cancelled_at != _NEVER and c.cancelled_at < x) or c.stands_from >= end:
            continue
        kind = c.kind
        if (kind == K_CONTACT and c.flag and c.t >= start) or (kind == K_ADMISSION and c.flag and c.t >= r.t):
            return True
    return False


def _settled_at(recs: list[Rec], r: Rec, p: int, x: int) -> int | None:
    """The time of referral ``r``'s earliest attended contact of its team or referral, or its
    closure, among those visible both as of ``p`` and ``x``; None when there is none. (The
    referral's episode ends at the earliest of all of these.)"""
    first = _settling(recs, r, p, x)
    return None if first is None else first.t


def _settling(recs: list[Rec], r: Rec, p: int, x: int) -> Rec | None:
    """The record of :func:`_settled_at`."""
    i = bisect.bisect_left(recs, r.t, key=_rec_t)
    for c in recs[i:]:
        if c.t >= p:
            return None
        if (c.cancelled_at != _NEVER and c.cancelled_at < x) or c.stands_from >= p:
            continue
        if _ends_wait(r, c):
            return c
    return None


def _ends_wait(r: Rec, c: Rec) -> bool:
    """Whether record ``c`` (at or after referral ``r``) ends its wait: an attended contact of
    the referral's team or carrying its id, or the referral's closure."""
    if c.kind == K_CLOSED:
        return c.ref == r.ref
    return c.kind == K_CONTACT and c.detail == "attended" and (c.team == r.team or c.ref == r.ref)


def _alert(state: ClientState, e: EmittedAlert) -> Alert:
    labels = {"alertname": e.name, "team": e.team, "client": state.client, "severity": e.severity}
    return Alert(
        labels=labels,
        starts_at=from_us(e.start),
        ends_at=None if e.end is None else from_us(e.end),
        annotations={"summary": e.summary, "description": e.description},
    )


def _emit_alerts(state: ClientState, x: int, trigger: int, config: CoreConfig, outs: list[Output]) -> None:
    emitted = state.alerts
    last = (state.last_assigned_at, state.last_assigned_team)
    derived = derive_alerts(state.recs, x, config, state.pruned_before, emitted, last)
    # instances firing until now whose episodes (or some of them) vanished at ``trigger``: they
    # fired until then. Cut them off there and derive again: as an episode [start, cut] each
    # merges with what still overlaps it (one instance) or ends at the cut.
    vanished = [
        k for k, old in emitted.items()
        if old.end is None and ((ep := derived.get(k)) is None or (ep.end is not None and ep.end < trigger))
    ]
    if vanished:
        for k in vanished:
            emitted[k].cut_at = max(emitted[k].start, trigger, emitted[k].cut_at)
        derived = derive_alerts(state.recs, x, config, state.pruned_before, emitted, last)
    for key, ep in derived.items():
        old = emitted.get(key)
        if old is not None and old.end == ep.end:
            continue
        if old is not None and old.end is not None and ep.end is None:
            # a resolved instance stays resolved; a new firing episode would have a new start
            continue
        texts = (ep.frozen.summary, ep.frozen.description) if ep.frozen is not None else _texts(ep, config)
        cut = old.cut_at if old is not None else _NEVER
        new = EmittedAlert(ep.name, ep.team, ep.severity, ep.start, ep.end, *texts, context_start=ep.context_start, cut_at=cut)
        emitted[key] = new
        outs.append(_alert(state, new))
    for key, old in emitted.items():
        if old.end is None and key not in derived:
            old.end = max(old.start, trigger)
            outs.append(_alert(state, old))


def _breakpoints(state: ClientState, config: CoreConfig) -> list[int]:
    """Every instant at which an output of this client could change, unsorted."""
    out: list[int] = []
    for r in state.recs:
        _rec_breakpoints(r, config, out)
    return out


def _rec_breakpoints(r: Rec, config: CoreConfig, out: list[int]) -> None:
    """The breakpoints of one record (they depend on nothing else), added to ``out``."""
    kind = r.kind
    if r.cancelled_at != _NEVER:
        out.append(r.cancelled_at + 1)
    if r.stands_from != _NEVER:
        out.append(r.stands_from + 1)
    # Becoming visible changes outputs only for these kinds: referrals, discharges and
    # other admissions act at their thresholds, cancels through their target's ``ct``.
    if kind in (K_CONTACT, K_CLOSED, K_CRISIS) or (kind == K_ADMISSION and r.flag):
        out.append(r.t + 1)
    elif kind == K_CANCEL and not r.flag:
        out.append(r.t + 1)  # becomes an orphan
    if kind == K_DISCHARGE and r.flag:
        cal = config.calendar
        d = r.day
        # FollowUpDue fires just after the end of d+2 (see derive_alerts)
        out.extend((cal.end_of_day(d + 2) + 1, cal.end_of_day(d + 3), cal.end_of_day(d + 7), cal.end_of_day(d + 30)))
        out.append(r.t + config.expiry_us)
    elif kind == K_REFERRAL:
        target_pass = _target(r, config)[0]
        out.append(target_pass)
        out.append(target_pass + 1)  # ReferralWaiting fires just after it passes
        out.append(r.t + config.referral_open_limit_days * US_PER_DAY + 1)
        out.append(r.t + config.max_referral_age_us)
    elif kind == K_ADMISSION and r.flag:
        out.append(r.t + config.readmitted_alert_days * US_PER_DAY)
    elif kind == K_CRISIS:
        out.append(r.t + config.frequent_crisis_days * US_PER_DAY)


def _advance(state: ClientState, w: int, a: int, config: CoreConfig, outs: list[Output]) -> list[int]:
    """Evaluate every breakpoint up to the clocks, in order; returns the later breakpoints
    (sorted, unique) and keeps those not yet evaluated for both clocks in ``state.pending``."""
    lo = min(state.obs_until, state.alerts_until)
    hi = max(w, a)
    pend = state.pending
    if pend is None:
        pend = sorted({b for b in _breakpoints(state, config) if b > lo})
    else:
        # the kept list starts after an earlier min(mw, aw), which only grows
        pend = pend[bisect.bisect_right(pend, lo):]
    split = bisect.bisect_right(pend, hi)
    incremental = config.incremental
    if split:
        po, pa = state.obs_until, state.alerts_until
        for i in range(split):
            b = pend[i]
            # in replay both clocks move together: find the changes once for both
            changes = _changes(state.recs, po, b) if po == pa and incremental else None
            if po < b <= w:
                if not incremental or state.rederive & _FULL_OBS:
                    _emit_observations(state, b, config, outs)
                    state.rederive &= ~_FULL_OBS
                else:
                    index = _affected_observations(state.recs, po, b, config, changes)
                    if index:
                        _emit_observations_of(state, b, index, config, outs)
                po = b
            if pa < b <= a:
                if not incremental or state.rederive & _FULL_ALERTS:
                    _emit_alerts(state, b, b - 1, config, outs)
                    state.rederive &= ~_FULL_ALERTS
                elif _alerts_may_change(state.recs, pa, b, config, changes):
                    _emit_alerts(state, b, b - 1, config, outs)
                pa = b
    state.obs_until = max(state.obs_until, w)
    state.alerts_until = max(state.alerts_until, a)
    later = pend[split:]
    state.pending = pend[bisect.bisect_right(pend, min(state.obs_until, state.alerts_until)):]
    return later


def _forget_breakpoints(state: ClientState, removed: list[Rec], config: CoreConfig) -> None:
    """Records ``removed`` left the history: the kept breakpoint list stays exact when none of
    theirs is still pending (the others are per record), else it is listed again."""
    if state.pending is None:
        return
    lo = min(state.obs_until, state.alerts_until)
    bps: list[int] = []
    for r in removed:
        _rec_breakpoints(r, config, bps)
    for b in bps:
        if b > lo:
            state.pending = None
            return


def _orphans_and_prune(state: ClientState, config: CoreConfig, outs: list[Output]) -> ClientState | None:
    w = state.obs_until
    recs = state.recs
    orphans = False
    for r in recs:
        if r.kind == K_CANCEL and not r.flag and r.t < w:
            orphans = True
            break
    if orphans:
        keep = []
        for r in recs:
            if r.kind == K_CANCEL and not r.flag and r.t < w:
                outs.append(
                    DeadLetter(
                        DeadLetterKind.ORPHAN_CANCEL,
                        "cancel: its target has not arrived within the allowed lateness (or is older than the history kept)",
                        "data.cancels",
                        Origin(),
                        msgspec.json.encode({"source": r.src, "id": r.id, "type": "cancel", "cancels": r.ref}),
                    )
                )
            else:
                keep.append(r)
        _forget_breakpoints(state, [r for r in recs if r.kind == K_CANCEL and not r.flag and r.t < w], config)
        state.recs = recs = keep
    cutoff = w - config.horizon_us
    if recs and recs[0].t < cutoff and w >= state.prune_hold:
        max_age = config.max_referral_age_us
        vis = _visible(recs, w)
        for r in vis:
            if r.t >= cutoff:
                break
            if r.kind == K_REFERRAL and r.t >= w - max_age:
                ref = _referral(r, vis, config)
                if ref.seen is None and ref.closure is None:
                    # an open referral keeps everything from its time on (a late contact
                    # can still revise it) until it reaches the maximum age or an event comes
                    cutoff = r.t
                    state.prune_hold = r.t + max_age + 1
                    break
                decided = max(e.t for e in (ref.first, ref.seen, ref.closure) if e is not None)
                if decided >= cutoff:
                    # decided within the horizon: a cancel of its deciding contact or closure,
                    # or a late earlier contact, can still revise it
                    cutoff = r.t
                    state.prune_hold = decided + config.horizon_us + 1
                    break
        # a firing alert keeps what it was derived from: it is re-derived until it ends
        opened = _open_context(state) if state.alerts else None
        if opened is not None and opened < cutoff:
            cutoff = opened
        i = bisect.bisect_left(recs, cutoff, key=lambda r: r.t)
        if i:
            pruned = recs[:i]
            _keep_assignment(state, pruned)
            state.recs = recs = recs[i:]
            state.pruned_before = max(state.pruned_before, cutoff)
            _forget_breakpoints(state, pruned, config)
            if state.obs:
                state.obs = {k: v for k, v in state.obs.items() if v.t >= cutoff}
            if state.alerts:
                alert_cutoff = min(state.alerts_until - config.horizon_us, cutoff)
                state.alerts = _alerts_ending_after(state.alerts, alert_cutoff)
            # what remains may have depended on what went (e.g. a team looked up before the
            # cutoff): the next evaluation re-derives everything, as before pruning
            state.rederive = _FULL_OBS | _FULL_ALERTS
    if not recs:
        state.obs = {}
        state.alerts = _alerts_ending_after(state.alerts, state.alerts_until - config.horizon_us)
        if state.last_assigned_at != _NEVER and state.last_assigned_at < w - config.memory_us - config.horizon_us:
            state.last_assigned_at, state.last_assigned_team = _NEVER, ""  # past the memory setting: no longer needed
    if not recs and not state.obs and not state.alerts and state.last_assigned_at == _NEVER:
        return None
    return state


def _keep_assignment(state: ClientState, pruned: list[Rec]) -> None:
    """Keep the latest referral or attended contact of ``pruned`` (leaving the history) as the
    state's (time, team) pair for the responsible-team look-up. A cancelled one does not count
    (its cancel is in the history, or arrived: a later cancel of it finds nothing)."""
    for r in reversed(pruned):
        if r.cancelled_at != _NEVER or r.t <= state.last_assigned_at:
            continue
        if r.kind == K_REFERRAL or (r.kind == K_CONTACT and r.detail == "attended"):
            state.last_assigned_at, state.last_assigned_team = r.t, sys.intern(r.team)
            return


# ---------------------------------------------------------------------------------------------
# Public API


def step(
    state: ClientState | None, event: Event, clock: Clock, config: CoreConfig, tag: int = -1
) -> tuple[ClientState | None, list[Output]]:
    """Apply one validated event of one client, then advance the client to ``clock``.

    ``tag``: the driver's opaque tag of the event, kept in its record (:attr:`Rec.tag`; the
    live driver keeps input offsets there, :mod:`streams.live_state`); it changes no outcome.

    ``state`` is the client's state (None for a client with nothing open); the result is the
    new state (None when nothing is left) and the outputs in order. The passed-in state object
    may be mutated and returned; drivers must store the returned value. Never raises for a
    validated ``Event``.
    """
    cal = config.calendar
    if state is None:
        state = ClientState(event.client)
    outs: list[Output] = []
    src, eid = event.source, event.id
    recs = state.recs
    rec = _record(event, cal)
    versions = 0
    for r in recs:
        if r.id == eid and r.src == src:
            if r.kind == K_CANCEL or rec.kind == K_CANCEL or (r.t == rec.t and r.kind == rec.kind and r.content_hash == rec.content_hash):
                outs.append(Duplicate(src, eid))
                return state, outs
            versions += 1  # a re-issue (another version) of (src, id): see _settle_versions
    rec.tag = tag
    pend = state.pending
    changed_at = rec.t
    bisect.insort(recs, rec, key=_sort_key)
    target = rec.ref if rec.kind == K_CANCEL else eid
    rec.version = versions
    if versions or any(r.kind == K_CANCEL and r.src == src and r.ref == target for r in recs if r is not rec) or (
        rec.kind == K_CANCEL and any(r.src == src and r.id == target and r.kind != K_CANCEL for r in recs)
    ):
        moved = _settle_versions(recs, src, target)
        if moved is not None:
            pend = None  # the breakpoints of the versions (and cancels) changed
            changed_at = min(changed_at, moved)
    if pend is not None:
        # breakpoints are per record: the new one only adds its own
        lo = min(state.obs_until, state.alerts_until)
        added: list[int] = []
        _rec_breakpoints(rec, config, added)
        for b in added:
            if b > lo:
                i = bisect.bisect_left(pend, b)
                if i == len(pend) or pend[i] != b:
                    pend.insert(i, b)
    state.pending = pend
    state.prune_hold = _NEVER
    if changed_at < state.obs_until:
        _emit_observations(state, state.obs_until, config, outs)
    if changed_at < state.alerts_until:
        _emit_alerts(state, state.alerts_until, changed_at, config, outs)
    later = _advance(state, clock.watermark_us, clock.alert_us, config, outs)
    return _finish(state, later, config, outs), outs


def _settle_versions(recs: list[Rec], src: str, eid: str) -> int | None:
    """Decide which version of (``src``, ``eid``) stands, after a version or cancel of it came.

    The versions (events of that key that differ, :attr:`Rec.version` in arrival order) and the
    cancels naming it (in time order) pair off: the i-th cancel cancels the i-th version at the
    cancel's time; the first version left without a cancel stands (from the time of the cancel
    that made room for it, ``Rec.stands_from``, so nothing final before that moves); later ones stay invisible
    (``ct`` = their own time: they never stood) until a further cancel comes. A cancel beyond
    the versions cancels nothing more (as a second cancel of one event always did). Sets each
    cancel's ``flag`` (its target has arrived) and returns the earliest time from which the
    visible history changed (None: it did not)."""
    versions = sorted((r for r in recs if r.kind != K_CANCEL and r.id == eid and r.src == src), key=lambda r: r.version)
    cancels = sorted((r for r in recs if r.kind == K_CANCEL and r.ref == eid and r.src == src), key=_sort_key)
    moved: int | None = None
    for i, r in enumerate(versions):
        if i < len(cancels):
            ct = cancels[i].t
        elif i == len(cancels):
            ct = _NEVER
        else:
            ct = r.t
        # version i stands from the cancel of version i - 1 (a cancel takes effect at its own
        # time, so a re-issue changes nothing before it: no outcome already final moves)
        vt = cancels[i - 1].t if 0 < i <= len(cancels) else _NEVER
        if ct != r.cancelled_at or vt != r.stands_from:
            earliest = _first_difference(_stands(r.t, r.stands_from, r.cancelled_at), _stands(r.t, vt, ct))
            r.cancelled_at, r.stands_from = ct, vt
            if earliest is not None:
                moved = earliest if moved is None else min(moved, earliest)
    for c in cancels:
        if c.flag != bool(versions):
            c.flag = bool(versions)
            moved = c.t if moved is None else min(moved, c.t)
    return moved


_END: Final = 1 << 62


def _stands(t: int, vt: int, ct: int) -> tuple[int, int] | None:
    """The instants (a, b] at which a record is visible (None: none)."""
    a, b = max(t, vt), _END if ct == _NEVER else ct
    return (a, b) if a < b else None


def _first_difference(old: tuple[int, int] | None, new: tuple[int, int] | None) -> int | None:
    """The latest ``t`` such that visibility as of every instant up to it is the same under
    ``old`` and ``new`` (as ``step``'s ``changed_at``); None when they do not differ."""
    if old == new:
        return None
    if old is None:
        return new[0] if new is not None else None
    if new is None:
        return old[0]
    found = []
    if old[0] != new[0]:
        found.append(min(old[0], new[0]))
    if old[1] != new[1]:
        found.append(min(old[1], new[1]))
    return min(found)


def idle(state: ClientState) -> bool:
    """Whether ``state`` holds nothing but its kept team assignment (and bookkeeping): no
    history, no observations or alerts, nothing due. Drivers may store such a state in its
    serialised form (:meth:`ClientState.to_bytes`, a few dozen bytes) until its next event."""
    return not state.recs and not state.obs and not state.alerts and state.due is None


def alert_states(state: ClientState | None) -> list[Alert]:
    """The latest state of every care-gap alert instance the client has emitted (firing or
    resolved), as last emitted."""
    if state is None:
        return []
    return [_alert(state, e) for e in state.alerts.values()]


def _finish(state: ClientState, later: list[int], config: CoreConfig, outs: list[Output]) -> ClientState | None:
    # the breakpoints after min(mw, aw): under a wall clock ahead of the watermark, those
    # between the two are still to be evaluated for the watermark (observations), and ``later``
    # (after both clocks) would skip them
    pending = state.pending if state.pending is not None else later
    kept = _orphans_and_prune(state, config, outs)
    if kept is not None:
        kept.due = _compute_due(kept, pending, config)
        kept.alert_due = _compute_due(kept, pending[bisect.bisect_right(pending, kept.alerts_until):], config, alerts_only=True)
    return kept


def sweep(state: ClientState | None, clock: Clock, config: CoreConfig) -> tuple[ClientState | None, list[Output]]:
    """Advance a client to ``clock`` without a new event (windows closing, targets passing,
    alerts firing or ending, held cancels becoming orphans, pruning). Same contract as
    :func:`step`."""
    if state is None:
        return None, []
    outs: list[Output] = []
    later = _advance(state, clock.watermark_us, clock.alert_us, config, outs)
    return _finish(state, later, config, outs), outs


def _alerts_ending_after(alerts: dict[str, EmittedAlert], cutoff: int) -> dict[str, EmittedAlert]:
    """The instances still firing or ended at or after ``cutoff``: an episode derived from the
    history kept (it starts after ``cutoff``) can only merge into one of these."""
    return {k: v for k, v in alerts.items() if v.end is None or v.end >= cutoff}


def _open_context(state: ClientState) -> int | None:
    """The earliest event time a firing alert instance was derived from (None: none firing)."""
    found = None
    for v in state.alerts.values():
        if v.end is None and v.context_start != _NEVER and (found is None or v.context_start < found):
            found = v.context_start
    return found


def _compute_due(state: ClientState, later: list[int], config: CoreConfig, alerts_only: bool = False) -> int | None:
    """The earliest future breakpoint, or the instant the oldest history can be pruned
    (``alerts_only``: only what the alert clock decides; history is pruned by the watermark)."""
    if not state.recs and not state.alerts:
        return None  # only a team pair is left: no breakpoint of the history gone matters
    best = min(later) if later else None
    if state.recs and alerts_only:
        return best
    if state.recs:
        opened = _open_context(state) if state.alerts else None
        if opened is not None and opened <= state.recs[0].t:
            return best  # nothing can go before a firing alert ends (at a breakpoint or event)
        prune = max(state.recs[0].t + config.horizon_us + 1, state.prune_hold)
    elif state.alerts:
        prune = min(v.start if v.end is None else v.end for v in state.alerts.values()) + config.horizon_us + 1
    else:
        return best
    return prune if best is None or prune < best else best


def next_due_us(state: ClientState | None) -> int | None:
    """Like :func:`next_due`, in microseconds since the epoch."""
    return None if state is None else state.due


def next_due(state: ClientState | None) -> datetime | None:
    """The earliest instant at which sweeping this client could produce output or free state
    (computed by the last :func:`step` / :func:`sweep`).

    Drivers sweep a client once the watermark reaches it, or once the alert clock reaches
    ``state.alert_due`` (what only the alert clock decides; with one clock, as in replay, ``due``
    alone will do: it is never later than ``alert_due``). None: nothing due (no state, or nothing
    left that time alone can change).
    """
    return None if state is None or state.due is None else from_us(state.due)


def open_followups(state: ClientState | None, at: datetime, config: CoreConfig) -> list[tuple[str, int]]:
    """Follow-up obligations open at ``at``: eligible discharges with no follow-up (and no
    inpatient admission) yet, whose 30-day window is still open, as (responsible team, whole
    local days until the 7-day deadline, negative when overdue). For the live gauge of open
    obligations; it changes no state.
    """
    if state is None:
        return []
    x = to_us(at)
    cal = config.calendar
    vis = _visible(state.recs, x)
    memory = config.memory_us
    today = cal.day_of(x)
    out: list[tuple[str, int]] = []
    for r in vis:
        if r.kind != K_DISCHARGE or not r.flag:
            continue
        d = r.day
        if x >= cal.end_of_day(d + READMISSION_DAYS):
            continue
        start = cal.end_of_day(d)
        done = any(
            (c.kind == K_CONTACT and c.flag and c.t >= start) or (c.kind == K_ADMISSION and c.flag and c.t >= r.t)
            for c in vis
        )
        if not done:
            team = r.team or _responsible(vis, r.t, memory, (state.last_assigned_at, state.last_assigned_team))
            out.append((team, d + FOLLOWUP_MISSED_DAYS - today))
    return out

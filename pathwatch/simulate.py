"""Seeded generator of realistic event streams for ``pathwatch simulate`` (issue 4).

The generator models a community mental health provider: clients belong to a team, are
referred (or are already on the caseload at the start), wait for a first contact, are seen
on an ongoing schedule with did-not-attend and cancelled appointments, have crises (a small
group very often), are admitted to and discharged from partner hospitals, and are (or are
not) followed up after a psychiatric discharge. Publishers then make the stream messy the
way real ones do: events are published late (never beyond ``max_delay`` unless asked),
a few are re-sent byte-for-byte, a few are cancelled, and optionally some lines are bad.

Output is CloudEvents 1.0 structured JSON, one object per line, in arrival order
(DOMAIN.md section 1). The same :class:`SimulationOptions` give byte-identical output.

Every client draws from its own random stream (seeded from the seed and the client's
number), so an injection for one team changes only that team's clients' lines.

Injected churn (``TEAM:MEASURE:RATE@WEEK``) changes one team's outcome probability for one
measure from the start of a week (1-based, counted from ``start``) onwards; the week is that
of the index event (discharge, referral or crisis). What the rate means per measure:

- ``followup_72h``, ``followup_7d``, ``followup_30d``: the probability that an eligible
  discharge is followed up within that window; the other two windows move with it (the
  shape of the wait distribution below and above the pinned window is kept).
- ``readmission_30d``: the probability of an inpatient readmission on days d+1..d+30.
- ``seen_within_target``: the probability that a referral's first attended contact is
  within its urgency's target (for every urgency).
- ``repeat_crisis_30d`` (alias ``repeat_crisis``): the probability that a crisis is
  followed by another within 30 days, for every client of the team (frequent-crisis
  clients included), which is also the realised ``repeat_crisis_30d`` rate.

A recorded change (``--change TEAM:MEASURE:RATE@WEEK``) is an injection that the team also
records: a ``service.change`` event (source :data:`CHANGE_SOURCE`, no subject, ``time`` the
local midnight starting that week) naming the team and the measure. ``RATE`` ``-`` records the
change without moving the rate (a change that does nothing).
"""

from __future__ import annotations

import math
import random
import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from itertools import accumulate
from typing import Any, BinaryIO, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

DEFAULT_TEAMS: Final[tuple[str, ...]] = ("north", "south", "east", "west", "central")
HOSPITALS: Final[dict[str, str]] = {"st-marys": "SMH", "riverside": "RVH", "county-general": "CGH"}
EHR_SOURCE: Final = "ehr/community"
CRISIS_LINE_SOURCE: Final = "crisis/line"
CHANGE_SOURCE: Final = "ops/service-changes"

FOLLOWUP_MEASURES: Final[tuple[str, ...]] = ("followup_72h", "followup_7d", "followup_30d")
INJECTABLE_MEASURES: Final[tuple[str, ...]] = (
    *FOLLOWUP_MEASURES,
    "readmission_30d",
    "seen_within_target",
    "repeat_crisis_30d",
)
_MEASURE_ALIASES: Final[dict[str, str]] = {"repeat_crisis": "repeat_crisis_30d"}

# Baselines before per-team variation. Follow-up is a cumulative (72h, 7d, 30d) triple.
BASE_FOLLOWUP: Final[tuple[float, float, float]] = (0.55, 0.75, 0.88)
BASE_READMISSION: Final = 0.12
BASE_SEEN: Final[dict[str, float]] = {"emergency": 0.90, "urgent": 0.80, "routine": 0.82}
BASE_REPEAT_CRISIS: Final[tuple[float, float]] = (0.15, 0.65)  # ordinary, frequent-crisis clients

DAY: Final = 86_400
HOUR: Final = 3_600

_Table = tuple[tuple[str, ...], tuple[float, ...]]


def _table(weights: dict[str, float]) -> _Table:
    total = sum(weights.values())
    return tuple(weights), tuple(accumulate(w / total for w in weights.values()))


URGENCY_MIX: Final = _table({"emergency": 0.05, "urgent": 0.25, "routine": 0.70})
REFERRAL_SOURCES: Final = _table(
    {
        "gp": 0.45,
        "self": 0.12,
        "emergency_department": 0.12,
        "police": 0.05,
        "social_care": 0.1,
        "family": 0.08,
        "other": 0.08,
    }
)
CONTACT_STATUS: Final = _table({"attended": 0.79, "did_not_attend": 0.15, "cancelled": 0.06})
CONTACT_MODE: Final = _table(
    {"face_to_face": 0.55, "telephone": 0.30, "video": 0.10, "text": 0.03, "other": 0.02}
)
FOLLOWUP_MODE: Final = _table({"face_to_face": 0.6, "telephone": 0.3, "video": 0.1})
CRISIS_SETTING: Final = _table(
    {"crisis_line": 0.35, "mobile_team": 0.30, "crisis_center": 0.15, "emergency_department": 0.20}
)
CRISIS_ADMIT: Final[dict[str, float]] = {
    "crisis_line": 0.02,
    "mobile_team": 0.10,
    "crisis_center": 0.15,
    "emergency_department": 0.30,
}
CRISIS_TEAM: Final[dict[str, float]] = {
    "crisis_line": 0.0,
    "mobile_team": 0.8,
    "crisis_center": 0.5,
    "emergency_department": 0.2,
}
PSYCH_DISPOSITION: Final = _table(
    {
        "home": 0.75,
        "community_residence": 0.08,
        "against_medical_advice": 0.05,
        "other": 0.03,
        "acute_transfer": 0.03,
        "nonacute_transfer": 0.03,
        "prison_or_court": 0.02,
        "died": 0.01,
    }
)
OTHER_DISPOSITION: Final = _table({"home": 0.9, "community_residence": 0.04, "other": 0.04, "died": 0.02})
CLOSE_AFTER_CARE: Final = _table({"seen": 0.85, "transferred": 0.08, "other": 0.07})
INELIGIBLE_DISPOSITIONS: Final = frozenset({"died", "acute_transfer", "nonacute_transfer", "prison_or_court"})
CANCELLABLE: Final = frozenset(
    {"referral.received", "referral.closed", "contact", "crisis", "admission", "discharge"}
)


def _randint(rng: random.Random, low: int, high: int) -> int:
    """``rng.randint`` without its argument checks (it is the hot path of publication)."""
    return low + int(rng.random() * (high - low + 1))


def _pick(rng: random.Random, table: _Table) -> str:
    values, cumulative = table
    return values[min(bisect_right(cumulative, rng.random()), len(values) - 1)]


@dataclass(frozen=True, slots=True)
class Injection:
    """One team's outcome probability for one measure, from the start of a week (1-based)."""

    team: str
    measure: str
    rate: float
    week: int

    def __post_init__(self) -> None:
        if self.measure not in INJECTABLE_MEASURES:
            raise ValueError(f"unknown measure {self.measure!r}: use one of {', '.join(INJECTABLE_MEASURES)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate {self.rate} is not a probability between 0 and 1")
        if self.week < 1:
            raise ValueError(f"week {self.week} is not 1 or later (weeks are counted from 1)")

    @property
    def start_day(self) -> int:
        """Day index (0 = the start date) from which the injection applies."""
        return (self.week - 1) * 7

    def __str__(self) -> str:
        return f"{self.team}:{self.measure}:{self.rate:g}@{self.week}"


_INJECTION = re.compile(r"^\s*([^:@\s]+):([a-z0-9_]+):([^@]+)@([^@]+)\s*$")


def parse_injection(text: str) -> Injection:
    """Parse ``TEAM:MEASURE:RATE@WEEK`` such as ``north:followup_7d:0.45@20``.

    Raises ``ValueError`` with a message naming what is wrong (shape, measure, rate, week).
    Whether the team exists is checked by :class:`SimulationOptions`.
    """
    match = _INJECTION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not TEAM:MEASURE:RATE@WEEK, for example north:followup_7d:0.45@20")
    team, measure, rate_text, week_text = match.groups()
    measure = _MEASURE_ALIASES.get(measure, measure)
    try:
        rate = float(rate_text)
    except ValueError:
        raise ValueError(f"{text!r}: rate {rate_text!r} is not a number between 0 and 1") from None
    if not math.isfinite(rate):
        raise ValueError(f"{text!r}: rate {rate_text!r} is not a number between 0 and 1")
    try:
        week = int(week_text)
    except ValueError:
        raise ValueError(f"{text!r}: week {week_text!r} is not a whole number (weeks start at 1)") from None
    try:
        return Injection(team, measure, rate, week)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class RecordedChange:
    """A service change the team records at the start of ``week`` (1-based); with ``rate``
    it also shifts the team's outcome probability as an :class:`Injection` does, without
    (``None``) it does nothing to the outcomes."""

    team: str
    measure: str
    rate: float | None
    week: int

    def __post_init__(self) -> None:
        Injection(self.team, self.measure, 0.0 if self.rate is None else self.rate, self.week)

    @property
    def injection(self) -> Injection | None:
        return None if self.rate is None else Injection(self.team, self.measure, self.rate, self.week)

    @property
    def start_day(self) -> int:
        return (self.week - 1) * 7

    @property
    def change_id(self) -> str:
        return f"{self.team}-{self.measure}-week{self.week}"

    def __str__(self) -> str:
        return f"{self.team}:{self.measure}:{'-' if self.rate is None else f'{self.rate:g}'}@{self.week}"


def parse_change(text: str) -> RecordedChange:
    """Parse ``TEAM:MEASURE:RATE@WEEK`` as :func:`parse_injection` does; ``RATE`` may be ``-``
    (record the change, move nothing). Raises ``ValueError`` naming what is wrong."""
    match = _INJECTION.match(text)
    if match and match.group(3).strip() == "-":
        injection = parse_injection(text.replace(":-@", ":0@"))
        return RecordedChange(injection.team, injection.measure, None, injection.week)
    injection = parse_injection(text)
    return RecordedChange(injection.team, injection.measure, injection.rate, injection.week)


@dataclass(frozen=True)
class SimulationOptions:
    """What to simulate. The defaults describe a mid-sized provider over one year.

    ``max_delay`` is the publication delay bound (give it the allowed lateness); no event is
    published later than its time plus ``max_delay`` unless ``beyond_lateness_fraction`` > 0.
    Fractions are per generated event: ``duplicate_fraction`` re-sends it byte-for-byte,
    ``cancel_fraction`` adds a ``cancel`` naming it, ``bad_fraction`` adds a malformed line.
    ``changes`` are recorded service changes (each an injection too, unless its rate is None).
    Raises ``ValueError`` on construction when an option is out of range.
    """

    clients: int = 6000
    teams: tuple[str, ...] = DEFAULT_TEAMS
    start: date = date(2025, 1, 6)
    days: int = 365
    seed: int = 0
    tz: str = "UTC"
    max_delay: timedelta = timedelta(hours=72)
    duplicate_fraction: float = 0.01
    cancel_fraction: float = 0.005
    bad_fraction: float = 0.0
    beyond_lateness_fraction: float = 0.0
    injections: tuple[Injection, ...] = field(default_factory=tuple)
    changes: tuple[RecordedChange, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.clients < 1:
            raise ValueError(f"clients must be at least 1, not {self.clients}")
        if self.days < 1:
            raise ValueError(f"days must be at least 1, not {self.days}")
        if not self.teams:
            raise ValueError("at least one team is needed")
        if len(set(self.teams)) != len(self.teams):
            raise ValueError(f"team names repeat: {', '.join(self.teams)}")
        for team in self.teams:
            if not team or team.strip() != team or ":" in team or "@" in team:
                raise ValueError(f"team name {team!r} is empty or holds spaces, ':' or '@'")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{self.tz!r} is not an IANA time zone name") from exc
        if self.max_delay < timedelta(0):
            raise ValueError("max_delay must not be negative")
        for name in ("duplicate_fraction", "cancel_fraction", "bad_fraction", "beyond_lateness_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        planned: tuple[Injection | RecordedChange, ...] = (*self.injections, *self.changes)
        for injection in planned:
            if injection.team not in self.teams:
                raise ValueError(
                    f"injection {injection}: team {injection.team!r} is not one of {', '.join(self.teams)}"
                )
            if injection.start_day >= self.days:
                raise ValueError(
                    f"injection {injection}: week {injection.week} starts after the last day simulated"
                )

    @classmethod
    def mid_sized(cls, seed: int = 0, **overrides: Any) -> SimulationOptions:
        """A mid-sized provider: 5 teams, 6,000 clients, one year (about 130k events)."""
        return cls(seed=seed, **overrides)


class _TeamModel:
    """Outcome probabilities of one team by day, baseline plus injections."""

    def __init__(self, rng: random.Random, injections: Sequence[Injection]) -> None:
        shift = round(rng.uniform(-0.04, 0.04), 2)
        self.followup = _pin(BASE_FOLLOWUP, 1, BASE_FOLLOWUP[1] + shift)
        self.readmission = round(BASE_READMISSION + rng.uniform(-0.02, 0.02), 3)
        self.seen = {urgency: min(0.97, rate + shift) for urgency, rate in BASE_SEEN.items()}
        self.injections = sorted(injections, key=lambda i: i.week)

    def _active(self, measure: str, day: int) -> float | None:
        rate = None
        for injection in self.injections:
            if injection.measure == measure and injection.start_day <= day:
                rate = injection.rate
        return rate

    def followup_at(self, day: int) -> tuple[float, float, float]:
        cumulative = self.followup
        for index, measure in enumerate(FOLLOWUP_MEASURES):
            rate = self._active(measure, day)
            if rate is not None:
                cumulative = _pin(cumulative, index, rate)
        return cumulative

    def readmission_at(self, day: int) -> float:
        rate = self._active("readmission_30d", day)
        return self.readmission if rate is None else rate

    def seen_at(self, day: int, urgency: str) -> float:
        rate = self._active("seen_within_target", day)
        return self.seen[urgency] if rate is None else rate

    def repeat_crisis_at(self, day: int, frequent: bool) -> float:
        rate = self._active("repeat_crisis_30d", day)
        return BASE_REPEAT_CRISIS[frequent] if rate is None else rate


def _pin(cumulative: tuple[float, float, float], index: int, rate: float) -> tuple[float, float, float]:
    """Set cumulative probability ``index`` to ``rate``, keeping the shape on both sides.

    Below the pinned window the values scale with it; above it, the share of the remaining
    clients followed up later is kept.
    """
    pinned = cumulative[index]
    out = []
    for position, value in enumerate(cumulative):
        if position < index:
            out.append(value * rate / pinned if pinned > 0 else rate)
        elif position == index:
            out.append(rate)
        else:
            later = (value - pinned) / (1 - pinned) if pinned < 1 else 0.0
            out.append(rate + (1 - rate) * later)
    return out[0], out[1], out[2]


class _Calendar:
    """Local days of the provider as epoch seconds; day 0 is the start date."""

    def __init__(self, start: date, days: int, tz: ZoneInfo) -> None:
        self.start = start
        self.tz = tz
        self.days = days
        self.start_weekday = start.weekday()
        self._midnight: list[int] = []
        self._extend(days + 60)
        self.first = self._midnight[0]
        self.end = self._midnight[days]

    def _extend(self, day: int) -> None:
        for index in range(len(self._midnight), day + 2):
            local = datetime.combine(self.start + timedelta(days=index), time(0), self.tz)
            self._midnight.append(int(local.timestamp()))

    def midnight(self, day: int) -> int:
        if day + 1 >= len(self._midnight):
            self._extend(day + 30)
        return self._midnight[day]

    def at(self, day: int, hour: float) -> int:
        """A time on local day ``day`` at ``hour`` of the local day (DST days stretch or shrink)."""
        begin = self.midnight(day)
        return begin + int(hour * (self._midnight[day + 1] - begin) / 24)

    def day_of(self, ts: int) -> int:
        if ts >= self._midnight[-1]:
            self._extend(int((ts - self.first) // DAY) + 2)
        return bisect_right(self._midnight, ts) - 1

    def weekday(self, day: int) -> bool:
        return (self.start_weekday + day) % 7 < 5

    def weekday_after(self, day: int, count: int) -> int:
        """The ``count``-th weekday strictly after ``day`` (0 gives ``day`` or the next weekday)."""
        if count == 0:
            while not self.weekday(day):
                day += 1
            return day
        while count:
            day += 1
            if self.weekday(day):
                count -= 1
        return day


# One generated fact about a client, before publication: (time, type, source, data).
_Raw = tuple[int, str, str, dict[str, Any]]
# One output line with its place in arrival order: (arrival, client, sequence, line).
_Line = tuple[int, int, int, bytes]

_ENCOUNTER_KIND: Final = _table({"psychiatric": 0.6, "medical": 0.25, "observation": 0.15})


class _Client:
    """The care one client receives over the period, drawn from the client's own stream."""

    def __init__(self, world: _World, ci: int, rng: random.Random) -> None:
        self.cal = world.calendar
        self.ci = ci
        self.rng = rng
        self.team = _pick(rng, world.team_table)
        self.model = world.models[self.team]
        self.hospital = rng.choice(tuple(HOSPITALS))
        self.events: list[_Raw] = []
        self.regular: list[_Raw] = []  # ongoing appointments, dropped while in hospital or awaiting follow-up
        self.suppressed: list[tuple[int, int]] = []
        self.contacts = 0
        self.encounters = 0
        self.crises = 0
        self.referral_id: str | None = None

    def life(self) -> list[_Raw]:
        engaged = self._referral()
        if engaged is not None:
            self._ongoing(engaged)
        admissions = self._crises()
        died = self._encounters(admissions)
        events = self.events
        for raw in self.regular:
            if not any(lo <= raw[0] <= hi for lo, hi in self.suppressed):
                events.append(raw)
        first, end = self.cal.first, self.cal.end
        last = end if died is None else min(end, died + 1)
        return [raw for raw in events if first <= raw[0] < last]

    def _contact(self, ts: int, status: str, mode: str, *, regular: bool = False) -> None:
        self.contacts += 1
        data: dict[str, Any] = {
            "contact_id": f"CT-{self.ci:06d}-{self.contacts:04d}",
            "team": self.team,
            "status": status,
            "mode": mode,
        }
        if self.referral_id is not None and self.rng.random() < 0.5:
            data["referral_id"] = self.referral_id
        (self.regular if regular else self.events).append((ts, "contact", EHR_SOURCE, data))

    def _business(self, day: int) -> int:
        return self.cal.at(day, self.rng.uniform(8.5, 17.5))

    def _referral(self) -> int | None:
        """A referral and its first contact, or a client already on the caseload.

        Returns the time of the first attended contact, if there is one.
        """
        rng, cal = self.rng, self.cal
        if rng.random() < 0.4:
            engaged = self._business(cal.weekday_after(rng.randrange(min(14, cal.days)), 0))
            self._contact(engaged, "attended", _pick(rng, CONTACT_MODE))
            return engaged
        referral_id = self.referral_id = f"REF-{self.ci:06d}-1"
        urgency = _pick(rng, URGENCY_MIX)
        day = rng.randrange(cal.days)
        if urgency == "emergency":
            referred = cal.at(day, rng.uniform(0, 24))
        else:
            day = cal.weekday_after(day, 0)
            referred = self._business(day)
        data: dict[str, Any] = {"referral_id": referral_id, "team": self.team, "urgency": urgency}
        if rng.random() < 0.85:
            data["referral_source"] = _pick(rng, REFERRAL_SOURCES)
        self.events.append((referred, "referral.received", EHR_SOURCE, data))
        outcome = rng.random()
        if outcome < 0.04:
            self._close(self._business(cal.weekday_after(day, _randint(rng, 1, 8))), "declined")
            return None
        if outcome < 0.11:  # lost before contact; most are closed, the rest stay open
            if rng.random() < 0.6:
                self._close(self._business(cal.weekday_after(day + _randint(rng, 28, 56), 0)), "no_contact")
            return None
        within = rng.random() < self.model.seen_at(day, urgency)
        engaged = self._first_contact(day, referred, urgency, within)
        if rng.random() < 0.18:
            missed = self._missed_first(day, referred, engaged, urgency)
            if missed is not None:
                self._contact(missed, "did_not_attend", _pick(rng, CONTACT_MODE))
        self._contact(
            engaged, "attended", "face_to_face" if urgency == "emergency" else _pick(rng, FOLLOWUP_MODE)
        )
        return engaged

    def _close(self, ts: int, reason: str) -> None:
        data = {"referral_id": self.referral_id, "reason": reason}
        self.events.append((ts, "referral.closed", EHR_SOURCE, data))

    def _first_contact(self, day: int, referred: int, urgency: str, within: bool) -> int:
        rng, cal = self.rng, self.cal
        if urgency == "emergency":
            hours = rng.uniform(0.5, 3.9) if within else rng.uniform(4.5, 72)
            return referred + int(hours * HOUR)
        if urgency == "urgent":
            if within:
                close_of_day = cal.at(day, 17.5)
                if close_of_day - referred > HOUR and rng.random() < 0.3:
                    return _randint(rng, referred + HOUR // 2, close_of_day)
                return self._business(cal.weekday_after(day, 1))
            # three weekdays or more, so that a public holiday cannot bring it back within target
            return self._business(cal.weekday_after(day, _randint(rng, 3, 8)))
        count = _randint(rng, 1, 10) if within else _randint(rng, 13, 45)
        return self._business(cal.weekday_after(day, count))

    def _missed_first(self, day: int, referred: int, seen: int, urgency: str) -> int | None:
        """A missed first appointment between referral and first attended contact, if one fits."""
        rng, cal = self.rng, self.cal
        if urgency == "emergency":
            return referred + int((seen - referred) * rng.uniform(0.2, 0.8))
        days = [d for d in range(day + 1, cal.day_of(seen)) if cal.weekday(d)]
        return self._business(rng.choice(days)) if days else None

    def _ongoing(self, engaged: int) -> None:
        rng, cal = self.rng, self.cal
        ends = engaged + int(max(21.0, rng.expovariate(1 / 240)) * DAY)
        gap = rng.uniform(4, 12)
        day = cal.day_of(engaged)
        while True:
            day = cal.weekday_after(day + max(1, round(rng.gauss(gap, gap / 4))), 0)
            ts = self._business(day)
            if ts >= ends or ts >= cal.end:
                break
            self._contact(ts, _pick(rng, CONTACT_STATUS), _pick(rng, CONTACT_MODE), regular=True)
        if self.referral_id is not None and ends < cal.end:
            self._close(ends, _pick(rng, CLOSE_AFTER_CARE))

    def _crises(self) -> list[int]:
        """Crisis chains; returns the times of the admissions some crises lead to."""
        rng, cal = self.rng, self.cal
        kind = rng.random()
        frequent = kind < 0.02
        rate = (5.0 if frequent else 1.2 if kind < 0.17 else 0.04) / 365
        admissions: list[int] = []
        ts = cal.first + int(rng.expovariate(rate) * DAY)
        while ts < cal.end:
            setting = _pick(rng, CRISIS_SETTING)
            self.crises += 1
            data: dict[str, Any] = {"crisis_id": f"CR-{self.ci:06d}-{self.crises:03d}", "setting": setting}
            if rng.random() < CRISIS_TEAM[setting]:
                data["team"] = self.team
            source = CRISIS_LINE_SOURCE if setting == "crisis_line" else EHR_SOURCE
            self.events.append((ts, "crisis", source, data))
            if rng.random() < CRISIS_ADMIT[setting]:
                admissions.append(ts + int(rng.uniform(2, 12) * HOUR))
            if rng.random() < self.model.repeat_crisis_at(cal.day_of(ts), frequent):
                ts += int(rng.uniform(0.25, 29.5) * DAY)
            else:
                # the next episode starts after the 30-day window: repeats are only the chained ones
                ts += int((30.5 + rng.expovariate(rate)) * DAY)
        return admissions

    def _encounters(self, triggered: list[int]) -> int | None:
        """Hospital stays in time order; returns the time of death, if the client died."""
        rng, cal = self.rng, self.cal
        rate = (1.0 if rng.random() < 0.10 or len(triggered) > 1 else 0.03) / 365
        starts = [(ts, True) for ts in triggered]
        ts = cal.first + int(rng.expovariate(rate) * DAY)
        while ts < cal.end:
            starts.append((ts, False))
            ts += int(rng.expovariate(rate) * DAY)
        starts.sort()
        blocked = cal.first
        for first_admitted, from_crisis in starts:
            if first_admitted < blocked:
                continue
            if first_admitted >= cal.end:
                break
            admitted: int | None = first_admitted
            kind = "psychiatric" if from_crisis else _pick(rng, _ENCOUNTER_KIND)
            while admitted is not None:
                discharged, disposition = self._stay(admitted, kind)
                if disposition == "died":
                    return discharged
                if kind != "psychiatric" or disposition in INELIGIBLE_DISPOSITIONS:
                    self.suppressed.append((admitted, discharged))
                    blocked = discharged + DAY
                    break
                # no other admission inside the 30-day window: readmissions are only the drawn ones
                blocked = cal.midnight(cal.day_of(discharged) + 31)
                admitted = self._follow_up(admitted, discharged)
        return None

    def _stay(self, admitted: int, kind: str) -> tuple[int, str]:
        rng, cal = self.rng, self.cal
        facility = self.hospital if rng.random() < 0.8 else rng.choice(tuple(HOSPITALS))
        self.encounters += 1
        source = f"hospital/{facility}"
        base: dict[str, Any] = {
            "encounter_id": f"{HOSPITALS[facility]}{self.ci:06d}{self.encounters:03d}",
            "facility": facility,
            "setting": "observation" if kind == "observation" else "inpatient",
            "psychiatric": kind == "psychiatric" or (kind == "observation" and rng.random() < 0.5),
        }
        self.events.append((admitted, "admission", source, base))
        if kind == "observation":
            discharged = admitted + int(rng.uniform(6, 40) * HOUR)
        else:
            days = (
                _randint(rng, 1, 8)
                if kind == "medical"
                else max(1, round(rng.lognormvariate(math.log(10), 0.7)))
            )
            discharged = cal.at(cal.day_of(admitted) + days, rng.uniform(9, 18))
        disposition = _pick(rng, PSYCH_DISPOSITION if kind == "psychiatric" else OTHER_DISPOSITION)
        data = {**base, "disposition": disposition}
        if kind == "psychiatric" and rng.random() < 0.6:
            data["team"] = self.team
        self.events.append((discharged, "discharge", source, data))
        return discharged, disposition

    def _follow_up(self, admitted: int, discharged: int) -> int | None:
        """Follow-up (or not) of an eligible discharge; returns the readmission time, if any."""
        rng, cal, model = self.rng, self.cal, self.model
        d = cal.day_of(discharged)
        readmit_day = (
            d + 1 + int(29.999 * rng.random() ** 1.6) if rng.random() < model.readmission_at(d) else None
        )
        within_3, within_7, within_30 = model.followup_at(d)
        u = rng.random()
        follow_day: int | None = None
        if u < within_3:
            follow_day = d + _randint(rng, 1, 3)
        elif u < within_7:
            follow_day = d + _randint(rng, 4, 7)
        elif u < within_30:
            follow_day = d + _randint(rng, 8, 30)
        if follow_day is not None and readmit_day is not None and follow_day >= readmit_day:
            follow_day = None  # back in hospital before the follow-up was due
        last = follow_day if follow_day is not None else d + 8
        if last > d + 1 and rng.random() < 0.12:
            self._contact(
                cal.at(_randint(rng, d + 1, last - 1), rng.uniform(9, 17)),
                "did_not_attend",
                _pick(rng, FOLLOWUP_MODE),
            )
        if follow_day is not None:
            followed = cal.at(follow_day, rng.uniform(9, 17.5))
            self.suppressed.append((admitted, followed))
            self._contact(followed, "attended", _pick(rng, FOLLOWUP_MODE))
        else:
            self.suppressed.append((admitted, cal.midnight(d + 31)))
        return None if readmit_day is None else cal.at(readmit_day, rng.uniform(0, 24))


def _event_id(rng: random.Random) -> str:
    """A random UUID-shaped id (unique within a source by chance, like a publisher's UUIDs)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class _World:
    """Shared state of one run: calendar, team models, and publication of client events."""

    def __init__(self, options: SimulationOptions) -> None:
        self.options = options
        self.tz = ZoneInfo(options.tz)
        self.calendar = _Calendar(options.start, options.days, self.tz)
        self.models = {
            team: _TeamModel(
                random.Random(f"{options.seed}/team/{team}"),
                [
                    i
                    for i in (*options.injections, *(c.injection for c in options.changes))
                    if i is not None and i.team == team
                ],
            )
            for team in options.teams
        }
        weights = random.Random(f"{options.seed}/weights")
        self.team_table = _table({team: weights.uniform(0.8, 1.2) for team in options.teams})
        self.max_delay = int(options.max_delay.total_seconds())
        self.encode = msgspec.json.Encoder().encode

    def lines(self) -> list[_Line]:
        out: list[_Line] = []
        for ci in range(1, self.options.clients + 1):
            rng = random.Random(f"{self.options.seed}/client/{ci}")
            raws = _Client(self, ci, rng).life()
            raws.sort(key=lambda raw: raw[0])
            self._publish(ci, rng, raws, out)
        for number, change in enumerate(self.options.changes):
            out.append((self.calendar.midnight(change.start_day), 0, number, self._change(change)))
        out.sort()
        return out

    def _change(self, change: RecordedChange) -> bytes:
        """The ``service.change`` event of ``change`` (published as it takes effect)."""
        return self.encode(
            {
                "specversion": "1.0",
                "id": f"change-{change.change_id}",
                "source": CHANGE_SOURCE,
                "type": "service.change",
                "time": self._time(self.calendar.midnight(change.start_day)),
                "data": {
                    "change_id": change.change_id,
                    "team": change.team,
                    "measures": [change.measure],
                    "description": f"simulated change to {change.measure} from week {change.week}",
                },
            }
        )

    def _time(self, ts: int) -> str:
        return datetime.fromtimestamp(ts, self.tz).isoformat()

    def _delay(self, rng: random.Random) -> int:
        """Publication delay: most within minutes, some hours, a tail up to the lateness bound."""
        bound = self.max_delay
        if self.options.beyond_lateness_fraction and rng.random() < self.options.beyond_lateness_fraction:
            return _randint(rng, bound + 1, max(bound * 3, bound + HOUR))
        u = rng.random()
        if u < 0.80:
            delay = _randint(rng, 0, 300)
        elif u < 0.95:
            delay = _randint(rng, 300, 6 * HOUR)
        else:
            delay = _randint(rng, min(6 * HOUR, bound), bound)
        return min(delay, bound)

    def _publish(self, ci: int, rng: random.Random, raws: list[_Raw], out: list[_Line]) -> None:
        options = self.options
        subject = f"MRN-{ci:06d}"
        end = self.calendar.end
        seq = 0
        for ts, kind, source, data in raws:
            event_id = _event_id(rng)
            event = {
                "specversion": "1.0",
                "id": event_id,
                "source": source,
                "type": kind,
                "time": self._time(ts),
                "subject": subject,
                "data": data,
            }
            line = self.encode(event)
            arrival = ts + self._delay(rng)
            out.append((arrival, ci, seq, line))
            seq += 1
            if options.duplicate_fraction and rng.random() < options.duplicate_fraction:
                latest = max(arrival, ts + self.max_delay)
                out.append((_randint(rng, arrival, min(latest, arrival + 6 * HOUR)), ci, seq, line))
                seq += 1
            if options.cancel_fraction and kind in CANCELLABLE and rng.random() < options.cancel_fraction:
                cancelled = ts + _randint(rng, 10 * 60, 2 * DAY)
                if cancelled < end:
                    cancel = {
                        "specversion": "1.0",
                        "id": _event_id(rng),
                        "source": source,
                        "type": "cancel",
                        "time": self._time(cancelled),
                        "subject": subject,
                        "data": {"cancels": event_id, "reason": "entered_in_error"},
                    }
                    # a cancel is published after what it cancels, and within its own lateness bound
                    published = max(cancelled + self._delay(rng), arrival + 1)
                    out.append((published, ci, seq, self.encode(cancel)))
                    seq += 1
            if options.bad_fraction and rng.random() < options.bad_fraction:
                out.append((arrival, ci, seq, self._bad(rng, event, line)))
                seq += 1

    def _bad(self, rng: random.Random, event: dict[str, Any], line: bytes) -> bytes:
        """A malformed variant of ``event`` with a fresh id, for dead-letter testing."""
        flaw = rng.randrange(4)
        if flaw == 0:
            return line[: len(line) // 2]
        bad = {**event, "id": _event_id(rng)}
        if flaw == 1:
            bad["type"] = "referral.updated"
        elif flaw == 2:
            bad["type"] = "referral.received"
            bad["data"] = {
                "referral_id": f"REF-BAD-{rng.randrange(10**6):06d}",
                "team": "north",
                "urgency": "soon",
            }
        else:
            del bad["time"]
        return self.encode(bad)


def generate(options: SimulationOptions) -> Iterator[bytes]:
    """Yield the simulated stream: one CloudEvents JSON object per item, no trailing newline.

    Items come in arrival order (event time plus publication delay; ties in a fixed order),
    so the same options give the same bytes. The whole run is built in memory before the
    first item is yielded (a year for a mid-sized provider is some tens of megabytes).
    """
    for _arrival, _client, _seq, line in _World(options).lines():
        yield line


def write(options: SimulationOptions, out: BinaryIO) -> int:
    """Write the simulated stream to ``out`` as JSON lines; returns the number of lines."""
    count = 0
    for line in generate(options):
        out.write(line)
        out.write(b"\n")
        count += 1
    return count

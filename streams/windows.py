"""Stage 2: per-team rolling windows over measure observations (DOMAIN.md section 3).

:class:`TeamWindows` upserts observations by ``key`` (a retraction removes the key) and keeps:

* whole-history totals per team and measure (numerator, denominator) and a histogram of
  waits in hundredths of a day, for replay reports;
* daily counts by the index event's local day, for trailing windows (live gauges) and for
  weekly series (SPC), kept for ``weeks`` weeks;
* whole-history counts per team, measure, case-mix stratum (the observation's ``stratum``)
  and week, for the board's case-mix comparison and value ledger (not pruned: a few cells
  per week);
* the per-key entries themselves, only as long as a revision can still arrive (the core's
  horizon; for referral measures plus ``max_referral_age_days``), so a revision replaces
  the old value instead of adding to it. Their keys are also filed in weekly buckets of the
  index time, so pruning drops whole buckets (the cost grows with the buckets dropped, not
  with every entry held); an entry leaves with its week, up to a week after its own cut.

One instance may hold any set of teams. The faust app keeps one instance per team (keyed by
team, so every observation of a team goes to the same instance, retractions included);
``*`` is then the merge on read: :meth:`TeamWindows.merged` (across workers, the weekly series
of ``*`` is the sum of every team's :meth:`TeamWindows.weekly_counts`,
:meth:`TeamWindows.of_weekly_counts`: ``streams.live_overall``). The replay keeps one instance
for all teams, and every query also answers for ``*`` over the teams it holds.

Quantiles are nearest rank (value number ceil(p * n) of the sorted values) on waits rounded to
hundredths of a day; rounding is monotone, so this equals rounding the exact quantile.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import msgspec

from schemas.model import ALL_TEAMS
from streams.calendar import US_PER_DAY, to_us
from streams.core import RATE_MEASURES, CoreConfig, Observation

WAIT_MEASURE = "referral_wait_days"
_REFERRAL_MEASURES = frozenset({"seen_within_target", "lost_before_contact", "first_contact_dna", WAIT_MEASURE})
_BUCKET_US = 7 * US_PER_DAY  # entries are filed by week of their index time (see prune)
_Buckets = tuple[dict[int, dict[str, None]], dict[int, dict[str, None]]]  # (other, referral): week -> keys


# Days by which the trailing window of a closed-window measure ends before today: a discharge
# on day d is final once its window [d+1, d+b] has closed, i.e. from day d+b+1.
_CLOSED_WINDOW_LAG = {"followup_72h": 4, "followup_7d": 8, "followup_30d": 31, "readmission_30d": 31}


@dataclass(frozen=True, slots=True)
class RateRow:
    measure: str
    team: str
    numerator: int
    denominator: int


@dataclass(frozen=True, slots=True)
class StratumRow:
    measure: str
    team: str
    stratum: str
    numerator: int
    denominator: int


@dataclass(frozen=True, slots=True)
class StratumWeek:
    measure: str
    stratum: str
    week_start: date
    numerator: int
    denominator: int


@dataclass(frozen=True, slots=True)
class WaitRow:
    measure: str
    team: str
    count: int
    p50: float | None
    p90: float | None


@dataclass(frozen=True, slots=True)
class WeeklyPoint:
    week_start: date
    numerator: int
    denominator: int


class _Entry(msgspec.Struct, array_like=True, gc=False):  # atoms only: never in a cycle
    measure: str
    team: str
    day: int
    t: int
    num: bool
    wait: int  # hundredths of a day, -1 when not a wait
    stratum: str = ""


class _State(msgspec.Struct):
    entries: dict[str, _Entry] = msgspec.field(default_factory=dict)
    totals: dict[str, dict[str, list[int]]] = msgspec.field(default_factory=dict)
    waits: dict[str, dict[int, int]] = msgspec.field(default_factory=dict)
    daily: dict[str, dict[str, dict[int, list[int]]]] = msgspec.field(default_factory=dict)
    # team -> measure -> stratum -> Monday's day ordinal -> [numerator, denominator]
    strata: dict[str, dict[str, dict[str, dict[int, list[int]]]]] = msgspec.field(default_factory=dict)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_State)


def nearest_rank(sorted_values: list[int], p: float) -> int:
    """Value number ceil(p x n) (1-based) of ``sorted_values``; the list must be non-empty."""
    rank = max(1, math.ceil(p * len(sorted_values) - 1e-9))
    return sorted_values[rank - 1]


def _quantiles(hist: dict[int, int]) -> tuple[int, float | None, float | None]:
    n = sum(hist.values())
    if n == 0:
        return 0, None, None
    out: list[float] = []
    for p in (0.5, 0.9):
        rank = max(1, math.ceil(p * n - 1e-9))
        seen = 0
        for value in sorted(hist):
            seen += hist[value]
            if seen >= rank:
                out.append(value / 100)
                break
    return n, out[0], out[1]


class TeamWindows:
    """Upsert/retract store of observations with rates, waits and weekly series. Not thread-safe."""

    __slots__ = ("config", "weeks", "_s", "_retain_us", "_referral_retain_us", "_buckets")

    def __init__(self, config: CoreConfig, weeks: int = 104) -> None:
        self.config = config
        self.weeks = weeks
        self._s = _State()
        self._retain_us = config.horizon_us + US_PER_DAY * (config.window_days + 1)
        self._referral_retain_us = self._retain_us + config.max_referral_age_us
        # the entries' keys by week (not serialised: rebuilt from the entries when needed)
        self._buckets: _Buckets | None = ({}, {})

    def _filed(self) -> _Buckets:
        buckets = self._buckets
        if buckets is None:
            buckets = self._buckets = ({}, {})
            for key, e in self._s.entries.items():
                self._file(buckets, key, e)
        return buckets

    @staticmethod
    def _file(buckets: _Buckets, key: str, e: _Entry) -> None:
        buckets[e.measure in _REFERRAL_MEASURES].setdefault(e.t // _BUCKET_US, {})[key] = None

    # -- updates --------------------------------------------------------------------------------

    def apply(self, obs: Observation) -> None:
        """Upsert ``obs`` by key, or remove the key when ``obs.retracted``."""
        s = self._s
        old = s.entries.get(obs.key)
        if old is not None:
            if obs.retracted and old.team != obs.team:
                return  # a retraction for a team this key has already left
            self._count(old, -1)
            del s.entries[obs.key]
            bucket = self._filed()[old.measure in _REFERRAL_MEASURES].get(old.t // _BUCKET_US)
            if bucket is not None:
                bucket.pop(obs.key, None)
        if obs.retracted:
            return
        t = to_us(obs.index_time)
        wait = -1 if obs.wait_days is None else round(obs.wait_days * 100)
        entry = _Entry(obs.measure, obs.team, self.config.calendar.day_of(t), t, obs.numerator, wait, obs.stratum)
        s.entries[obs.key] = entry
        self._file(self._filed(), obs.key, entry)
        self._count(entry, 1)

    def _count(self, e: _Entry, sign: int) -> None:
        s = self._s
        if e.wait >= 0:
            hist = s.waits.setdefault(e.team, {})
            n = hist.get(e.wait, 0) + sign
            if n:
                hist[e.wait] = n
            else:
                del hist[e.wait]
            return
        tot = s.totals.setdefault(e.team, {}).setdefault(e.measure, [0, 0])
        tot[0] += sign * e.num
        tot[1] += sign
        week = e.day - date.fromordinal(e.day).weekday()
        weeks = s.strata.setdefault(e.team, {}).setdefault(e.measure, {}).setdefault(e.stratum, {})
        cell = weeks.setdefault(week, [0, 0])
        cell[0] += sign * e.num
        cell[1] += sign
        day = s.daily.setdefault(e.team, {}).setdefault(e.measure, {}).setdefault(e.day, [0, 0])
        day[0] += sign * e.num
        day[1] += sign

    def prune(self, watermark: datetime) -> None:
        """Forget entries no revision can reach any more (whole weeks of them) and daily
        counts older than the weekly series kept. Call now and then (both
        drivers do when the watermark enters a local day, :class:`streams.runner.DayBoundary`);
        what is forgotten is never read again, so when it is called changes no answer."""
        w = to_us(watermark)
        s = self._s
        for referral, cut in enumerate((w - self._retain_us, w - self._referral_retain_us)):
            buckets = self._filed()[referral]
            # a week whose every instant is before the cut
            for week in [b for b in buckets if (b + 1) * _BUCKET_US <= cut]:
                for key in buckets.pop(week):
                    del s.entries[key]
        oldest = self.config.calendar.day_of(w) - 7 * (self.weeks + 1) - max(
            self.config.final_lag_days(m) for m in RATE_MEASURES
        )
        for by_measure in s.daily.values():
            for measure, days in by_measure.items():
                if days and min(days) < oldest:
                    by_measure[measure] = {d: c for d, c in days.items() if d >= oldest}

    # -- queries --------------------------------------------------------------------------------

    def teams(self) -> list[str]:
        """Teams with any observation, sorted."""
        s = self._s
        return sorted(set(s.totals) | set(s.waits))

    def _team_list(self, extra: Iterable[str] | None) -> list[str]:
        held = set(self.teams())
        if extra is not None:
            held.update(extra)
        held.discard(ALL_TEAMS)
        return sorted(held)

    def rates(
        self, now: datetime, trailing_days: int | None = None, *, teams: Iterable[str] | None = None
    ) -> list[RateRow]:
        """(numerator, denominator) per rate measure for every team held and ``*``.

        ``trailing_days`` None: the whole history (reports); N: index events on the local days
        (day(now) - N, day(now)], moved back by the measure's outcome window for follow-up and
        readmission measures (``_CLOSED_WINDOW_LAG``), whose denominators hold only discharges
        whose window has closed: a plain trailing 28 days would hold no 30-day outcome at all.
        Rows are ordered by measure (section 3 order), then ``*``, then teams sorted; zero rows
        are included. ``teams`` adds teams with no observations.
        """
        s = self._s
        teams = self._team_list(teams)
        sums: dict[tuple[str, str], list[int]] = {}
        if trailing_days is None:
            for team, by_measure in s.totals.items():
                for measure, (num, den) in by_measure.items():
                    sums[(team, measure)] = [num, den]
        else:
            today = self.config.calendar.day_of(to_us(now))
            for team, daily in s.daily.items():
                for measure, days in daily.items():
                    last = today - _CLOSED_WINDOW_LAG.get(measure, 0)
                    first = last - trailing_days + 1
                    acc = [0, 0]
                    for d, (num, den) in days.items():
                        if first <= d <= last:
                            acc[0] += num
                            acc[1] += den
                    sums[(team, measure)] = acc
        rows = []
        for measure in RATE_MEASURES:
            total = [0, 0]
            per_team = []
            for team in teams:
                num, den = sums.get((team, measure), (0, 0))
                total[0] += num
                total[1] += den
                per_team.append(RateRow(measure, team, num, den))
            rows.append(RateRow(measure, ALL_TEAMS, total[0], total[1]))
            rows.extend(per_team)
        return rows

    def strata(self) -> list[StratumRow]:
        """Whole-history (numerator, denominator) per rate measure, team and stratum, for the
        cells with a denominator (a cell emptied by retractions is left out, so the replay's
        windows and windows rebuilt from the latest observations agree). Ordered by measure
        (section 3 order), team, stratum; no ``*`` rows."""
        rows = []
        for measure in RATE_MEASURES:
            for team in sorted(self._s.strata):
                for stratum, weeks in sorted(self._s.strata[team].get(measure, {}).items()):
                    num = sum(c[0] for c in weeks.values())
                    den = sum(c[1] for c in weeks.values())
                    if den:
                        rows.append(StratumRow(measure, team, stratum, num, den))
        return rows

    def strata_weeks(self) -> list[StratumWeek]:
        """Whole-history weekly (Monday-start, by the index event's local day) counts per rate
        measure and stratum for ``*`` (all teams held), weeks with a denominator only, ordered
        by measure, stratum, week. Weeks are not checked for being final (the caller picks
        the weeks it compares)."""
        sums: dict[tuple[str, str, int], list[int]] = {}
        for by_measure in self._s.strata.values():
            for measure, by_stratum in by_measure.items():
                for stratum, weeks in by_stratum.items():
                    for week, (num, den) in weeks.items():
                        acc = sums.setdefault((measure, stratum, week), [0, 0])
                        acc[0] += num
                        acc[1] += den
        order = {m: i for i, m in enumerate(RATE_MEASURES)}
        return [
            StratumWeek(m, st, date.fromordinal(wk), num, den)
            for (m, st, wk), (num, den) in sorted(sums.items(), key=lambda kv: (order[kv[0][0]], kv[0][1], kv[0][2]))
            if den
        ]

    def waits(
        self, now: datetime | None = None, trailing_days: int | None = None, *, teams: Iterable[str] | None = None
    ) -> list[WaitRow]:
        """referral_wait_days count, p50 and p90 (days, two decimals) for ``*`` then each team.

        ``trailing_days`` None: whole history; else referrals on the local days
        (day(now) - N, day(now)] (``now`` required). ``teams`` adds teams with no waits.
        """
        s = self._s
        teams = self._team_list(teams)
        hists: dict[str, dict[int, int]] = {}
        if trailing_days is None:
            hists = {team: dict(h) for team, h in s.waits.items()}
        else:
            if now is None:
                raise ValueError("waits over a trailing window need now")
            last = self.config.calendar.day_of(to_us(now))
            first = last - trailing_days + 1
            for e in s.entries.values():
                if e.wait >= 0 and first <= e.day <= last:
                    h = hists.setdefault(e.team, {})
                    h[e.wait] = h.get(e.wait, 0) + 1
        merged: dict[int, int] = {}
        for h in hists.values():
            for v, c in h.items():
                merged[v] = merged.get(v, 0) + c
        rows = [WaitRow(WAIT_MEASURE, ALL_TEAMS, *_quantiles(merged))]
        rows.extend(WaitRow(WAIT_MEASURE, team, *_quantiles(hists.get(team, {}))) for team in teams)
        return rows

    def weekly_series(self, team: str, measure: str, watermark: datetime) -> list[WeeklyPoint]:
        """Weekly (Monday-start, by the index event's local day) counts of a rate measure for
        ``team`` (or ``*``), oldest first, from the first week with data to the last final week
        (every observation of the week decided by ``watermark``), empty weeks as zeros; at
        most ``weeks`` points."""
        s = self._s
        per_week = _per_week(s.daily.values() if team == ALL_TEAMS else [s.daily.get(team, {})], measure)
        if not per_week:
            return []
        cal = self.config.calendar
        lag = self.config.final_lag_days(measure)
        w = to_us(watermark)
        week = cal.day_of(w)
        week -= date.fromordinal(week).weekday()
        while cal.end_of_day(week + 6 + lag) > w:
            week -= 7
        first = max(min(per_week), week - 7 * (self.weeks - 1))
        points = []
        wk = first
        while wk <= week:
            num, den = per_week.get(wk, (0, 0))
            points.append(WeeklyPoint(date.fromordinal(wk), num, den))
            wk += 7
        return points

    def weekly_counts(self) -> dict[str, dict[int, list[int]]]:
        """Per rate measure, the weekly counts (Monday's day ordinal -> [numerator,
        denominator]) summed over every team held, weeks with a denominator only: all that
        :meth:`weekly_series` of ``*`` reads. Weeks are not checked for being final."""
        daily = self._s.daily.values()
        return {m: per_week for m in RATE_MEASURES if (per_week := _per_week(daily, m))}

    # -- (de)serialisation and merging -------------------------------------------------------------

    def to_bytes(self) -> bytes:
        return _encoder.encode(self._s)

    @classmethod
    def from_bytes(cls, raw: bytes, config: CoreConfig, weeks: int = 104) -> TeamWindows:
        windows = cls(config, weeks)
        windows._s = _decoder.decode(raw)
        windows._buckets = None
        return windows

    @classmethod
    def merged(cls, parts: Iterable[TeamWindows], config: CoreConfig, weeks: int = 104) -> TeamWindows:
        """One read-only view over several instances holding disjoint teams (``*`` on read)."""
        out = cls(config, weeks)
        out._buckets = None  # filed only if it is ever changed
        s = out._s
        for part in parts:
            p = part._s
            s.entries.update(p.entries)
            s.totals.update(p.totals)
            s.waits.update(p.waits)
            s.daily.update(p.daily)
            s.strata.update(p.strata)
        return out

    @classmethod
    def of_weekly_counts(
        cls, shares: Iterable[Mapping[str, Mapping[int, Sequence[int]]]], config: CoreConfig, weeks: int = 104
    ) -> TeamWindows:
        """A read-only instance whose weekly series of ``*`` are the sums of ``shares``
        (:meth:`weekly_counts` of instances holding disjoint teams). It answers
        :meth:`weekly_series` of ``*`` (hence the rules' ``*`` charts) and nothing else: it
        holds no team, no entry and no day other than Mondays."""
        out = cls(config, weeks)
        out._buckets = None
        summed: dict[str, dict[int, list[int]]] = {}
        for share in shares:
            for measure, per_week in share.items():
                cells = summed.setdefault(measure, {})
                for week, (num, den) in per_week.items():
                    acc = cells.setdefault(week, [0, 0])
                    acc[0] += num
                    acc[1] += den
        out._s.daily[ALL_TEAMS] = summed
        return out


def _per_week(sources: Iterable[dict[str, dict[int, list[int]]]], measure: str) -> dict[int, list[int]]:
    """Monday's day ordinal -> [numerator, denominator] of ``measure`` summed over the daily
    counts of ``sources`` (per team: measure -> day -> counts), days with a denominator only."""
    per_week: dict[int, list[int]] = {}
    for team_daily in sources:
        for d, (num, den) in team_daily.get(measure, {}).items():
            if den == 0:
                continue
            wk = d - date.fromordinal(d).weekday()
            acc = per_week.setdefault(wk, [0, 0])
            acc[0] += num
            acc[1] += den
    return per_week


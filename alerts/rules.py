"""System (churn) alert rules: RateOffTarget and SpecialCause, per team and measure.

The decisions are pure functions over plain inputs (rate rows, weekly points): see
:func:`rate_finding`, :func:`special_cause_finding`, :func:`system_findings` and
:func:`transitions`. :class:`SystemAlertRules` adapts them to the core's ``TeamWindows``
(duck-typed through :class:`WindowsView`) and keeps which system alerts are firing, so it
can return *transitions* only: a firing alert when a finding appears, the same alert with
``ends_at`` when it goes away.

Identity of a system alert: ``alertname``, ``team``, ``measure``, ``severity``. The SPC rule
that fired is an annotation, not a label, so the alert does not flap between identities when
a different rule carries the signal from one week to the next. RateOffTarget is a
``warning``; SpecialCause is ``info``, a prompt to look (the MDC rules alarm on noise now and
then, see docs/spc.md).

:meth:`SystemAlertRules.charts` draws the Making Data Count chart of every team and rate
measure (the report's ``"spc"``) with the same rules, settings and weeks as SpecialCause.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from alerts.mdc import Chart, ChartSettings, PointType, WeeklyValue, chart, latest_point, variation_icon
from alerts.model import Alert
from alerts.spc import Direction
from schemas import catalogue
from schemas.catalogue import RATE_OFF_TARGET, SPECIAL_CAUSE
from schemas.model import ALL_TEAMS

SYSTEM_SEVERITY = catalogue.SEVERITIES[RATE_OFF_TARGET][0]
SEVERITY: Mapping[str, str] = {name: catalogue.SEVERITIES[name][0] for name in catalogue.SYSTEM_ALERTS}

RATE_MEASURES: Mapping[str, Direction] = {m: Direction(catalogue.DIRECTIONS[m]) for m in catalogue.RATE_MEASURES}
"""Each rate measure of the catalogue (schemas/catalogue.py) with its improvement direction."""

_SHOWN_WEEKS = 7
# Measures whose outcome looks back at earlier events: their first weeks of data are biased
# (no history yet), so SPC starts once the look-back is covered.
LOOKBACK_DAYS: Mapping[str, int] = {"repeat_crisis_30d": 30}


class WeeklyPointLike(Protocol):
    """One final week of a measure (``streams.windows.WeeklyPoint`` has this shape)."""

    @property
    def week_start(self) -> date: ...
    @property
    def numerator(self) -> int: ...
    @property
    def denominator(self) -> int: ...


class RateRowLike(Protocol):
    """A trailing-window rate of one team and measure (``streams.windows.RateRow``)."""

    @property
    def team(self) -> str: ...
    @property
    def measure(self) -> str: ...
    @property
    def numerator(self) -> int: ...
    @property
    def denominator(self) -> int: ...


class WindowsView(Protocol):
    """What the rules read from the core's ``TeamWindows`` (positional calls only)."""

    def rates(self, now: datetime, trailing_days: int, /) -> Sequence[RateRowLike]: ...

    def weekly_series(self, team: str, measure: str, watermark: datetime, /) -> Sequence[WeeklyPointLike]: ...


@dataclass(frozen=True, slots=True)
class AlertRulesConfig:
    """What the churn rules need from settings.

    ``rebase`` maps (team, measure) to the first week of the current process: SPC limits are
    computed from the ``baseline_points`` weekly points starting at or after that date.
    ``spc_screen_outliers`` drops moving ranges at or above 3.267 x their mean before the
    limits are set (NHSRplotthedots; the MDC Excel tool does not screen).
    """

    rate_targets: Mapping[str, float]
    min_denominator: int = 10
    baseline_points: int = 12
    window_days: int = 28
    runbook_url: str = ""
    rebase: Mapping[tuple[str, str], date] = field(default_factory=dict)
    spc_min_weekly_denominator: int = 0
    spc_confirm_weeks: int = 1
    spc_screen_outliers: bool = True

    @property
    def chart_settings(self) -> ChartSettings:
        return ChartSettings(baseline_points=self.baseline_points, screen_outliers=self.spc_screen_outliers)


def parse_rebase(spec: Mapping[str, str | date]) -> dict[tuple[str, str], date]:
    """``{"north/followup_7d": "2025-04-07"}`` -> ``{("north", "followup_7d"): date(2025, 4, 7)}``."""
    parsed: dict[tuple[str, str], date] = {}
    for key, value in spec.items():
        team, sep, measure = key.rpartition("/")
        if not sep or not team:
            raise ValueError(f"rebase key {key!r} is not team/measure")
        if measure not in RATE_MEASURES:
            raise ValueError(f"rebase key {key!r}: {measure!r} is not a rate measure")
        parsed[(team, measure)] = value if isinstance(value, date) else date.fromisoformat(value)
    return parsed


@dataclass(frozen=True, slots=True)
class Finding:
    """A system alert that should be firing now, with the text to show."""

    alertname: str
    team: str
    measure: str
    annotations: Mapping[str, str]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.alertname, self.team, self.measure)


def system_labels(alertname: str, team: str, measure: str) -> dict[str, str]:
    return {"alertname": alertname, "team": team, "measure": measure, "severity": SEVERITY.get(alertname, SYSTEM_SEVERITY)}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def is_worse(value: float, target: float, direction: Direction) -> bool:
    """True when ``value`` is strictly on the worse side of ``target``."""
    return value < target if direction is Direction.HIGHER_IS_BETTER else value > target


def rate_finding(
    team: str,
    measure: str,
    numerator: int,
    denominator: int,
    target: float,
    min_denominator: int,
    window_days: int,
    runbook_url: str = "",
) -> Finding | None:
    """RateOffTarget when the trailing rate is worse than ``target`` over at least ``min_denominator``.

    Returns None when the rate meets the target (a rate equal to the target meets it) or the
    denominator is too small to say.
    """
    direction = RATE_MEASURES[measure]
    if denominator < min_denominator or denominator <= 0:
        return None
    rate = numerator / denominator
    if not is_worse(rate, target, direction):
        return None
    bound = "at least" if direction is Direction.HIGHER_IS_BETTER else "at most"
    summary = f"{measure} for team {team} is {_pct(rate)}, worse than its target of {_pct(target)}"
    description = (
        f"{measure} for team {team} over the trailing {window_days} days: {numerator} of {denominator} "
        f"= {_pct(rate)}; target {bound} {_pct(target)}; minimum denominator {min_denominator}."
    )
    return Finding(RATE_OFF_TARGET, team, measure, _annotations(summary, description, runbook_url))


def _annotations(summary: str, description: str, runbook_url: str, **extra: str) -> dict[str, str]:
    annotations = {"summary": summary, "description": description, **extra}
    if runbook_url:
        annotations["runbook_url"] = runbook_url
    return annotations


def judged_points(points: Sequence[WeeklyPointLike], min_weekly_denominator: int = 0) -> list[WeeklyValue]:
    """The weeks SPC judges: those with at least ``min_weekly_denominator`` index events (and
    at least one). A weekly rate of a handful of cases is mostly noise (one case moves it by
    10 to 25 points), and XmR limits on such weeks raise alarms most weeks, so smaller weeks
    are left out of the chart altogether (limits, patterns and the latest point)."""
    smallest = max(1, min_weekly_denominator)
    return [WeeklyValue(p.week_start, p.numerator, p.denominator) for p in points if p.denominator >= smallest]


def measure_chart(
    measure: str,
    points: Sequence[WeeklyPointLike],
    config: AlertRulesConfig,
    rebase: date | Sequence[date] | None = None,
) -> Chart:
    """The MDC chart of one team's weekly series of ``measure`` (judged weeks only), with
    ``rebase`` (one date or several) as group starts and the measure's rate target, if any,
    for the assurance icon."""
    return chart(
        judged_points(points, config.spc_min_weekly_denominator),
        RATE_MEASURES[measure],
        rebase=() if rebase is None else (rebase,) if isinstance(rebase, date) else tuple(rebase),
        settings=config.chart_settings,
        target=config.rate_targets.get(measure),
    )


def special_cause_finding(
    team: str,
    measure: str,
    points: Sequence[WeeklyPointLike],
    baseline_points: int = 12,
    rebase: date | None = None,
    runbook_url: str = "",
    min_weekly_denominator: int = 0,
    screen_outliers: bool = True,
) -> Finding | None:
    """SpecialCause when the latest judged weekly point is ``special_cause_concern`` on the
    measure's MDC chart (:mod:`alerts.mdc`, the report's ``"spc"``).

    ``points`` are final weeks in time order; only weeks with at least
    ``min_weekly_denominator`` index events are judged (:func:`judged_points`): a small week
    neither raises nor resolves an alert. ``rebase`` starts a new group. Returns None while
    the latest group's limits are trial limits (fewer than ``baseline_points`` judged points
    since the rebase or the start), or when the latest judged point is common cause or an
    improvement.
    """
    direction = RATE_MEASURES[measure]
    usable = judged_points(points, min_weekly_denominator)
    settings = ChartSettings(baseline_points=baseline_points, screen_outliers=screen_outliers)
    last = latest_point(usable, direction, () if rebase is None else (rebase,), settings)
    if last is None:
        return None
    limits = last.limits
    lower, upper = limits.lower, limits.upper
    if last.type is not PointType.CONCERN or limits.trial or lower is None or upper is None:
        return None
    group = [p for p in usable if rebase is None or p.week >= rebase]
    rule = last.rules[0]
    icon = variation_icon(last.type, direction).value
    lower_or_upper = "lower" if direction is Direction.HIGHER_IS_BETTER else "upper"
    limit_value = lower if direction is Direction.HIGHER_IS_BETTER else upper
    shown = ", ".join(f"{p.week.isoformat()} {_pct(p.value)} ({p.numerator}/{p.denominator})" for p in group[-_SHOWN_WEEKS:])
    rules_text = "; ".join(r.description for r in last.rules)
    summary = f"Special-cause concern in {measure} for team {team}: {rule.description} (variation {icon})"
    description = (
        f"Weekly {measure} for team {team}, week starting {last.point.week.isoformat()}: "
        f"{_pct(last.point.value)} ({last.point.numerator}/{last.point.denominator}). Rules: {rules_text}. "
        f"Variation icon {icon}. Baseline {baseline_points} weeks from {group[0].week.isoformat()}: "
        f"mean {_pct(limits.mean)}, process limits {_pct(lower)} to {_pct(upper)} "
        f"({lower_or_upper} limit {_pct(limit_value)}). Last weeks: {shown}."
    )
    return Finding(
        SPECIAL_CAUSE,
        team,
        measure,
        _annotations(
            summary, description, runbook_url, rule=",".join(r.value for r in last.rules), variation=icon
        ),
    )


def chart_entry(team: str, measure: str, c: Chart) -> dict[str, Any]:
    """The report's ``"spc"`` entry of one chart (docs/spc.md)."""
    return {
        "team": team,
        "measure": measure,
        "direction": c.direction.value,
        "target": c.target,
        "variation": None if c.variation is None else c.variation.value,
        "assurance": None if c.assurance is None else c.assurance.value,
        "points": [p.as_dict() for p in c.points],
    }


def system_findings(
    rows: Iterable[RateRowLike],
    series: Mapping[tuple[str, str], Sequence[WeeklyPointLike]],
    config: AlertRulesConfig,
) -> dict[tuple[str, str, str], Finding]:
    """Every system alert that should be firing, keyed by (alertname, team, measure)."""
    found: dict[tuple[str, str, str], Finding] = {}
    for row in rows:
        if row.measure not in RATE_MEASURES or row.measure not in config.rate_targets:
            continue
        finding = rate_finding(
            row.team,
            row.measure,
            row.numerator,
            row.denominator,
            config.rate_targets[row.measure],
            config.min_denominator,
            config.window_days,
            config.runbook_url,
        )
        if finding is not None:
            found[finding.key] = finding
    for (team, measure), points in series.items():
        if measure not in RATE_MEASURES:
            continue
        def judge(upto: Sequence[WeeklyPointLike], team: str = team, measure: str = measure) -> Finding | None:
            return special_cause_finding(
                team,
                measure,
                upto,
                config.baseline_points,
                config.rebase.get((team, measure)),
                config.runbook_url,
                config.spc_min_weekly_denominator,
                config.spc_screen_outliers,
            )

        finding = judge(points)
        if finding is not None and _confirmed(points, config, judge):
            found[finding.key] = finding
    return found


def _confirmed(
    points: Sequence[WeeklyPointLike],
    config: AlertRulesConfig,
    judge: Callable[[Sequence[WeeklyPointLike]], Finding | None],
) -> bool:
    """With ``spc_confirm_weeks`` = c > 1, a SpecialCause needs the c - 1 judged weeks before
    the latest to signal too (a sustained signal; MDC's rules as written are c = 1)."""
    smallest = max(1, config.spc_min_weekly_denominator)
    judged = [i for i, p in enumerate(points) if p.denominator >= smallest]
    for k in range(1, config.spc_confirm_weeks):
        if len(judged) <= k or judge(points[: judged[-1 - k] + 1]) is None:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Firing:
    """Lifecycle state of one firing system alert."""

    starts_at: datetime
    annotations: Mapping[str, str]


FiringState = Mapping[tuple[str, str, str], Firing]


def transitions(
    firing: FiringState,
    found: Mapping[tuple[str, str, str], Finding],
    now: datetime,
    teams: Iterable[str] | None = None,
) -> tuple[dict[tuple[str, str, str], Firing], list[Alert]]:
    """Compare what is firing with what should be; return the new state and the transitions.

    A new finding fires with ``starts_at=now``; a firing alert without a finding resolves with
    ``ends_at=now`` and the annotations it fired with. An alert that stays firing produces
    nothing (its changing numbers are not a transition). When ``teams`` is given, only alerts
    of those teams may resolve: the others were not evaluated this time.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    evaluated = None if teams is None else set(teams)
    state = dict(firing)
    out: list[Alert] = []
    for key, finding in sorted(found.items()):
        if key not in state:
            state[key] = Firing(starts_at=now, annotations=dict(finding.annotations))
            out.append(Alert(system_labels(*key), now, None, dict(finding.annotations)))
    for key, was in sorted(firing.items()):
        if key in found or (evaluated is not None and key[1] not in evaluated):
            continue
        del state[key]
        out.append(Alert(system_labels(*key), was.starts_at, now, dict(was.annotations)))
    return state, out


def lookback_covered(
    measure: str, points: Sequence[WeeklyPointLike], first_week: date | None
) -> list[WeeklyPointLike]:
    """``points`` without the weeks of a look-back measure (:data:`LOOKBACK_DAYS`) that start
    before its look-back is covered by data beginning in ``first_week``."""
    lookback = LOOKBACK_DAYS.get(measure, 0)
    if not lookback or first_week is None:
        return list(points)
    covered = first_week + timedelta(days=lookback)
    return [p for p in points if p.week_start >= covered]


@dataclass(frozen=True, slots=True)
class JudgedPoint:
    """A weekly point as it stood when the week was first judged (became final)."""

    week_start: date
    numerator: int
    denominator: int


class SystemAlertRules:
    """The core's ``SystemRules``: evaluates churn rules and keeps their lifecycle.

    Call :meth:`evaluate` when the watermark advances; it returns transitions only. The state
    (which system alerts fire, per team) serialises with :meth:`dump` and comes back with
    :meth:`load`, so it can live in a table keyed by team.

    SpecialCause judges each week as it stood when it was first judged: a week's outcomes can
    still be revised after the measure's finality lag (a referral open past the limit counts
    as lost until a late first contact; a correction), and a baseline of revised weeks would
    not compare like with like with a newly judged week: on simulated streams, revisions
    alone raised SpecialCause on lost_before_contact. (Kept in memory: after a worker restart,
    the weeks already final are taken as they stand then.) Weeks of a look-back measure
    (:data:`LOOKBACK_DAYS`) that start before its look-back is covered by the earliest week
    of data seen are not judged: repeat_crisis_30d's first weeks miss the crises before the
    data began, and such a baseline raised SpecialCause on every later busy week.
    """

    def __init__(self, config: AlertRulesConfig) -> None:
        self.config = config
        self._firing: dict[tuple[str, str, str], Firing] = {}
        self._judged: dict[tuple[str, str], dict[date, JudgedPoint]] = {}
        self._first_week: date | None = None

    def _as_judged(self, key: tuple[str, str], points: Sequence[WeeklyPointLike]) -> list[JudgedPoint]:
        judged = self._judged.setdefault(key, {})
        if points and (self._first_week is None or points[0].week_start < self._first_week):
            self._first_week = points[0].week_start
        points = lookback_covered(key[1], points, self._first_week)
        out = []
        for p in points:
            first = judged.get(p.week_start)
            if first is None:
                first = judged[p.week_start] = JudgedPoint(p.week_start, p.numerator, p.denominator)
            out.append(first)
        if points and len(judged) > len(points):
            oldest = points[0].week_start
            for week in [w for w in judged if w < oldest]:
                del judged[week]
        return out

    def evaluate(self, windows: WindowsView, watermark: datetime) -> list[Alert]:
        """Evaluate every team the windows know and return firing/resolved transitions."""
        rows = list(windows.rates(watermark, self.config.window_days))
        teams = sorted({row.team for row in rows})
        series = {
            (team, measure): self._as_judged((team, measure), windows.weekly_series(team, measure, watermark))
            for team in teams
            for measure in RATE_MEASURES
        }
        found = system_findings(rows, series, self.config)
        self._firing, out = transitions(self._firing, found, watermark, teams)
        return out

    def evaluate_special_cause(self, windows: WindowsView, watermark: datetime, team: str) -> list[Alert]:
        """:meth:`evaluate` of ``team``'s SpecialCause only (no RateOffTarget): for windows that
        hold ``team``'s weekly series and nothing else (the all-teams series ``*`` summed from
        every team's weekly counts, ``streams.live_overall``)."""
        series = {
            (team, measure): self._as_judged((team, measure), windows.weekly_series(team, measure, watermark))
            for measure in RATE_MEASURES
        }
        found = system_findings((), series, self.config)
        self._firing, out = transitions(self._firing, found, watermark, [team])
        return out

    def charts(
        self,
        windows: WindowsView,
        watermark: datetime,
        teams: Iterable[str],
        rebase: Mapping[tuple[str, str], Sequence[date]] | None = None,
    ) -> list[dict[str, Any]]:
        """The report's ``"spc"``: the MDC chart of ``*`` and each of ``teams`` (sorted) for
        every rate measure, from the final weeks at ``watermark``. Groups start at the
        configured rebase points and at ``rebase`` (per (team, measure): the service changes).

        Same settings, judged weeks and look-back as SpecialCause, except that the weeks are
        as they stand now (SpecialCause judges each week as it stood when first judged).
        """
        keys = [(team, m) for team in [ALL_TEAMS, *sorted(set(teams) - {ALL_TEAMS})] for m in RATE_MEASURES]
        series = {key: windows.weekly_series(key[0], key[1], watermark) for key in keys}
        first = min((points[0].week_start for points in series.values() if points), default=None)
        return [
            chart_entry(
                team,
                measure,
                measure_chart(
                    measure,
                    lookback_covered(measure, points, first),
                    self.config,
                    self._rebase_points(team, measure, rebase),
                ),
            )
            for (team, measure), points in series.items()
        ]

    def _rebase_points(
        self, team: str, measure: str, extra: Mapping[tuple[str, str], Sequence[date]] | None
    ) -> list[date]:
        configured = self.config.rebase.get((team, measure))
        points = set(() if extra is None else extra.get((team, measure), ()))
        return sorted(points if configured is None else points | {configured})

    def firing(self) -> list[Alert]:
        """The system alerts firing now."""
        return [Alert(system_labels(*k), f.starts_at, None, dict(f.annotations)) for k, f in sorted(self._firing.items())]

    def dump(self, team: str | None = None) -> bytes:
        """The lifecycle state (of one team, or all) as JSON bytes."""
        entries = [
            {"alertname": k[0], "team": k[1], "measure": k[2], "startsAt": f.starts_at.isoformat(),
             "annotations": dict(f.annotations)}
            for k, f in sorted(self._firing.items())
            if team is None or k[1] == team
        ]
        return json.dumps({"v": 1, "firing": entries}, sort_keys=True).encode()

    def load(self, data: bytes, team: str | None = None) -> None:
        """Replace the state of ``team`` (or all state) with what :meth:`dump` wrote.

        Raises ``ValueError`` on bytes that are not such a dump.
        """
        try:
            doc = json.loads(data)
            loaded = {
                (e["alertname"], e["team"], e["measure"]): Firing(
                    datetime.fromisoformat(e["startsAt"]), dict(e["annotations"])
                )
                for e in doc["firing"]
            }
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a SystemAlertRules state dump: {exc}") from exc
        self._firing = {k: v for k, v in self._firing.items() if team is not None and k[1] != team}
        self._firing.update(loaded)


__all__ = [
    "RATE_MEASURES",
    "RATE_OFF_TARGET",
    "SPECIAL_CAUSE",
    "AlertRulesConfig",
    "Finding",
    "Firing",
    "JudgedPoint",
    "LOOKBACK_DAYS",
    "chart_entry",
    "judged_points",
    "measure_chart",
    "SystemAlertRules",
    "parse_rebase",
    "rate_finding",
    "special_cause_finding",
    "system_findings",
    "transitions",
]

"""Making Data Count gauges for Grafana (issue 17 item 6; docs/metrics.md, docs/spc.md).

A small bundle of its own beside :class:`pathwatch.metrics.Metrics`: per team and rate
measure, the latest judged week of the team's MDC chart (value, mean, process limits, target,
trial flag, week start, and the week's numerator and denominator, which the recording rule
``pathwatch:spc_value:suppressed`` needs for small-cell suppression) and its icons as state sets; per team and measure, the effective
times of the latest recorded service changes (a Grafana annotation reads them).

Labels are bounded: ``team`` (the configured teams), ``measure`` (the rate measures), the
icon states (:class:`alerts.mdc.Variation`, :class:`alerts.mdc.Assurance`) and ``change``,
an ordinal ``1`` .. :data:`MAX_CHANGES` (1 the latest). Never client data: a ``change_id``
is not a label, because the default one carries the change's date, which the label guard
refuses as identifier-like. Every value goes through :func:`pathwatch.metrics.label_guard`.

All series are written with replace semantics (:meth:`MdcMetrics.set_charts`,
:meth:`MdcMetrics.set_changes` take the complete picture): a worker that lost a team stops
exporting it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Final

from prometheus_client import CollectorRegistry, Enum, Gauge

from alerts.mdc import Assurance, Variation
from pathwatch.metrics import label_guard

MAX_CHANGES: Final = 10
"""Service changes exported per team and measure (the latest ones): bounds the series."""

VARIATION_STATES: Final[tuple[str, ...]] = tuple(v.value for v in Variation)
ASSURANCE_STATES: Final[tuple[str, ...]] = tuple(a.value for a in Assurance)


class MdcMetrics:
    """The Making Data Count gauges of one worker, on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        tm = ("team", "measure")
        self.value = Gauge(
            "pathwatch_spc_value", "Latest judged weekly value of a team's MDC chart (a fraction)", tm, registry=registry
        )
        self.numerator = Gauge(
            "pathwatch_spc_numerator", "Numerator of the latest judged week (for small-cell suppression)", tm,
            registry=registry,
        )
        self.denominator = Gauge(
            "pathwatch_spc_denominator", "Denominator of the latest judged week (for small-cell suppression)", tm,
            registry=registry,
        )
        self.mean = Gauge("pathwatch_spc_mean", "Mean of the latest point's MDC group", tm, registry=registry)
        self.upper = Gauge(
            "pathwatch_spc_upper_limit", "Upper process limit at the latest judged week", tm, registry=registry
        )
        self.lower = Gauge(
            "pathwatch_spc_lower_limit", "Lower process limit at the latest judged week", tm, registry=registry
        )
        self.target = Gauge("pathwatch_spc_target", "Rate target of the measure (charts with a target)", tm, registry=registry)
        self.trial = Gauge("pathwatch_spc_trial", "1 while the latest limits are trial limits", tm, registry=registry)
        self.week = Gauge(
            "pathwatch_spc_week_timestamp_seconds",
            "Start (local Monday, 00:00 UTC of that date) of the latest judged week",
            tm,
            registry=registry,
        )
        self.variation = Enum(
            "pathwatch_spc_variation", "MDC variation icon of the latest judged week", tm,
            states=list(VARIATION_STATES), registry=registry,
        )  # fmt: skip
        self.assurance = Enum(
            "pathwatch_spc_assurance", "MDC assurance icon (charts with a target and limits)", tm,
            states=list(ASSURANCE_STATES), registry=registry,
        )  # fmt: skip
        self.change = Gauge(
            "pathwatch_service_change_timestamp_seconds",
            "Effective time of a recorded service change (change 1 is the latest)",
            ("team", "measure", "change"),
            registry=registry,
        )

    def set_charts(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Replace every chart series with ``entries`` (the report's ``"spc"`` entry shape,
        :func:`alerts.rules.chart_entry`); a chart without points exports nothing. Raises
        ``ValueError`` (nothing written for that chart) on a label value the guard refuses."""
        for metric in (self.value, self.numerator, self.denominator, self.mean, self.upper, self.lower, self.target, self.trial, self.week,
                       self.variation, self.assurance):  # fmt: skip
            metric.clear()
        for entry in entries:
            points = entry["points"]
            if not points:
                continue
            labels = (label_guard(entry["team"]), label_guard(entry["measure"]))
            last = points[-1]
            self.value.labels(*labels).set(last["value"])
            self.numerator.labels(*labels).set(last["numerator"])
            self.denominator.labels(*labels).set(last["denominator"])
            self.mean.labels(*labels).set(last["mean"])
            if last["upper"] is not None and last["lower"] is not None:
                self.upper.labels(*labels).set(last["upper"])
                self.lower.labels(*labels).set(last["lower"])
            if entry["target"] is not None:
                self.target.labels(*labels).set(entry["target"])
            self.trial.labels(*labels).set(1 if last["trial"] else 0)
            week = date.fromisoformat(last["week"])
            self.week.labels(*labels).set(datetime(week.year, week.month, week.day, tzinfo=UTC).timestamp())
            if entry["variation"] is not None:
                self.variation.labels(*labels).state(entry["variation"])
            if entry["assurance"] is not None:
                self.assurance.labels(*labels).state(entry["assurance"])

    def set_changes(self, changes: Mapping[tuple[str, str], Sequence[datetime]]) -> None:
        """Replace the change series: per (team, measure), the latest :data:`MAX_CHANGES`
        effective times, labelled ``1`` (the latest) onwards."""
        self.change.clear()
        for (team, measure), times in changes.items():
            latest = sorted(times, reverse=True)[:MAX_CHANGES]
            for n, moment in enumerate(latest, 1):
                self.change.labels(label_guard(team), label_guard(measure), str(n)).set(moment.timestamp())


__all__ = ["ASSURANCE_STATES", "MAX_CHANGES", "VARIATION_STATES", "MdcMetrics"]

"""The metrics catalogue: one typed bundle of Prometheus metrics per worker (STYLE.md 8).

:class:`Metrics` builds every pathwatch metric on the ``CollectorRegistry`` passed in, so a
worker exposes one registry at ``/metrics`` and a test builds a fresh registry and reads it
back with ``registry.get_sample_value``. docs/metrics.md is the human-readable catalogue;
deploy/prometheus/rules and deploy/grafana/dashboards use only names defined here.

Labels are bounded (DOMAIN.md section 5): team, measure, alertname, type, source, linked, reason,
receiver, outcome, topic, partition, quantile, days_remaining. Every label value written
through the bundle passes :func:`label_guard`, which refuses anything that looks like a
client, referral, encounter or event identifier; a refused value raises ``ValueError`` and
nothing is written.

Gauges of state (measures, waits, open alerts, obligations, consumer lag) are written with
*replace* semantics: the ``set_*`` methods take the complete current picture, and a series
not in it disappears. That is what keeps sums across workers right after a rebalance: a
worker that lost a team or partition stops exporting it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, NamedTuple, ParamSpec, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from schemas.catalogue import DEFAULT_RATE_TARGETS, RATE_MEASURES
from schemas.deadletter import DeadLetterKind
from schemas.identifiers import identifier_problem
from schemas.model import EVENT_TYPES
from streams.ports import (
    LiveMetrics,  # the live code defines the calls it makes; Metrics and SafeMetrics satisfy it
)

log = logging.getLogger("pathwatch.metrics")

NAMESPACE: Final = "pathwatch"

MEASURES: Final[tuple[str, ...]] = RATE_MEASURES
"""The rate measures of the catalogue, schemas/catalogue.py (``referral_wait_days`` is exported as quantiles)."""

WAIT_QUANTILES: Final[tuple[str, ...]] = ("0.5", "0.9")

DAYS_REMAINING_BUCKETS: Final[tuple[str, ...]] = ("overdue", "0", "1", "2", "3-7", "8-30", "31+")
"""Values of the ``days_remaining`` label of ``pathwatch_followup_obligations_open``."""

DELIVERY_OUTCOMES: Final[tuple[str, ...]] = ("delivered", "retryable_error", "failed", "deduplicated")
"""Suggested values of the ``outcome`` label of ``pathwatch_alert_deliveries_total``."""

# Event time to processed can be sub-second live or up to the allowed lateness (72 h) for a
# late event, so the buckets span both ends: 50 ms .. 3 days.
LATENCY_BUCKETS_SECONDS: Final[tuple[float, ...]] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0, 21600.0, 86400.0, 259200.0,
)  # fmt: skip
# the event loop's lag: a worker that works in slices (streams.slices) stays in the first few
LOOP_LAG_BUCKETS_SECONDS: Final[tuple[float, ...]] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

def label_guard(value: str) -> str:
    """Return ``value`` if it is safe as a bounded label value; raise ``ValueError`` if not.

    The test is :func:`schemas.identifiers.identifier_problem`, the one decode applies to
    label-bound fields. The message never repeats the value: it might be the very identifier
    being kept out of the metrics.
    """
    problem = identifier_problem(value)
    if problem is not None:
        raise ValueError(f"label value refused ({problem}); metric labels must be bounded categories")
    return value


@lru_cache(maxsize=8192)
def _guard_labels(values: tuple[str, ...]) -> None:
    # Cached per label tuple: the hot path (one counter per event) pays a dict lookup.
    for value in values:
        label_guard(value)


M = TypeVar("M", bound=MetricWrapperBase)


class _Guarded(MetricWrapperBase):
    """Mixin: every ``labels()`` call passes its values through :func:`label_guard` first."""

    def labels(self: M, *labelvalues: object, **labelkwargs: object) -> M:
        values = labelvalues or tuple(labelkwargs.values())
        _guard_labels(tuple(str(v) for v in values))
        return super().labels(*labelvalues, **labelkwargs)


class GuardedCounter(_Guarded, Counter):
    pass


class GuardedGauge(_Guarded, Gauge):
    pass


class GuardedHistogram(_Guarded, Histogram):
    pass


def days_remaining_bucket(days: int) -> str:
    """The ``days_remaining`` label for an obligation due in ``days`` whole local days.

    Negative means overdue; 0 means due by the end of today.
    """
    if days < 0:
        return "overdue"
    if days <= 2:
        return str(days)
    if days <= 7:
        return "3-7"
    if days <= 30:
        return "8-30"
    return "31+"


class MeasureRow(NamedTuple):
    """One trailing-window cell: counts of index events for a team (or ``*``) and measure."""

    team: str
    measure: str
    numerator: int
    denominator: int


class WaitRow(NamedTuple):
    """Referral waits of a team over the trailing window; quantiles by nearest rank, in days."""

    team: str
    referrals: int
    p50: float | None
    p90: float | None


class MetricsSettings(Protocol):
    """The settings the bundle exports (``pathwatch.config.Settings`` has this shape)."""

    @property
    def small_cell(self) -> int: ...
    @property
    def rate_targets(self) -> Mapping[str, float]: ...
    @property
    def allowed_lateness(self) -> timedelta: ...


class _WatermarkCollector(Collector):
    """Watermarks per (topic, partition) and their lag behind the clock, computed at scrape.

    The lag is computed when Prometheus scrapes, not when an event arrives, so a stream that
    has stopped shows a growing lag instead of a frozen one.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._watermarks: dict[tuple[str, str], float] = {}

    def set(self, topic: str, partition: int, watermark: datetime) -> None:
        if watermark.tzinfo is None:
            raise ValueError("watermark must be timezone-aware")
        key = (topic, str(partition))
        _guard_labels(key)
        self._watermarks[key] = watermark.timestamp()

    def forget(self, topic: str, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._watermarks.pop((topic, str(partition)), None)

    def describe(self) -> list[Any]:
        return list(self._families({}, 0.0))

    def collect(self) -> Iterator[Any]:
        return iter(self._families(dict(self._watermarks), self._clock()))

    @staticmethod
    def _families(watermarks: dict[tuple[str, str], float], now: float) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        stamp = GaugeMetricFamily(
            f"{NAMESPACE}_watermark_timestamp_seconds",
            "Watermark (largest event time seen less the allowed lateness) per partition, Unix seconds.",
            labels=["topic", "partition"],
        )
        lag = GaugeMetricFamily(
            f"{NAMESPACE}_watermark_lag_seconds",
            "Wall clock at scrape time minus the partition's watermark, in seconds.",
            labels=["topic", "partition"],
        )
        for (topic, partition), value in sorted(watermarks.items()):
            stamp.add_metric([topic, partition], value)
            lag.add_metric([topic, partition], now - value)
        return [stamp, lag]


class _Factory:
    """Builds guarded metrics on one registry, in the pathwatch namespace."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> GuardedGauge:
        return GuardedGauge(name, doc, labels, namespace=NAMESPACE, registry=self._registry)

    def counter(self, name: str, doc: str, labels: tuple[str, ...]) -> GuardedCounter:
        return GuardedCounter(name, doc, labels, namespace=NAMESPACE, registry=self._registry)

    def histogram(
        self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...] = LATENCY_BUCKETS_SECONDS
    ) -> GuardedHistogram:
        return GuardedHistogram(name, doc, labels, namespace=NAMESPACE, registry=self._registry, buckets=buckets)


class Metrics:
    """Every pathwatch metric, built on ``registry``; see docs/metrics.md for the catalogue.

    Build one per process at the composition root and pass it to the stages that write
    to it. ``clock`` (Unix seconds) is read only when Prometheus scrapes, to compute the
    watermark lag. ``small_cell`` and ``rate_targets`` come from Settings and are exported
    as gauges so that Prometheus rules and dashboards suppress and compare with the same
    numbers the workers use. Building two bundles on one registry raises ``ValueError``
    (duplicate metric names).
    """

    @classmethod
    def from_settings(cls, registry: CollectorRegistry, settings: MetricsSettings) -> Metrics:
        """The bundle a worker or deliver process exports, configured from ``settings``."""
        return cls(
            registry,
            small_cell=settings.small_cell,
            rate_targets=settings.rate_targets,
            allowed_lateness_seconds=settings.allowed_lateness.total_seconds(),
        )

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.time,
        small_cell: int = 5,
        rate_targets: Mapping[str, float] | None = None,
        allowed_lateness_seconds: float = 72 * 3600.0,
    ) -> None:
        make = _Factory(registry)
        self._measure_metrics(make)
        self._pipeline_metrics(make)
        self.watermarks = _WatermarkCollector(clock)
        registry.register(self.watermarks)

        self._current: dict[str, set[tuple[str, ...]]] = {}
        self.small_cell_threshold.set(small_cell)
        self.allowed_lateness.set(allowed_lateness_seconds)
        targets = DEFAULT_RATE_TARGETS if rate_targets is None else rate_targets
        for measure, target in targets.items():
            self.measure_target.labels(measure).set(target)
        # Known label values start at 0 so rate() and dashboards see them before the first event.
        for kind in DeadLetterKind:
            self.dead_letters.labels(kind.value)
        for event_type in EVENT_TYPES:
            self.late_events.labels(event_type)
        for measure in MEASURES:
            self.corrections.labels(measure)


    def _measure_metrics(self, make: _Factory) -> None:
        self.measure_numerator = make.gauge(
            "measure_numerator", "Trailing-window numerator of a measure (index events).", ("team", "measure")
        )
        self.measure_denominator = make.gauge(
            "measure_denominator",
            "Trailing-window denominator of a measure (index events).",
            ("team", "measure"),
        )
        self.measure_rate = make.gauge(
            "measure_rate_ratio",
            "Trailing-window numerator / denominator (absent while the denominator is 0).",
            ("team", "measure"),
        )
        self.measure_target = make.gauge(
            "measure_target_ratio", "Target rate of a measure (setting rate_targets).", ("measure",)
        )
        self.referral_wait = make.gauge(
            "referral_wait_days",
            "Referral-to-first-attended-contact wait quantile over the trailing window, in days (nearest rank).",
            ("team", "quantile"),
        )
        self.referral_wait_referrals = make.gauge(
            "referral_wait_referrals",
            "Seen referrals in the trailing window the wait quantiles are over.",
            ("team",),
        )
        self.care_gap_alerts_open = make.gauge(
            "care_gap_alerts_open", "Care-gap alerts firing now (one per client).", ("alertname", "team")
        )
        self.system_alerts_open = make.gauge(
            "system_alerts_open",
            "System alerts (RateOffTarget, SpecialCause) firing now.",
            ("alertname", "team", "measure"),
        )
        self.followup_obligations_open = make.gauge(
            "followup_obligations_open",
            "Eligible discharges still waiting for a follow-up, by whole days left to the deadline.",
            ("team", "days_remaining"),
        )
        self.small_cell_threshold = make.gauge(
            "small_cell_threshold",
            "Cells with a numerator or denominator below this are suppressed in dashboards.",
        )
        self.allowed_lateness = make.gauge(
            "allowed_lateness_seconds", "Allowed lateness of events (setting), in seconds."
        )


    def _pipeline_metrics(self, make: _Factory) -> None:
        self.events = make.counter(
            "events", "Events accepted (valid, not duplicates), by type and publisher.", ("type", "source")
        )
        self.dead_letters = make.counter(
            "dead_letters", "Inputs sent to the dead-letter topic, by kind.", ("reason",)
        )
        self.duplicates = make.counter(
            "duplicate_events", "Events ignored as duplicates of (source, id).", ("source",)
        )
        self.adapter_events = make.counter(
            "adapter_events",
            "Events the HL7 v2 and FHIR adapters built, by publisher and whether the subject is a "
            "linking identifier (linked=true) or a hospital-local one (linked=false).",
            ("source", "linked"),
        )
        self.late_events = make.counter(
            "late_events", "Events that arrived behind their partition's watermark.", ("type",)
        )
        self.corrections = make.counter(
            "corrections", "Final measure outcomes revised by a late event.", ("measure",)
        )
        self.input_rewinds = make.counter(
            "input_rewinds",
            "Times a partition was read again from the next offset to apply (messages were not delivered).",
            ("topic",),
        )
        self.events_rerouted = make.counter(
            "events_rerouted",
            "Events read on a partition that is not their client pseudonym's, sent on through the clients topic.",
            ("topic",),
        )
        self.consumer_lag = make.gauge(
            "consumer_lag_messages",
            "Messages between the committed offset and the end of a partition.",
            ("topic", "partition"),
        )
        self.processing_latency = make.histogram(
            "event_processing_latency_seconds",
            "Event time to processed by this worker, in seconds.",
            ("type",),
        )
        self.loop_lag = make.histogram(
            "event_loop_lag_seconds",
            "How late the worker's event loop ran a probe due every 0.1 s, in seconds.",
            (),
            LOOP_LAG_BUCKETS_SECONDS,
        )
        self.alert_latency = make.histogram(
            "alert_latency_seconds",
            "Triggering event (or passed deadline) to alert emitted, in seconds.",
            ("alertname",),
        )
        self.alert_deliveries = make.counter(
            "alert_deliveries",
            "Alert notifications attempted, by receiver and outcome.",
            ("receiver", "outcome"),
        )
        self.alert_delivery_stalled = make.gauge(
            "alert_delivery_stalled_seconds",
            "Seconds since a receiver last delivered while it owes alert states (0: owes none).",
            ("receiver",),
        )
        self.metric_errors = make.counter(
            "metric_errors",
            "Metric writes that failed and were skipped (the event was still processed), by method.",
            ("method",),
        )

    # -- replace-semantics gauges ------------------------------------------------------

    def _replace(self, metric: GuardedGauge, values: Mapping[tuple[str, ...], float]) -> None:
        """Make ``metric``'s series exactly ``values``: stale series are removed, not zeroed."""
        for key in values:
            _guard_labels(key)
        previous = self._current.get(metric._name, set())
        for key in previous - values.keys():
            metric.remove(*key)
        for key, value in values.items():
            metric.labels(*key).set(value)
        self._current[metric._name] = set(values)

    def set_measures(self, rows: Iterable[tuple[str, str, int, int]]) -> None:
        """Replace the measure gauges with ``rows`` of (team, measure, numerator, denominator).

        Call after each window sweep with every cell this worker owns (including ``*``
        if it owns it). The rate is numerator / denominator and is absent where the
        denominator is 0. Raises ``ValueError`` (and changes nothing) if a label fails the
        guard or a count is negative or the numerator exceeds the denominator.
        """
        numerators: dict[tuple[str, ...], float] = {}
        denominators: dict[tuple[str, ...], float] = {}
        rates: dict[tuple[str, ...], float] = {}
        for team, measure, numerator, denominator in rows:
            if numerator < 0 or denominator < 0 or numerator > denominator:
                raise ValueError(f"measure {measure}: need 0 <= numerator <= denominator")
            key = (team, measure)
            _guard_labels(key)
            numerators[key] = numerator
            denominators[key] = denominator
            if denominator > 0:
                rates[key] = numerator / denominator
        self._replace(self.measure_numerator, numerators)
        self._replace(self.measure_denominator, denominators)
        self._replace(self.measure_rate, rates)

    def set_waits(self, rows: Iterable[tuple[str, int, float | None, float | None]]) -> None:
        """Replace the wait gauges with ``rows`` of (team, referrals, p50, p90), waits in days.

        A quantile of None (no seen referrals) exports no series for it; the count is
        always exported so dashboards can suppress small cells.
        """
        quantiles: dict[tuple[str, ...], float] = {}
        counts: dict[tuple[str, ...], float] = {}
        for team, referrals, p50, p90 in rows:
            counts[(team,)] = referrals
            for quantile, value in zip(WAIT_QUANTILES, (p50, p90), strict=True):
                if value is not None:
                    quantiles[(team, quantile)] = value
        self._replace(self.referral_wait_referrals, counts)
        self._replace(self.referral_wait, quantiles)

    def set_care_gap_alerts_open(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Replace open care-gap alert counts, keyed by (alertname, team)."""
        self._replace(self.care_gap_alerts_open, {key: float(n) for key, n in counts.items()})

    def set_system_alerts_open(self, counts: Mapping[tuple[str, str, str], int]) -> None:
        """Replace open system alert counts, keyed by (alertname, team, measure)."""
        self._replace(self.system_alerts_open, {key: float(n) for key, n in counts.items()})

    def set_followup_obligations_open(self, obligations: Iterable[tuple[str, int]]) -> None:
        """Replace open follow-up obligations from (team, whole days remaining) pairs, one per discharge.

        Days are bucketed with :func:`days_remaining_bucket`; every team seen gets every
        bucket (zeros included) so the dashboard's bars do not come and go.
        """
        tally = Tally((team, days_remaining_bucket(days)) for team, days in obligations)
        teams = {team for team, _ in tally}
        values: dict[tuple[str, ...], float] = {
            (team, bucket): tally.get((team, bucket), 0)
            for team in teams
            for bucket in DAYS_REMAINING_BUCKETS
        }
        self._replace(self.followup_obligations_open, values)

    def set_consumer_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Replace consumer lag, keyed by (topic, partition), for the partitions assigned now."""
        self._replace(
            self.consumer_lag, {(topic, str(partition)): lag for (topic, partition), lag in lags.items()}
        )

    # -- per-event writes ----------------------------------------------------------------

    def count_event(self, event_type: str, source: str, n: int = 1) -> None:
        """``n`` accepted events (valid, not duplicates)."""
        self.events.labels(event_type, source).inc(n)

    def count_dead_letter(self, kind: DeadLetterKind) -> None:
        self.dead_letters.labels(kind.value).inc()

    def count_rewind(self, topic: str) -> None:
        self.input_rewinds.labels(topic).inc()

    def count_rerouted(self, topic: str, n: int = 1) -> None:
        self.events_rerouted.labels(topic).inc(n)

    def count_adapter_event(self, source: str, linked: bool) -> None:
        """One event built by an HL7 v2 or FHIR adapter (``schemas.adapters.SubjectCounter``)."""
        self.adapter_events.labels(source, "true" if linked else "false").inc()

    def count_duplicate(self, source: str, n: int = 1) -> None:
        self.duplicates.labels(source).inc(n)

    def count_late_event(self, event_type: str, n: int = 1) -> None:
        self.late_events.labels(event_type).inc(n)

    def count_correction(self, measure: str) -> None:
        self.corrections.labels(measure).inc()

    def count_delivery(self, receiver: str, outcome: str, n: int = 1) -> None:
        """``n`` notification attempts; ``outcome`` one of :data:`DELIVERY_OUTCOMES` by convention."""
        self.alert_deliveries.labels(receiver, outcome).inc(n)

    def set_delivery_stalled(self, seconds: Mapping[str, float]) -> None:
        """Replace the stalled time of each receiver (``Dispatcher.stalled_seconds``)."""
        self._replace(self.alert_delivery_stalled, {(receiver,): value for receiver, value in seconds.items()})

    def observe_processing_latency(self, event_type: str, seconds: float) -> None:
        """Event time to processed; negative values (clock skew) are recorded as 0."""
        self.processing_latency.labels(event_type).observe(max(seconds, 0.0))

    def observe_processing_latencies(self, event_type: str, seconds: Iterable[float]) -> None:
        """:meth:`observe_processing_latency` for many events of one type (labels looked up once)."""
        observe = self.processing_latency.labels(event_type).observe
        for value in seconds:
            observe(max(value, 0.0))

    def observe_loop_lag(self, seconds: float) -> None:
        """How late the event loop ran a timed probe (streams.slices.LoopLagProbe)."""
        self.loop_lag.observe(max(seconds, 0.0))

    def observe_alert_latency(self, alertname: str, seconds: float) -> None:
        """Triggering event time (or the deadline that passed) to alert emitted."""
        self.alert_latency.labels(alertname).observe(max(seconds, 0.0))

    def set_watermark(self, topic: str, partition: int, watermark: datetime) -> None:
        """The partition's current watermark (timezone-aware)."""
        self.watermarks.set(topic, partition, watermark)

    def revoke_partitions(self, topic: str, partitions: Iterable[int]) -> None:
        """Stop exporting watermark and consumer lag for partitions this worker no longer owns."""
        gone = {str(p) for p in partitions}
        self.watermarks.forget(topic, (int(p) for p in gone))
        current = self._current.get(self.consumer_lag._name, set())
        kept = {key for key in current if not (key[0] == topic and key[1] in gone)}
        for key in current - kept:
            self.consumer_lag.remove(*key)
        self._current[self.consumer_lag._name] = kept



P = ParamSpec("P")


class SafeMetrics:
    """:class:`LiveMetrics` over a :class:`Metrics` bundle, where a failing call never stops
    the pipeline: any exception from a metric call is swallowed, logged once per method and
    counted in ``pathwatch_metric_errors_total{method}`` (and in :attr:`errors`); the event is
    still processed. Each method is written out, so mypy checks every call."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._warned: set[str] = set()
        self.errors: Tally[str] = Tally()
        """Failed calls per method name, since this wrapper was built."""
        # Bound once: the hot path (several calls per event) then finds each method in the
        # instance dict, and a method read twice is the same object.
        for name in _LIVE_METHODS:
            setattr(self, name, getattr(self, name))

    def _call(self, method: Callable[P, None], /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(*args, **kwargs)
        except Exception as exc:  # a metrics failure of any kind must not stop the pipeline
            name = method.__name__
            self.errors[name] += 1
            with contextlib.suppress(Exception):  # counted in self.errors; nothing more to do
                self._metrics.metric_errors.labels(name).inc()
            if name not in self._warned:
                self._warned.add(name)
                log.warning("metrics %s failed and is skipped: %s", name, exc)

    def count_event(self, event_type: str, source: str, n: int = 1) -> None:
        self._call(self._metrics.count_event, event_type, source, n)

    def count_dead_letter(self, kind: DeadLetterKind) -> None:
        self._call(self._metrics.count_dead_letter, kind)

    def count_rewind(self, topic: str) -> None:
        self._call(self._metrics.count_rewind, topic)

    def count_rerouted(self, topic: str, n: int = 1) -> None:
        self._call(self._metrics.count_rerouted, topic, n)

    def count_adapter_event(self, source: str, linked: bool) -> None:
        self._call(self._metrics.count_adapter_event, source, linked)

    def count_duplicate(self, source: str, n: int = 1) -> None:
        self._call(self._metrics.count_duplicate, source, n)

    def count_late_event(self, event_type: str, n: int = 1) -> None:
        self._call(self._metrics.count_late_event, event_type, n)

    def count_correction(self, measure: str) -> None:
        self._call(self._metrics.count_correction, measure)

    def count_delivery(self, receiver: str, outcome: str, n: int = 1) -> None:
        self._call(self._metrics.count_delivery, receiver, outcome, n)

    def observe_processing_latency(self, event_type: str, seconds: float) -> None:
        self._call(self._metrics.observe_processing_latency, event_type, seconds)

    def observe_processing_latencies(self, event_type: str, seconds: Iterable[float]) -> None:
        self._call(self._metrics.observe_processing_latencies, event_type, seconds)

    def observe_alert_latency(self, alertname: str, seconds: float) -> None:
        self._call(self._metrics.observe_alert_latency, alertname, seconds)

    def observe_loop_lag(self, seconds: float) -> None:
        self._call(self._metrics.observe_loop_lag, seconds)

    def set_measures(self, rows: Iterable[tuple[str, str, int, int]]) -> None:
        self._call(self._metrics.set_measures, rows)

    def set_waits(self, rows: Iterable[tuple[str, int, float | None, float | None]]) -> None:
        self._call(self._metrics.set_waits, rows)

    def set_care_gap_alerts_open(self, counts: Mapping[tuple[str, str], int]) -> None:
        self._call(self._metrics.set_care_gap_alerts_open, counts)

    def set_system_alerts_open(self, counts: Mapping[tuple[str, str, str], int]) -> None:
        self._call(self._metrics.set_system_alerts_open, counts)

    def set_followup_obligations_open(self, obligations: Iterable[tuple[str, int]]) -> None:
        self._call(self._metrics.set_followup_obligations_open, obligations)

    def set_consumer_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        self._call(self._metrics.set_consumer_lag, lags)

    def set_delivery_stalled(self, seconds: Mapping[str, float]) -> None:
        self._call(self._metrics.set_delivery_stalled, seconds)

    def set_watermark(self, topic: str, partition: int, watermark: datetime) -> None:
        self._call(self._metrics.set_watermark, topic, partition, watermark)

    def revoke_partitions(self, topic: str, partitions: Iterable[int]) -> None:
        self._call(self._metrics.revoke_partitions, topic, partitions)


_LIVE_METHODS: Final[tuple[str, ...]] = tuple(
    name for name in vars(LiveMetrics) if not name.startswith("_") and callable(getattr(LiveMetrics, name))
)


if TYPE_CHECKING:  # mypy checks here that both classes satisfy the protocol
    _SATISFY: tuple[type[LiveMetrics], ...] = (SafeMetrics, Metrics)


__all__ = [
    "DAYS_REMAINING_BUCKETS",
    "DELIVERY_OUTCOMES",
    "LATENCY_BUCKETS_SECONDS",
    "LiveMetrics",
    "MEASURES",
    "MeasureRow",
    "Metrics",
    "SafeMetrics",
    "WaitRow",
    "days_remaining_bucket",
    "label_guard",
]

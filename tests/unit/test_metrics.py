"""The metrics bundle: names, values read back from a fresh registry, label guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pathwatch.metric_names import metric_names
from pathwatch.metrics import (
    DAYS_REMAINING_BUCKETS,
    Metrics,
    days_remaining_bucket,
    label_guard,
)
from schemas.deadletter import DeadLetterKind

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry, clock=NOW.timestamp, small_cell=5)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_set_measures_exports_counts_and_rate(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.set_measures([("north", "followup_7d", 10, 14), ("*", "followup_7d", 10, 16)])
    assert value(registry, "pathwatch_measure_numerator", team="north", measure="followup_7d") == 10
    assert value(registry, "pathwatch_measure_denominator", team="north", measure="followup_7d") == 14
    assert value(
        registry, "pathwatch_measure_rate_ratio", team="north", measure="followup_7d"
    ) == pytest.approx(10 / 14)
    assert value(registry, "pathwatch_measure_rate_ratio", team="*", measure="followup_7d") == 0.625


def test_set_measures_replaces_so_removed_cells_disappear(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.set_measures([("north", "followup_7d", 1, 2), ("south", "followup_7d", 3, 4)])
    metrics.set_measures([("south", "followup_7d", 4, 5)])
    assert value(registry, "pathwatch_measure_numerator", team="north", measure="followup_7d") is None
    assert value(registry, "pathwatch_measure_rate_ratio", team="north", measure="followup_7d") is None
    assert value(registry, "pathwatch_measure_denominator", team="south", measure="followup_7d") == 5


def test_rate_absent_while_denominator_is_zero(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.set_measures([("east", "readmission_30d", 0, 0)])
    assert value(registry, "pathwatch_measure_denominator", team="east", measure="readmission_30d") == 0
    assert value(registry, "pathwatch_measure_rate_ratio", team="east", measure="readmission_30d") is None


@pytest.mark.parametrize(("numerator", "denominator"), [(-1, 3), (4, 3), (0, -1)])
def test_set_measures_rejects_impossible_counts(metrics: Metrics, numerator: int, denominator: int) -> None:
    with pytest.raises(ValueError, match="numerator"):
        metrics.set_measures([("north", "followup_7d", numerator, denominator)])


def test_set_measures_refuses_identifier_and_changes_nothing(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.set_measures([("north", "followup_7d", 1, 2)])
    with pytest.raises(ValueError, match="label value refused"):
        metrics.set_measures([("north", "followup_7d", 1, 3), ("MRN-0012345", "followup_7d", 1, 1)])
    assert value(registry, "pathwatch_measure_denominator", team="north", measure="followup_7d") == 2


def test_waits_quantiles_and_count(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.set_waits([("north", 40, 6.25, 19.5), ("south", 0, None, None)])
    assert value(registry, "pathwatch_referral_wait_days", team="north", quantile="0.5") == 6.25
    assert value(registry, "pathwatch_referral_wait_days", team="north", quantile="0.9") == 19.5
    assert value(registry, "pathwatch_referral_wait_referrals", team="south") == 0
    assert value(registry, "pathwatch_referral_wait_days", team="south", quantile="0.5") is None


def test_open_alert_gauges_replace(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.set_care_gap_alerts_open({("FollowUpDue", "north"): 3, ("FrequentCrisis", "south"): 1})
    metrics.set_care_gap_alerts_open({("FollowUpDue", "north"): 2})
    assert value(registry, "pathwatch_care_gap_alerts_open", alertname="FollowUpDue", team="north") == 2
    assert value(registry, "pathwatch_care_gap_alerts_open", alertname="FrequentCrisis", team="south") is None
    metrics.set_system_alerts_open({("RateOffTarget", "north", "followup_7d"): 1})
    assert (
        value(
            registry,
            "pathwatch_system_alerts_open",
            alertname="RateOffTarget",
            team="north",
            measure="followup_7d",
        )
        == 1
    )


@pytest.mark.parametrize(
    ("days", "bucket"),
    [
        (-3, "overdue"),
        (-1, "overdue"),
        (0, "0"),
        (1, "1"),
        (2, "2"),
        (3, "3-7"),
        (7, "3-7"),
        (8, "8-30"),
        (30, "8-30"),
        (31, "31+"),
    ],
)
def test_days_remaining_bucket(days: int, bucket: str) -> None:
    assert days_remaining_bucket(days) == bucket


def test_followup_obligations_bucketed_with_zeros(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.set_followup_obligations_open(
        [("north", 0), ("north", 2), ("north", 5), ("north", 6), ("south", 20)]
    )
    assert value(registry, "pathwatch_followup_obligations_open", team="north", days_remaining="3-7") == 2
    assert value(registry, "pathwatch_followup_obligations_open", team="north", days_remaining="0") == 1
    assert value(registry, "pathwatch_followup_obligations_open", team="north", days_remaining="1") == 0
    assert value(registry, "pathwatch_followup_obligations_open", team="south", days_remaining="8-30") == 1
    for bucket in DAYS_REMAINING_BUCKETS:
        assert (
            value(registry, "pathwatch_followup_obligations_open", team="south", days_remaining=bucket)
            is not None
        )
    metrics.set_followup_obligations_open([])
    assert value(registry, "pathwatch_followup_obligations_open", team="south", days_remaining="8-30") is None


def test_pipeline_counters(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.count_event("contact", "ehr/community")
    metrics.count_event("contact", "ehr/community")
    metrics.count_event("discharge", "hospital/st-marys")
    metrics.count_dead_letter(DeadLetterKind.SCHEMA)
    metrics.count_duplicate("hospital/st-marys")
    metrics.count_late_event("contact")
    metrics.count_correction("followup_7d")
    metrics.count_delivery("alertmanager", "delivered")
    metrics.count_delivery("webhook", "delivered", 40)  # a delivery batch at once
    assert value(registry, "pathwatch_events_total", type="contact", source="ehr/community") == 2
    assert value(registry, "pathwatch_events_total", type="discharge", source="hospital/st-marys") == 1
    assert value(registry, "pathwatch_dead_letters_total", reason="schema") == 1
    assert value(registry, "pathwatch_duplicate_events_total", source="hospital/st-marys") == 1
    assert value(registry, "pathwatch_late_events_total", type="contact") == 1
    assert value(registry, "pathwatch_corrections_total", measure="followup_7d") == 1
    assert (
        value(registry, "pathwatch_alert_deliveries_total", receiver="alertmanager", outcome="delivered") == 1
    )
    assert value(registry, "pathwatch_alert_deliveries_total", receiver="webhook", outcome="delivered") == 40


def test_counters_take_a_batch_count_and_latencies_a_batch(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.count_event("contact", "ehr/community", 3)
    metrics.count_event("contact", "ehr/community")
    metrics.count_duplicate("ehr/community", 2)
    metrics.count_late_event("contact", 4)
    metrics.observe_processing_latencies("contact", [0.5, -1.0, 2.5])
    assert value(registry, "pathwatch_events_total", type="contact", source="ehr/community") == 4
    assert value(registry, "pathwatch_duplicate_events_total", source="ehr/community") == 2
    assert value(registry, "pathwatch_late_events_total", type="contact") == 4
    assert value(registry, "pathwatch_event_processing_latency_seconds_count", type="contact") == 3
    assert value(registry, "pathwatch_event_processing_latency_seconds_sum", type="contact") == 3.0  # -1 counted as 0


def test_known_label_values_start_at_zero(registry: CollectorRegistry, metrics: Metrics) -> None:
    for kind in DeadLetterKind:
        assert value(registry, "pathwatch_dead_letters_total", reason=kind.value) == 0
    assert value(registry, "pathwatch_late_events_total", type="discharge") == 0
    assert value(registry, "pathwatch_corrections_total", measure="readmission_30d") == 0


def test_settings_gauges(registry: CollectorRegistry) -> None:
    Metrics(registry, small_cell=11, rate_targets={"followup_7d": 0.75}, allowed_lateness_seconds=3600)
    assert value(registry, "pathwatch_small_cell_threshold") == 11
    assert value(registry, "pathwatch_measure_target_ratio", measure="followup_7d") == 0.75
    assert value(registry, "pathwatch_measure_target_ratio", measure="followup_72h") is None
    assert value(registry, "pathwatch_allowed_lateness_seconds") == 3600


def test_latency_histograms_use_explicit_buckets(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.observe_processing_latency("contact", 0.3)
    metrics.observe_processing_latency("contact", 7200)
    metrics.observe_processing_latency("contact", -2)  # clock skew: counted as 0
    metrics.observe_alert_latency("FollowUpDue", 42)
    name = "pathwatch_event_processing_latency_seconds"
    assert value(registry, f"{name}_bucket", type="contact", le="0.05") == 1
    assert value(registry, f"{name}_bucket", type="contact", le="0.5") == 2
    assert value(registry, f"{name}_bucket", type="contact", le="3600.0") == 2
    assert value(registry, f"{name}_bucket", type="contact", le="21600.0") == 3
    assert value(registry, f"{name}_sum", type="contact") == pytest.approx(7200.3)
    assert value(registry, "pathwatch_alert_latency_seconds_count", alertname="FollowUpDue") == 1


def test_watermark_lag_is_computed_at_scrape_from_the_clock(registry: CollectorRegistry) -> None:
    now = [NOW.timestamp()]
    metrics = Metrics(registry, clock=lambda: now[0])
    metrics.set_watermark("pathwatch.events", 3, NOW - timedelta(hours=72))
    assert (
        value(registry, "pathwatch_watermark_lag_seconds", topic="pathwatch.events", partition="3")
        == 72 * 3600
    )
    now[0] += 60
    assert (
        value(registry, "pathwatch_watermark_lag_seconds", topic="pathwatch.events", partition="3")
        == 72 * 3600 + 60
    )
    assert (
        value(registry, "pathwatch_watermark_timestamp_seconds", topic="pathwatch.events", partition="3")
        == (NOW - timedelta(hours=72)).timestamp()
    )


def test_watermark_must_be_aware(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        metrics.set_watermark("pathwatch.events", 0, datetime(2026, 3, 1, 12, 0))


def test_consumer_lag_replace_and_revoke(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.set_consumer_lag(
        {("pathwatch.events", 0): 5, ("pathwatch.events", 1): 7, ("pathwatch.ticks", 1): 1}
    )
    metrics.set_watermark("pathwatch.events", 1, NOW)
    metrics.revoke_partitions("pathwatch.events", [1])
    assert value(registry, "pathwatch_consumer_lag_messages", topic="pathwatch.events", partition="0") == 5
    assert value(registry, "pathwatch_consumer_lag_messages", topic="pathwatch.events", partition="1") is None
    assert value(registry, "pathwatch_consumer_lag_messages", topic="pathwatch.ticks", partition="1") == 1
    assert value(registry, "pathwatch_watermark_lag_seconds", topic="pathwatch.events", partition="1") is None
    metrics.set_consumer_lag({("pathwatch.events", 2): 0})
    assert value(registry, "pathwatch_consumer_lag_messages", topic="pathwatch.events", partition="0") is None


def test_guard_applies_to_direct_use_of_the_attributes(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="label value refused"):
        metrics.events.labels("contact", "9b2f4c1e-6a1d-4f7e-8c55-0d2f3b1a9e77").inc()
    with pytest.raises(ValueError, match="label value refused"):
        metrics.events.labels(type="contact", source="evt-1234567").inc()


def test_two_bundles_on_one_registry_is_an_error(registry: CollectorRegistry, metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="Duplicated"):
        Metrics(registry)


@pytest.mark.parametrize(
    "ok",
    [
        "north", "south-east", "*", "unassigned", "Early Intervention in Psychosis",
        "followup_72h", "seen_within_target", "referral_wait_days", "not_json", "orphan_cancel",
        "hospital/st-marys", "ehr/community", "fhir/city-general", "pathwatch.dead-letters",
        "0", "7", "127", "0.5", "0.9", "3-7", "8-30", "31+", "overdue",
        "FollowUpMissed", "RateOffTarget", "alertmanager", "retryable_error", "referral.received", "",
    ],
)  # fmt: skip
def test_label_guard_passes_categories(ok: str) -> None:
    assert label_guard(ok) == ok


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("9b2f4c1e-6a1d-4f7e-8c55-0d2f3b1a9e77", "UUID"),
        ("9B2F4C1E6A1D4F7E8C550D2F3B1A9E77", "UUID without dashes"),
        ("a3f1c9e0b7d24e51", "16 hex digits: a fingerprint"),
        ("5f0c7a1d9e3b2a4c6f8e0d1b3a5c7e9f5f0c7a1d9e3b2a4c6f8e0d1b3a5c7e9f", "HMAC-SHA256 hex pseudonym"),
        ("MRN-0012345", "MRN"),
        ("AB1234", "MRN without dash"),
        ("ref-00042", "prefixed referral id"),
        ("4857773456", "NHS-number-like digits"),
        ("12345", "numeric event id"),
        ("enc_2026_03_01_a", "date-stamped id"),
        ("encounter-hospital-st-marys-77", "longer than 24 with digits"),
        ("Zq8xYp3Lw0VbNn7Rt2Kc5Hm9Gd1Fs4Jx6Ae8Ui0Oo", "base64url pseudonym"),
        ("QWxhZGRpbnNlc2FtZW9wZW5zZXNhbWVvcGVu", "base64 token of 32+"),
        ("x" * 65, "too long"),
    ],
)
def test_label_guard_refuses_identifiers(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match="label value refused") as caught:
        label_guard(bad)
    assert bad not in str(caught.value), why


def test_catalogue_names_follow_conventions() -> None:
    names = metric_names()
    assert names, "the catalogue is empty"
    for name in names:
        assert name.startswith("pathwatch_"), name
    counters = {n for n in names if n.endswith("_total")}
    assert {
        "pathwatch_events_total",
        "pathwatch_dead_letters_total",
        "pathwatch_alert_deliveries_total",
    } <= counters
    for required in [
        "pathwatch_measure_numerator",
        "pathwatch_measure_denominator",
        "pathwatch_measure_rate_ratio",
        "pathwatch_referral_wait_days",
        "pathwatch_care_gap_alerts_open",
        "pathwatch_followup_obligations_open",
        "pathwatch_system_alerts_open",
        "pathwatch_watermark_lag_seconds",
        "pathwatch_consumer_lag_messages",
        "pathwatch_event_processing_latency_seconds_bucket",
        "pathwatch_alert_latency_seconds_bucket",
        "pathwatch_small_cell_threshold",
    ]:
        assert required in names, required


def test_every_exported_label_value_passes_the_guard(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.set_measures([("north", "followup_7d", 1, 2)])
    metrics.set_waits([("north", 5, 1.0, 2.5)])
    metrics.set_care_gap_alerts_open({("FollowUpDue", "north"): 1})
    metrics.set_followup_obligations_open([("north", 3)])
    metrics.set_consumer_lag({("pathwatch.events", 0): 1})
    metrics.set_watermark("pathwatch.events", 0, NOW)
    metrics.count_event("crisis", "ehr/community")
    metrics.observe_processing_latency("crisis", 1.0)
    seen = 0
    for family in registry.collect():
        for sample in family.samples:
            for name, label in sample.labels.items():
                if name != "le":
                    label_guard(label)
                    seen += 1
    assert seen > 50


def test_safe_metrics_skips_a_refused_call_and_keeps_counting(
    registry: CollectorRegistry, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    from pathwatch.metrics import SafeMetrics

    safe: Any = SafeMetrics(metrics)
    safe.count_event("contact", "ehr/community", 2)
    assert safe.count_event is safe.count_event  # the wrapper is made once per name
    safe.count_event("contact", "ehr/2024-07-01")  # a digit run: the label guard refuses it
    safe.count_event("contact", "ehr/2024-07-02")
    safe.count_event("contact", "ehr/community")
    assert value(registry, "pathwatch_events_total", type="contact", source="ehr/community") == 3
    assert sum("count_event" in r.getMessage() for r in caplog.records) == 1


def test_safe_metrics_swallows_and_counts_any_failing_call(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    from pathwatch.metrics import SafeMetrics

    class Broken(Metrics):
        def set_measures(self, rows: object) -> None:
            raise RuntimeError("collector exploded")

    safe = SafeMetrics(Broken(registry))
    safe.set_measures([("north", "followup_7d", 1, 2)])  # raises inside: must not escape
    safe.set_measures([])
    safe.count_event("contact", "ehr/2024-07-01")  # refused by the label guard (ValueError)
    safe.count_event("contact", "ehr/community")
    assert safe.errors == {"set_measures": 2, "count_event": 1}
    assert value(registry, "pathwatch_metric_errors_total", method="set_measures") == 2
    assert value(registry, "pathwatch_metric_errors_total", method="count_event") == 1
    assert value(registry, "pathwatch_events_total", type="contact", source="ehr/community") == 1
    assert sum("collector exploded" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_safe_metrics_and_the_bundle_offer_every_live_metric_call() -> None:
    import inspect

    from pathwatch.metrics import LiveMetrics, SafeMetrics

    calls = {n for n, f in vars(LiveMetrics).items() if inspect.isfunction(f) and not n.startswith("_")}
    assert len(calls) >= 20
    for name in calls:
        expected = inspect.signature(getattr(LiveMetrics, name))
        assert inspect.signature(getattr(SafeMetrics, name)) == expected, name
        assert inspect.signature(getattr(Metrics, name)) == expected, name

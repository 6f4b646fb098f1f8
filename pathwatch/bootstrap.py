"""The composition root of the live runtime: settings in, configured parts out.

Settings stop here (STYLE.md 6): the library packages (``schemas``, ``streams``, ``alerts``)
get typed parts built from them - the decoder and the HL7 v2 and FHIR adapters, the core's
and the rules' configuration, the metrics, the dispatcher with its receivers and
notification log (owned, with its connections, by a service with start and stop), and the
faust worker and deliver apps built from those parts (``streams/app.py``).

``pathwatch worker`` and ``pathwatch deliver`` run :func:`run_worker` and :func:`run_deliver`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from alerts.pipeline import Dispatcher, ReceiversConfig, build_dispatcher
from alerts.receivers import KafkaProducerLike
from pathwatch import parts
from pathwatch.config import Settings
from pathwatch.mdc_metrics import MdcMetrics
from pathwatch.metrics import Metrics, SafeMetrics
from pathwatch.parts import core_config
from schemas.fhir import FHIRAdapter
from schemas.hl7 import HL7Adapter
from streams.app import DeliverParts, WorkerParts, build_app, build_deliver_app
from streams.delivery import DeliveryResources
from streams.faust_io import FaustOptions
from streams.live_changes import MdcParts
from streams.ports import LiveConfig, LiveMetrics
from streams.stages import LiveStages, StageParts
from streams.topics import ensure_topics
from streams.worker import run_app

log = logging.getLogger("pathwatch.worker")

Wall = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


def live_config(settings: Settings) -> LiveConfig:
    """The settings the live stages read."""
    return LiveConfig(
        app_id=settings.app_id,
        partitions=settings.partitions,
        topics=settings.topics,
        store=settings.store,
        batch_max=settings.batch_max,
        batch_wait=settings.batch_wait,
        tick_interval=settings.tick_interval,
        alert_clock=settings.alert_clock,
        window_days=settings.window_days,
        delivery=settings.delivery,
    )


def faust_options(settings: Settings) -> FaustOptions:
    """The faust settings both apps share."""
    return FaustOptions(
        kafka_bootstrap=settings.kafka_bootstrap,
        data_dir=settings.data_dir,
        web_host=settings.web_host,
        web_port=settings.web_port,
        partitions=settings.partitions,
        replication_factor=settings.replication_factor,
        commit_interval=settings.commit_interval,
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=settings.broker_heartbeat_interval,
        broker_rebalance_timeout=settings.broker_rebalance_timeout,
        group_instance_id=settings.group_instance_id,
    )


def receivers_config(settings: Settings) -> ReceiversConfig:
    """The receivers the settings configure (``alerts.pipeline.build_dispatcher``)."""
    return ReceiversConfig(
        alerts_topic=settings.topics.alerts,
        alertmanager_url=settings.alertmanager_url,
        alertmanager_resend=settings.alertmanager_resend,
        webhook_url=settings.webhook_url,
        webhook_token=settings.webhook_token,
        routes=dict(settings.alert_routes),
    )


def live_metrics(settings: Settings, registry: CollectorRegistry) -> tuple[Metrics, LiveMetrics]:
    """The metrics bundle on ``registry``, and the wrapper the live code calls (a metrics
    failure is logged and never stops the pipeline)."""
    bundle = Metrics.from_settings(registry, settings)
    # SafeMetrics forwards every call of the bundle (``pathwatch.metrics``); typed here by
    # the protocol of the calls the live code makes
    return bundle, SafeMetrics(bundle)


def delivery_resources(settings: Settings) -> DeliveryResources:
    """The dispatcher (receivers from settings, the Redis notification log) with the
    connections it owns: opened when delivery starts, closed when it stops."""
    receivers = receivers_config(settings)

    def build(redis_client: Any, producer: KafkaProducerLike, session: Any) -> Dispatcher:
        return build_dispatcher(receivers, redis_client, producer, session)

    return DeliveryResources(settings.kafka_bootstrap, settings.redis_url, build)


def worker_parts(settings: Settings, *, registry: CollectorRegistry | None = None, wall: Wall = _now) -> WorkerParts:
    """Every part of the worker app. Raises ``ValueError`` when no pseudonymisation key is set
    and ``allow_dev_key`` is off."""
    registry = registry or CollectorRegistry()
    bundle, metrics = live_metrics(settings, registry)
    options = parts.adapter_options(settings)
    count_subject = SafeMetrics(bundle).count_adapter_event  # unlinked hospital events, by source
    stages = StageParts(
        config=live_config(settings),
        core=core_config(settings),
        rules=parts.rules_config(settings),
        decoder=parts.decoder(settings, live=True),
        metrics=metrics,
        wall=wall,
    )
    return WorkerParts(
        stages=stages,
        hl7=HL7Adapter(options, count_subject),
        fhir=FHIRAdapter(options, count_subject),
        faust=faust_options(settings),
        registry=registry,
        delivery=delivery_resources(settings) if settings.delivery == "worker" else None,
        mdc=MdcParts(
            changes_topic=settings.topics.changes,
            shares_topic=settings.topics.overall_shares,
            dead_letters_topic=settings.topics.dead_letters,
            kafka_bootstrap=settings.kafka_bootstrap,
            timezone=settings.timezone,
            tick_seconds=settings.tick_interval.total_seconds(),
            decoder=stages.decoder,
            rules=stages.rules,
            core=stages.core,
            gauges=MdcMetrics(registry),
        ),
    )


def build_worker_app(
    settings: Settings, *, registry: CollectorRegistry | None = None, wall: Wall = _now
) -> tuple[faust.App, LiveStages]:
    """The worker app and its jobs (see :func:`worker_parts` for what it raises)."""
    return build_app(worker_parts(settings, registry=registry, wall=wall))


def build_deliver(settings: Settings, *, registry: CollectorRegistry | None = None, wall: Wall = _now) -> faust.App:
    """The ``pathwatch deliver`` app: delivery alone, in consumer group ``<app_id>-deliver``."""
    registry = registry or CollectorRegistry()
    _, metrics = live_metrics(settings, registry)
    return build_deliver_app(
        DeliverParts(
            config=live_config(settings),
            faust=faust_options(settings),
            metrics=metrics,
            registry=registry,
            source=delivery_resources(settings),
            wall=wall,
        )
    )


def run_worker(settings: Settings, faust_args: list[str]) -> int:
    """Create missing topics, build the worker app and run faust's worker until stopped.

    Raises ``ValueError`` (the CLI prints it, exit 2) when no pseudonymisation key is set.
    """
    settings.pseudonym_key_bytes(live=True)
    ensure_topics(settings)
    app, _stages = build_worker_app(settings)
    log.info("pathwatch worker starting with settings %s", settings.masked())
    return run_app(app, faust_args)


def run_deliver(settings: Settings, faust_args: list[str]) -> int:
    """Deliver alert transitions until stopped: for workers run with ``delivery =
    "separate"``. Creates missing topics like a worker."""
    ensure_topics(settings)
    app = build_deliver(settings)
    log.info("pathwatch deliver starting with settings %s", settings.masked())
    return run_app(app, faust_args)

"""Kafka topics pathwatch uses, and creating them with the right partition counts.

Input topics (``events``, ``hl7``, ``fhir``) carry what publishers send, raw ``subject``
included; everything downstream of ingestion (``clients``, ``observations``, ``alerts``,
the changelogs) carries pseudonyms only. ``clients`` and ``observations`` are co-partitioned
with the tables that read them (same partition count), as faust requires.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from streams.ports import TopicNames


class KafkaSettings(Protocol):
    """What the Kafka helpers of ``streams`` read: the broker, the topics and their sizes.

    ``pathwatch.config.Settings`` has this shape and is passed as it is; the library states
    what it needs instead of importing the settings module (docs/design.md)."""

    @property
    def kafka_bootstrap(self) -> str: ...
    @property
    def app_id(self) -> str: ...
    @property
    def partitions(self) -> int: ...
    @property
    def replication_factor(self) -> int: ...
    @property
    def dead_letter_retention(self) -> timedelta: ...
    @property
    def max_message_bytes(self) -> int: ...
    @property
    def topics(self) -> TopicNames: ...


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: KafkaSettings) -> list[TopicSpec]:
    """Every topic pathwatch reads or writes (faust creates the changelogs itself)."""
    t, n = settings.topics, settings.partitions
    week = str(7 * 24 * 3600 * 1000)
    return [
        TopicSpec(t.events, n, {"retention.ms": week}),
        TopicSpec(t.hl7, n, {"retention.ms": week}),
        TopicSpec(t.fhir, n, {"retention.ms": week}),
        TopicSpec(t.clients, n, {"retention.ms": week}),
        TopicSpec(t.observations, n, {"retention.ms": week}),
        TopicSpec(t.transitions, n, {"retention.ms": week}),
        TopicSpec(t.alerts, n, {"retention.ms": week}),
        # one record per service change, the latest by change_id (docs/events.md)
        TopicSpec(t.changes, 1, {"cleanup.policy": "compact"}),
        # each team's weekly counts, for the all-teams series '*' (streams/live_overall.py)
        TopicSpec(t.overall_shares, 1, {"cleanup.policy": "compact"}),
        # original bytes of rejected input, raw client identifiers included (docs/configuration.md)
        TopicSpec(t.dead_letters, 1, {"retention.ms": str(int(settings.dead_letter_retention.total_seconds() * 1000))}),
    ]


STACK_HINT = 'for the local stack run: set -a; eval "$(scripts/stack env)"; set +a'


class KafkaUnreachable(ValueError):
    """No bootstrap server of ``kafka_bootstrap`` accepts a connection; the message names the
    setting and the command that sets it for the local stack."""


def check_kafka(settings: KafkaSettings, timeout: float = 3.0) -> None:
    """Raise :class:`KafkaUnreachable` within about ``timeout`` seconds per server unless one
    bootstrap server accepts a TCP connection.

    The Kafka clients retry an unreachable broker for 30 s or more and then fail with a
    traceback; this check gives a new user one line instead. It does not prove the server
    is Kafka."""
    reasons = []
    for server in settings.kafka_bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=timeout):
                return
        except (OSError, ValueError) as exc:
            reasons.append(f"{server.strip()}: {getattr(exc, 'strerror', None) or exc}")
    raise KafkaUnreachable(
        f"cannot reach Kafka at {settings.kafka_bootstrap} ({'; '.join(reasons)}): set PATHWATCH_KAFKA_BOOTSTRAP; "
        + STACK_HINT
    )


def ensure_topics(settings: KafkaSettings) -> list[str]:
    """Create missing topics; return the names created. Existing topics are left as they are."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id=f"{settings.app_id}-admin")
    try:
        existing = set(admin.list_topics())
        wanted = [s for s in topic_specs(settings) if s.name not in existing]
        created: list[str] = []
        for spec in wanted:
            try:
                admin.create_topics(
                    [NewTopic(spec.name, spec.partitions, settings.replication_factor, topic_configs=spec.config)]
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another worker won the race
        return created
    finally:
        admin.close()

"""What the live runtime needs from outside it, typed: its configuration, topic names, the
metric calls it makes, where it sends records and how it reads a partition again.

The composition root (``pathwatch/bootstrap.py``) builds these from settings; the faust
app (``streams/app.py``) gives the real ones (``streams/faust_io.py``), tests in-memory ones
(:class:`MemorySink`, :class:`MemorySeeker`). Nothing here imports faust or the settings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

from schemas.deadletter import DeadLetterKind

Record = tuple[str, bytes | None, bytes | None, int | None, list[tuple[str, bytes]] | None]
"""topic, key, value, partition (None: the producer's partitioner, by key), headers"""


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The Kafka topics pathwatch uses, with their default names: the settings' ``topics``
    (``pathwatch.config.Settings.topics`` is this class; ``PATHWATCH_TOPICS__EVENTS`` or the
    TOML table ``[topics]``). Every internal topic holds pseudonyms only."""

    events: str = "pathwatch.events"
    hl7: str = "pathwatch.hl7"
    fhir: str = "pathwatch.fhir"
    observations: str = "pathwatch.observations"
    clients: str = "pathwatch.clients"
    ticks: str = "pathwatch.ticks"
    alerts: str = "pathwatch.alerts"
    transitions: str = "pathwatch.alert-transitions"
    dead_letters: str = "pathwatch.dead-letters"
    changes: str = "pathwatch.changes"  # service.change events, compacted, keyed by change_id
    overall_shares: str = "pathwatch.overall-shares"  # each team's weekly counts for '*', compacted, keyed by team


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """The settings the live stages read (the composition root copies them from settings;
    their meaning is in docs/configuration.md)."""

    app_id: str = "pathwatch"
    partitions: int = 8
    topics: TopicNames = field(default_factory=TopicNames)
    store: str = "memory://"
    batch_max: int = 4000
    batch_wait: timedelta = timedelta(milliseconds=50)
    tick_interval: timedelta = timedelta(seconds=5)
    alert_clock: Literal["wall", "event"] = "wall"
    window_days: int = 28
    delivery: Literal["worker", "separate"] = "worker"


class LiveMetrics(Protocol):
    """The metric calls the live stages and delivery make (``pathwatch.metrics`` implements
    them; the composition root passes a wrapper whose calls never raise)."""

    def count_adapter_event(self, source: str, linked: bool) -> None: ...
    def set_measures(self, rows: Iterable[tuple[str, str, int, int]]) -> None: ...
    def set_waits(self, rows: Iterable[tuple[str, int, float | None, float | None]]) -> None: ...
    def set_care_gap_alerts_open(self, counts: Mapping[tuple[str, str], int]) -> None: ...
    def set_system_alerts_open(self, counts: Mapping[tuple[str, str, str], int]) -> None: ...
    def set_followup_obligations_open(self, obligations: Iterable[tuple[str, int]]) -> None: ...
    def set_consumer_lag(self, lags: Mapping[tuple[str, int], int]) -> None: ...
    def count_event(self, event_type: str, source: str, n: int = 1) -> None: ...
    def count_dead_letter(self, kind: DeadLetterKind) -> None: ...
    def count_rewind(self, topic: str) -> None: ...
    def count_rerouted(self, topic: str, n: int = 1) -> None: ...
    def count_duplicate(self, source: str, n: int = 1) -> None: ...
    def count_late_event(self, event_type: str, n: int = 1) -> None: ...
    def count_correction(self, measure: str) -> None: ...
    def count_delivery(self, receiver: str, outcome: str, n: int = 1) -> None: ...
    def set_delivery_stalled(self, seconds: Mapping[str, float]) -> None: ...
    def observe_processing_latency(self, event_type: str, seconds: float) -> None: ...
    def observe_processing_latencies(self, event_type: str, seconds: Iterable[float]) -> None: ...
    def observe_alert_latency(self, alertname: str, seconds: float) -> None: ...
    def observe_loop_lag(self, seconds: float) -> None: ...
    def set_watermark(self, topic: str, partition: int, watermark: datetime) -> None: ...
    def revoke_partitions(self, topic: str, partitions: Iterable[int]) -> None: ...


class RecordSink(Protocol):
    """Where the stages send records."""

    async def send(self, records: list[Record]) -> None:
        """Return once the broker has every record; raise the first send error."""
        ...


class Seeker(Protocol):
    """How a stage reads a partition again (the worker's consumer)."""

    async def earliest(self, topic: str, partition: int) -> int | None:
        """The earliest offset still in the partition (None: unknown)."""
        ...

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read the partition from ``offset`` on."""
        ...


Crash = Callable[[BaseException], Awaitable[None]]
"""Stop the worker with an error (faust's ``app.crash``)."""


class TrackedStore(MutableMapping[bytes, bytes]):
    """A table store whose every write is also queued as a changelog record (None: a
    deletion); :meth:`changelog` drains the queue. Over a dict of its own here; the worker's
    is over a faust table (``streams.faust_io.DirectTable``)."""

    def __init__(self) -> None:
        self._own: dict[bytes, bytes] = {}
        self._records: list[tuple[bytes, bytes | None]] = []

    def data(self) -> MutableMapping[bytes, bytes]:
        """The mapping written to."""
        return self._own

    def __getitem__(self, key: bytes) -> bytes:
        return self.data()[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.data()[key] = value
        self._records.append((key, value))

    def __delitem__(self, key: bytes) -> None:
        del self.data()[key]
        self._records.append((key, None))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.data())

    def __len__(self) -> int:
        return len(self.data())

    def changelog(self) -> list[tuple[bytes, bytes | None]]:
        """The records written since the last call, in write order (None: a deletion)."""
        records, self._records = self._records, []
        return records


class MemorySink:
    """A :class:`RecordSink` that keeps what it is sent, in order (for tests and tools)."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    async def send(self, records: list[Record]) -> None:
        self.records.extend(records)

    def take(self, topic: str) -> list[Record]:
        """The records sent to ``topic`` since the last take of it, removed from the sink."""
        taken = [r for r in self.records if r[0] == topic]
        self.records = [r for r in self.records if r[0] != topic]
        return taken


class MemorySeeker:
    """A :class:`Seeker` that records the seeks asked of it (nothing removed by retention)."""

    def __init__(self) -> None:
        self.seeks: list[tuple[str, int, int]] = []

    async def earliest(self, topic: str, partition: int) -> int | None:
        return 0

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        self.seeks.append((topic, partition, offset))

"""What live stage 1 (:class:`streams.live.Stage1`) keeps per partition, in two parts:

* :class:`PartitionIndex` — per partition, what stage 1 keeps in memory and rebuilds from the
  stored client states: the due-time heaps, the care-gap alerts firing, the clients'
  corrections;
* :class:`MetaStore` — the partition metadata (:class:`PartitionMeta`) in the stage-1 table.

Neither reads the broker or a clock; each works over the key-value store it is given
(the faust table live, a ``dict`` in tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping

import msgspec

from alerts.model import Alert
from schemas.catalogue import CARE_GAP_ALERTS
from schemas.deadletter import DeadLetter
from streams.calendar import to_us
from streams.core import ClientState, Observation, Output
from streams.live_state import LiveClientState
from streams.runner import NEVER, PartitionRunner

_Instance = tuple[str, str, str, str, int]  # a care-gap alert instance: client, alertname, team, severity, start


class PartitionMeta(msgspec.Struct):
    """Per-partition stage-1 metadata, stored in the stage-1 table."""

    max_us: int = NEVER
    until_us: int = NEVER
    applied: int = -1
    applied_direct: int = -1  # of the events topic, read directly
    accepted: int = 0
    duplicates: int = 0
    # Stored: the corrections of clients whose state was deleted (a client's own are counted
    # in its state, see PartitionIndex.settle); in a flush mark: all of the partition's.
    corrections: int = 0
    orphans: int = 0
    teams: list[str] = msgspec.field(default_factory=list)
    inputs: dict[str, tuple[int, int]] = msgspec.field(default_factory=dict)
    # (The care-gap alerts firing are not kept here: they are read from the client states,
    # see PartitionIndex. A metadata record written by an older version may still hold a
    # "firing" field; decoding ignores it.)


_meta_encoder = msgspec.msgpack.Encoder()
_meta_decoder = msgspec.msgpack.Decoder(PartitionMeta)


def encode_meta(meta: PartitionMeta) -> bytes:
    return _meta_encoder.encode(meta)


def decode_meta(raw: bytes) -> PartitionMeta:
    return _meta_decoder.decode(raw)


class PartitionIndex:
    """Per partition, what stage 1 keeps in memory: the due-time heaps (a
    :class:`streams.runner.PartitionRunner`), the care-gap alert instances firing and the sum
    of the client states' corrections.

    Built from the partition's stored client states when first asked for, then kept up to date
    as the partition's batches run (:meth:`settle`, :meth:`count`, the runner's ``schedule``),
    and dropped by :meth:`forget` (a batch not committed, a rebalance). Derived from the
    states, it holds nothing a crash could leave behind. ``partition_of``: the partition of a
    client-state key."""

    def __init__(
        self, store: MutableMapping[bytes, bytes], partition_of: Callable[[bytes], int], lateness_us: int
    ) -> None:
        self.store = store
        self.partition_of = partition_of
        self.lateness_us = lateness_us
        self._runners: dict[int, PartitionRunner] = {}
        # care-gap alert instances firing -> (alertname, team)
        self._firing: dict[int, dict[_Instance, tuple[str, str]]] = {}
        self._corrections: dict[int, int] = {}
        # the open-alert counts last exported, per partition seen since the last forget
        self._open: dict[int, dict[tuple[str, str], int]] = {}

    def forget(self) -> None:
        """Drop everything (rebuilt from the store when next asked for)."""
        self._runners.clear()
        self._firing.clear()
        self._corrections.clear()
        self._open.clear()

    def runner(self, partition: int) -> PartitionRunner:
        runner = self._runners.get(partition)
        if runner is None:
            self._build(partition)
            runner = self._runners[partition]
        return runner

    def _firing_in(self, partition: int) -> dict[_Instance, tuple[str, str]]:
        firing = self._firing.get(partition)
        if firing is None:
            self._build(partition)
            firing = self._firing[partition]
        return firing

    def _corrections_in(self, partition: int) -> int:
        if partition not in self._corrections:
            self._build(partition)
        return self._corrections[partition]

    def _build(self, partition: int) -> None:
        """The partition's indexes, from its stored client states."""
        states: list[ClientState] = []
        firing: dict[_Instance, tuple[str, str]] = {}
        corrections = 0
        for key, raw in self.store.items():
            if key.startswith(b"\x00") or self.partition_of(key) != partition:
                continue
            state = LiveClientState.from_bytes(raw)
            if state.due is not None or state.alert_due is not None:
                states.append(state)
            for e in state.alerts.values():
                if e.end is None:
                    firing[(state.client, e.name, e.team, e.severity, e.start)] = (e.name, e.team)
            corrections += state.corrections
        runner = PartitionRunner(self.lateness_us, alert_heap=True)
        runner.restore(states)
        self._runners[partition] = runner
        self._firing[partition] = firing
        self._corrections[partition] = corrections

    def settle(
        self, partition: int, meta: PartitionMeta, before: int, state: LiveClientState | None, outs: list[Output]
    ) -> None:
        """Count the corrections among a step's or sweep's ``outs`` with the client's new
        state, which held ``before`` (a client whose state is deleted leaves its count to the
        partition's metadata). Counted in the state, they are written with it: a crash
        between the batch's state writes and its metadata write cannot lose them."""
        n = sum(1 for o in outs if isinstance(o, Observation) and o.correction)
        if state is not None:
            state.corrections = before + n
            if n:
                self._corrections[partition] = self._corrections_in(partition) + n
        elif before + n:
            meta.corrections += before + n
            self._corrections[partition] = self._corrections_in(partition) - before

    def corrections(self, partition: int, meta: PartitionMeta) -> int:
        """All of the partition's corrections: its clients' and the deleted clients'."""
        return meta.corrections + self._corrections_in(partition)

    def count(self, partition: int, meta: PartitionMeta, outs: list[Output]) -> None:
        """Follow the care-gap alerts firing through ``outs``; count orphan cancels in ``meta``."""
        for o in outs:
            if isinstance(o, Alert):
                labels = o.labels
                team = labels.get("team", "")
                instance = (labels["client"], o.name, team, labels.get("severity", ""), to_us(o.starts_at))
                if o.ends_at is None:
                    self._firing_in(partition)[instance] = (o.name, team)
                else:
                    self._firing_in(partition).pop(instance, None)
            elif isinstance(o, DeadLetter):
                meta.orphans += 1

    def open_alerts(self, metas: dict[int, PartitionMeta]) -> dict[tuple[str, str], int]:
        """Care-gap alerts firing now, by (alertname, team), over the partitions seen since
        the last :meth:`forget` (``metas`` updates that view). Every care-gap alertname of
        every team named in those partitions is present, zeros included, so a dashboard can
        tell "none open" from "no data"."""
        for p, meta in metas.items():
            counts: dict[tuple[str, str], int] = {
                (name, team): 0 for name in CARE_GAP_ALERTS for team in meta.teams
            }
            for name, team in self._firing_in(p).values():
                counts[(name, team)] = counts.get((name, team), 0) + 1
            self._open[p] = counts
        total: dict[tuple[str, str], int] = {}
        for counts in self._open.values():
            for key, n in counts.items():
                total[key] = total.get(key, 0) + n
        return total


class MetaStore:
    """The partitions' metadata in the stage-1 table, under ``keys`` (one per partition,
    chosen to hash to the partition itself, see :func:`streams.live.meta_key`).

    A partition that read only ticks since its metadata was written (the metadata changed in
    nothing but the offset read) keeps that offset in memory and writes nothing, so an idle
    worker writes no changelog record. After a restart or a rebalance the offsets after the
    stored one are then a gap (:func:`streams.live.admit`) and are read again: ticks only, which change
    nothing twice."""

    def __init__(self, store: MutableMapping[bytes, bytes], keys: list[bytes]) -> None:
        self.store = store
        self.keys = keys
        # per partition: the last offset of ``clients`` applied when only ticks were read since
        # the metadata was last written
        self._ticked: dict[int, int] = {}

    def forget(self) -> None:
        """Drop the offsets kept in memory (a batch not committed, a rebalance)."""
        self._ticked.clear()

    def read(self, partition: int) -> PartitionMeta:
        """The partition's metadata as last written (or kept, see the class)."""
        raw = self.store.get(self.keys[partition])
        meta = PartitionMeta() if raw is None else decode_meta(raw)
        ticked = self._ticked.get(partition)
        if ticked is not None and ticked > meta.applied:
            meta.applied = ticked
        return meta

    def write(self, metas: Iterable[tuple[int, PartitionMeta]]) -> None:
        """Write each partition's metadata (or keep its offset only, see the class)."""
        for p, meta in metas:
            key = self.keys[p]
            stored = self.store.get(key)
            if stored is not None:
                before = decode_meta(stored)
                if msgspec.structs.replace(meta, applied=before.applied) == before:
                    self._ticked[p] = meta.applied
                    continue
            self._ticked.pop(p, None)
            self.store[key] = encode_meta(meta)

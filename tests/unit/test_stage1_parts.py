"""Stage 1's parts on their own: offset admission (``streams.live.Admission``), the partition
metadata in the table (``MetaStore``) and the per-partition index (``PartitionIndex``).
How they work together is in test_live_drivers.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alerts.model import Alert
from schemas.catalogue import CARE_GAP_ALERTS
from schemas.deadletter import DeadLetter, DeadLetterKind, Origin
from streams.calendar import to_us
from streams.core import EmittedAlert, Observation
from streams.live import APPLY, GAP, SEEN, Admission
from streams.live_state import LiveClientState
from streams.stage1_partitions import MetaStore, PartitionIndex, PartitionMeta, decode_meta, encode_meta

SOURCE = ("clients", 0)
START = datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("applied", "offset", "floor", "position", "applied_after"),
    [
        (-1, 7, 0, APPLY, 7),  # nothing applied yet: anything goes
        (4, 5, 0, APPLY, 5),  # the next offset
        (4, 3, 0, SEEN, 4),  # a redelivery
        (4, 9, 0, GAP, 4),  # 5 to 8 were not delivered
        (4, 8, 8, APPLY, 8),  # a jump up to an accepted floor
        (4, 9, 8, GAP, 4),  # beyond the floor: still a gap
    ],
)
def test_admission_takes_an_offset_against_the_metadata(
    applied: int, offset: int, floor: int, position: str, applied_after: int
) -> None:
    for direct in (False, True):
        admission = Admission()
        admission.floors[SOURCE] = floor
        meta = PartitionMeta(applied=applied, applied_direct=applied) if not direct else PartitionMeta(
            applied=100, applied_direct=applied
        )
        assert admission.take(SOURCE, offset, meta, direct) == position
        assert (meta.applied_direct if direct else meta.applied) == applied_after
        if direct:
            assert meta.applied == 100  # the other input's offset is left alone
        assert admission.expected(meta, direct) == (None if applied_after < 0 else applied_after + 1)


def test_meta_store_keeps_an_offset_read_from_ticks_only_in_memory() -> None:
    store: dict[bytes, bytes] = {}
    metas = MetaStore(store, [b"\x00m0", b"\x00m1"])
    assert metas.read(1) == PartitionMeta()
    metas.write([(0, PartitionMeta(applied=3, accepted=1))])
    written = store[b"\x00m0"]
    assert decode_meta(written) == PartitionMeta(applied=3, accepted=1)
    metas.write([(0, PartitionMeta(applied=7, accepted=1))])  # ticks: only the offset moved
    assert store[b"\x00m0"] == written
    assert metas.read(0).applied == 7
    metas.forget()  # a restart: the offsets after the stored one are read again
    assert metas.read(0).applied == 3
    metas.write([(0, PartitionMeta(applied=8, accepted=2))])
    assert decode_meta(store[b"\x00m0"]) == PartitionMeta(applied=8, accepted=2)
    assert b"\x00m1" not in store


def _state(client: str, corrections: int, *alerts: tuple[str, str, int | None]) -> bytes:
    emitted = {
        f"{name}:{team}": EmittedAlert(name, team, "warning", to_us(START), end, "s", "d") for name, team, end in alerts
    }
    return LiveClientState(client=client, alerts=emitted, corrections=corrections).to_bytes()


def _index(store: dict[bytes, bytes]) -> PartitionIndex:
    # clients "a..." are in partition 0, the others in partition 1
    return PartitionIndex(store, lambda key: 0 if key.startswith(b"a") else 1, lateness_us=0)


def _alert(client: str, name: str, team: str, ends_at: datetime | None = None) -> Alert:
    labels = {"alertname": name, "client": client, "team": team, "severity": "warning"}
    return Alert(labels, START, ends_at)


def test_partition_index_is_built_from_the_stored_states() -> None:
    store = {
        b"a1": _state("a1", 2, ("FollowUpDue", "north", None)),
        b"a2": _state("a2", 1, ("FollowUpDue", "north", to_us(START) + 1)),  # resolved
        b"b1": _state("b1", 4, ("ReferralWaiting", "north", None)),  # another partition
        b"\x00m0": encode_meta(PartitionMeta(corrections=50)),  # metadata is not a client
    }
    index = _index(store)
    opened = index.open_alerts({0: PartitionMeta(teams=["north", "south"])})
    assert opened == {(name, team): int((name, team) == ("FollowUpDue", "north"))
                      for name in CARE_GAP_ALERTS for team in ("north", "south")}
    assert index.corrections(0, PartitionMeta(corrections=5)) == 5 + 2 + 1
    assert index.corrections(1, PartitionMeta()) == 4
    assert len(index.runner(0)) == 0  # no state is due


def test_partition_index_follows_a_batch_and_forgets_it() -> None:
    store = {b"a1": _state("a1", 2)}
    index = _index(store)
    meta = PartitionMeta(teams=["north"])
    orphan = DeadLetter(DeadLetterKind.PROCESSING, "an orphan cancel", "", Origin(topic="clients"), b"")
    index.count(0, meta, [_alert("a1", "FollowUpDue", "north"), _alert("a9", "FollowUpMissed", "north"), orphan])
    assert meta.orphans == 1
    index.count(0, meta, [_alert("a9", "FollowUpMissed", "north", START)])  # resolved
    assert index.open_alerts({0: meta})[("FollowUpDue", "north")] == 1
    assert index.open_alerts({0: meta})[("FollowUpMissed", "north")] == 0

    state = LiveClientState(client="a1")
    correction = Observation("followup_7d", "k", "north", START, correction=True)
    index.settle(0, meta, 2, state, [correction, correction])
    assert state.corrections == 4
    assert index.corrections(0, meta) == 4
    index.settle(0, meta, 4, None, [correction])  # the client's state is deleted: its count goes to meta
    assert meta.corrections == 5
    assert index.corrections(0, meta) == 5

    index.forget()  # nothing was written: rebuilt from the store as it is
    assert index.corrections(0, PartitionMeta()) == 2
    assert index.open_alerts({0: meta})[("FollowUpDue", "north")] == 0

"""What live stage 1 keeps with a client's core state: input offsets and corrections.

The pure core (:mod:`streams.core`) knows nothing of Kafka. Live stage 1 needs two things
more per client, written in the same changelog record as the state so that a crash cannot
separate them:

* which input messages the state already holds: each event record's opaque tag
  (:attr:`streams.core.Rec.tag`) is the event's :func:`input_seq`, and the state keeps the
  highest one per input, so that after a crash between the client-state writes and the
  partition's metadata write the batch read again counts each event as it was counted
  (:func:`applied`);
* the client's own count of corrections (see ``streams.stage1_partitions.PartitionIndex.settle``).

:class:`LiveClientState` is a :class:`streams.core.ClientState` with these fields; its
serialised form is the one earlier versions wrote for ``ClientState`` (the same map keys),
so stored states load either way.
"""

from __future__ import annotations

from typing import Final

import msgspec

from schemas.model import Event
from streams.core import ClientState, Clock, CoreConfig, Duplicate, Output, step

SEQ_INPUTS: Final = 2


class LiveClientState(ClientState, omit_defaults=True):
    """A client state with live stage 1's bookkeeping. The core's functions take and return
    it as a :class:`ClientState` (they never make a new one from a given state)."""

    # the highest input sequence number (:func:`input_seq`) of an event added to ``recs``,
    # of input 0 (``clients``) and input 1 (the events topic)
    seq: int = -1
    seq1: int = -1
    # corrections emitted for this client (kept by stage 1: counted with the state, in one
    # changelog record, so a crash cannot separate the two)
    corrections: int = 0

    def to_bytes(self) -> bytes:
        return _encoder.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> LiveClientState:
        return _decoder.decode(raw)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(LiveClientState)


def input_seq(offset: int, input_index: int = 0) -> int:
    """The sequence number of an event read at ``offset`` of stage 1's input ``input_index``
    (0: the ``clients`` topic, 1: the events topic): offsets of different inputs overlap,
    their sequence numbers do not."""
    return offset * SEQ_INPUTS + input_index


def applied(state: LiveClientState | None, seq: int) -> bool | None:
    """Whether the event with input sequence number ``seq`` was already added to ``state``:
    True (as a new event), False (it was a duplicate then), or None (``state`` was stored
    before that event, or there is no state): apply it with :func:`live_step`. Each input's
    sequence numbers are compared only with that input's."""
    if state is None or seq < 0:
        return None
    if (state.seq1 if seq % SEQ_INPUTS else state.seq) < seq:
        return None
    return any(r.tag == seq for r in state.recs)


def live_step(
    state: LiveClientState | None, event: Event, clock: Clock, config: CoreConfig, seq: int
) -> tuple[LiveClientState | None, list[Output]]:
    """:func:`streams.core.step` for stage 1: the event's record is tagged with ``seq`` and,
    unless it was a duplicate, the state's highest sequence number of its input is raised.
    Same contract as ``step`` otherwise."""
    before = state if state is not None else LiveClientState(event.client)
    new, outs = step(before, event, clock, config, seq)
    if new is None:
        return None, outs
    assert isinstance(new, LiveClientState)  # the core returns the state it was given
    if seq >= 0 and not (outs and isinstance(outs[0], Duplicate)):
        if seq % SEQ_INPUTS:
            new.seq1 = max(new.seq1, seq)
        else:
            new.seq = max(new.seq, seq)
    return new, outs


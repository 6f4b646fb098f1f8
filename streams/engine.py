"""The in-process driver of both stages: per-client core (stage 1) and team windows (stage 2).

Used by ``pathwatch replay`` and by tests; the live faust app drives the same pure functions
with its own tables. The engine holds no business rules: each partition's time policy is a
:class:`streams.runner.PartitionRunner` (watermark, due clients), as in live stage 1; the
engine calls :func:`streams.core.step` for each event and :func:`streams.core.sweep` for the
clients due, applies observations to :class:`streams.windows.TeamWindows`, prunes them and
runs the system rules when the watermark enters a local day (:class:`streams.runner.DayBoundary`,
as live stage 2), and records alert transitions and counters for the report.

In the engine the alert clock is the watermark (replay semantics, DOMAIN.md section 4), so
the same input gives the same alerts. ``finish()`` treats the end of input as the end of
time: both clocks go to the largest event time seen (plus one microsecond, so that events at
that very instant count); windows closing later stay pending.

Counters: ``accepted`` counts events that were not duplicates (cancels included);
``duplicates`` repeated (source, id); ``dead_letters`` decoder rejects fed with
:meth:`Engine.feed_dead_letter` plus orphan cancels; ``corrections`` observations emitted with
``correction=True`` (revisions of an already emitted observation, retractions included);
``dead_letters_by_kind`` the dead letters by :class:`schemas.deadletter.DeadLetterKind` value.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from alerts.model import Alert
from schemas.deadletter import DeadLetter
from schemas.model import ALL_TEAMS, Event
from streams.calendar import from_us, to_us
from streams.changes import ChangeRegister
from streams.core import ClientState, Clock, CoreConfig, Duplicate, Observation, Output, idle, step, sweep
from streams.runner import DayBoundary, Marks, PartitionRunner
from streams.windows import TeamWindows


class SystemRules(Protocol):
    """System alerts (RateOffTarget, SpecialCause) over stage-2 windows; see alerts/rules.py.

    ``evaluate`` is called whenever the watermark crosses a local day boundary and once at the
    end of input, and returns the system-alert transitions (firing or resolved) since the last
    call.
    """

    def evaluate(self, windows: TeamWindows, watermark: datetime) -> list[Alert]: ...


@dataclass(slots=True)
class Counters:
    accepted: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    corrections: int = 0
    dead_letter_kinds: Counter[str] = field(default_factory=Counter)

    def dead_letter(self, letter: DeadLetter) -> None:
        self.dead_letters += 1
        self.dead_letter_kinds[letter.kind.value] += 1

    def as_dict(self) -> dict[str, Any]:
        """The report's ``events``; ``dead_letters_by_kind`` is sorted by kind and holds only
        the kinds seen (its counts add up to ``dead_letters``)."""
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "dead_letters": self.dead_letters,
            "corrections": self.corrections,
            "dead_letters_by_kind": dict(sorted(self.dead_letter_kinds.items())),
        }


REPLAY_GC_THRESHOLD = 100_000
"""The cyclic garbage collector's first threshold during a replay (Python's default: 700)."""


@contextmanager
def replay_gc(threshold: int = REPLAY_GC_THRESHOLD) -> Iterator[None]:
    """Run a replay with the garbage collector tuned for it, as a ``with`` block or a
    decorator; the previous setting is restored after, also when the block raises.

    A replay makes millions of small objects that live long (client histories) and almost no
    reference cycles, so the collector's default threshold makes it walk the young objects
    every few hundred allocations for nothing. Inside the block the objects made so far are
    frozen (never scanned again) and the first threshold is ``threshold``; cycles are still
    collected, less often. Nested blocks leave the outer one's setting alone. (Speed figures:
    benchmarks/RESULTS.md, ``bench_replay.py``.)
    """
    saved = gc.get_threshold()
    if saved[0] >= threshold:
        yield  # already tuned (a nested replay)
        return
    gc.freeze()
    gc.set_threshold(threshold, saved[1], saved[2])
    try:
        yield
    finally:
        gc.set_threshold(*saved)
        gc.unfreeze()


class Engine:
    """Feeds events through both stages in one process. Not thread-safe."""

    def __init__(self, config: CoreConfig, system_rules: SystemRules | None = None) -> None:
        self.config = config
        self.rules = system_rules
        self.windows = TeamWindows(config)
        self.counters = Counters()
        self.teams: set[str] = set()
        self.clients: dict[str, ClientState] = {}
        # clients with nothing open but their last team assignment, serialised (streams.core.idle)
        self._idle: dict[str, bytes] = {}
        self._alerts: dict[tuple[str, datetime], Alert] = {}
        # per partition: event-time marks, the runner (due clients) and the clock last used
        self._marks: dict[int, Marks] = {}
        self._runners: dict[int, PartitionRunner] = {}
        self._clocks: dict[int, Clock] = {}
        self._lateness = config.lateness_us
        self._days = DayBoundary(config.calendar, first=False)
        self._finished_at: int | None = None
        # service changes are per team, not per client: kept aside (streams/changes.py)
        self.changes = ChangeRegister()

    # -- input ------------------------------------------------------------------------------------

    def feed(self, event: Event, partition: int = 0) -> list[Output]:
        """Process one validated event arriving on ``partition``; returns every output it caused
        (its own client's and those of clients swept because the watermark moved). A
        ``service.change`` (and a ``cancel`` of one) goes to :attr:`changes` and moves no
        watermark: it may take effect later than the events around it."""
        if self.changes.handles(event):
            if self.changes.feed(event):
                self.counters.accepted += 1
            else:
                self.counters.duplicates += 1
            return []
        t = to_us(event.time)
        runner = self._runners.get(partition)
        if runner is None:
            runner = self._runners[partition] = PartitionRunner(self._lateness)
            self._marks[partition] = Marks()
        arrival = runner.arrive(self._marks[partition], t)
        clock = self._clocks.get(partition)
        if arrival.advanced or clock is None:
            w = runner.watermark_after(self._marks[partition], t)
            clock = self._clocks[partition] = Clock.of_us(w, w)
        self._note_teams(event)
        client = event.client
        state = self.state(client)
        pushed = None if state is None else state.due
        state, outs = step(state, event, clock, self.config)
        self._store(client, state, runner, pushed)
        if outs and isinstance(outs[0], Duplicate):
            self.counters.duplicates += 1
        else:
            self.counters.accepted += 1
        if arrival.advanced:
            outs.extend(self._sweep_due(runner, clock))
        self._record(outs)
        self._day_boundary(clock.watermark_us)
        return outs

    def feed_dead_letter(self, dead_letter: DeadLetter) -> None:
        """Count an input the decoder rejected (it is reported, never silently dropped)."""
        self.counters.dead_letter(dead_letter)

    def finish(self) -> list[Output]:
        """End of input is the end of time: advance every partition's watermark and the alert
        clock to the largest event time seen, sweep, and run the system rules once."""
        if not self._marks:
            return []
        end = max(m.max_us for m in self._marks.values())
        # one microsecond past the last event, so that an event at the very end is visible
        # (outcomes use events strictly before the clock); the report shows ``end``
        clock = Clock.of_us(end + 1, end + 1)
        outs: list[Output] = []
        for partition, runner in self._runners.items():
            PartitionRunner.advance_to(self._marks[partition], end + 1)
            self._clocks[partition] = clock
            outs.extend(self._sweep_due(runner, clock))
        self._record(outs)
        self._finished_at = end
        self.windows.prune(clock.watermark)
        if self.rules is not None:
            self._record_alerts(self.rules.evaluate(self.windows, clock.watermark))
        return outs

    # -- internals ----------------------------------------------------------------------------------

    def _note_teams(self, event: Event) -> None:
        d = event.data
        team = getattr(d, "team", None)
        if team:
            self.teams.add(team)

    def state(self, client: str) -> ClientState | None:
        """The stage-1 state of ``client`` (None: nothing held)."""
        state = self.clients.get(client)
        if state is None:
            raw = self._idle.pop(client, None)
            if raw is not None:
                state = self.clients[client] = ClientState.from_bytes(raw)
        return state

    def _store(self, client: str, state: ClientState | None, runner: PartitionRunner, pushed: int | None) -> None:
        """Keep ``state``; ``pushed`` is the due already in ``runner`` for this client."""
        if state is None:
            self.clients.pop(client, None)
            return
        if idle(state):
            self.clients.pop(client, None)
            self._idle[client] = state.to_bytes()
            return
        self.clients[client] = state
        runner.schedule(client, state, pushed)

    def _sweep_due(self, runner: PartitionRunner, clock: Clock) -> list[Output]:
        outs: list[Output] = []
        if not len(runner):
            return outs
        for client, state in runner.take_due(clock.watermark_us, clock.alert_us, self.clients.get).items():
            swept, produced = sweep(state, clock, self.config)
            self._store(client, swept, runner, None)
            outs.extend(produced)
        return outs

    def _record(self, outs: list[Output]) -> None:
        windows = self.windows
        counters = self.counters
        for o in outs:
            if isinstance(o, Observation):
                windows.apply(o)
                if o.correction:
                    counters.corrections += 1
                if not o.retracted:
                    self.teams.add(o.team)
            elif isinstance(o, Alert):
                self._alerts[(o.fingerprint, o.starts_at)] = o
            elif isinstance(o, DeadLetter):
                counters.dead_letter(o)

    def _record_alerts(self, alerts: list[Alert]) -> None:
        for a in alerts:
            self._alerts[(a.fingerprint, a.starts_at)] = a

    def _day_boundary(self, watermark_us: int) -> None:
        """Prune the windows and run the system rules when the watermark enters a later local
        day: the schedule of live stage 2 (docs/design.md, "One time policy")."""
        if not self._days.cross(watermark_us):
            return
        watermark = from_us(watermark_us)
        self.windows.prune(watermark)
        if self.rules is not None:
            self._record_alerts(self.rules.evaluate(self.windows, watermark))

    # -- output ----------------------------------------------------------------------------------

    @property
    def watermark(self) -> datetime | None:
        """The lowest partition watermark (after :meth:`finish`: the largest event time)."""
        if self._finished_at is not None:
            return from_us(self._finished_at)
        if not self._marks:
            return None
        return from_us(min(m.max_us for m in self._marks.values()) - self._lateness)

    def alerts(self) -> list[Alert]:
        """Every alert instance (identity + startsAt) in its latest state, sorted by
        (startsAt, fingerprint)."""
        return [self._alerts[k] for k in sorted(self._alerts, key=lambda k: (k[1], k[0]))]

    def report(self) -> dict[str, Any]:
        """The replay report of DOMAIN.md section 6 (call after :meth:`finish`).

        Every rate measure for ``*`` and every team seen (teams named in any event or owning an
        observation, ``unassigned`` included when used), zero rows included; waits likewise;
        alerts sorted by (startsAt, fingerprint); event counters.
        """
        watermark = self.watermark
        teams = sorted(self.teams - {ALL_TEAMS})
        now = watermark if watermark is not None else from_us(0)
        measures = [
            {"measure": r.measure, "team": r.team, "numerator": r.numerator, "denominator": r.denominator}
            for r in self.windows.rates(now, None, teams=teams)
        ]
        waits = [
            {"measure": r.measure, "team": r.team, "count": r.count, "p50": r.p50, "p90": r.p90}
            for r in self.windows.waits(None, None, teams=teams)
        ]
        return {
            "watermark": None if watermark is None else watermark.isoformat(),
            "measures": measures,
            "waits": waits,
            "alerts": [a.report_entry() for a in self.alerts()],
            "events": self.counters.as_dict(),
        }


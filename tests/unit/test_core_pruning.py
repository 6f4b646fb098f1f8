"""Pruning a client's old history must change no outcome.

The core forgets history older than the horizon (``CoreConfig.horizon_us``). An index event
still held can depend on records before it (a crisis on the crises of the 30 days before; a
discharge or crisis that names no team on the client's earlier contacts and referrals): once
those are pruned it must not be derived again from what is left, or a decided outcome would
flip (a repeat crisis became "not a repeat", a discharge moved to ``unassigned``) and be
emitted as a correction. Care-gap alerts that the data never ends expire at a fixed instant
(``CoreConfig.expiry_us`` after the discharge; ``max_referral_age_days`` after a referral),
before their context can be pruned, so pruning ends none of them either.

Checked here with hand-made cases and the report with pruning against the report with the
horizon made endless on simulated years; ``tests/unit/test_oracle.py`` compares every measure
with a batch computation straight from the simulated JSON lines.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from pathwatch.simulate import SimulationOptions, generate
from schemas.decode import Decoder
from streams.calendar import from_us, to_us
from streams.core import CoreConfig
from streams.engine import Engine
from tests.fixtures.core.build import NY, Run, at, contact, crisis, discharge, ny, replay_lines, tick


def endless(config: CoreConfig) -> CoreConfig:
    """The same configuration with a horizon nothing ever leaves (no pruning at all)."""
    object.__setattr__(config, "horizon_us", 1 << 60)
    return config


def test_a_repeat_crisis_stays_a_repeat_after_the_crisis_before_it_is_pruned() -> None:
    events = [
        crisis(ny("2026-01-05 10:00"), id="a"),
        crisis(ny("2026-01-18 10:00"), id="b"),  # 13 days after a: a repeat
        tick(ny("2026-05-20 00:00")),  # a is past the horizon: the client is swept and pruned
        contact(ny("2026-05-19 09:00")),  # late (within the lateness): a full re-derivation
        tick(ny("2026-07-01 00:00")),
    ]
    config = CoreConfig(timezone=NY)
    assert to_us(ny("2026-05-20 00:00")) - to_us(ny("2026-01-05 10:00")) > config.horizon_us
    run = Run(events, config)
    repeat = {o.key.split("\x1f")[-1]: o.numerator for o in run.measure("repeat_crisis_30d")}  # type: ignore[attr-defined]
    assert repeat == {"a": False, "b": True}
    assert run.engine.counters.corrections == 0
    assert run.engine.clients["c1"].pruned_before > to_us(ny("2026-01-05 10:00"))  # a really was pruned


def test_a_discharge_keeps_the_team_it_took_from_a_contact_that_is_pruned() -> None:
    events = [
        contact(ny("2026-01-05 10:00"), team="south", id="k"),
        discharge(ny("2026-03-16 10:00"), id="d"),  # names no team: south, from the contact
        contact(ny("2026-03-18 10:00"), team="south", id="f"),
        tick(ny("2026-05-20 00:00")),
        contact(ny("2026-05-19 09:00"), team="south"),  # late: a full re-derivation
        tick(ny("2026-07-01 00:00")),
    ]
    run = Run(events, CoreConfig(timezone=NY))
    teams = {o.measure: o.team for o in run.obs.values() if o.key.endswith("\x1fd")}  # type: ignore[attr-defined]
    assert teams == dict.fromkeys(("followup_72h", "followup_7d", "followup_30d", "readmission_30d"), "south")
    assert run.engine.counters.corrections == 0
    assert run.engine.clients["c1"].pruned_before > to_us(ny("2026-01-05 10:00"))


def test_follow_up_alerts_the_data_never_ends_expire_when_the_outcomes_are_final() -> None:
    config = CoreConfig(timezone=NY)
    discharged = ny("2026-04-01 09:00")
    run = Run([discharge(discharged, team="north", id="d"), tick(ny("2026-09-01 00:00"))], config)
    alerts = {a.name: a for a in run.alerts()}  # type: ignore[attr-defined]
    expiry = from_us(to_us(discharged) + config.expiry_us)
    assert set(alerts) == {"FollowUpDue", "FollowUpMissed"}
    assert all(a.ends_at == expiry for a in alerts.values()), alerts
    # 31 days (the longest window), 2 days and the 72-hour lateness after the discharge
    assert expiry - discharged == timedelta(days=36)


def test_a_follow_up_before_the_expiry_still_resolves_the_due_alert() -> None:
    run = Run([discharge(ny("2026-04-01 09:00"), team="north"), contact(ny("2026-04-20 09:00"))], CoreConfig(timezone=NY))
    due = [a for a in run.alerts("FollowUpDue")]
    assert [a.ends_at for a in due] == [ny("2026-04-20 09:00")]  # type: ignore[attr-defined]


def _report(lines: list[bytes], config: CoreConfig) -> dict:
    return replay_lines(lines, config, b"pruning-test").report()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pruning_changes_nothing_in_a_simulated_year(seed: int) -> None:
    lines = list(generate(SimulationOptions(clients=400, days=330, seed=seed)))
    pruned = _report(lines, CoreConfig(timezone="Europe/London"))
    kept = _report(lines, endless(CoreConfig(timezone="Europe/London")))
    assert pruned == kept  # the whole report
    assert sum(row["denominator"] for row in pruned["measures"] if row["team"] == "*") > 500


@pytest.mark.parametrize("seed", [1, 2])
def test_pruning_changes_no_report_of_a_full_size_year(seed: int) -> None:
    """``pathwatch simulate --seed N`` at its default size (6,000 clients, a year, about 118,000
    events): the whole report (watermark, every measure and wait, the counters, every alert
    instance) with pruning equals the one without. Seed 1 held the FrequentCrisis that pruning
    raised (issue 15 item 4); ``benchmarks/pruning_sweep.py`` runs more seeds."""
    lines = list(generate(SimulationOptions(seed=seed)))
    assert len(lines) > 100_000
    pruned = _report(lines, CoreConfig())
    assert pruned == _report(lines, endless(CoreConfig()))
    assert len(pruned["alerts"]) > 1000


def test_no_client_is_left_due_in_the_past() -> None:
    """A sweep leaves each client due strictly after the clock (or not at all): a due in the
    past would have the engine sweep that client again at every move of the watermark."""
    config = CoreConfig(timezone="Europe/London")
    engine = Engine(config)
    decoder = Decoder(b"pruning-test", 1 << 20)
    checked = 0
    for n, line in enumerate(generate(SimulationOptions(clients=300, days=300, seed=6))):
        event = decoder.decode_line(line, "simulated", n)
        engine.feed(event)  # type: ignore[arg-type]
        if n % 500 == 0:
            clock = engine._clocks[0]
            now = max(clock.watermark_us, clock.alert_us)
            late = [c for c, s in engine.clients.items() if s.due is not None and s.due <= now]
            assert late == [], (n, len(late))
            checked += len(engine.clients)
    assert checked > 1000


def test_a_frequent_crisis_run_keeps_its_team_after_its_first_crises_are_pruned() -> None:
    """Issue 15 item 4 (client of ``pathwatch simulate --seed 1``): a run of crises that names
    no team starts the FrequentCrisis (team unassigned); a later crisis of the run names east.
    Once the look-back of the run's first crisis was pruned, the run was taken as started by a
    crisis past re-deriving and the east crisis raised an east instance of its own."""
    times = [
        ("2025-01-14 20:04", "east"), ("2025-02-02 12:58", "east"), ("2025-02-09 09:21", "east"),
        ("2025-03-07 23:43", "east"), ("2025-04-05 18:49", None), ("2025-04-09 03:58", None),
        ("2025-04-18 04:37", None), ("2025-04-23 18:14", None), ("2025-04-24 01:38", "east"),
        ("2025-05-14 01:47", None), ("2025-07-26 09:06", None),
    ]
    events = [crisis(at(t), team=team, id=f"x{i}") for i, (t, team) in enumerate(times)]
    day = at("2025-01-15 00:00")
    while day < at("2025-10-01 00:00"):  # the watermark moves a day at a time, as in a busy stream
        events.append(tick(day))
        day += timedelta(days=1)
    events.sort(key=lambda e: e.time)

    def instances(config: CoreConfig) -> list[tuple[str, object, object]]:
        run = Run(events, config)
        return sorted((a.labels["team"], a.starts_at, a.ends_at) for a in run.alerts("FrequentCrisis"))  # type: ignore[attr-defined]

    pruned = instances(CoreConfig())
    assert pruned == instances(endless(CoreConfig()))
    assert ("east", at("2025-04-24 01:38"), at("2025-05-18 04:37")) not in pruned

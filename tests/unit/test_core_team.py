"""Responsible team (DOMAIN.md section 1): no age limit by default, an optional bound."""

from __future__ import annotations

import pytest

from pathwatch.config import load_settings
from pathwatch.parts import core_config
from streams.core import CoreConfig
from tests.fixtures.core.build import NY, Run, contact, discharge, ny, tick


def _team_at_discharge(config: CoreConfig) -> set[str]:
    run = Run([
        contact(ny("2026-01-05 10:00"), team="south"),
        discharge(ny("2026-07-01 10:00")),  # names no team; 177 days after the contact
        tick(ny("2026-09-01 00:00")),
    ], config)
    return {o.team for o in run.measure("followup_30d")}  # type: ignore[attr-defined]


@pytest.mark.parametrize(("memory", "team"), [(None, "south"), (365, "south"), (90, "unassigned")])
def test_the_last_team_that_saw_the_client_owns_the_discharge(memory: int | None, team: str) -> None:
    assert _team_at_discharge(CoreConfig(timezone=NY, team_memory_days=memory)) == {team}


def test_the_memory_setting_reaches_the_core() -> None:
    assert core_config(load_settings()).team_memory_days is None
    assert core_config(load_settings(team_memory_days=30)).team_memory_days == 30

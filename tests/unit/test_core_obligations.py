"""Open follow-up obligations (the live gauge): eligible discharges still waiting for follow-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pathwatch.config import load_settings
from pathwatch.parts import core_config
from schemas.model import Contact, Discharge, Event
from streams.core import Clock, CoreConfig, open_followups, step

CLIENT = "a" * 32
DISCHARGED = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday


def discharge(disposition: str = "home", psychiatric: bool = True) -> Event:
    return Event("hospital/x", "d1", "discharge", DISCHARGED, CLIENT,
                 Discharge("e1", "x", "inpatient", psychiatric, disposition, "north"))  # type: ignore[arg-type]


def contact(when: datetime, mode: str = "telephone") -> Event:
    return Event("ehr/community", f"c{when.isoformat()}", "contact", when, CLIENT,
                 Contact("c1", "north", "attended", mode))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def config() -> CoreConfig:
    return core_config(load_settings(timezone="UTC"))


def run(events: list[Event], config: CoreConfig) -> object:
    state = None
    clock = Clock.at(DISCHARGED - timedelta(days=1))
    for e in events:
        state, _ = step(state, e, clock, config)
    return state


@pytest.mark.parametrize(
    ("events", "at_days", "expected"),
    [
        ([discharge()], 1, [("north", 6)]),  # day d+1: 6 whole days to the end of d+7
        ([discharge()], 9, [("north", -2)]),  # overdue
        ([discharge()], 31, []),  # the 30-day window has closed
        ([discharge("died")], 1, []),  # not eligible
        ([discharge(psychiatric=False)], 1, []),
        ([discharge(), contact(DISCHARGED + timedelta(days=2))], 3, []),  # followed up
        ([discharge(), contact(DISCHARGED + timedelta(hours=2))], 3, [("north", 4)]),  # same day does not count
        ([discharge(), contact(DISCHARGED + timedelta(days=2), "text")], 3, [("north", 4)]),  # text is no follow-up
    ],
)
def test_open_followups(events: list[Event], at_days: int, expected: list[tuple[str, int]], config: CoreConfig) -> None:
    state = run(events, config)
    at = DISCHARGED.replace(hour=12) + timedelta(days=at_days)
    assert open_followups(state, at, config) == expected  # type: ignore[arg-type]

"""Local days, end of day and business days (DOMAIN.md section 2), hand-checked."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from streams.calendar import Calendar, from_us, to_us

NY = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def cal() -> Calendar:
    return Calendar(NY, "US")


DAY_CASES = [
    ("2026-03-08T04:59:59+00:00", date(2026, 3, 7)),  # 23:59:59 EST
    ("2026-03-08T05:00:00+00:00", date(2026, 3, 8)),  # 00:00 EST
    ("2026-03-08T06:59:59+00:00", date(2026, 3, 8)),  # 01:59:59 EST, just before the gap
    ("2026-03-08T07:00:00+00:00", date(2026, 3, 8)),  # 03:00 EDT
    ("2026-03-09T03:59:59+00:00", date(2026, 3, 8)),  # 23:59:59 EDT
    ("2026-03-09T04:00:00+00:00", date(2026, 3, 9)),
    ("2026-11-01T05:30:00+00:00", date(2026, 11, 1)),  # 01:30 EDT (first)
    ("2026-11-01T06:30:00+00:00", date(2026, 11, 1)),  # 01:30 EST (repeated hour)
    ("2026-11-02T04:59:59+00:00", date(2026, 11, 1)),  # 23:59:59 EST
]


@pytest.mark.parametrize(("instant", "expected"), DAY_CASES)
def test_local_day_across_dst(cal: Calendar, instant: str, expected: date) -> None:
    assert cal.local_date(datetime.fromisoformat(instant)) == expected
    # the cached path agrees with the exact one
    assert date.fromordinal(cal.day_of(to_us(datetime.fromisoformat(instant)))) == expected


@pytest.mark.parametrize(
    ("day", "end"),
    [
        (date(2026, 3, 7), "2026-03-08T05:00:00+00:00"),  # the 23-hour day starts at 05:00Z
        (date(2026, 3, 8), "2026-03-09T04:00:00+00:00"),
        (date(2026, 10, 31), "2026-11-01T04:00:00+00:00"),
        (date(2026, 11, 1), "2026-11-02T05:00:00+00:00"),  # the 25-hour day
    ],
)
def test_end_of_day(cal: Calendar, day: date, end: str) -> None:
    assert cal.end_of_day_dt(day) == datetime.fromisoformat(end)


def test_end_of_day_in_a_midnight_gap() -> None:
    # America/Santiago springs forward at 24:00 -> 01:00 (2026-09-06): day 09-05 ends at the transition
    cal = Calendar(ZoneInfo("America/Santiago"), "CL")
    end = cal.end_of_day_dt(date(2026, 9, 5))
    assert end.astimezone(ZoneInfo("America/Santiago")).date() == date(2026, 9, 6)
    assert cal.day_of(to_us(end) - 1) == date(2026, 9, 5).toordinal()


BUSINESS_CASES = [
    (date(2026, 5, 22), 1, date(2026, 5, 26)),  # Friday before Memorial Day -> Tuesday
    (date(2026, 5, 22), 10, date(2026, 6, 8)),
    (date(2026, 5, 23), 1, date(2026, 5, 26)),  # Saturday
    (date(2026, 5, 20), 0, date(2026, 5, 20)),
    (date(2026, 12, 24), 1, date(2026, 12, 28)),  # Christmas Friday
    (date(2026, 7, 2), 1, date(2026, 7, 6)),  # July 4 on Saturday observed Friday 3rd
]


@pytest.mark.parametrize(("start", "n", "expected"), BUSINESS_CASES)
def test_add_business_days(cal: Calendar, start: date, n: int, expected: date) -> None:
    assert date.fromordinal(cal.add_business_days(start.toordinal(), n)) == expected


def test_subdivision_holidays() -> None:
    # Scotland keeps 2 January; England does not
    sco = Calendar(ZoneInfo("Europe/London"), "GB", "SCT")
    eng = Calendar(ZoneInfo("Europe/London"), "GB", "ENG")
    assert not sco.is_business_day(date(2026, 1, 2).toordinal())
    assert eng.is_business_day(date(2026, 1, 2).toordinal())


def test_microsecond_round_trip() -> None:
    t = datetime(2026, 3, 8, 7, 0, 0, 123456, tzinfo=UTC)
    assert from_us(to_us(t)) == t
    with pytest.raises(ValueError, match="naive"):
        to_us(datetime(2026, 1, 1))  # noqa: DTZ001

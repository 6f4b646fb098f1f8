"""Local calendar arithmetic for the measure core (DOMAIN.md section 2).

All instants inside the core are integer microseconds since the Unix epoch (UTC): exact,
cheap to compare and to serialise. This module turns them into the provider's local days
(date ordinals in the configured IANA zone) and back, DST-safe:

* ``day_of(us)``: the local date ordinal of an instant. Cached per UTC hour, and only when
  the zone's UTC offset is the same at both ends of that hour, so an hour that contains a
  transition is always computed exactly.
* ``end_of_day(d)``: the UTC instant at which local day ``d`` ends, i.e. the first instant
  of local day ``d + 1`` (local midnight; when midnight falls in a DST gap, the transition
  instant). An instant ``t`` is on day ``d`` or earlier exactly when ``t < end_of_day(d)``.
* ``add_business_days(d, n)``: the ``n``th business day after ``d`` (Monday to Friday less
  the public holidays of the configured country and subdivision; ``n = 0`` is ``d``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import holidays

US_PER_SECOND: Final = 1_000_000
US_PER_HOUR: Final = 3600 * US_PER_SECOND
US_PER_DAY: Final = 24 * US_PER_HOUR
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


def to_us(dt: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (exact).

    Raises ``ValueError`` for a naive datetime: every time in pathwatch carries an offset.
    """
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("naive datetime: every time must carry a UTC offset")
    delta = dt - EPOCH
    return (delta.days * 86400 + delta.seconds) * US_PER_SECOND + delta.microseconds


def from_us(us: int) -> datetime:
    """Integer microseconds since the epoch as an aware UTC datetime."""
    return EPOCH + timedelta(microseconds=us)


class Calendar:
    """Local days and business days in one zone and holiday calendar. Not thread-safe (caches)."""

    __slots__ = ("tz", "country", "subdivision", "_hour_offset", "_eod", "_holidays", "_bd")

    def __init__(self, tz: ZoneInfo, country: str, subdivision: str | None = None) -> None:
        self.tz = tz
        self.country = country
        self.subdivision = subdivision
        self._hour_offset: dict[int, int] = {}
        self._eod: dict[int, int] = {}
        self._holidays: dict[int, frozenset[int]] = {}
        self._bd: dict[tuple[int, int], int] = {}

    def _offset_us(self, us: int) -> int:
        off = from_us(us).astimezone(self.tz).utcoffset()
        assert off is not None
        return off // timedelta(microseconds=1)

    def day_of(self, us: int) -> int:
        """The local date ordinal of instant ``us``."""
        hour = us // US_PER_HOUR
        off = self._hour_offset.get(hour)
        if off is None:
            start = self._offset_us(hour * US_PER_HOUR)
            if start == self._offset_us(hour * US_PER_HOUR + US_PER_HOUR - 1):
                self._hour_offset[hour] = start
                off = start
            else:
                off = self._offset_us(us)
        return (us + off) // US_PER_DAY + _EPOCH_ORDINAL

    def local_date(self, dt: datetime) -> date:
        """``day(e)`` of DOMAIN.md section 2 for an aware datetime."""
        return date.fromordinal(self.day_of(to_us(dt)))

    def end_of_day(self, ordinal: int) -> int:
        """UTC microseconds of the first instant of local day ``ordinal + 1``."""
        eod = self._eod.get(ordinal)
        if eod is None:
            midnight = datetime.combine(date.fromordinal(ordinal + 1), time(0), tzinfo=self.tz)
            eod = to_us(midnight.astimezone(UTC))
            self._eod[ordinal] = eod
        return eod

    def end_of_day_dt(self, d: date) -> datetime:
        """``end of local day d`` as an aware UTC datetime."""
        return from_us(self.end_of_day(d.toordinal()))

    def _holiday_ordinals(self, year: int) -> frozenset[int]:
        found = self._holidays.get(year)
        if found is None:
            kwargs: dict[str, Any] = {"years": year}
            if self.subdivision:
                kwargs["subdiv"] = self.subdivision
            calendar = holidays.country_holidays(self.country, **kwargs)
            found = frozenset(d.toordinal() for d in calendar)
            self._holidays[year] = found
        return found

    def is_business_day(self, ordinal: int) -> bool:
        """Monday to Friday and not a public holiday."""
        d = date.fromordinal(ordinal)
        return d.weekday() < 5 and ordinal not in self._holiday_ordinals(d.year)

    def add_business_days(self, ordinal: int, n: int) -> int:
        """The ``n``th business day after local day ``ordinal`` (``n = 0``: the day itself)."""
        key = (ordinal, n)
        found = self._bd.get(key)
        if found is None:
            cur, k = ordinal, 0
            while k < n:
                cur += 1
                if self.is_business_day(cur):
                    k += 1
            self._bd[key] = cur
            found = cur
        return found

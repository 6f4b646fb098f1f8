"""What a worker logs while it catches up with its input (pure: the worker's timer in
:mod:`streams.app` feeds it and logs the lines)."""

from __future__ import annotations

from datetime import datetime


class CatchUp:
    """When a worker says how its catch-up goes: fed the records its stages have still to
    read (``behind``) every few seconds, :meth:`observe` returns a line to log at most once
    per ``every`` seconds while behind (with the net rate at which the backlog shrinks), and
    once when caught up; None otherwise."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self._said: tuple[float, int] | None = None  # (when, behind) of the last line while behind

    def observe(self, behind: int, now: float, watermark: datetime | None = None) -> str | None:
        if behind <= 0:
            if self._said is None:
                return None
            self._said = None
            return "caught up: no input records behind"
        if self._said is not None and now - self._said[0] < self.every:
            return None
        line = f"catching up: {behind} input records behind"
        if self._said is not None:
            line += f" ({(self._said[1] - behind) / (now - self._said[0]):.0f} records/s net)"
        if watermark is not None:
            line += f"; event time reached {watermark.isoformat()}"
        self._said = (now, behind)
        return line

"""Small-cell suppression for human-facing outputs (DOMAIN.md section 5).

A cell is a (numerator, denominator) pair: events out of people. It is hidden whole (both
counts, its rate and its intervals) when its numerator, its denominator or their difference
(the people without the event) is a small count: 1 to ``min_count - 1``; 0 is shown.
Complementary suppression works on a group of cells whose total is also shown (the teams of
one measure and ``*``): when exactly one cell of the group is hidden and the total is shown,
the total less the shown cells would give it away, so a second cell is hidden too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

POLICIES = ("small_cell", "cms")


@dataclass(frozen=True)
class SuppressionPolicy:
    """``min_count``: the smallest non-zero count shown. ``cms`` is the CMS cell size rule
    (1 to 10 hidden, 0 shown); ``small_cell`` hides 1 to ``small_cell - 1`` (default under 5)."""

    name: str
    min_count: int

    @classmethod
    def named(cls, name: str, small_cell: int = 5) -> SuppressionPolicy:
        if name == "cms":
            return cls("cms", 11)
        if name == "small_cell":
            return cls(f"under {small_cell}", small_cell)
        raise ValueError(f"suppression policy {name!r} is not one of {', '.join(POLICIES)}")

    def small(self, count: int) -> bool:
        """True when ``count`` may not be shown (a non-zero count under ``min_count``)."""
        return 0 < count < self.min_count

    def cell_small(self, numerator: int, denominator: int) -> bool:
        return self.small(numerator) or self.small(denominator) or self.small(denominator - numerator)

    def describe(self) -> str:
        if self.min_count <= 1:
            return "no suppression"
        return f"counts of 1 to {self.min_count - 1} are hidden (0 is shown)"


def suppress_group(
    cells: Mapping[str, tuple[int, int]], total: tuple[int, int] | None, policy: SuppressionPolicy
) -> tuple[set[str], bool]:
    """The cells of one group to hide, and whether to hide the total.

    ``cells`` maps a name (a team) to (numerator, denominator); ``total`` is the group's
    total, shown beside them (``None`` when no total is shown). Guarantees: no hidden cell
    has a small count visible; when the total is shown, the hidden cells are none or at least
    two, so none of them equals the total less the shown cells. The complement chosen is the
    shown cell with the smallest non-zero denominator (then by name); with none left, the
    total is hidden instead.
    """
    hidden = {name for name, (num, den) in cells.items() if policy.cell_small(num, den)}
    hide_total = total is not None and policy.cell_small(*total)
    if total is not None and not hide_total and len(hidden) == 1:
        candidates = sorted(
            (den, name) for name, (_num, den) in cells.items() if name not in hidden and den > 0
        )
        if candidates:
            hidden.add(candidates[0][1])
        else:
            hide_total = True
    return hidden, hide_total

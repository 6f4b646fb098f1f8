"""Statistical process control for weekly rate series: the improvement direction of a measure.

The Making Data Count charts and rules live in :mod:`alerts.mdc` (computed as NHSRplotthedots
computes them); SpecialCause (:mod:`alerts.rules`) judges the latest point of those charts, and
:mod:`alerts.evidence` judges the weeks after a service change.
"""

from __future__ import annotations

from enum import StrEnum


class Direction(StrEnum):
    """Which way is better for a measure."""

    HIGHER_IS_BETTER = "higher"
    LOWER_IS_BETTER = "lower"


__all__ = ["Direction"]

"""The core's view of the settings: :func:`core_config` (read once at the entry point).

Kept out of :mod:`streams.core` so that the pure core does not import the settings module
(library packages take their configuration as plain values; the composition root builds it).
"""

from __future__ import annotations

from pathwatch.config import Settings
from streams.core import CoreConfig


def core_config(settings: Settings) -> CoreConfig:
    """The :class:`streams.core.CoreConfig` of ``settings``; raises what the settings' own
    validation raises, nothing more."""
    k, d = settings.frequent_crisis_rule
    return CoreConfig(
        timezone=settings.timezone,
        holidays_country=settings.holidays,
        holidays_subdivision=settings.holidays_subdivision,
        allowed_lateness=settings.allowed_lateness,
        window_days=settings.window_days,
        referral_open_limit_days=settings.referral_open_limit_days,
        target_emergency_hours=settings.target_emergency_hours,
        target_urgent_business_days=settings.target_urgent_business_days,
        target_routine_business_days=settings.target_routine_business_days,
        frequent_crisis_k=k,
        frequent_crisis_days=d,
        team_memory_days=settings.team_memory_days,
    )

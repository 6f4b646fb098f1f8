"""Settings in, configured library parts out: where the settings stop (STYLE.md 6).

Library packages (``schemas``, ``alerts``, ``streams``, ``board``) take plain parameters and
never import :mod:`pathwatch.config`; the commands (:mod:`pathwatch.cli`) and the worker's
composition root turn the one :class:`~pathwatch.config.Settings` object into the parts they
need with these functions. Each reads settings only (``board`` also reads the cost table
the settings name), does no other I/O and raises ``ValueError``
(with the setting's name) when a setting cannot make a valid part.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from alerts.rules import AlertRulesConfig, SystemAlertRules, parse_rebase
from board.run import Board
from board.suppress import SuppressionPolicy
from board.value import load_cost_table
from pathwatch.config import Settings
from schemas.adapters import AdapterOptions
from schemas.decode import Decoder
from streams.core import CoreConfig
from streams.report import SpcParts


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


def decoder(settings: Settings, *, live: bool) -> Decoder:
    """The one decode path, from settings (key, ``max_message_bytes``, ``teams``).

    Raises ``ValueError`` when ``live`` and no key is configured (unless ``allow_dev_key``):
    live workers must refuse to start (docs/specification.md, section 6)."""
    return Decoder(settings.pseudonym_key_bytes(live=live), settings.max_message_bytes, settings.teams)


def adapter_options(settings: Settings, facility: str | None = None) -> AdapterOptions:
    """The HL7 v2 and FHIR adapters' options; ``facility`` names the hospital when a message does not."""
    return AdapterOptions(
        psychiatric_services=tuple(settings.psychiatric_services),
        psychiatric_diagnosis_prefixes=tuple(settings.psychiatric_diagnosis_prefixes),
        facility=facility,
        timezone=settings.timezone,
        linking_systems=tuple(settings.linking_identifier_systems),
    )


def rules_config(settings: Settings, rebase: Mapping[str, str | date] | None = None) -> AlertRulesConfig:
    """The system alert rules' configuration (RateOffTarget targets, SPC settings).

    ``rebase`` maps ``"team/measure"`` to an ISO date (or a ``date``); when omitted, the
    setting ``spc_rebase`` is used. Raises ``ValueError`` on a key without ``/``, an unknown
    measure or a malformed date."""
    return AlertRulesConfig(
        rate_targets=dict(settings.rate_targets),
        min_denominator=settings.rate_min_denominator,
        baseline_points=settings.spc_baseline_points,
        window_days=settings.window_days,
        runbook_url=settings.runbook_url,
        rebase=parse_rebase(settings.spc_rebase if rebase is None else rebase),
        spc_min_weekly_denominator=settings.spc_min_weekly_denominator,
        spc_confirm_weeks=settings.spc_confirm_weeks,
        spc_screen_outliers=settings.spc_screen_outliers,
    )


def spc_parts(settings: Settings) -> SpcParts:
    """What ``pathwatch report --from-live`` needs for its ``"spc"`` and ``"changes"``: the
    rules' charts and configuration, the decoder of the changes topic (pseudonyms as the
    replay makes them: ``live=False``) and the timezone."""
    rules = rules_config(settings)
    return SpcParts(SystemAlertRules(rules).charts, rules, decoder(settings, live=False), settings.timezone)


def board(settings: Settings) -> Board:
    """The board report's builder. Raises ValueError when the configured cost table cannot be
    read or is malformed."""
    table = None if settings.cost_table is None else load_cost_table(settings.cost_table)
    return Board(
        settings.provider_name,
        SuppressionPolicy.named(settings.suppression, settings.small_cell),
        table,
        settings.value_deadweight,
        settings.spc_min_weekly_denominator,
    )


__all__ = ["adapter_options", "board", "core_config", "decoder", "rules_config"]

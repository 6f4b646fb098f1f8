"""The catalogue: every measure and every alert name pathwatch knows, defined once.

The core, the rules, the metrics bundle, the replay report, the board report, the dashboards'
and rules' tests and docs/specification.md all read their measures and alert names from here,
so a measure is added (or renamed) in one place and a test (tests/unit/test_catalogue.py)
fails where another file still names something that is not here.

It lives in ``schemas/`` next to :data:`schemas.model.RateMeasure` (the wire vocabulary of a
``service.change`` event's ``measures``) because ``schemas`` is the lowest package: the core,
``alerts``, ``board`` and ``pathwatch`` all import it and it imports nothing of theirs, so
the catalogue can be read from every layer without an import cycle. It is plain data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from schemas.model import ExpectedDirection

Kind = Literal["rate", "wait"]


@dataclass(frozen=True, slots=True)
class Measure:
    """One measure of DOMAIN.md section 3.

    ``direction`` says which way is better. ``window_days`` is the outcome window after the
    index event's local day (follow-ups [d+1, d+N], readmission, the repeat-crisis look-back),
    or None where settings define it (``settings`` names them). ``default_target`` is the
    RateOffTarget target when the setting ``rate_targets`` does not name the measure (None:
    no target by default). ``short`` names it in the 80-column terminal summary; ``label`` and
    ``definition`` are plain words for reports.
    """

    name: str
    short: str
    kind: Kind
    direction: ExpectedDirection
    unit: str
    window_days: int | None
    settings: tuple[str, ...]
    default_target: float | None
    label: str
    definition: str


_FOLLOWUP_SETTINGS = ("rate_targets",)

MEASURE_CATALOGUE: Final[tuple[Measure, ...]] = (
    Measure(
        "followup_72h", "fu_72h", "rate", "higher", "ratio", 3, _FOLLOWUP_SETTINGS, 0.80,
        "Follow-up within 72 hours of discharge",
        "Of people discharged from a psychiatric inpatient stay (not transferred, not deceased, "
        "not to prison or court), the share with an attended follow-up in the 3 days after the day "
        "of discharge. People readmitted before any follow-up are left out.",
    ),
    Measure(
        "followup_7d", "fu_7d", "rate", "higher", "ratio", 7, _FOLLOWUP_SETTINGS, 0.70,
        "Follow-up within 7 days of discharge",
        "The same as the 72-hour follow-up, over the 7 days after the day of discharge.",
    ),
    Measure(
        "followup_30d", "fu_30d", "rate", "higher", "ratio", 30, _FOLLOWUP_SETTINGS, None,
        "Follow-up within 30 days of discharge",
        "The same as the 72-hour follow-up, over the 30 days after the day of discharge.",
    ),
    Measure(
        "readmission_30d", "readm_30d", "rate", "lower", "ratio", 30, (), None,
        "Readmitted within 30 days",
        "Of the same discharges, the share admitted to an inpatient bed again in the 30 days after "
        "the day of discharge (an admission on the day itself is a transfer, not a readmission).",
    ),
    Measure(
        "seen_within_target", "seen_in_tgt", "rate", "higher", "ratio", None,
        ("target_emergency_hours", "target_urgent_business_days", "target_routine_business_days", "rate_targets"),
        0.80,
        "Seen within target",
        "Of referrals whose target time has passed (or that were seen), the share first seen in "
        "person, by phone or video within target: emergency 4 hours, urgent 1 business day, "
        "routine 10 business days.",
    ),
    Measure(
        "lost_before_contact", "lost_b4_1st", "rate", "lower", "ratio", None, ("referral_open_limit_days",), None,
        "Lost before first contact",
        "Of referrals with a known outcome, the share closed for a reason other than being seen, "
        "or still open after 28 days, without anyone attending a contact.",
    ),
    Measure(
        "first_contact_dna", "dna_1st", "rate", "lower", "ratio", None, (), None,
        "First contact not attended",
        "Of referrals with a first booked contact, the share whose first contact was not attended.",
    ),
    Measure(
        "repeat_crisis_30d", "crisis_30d", "rate", "lower", "ratio", 30, (), None,
        "Repeat crisis within 30 days",
        "Of crisis episodes, the share where the person had another crisis in the 30 days before.",
    ),
    Measure(
        "referral_wait_days", "wait_days", "wait", "lower", "days", None, (), None,
        "Wait from referral to first contact",
        "Days from referral to the first attended contact: the median (p50) and the 90th centile.",
    ),
)  # fmt: skip
"""Every measure, rate measures first in the order reports and metrics list them."""

MEASURES_BY_NAME: Final[Mapping[str, Measure]] = MappingProxyType({m.name: m for m in MEASURE_CATALOGUE})
RATE_MEASURES: Final[tuple[str, ...]] = tuple(m.name for m in MEASURE_CATALOGUE if m.kind == "rate")
WAIT_MEASURES: Final[tuple[str, ...]] = tuple(m.name for m in MEASURE_CATALOGUE if m.kind == "wait")
MEASURE_NAMES: Final[tuple[str, ...]] = RATE_MEASURES + WAIT_MEASURES
DIRECTIONS: Final[Mapping[str, ExpectedDirection]] = MappingProxyType({m.name: m.direction for m in MEASURE_CATALOGUE})
DEFAULT_RATE_TARGETS: Final[Mapping[str, float]] = MappingProxyType(
    {m.name: m.default_target for m in MEASURE_CATALOGUE if m.default_target is not None}
)
"""The default of the setting ``rate_targets`` (a copy is taken by ``pathwatch.config``)."""


@dataclass(frozen=True, slots=True)
class AlertName:
    """An alert pathwatch raises: its ``alertname`` label, the severities it carries, what it is about."""

    name: str
    severities: tuple[str, ...]
    about: str


CARE_GAP_CATALOGUE: Final[tuple[AlertName, ...]] = (
    AlertName("FollowUpDue", ("warning",), "an eligible discharge with no follow-up by the end of day d+2"),
    AlertName("FollowUpMissed", ("critical",), "no follow-up by the end of day d+7"),
    AlertName(
        "ReferralWaiting", ("critical", "warning"),
        "a referral not seen by its target (critical when the referral is an emergency)",
    ),
    AlertName("FrequentCrisis", ("warning",), "a client reaches K crises in D days (setting frequent_crisis)"),
    AlertName("Readmitted30d", ("warning",), "an inpatient admission in [d+1, d+30] after an eligible discharge"),
)  # fmt: skip
"""Care-gap alerts: one client each (labels carry ``team`` and the client pseudonym)."""

RATE_OFF_TARGET: Final = "RateOffTarget"
SPECIAL_CAUSE: Final = "SpecialCause"
SYSTEM_CATALOGUE: Final[tuple[AlertName, ...]] = (
    AlertName(RATE_OFF_TARGET, ("warning",), "a team's trailing-window rate is worse than its target"),
    AlertName(SPECIAL_CAUSE, ("info",), "the latest weekly point is special cause in the worse direction"),
)
"""System (churn) alerts: one team and measure each, no client labels."""

OPERATIONAL_ALERTS: Final[tuple[str, ...]] = (
    "PathwatchWorkerDown",
    "PathwatchConsumerLagGrowing",
    "PathwatchDeadLettersSpiking",
    "PathwatchWatermarkStalled",
    "PathwatchDeliveryStalled",
    "PathwatchEventsNotKeyedByPseudonym",
    "PathwatchPartnerUnlinked",
)
"""Alerts Prometheus raises about pathwatch itself (deploy/prometheus/rules; docs/runbook.md)."""

CARE_GAP_ALERTS: Final[tuple[str, ...]] = tuple(a.name for a in CARE_GAP_CATALOGUE)
SYSTEM_ALERTS: Final[tuple[str, ...]] = tuple(a.name for a in SYSTEM_CATALOGUE)
SEVERITIES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {a.name: a.severities for a in (*CARE_GAP_CATALOGUE, *SYSTEM_CATALOGUE)}
)
ALERT_NAMES: Final[frozenset[str]] = frozenset((*CARE_GAP_ALERTS, *SYSTEM_ALERTS, *OPERATIONAL_ALERTS))

__all__ = [
    "ALERT_NAMES",
    "CARE_GAP_ALERTS",
    "CARE_GAP_CATALOGUE",
    "DEFAULT_RATE_TARGETS",
    "DIRECTIONS",
    "MEASURES_BY_NAME",
    "MEASURE_CATALOGUE",
    "MEASURE_NAMES",
    "OPERATIONAL_ALERTS",
    "RATE_MEASURES",
    "RATE_OFF_TARGET",
    "SEVERITIES",
    "SPECIAL_CAUSE",
    "SYSTEM_ALERTS",
    "SYSTEM_CATALOGUE",
    "WAIT_MEASURES",
    "AlertName",
    "Measure",
]

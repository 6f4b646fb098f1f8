"""Plain-words names and definitions of the measures, for people who read the board report."""

from __future__ import annotations

MEASURE_ORDER = (
    "seen_within_target",
    "lost_before_contact",
    "first_contact_dna",
    "followup_72h",
    "followup_7d",
    "followup_30d",
    "readmission_30d",
    "repeat_crisis_30d",
)

LABELS: dict[str, str] = {
    "seen_within_target": "Seen within target",
    "lost_before_contact": "Lost before first contact",
    "first_contact_dna": "First contact not attended",
    "followup_72h": "Follow-up within 72 hours of discharge",
    "followup_7d": "Follow-up within 7 days of discharge",
    "followup_30d": "Follow-up within 30 days of discharge",
    "readmission_30d": "Readmitted within 30 days",
    "repeat_crisis_30d": "Repeat crisis within 30 days",
    "ed_crisis": "First crisis seen in the emergency department",
    "referral_wait_days": "Wait from referral to first contact",
}

# what a higher value means: "higher" is better, "lower" is better
DIRECTION: dict[str, str] = {
    "seen_within_target": "higher",
    "lost_before_contact": "lower",
    "first_contact_dna": "lower",
    "followup_72h": "higher",
    "followup_7d": "higher",
    "followup_30d": "higher",
    "readmission_30d": "lower",
    "repeat_crisis_30d": "lower",
}

DEFINITIONS: dict[str, str] = {
    "seen_within_target": (
        "Of referrals whose target time has passed (or that were seen), the share first seen in "
        "person, by phone or video within target: emergency 4 hours, urgent 1 business day, "
        "routine 10 business days."
    ),
    "lost_before_contact": (
        "Of referrals with a known outcome, the share closed for a reason other than being seen, "
        "or still open after 28 days, without anyone attending a contact."
    ),
    "first_contact_dna": "Of referrals with a first booked contact, the share whose first contact was not attended.",
    "followup_72h": (
        "Of people discharged from a psychiatric inpatient stay (not transferred, not deceased, "
        "not to prison or court), the share with an attended follow-up in the 3 days after the day "
        "of discharge. People readmitted before any follow-up are left out."
    ),
    "followup_7d": "The same as the 72-hour follow-up, over the 7 days after the day of discharge.",
    "followup_30d": "The same as the 72-hour follow-up, over the 30 days after the day of discharge.",
    "readmission_30d": (
        "Of the same discharges, the share admitted to an inpatient bed again in the 30 days after "
        "the day of discharge (an admission on the day itself is a transfer, not a readmission)."
    ),
    "repeat_crisis_30d": "Of crisis episodes, the share where the person had another crisis in the 30 days before.",
    "referral_wait_days": "Days from referral to the first attended contact: the median (p50) and the 90th centile.",
}

VARIATION_TEXT: dict[str, str] = {
    "common_cause": "Common cause variation: no significant change",
    "improvement_high": "Special cause variation, improvement: high values",
    "improvement_low": "Special cause variation, improvement: low values",
    "concern_high": "Special cause variation, concern: high values",
    "concern_low": "Special cause variation, concern: low values",
}

ASSURANCE_TEXT: dict[str, str] = {
    "consistent_pass": "The process will consistently meet the target",
    "consistent_fail": "The process will consistently fail the target",
    "inconsistent": "The process will sometimes meet and sometimes miss the target",
}

DEAD_LETTER_TEXT: dict[str, str] = {
    "oversized": "too large",
    "not_json": "not JSON",
    "null_value": "an empty (null) record",
    "unknown_type": "an unknown event type",
    "schema": "failed the schema",
    "orphan_cancel": "a cancel whose event never arrived",
    "hl7": "an HL7 message that could not be converted",
    "fhir": "a FHIR resource that could not be converted",
    "identifier_like": "an identifier where a label belongs",
    "processing_error": "failed in processing",
    "output_too_large": "its output was too large to publish",
}

GRADE_TEXT: dict[str, str] = {
    "too_early": "Too early to tell (fewer than 7 weeks since the change)",
    "no_signal": "No signal: the weeks since the change look like the weeks before",
    "signal": "Signal: a Making Data Count rule fired in the improvement direction",
    "sustained": "Sustained: 7 or more weeks in a row on the better side of the previous mean",
    "no_baseline": "No baseline: no weeks before the change to compare with",
}


def label(measure: str) -> str:
    return LABELS.get(measure, measure)


def dead_letter_kind(kind: str) -> str:
    """A dead-letter kind in plain words with its name, which ``pathwatch deadletters --kind`` takes."""
    return f"{DEAD_LETTER_TEXT[kind]} ({kind})" if kind in DEAD_LETTER_TEXT else kind

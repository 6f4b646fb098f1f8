"""Plain-words names and definitions of the measures, for people who read the board report."""

from __future__ import annotations

from schemas.catalogue import MEASURE_CATALOGUE

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

# Names, directions ("higher" or "lower" is better) and definitions: the one catalogue
LABELS: dict[str, str] = {m.name: m.label for m in MEASURE_CATALOGUE} | {
    "ed_crisis": "First crisis seen in the emergency department",  # a value-ledger line, not a measure
}
DIRECTION: dict[str, str] = {m.name: m.direction for m in MEASURE_CATALOGUE if m.kind == "rate"}
DEFINITIONS: dict[str, str] = {m.name: m.definition for m in MEASURE_CATALOGUE}

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

"""The report's ``funnels``, ``case_mix`` and ``value`` sections (unsuppressed, for analysts).

Shapes (docs/board.md):

- ``funnels``: one entry per rate measure: ``{"measure", "target", "phi", "tau2",
  "adjusted", "fallback", "excluded", "points": [{"team", "numerator", "denominator",
  "rate", "z", "limits": {"95": [lo, hi], "99.8": [lo, hi]}, "outlier", "outlier_95"}]}``;
  teams are every team but ``*`` and ``unassigned`` (not a team to compare).
- ``case_mix``: ``{"note", "measures": [{"measure", "strata", "teams": [{"team",
  "observed", "expected", "denominator", "ratio", "lower", "upper"}]}]}``, from the report's
  ``strata`` rows (counts per measure, team and stratum: :func:`cells_of`).
- ``value``: see :func:`board.value.build_ledger`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from board.stats import Cell, FunnelUnit, observed_expected, proportion_funnel
from board.value import CostTable, build_ledger

ALL_TEAMS = "*"
NOT_COMPARED = frozenset({ALL_TEAMS, "unassigned"})

# which stratum adjusts which measure (issue 18; age band and sex once client profiles exist)
CASE_MIX_STRATA: dict[str, str] = {
    "seen_within_target": "urgency",
    "lost_before_contact": "urgency",
    "first_contact_dna": "urgency",
    "repeat_crisis_30d": "crisis setting",
    "followup_72h": "disposition",
    "followup_7d": "disposition",
    "followup_30d": "disposition",
    "readmission_30d": "disposition",
}

CASE_MIX_NOTE = (
    "Case-mix adjustment needs counts per team and stratum (urgency, crisis setting, "
    "disposition); this report's measures carry none, so no observed/expected is shown."
)
# shown beside a filled section: what the adjustment leaves out
CASE_MIX_LIMITS = (
    "Adjusted for urgency (referral measures), crisis setting (repeat crises) and discharge "
    "disposition (follow-up and readmission); not yet for age band or sex, which need client "
    "profiles pathwatch does not have yet."
)


def cells_of(report: Mapping[str, Any]) -> dict[str, list[Cell]]:
    """The case-mix cells per measure from the report's ``strata`` rows (none: an empty dict)."""
    out: dict[str, list[Cell]] = {}
    for row in report.get("strata") or ():
        out.setdefault(row["measure"], []).append(
            Cell(row["team"], row["stratum"], int(row["numerator"]), int(row["denominator"]))
        )
    return out


def funnels(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A proportion funnel per rate measure over the report's team rows."""
    by_measure: dict[str, list[FunnelUnit]] = {}
    for row in report.get("measures", []):
        if row["team"] in NOT_COMPARED:
            continue
        by_measure.setdefault(row["measure"], []).append(
            FunnelUnit(row["team"], int(row["numerator"]), int(row["denominator"]))
        )
    out = []
    for measure in sorted(by_measure):
        f = proportion_funnel(sorted(by_measure[measure], key=lambda u: u.name))
        out.append(
            {
                "measure": measure,
                "target": f.target,
                "phi": f.phi,
                "tau2": f.tau2,
                "adjusted": f.adjusted,
                "fallback": f.fallback,
                "excluded": f.excluded,
                "points": [
                    {
                        "team": p.name,
                        "numerator": p.numerator,
                        "denominator": p.denominator,
                        "rate": p.rate,
                        "z": p.z,
                        "limits": {k: list(v) for k, v in p.limits.items()},
                        "outlier": p.outlier,
                        "outlier_95": p.outlier_95,
                    }
                    for p in f.points
                ],
            }
        )
    return out


def case_mix(cells: Mapping[str, Sequence[Cell]] | None) -> dict[str, Any]:
    """O/E per team for each measure given its (team, stratum) cells; a note when none are."""
    if not cells:
        return {"note": CASE_MIX_NOTE, "measures": []}
    measures = []
    for measure in sorted(cells):
        compared = [c for c in cells[measure] if c.team not in NOT_COMPARED]
        if not compared:
            continue
        rows = [asdict(r) for r in observed_expected(compared)]
        measures.append({"measure": measure, "strata": CASE_MIX_STRATA.get(measure, "stratum"), "teams": rows})
    if not measures:
        return {"note": CASE_MIX_NOTE, "measures": []}
    return {"note": CASE_MIX_LIMITS, "measures": measures}


def board_sections(
    report: Mapping[str, Any],
    cost_table: CostTable | None,
    deadweight: float = 0.0,
    cells: Mapping[str, Sequence[Cell]] | None = None,
) -> dict[str, Any]:
    """``funnels``, ``case_mix`` and ``value`` for ``report`` (which may carry ``spc`` and
    ``changes``) and whose ``strata`` rows give the case-mix cells unless ``cells`` is given.
    Raises ValueError when the cost table would count a resource twice."""
    return {
        "funnels": funnels(report),
        "case_mix": case_mix(cells_of(report) if cells is None else cells),
        "value": build_ledger(
            report.get("spc"), report.get("changes"), cost_table, deadweight, report.get("strata_weekly")
        ),
    }

"""The cost-avoidance ledger: events avoided at the baseline period's rate, times a unit cost.

For each costed measure (readmission_30d, repeat_crisis_30d), over the provider-wide (``*``)
weekly points of the report's ``spc`` section, and for emergency-department crises (first
crises seen in the ED, out of first crises: the ``repeat_crisis_30d`` counts of the report's
``strata_weekly`` rows in the same weeks):

    expected = baseline rate x comparison denominator
    avoided  = (expected - observed) x (1 - deadweight)
    value    = avoided x unit cost

Low and high come from Newcombe's 95% interval of (baseline rate - comparison rate), times
the comparison denominator, the same deadweight and the unit cost. Negative values (more
events than the baseline rate predicts) are kept as they are. Unit costs come only from a
cost table the provider supplies (:func:`load_cost_table`); without one there is no value.

Counting once: each line costs a different resource. A crisis line costs the crisis contact
(an emergency department attendance for an ED crisis); an admission line costs the inpatient
stay from admission, without the attendance that led to it. The two crisis lines count
disjoint crises: the repeat-crisis line every crisis (repeat or not), the ED line only first
crises (no crisis in the 30 days before), and the ED line's unit cost is what an ED
attendance costs over the community crisis contact that replaces it, so a crisis avoided on
the repeat line is never costed again as an ED attendance avoided. A cost item whose ``includes``
names another item the ledger costs on its own line is refused, because the same attendance
would then be paid for twice.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from board.stats import newcombe_difference

# measure -> the cost item whose avoidance it counts
COSTED_MEASURES: dict[str, str] = {
    "readmission_30d": "inpatient_admission",
    "repeat_crisis_30d": "crisis_episode",
}

# the ED-crisis line: first crises seen in the emergency department, out of first crises
ED_LINE = "ed_crisis"
ED_ITEM = "ed_crisis"
ED_SETTING = "emergency_department"
CRISIS_MEASURE = "repeat_crisis_30d"

NO_TABLE_NOTE = (
    "No value is shown: no cost table was supplied. Give the provider's unit costs in a TOML "
    "file (see deploy/costs.example.toml and docs/board.md) with PATHWATCH_COST_TABLE=PATH."
)


@dataclass(frozen=True)
class UnitCost:
    item: str
    cost: float
    currency: str
    price_year: int
    source: str
    includes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CostTable:
    version: str
    items: dict[str, UnitCost]


def load_cost_table(path: Path) -> CostTable:
    """Read a cost table (TOML: ``version`` and ``[[item]]`` entries with ``item``, ``cost``,
    ``currency``, ``price_year``, ``source`` and optional ``includes``). Raises ValueError
    naming the file, the entry and the field when something is missing or wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cost table {path}: {exc}") from exc
    return parse_cost_table(data, str(path))


def parse_cost_table(data: Mapping[str, Any], where: str = "cost table") -> CostTable:
    """The cost table from parsed TOML (see :func:`load_cost_table`)."""
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise ValueError(f"{where}: 'version' (a string naming this edition of the table) is required")
    entries = data.get("item")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{where}: at least one [[item]] entry is required")
    items: dict[str, UnitCost] = {}
    for number, entry in enumerate(entries, start=1):
        label = f"{where}: [[item]] number {number}"
        if not isinstance(entry, dict):
            raise ValueError(f"{label} is not a table")
        name = entry.get("item")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{label}: 'item' (a name such as inpatient_admission) is required")
        label = f"{where}: item {name!r}"
        cost = entry.get("cost")
        if isinstance(cost, bool) or not isinstance(cost, int | float) or cost < 0:
            raise ValueError(f"{label}: 'cost' must be a non-negative number, got {cost!r}")
        currency = entry.get("currency")
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
            raise ValueError(f"{label}: 'currency' must be a three-letter code such as USD, got {currency!r}")
        year = entry.get("price_year")
        if isinstance(year, bool) or not isinstance(year, int) or not 1900 <= year <= 2200:
            raise ValueError(f"{label}: 'price_year' must be a year such as 2025, got {year!r}")
        source = entry.get("source")
        if not isinstance(source, str) or not source.strip():
            raise ValueError(f"{label}: 'source' (where the figure comes from) is required")
        includes = entry.get("includes", [])
        if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
            raise ValueError(f"{label}: 'includes' must be a list of item names")
        if name in items:
            raise ValueError(f"{label} appears twice")
        items[name] = UnitCost(name, float(cost), currency.upper(), year, source.strip(), tuple(includes))
    return CostTable(version.strip(), items)


@dataclass(frozen=True)
class Periods:
    basis: str  # "service_change" or "halves"
    change_id: str | None
    baseline: tuple[str, str]  # first and last week (ISO dates of Mondays)
    comparison: tuple[str, str]


def _series(spc: Sequence[Mapping[str, Any]], measure: str) -> list[Mapping[str, Any]]:
    for entry in spc:
        if entry.get("measure") == measure and entry.get("team") == "*":
            return [p for p in entry.get("points", []) if p.get("denominator", 0) > 0]
    return []


def ed_points(strata_weekly: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Weekly points of the ED line from the report's ``strata_weekly`` rows: numerator the
    first crises (not repeats) in the emergency department, denominator all first crises."""
    weeks: dict[str, list[int]] = {}
    for row in strata_weekly or ():
        if row.get("measure") != CRISIS_MEASURE:
            continue
        first = int(row["denominator"]) - int(row["numerator"])
        acc = weeks.setdefault(str(row["week"]), [0, 0])
        acc[1] += first
        if row.get("stratum") == ED_SETTING:
            acc[0] += first
    return [{"week": w, "numerator": n, "denominator": d} for w, (n, d) in sorted(weeks.items()) if d > 0]


def choose_periods(weeks: Sequence[str], changes: Sequence[Mapping[str, Any]] | None) -> Periods | None:
    """Baseline and comparison weeks: before and from the most recent service change (its first
    week on or after the change's date), when both sides hold a week; else the first and
    second halves of the weeks (the middle week of an odd count goes to the comparison).
    ``None`` with fewer than two weeks."""
    weeks = sorted(weeks)
    if len(weeks) < 2:
        return None
    dated = [(str(c.get("time", ""))[:10], str(c.get("change_id", ""))) for c in changes or () if c.get("time")]
    if dated:
        day, change_id = max(dated)
        before = [w for w in weeks if w < day]
        after = [w for w in weeks if w >= day]
        if before and after:
            return Periods("service_change", change_id, (before[0], before[-1]), (after[0], after[-1]))
    half = len(weeks) // 2
    return Periods("halves", None, (weeks[0], weeks[half - 1]), (weeks[half], weeks[-1]))


def _sum(points: Sequence[Mapping[str, Any]], first: str, last: str) -> tuple[int, int]:
    chosen = [p for p in points if first <= p["week"] <= last]
    return sum(int(p["numerator"]) for p in chosen), sum(int(p["denominator"]) for p in chosen)


def build_ledger(
    spc: Sequence[Mapping[str, Any]] | None,
    changes: Sequence[Mapping[str, Any]] | None,
    table: CostTable | None,
    deadweight: float = 0.0,
    strata_weekly: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report's ``value`` section. Without weekly points or without a cost table it says so
    in ``note`` and holds no figures (never a default cost). The ED-crisis line is added when
    ``strata_weekly`` (the report's rows) is given."""
    if not 0.0 <= deadweight < 1.0:
        raise ValueError(f"deadweight {deadweight} must be at least 0 and below 1")
    section: dict[str, Any] = {"deadweight": deadweight, "lines": [], "totals": [], "note": None}
    if not spc:
        section["note"] = "No value is shown: the report has no weekly points (its spc section)."
        return section
    if table is None:
        section["note"] = NO_TABLE_NOTE
        return section
    _check_double_count(table)
    section["cost_table"] = table.version
    weeks = {p["week"] for m in COSTED_MEASURES for p in _series(spc, m)}
    periods = choose_periods(sorted(weeks), changes)
    if periods is None:
        section["note"] = "No value is shown: fewer than two weeks of points."
        return section
    section["periods"] = {
        "basis": periods.basis,
        "change_id": periods.change_id,
        "baseline": list(periods.baseline),
        "comparison": list(periods.comparison),
    }
    lines: list[tuple[str, str, Sequence[Mapping[str, Any]]]] = [
        (measure, item, _series(spc, measure)) for measure, item in COSTED_MEASURES.items()
    ]
    if strata_weekly is not None:
        lines.append((ED_LINE, ED_ITEM, ed_points(strata_weekly)))
    for measure, item, points in lines:
        section["lines"].append(_line(measure, item, points, periods, table.items.get(item), 1.0 - deadweight))
    totals: dict[tuple[str, int], dict[str, Any]] = {}
    for line in section["lines"]:
        if "value" not in line:
            continue
        total = totals.setdefault(
            (line["currency"], line["price_year"]),
            {"currency": line["currency"], "price_year": line["price_year"], "low": 0.0, "central": 0.0, "high": 0.0},
        )
        for k in ("low", "central", "high"):
            total[k] += line["value"][k]
    section["totals"] = [totals[k] for k in sorted(totals)]
    return section


def _line(
    measure: str, item: str, points: Sequence[Mapping[str, Any]], periods: Periods, cost: UnitCost | None, keep: float
) -> dict[str, Any]:
    """One ledger line over ``points`` (``keep``: 1 - deadweight)."""
    if cost is None:
        return {"measure": measure, "item": item, "note": f"the cost table has no {item!r}"}
    base_num, base_den = _sum(points, *periods.baseline)
    comp_num, comp_den = _sum(points, *periods.comparison)
    if base_den == 0 or comp_den == 0:
        return {"measure": measure, "item": item, "note": "a period has no events"}
    diff, lo, hi = newcombe_difference(base_num, base_den, comp_num, comp_den)
    expected = base_num / base_den * comp_den
    avoided = {
        "low": lo * comp_den * keep,
        "central": (expected - comp_num) * keep,
        "high": hi * comp_den * keep,
    }
    return {
        "measure": measure,
        "item": item,
        "baseline": {"numerator": base_num, "denominator": base_den, "rate": base_num / base_den},
        "comparison": {"numerator": comp_num, "denominator": comp_den, "rate": comp_num / comp_den},
        "rate_difference": {"value": diff, "lower": lo, "upper": hi},
        "expected": expected,
        "observed": comp_num,
        "avoided": avoided,
        "unit_cost": cost.cost,
        "currency": cost.currency,
        "price_year": cost.price_year,
        "source": cost.source,
        "value": {k: v * cost.cost for k, v in avoided.items()},
    }


def _check_double_count(table: CostTable) -> None:
    costed = {*COSTED_MEASURES.values(), ED_ITEM}
    for item in costed & set(table.items):
        for other in table.items[item].includes:
            if other in costed and other in table.items:
                raise ValueError(
                    f"cost item {item!r} includes {other!r}, which the ledger costs on its own line: "
                    f"give {item!r} without it, or the same resource is counted twice"
                )

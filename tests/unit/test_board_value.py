"""The cost-avoidance ledger: fixed input, fixed figure; price years visible; nothing counted twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from board.value import (
    NO_TABLE_NOTE,
    build_ledger,
    choose_periods,
    ed_points,
    load_cost_table,
    parse_cost_table,
)

WEEKS = ["2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26"]


def _spc(readmissions: list[int], crises: list[int], den: int = 50) -> list[dict[str, Any]]:
    def series(measure: str, nums: list[int]) -> dict[str, Any]:
        points = [{"week": w, "numerator": n, "denominator": den} for w, n in zip(WEEKS, nums, strict=True)]
        return {"team": "*", "measure": measure, "points": points}

    north = {"team": "north", "measure": "readmission_30d", "points": [{"week": WEEKS[0], "numerator": 50, "denominator": 50}]}
    return [series("readmission_30d", readmissions), series("repeat_crisis_30d", crises), north]


def _table(admission: float = 1000.0, year: int = 2025, includes: list[str] | None = None) -> dict[str, Any]:
    return {
        "version": "test-1",
        "item": [
            {"item": "inpatient_admission", "cost": admission, "currency": "USD", "price_year": year,
             "source": "test", "includes": includes or []},
            {"item": "crisis_episode", "cost": 520, "currency": "USD", "price_year": year, "source": "HCUP SB 257"},
        ],
    }


def test_a_fixed_input_gives_a_fixed_figure() -> None:
    """Readmissions per week 10, 10, 6, 6 of 50: halves (no service change).
    Baseline 20/100 = 0.20, comparison 12/100: expected 0.20 x 100 = 20, observed 12, avoided 8;
    deadweight 0.25 keeps 6; x 1000 USD = 6000 USD.
    Newcombe for 0.20 - 0.12: Wilson(20/100) = (0.13329, 0.28883), Wilson(12/100) =
    (0.06999, 0.19812); lower = 0.08 - sqrt(0.06671^2 + 0.07812^2) = -0.022678,
    upper = 0.08 + sqrt(0.08883^2 + 0.05001^2) = 0.181937; avoided low = -0.022678 x 100 x 0.75
    = -1.7009 (negative: shown, not floored), high 13.6453; value -1700.9 to 13645.3 USD.
    Crises 15, 15, 18, 15 of 50: baseline 30/100, comparison 33/100: avoided (30 - 33) x 0.75
    = -2.25, x 520 = -1170 USD. Total central 6000 - 1170 = 4830 USD (2025 prices).
    """
    ledger = build_ledger(_spc([10, 10, 6, 6], [15, 15, 18, 15]), None, parse_cost_table(_table()), 0.25)
    assert ledger["periods"] == {
        "basis": "halves", "change_id": None,
        "baseline": ["2026-01-05", "2026-01-12"], "comparison": ["2026-01-19", "2026-01-26"],
    }
    readm, crisis = ledger["lines"]
    assert readm["expected"] == pytest.approx(20.0)
    assert readm["observed"] == 12
    assert readm["avoided"]["central"] == pytest.approx(6.0)
    assert readm["value"]["central"] == pytest.approx(6000.0)
    assert readm["value"]["low"] == pytest.approx(-1700.88, abs=0.01)
    assert readm["value"]["high"] == pytest.approx(13645.30, abs=0.01)
    assert crisis["value"]["central"] == pytest.approx(-1170.0)
    (total,) = ledger["totals"]
    assert total["central"] == pytest.approx(4830.0)
    assert (total["currency"], total["price_year"]) == ("USD", 2025)


def test_the_most_recent_service_change_splits_the_periods() -> None:
    changes = [
        {"change_id": "c1", "time": "2026-01-01T09:00:00+00:00"},
        {"change_id": "c2", "time": "2026-01-14T09:00:00+00:00"},
    ]
    periods = choose_periods(WEEKS, changes)
    assert periods is not None
    assert periods.change_id == "c2"
    # the change on Wednesday 14 January: its first week on or after is the 19th
    assert (periods.baseline, periods.comparison) == (("2026-01-05", "2026-01-12"), ("2026-01-19", "2026-01-26"))
    # a change before every week leaves no baseline: halves instead
    assert choose_periods(WEEKS, [{"change_id": "c0", "time": "2025-06-01T00:00:00+00:00"}]).basis == "halves"  # type: ignore[union-attr]


def test_a_price_year_change_is_visible() -> None:
    spc = _spc([10, 10, 6, 6], [15, 15, 15, 15])
    old = build_ledger(spc, None, parse_cost_table(_table(1000.0, 2024)), 0.0)
    new = build_ledger(spc, None, parse_cost_table(_table(1100.0, 2025)), 0.0)
    assert old["lines"][0]["price_year"] == 2024
    assert new["lines"][0]["price_year"] == 2025
    assert old["lines"][0]["value"]["central"] == pytest.approx(8000.0)
    assert new["lines"][0]["value"]["central"] == pytest.approx(8800.0)
    assert [t["price_year"] for t in new["totals"]] == [2025]


def test_mixed_price_years_are_never_added_together() -> None:
    data = _table()
    data["item"][1]["price_year"] = 2017
    ledger = build_ledger(_spc([10, 10, 6, 6], [15, 15, 15, 15]), None, parse_cost_table(data), 0.0)
    assert [(t["currency"], t["price_year"]) for t in ledger["totals"]] == [("USD", 2017), ("USD", 2025)]


def test_an_admission_cost_that_includes_the_crisis_attendance_is_refused() -> None:
    """An ED crisis that leads to an admission is one crisis line (the attendance) and one
    admission line (the stay): an admission cost that bundles the attendance would pay it twice."""
    table = parse_cost_table(_table(includes=["crisis_episode"]))
    with pytest.raises(ValueError, match="counted twice"):
        build_ledger(_spc([10, 10, 6, 6], [15, 15, 15, 15]), None, table, 0.0)


def test_each_avoided_event_is_costed_once() -> None:
    ledger = build_ledger(_spc([10, 10, 6, 6], [15, 15, 12, 12]), None, parse_cost_table(_table()), 0.0)
    readm, crisis = ledger["lines"]
    assert readm["value"]["central"] == pytest.approx(8 * 1000.0)
    assert crisis["value"]["central"] == pytest.approx(6 * 520.0)
    assert ledger["totals"][0]["central"] == pytest.approx(8 * 1000.0 + 6 * 520.0)


def test_no_cost_table_gives_no_value_and_says_how_to_supply_one() -> None:
    ledger = build_ledger(_spc([10, 10, 6, 6], [15, 15, 15, 15]), None, None, 0.0)
    assert ledger["lines"] == []
    assert ledger["note"] == NO_TABLE_NOTE
    assert "PATHWATCH_COST_TABLE" in NO_TABLE_NOTE


def test_without_weekly_points_there_is_no_value() -> None:
    assert build_ledger(None, None, parse_cost_table(_table()), 0.0)["note"].startswith("No value")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cost": -1}, "'cost'"),
        ({"currency": "dollars"}, "'currency'"),
        ({"price_year": "2025"}, "'price_year'"),
        ({"source": ""}, "'source'"),
    ],
)
def test_a_bad_cost_entry_is_named(change: dict[str, Any], message: str) -> None:
    data = _table()
    data["item"][0].update(change)
    with pytest.raises(ValueError, match=message):
        parse_cost_table(data)


def test_the_shipped_example_table_loads() -> None:
    table = load_cost_table(Path(__file__).parents[2] / "deploy" / "costs.example.toml")
    assert {"inpatient_admission", "crisis_episode"} <= set(table.items)


def test_deadweight_must_be_a_share() -> None:
    with pytest.raises(ValueError, match="deadweight"):
        build_ledger([], None, None, 1.0)


# -- emergency-department crises ---------------------------------------------------------------


def _strata_weekly(rows: list[tuple[str, str, int, int]]) -> list[dict[str, Any]]:
    """(week, setting, repeats, crises) -> the report's ``strata_weekly`` rows of repeat crises."""
    return [{"measure": "repeat_crisis_30d", "stratum": s, "week": w, "numerator": n, "denominator": d}
            for w, s, n, d in rows]


ED_WEEKS = _strata_weekly([
    # week 1: 12 ED crises of which 2 repeats (10 first), 25 crisis-line (20 first)
    (WEEKS[0], "emergency_department", 2, 12), (WEEKS[0], "crisis_line", 5, 25),
    (WEEKS[1], "emergency_department", 1, 11), (WEEKS[1], "mobile_team", 2, 22),
    (WEEKS[2], "emergency_department", 3, 8), (WEEKS[2], "crisis_line", 5, 30),
    (WEEKS[3], "emergency_department", 2, 7), (WEEKS[3], "mobile_team", 2, 27),
])


def _ed_table(**ed: Any) -> dict[str, Any]:
    data = _table()
    data["item"].append({"item": "ed_crisis", "cost": 300, "currency": "USD", "price_year": 2025, "source": "test", **ed})
    return data


def test_the_ed_crisis_line_has_a_fixed_figure() -> None:
    """First crises (no crisis in the 30 days before) seen in the ED, out of all first crises.
    Baseline weeks: ED 10 + 10 of 30 + 30 first crises = 20/60; comparison 5 + 5 of 60 = 10/60.
    Expected 20/60 x 60 = 20, observed 10, avoided 10; deadweight 0.2 keeps 8; x 300 USD = 2400.
    Newcombe for 1/3 - 1/6: Wilson(20/60) = (0.227293, 0.459431), Wilson(10/60) = (0.093132,
    0.280316); lower = 1/6 - sqrt(0.106040^2 + 0.113650^2) = 0.011229, upper = 1/6 +
    sqrt(0.126098^2 + 0.073535^2) = 0.312640; value low 0.011229 x 60 x 0.8 x 300 = 161.70,
    high 4502.01 USD."""
    ledger = build_ledger(_spc([10, 10, 10, 10], [15, 15, 15, 15]), None, parse_cost_table(_ed_table()), 0.2,
                          ED_WEEKS)
    readm, crisis, ed = ledger["lines"]
    assert (ed["measure"], ed["item"]) == ("ed_crisis", "ed_crisis")
    assert ed["baseline"] == {"numerator": 20, "denominator": 60, "rate": pytest.approx(1 / 3)}
    assert ed["comparison"] == {"numerator": 10, "denominator": 60, "rate": pytest.approx(1 / 6)}
    assert ed["expected"] == pytest.approx(20.0)
    assert ed["observed"] == 10
    assert ed["avoided"]["central"] == pytest.approx(8.0)
    assert ed["value"]["central"] == pytest.approx(2400.0)
    assert ed["value"]["low"] == pytest.approx(161.70, abs=0.01)
    assert ed["value"]["high"] == pytest.approx(4502.01, abs=0.01)
    (total,) = ledger["totals"]  # readmissions and repeat crises unchanged: 0 each
    assert total["central"] == pytest.approx(2400.0)


def test_an_ed_crisis_that_is_a_repeat_crisis_is_costed_on_the_repeat_line_only() -> None:
    """Comparison weeks with 6 more ED crises a week, all repeats: the repeat line sees them,
    the ED line (first crises only) does not move."""
    more_repeats = [
        {**r, "numerator": r["numerator"] + 6, "denominator": r["denominator"] + 6}
        if r["week"] in WEEKS[2:] and r["stratum"] == "emergency_department" else r
        for r in ED_WEEKS
    ]
    table = parse_cost_table(_ed_table())
    before = build_ledger(_spc([10, 10, 10, 10], [15, 15, 15, 15]), None, table, 0.0, ED_WEEKS)
    after = build_ledger(_spc([10, 10, 10, 10], [15, 15, 15, 15]), None, table, 0.0, more_repeats)
    assert after["lines"][2] == before["lines"][2]


def test_the_ed_line_counts_first_crises_from_the_engines_strata() -> None:
    from streams.core import CoreConfig
    from streams.report import strata_sections
    from tests.fixtures.core.build import NY, Run, crisis, ny, tick

    events = [
        crisis(ny("2026-03-02 09:00"), team="north", setting="emergency_department", client="a"),  # first, ED
        crisis(ny("2026-03-03 09:00"), team="north", setting="crisis_line", client="b"),  # first
        crisis(ny("2026-03-04 09:00"), team="north", setting="emergency_department", client="b"),  # repeat, ED
        tick(ny("2026-06-01 00:00")),
    ]
    rows = strata_sections(Run(events, CoreConfig(timezone=NY)).engine.windows)["strata_weekly"]
    assert ed_points(rows) == [{"week": "2026-03-02", "numerator": 1, "denominator": 2}]


def test_an_ed_cost_that_includes_the_crisis_contact_is_refused() -> None:
    table = parse_cost_table(_ed_table(includes=["crisis_episode"]))
    with pytest.raises(ValueError, match="counted twice"):
        build_ledger(_spc([10, 10, 6, 6], [15, 15, 15, 15]), None, table, 0.0, ED_WEEKS)


def test_a_cost_table_without_the_ed_item_says_so_on_the_line() -> None:
    ledger = build_ledger(_spc([10, 10, 6, 6], [15, 15, 15, 15]), None, parse_cost_table(_table()), 0.0, ED_WEEKS)
    assert ledger["lines"][2] == {"measure": "ed_crisis", "item": "ed_crisis", "note": "the cost table has no 'ed_crisis'"}


def test_the_example_cost_table_costs_every_line() -> None:
    table = load_cost_table(Path(__file__).parents[2] / "deploy" / "costs.example.toml")
    assert {"inpatient_admission", "crisis_episode", "ed_crisis"} <= set(table.items)

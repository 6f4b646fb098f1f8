"""The board page without a browser: sections, self-containment, and small-cell suppression."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest

from board.html import render_html
from board.suppress import SuppressionPolicy
from tests.fixtures.board_report import board_report

UNDER5 = SuppressionPolicy.named("small_cell", 5)
CMS = SuppressionPolicy.named("cms")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return board_report()


@pytest.fixture(scope="module")
def page(report: dict[str, Any]) -> str:
    return render_html(report, policy=UNDER5, input_sha256="ab" * 32, input_name="year.jsonl", version="9.9")


class _Tables(HTMLParser):
    """Rows of the tables with an id, as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or a.get("data-case-mix")
            if self._table:
                self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "title" and self._cell is not None:
            self._depth += 1  # icon titles are text alternatives, not figures

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._table and self._cell is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "title" and self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None and not self._depth:
            self._cell.append(data + " ")


def _tables(page: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables


@pytest.mark.parametrize("policy", [UNDER5, CMS], ids=["under5", "cms"])
def test_no_small_cell_appears_and_none_can_be_worked_out(
    report: dict[str, Any], page: str, policy: SuppressionPolicy
) -> None:
    if policy is not UNDER5:
        page = render_html(report, policy=policy)
    tables = _tables(page)
    header, *rows = tables["measures"]
    totals_column = header.index("all teams")
    for row in rows:
        shown = [re.search(r"(\d+)/(\d+)", cell) for cell in row[1:]]
        for match in shown:
            if match:
                num, den = int(match[1]), int(match[2])
                assert not policy.cell_small(num, den), (row[0], num, den)
        hidden = [i for i, cell in enumerate(row) if cell == "suppressed"]
        if "suppressed" not in row[totals_column]:
            assert len(hidden) != 1, row  # the total less the shown cells would give it away
    # headline counts and the matrix's n
    for num, den in re.findall(r"(\d+) of (\d+);", page):
        assert not policy.cell_small(int(num), int(den))
    matrix: dict[str, list[list[str]]] = {}
    measure = ""
    for row in tables["mdc-matrix"][1:]:
        measure = row[0] or measure
        matrix.setdefault(measure, []).append(row)
        if "suppressed" not in row:
            assert not policy.small(int(row[4]))
    for rows_of_measure in matrix.values():
        total = next(r for r in rows_of_measure if r[1] == "all teams")
        if "suppressed" not in total:
            assert sum("suppressed" in r for r in rows_of_measure) != 1, rows_of_measure
    # case mix: every shown observed count passes
    for row in tables["seen_within_target"][1:]:
        if "suppressed" not in row:
            assert not policy.small(int(row[1]))


def test_cms_hides_more_than_under_five(report: dict[str, Any], page: str) -> None:
    assert render_html(report, policy=CMS).count(">suppressed<") > page.count(">suppressed<")


def test_the_page_is_self_contained(page: str) -> None:
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#|data:)""", page), "a reference leaves the page"
    assert "@import" not in page
    assert not re.search(r"url\((?!#)", page)
    assert "@font-face" not in page


def test_sections_come_in_the_boards_order(page: str) -> None:
    order = [page.index(f'<section id="{s}">') for s in ("summary", "charts", "changes", "teams", "value", "methods")]
    assert order == sorted(order)


def test_service_change_text_is_escaped_and_carded(page: str) -> None:
    assert "&lt;urgent&gt;" in page
    assert "<urgent>" not in page
    assert 'data-change="warm-handoff"' in page
    assert "Sustained" in page


def test_without_changes_a_line_says_none_were_recorded(report: dict[str, Any]) -> None:
    page = render_html({**report, "changes": []}, policy=UNDER5)
    assert 'id="no-changes"' in page


def test_a_report_without_board_sections_still_renders() -> None:
    bare = board_report(with_sections=False)
    for key in ("spc", "changes"):
        bare.pop(key)
    page = render_html(bare, policy=UNDER5)
    assert 'id="no-spc"' in page
    assert "no <code>funnels</code> section" in page


def test_the_same_report_gives_the_same_page(report: dict[str, Any], page: str) -> None:
    again = render_html(report, policy=UNDER5, input_sha256="ab" * 32, input_name="year.jsonl", version="9.9")
    assert again == page


def test_the_methods_section_carries_provenance(page: str) -> None:
    assert "ab" * 32 in page
    assert "9.9" in page
    assert "year.jsonl" in page


def test_a_small_value_line_is_hidden_with_its_total() -> None:
    value = {
        "deadweight": 0.0, "note": None, "cost_table": "t",
        "periods": {"basis": "halves", "change_id": None, "baseline": ["2025-01-06", "2025-01-13"],
                    "comparison": ["2025-01-20", "2025-01-27"]},
        "lines": [{
            "measure": "readmission_30d", "item": "inpatient_admission",
            "baseline": {"numerator": 9, "denominator": 60, "rate": 0.15},
            "comparison": {"numerator": 3, "denominator": 60, "rate": 0.05},
            "rate_difference": {"value": 0.1, "lower": 0.0, "upper": 0.2},
            "expected": 9.0, "observed": 3, "avoided": {"low": 0.0, "central": 6.0, "high": 12.0},
            "unit_cost": 1000.0, "currency": "USD", "price_year": 2025, "source": "s",
            "value": {"low": 0.0, "central": 6000.0, "high": 12000.0}}],
        "totals": [{"currency": "USD", "price_year": 2025, "low": 0.0, "central": 6000.0, "high": 12000.0}],
    }
    page = render_html({"watermark": None, "measures": [], "waits": [], "events": {}, "value": value}, policy=UNDER5)
    ledger = _tables(page)["ledger"]
    assert ledger[1][1] == "suppressed (small numbers)"
    assert "6,000" not in page
    assert len(ledger) == 2  # no total row


def test_an_empty_report_renders() -> None:
    page = render_html({"watermark": None, "measures": [], "waits": [], "alerts": [],
                        "events": {"accepted": 0, "duplicates": 0, "dead_letters": 0, "corrections": 0}})
    assert "no events" in page
    assert "Nothing needed suppressing." in page

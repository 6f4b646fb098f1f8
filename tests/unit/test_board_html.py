"""The board page without a browser: sections, self-containment, and small-cell suppression."""

from __future__ import annotations

import copy
import html
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from board import charts
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


def _week(week: str, numerator: int, denominator: int, lower: float = 0.3, upper: float = 0.9) -> dict[str, Any]:
    return {"week": week, "numerator": numerator, "denominator": denominator, "value": numerator / denominator,
            "group": 0, "trial": False, "mean": 0.6, "upper": upper, "lower": lower, "type": "common_cause",
            "rules": []}


def _spc_report(*entries: tuple[str, list[dict[str, Any]]], events: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"watermark": "2025-03-03T00:00:00+00:00", "measures": [], "waits": [], "alerts": [],
            "events": events or {},
            "spc": [{"team": team, "measure": "seen_within_target", "direction": "higher", "target": 0.8,
                     "variation": "common_cause" if points else None, "assurance": None, "points": points}
                    for team, points in entries]}


WEEKS3 = ("2025-01-06", "2025-01-13", "2025-01-20")


def test_a_chart_with_no_week_reaching_the_minimum_is_a_line_not_an_empty_plot() -> None:
    report = _spc_report(("north", [_week(w, 20, 30) for w in WEEKS3]), ("west", []))
    page = render_html(report, policy=UNDER5, min_weekly_denominator=10)
    assert re.search(r'<figure data-chart="spc" data-measure="seen_within_target" data-team="north" data-points="3"', page)
    assert 'data-team="west" data-points' not in page
    assert "spc-seen-within-target-west" not in page  # no plot at all
    # matplotlib's epoch, on an empty date axis
    assert "Dec 69" not in page
    assert "Jan 70" not in page
    line = re.search(r'<p class="no-chart" data-chart="spc" data-measure="seen_within_target" data-teams="west">(.*?)</p>',
                     page, re.S)
    assert line is not None
    assert "no week reached the minimum weekly denominator of 10" in " ".join(line.group(1).split())


def test_a_chart_whose_every_week_is_suppressed_says_so_instead_of_drawing() -> None:
    report = _spc_report(("north", [_week(w, 20, 30) for w in WEEKS3]), ("east", [_week(w, 2, 12) for w in WEEKS3]))
    page = render_html(report, policy=UNDER5, min_weekly_denominator=10)
    assert "spc-seen-within-target-east" not in page
    line = re.search(r'<p class="no-chart" data-chart="spc" data-measure="seen_within_target" data-teams="east">(.*?)</p>',
                     page, re.S)
    assert line is not None
    assert "every week's counts were too small to show" in html.unescape(" ".join(line.group(1).split()))


def test_proportion_limits_are_shown_clipped_to_0_and_100_percent() -> None:
    report = _spc_report(
        ("north", [_week(w, 20, 30, lower=-0.23, upper=0.482) for w in WEEKS3]),
        ("south", [_week(w, 20, 30, lower=0.419, upper=1.022) for w in WEEKS3]),
    )
    before = copy.deepcopy(report)
    matrix = {row[1]: row for row in _tables(render_html(report, policy=UNDER5))["mdc-matrix"][1:]}
    assert matrix["north"][6] == "0.0% – 48.2%"
    assert matrix["south"][6] == "41.9% – 100.0%"
    assert report == before  # the machine report keeps the computed limits


def _y_range(svg: str) -> tuple[float, float]:
    """The values at the bottom and the top of a chart's plot area, read from the SVG: the
    axes' background rectangle and the y ticks' positions and labels."""
    box = [float(v) for v in re.findall(r"[\d.]+", svg.split('<g id="patch_2">', 1)[1].split("/>", 1)[0])[:8]]
    bottom, top = max(box[1::2]), min(box[1::2])
    ticks = {}
    for group in svg.split('<g id="ytick_')[1:]:
        y = float(re.search(r'<use [^>]*y="([\d.]+)"', group).group(1))  # type: ignore[union-attr]
        text = re.search(r"<text[^>]*>([^<]*)</text>", group).group(1)  # type: ignore[union-attr]
        ticks[float(text.replace("\u2212", "-"))] = y
    (v0, y0), (v1, y1) = sorted(ticks.items())[0], sorted(ticks.items())[-1]
    per_px = (v1 - v0) / (y0 - y1)
    return v0 - (bottom - y0) * per_px, v1 + (y1 - top) * per_px


def test_chart_axes_stay_within_0_and_100_percent_when_limits_do_not() -> None:
    points = [_week(w, n, 30, lower=-0.2, upper=1.2) for w, n in zip(WEEKS3, (3, 28, 15), strict=True)]
    svg, drawn = charts.spc_chart("c", "t", points, set(), 0.8, [], carried=(WEEKS3[1], {"mean": 0.5, "upper": 1.3,
                                                                                                "lower": -0.3}))
    assert drawn == 3
    low, high = _y_range(svg)
    # matplotlib's own margin (5% of the range) stays; limits at -30% or 130% do not
    assert -6 <= low <= 0, low
    assert 100 <= high <= 106, high


def test_the_methods_section_breaks_dead_letters_down_by_kind() -> None:
    events = {"accepted": 90, "duplicates": 0, "dead_letters": 12, "corrections": 0,
              "dead_letters_by_kind": {"not_json": 3, "schema": 9}}
    rows = _tables(render_html(_spc_report(events=events), policy=UNDER5))["data-quality"]
    assert ["not JSON (not_json)", "3"] in rows
    assert ["failed the schema (schema)", "9"] in rows
    assert not any("does not break dead letters down" in " ".join(r) for r in rows)


def test_matrix_rows_of_teams_with_no_judged_week_are_one_line_per_measure() -> None:
    report = _spc_report(("*", [_week(w, 20, 30) for w in WEEKS3]), ("north", []), ("unassigned", []))
    page = render_html(report, policy=UNDER5, min_weekly_denominator=10)
    rows = _tables(page)["mdc-matrix"][1:]
    assert [r[1] for r in rows] == ["all teams", "north, unassigned: no week reached the minimum weekly denominator of 10"]
    assert len(rows[1]) == 2  # the measure's column, then one cell across the rest
    assert 'data-teams="north unassigned"' in page


def test_record_counts_have_thousands_separators() -> None:
    events = {"accepted": 116524, "duplicates": 1156, "dead_letters": 0, "corrections": 455, "dead_letters_by_kind": {}}
    rows = _tables(render_html(_spc_report(events=events), policy=UNDER5))["data-quality"]
    assert [r[1] for r in rows] == ["116,524", "1,156", "0", "455"]


def test_teams_with_nothing_to_draw_share_one_line_per_reason() -> None:
    report = _spc_report(("*", [_week(w, 20, 30) for w in WEEKS3]), ("north", []), ("south", []),
                         ("east", [_week(w, 2, 12) for w in WEEKS3]))
    page = html.unescape(render_html(report, policy=UNDER5, min_weekly_denominator=10))
    lines = re.findall(r'<p class="no-chart"[^>]*data-teams="([^"]*)">(.*?)</p>', page, re.S)
    assert [(teams, " ".join(re.sub("<[^>]+>", "", text).split())) for teams, text in lines] == [
        ("east", "east: nothing to draw, every week's counts were too small to show."),
        ("north south", "north, south: nothing to draw, no week reached the minimum weekly denominator of 10."),
    ]


def test_teams_without_a_weekly_chart_are_pointed_to_their_funnel_and_the_all_teams_trend() -> None:
    """A rare event per team and week: no team chart; the reader is told where to look."""
    from board.sections import funnels

    report = _spc_report(("*", [_week(w, 20, 30) for w in WEEKS3]), ("north", []), ("south", []))
    rows = [{"measure": "seen_within_target", "team": t, "numerator": n, "denominator": 60}
            for t, n in (("north", 40), ("south", 45))]
    report["funnels"] = funnels({"measures": rows})
    page = html.unescape(render_html(report, policy=UNDER5, min_weekly_denominator=10))
    [instead] = re.findall(r'<p class="no-chart-instead" data-measure="seen_within_target">(.*?)</p>', page, re.S)
    assert "funnel plot (section 4, Teams compared)" in instead
    assert "all-teams chart above" in instead
    assert instead.startswith("Instead: each team's rate over the whole period")
    # without a funnel, only the trend; with a chart for every team, no such line
    del report["funnels"]
    page = html.unescape(render_html(report, policy=UNDER5, min_weekly_denominator=10))
    [instead] = re.findall(r'<p class="no-chart-instead"[^>]*>(.*?)</p>', page, re.S)
    assert "funnel" not in instead
    assert "all-teams chart above" in instead
    every = _spc_report(("*", [_week(w, 20, 30) for w in WEEKS3]), ("north", [_week(w, 20, 30) for w in WEEKS3]),
                        ("unassigned", []))  # not a team: on no funnel, so no pointer for it
    assert '<p class="no-chart-instead"' not in render_html(every, policy=UNDER5)
    # a chart with most of its weeks too small to show counts as missing
    gaps = _spc_report(("*", [_week(w, 20, 30) for w in WEEKS3]),
                       ("north", [_week(WEEKS3[0], 20, 30), _week(WEEKS3[1], 2, 30), _week(WEEKS3[2], 3, 30)]))
    page = html.unescape(render_html(gaps, policy=UNDER5))
    [instead] = re.findall(r'<p class="no-chart-instead"[^>]*>(.*?)</p>', page, re.S)
    assert instead.startswith("Instead: ")


def test_a_chart_caption_says_how_many_weeks_were_too_small_to_draw() -> None:
    points = [_week(WEEKS3[0], 20, 30), _week(WEEKS3[1], 2, 30), _week(WEEKS3[2], 20, 30)]
    page = html.unescape(render_html(_spc_report(("*", points)), policy=UNDER5))
    assert "2 weekly points; 1 of 3 weeks not drawn, their counts too small to show." in " ".join(page.split())


def test_a_team_chart_with_most_weeks_hidden_is_not_drawn() -> None:
    """Weeks are hidden on one side of the rate only (here: 2 or 3 events of 30), so the week
    left (20 of 30) alone would show north far better than it is."""
    gaps = _spc_report(("*", [_week(w, 20, 30) for w in WEEKS3]),
                       ("north", [_week(WEEKS3[0], 20, 30), _week(WEEKS3[1], 2, 30), _week(WEEKS3[2], 3, 30)]),
                       ("south", [_week(WEEKS3[0], 20, 30), _week(WEEKS3[1], 21, 30), _week(WEEKS3[2], 3, 30)]))
    page = html.unescape(render_html(gaps, policy=UNDER5))
    assert 'data-chart="spc" data-measure="seen_within_target" data-team="north"' not in page
    assert 'data-chart="spc" data-measure="seen_within_target" data-team="south"' in page  # 2 of 3 shown
    lines = re.findall(r'<p class="no-chart"[^>]*data-teams="([^"]*)">(.*?)</p>', page, re.S)
    assert [(teams, " ".join(re.sub("<[^>]+>", "", text).split())) for teams, text in lines] == [
        ("north", "north: nothing to draw, most weeks' counts were too small to show, and the few weeks left "
                  "would give a biased picture."),
    ]


def test_case_mix_tables_follow_the_boards_measure_order() -> None:
    from board.sections import case_mix
    from board.stats import Cell

    cells = {m: [Cell("north", "a", 10, 40), Cell("south", "a", 12, 40)]
             for m in ("first_contact_dna", "repeat_crisis_30d", "seen_within_target")}
    report = {**_spc_report(), "case_mix": case_mix(cells)}
    order = re.findall(r'<table data-case-mix="([^"]+)"', render_html(report, policy=UNDER5))
    assert order == ["seen_within_target", "first_contact_dna", "repeat_crisis_30d"]

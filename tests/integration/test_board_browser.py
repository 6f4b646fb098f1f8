"""The board report in a real headless Chromium, network off: it loads cleanly, every chart
carries its data points, the summary matrix is complete, and it prints to a non-blank PDF."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from board.html import print_pdf, render_html
from board.suppress import SuppressionPolicy
from tests.fixtures.board_report import board_report
from tests.integration.cdp import Browser, chromium_binary

POLICY = SuppressionPolicy.named("small_cell", 5)
SCREENSHOT_FOR_THE_LEAD = Path("/tmp/board-screenshot.png")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    profile = tmp_path / "profile"
    profile.mkdir()
    session = Browser(profile)
    try:
        yield session
    finally:
        session.close()


def _pages(pdf: Path, out: Path) -> list[Path]:
    subprocess.run(["pdftoppm", "-png", "-r", "70", str(pdf), str(out / "page")], check=True)  # noqa: S603, S607
    return sorted(out.glob("page-*.png"))


def _ink(png: Path) -> float:
    """Share of the page that is not white (0 for a blank page)."""
    grey = Image.open(png).convert("L").point(lambda v: 255 if v < 245 else 0)
    return ImageStat.Stat(grey).mean[0] / 255


def test_the_report_loads_offline_without_errors_and_shows_every_chart(browser: Browser, tmp_path: Path) -> None:
    report = board_report()
    # west: a team whose weekly denominators never reach the minimum, so its charts have no week
    report["spc"] += [{"team": "west", "measure": m, "direction": "lower", "target": None, "variation": None,
                       "assurance": None, "points": []} for m in ("readmission_30d", "repeat_crisis_30d")]
    page = tmp_path / "report.html"
    page.write_text(render_html(report, provider="Riverside", policy=POLICY, input_sha256="0" * 64), encoding="utf-8")

    browser.call("Page.enable")
    browser.call("Runtime.enable")
    browser.call("Log.enable")
    browser.call("Network.enable")
    browser.call("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1, uploadThroughput=-1)
    browser.call("Page.navigate", url=page.as_uri())
    browser.wait_for("Page.loadEventFired")
    title = browser.evaluate("document.title")
    assert title == "Riverside: care pathways board report"

    console_errors = [
        e for e in browser.events
        if (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
        or e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    assert console_errors == []
    failed = [e["params"] for e in browser.events if e.get("method") == "Network.loadingFailed"]
    assert failed == []
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert all(url.startswith(("file:", "data:")) for url in requests), requests

    # every SPC chart with a week to draw is on the page with one marker per unsuppressed week;
    # every other is a line saying why, with no plot
    figures = browser.evaluate(
        """[...document.querySelectorAll('figure[data-chart]')].map(f => ({
             chart: f.dataset.chart, measure: f.dataset.measure, team: f.dataset.team || null,
             markers: f.querySelectorAll('svg g[id$="-points"] use').length}))"""
    )
    spc = [f for f in figures if f["chart"] == "spc"]
    hidden = {(e["measure"], e["team"], p["week"]) for e in report["spc"] for p in e["points"]
              if POLICY.cell_small(p["numerator"], p["denominator"])}
    # a chart is drawn when at least half its weeks can be shown (docs/board.md, rare events)
    drawable = {(e["measure"], e["team"]) for e in report["spc"]
                if 0 < 2 * sum((e["measure"], e["team"], p["week"]) not in hidden for p in e["points"]) >= len(e["points"])}
    assert {(f["measure"], f["team"]) for f in spc} == drawable
    empty = browser.evaluate(
        """[...document.querySelectorAll('p.no-chart[data-chart="spc"]')].map(p => ({
             measure: p.dataset.measure, teams: p.dataset.teams, svg: p.querySelectorAll('svg').length, text: p.textContent}))"""
    )
    undrawn = [(p["measure"], team) for p in empty for team in p["teams"].split()]
    assert len(undrawn) == len(set(undrawn))
    assert set(undrawn) == {(e["measure"], e["team"]) for e in report["spc"]} - drawable
    assert set(undrawn) >= {("readmission_30d", "west"), ("repeat_crisis_30d", "west")}
    assert all(p["svg"] == 0 and "nothing to draw" in p["text"] for p in empty), empty
    for f in spc:
        entry = next(e for e in report["spc"] if (e["measure"], e["team"]) == (f["measure"], f["team"]))
        expected = sum((f["measure"], f["team"], p["week"]) not in hidden for p in entry["points"])
        assert f["markers"] == expected > 0, f
    # each change card draws its before/after chart, with every unsuppressed week
    cards = [f for f in figures if f["chart"] == "change"]
    assert [(f["measure"], f["team"]) for f in cards] == [("seen_within_target", "north")]
    assert cards[0]["markers"] == next(f["markers"] for f in spc if (f["measure"], f["team"]) == ("seen_within_target", "north"))
    funnels = [f for f in figures if f["chart"] == "funnel"]
    assert {f["measure"] for f in funnels} == {f["measure"] for f in report["funnels"]}
    assert all(f["markers"] >= 2 for f in funnels)

    # the summary matrix: a row per team and measure with a judged week, each with its variation
    # icon and a text alternative; the teams with none on one line per measure, saying why
    rows = browser.evaluate(
        """[...document.querySelectorAll('#mdc-matrix tbody tr')].map(r => ({
             measure: r.dataset.measure, team: r.dataset.team || null, teams: r.dataset.teams || null,
             cells: r.cells.length, text: r.textContent,
             variation: r.querySelector('td.icon-cell svg[data-icon]')?.getAttribute('aria-label') || null}))"""
    )
    judged = [r for r in rows if r["team"] is not None]
    unjudged = [r for r in rows if r["teams"] is not None]
    assert {(r["measure"], r["team"]) for r in judged} == {(e["measure"], e["team"]) for e in report["spc"] if e["points"]}
    assert {(r["measure"], t) for r in unjudged for t in r["teams"].split()} == {
        (e["measure"], e["team"]) for e in report["spc"] if not e["points"]}
    assert len(judged) + len(unjudged) == len(rows)
    assert all(r["variation"] for r in judged)
    assert {r["cells"] for r in judged} <= {11, 12}  # 11 when value and n are one "suppressed" cell
    assert all(r["cells"] == 2 and "no week reached" in r["text"] for r in unjudged)

    # no table runs past the page's text column (a board member reading on a laptop or on A4)
    overflow = browser.evaluate(
        """(() => { const body = document.body, style = getComputedStyle(body);
             const right = body.getBoundingClientRect().right - parseFloat(style.paddingRight);
             return [...document.querySelectorAll('table')].map(t => [t.id || t.dataset.caseMix,
               Math.round(t.getBoundingClientRect().right - right)]).filter(([, over]) => over > 1); })()"""
    )
    assert overflow == [], overflow

    # printed: A4 pages, none blank; the first page kept as the test's artefact
    pdf = tmp_path / "report.pdf"
    browser.pdf(pdf)
    pages = _pages(pdf, tmp_path)
    assert len(pages) >= 3
    # a blank page has no ink; a short last page may hold only a few lines, so the bar is low
    # for every page and higher for the first, which holds the summary
    assert all(_ink(p) > 0.001 for p in pages), [(p.name, _ink(p)) for p in pages]
    assert _ink(pages[0]) > 0.02
    shutil.copy(pages[0], tmp_path / "screenshot-first-page.png")
    shutil.copy(pages[0], SCREENSHOT_FOR_THE_LEAD)


def test_print_pdf_prints_with_the_command_line_chromium(tmp_path: Path) -> None:
    chromium_binary()
    page = tmp_path / "report.html"
    page.write_text(render_html(board_report(), policy=POLICY), encoding="utf-8")
    pdf = tmp_path / "report.pdf"
    print_pdf(page, pdf)
    assert pdf.read_bytes().startswith(b"%PDF")
    pages = _pages(pdf, tmp_path)
    assert pages
    assert _ink(pages[0]) > 0.01

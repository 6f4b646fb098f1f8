"""The board report wired to settings: what ``pathwatch replay --html/--pdf`` calls.

:func:`pathwatch.parts.board` reads the cost table once at the start (a bad table fails the
command before a long replay, naming what is wrong); :meth:`Board.sections` adds the
``funnels``, ``case_mix`` and ``value`` sections to a report; :meth:`Board.write` writes the
HTML page and, if asked, prints the PDF.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from board.html import file_sha256, print_pdf, render_html
from board.sections import board_sections
from board.suppress import SuppressionPolicy
from board.value import CostTable

LIVE_INPUT = "the live workers' state (pathwatch report --from-live)"


@dataclass(frozen=True)
class Board:
    provider: str
    policy: SuppressionPolicy
    cost_table: CostTable | None
    deadweight: float
    min_weekly_denominator: int | None = None

    @staticmethod
    def check_paths(html_path: Path | None, pdf_path: Path | None) -> None:
        """Raises ValueError for a PDF asked for without the page it prints."""
        if pdf_path is not None and html_path is None:
            raise ValueError("--pdf prints the board report: give --html FILE too")

    def sections(self, report: dict[str, Any]) -> dict[str, Any]:
        """The board's JSON sections for ``report`` (unsuppressed, like the rest of it)."""
        return board_sections(report, self.cost_table, self.deadweight)

    def write(
        self, report: dict[str, Any], html_path: Path, pdf_path: Path | None, events: str | Sequence[str] | None
    ) -> None:
        """Write the page to ``html_path`` (and the PDF to ``pdf_path``). ``events`` is the input
        path or paths (``-``: standard input, not hashed), or None for the live workers' state;
        each file's SHA-256 is printed in the methods section. Raises OSError or RuntimeError."""
        paths = [] if events is None else [events] if isinstance(events, str) else list(events)
        names = ["standard input" if p == "-" else Path(p).name for p in paths] or [LIVE_INPUT]
        digests = [None if p == "-" else file_sha256(Path(p)) for p in paths]
        if not paths:
            sha = None
        elif len(paths) == 1:
            sha = digests[0]
        else:
            sha = "; ".join(f"{n}: {d or 'not hashed'}" for n, d in zip(names, digests, strict=True))
        page = render_html(
            report,
            provider=self.provider,
            policy=self.policy,
            input_sha256=sha,
            input_name=", ".join(names),
            min_weekly_denominator=self.min_weekly_denominator,
        )
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(page, encoding="utf-8")
        if pdf_path is not None:
            print_pdf(html_path, pdf_path)

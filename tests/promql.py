"""Just enough PromQL reading for tests: find the vector selectors in an expression.

Not a parser: it skips strings, label matchers, ranges and grouping lists, and treats an
identifier not followed by ``(`` and not a keyword as a metric name. Good enough for the
expressions in our rules and dashboards; anything it cannot read makes a test fail rather
than pass silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NUMBER = re.compile(r"[0-9][0-9a-zA-Z_.]*")
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
# Aggregators may put their grouping before the parenthesis: sum by (team) (x).
_AGGREGATORS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
}  # fmt: skip

GRAFANA_SUBSTITUTIONS: Mapping[str, str] = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1m",
    "$team": ".*",
    "$measure": ".*",
}


def grafana_to_promql(expr: str) -> str:
    """Replace the Grafana variables our dashboards use with values Prometheus accepts."""
    for variable, value in GRAFANA_SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    if "$" in expr:
        raise ValueError(f"unsubstituted Grafana variable in {expr!r}")
    return expr


def _closing(expr: str, start: int, open_: str, close: str) -> int:
    depth = 0
    i = start
    while i < len(expr):
        ch = expr[i]
        if ch in "\"'`":
            i = _string_end(expr, i)
            continue
        if ch == open_:
            depth += 1
        elif ch == close:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced {open_!r} in {expr!r}")


def _string_end(expr: str, start: int) -> int:
    quote = expr[start]
    i = start + 1
    while i < len(expr):
        if expr[i] == "\\":
            i += 2
            continue
        if expr[i] == quote:
            return i + 1
        i += 1
    raise ValueError(f"unterminated string in {expr!r}")


def selectors(expr: str) -> list[str]:
    """Every vector selector in ``expr`` as text, ``name{matchers}`` (matchers kept)."""
    found: list[str] = []
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch in "\"'`":
            i = _string_end(expr, i)
        elif ch == "[":
            i = _closing(expr, i, "[", "]") + 1
        elif ch == "{":
            raise ValueError(f"selector without a metric name in {expr!r}")
        elif ch.isdigit():
            match = _NUMBER.match(expr, i)
            assert match is not None
            i = match.end()
        elif (match := _IDENT.match(expr, i)) is not None:
            name = match.group()
            j = match.end()
            while j < len(expr) and expr[j].isspace():
                j += 1
            if name in _GROUPING:
                i = _closing(expr, j, "(", ")") + 1 if j < len(expr) and expr[j] == "(" else j
            elif name in _KEYWORDS or name in _AGGREGATORS or (j < len(expr) and expr[j] == "("):
                i = j
            elif j < len(expr) and expr[j] == "{":
                end = _closing(expr, j, "{", "}")
                found.append(name + expr[j : end + 1])
                i = end + 1
            else:
                found.append(name)
                i = j
        else:
            i += 1
    return found


def metric_names_in(expr: str) -> set[str]:
    """The metric names selected in ``expr``."""
    return {selector.split("{", 1)[0] for selector in selectors(expr)}


def dashboard_targets(
    dashboard: Mapping[str, Any],
) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(panel title, panel, target) for every query target in a dashboard, rows included."""
    stack = list(dashboard.get("panels", []))
    while stack:
        panel = stack.pop(0)
        stack.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            yield panel.get("title", "?"), panel, target


def rule_exprs(rules_doc: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(kind, name, expr) for every rule in a Prometheus rule file; kind is record or alert."""
    for group in rules_doc["groups"]:
        for rule in group["rules"]:
            kind = "record" if "record" in rule else "alert"
            yield kind, rule[kind], rule["expr"]

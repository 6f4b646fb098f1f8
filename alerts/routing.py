"""Which receivers get which alerts: label matchers in Alertmanager's syntax.

A route names a receiver and a list of matchers that must all hold (``team="north"``,
``alertname=~"FollowUp.*"``, ``severity!="info"``, ``client!~""``). Regular expressions are
anchored at both ends and a missing label matches as the empty string, as in Alertmanager.
Every route that matches an alert receives it (there is no first-match stop), so a care team's
webhook route and the all-alerts Kafka route both apply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from alerts.model import Alert


class MatchType(StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"=!~]*))\s*$')


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label condition."""

    name: str
    type: MatchType
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``'team="north"'`` -> Matcher. Raises ``ValueError`` on bad syntax or a bad regex."""
        m = _MATCHER.match(text)
        if not m:
            raise ValueError(f"{text!r} is not a label matcher such as team=\"north\"")
        raw = m.group(3) if m.group(3) is not None else m.group(4)
        value = re.sub(r'\\(["\\])', r"\1", raw)
        type_ = MatchType(m.group(2))
        regex = None
        if type_ in (MatchType.REGEX, MatchType.NOT_REGEX):
            try:
                regex = re.compile(f"^(?:{value})$")
            except re.error as exc:
                raise ValueError(f"{text!r}: bad regular expression: {exc}") from exc
        return cls(m.group(1), type_, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.type is MatchType.EQUAL:
            return actual == self.value
        if self.type is MatchType.NOT_EQUAL:
            return actual != self.value
        assert self._regex is not None
        found = self._regex.match(actual) is not None
        return found if self.type is MatchType.REGEX else not found

    def __str__(self) -> str:
        return f'{self.name}{self.type.value}"{self.value}"'


def parse_matchers(text: str) -> list[Matcher]:
    """``'{team="north", alertname=~"FollowUp.*"}'`` (braces optional) -> matchers.

    Commas inside quoted values are allowed. Raises ``ValueError`` on bad syntax.
    """
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in body:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [Matcher.parse(p) for p in parts if p.strip()]


@dataclass(frozen=True, slots=True)
class Route:
    """Alerts matching every matcher go to ``receiver`` (no matchers: every alert)."""

    receiver: str
    matchers: tuple[Matcher, ...] = ()

    def matches(self, alert: Alert) -> bool:
        return all(m.matches(alert.labels) for m in self.matchers)


def parse_routes(spec: Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str | Sequence[str]]]) -> list[Route]:
    """Routes from settings-shaped data.

    Either a mapping receiver -> matchers, or (receiver, matchers) pairs when a receiver needs
    several routes. Matchers are one string (``'{team="north",alertname=~"FollowUp.*"}'``) or
    a list of single matchers; an empty string or list matches every alert.
    """
    pairs = spec.items() if isinstance(spec, Mapping) else spec
    routes = []
    for receiver, matchers in pairs:
        if isinstance(matchers, str):
            parsed = parse_matchers(matchers)
        else:
            parsed = [m for text in matchers for m in parse_matchers(text)]
        routes.append(Route(receiver, tuple(parsed)))
    return routes


def receivers_for(alert: Alert, routes: Sequence[Route]) -> list[str]:
    """Receiver names for ``alert``, each once, in route order."""
    seen: dict[str, None] = {}
    for route in routes:
        if route.matches(alert):
            seen.setdefault(route.receiver, None)
    return list(seen)

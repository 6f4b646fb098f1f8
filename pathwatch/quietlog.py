"""Quiet Kafka client logs during an outage: one line per message and node per interval.

aiokafka, faust and kafka-python log every failed attempt: a 9-second broker outage gave
35,128 ERROR lines (3.7 MB) from one worker, which buries what an operator needs and fills
disks. :class:`RepeatFilter` lets the first record of a kind through, drops its repeats for
``interval`` seconds, and adds the number dropped to the next one let through. A record's
kind is its logger, its text with numbers masked, and the node it names (so each broker of
a cluster still gets its line). Records below WARNING are left alone.

The CLI installs one filter at process start for the commands that talk to Kafka
(:func:`quiet_library_logs`). Logger filters are not inherited by child loggers, so the
filter is added to every existing logger under the watched names and to those created
later (through the logger class).
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

WATCHED = ("aiokafka", "faust", "kafka")
"""Top-level loggers whose repeats are suppressed."""
DEFAULT_INTERVAL = 30.0
"""Seconds during which repeats of a record's kind are dropped."""

_NODE = re.compile(
    r"\b(?:node(?:[ _]?id)?(?: with id)?|broker|from|to)\s*[=:]?\s*[\[\"'(]*([\w.-]+(?::\d+)?)", re.IGNORECASE
)
_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")
_MAX_KINDS = 1024


@dataclass(slots=True)
class _Seen:
    since: float
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    """Drop repeats of a WARNING-or-worse record for ``interval`` seconds.

    ``clock`` returns seconds (monotonic); tests pass a fake one. The first record of a kind
    passes; repeats within ``interval`` of it are dropped and counted; the first repeat after
    the interval passes with "(N similar messages suppressed in the last S s)" appended, and
    starts a new interval. At most 1,024 kinds are remembered (the oldest is forgotten)."""

    def __init__(
        self,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        level: int = logging.WARNING,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self.level = level
        self._seen: OrderedDict[tuple[str, str, str], _Seen] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a badly formatted record is the handler's to report
            return True
        node = _NODE.search(text)
        key = (record.name, _NUMBERS.sub("#", text), node.group(1) if node else "")
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen.since < self.interval:
            seen.suppressed += 1
            return False
        self._seen[key] = _Seen(now)
        self._seen.move_to_end(key)
        while len(self._seen) > _MAX_KINDS:
            self._seen.popitem(last=False)
        if seen is not None and seen.suppressed:
            record.msg = (
                f"{text} ({seen.suppressed} similar messages suppressed in the last "
                f"{now - seen.since:.0f} s)"
            )
            record.args = ()  # not None: mode's formatter turns None into (None,) and fails
        return True


def install_filter(log_filter: logging.Filter, names: Iterable[str]) -> None:
    """Add ``log_filter`` to the loggers ``names`` and every logger below them, now and
    later (loggers created afterwards get it from the logger class)."""
    prefixes = tuple(names)

    def watched(name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    for name in prefixes:
        logging.getLogger(name).addFilter(log_filter)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and watched(name):
            logger.addFilter(log_filter)

    base = logging.getLoggerClass()

    class _FilteredLogger(base):  # type: ignore[valid-type, misc]
        def __init__(self, name: str, level: int = logging.NOTSET) -> None:
            super().__init__(name, level)
            if watched(name):
                self.addFilter(log_filter)

    logging.setLoggerClass(_FilteredLogger)


_installed: RepeatFilter | None = None


def quiet_library_logs(interval: float = DEFAULT_INTERVAL) -> RepeatFilter:
    """Install one :class:`RepeatFilter` on the Kafka client loggers (idempotent: a second
    call returns the filter already installed)."""
    global _installed
    if _installed is None:
        _installed = RepeatFilter(interval)
        install_filter(_installed, WATCHED)
    return _installed

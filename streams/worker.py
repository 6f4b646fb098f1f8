"""``pathwatch worker``: run one live faust worker (composition root for the live drivers)."""

from __future__ import annotations

import logging

import faust

from pathwatch.config import Settings
from streams.app import build_app
from streams.topics import ensure_topics

log = logging.getLogger("pathwatch.worker")


def run_worker(settings: Settings, faust_args: list[str]) -> int:
    """Create missing topics, build the app and run faust's worker until stopped.

    Raises ``ValueError`` (the CLI prints it, exit 2) when no pseudonymisation key is set.
    """
    settings.pseudonym_key_bytes(live=True)
    ensure_topics(settings)
    app, _runtime = build_app(settings)
    loglevel = "info"
    if "-l" in faust_args:
        loglevel = faust_args[faust_args.index("-l") + 1]
    log.info("pathwatch worker starting with settings %s", settings.masked())
    worker = faust.Worker(app, loglevel=loglevel)
    worker.execute_from_commandline()
    return 0

"""``pathwatch worker`` and ``pathwatch deliver``: run one live faust worker, or one alert
delivery process (composition root for the live drivers)."""

from __future__ import annotations

import logging

import faust

from pathwatch.config import Settings
from streams.app import build_app
from streams.delivery import build_delivery_app
from streams.topics import ensure_topics

log = logging.getLogger("pathwatch.worker")


def run_worker(settings: Settings, faust_args: list[str]) -> int:
    """Create missing topics, build the app and run faust's worker until stopped.

    Raises ``ValueError`` (the CLI prints it, exit 2) when no pseudonymisation key is set.
    """
    settings.pseudonym_key_bytes(live=True)
    ensure_topics(settings)
    app, _runtime = build_app(settings)
    log.info("pathwatch worker starting with settings %s", settings.masked())
    return _run(app, faust_args)


def run_deliver(settings: Settings, faust_args: list[str]) -> int:
    """Deliver alert transitions (``streams/delivery.py``) until stopped: for workers run
    with ``delivery = "separate"``. Creates missing topics like a worker."""
    ensure_topics(settings)
    app = build_delivery_app(settings)
    log.info("pathwatch deliver starting with settings %s", settings.masked())
    return _run(app, faust_args)


def _run(app: faust.App, faust_args: list[str]) -> int:
    loglevel = "info"
    if "-l" in faust_args:
        loglevel = faust_args[faust_args.index("-l") + 1]
    worker = faust.Worker(app, loglevel=loglevel)
    worker.execute_from_commandline()
    return 0

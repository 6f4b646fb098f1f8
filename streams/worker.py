"""Run a built faust app (a worker or a deliver process) with faust's worker until stopped.
The apps are built by the composition root, ``pathwatch/bootstrap.py``."""

from __future__ import annotations

import faust

from streams.slices import freeze_long_lived


def run_app(app: faust.App, faust_args: list[str]) -> int:
    """Run ``app`` until stopped; ``faust_args`` may set faust's log level (``-l LEVEL``)."""
    loglevel = "info"
    if "-l" in faust_args:
        loglevel = faust_args[faust_args.index("-l") + 1]
    worker = faust.Worker(app, loglevel=loglevel)
    freeze_long_lived()  # the app and its stages are built: see streams.slices
    worker.execute_from_commandline()
    return 0

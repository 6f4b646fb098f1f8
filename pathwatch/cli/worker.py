"""``pathwatch worker`` and ``pathwatch deliver``: the live faust processes."""

from __future__ import annotations

import argparse
import socket

from rich.console import Console

from pathwatch.config import Settings


def web_port_taken(settings: Settings) -> str | None:
    """Why the worker's web port cannot be used, or None when it is free.

    Checked before faust starts, whose own failure is a 40-line traceback. Binds with
    SO_REUSEADDR, as aiohttp does, so a port in TIME_WAIT is not taken for busy."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.web_host, settings.web_port))
        except OSError as exc:
            return (
                f"cannot serve /health and /metrics on {settings.web_host}:{settings.web_port} "
                f"({exc.strerror or exc}; another worker or deliver?): set PATHWATCH_WEB_PORT to a free "
                f"port, e.g. PATHWATCH_WEB_PORT={settings.web_port + 1}"
            )
    return None


def run(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Run a worker (or a deliver process) until it stops; its exit status. Raises
    ``ValueError`` before faust starts when the worker has no pseudonym key, the web port is
    taken or Kafka cannot be reached."""
    if args.command == "worker":
        settings.pseudonym_key_bytes(live=True)
    taken = web_port_taken(settings)
    if taken is not None:
        raise ValueError(taken)
    from streams.topics import check_kafka

    check_kafka(settings)
    from pathwatch.bootstrap import run_deliver, run_worker  # faust loads once the checks have passed

    start = run_worker if args.command == "worker" else run_deliver
    return start(settings, list(args.faust_args))

"""The ``pathwatch`` command: read the settings once, run one command.

Settings are read here once (environment, then ``--config FILE.toml``) and passed to the
command; nothing below reads the environment, and library packages get plain parameters
(:mod:`pathwatch.parts`). One module per command or group (``replay``, ``simulate``,
``change``, ``validate``, ``worker`` and ``deliver``, ``publish``, ``report``,
``deadletters``); each is imported only when its command runs, so that ``pathwatch --help``
and ``pathwatch replay`` do not pay for faust's import time. Commands print (rich); the
libraries they call return data.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from pathwatch.cli.parser import DESCRIPTION, parser
from pathwatch.config import Settings, SettingsFileError, load_settings
from pathwatch.quietlog import quiet_library_logs

LOUD_LIBRARY_COMMANDS = frozenset({"worker", "deliver", "publish", "report", "deadletters"})
"""Commands whose Kafka clients log every failed attempt during a broker outage."""

def _error(command: str, message: str) -> None:
    """One line on standard error (never wrapped: it names a setting or a command to run)."""
    Console(stderr=True, highlight=False).print(
        f"[red]pathwatch {command}:[/red] {escape(message)}", soft_wrap=True
    )

# command -> the module of pathwatch.cli that runs it
_COMMANDS = {
    "replay": "replay",
    "simulate": "simulate",
    "change": "change",
    "validate": "validate",
    "worker": "worker",
    "deliver": "worker",
    "publish": "publish",
    "report": "report",
    "deadletters": "deadletters",
}


def settings_errors(exc: ValidationError, config: Path | None) -> list[str]:
    """One line per invalid setting, naming its environment variable and TOML key."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc)
        if not loc:
            lines.append(str(error["msg"]))
            continue
        env = "PATHWATCH_" + loc[0].upper()
        if loc[0] == "topics" and len(loc) > 1:
            env = "PATHWATCH_TOPICS__" + loc[1].upper()
        if error["type"] == "extra_forbidden":
            where = f" in {config}" if config is not None else ""
            lines.append(f"{key}{where}: not a setting (every setting is listed in docs/configuration.md)")
        else:
            toml = f" or {key} in {config}" if config is not None else ""
            lines.append(f"{key} ({env}{toml}): {error['msg']}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    console = Console(stderr=args.command in ("simulate",))
    try:
        settings = load_settings(args.config)
    except SettingsFileError as exc:
        _error("--config", str(exc))
        return 2
    except ValidationError as exc:
        for line in settings_errors(exc, args.config):
            _error("settings", line)
        return 2
    except (ValueError, OSError) as exc:
        _error("settings", str(exc))
        return 2
    if args.command in LOUD_LIBRARY_COMMANDS:
        quiet_library_logs()

    try:
        return _dispatch(args, settings, console)
    except ValueError as exc:
        _error(args.command, str(exc))
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Run the chosen command's module (each ``run`` returns the exit status and may raise
    ``ValueError``, printed on one line with exit status 2)."""
    module = _COMMANDS.get(args.command)
    if module is None:
        return 2
    # each command's module loads only when it runs (faust, matplotlib and Kafka clients are slow to import)
    run = importlib.import_module(f"pathwatch.cli.{module}").run
    return cast(int, run(args, settings, console))


__all__ = ["DESCRIPTION", "LOUD_LIBRARY_COMMANDS", "main", "parser", "settings_errors"]

if __name__ == "__main__":
    sys.exit(main())

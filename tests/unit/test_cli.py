"""The command line: every command keeps its arguments and reaches its module in pathwatch/cli/."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from pathwatch.cli import main
from pathwatch.cli.parser import parser

ROOT = Path(__file__).resolve().parents[2]

ARGUMENTS = {
    "": ["--config"],
    "replay": ["events", "--report", "--html", "--pdf"],
    "simulate": [
        "--out", "--clients", "--teams", "--start", "--days", "--seed", "--max-delay", "--duplicate-fraction",
        "--cancel-fraction", "--bad-fraction", "--beyond-lateness-fraction", "--inject", "--change",
    ],
    "change add": ["--team", "--measures", "--date", "--description", "--expected-direction", "--id", "--out"],
    "change cancel": ["change_id", "--reason", "--out"],
    "validate": ["file", "--format"],
    "worker": ["faust_args"],
    "deliver": ["faust_args"],
    "publish": ["file", "--format"],
    "report": ["--from-live", "--report", "--until", "--timeout", "--html", "--pdf"],
    "deadletters": [
        "--show", "--show-original", "--kind", "--reason", "--origin", "--republish", "--all", "--to", "--timeout",
    ],
}  # fmt: skip

# command line -> the module of pathwatch/cli/ whose run() it reaches
COMMANDS = {
    ("replay", "x.jsonl"): "replay",
    ("simulate",): "simulate",
    ("change", "add", "--team", "north", "--date", "2026-01-05", "--description", "d"): "change",
    ("change", "cancel", "north-20260105"): "change",
    ("validate", "x.jsonl"): "validate",
    ("worker",): "worker",
    ("deliver",): "worker",
    ("publish", "x.jsonl"): "publish",
    ("report", "--from-live"): "report",
    ("deadletters",): "deadletters",
}


def _arguments(command: argparse.ArgumentParser, prefix: str = "") -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for action in command._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_arguments(sub, f"{prefix} {name}".strip()))
        elif not isinstance(action, argparse._HelpAction):
            found.setdefault(prefix, []).append(action.option_strings[0] if action.option_strings else action.dest)
    return found


def test_every_command_keeps_its_arguments() -> None:
    assert _arguments(parser()) == ARGUMENTS


@pytest.mark.parametrize(("argv", "module"), COMMANDS.items(), ids=lambda v: v if isinstance(v, str) else v[0])
def test_every_command_reaches_its_module(argv: tuple[str, ...], module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def run(args: argparse.Namespace, settings: object, console: object) -> int:
        seen.append(args.command)
        return 7

    monkeypatch.setattr(importlib.import_module(f"pathwatch.cli.{module}"), "run", run)
    assert main(list(argv)) == 7
    assert seen == [argv[0]]


def test_every_command_of_the_parser_is_dispatched() -> None:
    assert {argv[0] for argv in COMMANDS} == {name.split()[0] for name in ARGUMENTS if name}


def test_python_dash_m_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pathwatch.cli", "--help"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: pathwatch")

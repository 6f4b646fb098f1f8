"""Helpers for integration tests: free ports and child processes killed at teardown."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A child process with its output in a log file; killed at teardown."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        handle = self.log.open("ab")
        # a worker's faust directory goes beside its log, not into the checkout
        env = {"PATHWATCH_DATA_DIR": str(self.log.with_suffix(".data")), **self.env}
        self.proc = subprocess.Popen(self.args, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    def kill(self, sig: int = 9) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def python_module_args(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]

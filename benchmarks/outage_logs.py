"""Log lines a worker writes during a broker outage (issue 14, point 7), with and without the
repeat filter the CLI installs (``pathwatch.quietlog``).

Starts a Kafka broker of its own with ``scripts/stack`` in a temporary stack directory (the
shared stack is never stopped), a worker against it (Redis: ``PATHWATCH_REDIS_URL``, the
shared one, under a unique app id), publishes a small simulated stream, stops the broker for
``--outage`` seconds, starts it again, waits ``--after`` seconds and counts the worker's log
lines written from the stop on. ``--mode loud`` runs the worker without the filter (as
before it existed), ``quiet`` as ``pathwatch worker`` does, ``both`` one after the other.

    set -a; eval "$(scripts/stack env)"; set +a
    .venv/bin/python benchmarks/outage_logs.py --mode both
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STACK = str(ROOT / "scripts/stack")
LOUD = "from pathwatch.config import load_settings; from pathwatch.bootstrap import run_worker; run_worker(load_settings(), [])"


def stack(env: dict[str, str], *args: str) -> None:
    subprocess.run([STACK, *args], env=env, check=True, capture_output=True, timeout=180)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:  # noqa: S310 - loopback
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("worker not ready")


def run(mode: str, outage: float, after: float, tmp: Path, show_log: bool = False) -> dict[str, int]:
    stack_env = dict(os.environ, PATHWATCH_STACK_DIR=str(tmp / f"stack-{mode}"))
    stack(stack_env, "up", "kafka")
    ports_file = tmp / f"stack-{mode}/ports.env"
    ports = dict(line.split("=", 1) for line in ports_file.read_text().splitlines() if "=" in line)
    web = free_port()
    env = dict(
        os.environ,
        PATHWATCH_KAFKA_BOOTSTRAP=f"127.0.0.1:{ports['KAFKA_PORT']}",
        PATHWATCH_PSEUDONYM_KEY="outage-benchmark",
        PATHWATCH_APP_ID=f"pw-outage-{uuid.uuid4().hex[:8]}",
        PATHWATCH_WEB_PORT=str(web),
        PATHWATCH_DATA_DIR=str(tmp / f"data-{mode}"),
        PYTHONPATH=str(ROOT),
    )
    log = tmp / f"worker-{mode}.log"
    args = [sys.executable, "-m", "pathwatch.cli", "worker"] if mode == "quiet" else [sys.executable, "-c", LOUD]
    with log.open("wb") as out:
        worker = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)  # noqa: S603
    try:
        wait_ready(web)
        events = tmp / "events.jsonl"
        subprocess.run(
            [sys.executable, "-m", "pathwatch.cli", "simulate", "--clients", "300", "--days", "30", "--out", str(events)],
            env=env, check=True, capture_output=True,
        )
        subprocess.run([sys.executable, "-m", "pathwatch.cli", "publish", str(events)], env=env, check=True,
                       capture_output=True)
        time.sleep(5)
        start = log.stat().st_size
        stack(stack_env, "down")
        time.sleep(outage)
        stack(stack_env, "up", "kafka")
        time.sleep(after)
        text = log.read_bytes()[start:].decode("utf-8", "replace")
        lines = text.splitlines()
        if show_log:
            print("\n".join(line[:300] for line in lines), flush=True)
        return {
            "lines": len(lines),
            "bytes": len(text.encode()),
            "error": sum("[ERROR]" in line for line in lines),
            "warning": sum("[WARNING]" in line for line in lines),
            "suppressed notes": sum("similar messages suppressed" in line for line in lines),
            "worker alive": int(worker.poll() is None),
        }
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        stack(stack_env, "down", "--purge")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["quiet", "loud", "both"], default="both")
    parser.add_argument("--outage", type=float, default=9.0)
    parser.add_argument("--after", type=float, default=40.0)
    parser.add_argument("--show-log", action="store_true", help="print the log lines counted (cut to 300 chars)")
    args = parser.parse_args()
    if "PATHWATCH_REDIS_URL" not in os.environ:
        sys.exit("set PATHWATCH_REDIS_URL (set -a; eval \"$(scripts/stack env)\"; set +a)")
    modes = ["loud", "quiet"] if args.mode == "both" else [args.mode]
    with tempfile.TemporaryDirectory(prefix="pw-outage-") as tmp:
        for mode in modes:
            figures = run(mode, args.outage, args.after, Path(tmp), args.show_log)
            print(f"{mode}: outage {args.outage:g} s, counted {args.after:g} s after: "
                  + ", ".join(f"{k} {v:,}" for k, v in figures.items()), flush=True)


if __name__ == "__main__":
    main()

"""Fixtures for the alert delivery integration tests: a recording webhook server and a
private redis-server that a test can stop and start again (its data survives, on disk)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.integration.support import free_port


@dataclass
class WebhookRecorder:
    """An HTTP server on 127.0.0.1 that records each posted JSON body and its headers.

    ``fail_next`` answers that many requests with ``fail_status`` before recording again.
    """

    url: str = ""
    payloads: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 503

    def transitions(self) -> list[tuple[str, str, str]]:
        """(fingerprint, status, startsAt) of every alert in every recorded payload."""
        return [(a["fingerprint"], a["status"], a["startsAt"]) for p in self.payloads for a in p["alerts"]]


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookRecorder]:
    recorder = WebhookRecorder()

    async def handle(request: web.Request) -> web.Response:
        if recorder.fail_next:
            recorder.fail_next -= 1
            return web.Response(status=recorder.fail_status, text="try later")
        recorder.payloads.append(json.loads(await request.read()))
        recorder.headers.append(dict(request.headers))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    recorder.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield recorder
    finally:
        await runner.cleanup()


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class PrivateRedis:
    """A redis-server of our own on a free port, append-only file on, so stop/start keeps data."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)]
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                import socket

                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"private redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def eventually(check: Any, timeout: float = 20.0, interval: float = 0.2) -> Any:
    """Await ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    pytest.fail(f"condition not met within {timeout}s (last value {last!r})")

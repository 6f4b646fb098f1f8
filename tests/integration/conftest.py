"""Fixtures for integration tests against the real local stack (scripts/stack up).

The stack's addresses come from the environment (`scripts/stack env`, exported by
scripts/test). A missing or unreachable service FAILS the test: integration tests never
skip silently, so a CI run without the stack cannot look green.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.support import Process

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config: Any, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)


def _require(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: start the stack (scripts/stack up) and export `scripts/stack env`")
    return value


def _reachable(host_port: str) -> None:
    host, _, port = host_port.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"{host_port} is not reachable ({exc}); is the stack up?")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    value = _require("PATHWATCH_KAFKA_BOOTSTRAP")
    _reachable(value)
    return value


@pytest.fixture(scope="session")
def redis_url() -> str:
    value = _require("PATHWATCH_REDIS_URL")
    _reachable(value.split("//", 1)[1].split("/", 1)[0])
    return value


@pytest.fixture(scope="session")
def alertmanager_url() -> str:
    value = _require("PATHWATCH_ALERTMANAGER_URL")
    _reachable(value.split("//", 1)[1].rstrip("/"))
    return value


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and group names, so tests never share state."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[Process]]:
    """Collects child processes started by a test and kills them at teardown."""
    started: list[Process] = []
    yield started
    for proc in started:
        proc.kill()

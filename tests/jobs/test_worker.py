"""jobs/worker.py's health check, which `simgan worker --check` (the compose healthcheck) runs."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis

from core.settings import Settings, get_settings
from jobs.worker import build_worker, unhealthy_reason
from service.redis_server import free_port
from simgan.cli import main


@pytest.fixture
def connection(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_a_host_without_a_registered_worker_is_unhealthy(
    connection: redis.Redis, jobs_settings: Settings
) -> None:
    reason = unhealthy_reason(connection, ["refine"], jobs_settings)

    assert reason == f"no worker for the refine queue(s) on {socket.gethostname()} is registered in Redis"


def test_a_registered_worker_with_a_recent_heartbeat_is_healthy_and_only_for_its_queues(
    connection: redis.Redis, jobs_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    worker = build_worker(["refine"], connection, jobs_settings)
    worker.register_birth()  # what worker.work() does first, then a heartbeat every wait on the queues
    worker.heartbeat()

    assert unhealthy_reason(connection, ["refine"], jobs_settings) is None
    assert main(["worker", "--queues", "refine", "--check"]) == 0
    assert main(["worker", "--queues", "train", "--check"]) == 1
    assert "no worker for the train queue(s)" in capsys.readouterr().err
    assert "is registered" in (unhealthy_reason(connection, ["refine"], jobs_settings, "elsewhere") or "")


def test_a_worker_whose_heartbeat_is_older_than_the_limit_is_unhealthy(
    connection: redis.Redis, jobs_settings: Settings
) -> None:
    worker = build_worker(["train"], connection, jobs_settings)
    worker.register_birth()
    worker.heartbeat()
    # A limit of 0 s makes the heartbeat just sent already too old: the branch a stuck worker takes.
    strict = jobs_settings.model_copy(update={"worker_maintenance_seconds": 0, "worker_heartbeat_seconds": 0})

    reason = unhealthy_reason(connection, ["train"], strict)

    assert reason is not None and "last sent a heartbeat 0 s ago (limit 0 s)" in reason


def test_the_check_fails_with_the_reason_when_redis_is_down(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("REDIS_URL", url)
    get_settings.cache_clear()

    assert main(["worker", "--queues", "refine", "--check"]) == 1
    assert "is unreachable" in capsys.readouterr().err
    get_settings.cache_clear()

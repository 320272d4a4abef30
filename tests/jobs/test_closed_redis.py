"""The private Redis is closed to other local processes, and workers run only simgan's own jobs.

The reproduction: any local process could enqueue `os.system` into the `refine` queue with rq's
own `Queue.enqueue`, and a worker ran it. Now the private Redis wants a password that only the
owner of SIMGAN_HOME can read, and a worker refuses every job that is not one of ours, whether it
was written by rq's default (pickle) serializer or by JSON, without running anything."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import redis
from rq import Callback, Queue
from rq.job import Job, JobStatus

from core.settings import Settings
from jobs import queue, worker
from service.redis_server import CONFIG_NAME, PASSWORD_NAME, EmbeddedRedis


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_private_redis_refuses_a_client_without_its_password(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        anonymous = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2)
        with pytest.raises(redis.AuthenticationError):
            Queue("refine", connection=anonymous).enqueue(os.system, "true")
        guessed = redis.Redis(host="127.0.0.1", port=server.port, password="simgan", socket_timeout=2)
        with pytest.raises(redis.AuthenticationError):
            guessed.ping()
        assert redis.Redis.from_url(server.url).ping()
        # Only the owner can read the password, and it is not on the server's command line.
        assert mode(tmp_path / "redis") == 0o700
        assert mode(tmp_path / "redis" / PASSWORD_NAME) == 0o600
        assert mode(tmp_path / "redis" / CONFIG_NAME) == 0o600
        assert server.password not in Path(f"/proc/{server.process.pid}/cmdline").read_text()  # type: ignore[union-attr]


def test_the_password_is_made_once_per_simgan_home(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path / "a" / "redis").password
    assert EmbeddedRedis(tmp_path / "a" / "redis").password == first
    assert EmbeddedRedis(tmp_path / "b" / "redis").password != first
    assert len(first) >= 32


def run_refine_worker(connection: redis.Redis, settings: Settings) -> None:
    worker.build_worker([queue.REFINE_QUEUE], connection, settings).work(burst=True, logging_level="ERROR")


@pytest.mark.parametrize("serializer", [None, queue.SERIALIZER], ids=["pickle", "json"])
def test_a_job_naming_os_system_fails_without_running(
    jobs_settings: Settings, redis_url: str, tmp_path: Path, serializer: object
) -> None:
    connection = redis.Redis.from_url(redis_url)
    marker = tmp_path / "pwned"
    # Exactly what an attacker with Redis access does (rq's own API, its default serializer or ours).
    job = Queue(queue.REFINE_QUEUE, connection=connection, serializer=serializer).enqueue(
        os.system, f"touch {marker}"
    )

    run_refine_worker(connection, jobs_settings)

    assert not marker.exists()
    refused = Job.fetch(job.id, connection=connection, serializer=queue.SERIALIZER)
    assert refused.get_status() == JobStatus.FAILED
    result = refused.latest_result()
    assert result is not None and "refused without running it" in (result.exc_string or "")
    why = result.exc_string or ""
    assert "'posix.system', which is not a simgan job function" in why or "cannot be read" in why


def test_one_of_our_jobs_carrying_a_callback_fails_without_running_it(
    jobs_settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    connection = redis.Redis.from_url(redis_url)
    marker = tmp_path / "pwned"
    job = Queue(queue.REFINE_QUEUE, connection=connection, serializer=queue.SERIALIZER).enqueue_call(
        queue.JOB_FUNCTIONS[queue.REFINE_QUEUE],
        kwargs={"dataset": "0" * 16, "model": "v1"},
        on_failure=Callback("os.system"),
    )

    run_refine_worker(connection, jobs_settings)

    assert not marker.exists()
    refused = Job.fetch(job.id, connection=connection, serializer=queue.SERIALIZER)
    assert refused.get_status() == JobStatus.FAILED
    result = refused.latest_result()
    assert result is not None and "carries callbacks" in (result.exc_string or "")

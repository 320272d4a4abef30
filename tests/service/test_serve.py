"""`simgan serve` as a user runs it: everything starts, jobs work, Ctrl-C leaves no process behind."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from jobs.queue import public_url
from service.redis_server import free_port, pid_alive
from service.supervisor import descendants
from tests.factories import kill_serve, serve_env, start_serve, wait_until_up


@pytest.fixture
def serve_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "serve.log"
    yield path
    print(path.read_text() if path.exists() else "")  # shown by pytest when the test failed


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_starts_redis_workers_and_api_and_stopping_it_leaves_no_process_behind(
    tmp_path: Path, serve_log: Path, stop_signal: signal.Signals
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = start_serve(serve_env(tmp_path / "home"), port, serve_log)
    try:
        wait_until_up(serve, url, children=4)  # redis-server, the API, a train and a refine worker
        jobs = httpx.get(f"{url}/train-jobs")
        family = descendants(serve.pid)

        serve.send_signal(stop_signal)
        code = serve.wait(60)
    finally:
        kill_serve(serve)

    assert jobs.status_code == 200
    assert code == 0
    assert len(family) >= 4
    assert [pid for pid in family if pid_alive(pid)] == []
    assert (tmp_path / "home" / "redis" / "appendonlydir").is_dir() or any(
        (tmp_path / "home" / "redis").glob("*.aof")
    )


@pytest.mark.slow
def test_serve_with_redis_url_starts_only_the_api_and_uses_that_redis(
    tmp_path: Path, serve_log: Path, redis_url: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = start_serve({**serve_env(tmp_path / "home"), "REDIS_URL": redis_url}, port, serve_log)
    try:
        wait_until_up(serve, url, children=0)
        synthetic = httpx.post(f"{url}/datasets/simulate", json={"count": 2, "domain": "synthetic"}).json()[
            "id"
        ]
        real = httpx.post(f"{url}/datasets/simulate", json={"count": 2, "domain": "real"}).json()["id"]
        created = httpx.post(f"{url}/train-jobs", json={"synthetic_dataset": synthetic, "real_dataset": real})
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(60)
    finally:
        kill_serve(serve)

    assert created.status_code == 202
    assert code == 0
    import redis

    assert redis.Redis.from_url(redis_url).llen("rq:queue:train") == 1  # queued for workers elsewhere


def _stop(serve: Any) -> None:
    serve.send_signal(signal.SIGTERM)
    try:
        serve.wait(60)
    finally:
        kill_serve(serve)


@pytest.mark.slow
def test_the_private_redis_url_is_written_under_home_kept_across_restarts_and_shown_by_status(
    tmp_path: Path, serve_log: Path
) -> None:
    home = tmp_path / "home"
    env = serve_env(home)
    port = free_port()
    serve = start_serve(env, port, serve_log)
    try:
        wait_until_up(serve, f"http://127.0.0.1:{port}", children=4)
        url_file = home / "redis" / "url"
        first_url = url_file.read_text()
        status = subprocess.run(
            [sys.executable, "-m", "simgan.cli", "status"], env=env, capture_output=True, text=True
        )
    finally:
        _stop(serve)

    assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
    assert status.returncode == 0, status.stderr
    assert f"redis: {public_url(first_url)}" in status.stdout  # never the password
    assert urlsplit(first_url).password and urlsplit(first_url).password not in status.stdout
    assert f'rq info --url "$(cat {url_file})"' in status.stdout
    assert "queue train: 0 queued, 0 running, 0 failed" in status.stdout
    assert "workers: 2" in status.stdout
    assert "model: none published yet" in status.stdout or "model: v1" in status.stdout

    stopped = subprocess.run(
        [sys.executable, "-m", "simgan.cli", "status"], env=env, capture_output=True, text=True
    )
    assert stopped.returncode == 1
    assert "does not answer: is `simgan serve` running?" in stopped.stdout

    serve = start_serve(env, port, serve_log)
    try:
        wait_until_up(serve, f"http://127.0.0.1:{port}", children=4)
        assert url_file.read_text() == first_url  # the same port: `rq info --url` keeps working
    finally:
        _stop(serve)

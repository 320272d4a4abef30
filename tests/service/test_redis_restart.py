"""Fault drill: kill -9 of the private Redis of a running `simgan serve`. The supervisor starts it again
on the same port, data and password; /refine answers throughout; a queued job survives (the
append-only file, fsync'd every second, is replayed); job endpoints recover by themselves."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.redis_server import free_port
from service.supervisor import descendants
from tests.factories import image_file, kill_serve, random_images, serve_env, start_serve, wait_until_up

PNG = image_file(random_images(1, 8, 8)[0])


@pytest.fixture
def serve_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "serve.log"
    yield path
    print(path.read_text() if path.exists() else "")


def family_with(pid: int, words: str) -> list[int]:
    """Descendants of `pid` whose command line contains `words`."""
    found = []
    for child in descendants(pid):
        try:
            line = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if words in line:
            found.append(child)
    return found


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_9_of_the_private_redis_restarts_it_keeps_refine_answering_and_keeps_a_queued_job(
    tmp_path: Path, serve_log: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = start_serve(serve_env(tmp_path / "home"), port, serve_log)
    stopped: list[int] = []
    try:
        wait_until_up(serve, url, children=4)
        # The train worker paused, so the job stays queued across the Redis restart.
        stopped = family_with(serve.pid, "--queues train")
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        with httpx.Client(base_url=url, timeout=30) as api:
            synthetic = api.post("/datasets/simulate", json={"count": 2, "domain": "synthetic"}).json()["id"]
            real = api.post("/datasets/simulate", json={"count": 2, "domain": "real"}).json()["id"]
            job = api.post("/train-jobs", json={"synthetic_dataset": synthetic, "real_dataset": real}).json()
            time.sleep(1.5)  # appendfsync everysec: on disk within a second (README "State and recovery")
            (redis_pid,) = family_with(serve.pid, "redis-server")
            os.kill(redis_pid, signal.SIGKILL)

            refine_codes, deadline = [], time.monotonic() + 60
            while time.monotonic() < deadline:
                refine_codes.append(
                    api.post("/refine", files={"image": ("e.png", PNG, "image/png")}).status_code
                )
                listing = api.get("/train-jobs")
                if listing.status_code == 200:
                    break
                time.sleep(0.1)
        new_redis = family_with(serve.pid, "redis-server")
        still_serving = serve.poll() is None
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        kill_serve(serve)

    assert still_serving
    assert refine_codes and set(refine_codes) == {200}
    assert listing.status_code == 200
    assert [(j["id"], j["status"]) for j in listing.json()["jobs"]] == [(job["id"], "queued")]
    assert len(new_redis) == 1 and new_redis[0] != redis_pid
    assert "restarting it" in serve_log.read_text()

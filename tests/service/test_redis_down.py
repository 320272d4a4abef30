"""Redis stopped under a running API and started again: /refine never notices, jobs say 503, then recover."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from jobs import queue
from models import ModelCard
from service.main import create_app
from service.redis_server import EmbeddedRedis
from tests.factories import image_file, live_server, random_images, store_eye_dataset


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test alone (the session's one must stay up for the other tests)."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def settings_on_private_redis(
    private_redis: EmbeddedRedis, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("REDIS_URL", private_redis.url)
    return make_settings(redis_timeout_seconds=0.5)


@pytest.fixture
def api(settings_on_private_redis: Settings, gray_model: ModelCard) -> Iterator[httpx.Client]:
    with live_server(create_app(settings_on_private_redis)) as client:
        yield client


def test_with_redis_down_refine_works_and_job_and_dataset_writes_answer_503_saying_why(
    api: httpx.Client, private_redis: EmbeddedRedis, settings_on_private_redis: Settings
) -> None:
    dataset = store_eye_dataset(settings_on_private_redis.data_path, "synthetic", count=2).id
    private_redis.stop()

    refined = api.post("/refine", files={"image": ("eye.png", image_file(random_images(1)[0]), "image/png")})
    assert refined.status_code == 200
    for method, path, body in [
        ("POST", "/train-jobs", {"synthetic_dataset": dataset, "real_dataset": dataset}),
        ("GET", "/train-jobs", None),
        ("GET", "/train-jobs/some-job", None),
        ("POST", "/refine-jobs", {"dataset": dataset}),
        ("GET", "/refine-jobs/some-job", None),
        ("POST", "/datasets/simulate", {"count": 2}),
        ("DELETE", f"/datasets/{dataset}", None),
    ]:
        response = api.request(method, path, json=body)
        assert response.status_code == 503, (method, path, response.text)
        detail = response.json()["detail"]
        assert f"Redis at {queue.public_url(private_redis.url)} is unreachable" in detail
        assert private_redis.password not in detail
        assert "until it is back" in detail
    assert api.get("/datasets").status_code == 200
    assert api.get("/healthz").status_code == 200
    assert api.get("/train-jobs/some-job/artifacts/samples.png").status_code == 404  # from disk, not 503
    metrics = api.get("/metrics")
    assert metrics.status_code == 200
    assert 'simgan_queue_jobs{queue="train"' not in metrics.text


def test_with_redis_down_a_train_jobs_pictures_are_still_served(
    api: httpx.Client, private_redis: EmbeddedRedis, settings_on_private_redis: Settings
) -> None:
    pictures = settings_on_private_redis.job_workdir("job-1") / "artifacts"
    pictures.mkdir(parents=True)
    (pictures / "samples.png").write_bytes(image_file(random_images(1)[0]))
    private_redis.stop()

    response = api.get("/train-jobs/job-1/artifacts/samples.png")

    assert response.status_code == 200
    assert response.content == (pictures / "samples.png").read_bytes()


def test_job_endpoints_recover_by_themselves_when_redis_is_back(
    api: httpx.Client, private_redis: EmbeddedRedis, settings_on_private_redis: Settings
) -> None:
    synthetic = store_eye_dataset(settings_on_private_redis.data_path, "synthetic", count=2).id
    real = store_eye_dataset(settings_on_private_redis.data_path, "real", count=2).id
    job = api.post("/train-jobs", json={"synthetic_dataset": synthetic, "real_dataset": real}).json()
    private_redis.stop()
    assert api.get("/train-jobs").status_code == 503

    restarted = EmbeddedRedis(private_redis.directory, port=private_redis.port).start()
    try:
        # For redis_recheck_seconds after a failure the API answers 503 without asking Redis; then it asks.
        deadline = time.monotonic() + 30
        while (response := api.get("/train-jobs")).status_code == 503 and time.monotonic() < deadline:
            assert int(response.headers["retry-after"]) >= 1
            time.sleep(0.2)
    finally:
        restarted.stop()

    assert response.status_code == 200
    assert [j["id"] for j in response.json()["jobs"]] == [job["id"]]  # kept on disk across the restart


def test_a_stalled_redis_gets_503_with_retry_after_and_holds_no_threads(
    api: httpx.Client, private_redis: EmbeddedRedis
) -> None:
    assert private_redis.process is not None
    os.kill(private_redis.process.pid, signal.SIGSTOP)  # accepts connections, never answers
    try:
        first = api.get("/train-jobs")  # waits redis_timeout_seconds once, then Redis is taken as down
        with ThreadPoolExecutor(16) as pool:  # more than could wait on Redis at once
            answers = list(pool.map(lambda _: api.get("/refine-jobs"), range(32)))
        metrics = api.get("/metrics")
        refined = api.post(
            "/refine", files={"image": ("e.png", image_file(random_images(1)[0]), "image/png")}
        )
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)

    for response in [first, *answers]:
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        assert "unreachable" in response.json()["detail"]
    assert metrics.status_code == 200
    assert 'simgan_queue_jobs{queue="train"' not in metrics.text
    assert refined.status_code == 200

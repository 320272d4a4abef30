"""/train-jobs on a real Redis with real workers: training, progress, cancel, failures, kill -9 + resume."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from rq import Queue
from rq.job import Job

from core.datasets import DatasetStore
from core.settings import Settings, get_settings
from jobs.queue import SERIALIZER
from models import Registry
from service.main import create_app
from service.redis_server import pid_alive
from service.supervisor import children_of
from tests.factories import TINY_TRAIN_CONFIG, live_server, run_queued_jobs, store_eye_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # jobs train in this process


@pytest.fixture
def api(jobs_settings: Settings) -> Iterator[httpx.Client]:
    with live_server(create_app(jobs_settings)) as client:
        yield client


@pytest.fixture
def datasets(jobs_settings: Settings) -> dict[str, str]:
    return {
        "synthetic_dataset": store_eye_dataset(jobs_settings.data_path, "synthetic", seed=0).id,
        "real_dataset": store_eye_dataset(jobs_settings.data_path, "real", seed=1).id,
    }


def start_job(api: httpx.Client, datasets: dict[str, str], **config: Any) -> str:
    response = api.post("/train-jobs", json={**datasets, "config": {**TINY_TRAIN_CONFIG, **config}})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    return str(response.json()["id"])


def wait_for(
    api: httpx.Client, job_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 120
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/train-jobs/{job_id}").json()
        if done(job):
            return dict(job)
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not get there in {timeout} s: {job}")


def test_train_job_trains_publishes_and_reports_its_model(
    api: httpx.Client, datasets: dict[str, str], redis_url: str, jobs_settings: Settings
) -> None:
    job_id = start_job(api, datasets)

    run_queued_jobs(redis_url, "train")

    response = api.get(f"/train-jobs/{job_id}")
    assert response.status_code == 200
    job = response.json()
    assert job["status"] == "succeeded"
    assert job["model_version"] == Registry(jobs_settings.models_path).latest()
    assert job["progress"]["step"] == job["progress"]["total_steps"] == 6
    assert set(job["progress"]) >= {"step", "total_steps", "losses", "eta_seconds"}
    assert job["progress"]["phase"] == "exporting"  # the last thing it did; no evaluation was asked for
    assert isinstance(job["metrics"], dict)
    assert job["error"] is None
    card = Registry(jobs_settings.models_path).get(job["model_version"])
    assert {d["id"] for d in card.datasets} == set(datasets.values())
    assert card.job_id == job_id  # lineage: from the model back to its job and pictures
    assert f"/train-jobs/{job_id}/artifacts/samples.png" in api.get("/models/active/card.md").text


def test_a_smoke_test_job_does_not_replace_the_model_the_service_serves(
    api: httpx.Client, datasets: dict[str, str], redis_url: str, jobs_settings: Settings
) -> None:
    registry = Registry(jobs_settings.models_path)
    registry.seed_bundled()
    job_id = start_job(api, datasets)

    run_queued_jobs(redis_url, "train")

    job = api.get(f"/train-jobs/{job_id}").json()
    assert job["verdict"]["verdict"] in ("improved", "no measurable change", "worse")
    assert job["verdict"]["why"]
    # Six steps on a few eyes cannot measurably improve anything; by default it must stay inactive.
    assert job["verdict"]["verdict"] != "improved"
    assert job["activated"] is False
    assert registry.latest() == job["model_version"] == "v2"
    assert registry.resolve("active") == "v1"
    assert registry.get("v2").verdict == job["verdict"]


def test_a_job_with_activate_always_becomes_active_whatever_its_verdict(
    api: httpx.Client, datasets: dict[str, str], redis_url: str, jobs_settings: Settings
) -> None:
    registry = Registry(jobs_settings.models_path)
    registry.seed_bundled()
    job_id = start_job(api, datasets, activate="always")

    run_queued_jobs(redis_url, "train")

    assert api.get(f"/train-jobs/{job_id}").json()["activated"] is True
    assert registry.resolve("active") == "v2"


def test_a_train_job_serves_its_sample_grid_and_loss_curves(
    api: httpx.Client, datasets: dict[str, str], redis_url: str
) -> None:
    job_id = start_job(api, datasets)

    run_queued_jobs(redis_url, "train")

    artifacts = api.get(f"/train-jobs/{job_id}").json()["artifacts"]
    assert artifacts == {
        "loss_curves.png": f"/train-jobs/{job_id}/artifacts/loss_curves.png",
        "samples.png": f"/train-jobs/{job_id}/artifacts/samples.png",
    }
    for url in artifacts.values():
        response = api.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(response.content)).format == "PNG"
    # Three columns (synthetic | refined | real) of 55-pixel-wide eyes drawn 3x.
    samples = Image.open(io.BytesIO(api.get(artifacts["samples.png"]).content))
    assert samples.width > 3 * 3 * 55


def test_an_artifact_that_does_not_exist_is_404_naming_the_ones_that_do(
    api: httpx.Client, datasets: dict[str, str], redis_url: str
) -> None:
    job_id = start_job(api, datasets)
    before = api.get(f"/train-jobs/{job_id}/artifacts/samples.png")
    run_queued_jobs(redis_url, "train")

    missing = api.get(f"/train-jobs/{job_id}/artifacts/curves.png")
    checkpoint = api.get(f"/train-jobs/{job_id}/artifacts/checkpoint.pt")

    assert before.status_code == 404 and "none yet" in before.json()["detail"]
    assert missing.status_code == 404
    assert "loss_curves.png" in missing.json()["detail"] and "samples.png" in missing.json()["detail"]
    assert checkpoint.status_code == 404  # only pictures are served, never the job's other files
    assert api.get("/train-jobs/..%2E/artifacts/samples.png").status_code == 404


def test_a_train_job_that_evaluates_records_its_metrics_in_the_job_and_the_model_card(
    api: httpx.Client,
    datasets: dict[str, str],
    redis_url: str,
    jobs_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIMGAN_EVALUATION_TASK_STEPS", "10")
    get_settings.cache_clear()
    labeled = store_eye_dataset(jobs_settings.data_path, "real", count=16, seed=2).id
    body = {**datasets, "real_labeled_dataset": labeled, "config": {**TINY_TRAIN_CONFIG, "evaluate": True}}
    response = api.post("/train-jobs", json=body)
    assert response.status_code == 202, response.text

    run_queued_jobs(redis_url, "train")

    job = api.get(f"/train-jobs/{response.json()['id']}").json()
    assert job["status"] == "succeeded", job["error"]
    assert job["real_labeled_dataset"] == labeled
    metrics = job["metrics"]
    assert set(metrics) >= {"downstream", "realism", "labels"}
    assert set(metrics["downstream"]) >= {"error_synthetic", "error_refined", "error_real", "gap_closed"}
    assert 0.0 <= metrics["realism"]["accuracy_real_vs_refined"] <= 1.0
    model = api.get(f"/models/{job['model_version']}").json()
    assert model["metrics"]["latest"]["downstream"] == metrics["downstream"]
    assert model["metrics"]["latest"]["datasets"]["real_labeled"] == labeled


def test_an_evaluation_that_cannot_run_leaves_the_model_published_and_says_why(
    api: httpx.Client, datasets: dict[str, str], redis_url: str, jobs_settings: Settings
) -> None:
    labeled = store_eye_dataset(jobs_settings.data_path, "real", seed=2).id
    body = {
        **datasets,
        "real_labeled_dataset": labeled,
        "targets": ["gaze.roll"],
        "config": {**TINY_TRAIN_CONFIG, "evaluate": True},
    }
    job_id = api.post("/train-jobs", json=body).json()["id"]

    run_queued_jobs(redis_url, "train")

    job = api.get(f"/train-jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    assert job["model_version"] == Registry(jobs_settings.models_path).latest()
    assert "evaluation failed" in job["metrics"]["error"] and "gaze.roll" in job["metrics"]["error"]


def test_a_train_job_run_again_after_it_published_does_not_publish_a_second_model(
    api: httpx.Client, datasets: dict[str, str], redis_url: str, jobs_settings: Settings
) -> None:
    import redis

    job_id = start_job(api, datasets)
    run_queued_jobs(redis_url, "train")
    # As when a worker dies after publishing, while evaluating: rq runs the same job again.
    connection = redis.Redis.from_url(redis_url)
    train = Queue("train", connection=connection, serializer=SERIALIZER)
    train.enqueue_job(Job.fetch(job_id, connection=connection, serializer=SERIALIZER))

    run_queued_jobs(redis_url, "train")

    job = api.get(f"/train-jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    assert Registry(jobs_settings.models_path).versions() == [job["model_version"]]


@pytest.mark.parametrize(
    ("extra", "config", "message"),
    [
        ({"real_labeled_dataset": "LABELED"}, {}, "set config evaluate to true"),
        ({"targets": ["gaze.pitch"]}, {"evaluate": True}, "give real_labeled_dataset too"),
        ({"real_labeled_dataset": "0123456789abcdef"}, {"evaluate": True}, "0123456789abcdef"),
        ({"real_labeled_dataset": "SYNTHETIC"}, {"evaluate": True}, "kind real"),
        ({"real_labeled_dataset": "UNLABELED"}, {"evaluate": True}, "has no annotations"),
    ],
)
def test_a_train_job_refuses_an_evaluation_it_could_not_run(
    api: httpx.Client,
    datasets: dict[str, str],
    jobs_settings: Settings,
    extra: dict[str, Any],
    config: dict[str, Any],
    message: str,
) -> None:
    import numpy as np

    store = DatasetStore(jobs_settings.data_path)
    ids = {
        "LABELED": store_eye_dataset(jobs_settings.data_path, "real", seed=2).id,
        "SYNTHETIC": datasets["synthetic_dataset"],
        "UNLABELED": store.create_from_arrays(
            np.zeros((4, 35, 55, 1), np.uint8), None, [f"{i}.png" for i in range(4)], "real", "test"
        ).id,
    }
    extra = {k: ids.get(v, v) if isinstance(v, str) else v for k, v in extra.items()}

    response = api.post("/train-jobs", json={**datasets, **extra, "config": {**TINY_TRAIN_CONFIG, **config}})

    assert response.status_code in (404, 422)
    assert message in response.json()["detail"]
    assert api.get("/train-jobs").json()["jobs"] == []


def test_train_job_refuses_unknown_config_keys_naming_them(
    api: httpx.Client, datasets: dict[str, str]
) -> None:
    response = api.post("/train-jobs", json={**datasets, "config": {"steps": 3, "stepz": 1, "lr": 2}})

    assert response.status_code == 422
    assert "'stepz' (did you mean steps?)" in response.json()["detail"]
    assert "'lr' (did you mean refiner_lr or discriminator_lr?)" in response.json()["detail"]
    assert api.get("/train-jobs").json()["jobs"] == []


def test_train_job_refuses_unknown_top_level_fields(api: httpx.Client, datasets: dict[str, str]) -> None:
    response = api.post("/train-jobs", json={**datasets, "steps": 3})

    assert response.status_code == 422
    assert "body.steps: Extra inputs are not permitted" in response.json()["detail"]
    assert api.get("/train-jobs").json()["jobs"] == []


def test_openapi_shows_the_train_config_typed(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    config = spec["components"]["schemas"]["TrainJobCreate"]["properties"]["config"]

    assert config["properties"]["batch_size"]["minimum"] == 2
    assert config["properties"]["device"]["enum"] == ["auto", "cpu", "cuda"]
    assert config["additionalProperties"] is False
    assert spec["components"]["schemas"]["TrainJobCreate"]["additionalProperties"] is False


def test_train_job_refuses_a_dataset_that_does_not_exist(api: httpx.Client, datasets: dict[str, str]) -> None:
    response = api.post("/train-jobs", json={**datasets, "real_dataset": "0123456789abcdef"})

    assert response.status_code == 404
    assert "0123456789abcdef" in response.json()["detail"]


def test_train_job_refuses_datasets_of_the_wrong_kind(api: httpx.Client, datasets: dict[str, str]) -> None:
    swapped = {"synthetic_dataset": datasets["real_dataset"], "real_dataset": datasets["synthetic_dataset"]}

    response = api.post("/train-jobs", json=swapped)

    assert response.status_code == 422
    assert "kind synthetic" in response.json()["detail"]


def test_unknown_train_job_is_404(api: httpx.Client) -> None:
    assert api.get("/train-jobs/nope").status_code == 404
    assert api.post("/train-jobs/nope/cancel").status_code == 404


def test_train_jobs_are_listed_newest_first(api: httpx.Client, datasets: dict[str, str]) -> None:
    first, second = start_job(api, datasets), start_job(api, datasets, seed=1)

    response = api.get("/train-jobs")

    assert response.status_code == 200
    assert [job["id"] for job in response.json()["jobs"]] == [second, first]
    queued = response.json()["jobs"][0]["progress"]
    assert queued == {
        "step": 0, "total_steps": 6, "phase": "queued", "stage": None, "losses": {}, "eta_seconds": None
    }  # fmt: skip


def test_cancel_of_a_queued_train_job_means_it_never_runs(
    api: httpx.Client, datasets: dict[str, str], redis_url: str
) -> None:
    job_id = start_job(api, datasets)

    response = api.post(f"/train-jobs/{job_id}/cancel")
    run_queued_jobs(redis_url, "train")

    assert response.status_code == 202
    assert response.json()["status"] == "canceled"
    job = api.get(f"/train-jobs/{job_id}").json()
    assert job["status"] == "canceled"
    assert job["progress"] is None
    assert api.post(f"/train-jobs/{job_id}/cancel").status_code == 409


def test_cancel_of_a_running_train_job_stops_it_at_a_step_with_a_checkpoint(
    api: httpx.Client, datasets: dict[str, str], redis_url: str, jobs_settings: Settings
) -> None:
    job_id = start_job(api, datasets, steps=100_000)
    answers: list[int] = []

    def cancel_once_running() -> None:
        wait_for(
            api, job_id, lambda job: job["status"] == "running" and (job["progress"] or {}).get("step", 0) > 2
        )
        answers.append(api.post(f"/train-jobs/{job_id}/cancel").status_code)

    canceller = threading.Thread(target=cancel_once_running)
    canceller.start()
    run_queued_jobs(redis_url, "train")  # returns once the job has stopped
    canceller.join()

    assert answers == [202]
    job = api.get(f"/train-jobs/{job_id}").json()
    assert job["status"] == "canceled"
    assert 2 < job["progress"]["step"] < job["progress"]["total_steps"]
    assert job["model_version"] is None
    assert (jobs_settings.home / "jobs" / job_id / "checkpoint.pt").is_file()


def test_a_failing_train_job_reports_what_went_wrong_and_is_not_retried(
    api: httpx.Client, datasets: dict[str, str], redis_url: str, jobs_settings: Settings
) -> None:
    job_id = start_job(api, datasets)
    DatasetStore(jobs_settings.data_path).delete(datasets["real_dataset"])  # gone before the job runs

    run_queued_jobs(redis_url, "train")

    job = api.get(f"/train-jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert datasets["real_dataset"] in job["error"] and "does not exist" in job["error"]
    assert "Traceback" not in job["error"]
    assert job["attempts"] == 1


def test_deleting_a_dataset_a_queued_job_uses_is_refused(api: httpx.Client, datasets: dict[str, str]) -> None:
    job_id = start_job(api, datasets)

    response = api.delete(f"/datasets/{datasets['synthetic_dataset']}")

    assert response.status_code == 409
    assert job_id in response.json()["detail"]


# --------------------------------------------------------------------------- kill -9 and resume
def start_worker(env: dict[str, str], log: Path, *options: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "simgan.cli", "worker", "--queues", "train", *options],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
def worker_env(jobs_settings: Settings) -> dict[str, str]:
    """Short heartbeats so a dead worker's job is found abandoned in seconds, not minutes."""
    return {
        **os.environ,
        "SIMGAN_WORKER_HEARTBEAT_SECONDS": "1",
        "SIMGAN_WORKER_MAINTENANCE_SECONDS": "1",
        "SIMGAN_PROGRESS_INTERVAL_SECONDS": "0.1",
        "SIMGAN_LOG_LEVEL": "info",
        "OMP_NUM_THREADS": "1",  # tiny networks on a shared CPU: more threads only contend
    }


@pytest.mark.slow
@pytest.mark.parametrize("killed", ["worker", "worker and job process"])
def test_a_train_job_whose_worker_is_killed_resumes_from_its_checkpoint(
    api: httpx.Client, datasets: dict[str, str], worker_env: dict[str, str], tmp_path: Path, killed: str
) -> None:
    job_id = start_job(api, datasets, steps=30, checkpoint_every=5)
    first = start_worker(worker_env, tmp_path / "worker.log")
    try:
        wait_for(api, job_id, lambda job: (job["checkpoint_step"] or 0) >= 5)
        job_processes = children_of(first.pid)  # the spawned process that trains
        first.send_signal(signal.SIGKILL)  # kill -9: no warm shutdown, no cleanup
        first.wait()
        if killed == "worker and job process":  # as when the machine dies
            for pid in job_processes:
                os.kill(pid, signal.SIGKILL)
        second = start_worker(worker_env, tmp_path / "worker.log")
        try:
            job = wait_for(api, job_id, lambda job: job["status"] in ("succeeded", "failed"))
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()

    assert job["status"] == "succeeded", (job, (tmp_path / "worker.log").read_text())
    assert job["attempts"] == 2
    assert job["resumed_from_step"] >= 5
    assert job["model_version"] is not None
    assert not any(pid_alive(pid) for pid in job_processes)


@pytest.mark.slow
def test_a_train_worker_stopped_with_sigterm_requeues_its_job_which_resumes_from_where_it_stopped(
    api: httpx.Client, datasets: dict[str, str], worker_env: dict[str, str], tmp_path: Path
) -> None:
    # No periodic checkpoint: the one the job resumes from is written when the worker stops. Enough
    # steps that a fast machine cannot finish them between the poll that sees step 3 and the signal.
    job_id = start_job(api, datasets, steps=100, checkpoint_every=1000)
    first = start_worker(worker_env, tmp_path / "worker.log")
    try:
        wait_for(
            api,
            job_id,
            lambda job: job["status"] == "running" and (job["progress"] or {}).get("step", 0) >= 3,
        )
        first.send_signal(signal.SIGTERM)  # docker stop, or Ctrl-C of simgan serve
        stopped_code = first.wait(60)
    finally:
        if first.poll() is None:
            first.kill()
    stopped = api.get(f"/train-jobs/{job_id}").json()

    second = start_worker(worker_env, tmp_path / "worker.log", "--burst")
    assert second.wait(120) == 0
    job = api.get(f"/train-jobs/{job_id}").json()

    assert stopped_code == 0
    assert stopped["status"] == "queued"
    assert stopped["checkpoint_step"] >= 3
    assert job["status"] == "succeeded", (job, (tmp_path / "worker.log").read_text())
    assert job["resumed_from_step"] == stopped["checkpoint_step"]
    assert job["attempts"] == 2


def test_an_evaluating_job_counts_its_eta_down_and_shows_its_model_before_it_ends() -> None:
    import time as clock

    from jobs.queue import JobRecord, JobState
    from service.api.schemas import TrainJobPublic

    progress = {"step": 6, "total_steps": 6, "phase": "evaluating", "eta_seconds": 120.0}
    job = JobRecord(
        "j1", "train", JobState.RUNNING, {}, {**progress, "ends_at": clock.time() + 30}, None, None,
        None, None, None, meta={"model_version": "v4"},
    )  # fmt: skip

    public = TrainJobPublic.of(job, [])

    assert public.progress is not None and public.progress.phase == "evaluating"
    assert public.progress.eta_seconds is not None and 28 < public.progress.eta_seconds <= 30
    assert public.model_version == "v4"

"""jobs.queue and jobs.worker on a real Redis: enqueue by path, our job records, depths, workers."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
import redis
from rq import SpawnWorker
from rq.job import Job
from rq.timeouts import JobTimeoutException

from core.errors import ClientError
from core.settings import Settings
from jobs import context, queue, worker
from service.main import create_app
from service.redis_server import free_port
from tests.factories import TINY_TRAIN_CONFIG, live_server, store_eye_dataset


@pytest.fixture
def connection(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def enqueue_train_job(connection: redis.Redis, settings: Settings) -> queue.JobRecord:
    kwargs = {"synthetic_dataset": "a" * 16, "real_dataset": "b" * 16, "config": TINY_TRAIN_CONFIG}
    return queue.enqueue(connection, settings, queue.TRAIN_QUEUE, kwargs)


def test_jobs_are_enqueued_by_dotted_path_with_finite_timeouts(
    connection: redis.Redis, jobs_settings: Settings
) -> None:
    record = enqueue_train_job(connection, jobs_settings)

    job = Job.fetch(record.id, connection=connection, serializer=queue.SERIALIZER)
    assert job.func_name == "jobs.train.run_train_job"
    assert job.timeout == jobs_settings.train_job_timeout
    assert job.result_ttl == jobs_settings.job_result_ttl
    assert job.retries_left == jobs_settings.job_retries
    assert record.state is queue.JobState.QUEUED


def test_the_api_and_its_job_routes_never_import_torch() -> None:
    code = (
        "import sys, service.main, service.api.routes.train_jobs, service.api.routes.refine_jobs, "
        "jobs.refine, jobs.queue, jobs.worker; print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "False"


def test_job_records_hold_plain_values_only(connection: redis.Redis, jobs_settings: Settings) -> None:
    record = enqueue_train_job(connection, jobs_settings)

    values = dataclasses.asdict(queue.fetch(connection, queue.TRAIN_QUEUE, record.id))

    assert json.loads(json.dumps(values, default=str))["state"] == "queued"
    assert all(type(value).__module__.split(".")[0] != "rq" for value in values.values())


def test_fetch_finds_jobs_of_its_own_queue_only(connection: redis.Redis, jobs_settings: Settings) -> None:
    record = enqueue_train_job(connection, jobs_settings)

    with pytest.raises(queue.JobNotFound, match="no refine job"):
        queue.fetch(connection, queue.REFINE_QUEUE, record.id)


def test_queue_depths_count_waiting_jobs(connection: redis.Redis, jobs_settings: Settings) -> None:
    enqueue_train_job(connection, jobs_settings)
    enqueue_train_job(connection, jobs_settings)

    assert queue.queue_depths(connection) == {
        "train": {"queued": 2, "running": 0},
        "refine": {"queued": 0, "running": 0},
    }


def test_metrics_export_queue_depths(connection: redis.Redis, jobs_settings: Settings) -> None:
    enqueue_train_job(connection, jobs_settings)

    with live_server(create_app(jobs_settings)) as api:
        response = api.get("/metrics")

    assert response.status_code == 200
    assert 'simgan_queue_jobs{queue="train",state="queued"} 1.0' in response.text
    assert 'simgan_queue_jobs{queue="refine",state="running"} 0.0' in response.text


def test_jobs_using_a_dataset_are_the_queued_ones_that_name_it(
    connection: redis.Redis, jobs_settings: Settings
) -> None:
    dataset = store_eye_dataset(jobs_settings.data_path, "synthetic", count=2).id
    record = queue.enqueue(connection, jobs_settings, queue.REFINE_QUEUE, {"dataset": dataset, "model": "v1"})

    assert queue.jobs_using_dataset(connection, dataset) == [record.id]
    assert queue.jobs_using_dataset(connection, "f" * 16) == []


def test_connecting_to_a_dead_redis_says_what_is_wrong_and_what_to_do(
    make_settings: Callable[..., Settings],
) -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"

    with pytest.MonkeyPatch.context() as env:
        env.setenv("REDIS_URL", url)
        settings = make_settings()
        with pytest.raises(queue.RedisUnavailable) as raised:
            queue.connect(settings)

    message = str(raised.value)
    assert "unreachable" in message and "REDIS_URL" in message
    assert "secret" not in message


def test_without_redis_configured_jobs_are_unavailable_with_a_hint(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("SIMGAN_REDIS_URL", raising=False)

    with pytest.raises(queue.RedisUnavailable, match="simgan serve"):
        queue.connect(make_settings())


def test_train_workers_spawn_and_refine_workers_fork(
    connection: redis.Redis, jobs_settings: Settings
) -> None:
    train = worker.build_worker(["train"], connection, jobs_settings)
    refine = worker.build_worker(["refine"], connection, jobs_settings)

    assert isinstance(train, SpawnWorker)
    assert not isinstance(refine, SpawnWorker)


def test_a_job_is_abandoned_after_three_missed_heartbeats(
    connection: redis.Redis, jobs_settings: Settings
) -> None:
    train = worker.build_worker(
        ["train"], connection, jobs_settings.model_copy(update={"worker_heartbeat_seconds": 2})
    )
    job = Job.fetch(
        enqueue_train_job(connection, jobs_settings).id, connection=connection, serializer=queue.SERIALIZER
    )

    assert train.get_heartbeat_ttl(job) == 6
    assert train.get_heartbeat_ttl(job, working_time=jobs_settings.train_job_timeout - 1) == 5


def test_describe_failure_prefers_the_user_message_of_an_error() -> None:
    assert context.describe_failure(ClientError(404, "dataset 'x' does not exist")) == (
        "dataset 'x' does not exist"
    )
    assert context.describe_failure(RuntimeError()) == "RuntimeError"


def test_a_timed_out_job_is_told_its_own_limit_and_the_api_setting_that_fixed_it(
    connection: redis.Redis, jobs_settings: Settings
) -> None:
    # The API fixes a job's timeout when it enqueues it; a worker's own SIMGAN_*_JOB_TIMEOUT is never used.
    job = Job.fetch(enqueue_train_job(connection, jobs_settings).id, connection=connection)

    message = context.describe_failure(JobTimeoutException("too long"), job)

    assert f"time limit of {jobs_settings.train_job_timeout} s" in message
    assert "raise SIMGAN_TRAIN_JOB_TIMEOUT where jobs are enqueued (the API" in message


def test_api_answers_with_our_record_not_rq_fields(connection: redis.Redis, jobs_settings: Settings) -> None:
    record = enqueue_train_job(connection, jobs_settings)

    with live_server(create_app(jobs_settings)) as api:
        response = api.get(f"/train-jobs/{record.id}")

    assert response.status_code == 200
    assert set(response.json()) == {
        "id",
        "status",
        "synthetic_dataset",
        "real_dataset",
        "real_labeled_dataset",
        "targets",
        "config",
        "progress",
        "model_version",
        "metrics",
        "verdict",
        "activated",
        "artifacts",
        "error",
        "attempts",
        "resumed_from_step",
        "checkpoint_step",
        "retry_at",
        "created_at",
        "started_at",
        "ended_at",
    }

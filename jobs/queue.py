"""Redis and RQ: the job queues, our job states and records, enqueue, cancel, and progress.

The API never imports a job function: it enqueues `jobs.train.run_train_job` by its dotted
path, so the API process never loads torch. Responses are built from `JobRecord`, never from
rq objects. The worker side (worker classes, what a running job gets) is jobs.worker.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from core.settings import Settings, get_settings
from jobs import counters

log = logging.getLogger(__name__)

TRAIN_QUEUE = "train"
"""Training jobs (torch); each runs in a freshly spawned process of a `simgan worker --queues train`."""
REFINE_QUEUE = "refine"
"""Bulk refine jobs (onnxruntime, no torch)."""
QUEUES = (TRAIN_QUEUE, REFINE_QUEUE)
JOB_FUNCTIONS = {TRAIN_QUEUE: "jobs.train.run_train_job", REFINE_QUEUE: "jobs.refine.run_refine_job"}
"""Job functions by dotted path, so that enqueueing never imports them."""
ALLOWED_FUNCTIONS = frozenset(JOB_FUNCTIONS.values())
"""The only callables a worker runs (jobs.worker refuses any other job before it starts)."""
SERIALIZER = JSONSerializer
"""Jobs are stored as JSON, never pickles: a pickle runs code as it is read, so a job that anyone
with Redis access wrote could run anything in a worker before its function is even looked at."""
JOBS_KEY = "simgan:jobs:{}"
"""Sorted set of a queue's job ids scored by enqueue time: what GET /<queue>-jobs lists."""
CANCEL_KEY = "simgan:cancel:{}"
"""Set when a user cancels a job; a running job polls it and stops at its next step."""
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    STALLED = "stalled"
    """Started, but its worker stopped heartbeating (killed, frozen, machine gone): it is requeued
    (`retry_at`) by the next cleanup of a live worker, or failed when it has no retries left."""


FINISHED_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED)
_STATES = {
    JobStatus.STARTED: JobState.RUNNING,
    JobStatus.FINISHED: JobState.SUCCEEDED,
    JobStatus.FAILED: JobState.FAILED,
    JobStatus.STOPPED: JobState.CANCELED,
    JobStatus.CANCELED: JobState.CANCELED,
}
"""rq statuses that are not `queued` in our terms (created, deferred, scheduled, ... all wait)."""


class RedisUnavailable(RuntimeError):
    """Redis cannot be reached; the message says what is wrong and what to do, `retry_after` when."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class JobNotFound(LookupError):
    pass


class JobAlreadyFinished(RuntimeError):
    pass


def public_url(url: str) -> str:
    """`url` without its password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def unavailable(url: str | None, retry_after: float = 5) -> RedisUnavailable:
    if not url:
        return RedisUnavailable(
            "no Redis is configured, so jobs and dataset uploads are unavailable: set REDIS_URL, "
            "or start everything with `simgan serve`",
            retry_after=60,
        )
    return RedisUnavailable(
        f"Redis at {public_url(url)} is unreachable; jobs and dataset uploads are unavailable until it is "
        "back (start Redis or fix REDIS_URL). /refine keeps working.",
        retry_after=max(1, math.ceil(retry_after)),
    )


_down_until: dict[str, float] = {}
"""Redis URL -> monotonic time before which the API does not try it again (it just failed)."""


def mark_down(settings: Settings) -> None:
    """Redis failed to answer: for redis_recheck_seconds, connect() refuses at once."""
    if settings.redis_url:
        _down_until[settings.redis_url] = time.monotonic() + settings.redis_recheck_seconds


@lru_cache(maxsize=8)
def _client(url: str, timeout: float) -> redis.Redis:
    # One pool per URL. A broken connection is dropped and redialled by the pool on the next
    # command, so a Redis that comes back is used again without restarting anything.
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=RedisRetry(NoBackoff(), 0),  # no second wait: a stalled Redis must answer 503 within 1 s
        health_check_interval=15,
    )


def connect(settings: Settings) -> redis.Redis:
    """The API's Redis client (short timeouts); RedisUnavailable when none is configured or it is down."""
    if not settings.redis_url:
        raise unavailable(None)
    wait = _down_until.get(settings.redis_url, 0.0) - time.monotonic()
    if wait > 0:  # it failed a moment ago: answer now rather than wait on it again
        raise unavailable(settings.redis_url, wait)
    client = _client(settings.redis_url, settings.redis_timeout_seconds)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        mark_down(settings)
        raise unavailable(settings.redis_url, settings.redis_recheck_seconds) from exc
    return client


# ---------------------------------------------------------------------------- records
@dataclass(frozen=True)
class JobRecord:
    """A job as our API describes it: built from rq's job, holding no rq object."""

    id: str
    queue: str
    state: JobState
    kwargs: dict[str, Any]
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    attempts: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    retry_at: datetime | None = None
    """A stalled job: when a live worker requeues it at the latest (None: no retries left)."""


def _state(job: Job, result: dict[str, Any] | None) -> JobState:
    state = _STATES.get(job.get_status(refresh=False), JobState.QUEUED)
    if state is JobState.SUCCEEDED and result and result.get("canceled"):
        return JobState.CANCELED  # stopped on request at a step, with a checkpoint left behind
    return state


def _error(job: Job, meta: dict[str, Any]) -> str:
    if meta.get("error"):
        return str(meta["error"])  # written by the job itself: the message meant for the user
    latest = job.latest_result()
    text = (latest.exc_string or "") if latest else ""
    if "AbandonedJobError" in text:
        return (
            "the worker running this job stopped answering (killed, or its machine went down) too many times"
        )
    if "Work-horse terminated unexpectedly" in text:
        return f"the process running this job was killed too many times ({text.strip().rstrip(';')})"
    if not text:
        return "the job was interrupted (its worker was stopped) more times than it may be retried"
    return text.strip().splitlines()[-1]


def _heartbeat_expiry(job: Job) -> float | None:
    """When the running `job`'s worker heartbeat expires (or expired): its started-registry score."""
    key = StartedJobRegistry(job.origin, connection=job.connection, serializer=SERIALIZER).key
    for _, score in job.connection.zscan_iter(key, match=f"{job.id}:*"):
        return float(score)
    return None


def record(job: Job) -> JobRecord:
    status = job.get_status(refresh=False)
    result = job.return_value() if status == JobStatus.FINISHED else None
    result = result if isinstance(result, dict) else None
    state = _state(job, result)
    retry_at = None
    if state is JobState.RUNNING:
        expiry = _heartbeat_expiry(job)
        if expiry is not None and expiry < time.time():
            state = JobState.STALLED
            if job.retries_left:  # every live worker's maintenance requeues abandoned jobs
                cleanup = expiry + get_settings().worker_maintenance_seconds
                retry_at = datetime.fromtimestamp(max(cleanup, time.time()), UTC)
    meta = dict(job.meta or {})
    return JobRecord(
        id=job.id,
        queue=job.origin,
        state=state,
        kwargs=dict(job.kwargs or {}),
        progress=meta.get("progress"),
        result=result,
        error=_error(job, meta) if state is JobState.FAILED else None,
        created_at=job.enqueued_at or job.created_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        attempts=int(meta.get("attempts", 0)) or 1,
        meta=meta,
        retry_at=retry_at,
    )


def enqueue(connection: redis.Redis, settings: Settings, queue: str, kwargs: dict[str, Any]) -> JobRecord:
    """Put a job on `queue`. Errors the job raises are final; a dead or stopped worker's job is retried."""
    timeout = settings.train_job_timeout if queue == TRAIN_QUEUE else settings.refine_job_timeout
    job = Queue(queue, connection=connection, serializer=SERIALIZER).enqueue_call(
        JOB_FUNCTIONS[queue],
        kwargs=kwargs,
        timeout=timeout,
        result_ttl=settings.job_result_ttl,
        failure_ttl=settings.job_result_ttl,
        retry=Retry(max=settings.job_retries) if settings.job_retries > 0 else None,
    )
    connection.zadd(JOBS_KEY.format(queue), {job.id: time.time()})
    return record(job)


def valid_job_id(job_id: str) -> bool:
    """Whether `job_id` has the form of our job ids (also what keeps it a plain path component)."""
    return bool(_JOB_ID.fullmatch(job_id))


def fetch(connection: redis.Redis, queue: str, job_id: str) -> JobRecord:
    """One job of `queue`, or JobNotFound."""
    try:
        job = (
            Job.fetch(job_id, connection=connection, serializer=SERIALIZER) if valid_job_id(job_id) else None
        )
    except NoSuchJobError:
        job = None
    if job is None or job.origin != queue:
        raise JobNotFound(
            f"no {queue} job '{job_id}' (it never existed, or it ended long enough ago to expire)"
        )
    return record(job)


def list_jobs(connection: redis.Redis, queue: str, limit: int = 100) -> list[JobRecord]:
    """The newest `limit` jobs of `queue`, newest first; expired ones are forgotten."""
    key = JOBS_KEY.format(queue)
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in connection.zrevrange(key, 0, limit - 1)]
    jobs = Job.fetch_many(ids, connection=connection, serializer=SERIALIZER)
    expired = [job_id for job_id, job in zip(ids, jobs, strict=True) if job is None]
    if expired:
        connection.zrem(key, *expired)
    return [record(job) for job in jobs if job is not None]


def cancel(connection: redis.Redis, settings: Settings, queue: str, job_id: str) -> JobRecord:
    """Cancel a queued job now; ask a running one to stop at its next step (it leaves a checkpoint)."""
    current = fetch(connection, queue, job_id)
    if current.state in FINISHED_STATES:
        raise JobAlreadyFinished(f"job '{job_id}' already {current.state.value}; there is nothing to cancel")
    # The flag first: a job that starts between these two lines sees it at its first step.
    connection.set(
        CANCEL_KEY.format(job_id), 1, ex=max(settings.train_job_timeout, settings.refine_job_timeout)
    )
    job = Job.fetch(job_id, connection=connection, serializer=SERIALIZER)
    if job.get_status() not in (JobStatus.STARTED, JobStatus.FINISHED, JobStatus.FAILED):
        job.cancel()
        counters.count_job(connection, queue, "canceled")  # never reaches a worker, which counts the rest
    return fetch(connection, queue, job_id)


def queue_depths(connection: redis.Redis) -> dict[str, dict[str, int]]:
    """Jobs waiting and running per queue."""
    depths = {}
    for name in QUEUES:
        queue = Queue(name, connection=connection, serializer=SERIALIZER)
        depths[name] = {
            "queued": queue.count,
            "running": queue.started_job_registry.get_job_count(cleanup=False),
        }
    return depths


def jobs_using_dataset(connection: redis.Redis, dataset_id: str) -> list[str]:
    """Ids of queued or running jobs that read dataset `dataset_id`."""
    users = []
    for name in QUEUES:
        queue = Queue(name, connection=connection, serializer=SERIALIZER)
        ids = queue.get_job_ids() + queue.started_job_registry.get_job_ids(cleanup=False)
        for job in Job.fetch_many(ids, connection=connection, serializer=SERIALIZER):
            if job is not None and dataset_id in (job.kwargs or {}).values():
                users.append(job.id)
    return users

"""The rq worker classes: a spawning `TrainWorker` (CUDA is never touched in a forked child) and a
forking `RefineWorker`, both of which requeue the jobs of workers that died.

What a job function itself gets from its worker is jobs.context.JobContext.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import redis
from rq import SpawnWorker, Worker
from rq.job import Job
from rq.worker.base import BaseWorker

from core.settings import Settings
from jobs.queue import ALLOWED_FUNCTIONS, SERIALIZER, TRAIN_QUEUE

log = logging.getLogger(__name__)


class ForeignJob(RuntimeError):
    """A job that names a callable other than the product's own job functions."""


class OnlyOurJobs(BaseWorker):
    """Runs only jobs.queue.ALLOWED_FUNCTIONS: any other job fails, unretried, without running.

    Whoever can write to Redis can enqueue a job naming any importable callable (`os.system`);
    the job's name is checked before rq imports or calls anything. Jobs are read as JSON
    (jobs.queue.SERIALIZER), so a pickled job cannot run code while it is being read either.
    """

    def execute_job(self, job: Job, queue: Any) -> None:
        # In the worker itself, before any job process exists: a foreign job becomes a call of
        # `refused` (which only raises), without callbacks or retries, here and in Redis, so the job
        # process (forked, or spawned and reading the job again) runs nothing the job named.
        reason = _refusal(job)
        if reason is not None:
            job.data = SERIALIZER.dumps((REFUSED, None, [f"job {job.id} {reason}"], {}))
            job._success_callback_name = job._failure_callback_name = job._stopped_callback_name = None
            job.retries_left = 0
            job.connection.hset(
                job.key,
                mapping={
                    "data": job.data,
                    "success_callback_name": "",
                    "failure_callback_name": "",
                    "stopped_callback_name": "",
                    "retries_left": 0,
                },
            )
        super().execute_job(job, queue)

    def perform_job(self, job: Job, queue: Any, execution: Any) -> bool:
        reason = _refusal(job, also=REFUSED)
        if reason is not None:  # only if it got past execute_job (it cannot), refuse it here too
            job.retries_left = 0
            error = ForeignJob(f"job {job.id} {reason}; refused without running it")
            self.log.error("%s", error)
            self._finalize_failure(job, queue, execution, (ForeignJob, error, None))
            return False
        return bool(super().perform_job(job, queue, execution))


REFUSED = "jobs.worker.refused"


def refused(reason: str) -> None:
    """What a foreign job runs instead of what it named: it fails, saying why."""
    raise ForeignJob(f"{reason}; refused without running it")


def _refusal(job: Job, also: str = "") -> str | None:
    """Why `job` is not one of ours (nor `also`), or None."""
    try:
        name = job.func_name if job.instance is None else None
    except Exception:  # not JSON, or not rq's layout: it cannot even be read
        return "cannot be read as a simgan job (jobs are JSON)"
    if name not in ALLOWED_FUNCTIONS and (not also or name != also):
        return f"names {name!r}, which is not a simgan job function ({', '.join(sorted(ALLOWED_FUNCTIONS))})"
    if job._success_callback_name or job._failure_callback_name or job._stopped_callback_name:
        return "carries callbacks, which simgan jobs never have"
    return None


class _ResumingWorker(OnlyOurJobs, Worker):
    """What our workers add to rq's: short, configurable heartbeats, and stop = checkpoint + requeue.

    - A job is abandoned when its worker misses 3 heartbeats (rq's own grace is a fixed 60 s).
      rq's StartedJobRegistry cleanup, which every worker runs at start and every
      `worker_maintenance_seconds`, then requeues it (it was enqueued with `Retry`).
    - Warm shutdown (SIGTERM, Ctrl-C) forwards SIGTERM to the job process: the job stops at its
      next step, a training job writes its checkpoint, and returns `Retry`, so it is requeued now
      and resumed by the next worker instead of holding the shutdown for hours.
    """

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        interval = int(self.job_monitoring_interval)
        remaining = job.timeout - working_time if job.timeout and job.timeout > 0 else interval
        return max(1, int(min(remaining, interval))) + 2 * interval

    def handle_warm_shutdown_request(self) -> None:
        if self.horse_pid:
            self.log.info(
                "Worker %s: asking job process %s to stop at its next step", self.name, self.horse_pid
            )
            with suppress(ProcessLookupError):
                os.kill(self.horse_pid, signal.SIGTERM)

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        # rq's retry() saves this process's copy of the job, meta included: take the horse's progress first.
        job.get_meta(refresh=True)
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)


class TrainWorker(_ResumingWorker, SpawnWorker):
    """Runs each training job in a freshly spawned interpreter (posix_spawn, not fork).

    CUDA cannot be initialised in a forked child of a process that touched CUDA; a spawned
    process starts clean, and frees all GPU memory when the job ends. rq still watches it: the
    worker process heartbeats, enforces the timeout, and kills it on a cold shutdown.
    """


class RefineWorker(_ResumingWorker):
    """Forks per job, as rq usually does: bulk refine uses onnxruntime only, never torch or CUDA init."""


def build_worker(queues: list[str], connection: redis.Redis, settings: Settings) -> Worker:
    cls = TrainWorker if TRAIN_QUEUE in queues else RefineWorker
    return cls(
        queues,
        connection=connection,
        job_monitoring_interval=settings.worker_heartbeat_seconds,
        maintenance_interval=settings.worker_maintenance_seconds,
        # rq blocks on the queues for worker_ttl - 15 s between maintenance checks.
        worker_ttl=settings.worker_maintenance_seconds + 15,
        default_result_ttl=settings.job_result_ttl,
        serializer=SERIALIZER,
    )


def heartbeat_limit(settings: Settings) -> float:
    """Seconds since its last heartbeat after which a worker counts as stuck: an idle worker
    heartbeats once per blocking wait on its queues (worker_ttl - 15 s), a busy one every
    worker_heartbeat_seconds; three of the latter on top leave room for a loaded machine."""
    return settings.worker_maintenance_seconds + 3 * settings.worker_heartbeat_seconds


def unhealthy_reason(
    connection: redis.Redis, queues: list[str], settings: Settings, hostname: str | None = None
) -> str | None:
    """None when a worker of `queues` on this host is registered in Redis with a recent heartbeat,
    else why not: what a container healthcheck (`simgan worker --check`) reports."""
    hostname = hostname or socket.gethostname()
    mine = [
        w
        for w in Worker.all(connection=connection)
        if w.hostname == hostname and set(queues) <= set(w.queue_names())
    ]
    if not mine:
        return f"no worker for the {','.join(queues)} queue(s) on {hostname} is registered in Redis"
    now = datetime.now(UTC)
    ages = [
        (now - (beat if beat.tzinfo else beat.replace(tzinfo=UTC))).total_seconds()
        for beat in (w.last_heartbeat for w in mine)
        if beat is not None
    ]
    limit = heartbeat_limit(settings)
    if not ages or min(ages) > limit:
        last = f"{min(ages):.0f} s ago" if ages else "never"
        return (
            f"the {','.join(queues)} worker on {hostname} last sent a heartbeat {last} (limit {limit:.0f} s)"
        )
    return None

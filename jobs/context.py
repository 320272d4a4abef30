"""What a running job function gets from its worker: `JobContext` (progress, cancel, stop, retry).

Torch-free: both job functions use it, the training one from a freshly spawned process of a
`TrainWorker`, the bulk refine one from a forked process of a `RefineWorker` (jobs.worker).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

import redis
from rq import Retry
from rq.job import Job, get_current_job
from rq.timeouts import JobTimeoutException

from core.settings import Settings
from jobs import counters
from jobs.queue import CANCEL_KEY, TRAIN_QUEUE

log = logging.getLogger(__name__)

INTERRUPTIONS_ALLOWED = 1000
"""Times a job may be stopped by its worker's shutdown and requeued (each one resumes from a checkpoint)."""


def describe_failure(exc: BaseException, job: Job | None = None) -> str:
    """The message a user sees for an error a job raised: what went wrong, not a traceback."""
    if isinstance(exc, JobTimeoutException):
        # The limit is the job's own, fixed by the process that enqueued it (the API), not this
        # worker's settings: the variable to raise is the API's.
        variable = (
            "SIMGAN_TRAIN_JOB_TIMEOUT"
            if job is None or job.origin == TRAIN_QUEUE
            else "SIMGAN_REFINE_JOB_TIMEOUT"
        )
        limit = f" of {job.timeout} s" if job is not None and job.timeout else ""
        return (
            f"the job ran past its time limit{limit}; raise {variable} where jobs are enqueued (the API, "
            "`simgan serve`) or ask for less work"
        )
    detail = getattr(exc, "detail", None)  # ClientError and HTTP-style errors carry the user message
    message = str(detail if detail is not None else exc).strip()
    return message or type(exc).__name__


class JobContext:
    """What a running job function gets from its worker: throttled progress, cancel and stop requests.

    A job stops early for three reasons, all seen through `should_stop()`: the user canceled it
    (a Redis flag), its worker is shutting down (SIGTERM), or its worker died (this process was
    orphaned: its parent pid changed). Outside a worker (a direct call) all of this is inert.
    """

    def __init__(self, settings: Settings, job: Job | None = None) -> None:
        self.settings = settings
        self.job = job
        self.cancel_requested = False
        self.interrupted = False
        self._parent = os.getppid()
        self._last_write = 0.0
        self._last_poll = 0.0

    @property
    def id(self) -> str | None:
        return self.job.id if self.job else None

    @property
    def meta(self) -> dict[str, Any]:
        """The job's meta (progress, attempts, ...) as last read or written; {} outside a job."""
        return self.job.meta if self.job is not None else {}

    @classmethod
    @contextmanager
    def current(cls, settings: Settings) -> Iterator[JobContext]:
        """The context of the rq job running now; errors inside are recorded as the job's message."""
        context = cls(settings, get_current_job())
        previous = None
        if context.job is not None and _main_thread():
            previous = signal.signal(signal.SIGTERM, context._on_sigterm)
        outcome = "failed"
        try:
            context._start()
            yield context
            outcome = context.outcome()
        except Exception as exc:
            context._fail(describe_failure(exc, context.job))
            raise
        finally:
            if context.job is not None:
                counters.count_job(context.job.connection, context.job.origin, outcome)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if context.cancel_requested and context.job is not None:
                with suppress(redis.RedisError):
                    context.job.connection.delete(CANCEL_KEY.format(context.job.id))

    def outcome(self) -> str:
        """How the job ends when its function returned (an exception is `failed`)."""
        if self.cancel_requested:
            return "canceled"
        return "interrupted" if self.interrupted else "succeeded"

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        log.warning("job %s: worker is stopping; stopping at the next step", self.id)
        self.interrupted = True

    def _start(self) -> None:
        if self.job is None:
            return
        self.job.meta["attempts"] = int(self.job.meta.get("attempts", 0)) + 1
        self.job.meta["pid"] = os.getpid()
        self.job.meta.pop("error", None)
        self._save()

    def _fail(self, message: str) -> None:
        if self.job is None:
            return
        # An error the job raised would only happen again: no retry (retries are for dead workers).
        self.job.retries_left = 0
        self.job.meta["error"] = message
        self._save()

    def _save(self) -> None:
        assert self.job is not None
        try:
            self.job.save_meta()
        except redis.RedisError as exc:  # progress is best effort: the job goes on without Redis
            log.warning("job %s: could not write progress: %s", self.id, exc)

    def report(self, progress: dict[str, Any], force: bool = False) -> None:
        """Store `progress` ({step, total_steps, losses, eta_seconds, ...}) in job.meta, throttled."""
        if self.job is None:
            return
        now = time.monotonic()
        if not force and now - self._last_write < self.settings.progress_interval_seconds:
            return
        self._last_write = now
        self.job.meta["progress"] = progress
        self._save()

    def set_meta(self, **values: Any) -> None:
        if self.job is not None:
            self.job.meta.update(values)
            self._save()

    def should_stop(self) -> bool:
        if self.job is None:
            return False
        if not self.interrupted and os.getppid() != self._parent:
            log.warning(
                "job %s: its worker died; stopping at this step so another worker resumes it", self.id
            )
            self.interrupted = True
        now = time.monotonic()
        if not self.cancel_requested and now - self._last_poll >= self.settings.progress_interval_seconds:
            self._last_poll = now
            self.cancel_requested = self.cancel_flag()
        return self.cancel_requested or self.interrupted

    def cancel_flag(self) -> bool:
        if self.job is None:
            return False
        try:
            flagged = bool(self.job.connection.exists(CANCEL_KEY.format(self.job.id)))
        except redis.RedisError:
            return False
        self.cancel_requested = self.cancel_requested or flagged
        return flagged

    def retry_later(self) -> Retry:
        """What a job returns when it stopped because its worker is going away: run it again, first.

        Not counted against `job_retries` (those are for crashes): stopping `simgan serve` or a
        worker container mid-training is routine, and each stop leaves a checkpoint to resume from.
        """
        return Retry(max=INTERRUPTIONS_ALLOWED, enqueue_at_front=True)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()

"""Counts that workers keep in Redis for the service's /metrics: jobs by kind and outcome, and
images refined by bulk jobs.

Workers are other processes (other machines in compose), so the API cannot count their work in its
own memory; each worker adds to a Redis hash and the API reads the hashes at every scrape. The
counts live as long as Redis's data does (its dump file under SIMGAN_HOME for the private Redis).
"""

from __future__ import annotations

import logging

import redis

log = logging.getLogger(__name__)

JOB_OUTCOMES_KEY = "simgan:counts:jobs"
"""Hash "<kind>:<outcome>" -> jobs that ended so (kind: train, refine)."""
IMAGES_REFINED_KEY = "simgan:counts:images_refined"
"""Hash model version -> images refined by bulk refine jobs."""

OUTCOMES = ("succeeded", "failed", "canceled", "interrupted")
"""How a job run ends: interrupted = its worker stopped and the job was requeued to resume."""


def count_job(connection: redis.Redis, kind: str, outcome: str) -> None:
    """One more job of `kind` that ended with `outcome`; best effort (a count never fails a job)."""
    try:
        connection.hincrby(JOB_OUTCOMES_KEY, f"{kind}:{outcome}", 1)
    except redis.RedisError as exc:
        log.warning("could not count a %s job as %s: %s", kind, outcome, exc)


def count_images(connection: redis.Redis, model: str, images: int) -> None:
    try:
        connection.hincrby(IMAGES_REFINED_KEY, model, images)
    except redis.RedisError as exc:
        log.warning("could not count %d images refined by %s: %s", images, model, exc)


def job_counts(connection: redis.Redis) -> dict[tuple[str, str], int]:
    """(kind, outcome) -> jobs, as counted so far."""
    counts = {}
    for field, value in connection.hgetall(JOB_OUTCOMES_KEY).items():
        kind, _, outcome = _text(field).partition(":")
        counts[(kind, outcome)] = int(value)
    return counts


def image_counts(connection: redis.Redis) -> dict[str, int]:
    """Model version -> images refined by bulk jobs."""
    return {_text(model): int(value) for model, value in connection.hgetall(IMAGES_REFINED_KEY).items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

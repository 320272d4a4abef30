"""Training over HTTP: start a job on two stored datasets, watch its progress, cancel it.

The datasets are checked by jobs.checks before the job is queued; the job-queue errors (no such
job, already ended, no Redis) are answered by their handlers in service.api.errors.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from core.errors import ClientError
from core.layout import ARTIFACTS_DIR
from core.settings import Settings
from jobs import checks, queue
from jobs.queue import JobRecord
from service.api.deps import RedisDep, SettingsDep, StoreDep
from service.api.responses import JOB_RESPONSES, problems
from service.api.routing import RedisRoute
from service.api.schemas import Problem, TrainJobCreate, TrainJobList, TrainJobPublic

router = APIRouter(prefix="/train-jobs", tags=["training"], route_class=RedisRoute, responses=JOB_RESPONSES)

ARTIFACT_NAME = re.compile(r"[a-z0-9_]{1,64}\.png")
"""Names the trainer gives its pictures (trainer/artifacts.py)."""


def _artifact_names(settings: Settings, job_id: str) -> list[str]:
    """The pictures a training job has drawn so far (written by the trainer into its workdir)."""
    directory = settings.job_workdir(job_id) / ARTIFACTS_DIR
    return sorted(path.name for path in directory.glob("*.png")) if directory.is_dir() else []


def _public(job: JobRecord, settings: Settings) -> TrainJobPublic:
    return TrainJobPublic.of(job, _artifact_names(settings, job.id))


@router.post("", status_code=202, summary="Start a training job", responses=problems(422))
def create_train_job(
    body: TrainJobCreate, settings: SettingsDep, connection: RedisDep, store: StoreDep
) -> TrainJobPublic:
    config = checks.train_config(body.config)
    checks.check_train_datasets(
        store,
        body.synthetic_dataset,
        body.real_dataset,
        body.real_labeled_dataset,
        body.targets,
        config.evaluate,
    )
    kwargs: dict[str, Any] = {"synthetic_dataset": body.synthetic_dataset, "real_dataset": body.real_dataset}
    if body.real_labeled_dataset is not None:
        kwargs.update(real_labeled_dataset=body.real_labeled_dataset, targets=body.targets)
    # The whole resolved config, so a job trains with the defaults of the day it was queued.
    job = queue.enqueue(connection, settings, queue.TRAIN_QUEUE, {**kwargs, "config": config.to_dict()})
    return _public(job, settings)


@router.get("", summary="Training jobs, newest first")
def list_train_jobs(
    settings: SettingsDep, connection: RedisDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> TrainJobList:
    return TrainJobList(
        jobs=[_public(job, settings) for job in queue.list_jobs(connection, queue.TRAIN_QUEUE, limit)]
    )


@router.get("/{job_id}", summary="A training job: status, progress, and its model or error")
def get_train_job(job_id: str, settings: SettingsDep, connection: RedisDep) -> TrainJobPublic:
    return _public(queue.fetch(connection, queue.TRAIN_QUEUE, job_id), settings)


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    summary="Cancel a queued job, or stop a running one at its next step (it leaves a checkpoint)",
    responses={409: {"model": Problem, "description": "The job already ended"}},
)
def cancel_train_job(job_id: str, settings: SettingsDep, connection: RedisDep) -> TrainJobPublic:
    return _public(queue.cancel(connection, settings, queue.TRAIN_QUEUE, job_id), settings)


@router.get(
    "/{job_id}/artifacts/{name}",
    summary="A picture of a training run: samples.png, loss_curves.png or evaluation.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}, "description": "The PNG"}},
)
def get_train_job_artifact(job_id: str, name: str, settings: SettingsDep) -> FileResponse:
    # Read from disk only (no Redis): pictures stay reachable while Redis is down. Both path parts
    # are checked against the names the trainer writes, so no request can reach outside the job.
    if not queue.valid_job_id(job_id) or not ARTIFACT_NAME.fullmatch(name):
        raise ClientError(404, f"no artifact '{name}' for train job '{job_id}'")
    names = _artifact_names(settings, job_id)
    if name not in names:
        have = ", ".join(names) if names else "none yet (pictures are drawn at the first checkpoint)"
        raise ClientError(404, f"no artifact '{name}' for train job '{job_id}'; it has: {have}")
    return FileResponse(settings.job_workdir(job_id) / ARTIFACTS_DIR / name, media_type="image/png")

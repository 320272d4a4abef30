"""Training over HTTP: start a job on two stored datasets, watch its progress, cancel it.

Also home of what every job route shares: `RedisDep` (503 when Redis is down) and `RedisRoute`
(a Redis that dies mid-request is a 503 too, never a 500).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from core.datasets import DatasetInfo, DatasetStore
from core.errors import ClientError
from core.layout import ARTIFACTS_DIR
from core.settings import Settings
from core.train_config import ConfigError, TrainConfig
from jobs import queue
from jobs.queue import JobRecord, JobState
from service.api.deps import SettingsDep
from service.api.schemas import Problem
from service.metrics import Metrics


def get_redis(settings: SettingsDep) -> redis.Redis:
    try:
        return queue.connect(settings)
    except queue.RedisUnavailable as exc:
        raise HTTPException(503, str(exc)) from None


RedisDep = Annotated[redis.Redis, Depends(get_redis)]


class RedisRoute(APIRoute):
    """Answers 503 with what to do when Redis fails in the middle of a request."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except redis.RedisError:
                detail = str(queue.unavailable(request.app.state.settings.redis_url))
                return JSONResponse({"detail": detail}, status_code=503)

        return guarded


def register_metrics(metrics: Metrics, settings: Settings) -> None:
    """simgan_queue_jobs{queue, state}: jobs waiting and running, read from Redis at each scrape
    (absent while Redis is down)."""

    def read() -> dict[tuple[str, ...], float]:
        depths = queue.queue_depths(queue.connect(settings))
        return {(name, state): float(n) for name, counts in depths.items() for state, n in counts.items()}

    metrics.add_gauge_callback(
        "simgan_queue_jobs", "Jobs queued and running, by queue.", ["queue", "state"], read
    )


def not_found(exc: Exception) -> HTTPException:
    return HTTPException(404, str(exc))


JOB_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such job"},
    503: {"model": Problem, "description": "Redis is unreachable"},
}

ARTIFACT_NAME = re.compile(r"[a-z0-9_]{1,64}\.png")
"""Names the trainer gives its pictures (trainer/artifacts.py)."""

router = APIRouter(prefix="/train-jobs", tags=["training"], route_class=RedisRoute, responses=JOB_RESPONSES)


class TrainJobCreate(BaseModel):
    synthetic_dataset: str = Field(
        description="Id of a stored dataset of kind `synthetic` (the simulator's images)."
    )
    real_dataset: str = Field(description="Id of a stored dataset of kind `real` (unlabelled real images).")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Training config overrides (DESIGN.md keys); unknown keys are refused.",
    )
    real_labeled_dataset: str | None = Field(
        None,
        description="Id of a stored `real` dataset with annotations, used only to evaluate the published "
        "model (downstream gap closure, label preservation); needs config `evaluate: true`.",
    )
    targets: list[str] | None = Field(
        None,
        description="Annotation fields (dotted paths, e.g. `gaze.pitch`) the evaluation's task model "
        "predicts from the images; default: gaze.pitch and gaze.yaw.",
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"synthetic_dataset": "3f2a...", "real_dataset": "9c1b...", "config": {"steps": 500}},
                {
                    "synthetic_dataset": "3f2a...",
                    "real_dataset": "9c1b...",
                    "real_labeled_dataset": "77d0...",
                    "config": {"steps": 2000, "evaluate": True},
                },
            ]
        }
    }


class TrainProgress(BaseModel):
    step: int
    total_steps: int
    phase: str | None = Field(
        None,
        description="pretrain_refiner, pretrain_discriminator, adversarial, or evaluate (after publishing, "
        "with config `evaluate`).",
    )
    losses: dict[str, float] = Field(default_factory=dict)
    eta_seconds: float | None = None


class TrainJobPublic(BaseModel):
    id: str
    status: JobState
    synthetic_dataset: str
    real_dataset: str
    real_labeled_dataset: str | None = None
    targets: list[str] | None = None
    config: dict[str, Any]
    progress: TrainProgress | None = None
    model_version: str | None = Field(None, description="The published refiner, once the job succeeded.")
    metrics: dict[str, Any] | None = Field(
        None,
        description="Its evaluation metrics (config `evaluate`; also in GET /models/{version}): "
        "`downstream.gap_closed`, `realism`, `labels`; `{error}` if the evaluation could not run.",
    )
    artifacts: dict[str, str] = Field(
        default_factory=dict,
        description="Pictures of the run so far, name -> URL: `samples.png` (synthetic | refined | real) "
        "and `loss_curves.png`; redrawn at every checkpoint, the final ones show the published model.",
    )
    error: str | None = Field(None, description="What went wrong, when the job failed.")
    attempts: int = Field(
        1, description="Runs so far; more than 1 when a dead or stopped worker's job resumed."
    )
    resumed_from_step: int | None = Field(None, description="Checkpoint step the latest run resumed from.")
    checkpoint_step: int | None = Field(None, description="Step of the latest checkpoint written.")
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


class TrainJobList(BaseModel):
    jobs: list[TrainJobPublic]


def artifact_names(settings: Settings, job_id: str) -> list[str]:
    """The pictures a training job has drawn so far (written by the trainer into its workdir)."""
    directory = settings.job_workdir(job_id) / ARTIFACTS_DIR
    return sorted(path.name for path in directory.glob("*.png")) if directory.is_dir() else []


def train_job_public(job: JobRecord, settings: Settings) -> TrainJobPublic:
    result = job.result or {}
    return TrainJobPublic(
        id=job.id,
        status=job.state,
        synthetic_dataset=job.kwargs.get("synthetic_dataset", ""),
        real_dataset=job.kwargs.get("real_dataset", ""),
        real_labeled_dataset=job.kwargs.get("real_labeled_dataset"),
        targets=job.kwargs.get("targets"),
        config=job.kwargs.get("config", {}),
        artifacts={
            name: f"/train-jobs/{job.id}/artifacts/{name}" for name in artifact_names(settings, job.id)
        },
        progress=TrainProgress.model_validate(job.progress) if job.progress else None,
        model_version=result.get("model_version"),
        metrics=result.get("metrics") if job.state is JobState.SUCCEEDED else None,
        error=job.error,
        attempts=job.attempts,
        resumed_from_step=job.meta.get("resumed_from_step"),
        checkpoint_step=job.meta.get("checkpoint_step"),
        created_at=job.created_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
    )


def _dataset(store: DatasetStore, field: str, dataset_id: str, kind: str) -> DatasetInfo:
    try:
        info = store.get(dataset_id)
    except ClientError as exc:
        raise HTTPException(exc.status_code, f"{field}: {exc.detail}") from None
    if info.kind != kind:
        raise HTTPException(422, f"{field} must be a dataset of kind {kind}; '{dataset_id}' is {info.kind}")
    return info


def _check_datasets(store: DatasetStore, body: TrainJobCreate, config: TrainConfig) -> None:
    synthetic = _dataset(store, "synthetic_dataset", body.synthetic_dataset, "synthetic")
    real = _dataset(store, "real_dataset", body.real_dataset, "real")
    if synthetic.channels != real.channels:
        raise HTTPException(
            422,
            f"the synthetic dataset has {synthetic.channels}-channel images and the real one "
            f"{real.channels}; training needs the same channel count on both sides",
        )
    if body.real_labeled_dataset is None:
        if body.targets is not None:
            raise HTTPException(
                422, "targets name what the evaluation predicts; give real_labeled_dataset too"
            )
        return
    if not config.evaluate:
        raise HTTPException(
            422, "real_labeled_dataset is only used by the evaluation: set config evaluate to true"
        )
    labeled = _dataset(store, "real_labeled_dataset", body.real_labeled_dataset, "real")
    for info, field in ((synthetic, "synthetic_dataset"), (labeled, "real_labeled_dataset")):
        if not info.has_annotations:
            raise HTTPException(
                422,
                f"{field} '{info.id}' has no annotations; the evaluation's task model learns them "
                "(upload it with annotations.jsonl or sidecar JSON)",
            )
    if labeled.channels != synthetic.channels:
        raise HTTPException(
            422,
            f"real_labeled_dataset has {labeled.channels}-channel images and the synthetic one "
            f"{synthetic.channels}; the evaluation needs the same channel count",
        )


@router.post("", status_code=202, summary="Start a training job", responses={422: {"model": Problem}})
def create_train_job(body: TrainJobCreate, settings: SettingsDep, connection: RedisDep) -> TrainJobPublic:
    try:
        config = TrainConfig.from_overrides(body.config)
    except ConfigError as exc:
        raise HTTPException(422, f"config: {exc}") from None
    _check_datasets(DatasetStore(settings.data_path), body, config)
    kwargs: dict[str, Any] = {"synthetic_dataset": body.synthetic_dataset, "real_dataset": body.real_dataset}
    if body.real_labeled_dataset is not None:
        kwargs.update(real_labeled_dataset=body.real_labeled_dataset, targets=body.targets)
    # The whole resolved config, so a job trains with the defaults of the day it was queued.
    job = queue.enqueue(connection, settings, queue.TRAIN_QUEUE, {**kwargs, "config": config.to_dict()})
    return train_job_public(job, settings)


@router.get("", summary="Training jobs, newest first")
def list_train_jobs(
    settings: SettingsDep, connection: RedisDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> TrainJobList:
    return TrainJobList(
        jobs=[train_job_public(j, settings) for j in queue.list_jobs(connection, queue.TRAIN_QUEUE, limit)]
    )


@router.get("/{job_id}", summary="A training job: status, progress, and its model or error")
def get_train_job(job_id: str, settings: SettingsDep, connection: RedisDep) -> TrainJobPublic:
    try:
        return train_job_public(queue.fetch(connection, queue.TRAIN_QUEUE, job_id), settings)
    except queue.JobNotFound as exc:
        raise not_found(exc) from None


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    summary="Cancel a queued job, or stop a running one at its next step (it leaves a checkpoint)",
    responses={409: {"model": Problem, "description": "The job already ended"}},
)
def cancel_train_job(job_id: str, settings: SettingsDep, connection: RedisDep) -> TrainJobPublic:
    try:
        return train_job_public(queue.cancel(connection, settings, queue.TRAIN_QUEUE, job_id), settings)
    except queue.JobNotFound as exc:
        raise not_found(exc) from None
    except queue.JobAlreadyFinished as exc:
        raise HTTPException(409, str(exc)) from None


@router.get(
    "/{job_id}/artifacts/{name}",
    summary="A picture of a training run: samples.png or loss_curves.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}, "description": "The PNG"}},
)
def get_train_job_artifact(job_id: str, name: str, settings: SettingsDep) -> FileResponse:
    # Read from disk only (no Redis): pictures stay reachable while Redis is down. Both path parts
    # are checked against the names the trainer writes, so no request can reach outside the job.
    if not queue.valid_job_id(job_id) or not ARTIFACT_NAME.fullmatch(name):
        raise HTTPException(404, f"no artifact '{name}' for train job '{job_id}'")
    names = artifact_names(settings, job_id)
    if name not in names:
        have = ", ".join(names) if names else "none yet (pictures are drawn at the first checkpoint)"
        raise HTTPException(404, f"no artifact '{name}' for train job '{job_id}'; it has: {have}")
    return FileResponse(settings.job_workdir(job_id) / ARTIFACTS_DIR / name, media_type="image/png")

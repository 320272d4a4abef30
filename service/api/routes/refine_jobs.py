"""Bulk refinement: refine a whole stored dataset in the background, download the result as a zip."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from core.datasets import DatasetStore
from core.errors import ClientError
from jobs import queue
from jobs.queue import JobRecord, JobState
from jobs.refine import result_path
from service.api.deps import RegistryDep, SettingsDep
from service.api.routes.train_jobs import JOB_RESPONSES, RedisDep, RedisRoute, not_found
from service.api.schemas import Problem

router = APIRouter(prefix="/refine-jobs", tags=["refine"], route_class=RedisRoute, responses=JOB_RESPONSES)


class RefineJobCreate(BaseModel):
    dataset: str = Field(description="Id of a stored dataset.")
    model: str | None = Field(None, description="Model version (`v3`, `latest`); default the active one.")

    model_config = {"json_schema_extra": {"examples": [{"dataset": "3f2a...", "model": "latest"}]}}


class RefineProgress(BaseModel):
    images_done: int
    images_total: int
    eta_seconds: float | None = None


class RefineJobPublic(BaseModel):
    id: str
    status: JobState
    dataset: str
    model: str = Field(description="The version refining this dataset (resolved when the job was queued).")
    progress: RefineProgress | None = None
    result: str | None = Field(None, description="Path of the result zip on this API, once succeeded.")
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


class RefineJobList(BaseModel):
    jobs: list[RefineJobPublic]


def refine_job_public(job: JobRecord) -> RefineJobPublic:
    done = job.state is JobState.SUCCEEDED
    return RefineJobPublic(
        id=job.id,
        status=job.state,
        dataset=job.kwargs.get("dataset", ""),
        model=job.kwargs.get("model", ""),
        progress=RefineProgress.model_validate(job.progress) if job.progress else None,
        result=f"/refine-jobs/{job.id}/result" if done else None,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
    )


def _fetch(connection: RedisDep, job_id: str) -> JobRecord:
    try:
        return queue.fetch(connection, queue.REFINE_QUEUE, job_id)
    except queue.JobNotFound as exc:
        raise not_found(exc) from None


@router.post(
    "",
    status_code=202,
    summary="Refine a stored dataset in the background",
    responses={422: {"model": Problem}},
)
def create_refine_job(
    body: RefineJobCreate, settings: SettingsDep, registry: RegistryDep, connection: RedisDep
) -> RefineJobPublic:
    try:
        dataset = DatasetStore(settings.data_path).get(body.dataset)
    except ClientError as exc:
        raise HTTPException(exc.status_code, f"dataset: {exc.detail}") from None
    card = registry.get(registry.resolve(body.model or "active"))  # ModelNotFound -> 404
    if card.channels != dataset.channels:
        raise HTTPException(
            422,
            f"model {card.version} takes {card.channels}-channel images and dataset {body.dataset} has "
            f"{dataset.channels}-channel ones; name a model trained on such images",
        )
    job = queue.enqueue(
        connection, settings, queue.REFINE_QUEUE, {"dataset": body.dataset, "model": card.version}
    )
    return refine_job_public(job)


@router.get("", summary="Bulk refine jobs, newest first")
def list_refine_jobs(
    connection: RedisDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> RefineJobList:
    return RefineJobList(
        jobs=[refine_job_public(j) for j in queue.list_jobs(connection, queue.REFINE_QUEUE, limit)]
    )


@router.get("/{job_id}", summary="A bulk refine job: status and progress")
def get_refine_job(job_id: str, connection: RedisDep) -> RefineJobPublic:
    return refine_job_public(_fetch(connection, job_id))


@router.get(
    "/{job_id}/result",
    summary="The refined images (same file names) and annotations.jsonl, as a zip",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/zip": {}}},
        409: {"model": Problem, "description": "Not finished"},
    },
)
def download_refine_result(job_id: str, settings: SettingsDep, connection: RedisDep) -> FileResponse:
    job = _fetch(connection, job_id)
    if job.state is not JobState.SUCCEEDED:
        why = f"failed: {job.error}" if job.state is JobState.FAILED else f"is {job.state.value}"
        raise HTTPException(409, f"refine job {job_id} {why}; its result exists once its status is succeeded")
    path = result_path(settings, job_id)
    if not path.is_file():
        raise HTTPException(
            404, f"the result of refine job {job_id} is gone from {path.parent}; run the job again"
        )
    return FileResponse(
        path, media_type="application/zip", filename=f"refined-{job.kwargs['dataset']}-{job_id}.zip"
    )

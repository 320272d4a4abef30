"""Bulk refinement: refine a whole stored dataset in the background, download the result as a zip."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from core.errors import ClientError
from jobs import checks, queue
from jobs.queue import JobState
from service.api.deps import RedisDep, RegistryDep, SettingsDep, StoreDep
from service.api.responses import JOB_RESPONSES, problems
from service.api.routing import RedisRoute
from service.api.schemas import Problem, RefineJobCreate, RefineJobList, RefineJobPublic

router = APIRouter(prefix="/refine-jobs", tags=["refine"], route_class=RedisRoute, responses=JOB_RESPONSES)


@router.post(
    "", status_code=202, summary="Refine a stored dataset in the background", responses=problems(422)
)
def create_refine_job(
    body: RefineJobCreate, settings: SettingsDep, registry: RegistryDep, connection: RedisDep, store: StoreDep
) -> RefineJobPublic:
    card = checks.check_refine_job(store, registry, body.dataset, body.model)
    job = queue.enqueue(
        connection,
        settings,
        queue.REFINE_QUEUE,
        {"dataset": body.dataset, "model": card.version, "seed": body.seed},
    )
    return RefineJobPublic.of(job)


@router.get("", summary="Bulk refine jobs, newest first")
def list_refine_jobs(
    connection: RedisDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> RefineJobList:
    return RefineJobList(
        jobs=[RefineJobPublic.of(job) for job in queue.list_jobs(connection, queue.REFINE_QUEUE, limit)]
    )


@router.get("/{job_id}", summary="A bulk refine job: status and progress")
def get_refine_job(job_id: str, connection: RedisDep) -> RefineJobPublic:
    return RefineJobPublic.of(queue.fetch(connection, queue.REFINE_QUEUE, job_id))


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
    job = queue.fetch(connection, queue.REFINE_QUEUE, job_id)
    if job.state is not JobState.SUCCEEDED:
        why = f"failed: {job.error}" if job.state is JobState.FAILED else f"is {job.state.value}"
        raise ClientError(409, f"refine job {job_id} {why}; its result exists once its status is succeeded")
    path = settings.result_path(job_id)
    if not path.is_file():
        raise ClientError(
            404, f"the result of refine job {job_id} is gone from {path.parent}; run the job again"
        )
    return FileResponse(
        path, media_type="application/zip", filename=f"refined-{job.kwargs['dataset']}-{job_id}.zip"
    )

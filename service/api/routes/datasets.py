"""Datasets over HTTP: upload an archive or array file, make one with a built-in simulator,
list, inspect, delete. The store (core.datasets) does the work; these routes translate.

Reads (GET) come from disk and work without Redis. Writes (POST, DELETE) pass through
`dataset_write_guard`, the one place where the job system says whether a write may happen.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from core.datasets import KINDS, DatasetInfo, DatasetStore
from core.errors import ClientError
from core.limits import ACCEPTED, Limits
from service.api.deps import SettingsDep
from service.api.schemas import Problem
from simulators import SIMULATORS, simulate

router = APIRouter(prefix="/datasets", tags=["datasets"])

MAX_SIMULATE_COUNT = 100_000
"""Most images one POST /datasets/simulate makes."""
_FORM_OVERHEAD = 64 * 1024
"""Bytes a multipart body may carry beyond the file itself (boundaries, headers, `kind`)."""

_EXAMPLE: dict[str, Any] = {
    "id": "3f2a9c1b7d4e5f60",
    "kind": "synthetic",
    "count": 1000,
    "height": 35,
    "width": 55,
    "channels": 1,
    "created_at": "2025-01-31T12:00:00+00:00",
    "sha256": "9b1c...e0",
    "source": "simulate:eyes count=1000 domain=synthetic seed=0 gap=1.0",
    "has_annotations": True,
}


class DatasetPublic(BaseModel):
    """A stored dataset; its images share one size and channel count."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    id: str = Field(description="Content address: the same images, annotations and kind give the same id.")
    kind: Literal["synthetic", "real"]
    count: int = Field(description="Number of images.")
    height: int
    width: int
    channels: int = Field(description="1 (grayscale) or 3 (RGB).")
    created_at: str
    sha256: str = Field(description="sha256 of the stored images.npy.")
    source: str = Field(description="Where it came from: `upload:<file name>` or `simulate:<parameters>`.")
    has_annotations: bool

    @classmethod
    def of(cls, info: DatasetInfo) -> DatasetPublic:
        return cls.model_validate(info.to_dict())


class DatasetList(BaseModel):
    datasets: list[DatasetPublic] = Field(description="Oldest first.")


class SimulateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"simulator": "eyes", "count": 1000, "domain": "synthetic", "seed": 0}]
        },
    )

    simulator: str = Field("eyes", description="A built-in simulator: `eyes` (35x55 grayscale eye images).")
    count: int = Field(ge=1, le=MAX_SIMULATE_COUNT, description="Number of images to make.")
    domain: Literal["synthetic", "real"] = Field(
        "synthetic",
        description="`synthetic`: the simulator's clean images, with annotations. `real`: images "
        "with a realistic domain gap, standing in for real data. Also the dataset's kind.",
    )
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="The same seed and parameters make the same dataset."
    )
    gap: float = Field(1.0, ge=0.0, description="Strength of the real domain's gap (1.0 = the default).")


def dataset_write_guard(request: Request) -> None:
    """The one place for write policy: POST /datasets, POST /datasets/simulate and DELETE
    /datasets/{id} depend on it, and it runs before the upload is read. Writes answer 503 while
    Redis is down (the job system must see every dataset a job may name), and DELETE answers 409
    while a queued or running job uses the dataset. Reads never pass through here."""
    import redis

    from jobs import queue

    settings = request.app.state.settings
    try:
        connection = queue.connect(settings)
        if request.method == "DELETE":
            dataset_id = request.path_params.get("dataset_id", "")
            users = queue.jobs_using_dataset(connection, dataset_id)
            if users:
                raise HTTPException(
                    409,
                    f"dataset '{dataset_id}' is used by queued or running job(s) {', '.join(users)}; "
                    "delete it once they end, or cancel them first (POST /train-jobs/{id}/cancel)",
                )
    except queue.RedisUnavailable as exc:
        raise HTTPException(503, str(exc)) from None
    except redis.RedisError:
        raise HTTPException(503, str(queue.unavailable(settings.redis_url))) from None


WriteGuard = Depends(dataset_write_guard)


def get_store(settings: SettingsDep) -> DatasetStore:
    return DatasetStore(settings.data_path, Limits.from_settings(settings))


StoreDep = Annotated[DatasetStore, Depends(get_store)]


@contextmanager
def _as_http() -> Iterator[None]:
    try:
        yield
    except ClientError as error:
        raise HTTPException(error.status_code, error.detail) from None


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Problem} for code in codes}


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "kind"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": f"One of {ACCEPTED}."},
                        "kind": {"type": "string", "enum": list(KINDS)},
                    },
                }
            }
        },
    }
}


def _upload_parts(form: FormData) -> tuple[UploadFile, str]:
    upload, kind = form.get("file"), form.get("kind")
    if not isinstance(upload, UploadFile):
        raise HTTPException(422, "send the dataset as a multipart part named 'file' (curl -F file=@eyes.zip)")
    if not isinstance(kind, str):
        raise HTTPException(422, "send a form field 'kind' = synthetic or real (curl -F kind=synthetic)")
    return upload, kind


def _refuse_large(size: int, limit: int) -> None:
    if size > limit:
        raise HTTPException(
            413, f"the upload is {size} bytes; the most accepted is {limit} (SIMGAN_MAX_UPLOAD_BYTES)"
        )


@router.post(
    "",
    status_code=201,
    summary="Upload a dataset (.zip, .tar, .tar.gz, .npz, .h5)",
    description="Images at any folder depth, optionally with `annotations.jsonl` or per-image sidecar JSON. "
    "Nothing is stored when the upload is refused. The same content uploaded twice gives the same id.",
    dependencies=[WriteGuard],
    openapi_extra=_UPLOAD_BODY,
    responses=_problems(400, 413, 415, 422, 503),
)
async def upload_dataset(request: Request, store: StoreDep, settings: SettingsDep) -> DatasetPublic:
    # The body is parsed here rather than declared as File()/Form() so that a declared length over
    # the limit is refused before the upload is read at all.
    _refuse_large(int(request.headers.get("content-length") or 0), settings.max_upload_bytes + _FORM_OVERHEAD)
    async with request.form(max_files=1, max_fields=8) as form:
        upload, kind = _upload_parts(form)
        _refuse_large(upload.size or 0, settings.max_upload_bytes)
        with _as_http():
            info = await run_in_threadpool(store.create_from_upload, upload.filename or "", upload.file, kind)
    return DatasetPublic.of(info)


@router.post(
    "/simulate",
    status_code=201,
    summary="Make a dataset with a built-in simulator",
    dependencies=[WriteGuard],
    responses=_problems(413, 422, 503),
)
def simulate_dataset(body: SimulateRequest, store: StoreDep) -> DatasetPublic:
    if body.simulator not in SIMULATORS:
        raise HTTPException(
            422, f"unknown simulator '{body.simulator}'; built-in: {', '.join(sorted(SIMULATORS))}"
        )
    try:
        batch = simulate(body.simulator, body.count, body.domain, body.seed, gap=body.gap)
    except ValueError as error:
        raise HTTPException(422, str(error)) from None
    source = (
        f"simulate:{body.simulator} count={body.count} domain={body.domain} seed={body.seed} gap={body.gap}"
    )
    with _as_http():
        info = store.create_from_arrays(batch.images, batch.annotations, None, body.domain, source)
    return DatasetPublic.of(info)


@router.get("", summary="Stored datasets")
def list_datasets(store: StoreDep) -> DatasetList:
    return DatasetList(datasets=[DatasetPublic.of(info) for info in store.list()])


@router.get("/{dataset_id}", summary="One stored dataset", responses=_problems(404))
def get_dataset(dataset_id: str, store: StoreDep) -> DatasetPublic:
    with _as_http():
        return DatasetPublic.of(store.get(dataset_id))


@router.delete(
    "/{dataset_id}",
    status_code=204,
    summary="Delete a stored dataset",
    dependencies=[WriteGuard],
    responses=_problems(404, 409, 503),
)
def delete_dataset(dataset_id: str, store: StoreDep) -> Response:
    with _as_http():
        store.delete(dataset_id)
    return Response(status_code=204)

"""Datasets over HTTP: upload an archive or array file, make one with a built-in simulator,
list, inspect, delete. The store (core.datasets) does the work; these routes translate.

Reads (GET) come from disk and work without Redis. Writes (POST, DELETE) pass through
`DatasetWriteGuard` (service.api.deps), the one place where the job system says whether a write
may happen.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from core.errors import ClientError
from service.api.deps import DatasetWriteGuard, RegistryDep, SettingsDep, StoreDep
from service.api.responses import DATASET_UPLOAD_BODY, problems
from service.api.schemas import DatasetList, DatasetPublic, SimulateRequest
from simulators import SIMULATORS, simulate

router = APIRouter(prefix="/datasets", tags=["datasets"])

_FORM_OVERHEAD = 64 * 1024
"""Bytes a multipart body may carry beyond the file itself (boundaries, headers, `kind`)."""


def _refuse_large(size: int, limit: int) -> None:
    if size > limit:
        raise ClientError(
            413, f"the upload is {size} bytes; the most accepted is {limit} (SIMGAN_MAX_UPLOAD_BYTES)"
        )


@router.post(
    "",
    status_code=201,
    summary="Upload a dataset (.zip, .tar, .tar.gz, .npz, .h5)",
    description="Images at any folder depth, optionally with `annotations.jsonl` or per-image sidecar JSON. "
    "Nothing is stored when the upload is refused. The same content uploaded twice gives the same id.",
    dependencies=[DatasetWriteGuard],
    openapi_extra={"requestBody": DATASET_UPLOAD_BODY},
    responses=problems(400, 413, 415, 422, 503),
)
async def upload_dataset(request: Request, store: StoreDep, settings: SettingsDep) -> DatasetPublic:
    # The body is parsed here rather than declared as File()/Form() so that a declared length over
    # the limit is refused before the upload is read at all.
    _refuse_large(int(request.headers.get("content-length") or 0), settings.max_upload_bytes + _FORM_OVERHEAD)
    async with request.form(max_files=1, max_fields=8) as form:
        upload, kind = form.get("file"), form.get("kind")
        if not isinstance(upload, UploadFile):
            raise ClientError(
                422, "send the dataset as a multipart part named 'file' (curl -F file=@eyes.zip)"
            )
        if not isinstance(kind, str):
            raise ClientError(422, "send a form field 'kind' = synthetic or real (curl -F kind=synthetic)")
        _refuse_large(upload.size or 0, settings.max_upload_bytes)
        info = await run_in_threadpool(store.create_from_upload, upload.filename or "", upload.file, kind)
    return DatasetPublic.of(info)


@router.post(
    "/simulate",
    status_code=201,
    summary="Make a dataset with a built-in simulator",
    dependencies=[DatasetWriteGuard],
    responses=problems(413, 422, 503),
)
def simulate_dataset(body: SimulateRequest, store: StoreDep) -> DatasetPublic:
    if body.simulator not in SIMULATORS:
        raise ClientError(
            422, f"unknown simulator '{body.simulator}'; built-in: {', '.join(sorted(SIMULATORS))}"
        )
    try:
        batch = simulate(body.simulator, body.count, body.domain, body.seed, gap=body.gap)
    except ValueError as error:  # parameters this simulator cannot make
        raise ClientError(422, str(error)) from None
    info = store.create_from_arrays(batch.images, batch.annotations, None, body.domain, body.source())
    return DatasetPublic.of(info)


@router.get("", summary="Stored datasets")
def list_datasets(store: StoreDep) -> DatasetList:
    return DatasetList(datasets=[DatasetPublic.of(info) for info in store.list()])


@router.get("/{dataset_id}", summary="One stored dataset", responses=problems(404))
def get_dataset(dataset_id: str, store: StoreDep) -> DatasetPublic:
    return DatasetPublic.of(store.get(dataset_id))


@router.delete(
    "/{dataset_id}",
    status_code=204,
    summary="Delete a stored dataset",
    description="409 while a queued or running job uses the dataset, and when published models were "
    "trained on it (their cards keep its id and sha256, but the images are gone): `?force=true` deletes "
    "it anyway.",
    dependencies=[DatasetWriteGuard],
    responses=problems(404, 409, 503),
)
def delete_dataset(
    dataset_id: str,
    store: StoreDep,
    registry: RegistryDep,
    force: Annotated[bool, Query(description="Delete even when published models were trained on it")] = False,
) -> Response:
    store.get(dataset_id)  # 404 before anything else
    if not force:
        trained = [
            card.version
            for card in registry.list()
            if any(entry.get("id") == dataset_id for entry in card.datasets)
        ]
        if trained:
            raise ClientError(
                409,
                f"published model(s) {', '.join(trained)} were trained on dataset '{dataset_id}'; "
                "their cards would point at a dataset that is gone: delete it anyway with "
                f"DELETE /datasets/{dataset_id}?force=true",
            )
    store.delete(dataset_id)
    return Response(status_code=204)

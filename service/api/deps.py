"""Every dependency of the routes, as Annotated aliases (`settings: SettingsDep`); no route module
defines its own.

Everything lives on `app.state`, built by `service.main.create_app`, so one process (or
one test) can hold many apps with different settings. The getters of app.state are `async def`:
FastAPI runs a plain `def` dependency in a worker thread, a hop that costs more than the lookup.
"""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials

from core.datasets import DatasetStore
from core.errors import ClientError
from core.limits import Limits
from core.settings import Settings
from jobs import queue
from models.noise import MAX_SEED
from models.registry import Registry
from service.api.auth import bearer, check_key
from service.batching import Batcher
from service.metrics import Metrics
from service.reloader import Reloader


async def app_settings(request: Request) -> Settings:
    """The settings the app was built with (each test app has its own), not core.settings.get_settings()."""
    settings: Settings = request.app.state.settings
    return settings


async def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_reloader(request: Request) -> Reloader:
    reloader: Reloader = request.app.state.reloader
    return reloader


async def get_batcher(request: Request) -> Batcher:
    batcher: Batcher = request.app.state.batcher
    return batcher


SettingsDep = Annotated[Settings, Depends(app_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ReloaderDep = Annotated[Reloader, Depends(get_reloader)]
BatcherDep = Annotated[Batcher, Depends(get_batcher)]


def get_store(settings: SettingsDep) -> DatasetStore:
    return DatasetStore(settings.data_path, Limits.from_settings(settings))


StoreDep = Annotated[DatasetStore, Depends(get_store)]


def get_redis(settings: SettingsDep) -> redis.Redis:
    """A live Redis client; when none is configured or it is down, queue.RedisUnavailable says
    why and its handler (service.api.errors) answers 503."""
    return queue.connect(settings)


RedisDep = Annotated[redis.Redis, Depends(get_redis)]


def dataset_write_guard(request: Request, settings: SettingsDep) -> None:
    """The one place for write policy: POST /datasets, POST /datasets/simulate and DELETE
    /datasets/{id} depend on it, and it runs before the upload is read. Writes answer 503 while
    Redis is down (the job system must see every dataset a job may name), and DELETE answers 409
    while a queued or running job uses the dataset. Reads never pass through here."""
    try:
        connection = queue.connect(settings)
        if request.method == "DELETE":
            dataset_id = request.path_params.get("dataset_id", "")
            users = queue.jobs_using_dataset(connection, dataset_id)
            if users:
                raise ClientError(
                    409,
                    f"dataset '{dataset_id}' is used by queued or running job(s) {', '.join(users)}; "
                    "delete it once they end, or cancel them first (POST /train-jobs/{id}/cancel)",
                )
    except redis.RedisError:  # died between the ping and the job scan: these routes have no RedisRoute
        queue.mark_down(settings)
        raise queue.unavailable(settings.redis_url, settings.redis_recheck_seconds) from None


DatasetWriteGuard = Depends(dataset_write_guard)
"""For `dependencies=[DatasetWriteGuard]` of the dataset routes that write."""

SeedQuery = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_SEED,
        description="Seed of a stochastic model's per-image noise (default 0): the same image with the "
        "same seed gives the same output. Deterministic models ignore it.",
    ),
]


Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def require_refine(request: Request, credentials: Credentials) -> None:
    """A key of scope `refine` or `admin`, when SIMGAN_API_KEYS is set (service.api.auth)."""
    check_key(request, credentials, request.app.state.key_scopes, "refine")


def require_admin(request: Request, credentials: Credentials) -> None:
    """A key of scope `admin`, when SIMGAN_API_KEYS is set (service.api.auth)."""
    check_key(request, credentials, request.app.state.key_scopes, "admin")


RefineKey = Depends(require_refine)
"""For `dependencies=[RefineKey]`: POST /refine and reading models."""
AdminKey = Depends(require_admin)
"""For `dependencies=[AdminKey]`: everything else that is not a probe."""

"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from service.api.deps import MetricsDep, ReloaderDep
from service.api.schemas import Liveness, Problem, Readiness
from service.reloader import NotReady

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: 200 while the process runs")
async def healthz() -> Liveness:
    return Liveness()


@router.get(
    "/readyz",
    summary="Readiness: 200 once a refiner is loaded and warmed up",
    responses={503: {"model": Problem, "description": "No refiner is loaded yet"}},
)
async def readyz(reloader: ReloaderDep) -> Readiness:
    refiner = reloader.current
    if refiner is None:
        raise NotReady(f"not ready: {reloader.waiting_for}")  # 503 with Retry-After, as /refine says it
    parity = refiner.parity
    return Readiness(
        model=refiner.version,
        provider=refiner.provider,
        precision=refiner.precision,
        parity_max_grey_levels=None if parity is None else parity.max_grey_levels,
        parity_mean_grey_levels=None if parity is None else parity.mean_grey_levels,
        skipped=reloader.skipped,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(metrics: MetricsDep) -> Response:
    # In a thread: gauge callbacks may ask Redis, which must not stall the event loop.
    return Response(await run_in_threadpool(metrics.render), media_type=metrics.content_type)

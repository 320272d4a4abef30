"""The FastAPI app: `create_app(settings)` builds one, with its own registry, model, batcher and metrics.

Every router is included by name below, in the order the OpenAPI document lists them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from core import __version__
from core.images import allow_pixels
from core.settings import Settings, get_settings
from jobs import counters, queue
from models.registry import Registry
from service.api import openapi
from service.api.auth import AUTH_RESPONSES, SameOriginWrites
from service.api.deps import AdminKey, RefineKey
from service.api.docs import install_docs
from service.api.errors import install_error_handlers
from service.api.routes import datasets, health, refine, refine_jobs, train_jobs
from service.api.routes import models as model_routes  # not the models/ package
from service.api.server_paths import ServerPathsHidden
from service.api.timeouts import BodyTimeout
from service.batching import Batcher
from service.metrics import Metrics, MetricsMiddleware
from service.reloader import Reloader

log = logging.getLogger(__name__)

DESCRIPTION = """Sim-to-real image refinement (S+U learning, SimGAN).

Try **POST /refine**: choose a PNG for `image`, pick `image/png` as the response media type,
and execute: the refined image is shown below.
"""


TAGS = [
    {"name": "health", "description": "Liveness, readiness (the model loaded) and Prometheus metrics."},
    {
        "name": "refine",
        "description": "Refine images now: multipart uploads, base64 JSON, or the image itself as the body. "
        "Annotations come back exactly as sent. Refine jobs do a whole stored dataset in the background.",
    },
    {
        "name": "models",
        "description": "The published refiners: model cards (JSON, and Markdown for people), ONNX files, "
        "and which one the service serves.",
    },
    {
        "name": "datasets",
        "description": "Stored datasets: upload an archive or array file, or make one with a built-in "
        "simulator (the examples here make the datasets the other examples use).",
    },
    {
        "name": "training",
        "description": "Train jobs: train a refiner on a synthetic and a real dataset, watch its phase and "
        "progress, read its verdict and pictures; the model is published when it ends.",
    },
]
"""The OpenAPI document's tags, in the order Swagger UI shows them."""


def register_queue_metrics(metrics: Metrics, settings: Settings) -> None:
    """simgan_queue_jobs{queue, state}: jobs waiting and running, read from Redis at each scrape
    (absent while Redis is down)."""

    def read() -> dict[tuple[str, ...], float]:
        depths = queue.queue_depths(queue.connect(settings))
        return {(name, state): float(n) for name, counts in depths.items() for state, n in counts.items()}

    metrics.add_gauge_callback(
        "simgan_queue_jobs", "Jobs queued and running, by queue.", ["queue", "state"], read
    )
    # What the workers counted in Redis (they are other processes): jobs ended, images of bulk jobs.
    metrics.add_counter_source(
        metrics.jobs,
        lambda: {key: float(n) for key, n in counters.job_counts(queue.connect(settings)).items()},
    )
    metrics.add_counter_source(
        metrics.images_refined,
        lambda: {
            (model, "job"): float(n) for model, n in counters.image_counts(queue.connect(settings)).items()
        },
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    registry = Registry(settings.models_path)
    metrics = Metrics()
    reloader = Reloader(registry, settings, metrics)
    allow_pixels(settings.max_image_pixels)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher = Batcher(
            metrics,
            max_size=settings.batch_max_size,
            max_delay_s=settings.batch_max_delay_ms / 1000,
            queue_size=settings.batch_queue_size,
            call_pixels=settings.max_call_pixels,
        )
        app.state.batcher = batcher
        if settings.seed_bundled:
            seeded = await asyncio.to_thread(registry.seed_bundled)
            if seeded is not None:
                log.info("published the bundled default refiner as %s", seeded.version)
        await asyncio.to_thread(reloader.check)  # the first model, before the first request
        reloader.start()
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            await asyncio.to_thread(reloader.stop)

    app = FastAPI(
        title="simgan",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=TAGS,
        docs_url=None,  # install_docs serves them from installed files, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.reloader = reloader
    install_error_handlers(app)
    openapi.install(app)
    install_docs(app)
    app.state.key_scopes = settings.key_scopes
    # Keys (when SIMGAN_API_KEYS is set): probes open, refine and model reads need `refine`, the rest
    # `admin`; activating a model asks for `admin` on its own route (service.api.routes.models).
    app.include_router(health.router)
    app.include_router(refine.router, dependencies=[RefineKey], responses=AUTH_RESPONSES)
    app.include_router(model_routes.router, dependencies=[RefineKey], responses=AUTH_RESPONSES)
    app.include_router(datasets.router, dependencies=[AdminKey], responses=AUTH_RESPONSES)
    app.include_router(train_jobs.router, dependencies=[AdminKey], responses=AUTH_RESPONSES)
    app.include_router(refine_jobs.router, dependencies=[AdminKey], responses=AUTH_RESPONSES)
    register_queue_metrics(metrics, settings)
    app.add_middleware(SameOriginWrites)
    app.add_middleware(BodyTimeout, seconds=settings.body_timeout_seconds)
    app.add_middleware(ServerPathsHidden, settings=settings)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app

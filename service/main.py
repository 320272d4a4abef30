"""The FastAPI app: `create_app(settings)` builds one, with its own registry, model, batcher and metrics.

Routers are the modules of service/api/routes/ listed in ROUTERS that exist; each exposes
`router`, and may expose `register_metrics(metrics: Metrics, settings: Settings) -> None`
to add its own series (queue depths) to this app's metrics.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from core import __version__
from core.images import allow_pixels
from core.settings import Settings, get_settings
from models.registry import Registry
from service.api.errors import install_error_handlers
from service.batching import Batcher
from service.metrics import Metrics, MetricsMiddleware
from service.reloader import Reloader

log = logging.getLogger(__name__)

ROUTERS = ("health", "refine", "models", "datasets", "train_jobs", "refine_jobs")
"""Modules of service.api.routes included in this order; a missing one is skipped."""

DESCRIPTION = """Sim-to-real image refinement (S+U learning, SimGAN).

Try **POST /refine**: choose a PNG for `image`, pick `image/png` as the response media type,
and execute: the refined image is shown below.
"""


def _include_routers(app: FastAPI, metrics: Metrics, settings: Settings) -> None:
    for name in ROUTERS:
        try:
            module = importlib.import_module(f"service.api.routes.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"service.api.routes.{name}":
                continue  # that resource is not built yet
            raise
        app.include_router(module.router)
        register = getattr(module, "register_metrics", None)
        if register is not None:
            register(metrics, settings)


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

    app = FastAPI(title="simgan", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.reloader = reloader
    install_error_handlers(app)
    _include_routers(app, metrics, settings)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app

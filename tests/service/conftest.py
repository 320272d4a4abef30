"""Fixtures for the service: real tiny ONNX refiners made by the trainer, and running apps.

The refiners are built once per session (torch export takes seconds) and copied into each
test's own registry. Apps run with their lifespan (reloader thread, batcher) and are
driven through httpx's ASGI transport, so tests can send many requests concurrently.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace

import httpx
import pytest
from fastapi import FastAPI

from core.settings import Settings
from models import ModelCard, Registry
from service.main import create_app
from tests.factories import publish_tiny_refiner


@dataclass(frozen=True)
class TinyModels:
    """Session-wide published refiners to copy from: two grayscale (seeds 0, 1) and one RGB."""

    registry: Registry
    gray: ModelCard
    gray_other: ModelCard
    rgb: ModelCard

    def publish(self, card: ModelCard, into: Registry) -> ModelCard:
        """Publish a copy of `card`'s model into `into` (it gets that registry's next version)."""
        return into.publish(self.registry.onnx_path(card.version), replace(card, version="", created_at=""))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    registry = Registry(tmp_path_factory.mktemp("tiny-models"))
    return TinyModels(
        registry,
        gray=publish_tiny_refiner(registry, channels=1, seed=0),
        gray_other=publish_tiny_refiner(registry, channels=1, seed=1),
        rgb=publish_tiny_refiner(registry, channels=3, seed=0),
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def registry(make_settings: Callable[..., Settings]) -> Registry:
    return Registry(make_settings().models_path)


@pytest.fixture
def gray_model(tiny_models: TinyModels, registry: Registry) -> ModelCard:
    """The grayscale refiner published as v1 of this test's registry."""
    return tiny_models.publish(tiny_models.gray, registry)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Start `app` (lifespan included) and yield a client talking to it in-process."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://simgan.test") as client,
    ):
        yield client


Serve = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def serve() -> Serve:
    """`async with serve(create_app(settings)) as client:` runs an app for the block."""
    return running


@pytest.fixture
async def client(
    make_settings: Callable[..., Settings], gray_model: ModelCard
) -> AsyncIterator[httpx.AsyncClient]:
    """A running app with default limits, serving the grayscale refiner v1."""
    async with running(create_app(make_settings())) as client:
        yield client

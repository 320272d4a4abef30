"""GET /models, /models/{version}, /models/{version}/onnx and POST /models/{version}/activate."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from core.settings import Settings
from models import ModelCard, Registry
from models.providers import engines
from service.main import create_app

if TYPE_CHECKING:
    from tests.service.conftest import Serve, TinyModels

pytestmark = pytest.mark.anyio


@pytest.fixture
async def two_models(
    tiny_models: TinyModels,
    registry: Registry,
    gray_model: ModelCard,
    make_settings: Callable[..., Settings],
    serve: Serve,
):  # type: ignore[no-untyped-def]
    """A running app whose registry holds v1 (gray) and v2 (gray, another seed); it serves v2."""
    tiny_models.publish(tiny_models.gray_other, registry)
    async with serve(create_app(make_settings())) as client:
        yield client


async def test_list_models_returns_every_card_and_what_is_served(two_models: httpx.AsyncClient) -> None:
    response = await two_models.get("/models")

    assert response.status_code == 200
    body = response.json()
    assert [card["version"] for card in body["models"]] == ["v1", "v2"]
    assert (body["active"], body["pinned"], body["serving"]) == ("v2", None, "v2")
    assert body["models"][0]["io"]["channels"] == 1


@pytest.mark.parametrize(("name", "version"), [("v1", "v1"), ("latest", "v2"), ("active", "v2")])
async def test_get_model_card_by_version_or_alias(
    two_models: httpx.AsyncClient, name: str, version: str
) -> None:
    response = await two_models.get(f"/models/{name}")

    assert response.status_code == 200
    assert response.json()["version"] == version


async def test_card_md_is_the_card_for_people_with_links_on_this_server(
    two_models: httpx.AsyncClient,
) -> None:
    response = await two_models.get("/models/active/card.md")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.text.startswith("---\nlicense: other")
    assert "# simgan refiner v2" in response.text
    assert "## Out-of-scope use" in response.text and "## Lineage" in response.text
    assert (await two_models.get("/models/v9/card.md")).status_code == 404


@pytest.mark.parametrize("name", ["v9", "nonsense"])
async def test_unknown_model_version_is_404_saying_what_exists(
    two_models: httpx.AsyncClient, name: str
) -> None:
    card = await two_models.get(f"/models/{name}")
    onnx = await two_models.get(f"/models/{name}/onnx")
    activate = await two_models.post(f"/models/{name}/activate")

    assert (card.status_code, onnx.status_code, activate.status_code) == (404, 404, 404)
    assert name in card.json()["detail"]


async def test_download_onnx_returns_the_published_file(
    two_models: httpx.AsyncClient, registry: Registry
) -> None:
    response = await two_models.get("/models/v1/onnx")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert hashlib.sha256(response.content).hexdigest() == registry.get("v1").onnx_sha256


async def test_activate_pins_and_swaps_then_latest_follows_the_newest_again(
    two_models: httpx.AsyncClient,
) -> None:
    pinned = await two_models.post("/models/v1/activate")
    ready_pinned = await two_models.get("/readyz")
    unpinned = await two_models.post("/models/latest/activate")
    ready_latest = await two_models.get("/readyz")

    assert pinned.status_code == 200
    assert pinned.json() == {"pinned": "v1", "serving": "v1", "provider": engines("auto")[0].provider}
    assert ready_pinned.json()["model"] == "v1"
    assert unpinned.status_code == 200
    assert (unpinned.json()["pinned"], unpinned.json()["serving"]) == (None, "v2")
    assert ready_latest.json()["model"] == "v2"


async def test_activate_refuses_a_model_that_cannot_serve(
    two_models: httpx.AsyncClient, registry: Registry, gray_model: ModelCard, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not onnx")
    # Pin v2 first so the poller does not try the broken v3 on its own.
    await two_models.post("/models/v2/activate")
    registry.publish(garbage, replace(gray_model, version="", onnx_sha256=""))

    response = await two_models.post("/models/v3/activate")
    ready = await two_models.get("/readyz")

    assert response.status_code == 422
    assert "model v3 cannot serve" in response.json()["detail"]
    assert registry.pinned() == "v2"
    assert ready.json()["model"] == "v2"

"""API keys: with SIMGAN_API_KEYS set, no key is a 401 and a key without the scope a 403, each saying
what to send; probes stay open; Swagger UI gets an Authorize button. Without keys the API stays open
and `simgan serve` binds only loopback. Cross-site requests that change state are refused."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from core.settings import Settings, parse_api_keys
from models import ModelCard
from service.main import create_app
from tests.factories import image_file, random_images

if TYPE_CHECKING:
    from tests.service.conftest import Serve

pytestmark = pytest.mark.anyio

REFINE_KEY = "refine-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
KEYS = f"refine:{REFINE_KEY}, admin:{ADMIN_KEY}"
PNG = image_file(random_images(1, 8, 8)[0])


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def refine(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> httpx.Response:
    return await client.post("/refine", files=[("image", ("eye.png", PNG, "image/png"))], headers=headers)


async def test_with_keys_a_request_without_one_is_a_401_saying_what_to_send(
    make_settings: Callable[..., Settings], gray_model: ModelCard, serve: Serve
) -> None:
    async with serve(create_app(make_settings(api_keys=KEYS))) as client:
        for response in [await refine(client), await client.get("/models"), await client.get("/datasets")]:
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert "Authorization: Bearer KEY" in response.json()["detail"]
        unknown = await refine(client, bearer("x" * 20))
        assert unknown.status_code == 401
        assert "not one of this service's keys" in unknown.json()["detail"]
        assert "x" * 20 not in unknown.json()["detail"]


async def test_a_refine_key_refines_and_reads_models_and_nothing_else(
    make_settings: Callable[..., Settings], gray_model: ModelCard, serve: Serve
) -> None:
    async with serve(create_app(make_settings(api_keys=KEYS))) as client:
        assert (await refine(client, bearer(REFINE_KEY))).status_code == 200
        assert (await client.get("/models", headers=bearer(REFINE_KEY))).status_code == 200
        assert (await client.get("/models/v1/onnx", headers=bearer(REFINE_KEY))).status_code == 200
        for response in [
            await client.post("/models/v1/activate", headers=bearer(REFINE_KEY)),
            await client.get("/datasets", headers=bearer(REFINE_KEY)),
            await client.get("/train-jobs", headers=bearer(REFINE_KEY)),
        ]:
            assert response.status_code == 403
            assert "needs a key with scope 'admin'" in response.json()["detail"]
            assert "this key has scope 'refine'" in response.json()["detail"]


async def test_an_admin_key_does_everything_and_probes_need_no_key(
    make_settings: Callable[..., Settings], gray_model: ModelCard, serve: Serve
) -> None:
    async with serve(create_app(make_settings(api_keys=KEYS))) as client:
        assert (await refine(client, bearer(ADMIN_KEY))).status_code == 200
        assert (await client.post("/models/v1/activate", headers=bearer(ADMIN_KEY))).status_code == 200
        assert (await client.get("/datasets", headers=bearer(ADMIN_KEY))).status_code == 200
        for probe in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
            assert (await client.get(probe)).status_code == 200, probe


async def test_swagger_ui_has_an_authorize_button_for_bearer_keys(
    make_settings: Callable[..., Settings], gray_model: ModelCard, serve: Serve
) -> None:
    async with serve(create_app(make_settings(api_keys=KEYS))) as client:
        document = (await client.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["APIKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["APIKey"]["description"],
    }
    operations = document["paths"]
    assert operations["/refine"]["post"]["security"] == [{"APIKey": []}]
    assert operations["/train-jobs"]["post"]["security"] == [{"APIKey": []}]
    assert "security" not in operations["/healthz"]["get"]
    assert set(operations["/train-jobs"]["post"]["responses"]) >= {"401", "403"}


async def test_without_keys_every_route_is_open(client: httpx.AsyncClient) -> None:
    assert (await refine(client)).status_code == 200
    assert (await client.get("/models")).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example", "Content-Type": "text/plain"},
        {"Origin": "null", "Content-Type": "text/plain"},
        {"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:3000"},
    ],
)
async def test_a_cross_site_request_that_changes_state_is_refused(
    make_settings: Callable[..., Settings], gray_model: ModelCard, serve: Serve, headers: dict[str, str]
) -> None:
    async with serve(create_app(make_settings())) as client:
        response = await client.post("/models/v1/activate", content=b"x", headers=headers)
        assert response.status_code == 403
        assert "cross-site POST refused" in response.json()["detail"]
        assert (await client.get("/models")).json()["pinned"] is None  # nothing changed
        # Reading stays allowed: a cross-site GET cannot change anything.
        assert (await client.get("/models", headers=headers)).status_code == 200


async def test_same_origin_and_non_browser_requests_that_change_state_are_allowed(
    make_settings: Callable[..., Settings], gray_model: ModelCard, serve: Serve
) -> None:
    async with serve(create_app(make_settings())) as client:
        same = {"Origin": "http://simgan.test", "Sec-Fetch-Site": "same-origin"}
        assert (await client.post("/models/v1/activate", headers=same)).status_code == 200
        assert (await client.post("/models/latest/activate")).status_code == 200


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ("reader:" + "k" * 20, "scope one of refine, admin"),
        ("refine", "not `scope:key`"),
        ("refine:short", "at least 16 characters"),
        (f"refine:{'k' * 20},admin:{'k' * 20}", "repeats a key"),
    ],
)
def test_malformed_api_keys_are_refused_at_start_without_quoting_a_key(keys: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as raised:
        parse_api_keys(keys)
    assert "k" * 16 not in str(raised.value)


def test_parse_api_keys_maps_each_key_to_its_scope() -> None:
    assert parse_api_keys(KEYS) == {REFINE_KEY: "refine", ADMIN_KEY: "admin"}
    assert parse_api_keys("") == {}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com"])
def test_serve_without_keys_refuses_to_bind_anything_but_loopback(tmp_path: Path, host: str) -> None:
    env = {"SIMGAN_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "SIMGAN_API_KEYS": ""}
    result = subprocess.run(
        [sys.executable, "-m", "simgan.cli", "serve", "--host", host, "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert result.returncode == 2
    assert f"refusing to bind {host}" in result.stderr and "SIMGAN_API_KEYS" in result.stderr
    assert not (tmp_path / "redis").exists()  # nothing was started

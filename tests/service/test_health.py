"""Liveness, readiness, metrics and the interactive docs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

from core.settings import Settings
from models.providers import engines
from models.session import PARITY_GREY_LEVELS
from service.main import create_app

if TYPE_CHECKING:
    from tests.service.conftest import Serve

pytestmark = pytest.mark.anyio


async def test_readiness_is_503_before_any_model_exists_while_liveness_is_200(
    make_settings: Callable[..., Settings], serve: Serve
) -> None:
    async with serve(create_app(make_settings())) as client:
        live = await client.get("/healthz")
        ready = await client.get("/readyz")

    assert live.status_code == 200
    assert ready.status_code == 503
    assert ready.headers["retry-after"]
    assert "no model is published yet" in ready.json()["detail"]


async def test_readiness_names_the_loaded_version_provider_precision_and_parity(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    expected = engines("auto")[0]  # the first engine offered serves the tiny model wherever it works
    assert (body["status"], body["model"]) == ("ready", "v1")
    assert (body["provider"], body["precision"]) == (expected.provider, expected.precision)
    assert 0 <= body["parity_max_grey_levels"] <= PARITY_GREY_LEVELS
    assert 0 <= body["parity_mean_grey_levels"] <= body["parity_max_grey_levels"]
    assert body["skipped"] == []


async def test_metrics_count_requests_by_route_and_status_and_name_the_active_model(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/models/v1")
    await client.get("/models/v7")

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'simgan_http_requests_total{method="GET",route="/models/{version}",status="200"} 1.0' in text
    assert 'simgan_http_requests_total{method="GET",route="/models/{version}",status="404"} 1.0' in text
    engine = engines("auto")[0]
    labels = f'precision="{engine.precision}",provider="{engine.provider}"'
    assert f'simgan_active_model{{{labels},version="v1"}} 1.0' in text
    assert f'simgan_active_model_parity_grey_levels{{{labels},stat="max",version="v1"}}' in text
    assert "simgan_http_request_duration_seconds_bucket" in text


async def test_metrics_have_no_created_series_and_label_the_docs_routes_by_template(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/docs")
    await client.get("/openapi.json")
    await client.get("/no/such/page")

    text = (await client.get("/metrics")).text

    assert "_created" not in text
    assert 'simgan_http_requests_total{method="GET",route="/docs",status="200"} 1.0' in text
    assert 'simgan_http_requests_total{method="GET",route="/openapi.json",status="200"} 1.0' in text
    assert 'simgan_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text


async def test_metrics_hook_exports_gauges_read_at_scrape_time(
    make_settings: Callable[..., Settings], serve: Serve
) -> None:
    app = create_app(make_settings())
    depth = {"value": 3.0}
    app.state.metrics.add_gauge_callback(
        "simgan_test_depth", "A depth.", ["queue"], lambda: {("train",): depth["value"]}
    )
    async with serve(app) as client:
        first = (await client.get("/metrics")).text
        depth["value"] = 5.0
        second = (await client.get("/metrics")).text

    assert 'simgan_test_depth{queue="train"} 3.0' in first
    assert 'simgan_test_depth{queue="train"} 5.0' in second


async def test_docs_offer_a_png_upload_and_a_png_answer(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    spec = (await client.get("/openapi.json")).json()

    assert docs.status_code == 200
    assert "/docs-static/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text
    assert "default-src 'self'" in docs.headers["content-security-policy"]
    redoc = await client.get("/redoc")
    assert "/docs-static/redoc.standalone.js" in redoc.text and "fonts.googleapis" not in redoc.text
    assert (await client.get("/docs-static/swagger-ui.css")).status_code == 200
    refine = spec["paths"]["/refine"]["post"]
    form = refine["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["image"]["type"] == "array"
    assert form["properties"]["image"]["items"]["format"] == "binary"
    assert "application/json" in refine["requestBody"]["content"]
    answers = refine["responses"]["200"]["content"]
    assert set(answers) == {"application/json", "image/png"}
    for status in ("400", "404", "413", "415", "422", "503"):
        assert status in refine["responses"]


async def test_every_documented_error_shows_a_message_of_its_own_kind_and_tags_are_described(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()

    assert all(tag.get("description") for tag in spec["tags"])
    refine = spec["paths"]["/refine"]["post"]["responses"]
    examples = {
        code: answer["content"]["application/json"]["example"]["detail"]
        for code, answer in refine.items()
        if code != "200" and "example" in answer.get("content", {}).get("application/json", {})
    }
    assert set(examples) >= {"404", "406", "413", "415", "503"}
    assert len(set(examples.values())) == len(examples)  # not one pixel-limit message for all

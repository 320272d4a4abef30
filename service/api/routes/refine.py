"""POST /refine: refine images now, as multipart uploads, base64 in JSON, or one raw image file.

The wire format (reading, decoding, Accept, the answers) is service.api.refine_request;
this route puts the steps in their order and runs the CPU-bound ones in threads, except for
small images, whose decoding and encoding cost less than the hop to a thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from models.noise import DEFAULT_SEED
from service.api.deps import BatcherDep, ReloaderDep, SeedQuery, SettingsDep
from service.api.refine_request import (
    decode_images,
    is_small,
    png_response,
    read_refine_request,
    refine_response,
    wants_png,
)
from service.api.responses import REFINE_PARAMETERS, REFINE_REQUEST_BODY, REFINE_RESPONSES
from service.api.schemas import RefineResponse

router = APIRouter(tags=["refine"])

T = TypeVar("T")


@router.post(
    "/refine",
    summary="Refine images now",
    description="Multipart: `image` file parts, optional `annotations` (JSON) and `model`. JSON: "
    '`{"images": [{"data": "<base64>", "annotations": {...}}], "model": "v3"}`. Raw (the lean form): '
    "the body is one PNG, JPEG or .npy file with its own Content-Type, `?model=` and `?annotations=` "
    "(or an `X-Annotations` header) optional. Each refined image keeps its input's size, channel count "
    "and 8-bit depth; annotations come back exactly as sent (in `X-Annotations` with a PNG answer). "
    "A stochastic model (its card says `stochastic`) draws per-image noise from `seed` and the image: "
    "the same image with the same seed always gives the same output.",
    response_model=RefineResponse,
    responses=REFINE_RESPONSES,
    openapi_extra={"requestBody": REFINE_REQUEST_BODY, "parameters": REFINE_PARAMETERS},
)
async def refine(
    request: Request,
    settings: SettingsDep,
    reloader: ReloaderDep,
    batcher: BatcherDep,
    seed: SeedQuery = DEFAULT_SEED,
) -> Response:
    refine_input = await read_refine_request(request, settings)
    refiner = await reloader.get(refine_input.model)  # decoding checks the images against it
    png = wants_png(request.headers.get("accept", ""), len(refine_input.files))
    small = is_small(refine_input)

    async def work(function: Callable[..., T], *args: Any) -> T:
        return function(*args) if small else await run_in_threadpool(function, *args)

    images = await work(decode_images, refine_input, refiner, settings.max_image_pixels)
    refined = await batcher.refine(refiner, images, seed)
    headers = {"X-Model-Version": refiner.version, "X-Refine-Seed": str(seed)}
    if png:
        return await work(png_response, refined[0], refine_input.annotations[0], headers)
    return await work(refine_response, refiner, refined, refine_input.annotations, seed, headers)

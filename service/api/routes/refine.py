"""POST /refine: refine images now, as multipart uploads or base64 in JSON.

The wire format (reading, decoding, Accept, the JSON answer) is service.api.refine_request;
this route puts the steps in their order and runs the CPU-bound ones in threads.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from core.images import encode_png
from models.noise import DEFAULT_SEED
from service.api.deps import BatcherDep, ReloaderDep, SeedQuery, SettingsDep
from service.api.refine_request import PNG, decode_images, read_refine_request, refine_response, wants_png
from service.api.responses import REFINE_REQUEST_BODY, REFINE_RESPONSES
from service.api.schemas import RefineResponse

router = APIRouter(tags=["refine"])


@router.post(
    "/refine",
    summary="Refine images now",
    description="Multipart: `image` file parts, optional `annotations` (JSON) and `model`. JSON: "
    '`{"images": [{"data": "<base64>", "annotations": {...}}], "model": "v3"}`. Each refined image '
    "keeps its input's size, channel count and 8-bit depth; annotations come back exactly as sent. "
    "A stochastic model (its card says `stochastic`) draws per-image noise from `seed` and the image: "
    "the same image with the same seed always gives the same output.",
    response_model=RefineResponse,
    responses=REFINE_RESPONSES,
    openapi_extra={"requestBody": REFINE_REQUEST_BODY},
)
async def refine(
    request: Request,
    response: Response,
    settings: SettingsDep,
    reloader: ReloaderDep,
    batcher: BatcherDep,
    seed: SeedQuery = DEFAULT_SEED,
) -> RefineResponse | Response:
    refine_input = await read_refine_request(request, settings)
    refiner = await reloader.get(refine_input.model)  # decoding checks the images against it
    png = wants_png(request.headers.get("accept", ""), len(refine_input.files))
    images = await run_in_threadpool(decode_images, refine_input, refiner, settings.max_image_pixels)
    refined = await batcher.refine(refiner, images, seed)
    headers = {"X-Model-Version": refiner.version, "X-Refine-Seed": str(seed)}
    if png:  # a Response goes out as it is: the `response` headers below are not merged into it
        body = await run_in_threadpool(encode_png, refined[0])
        return Response(body, media_type=PNG, headers=headers)
    response.headers.update(headers)
    return await run_in_threadpool(refine_response, refiner, refined, refine_input.annotations, seed)

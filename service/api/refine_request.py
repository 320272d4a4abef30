"""The wire format of POST /refine: reading the body (multipart, JSON or one raw image file),
decoding its images, choosing PNG or JSON from Accept, and building the JSON answer.

The body is read by hand rather than through FastAPI's File/Form parameters so that one
route takes both content types and every limit is ours: Content-Length is checked before
reading and the byte count while reading; the multipart parser gets our part limits.
Reading and decoding are two steps because a request's model is named in its body: the route
resolves the model between them, so a bad model name is answered before any image is decoded.

The raw form is the lean one: the body is the image file itself (Content-Type image/png,
image/jpeg, application/x-npy or application/octet-stream), the model and annotations ride in
the query string (`?model=v3&annotations=...`) or the `X-Annotations` header, and nothing is
parsed but the image. Small images (PNG headers say how small before anything is decoded) are
decoded and encoded on the event loop: for them a hop to a worker thread and back costs more
than the work.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import Request, Response
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from core.annotations import loads_json, parse_annotations
from core.errors import ClientError
from core.images import decode_base64, decode_image, encode_base64, encode_png
from core.settings import Settings
from models.session import RefinerSession
from service.api.schemas import RefineRequest

PNG = "image/png"
_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?", re.ASCII)
"""RFC 9110's qvalue; `str.isdigit` would take '²', which float() then refuses."""
MULTIPART_FIELDS = ("image", "annotations", "model")
RAW_TYPES = (PNG, "image/jpeg", "application/x-npy", "application/octet-stream")
"""Content-Types of the raw form: the body is one image file (its bytes say which kind)."""
RAW_QUERY = ("model", "annotations", "seed")
ANNOTATIONS_HEADER = "x-annotations"
INLINE_PIXELS = 128 * 128
"""Images up to this many pixels (all of a request's together) are decoded and encoded on the
event loop, without a thread hop: well under a millisecond of work."""


@dataclass
class RefineInput:
    """A read /refine request: raw image files (not decoded yet), one label and annotation each."""

    files: list[bytes]
    labels: list[str]  # "image 2 ('eye.png')" or "images[1]", for error messages
    annotations: list[Any]
    model: str | None


# ---------------------------------------------------------------- reading
async def read_refine_request(request: Request, settings: Settings) -> RefineInput:
    """The body of a POST /refine by its Content-Type, within the settings' limits; ClientError if not."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _read_multipart(request, settings)
    if content_type == "application/json" or content_type.endswith("+json"):
        return await _read_json(request, settings)
    if content_type in RAW_TYPES:
        return await _read_raw(request, settings)
    raise ClientError(
        415,
        f"Content-Type '{content_type}' is not accepted; send multipart/form-data, application/json, "
        f"or one image file as the body ({', '.join(RAW_TYPES)})",
    )


async def _limited_stream(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    def too_large(size: str) -> ClientError:
        return ClientError(
            413,
            f"the request body is {size} bytes; the limit is {limit} bytes per request "
            "(SIMGAN_MAX_REQUEST_BYTES): send fewer or smaller images per request",
        )

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(declared)
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large(f"more than {limit}")
        yield chunk


def _too_many(count: int | str, limit: int) -> ClientError:
    return ClientError(
        413,
        f"the request has {count} images; the limit is {limit} images per request "
        "(SIMGAN_MAX_IMAGES_PER_REQUEST): split it into several requests",
    )


async def _read_multipart(request: Request, settings: Settings) -> RefineInput:
    limit = settings.max_images_per_request
    parser = MultiPartParser(
        request.headers,
        _limited_stream(request, settings.max_request_bytes),
        max_files=limit,
        max_fields=len(MULTIPART_FIELDS) * 4,
        max_part_size=settings.max_request_bytes,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise _too_many(f"more than {limit}", limit) from exc
        raise ClientError(400, f"the multipart body is malformed: {exc.message}") from exc
    try:
        return await _input_from_form(form)
    finally:
        await form.close()


async def _input_from_form(form: FormData) -> RefineInput:
    unknown = sorted({name for name in form if name not in MULTIPART_FIELDS})
    if unknown:
        raise ClientError(422, f"unknown form field(s) {unknown}; send 'image' parts, 'annotations', 'model'")
    files, labels = [], []
    for number, part in enumerate(form.getlist("image"), start=1):
        if not isinstance(part, UploadFile):
            raise ClientError(
                400, f"image {number} was sent as a text field; send it as a file (-F image=@eye.png)"
            )
        labels.append(f"image {number} ('{part.filename}')")
        files.append(await part.read())
    if not files:
        raise ClientError(422, "no image: send one or more file parts named 'image'")
    texts = {
        name: [v for v in form.getlist(name) if isinstance(v, str) and v.strip()]
        for name in MULTIPART_FIELDS[1:]
    }
    if any(len(values) > 1 for values in texts.values()):
        raise ClientError(
            422, "send 'annotations' and 'model' at most once each (annotations as one JSON list)"
        )
    # One annotation per image, in order: an object for one image, a list for several.
    annotations = parse_annotations(texts["annotations"][0] if texts["annotations"] else None, len(files))
    return RefineInput(files, labels, annotations, texts["model"][0] if texts["model"] else None)


async def _read_json(request: Request, settings: Settings) -> RefineInput:
    body = b"".join([chunk async for chunk in _limited_stream(request, settings.max_request_bytes)])
    try:
        parsed = RefineRequest.model_validate(loads_json(body))
    except ValueError as exc:  # json.JSONDecodeError and pydantic.ValidationError are ValueErrors
        raise ClientError(422, f"the JSON body is not a refine request: {_explain(exc)}") from exc
    if len(parsed.images) > settings.max_images_per_request:
        raise _too_many(len(parsed.images), settings.max_images_per_request)
    if not parsed.images:
        raise ClientError(422, "no image: send at least one entry in 'images'")
    labels = [f"images[{i}]" for i in range(len(parsed.images))]
    files = [decode_base64(image.data, label) for image, label in zip(parsed.images, labels, strict=True)]
    return RefineInput(files, labels, [image.annotations for image in parsed.images], parsed.model or None)


async def _read_raw(request: Request, settings: Settings) -> RefineInput:
    unknown = sorted(set(request.query_params) - set(RAW_QUERY))
    if unknown:
        raise ClientError(422, f"unknown query parameter(s) {unknown}; send 'model' and 'annotations'")
    body = b"".join([chunk async for chunk in _limited_stream(request, settings.max_request_bytes)])
    if not body:
        raise ClientError(400, "the request body is empty; send the bytes of one PNG, JPEG or .npy file")
    query, header = request.query_params.get("annotations"), request.headers.get(ANNOTATIONS_HEADER)
    if query is not None and header is not None:
        raise ClientError(422, "send annotations once: in the query string or in X-Annotations, not both")
    text = query if query is not None else header
    annotation = None
    if text is not None:
        # The one image's own annotation, whatever its JSON type (a list is not split across images).
        try:
            annotation = loads_json(text)
        except ValueError as exc:
            raise ClientError(422, f"annotations is not valid JSON ({exc}); send one JSON value") from exc
    model = request.query_params.get("model") or None
    return RefineInput([body], ["the request body"], [annotation], model)


def _explain(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
    return str(exc)


# ---------------------------------------------------------------- decoding
def is_small(refine_input: RefineInput) -> bool:
    """True when every file is a PNG whose header (read, not decoded) says the request holds at most
    INLINE_PIXELS pixels in all: cheap enough to decode on the event loop."""
    pixels = 0
    for data in refine_input.files:
        if len(data) < 24 or not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
            return False
        pixels += int.from_bytes(data[16:20], "big") * int.from_bytes(data[20:24], "big")
    return pixels <= INLINE_PIXELS


def decode_images(refine_input: RefineInput, refiner: RefinerSession, max_pixels: int) -> list[np.ndarray]:
    """Decode every file to uint8 (H, W, C) and check its channels against the model (CPU-bound:
    call it in a thread)."""
    images = [
        decode_image(data, label, max_pixels)
        for data, label in zip(refine_input.files, refine_input.labels, strict=True)
    ]
    for image, label in zip(images, refine_input.labels, strict=True):
        if image.shape[2] != refiner.channels:
            kind = {1: "grayscale (1 channel)", 3: "RGB (3 channels)"}
            raise ClientError(
                422,
                f"{label} is {kind[image.shape[2]]} but model {refiner.version} takes "
                f"{kind[refiner.channels]} images: convert it, or name a model trained on "
                f"{kind[image.shape[2]]} images",
            )
    return images


# ---------------------------------------------------------------- answering
def wants_png(accept: str, count: int) -> bool:
    """True when the client prefers image/png over JSON; refused (406) for more than one image."""
    ranked = []
    for position, item in enumerate(accept.split(",")):
        media, *params = (piece.strip() for piece in item.split(";"))
        weights = [p for p in params if p[:2].lower() == "q="]
        if weights and not _QVALUE.fullmatch(weights[0][2:]):
            return False  # a malformed Accept header is treated as absent (RFC 9110 12.5.1): JSON
        ranked.append((-float(weights[0][2:]) if weights else -1.0, position, media.lower()))
    offered = [
        media for _, _, media in sorted(ranked) if media in (PNG, "image/*", "application/json", "*/*")
    ]
    if not offered or offered[0] not in (PNG, "image/*"):
        return False
    if count == 1:
        return True
    if any(media in ("application/json", "*/*") for media in offered):
        return False
    raise ClientError(
        406,
        f"Accept: {PNG} answers with one image and this request has {count}; "
        "send one image or accept application/json",
    )


def refine_response(
    refiner: RefinerSession,
    images: list[np.ndarray],
    annotations: list[Any],
    seed: int,
    headers: dict[str, str],
) -> Response:
    """The JSON answer (RefineResponse): each refined image as base64 PNG with its annotations
    (PNG encoding is CPU-bound: call it in a thread unless the images are small).

    Written straight to bytes rather than through the response model: FastAPI would validate
    the model it was just given and encode it again."""
    answer = {
        "model": refiner.version,
        "stochastic": refiner.stochastic,
        "seed": seed,
        "images": [
            {
                "data": encode_base64(encode_png(image)),
                "width": image.shape[1],
                "height": image.shape[0],
                "channels": image.shape[2],
                "annotations": annotation,
            }
            for image, annotation in zip(images, annotations, strict=True)
        ],
    }
    return Response(dumps_json(answer), media_type="application/json", headers=headers)


def dumps_json(value: Any) -> bytes:
    """UTF-8 JSON, key order kept: orjson (several times faster than json on these answers), or json
    for what orjson refuses (integers past 64 bits, which annotations may hold)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def png_response(image: np.ndarray, annotation: Any, headers: dict[str, str]) -> Response:
    """The PNG answer to one image; its annotation (when one was sent) in X-Annotations as ASCII JSON."""
    if annotation is not None:
        headers["X-Annotations"] = json.dumps(annotation, separators=(",", ":"))
    return Response(encode_png(image), media_type=PNG, headers=headers)

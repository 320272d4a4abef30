"""OpenAPI fragments the routes declare: error answers, and the request bodies that are read by
hand (so FastAPI cannot describe them from a parameter)."""

from __future__ import annotations

from typing import Any

from core.datasets import KINDS
from core.limits import ACCEPTED
from service.api.refine_request import RAW_TYPES
from service.api.schemas import Problem, RefineRequest, RefineResponse

Responses = dict[int | str, dict[str, Any]]


EXAMPLE_DETAILS: dict[int, str] = {
    400: "image 1 ('eye.png') could not be decoded: cannot identify image file; send a PNG, JPEG or .npy",
    404: "model version 'v9' does not exist (published: v1, v2)",
    406: "Accept: image/png answers one image, and the request has 3; ask for application/json",
    409: "dataset 'f0ffa60eb9a1d527' is used by queued or running job(s) 5c1e...; delete it once they end",
    413: "image 1 ('eye.png') is 4000x3000 = 12000000 pixels; the limit is 1048576 (SIMGAN_MAX_IMAGE_PIXELS)",
    415: "image 1 ('eye.png') has an alpha channel; send grayscale or RGB without alpha",
    422: "unknown config key(s): 'stpes' (did you mean steps?); known keys: steps, batch_size, ...",
    503: "no model is loaded yet; retry after the Retry-After seconds",
}
"""One typical `detail` per status, so each documented error shows its own kind of message."""


def _example(code: int) -> dict[str, Any]:
    detail = EXAMPLE_DETAILS.get(code)
    return {"content": {"application/json": {"example": {"detail": detail}}}} if detail else {}


def problems(*codes: int) -> Responses:
    """Error answers with the Problem body, FastAPI's default description and a typical detail."""
    return {code: {"model": Problem, **_example(code)} for code in codes}


# ----------------------------------------------------------------- jobs, models
_NO_JOB = "no train job '5c1e...' (it never existed, or it ended long enough ago to expire)"
_NO_REDIS = (
    "Redis at redis://127.0.0.1:6390/0 is unreachable; jobs and dataset uploads are unavailable until "
    "it is back (start Redis or fix REDIS_URL). /refine keeps working."
)
JOB_RESPONSES: Responses = {
    404: {
        "model": Problem,
        "description": "No such job",
        "content": {"application/json": {"example": {"detail": _NO_JOB}}},
    },
    503: {
        "model": Problem,
        "description": "Redis is unreachable",
        "content": {"application/json": {"example": {"detail": _NO_REDIS}}},
    },
}
"""What every route of the job routers can answer."""

MODEL_NOT_FOUND: Responses = {404: {"model": Problem, "description": "No such model version"}}

# ------------------------------------------------------------------ POST /refine
REFINE_PROBLEMS: Responses = {
    code: {"model": Problem, "description": text, **_example(code)}
    for code, text in {
        400: "An image or the multipart body could not be decoded",
        404: "The named model version does not exist",
        406: "Accept: image/png with more than one image",
        413: "Over a limit: request bytes, pixels per image or images per request",
        415: "Another Content-Type; not PNG, JPEG or .npy; or alpha, 16-bit or another unsupported "
        "pixel format",
        422: "Wrong channel count for the model, bad annotations JSON or a malformed request",
        503: "No model loaded yet, or the refine queue is full (see Retry-After)",
    }.items()
}
REFINE_RESPONSES: Responses = {
    200: {
        "model": RefineResponse,
        "description": "Refined images as JSON; with `Accept: image/png` and one image, the PNG itself "
        "(model version in the `X-Model-Version` header, the annotations sent, if any, in "
        "`X-Annotations`).",
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    },
    **REFINE_PROBLEMS,
}


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its $defs substituted in, so it can sit inside the OpenAPI document."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: walk(value) for key, value in node.items()}
        return [walk(item) for item in node] if isinstance(node, list) else node

    result: dict[str, Any] = walk(schema)
    return result


REFINE_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {
                        "type": "array",
                        # Both spellings of "a file": OpenAPI 3.1's (as FastAPI writes it) and 3.0's.
                        "items": {
                            "type": "string",
                            "format": "binary",
                            "contentMediaType": "application/octet-stream",
                        },
                        "description": "One or more PNG, JPEG or .npy files (8-bit grayscale or RGB).",
                    },
                    # Examples that work when executed as shown: Swagger UI sends a field's example,
                    # and without one it would send the text "string" (not JSON, not a version).
                    "annotations": {
                        "type": "string",
                        "description": "JSON: an object for one image, or a list with one entry per image. "
                        "Returned exactly as sent.",
                        "example": '{"id": "eye-0001"}',
                    },
                    "model": {
                        "type": "string",
                        "description": "Model version (`v3`, `latest`, `active`); default the active one.",
                        "example": "active",
                    },
                },
            }
        },
        "application/json": {"schema": _inline(RefineRequest.model_json_schema())},
        **{
            media: {
                "schema": {"type": "string", "format": "binary", "contentMediaType": media},
                "description": "Raw form: the body is one image file (PNG, JPEG or .npy, 8-bit "
                "grayscale or RGB); model and annotations in the query string or X-Annotations.",
            }
            for media in RAW_TYPES
        },
    },
}

REFINE_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "model",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "Raw form only: model version; default the active one.",
    },
    {
        "name": "annotations",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "Raw form only: the image's annotations as JSON (URL-encoded), returned exactly "
        "as sent.",
    },
    {
        "name": "X-Annotations",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "Raw form only, instead of the query parameter: the image's annotations as "
        "ASCII JSON.",
    },
]
"""What the raw form of POST /refine reads besides its body (the other forms carry these in it)."""

# -------------------------------------------------------------- POST /datasets
DATASET_UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "kind"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": f"One of {ACCEPTED}."},
                    "kind": {"type": "string", "enum": list(KINDS)},
                },
            }
        }
    },
}

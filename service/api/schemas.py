"""Request and response bodies of the refine, model and health endpoints, named by role."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

# A 2x2 gray PNG, small enough to read in the docs.
_EXAMPLE_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAAAAABX3VL4AAAADklEQVR4nGNsYGBiYAAAApIAhPd8o1gAAAAASUVORK5CYII="
)
_EXAMPLE_ANNOTATIONS: Any = {"gaze": {"pitch": -4.2, "yaw": 11.0}, "keypoints": {"iris_center": [27.5, 17.0]}}


class Problem(BaseModel):
    """Every error: `detail` says what went wrong and what to change."""

    detail: str = Field(examples=["image 1 ('eye.png') is 4000x3000 = 12000000 pixels; the limit is ..."])


class RefineImageIn(BaseModel):
    data: str = Field(description="Base64 of a PNG, JPEG or .npy file (a data: URL works too).")
    annotations: Any = Field(None, description="Any JSON value; returned exactly as sent.")


class RefineRequest(BaseModel):
    """The JSON form of POST /refine."""

    images: list[RefineImageIn] = Field(description="Images to refine; sizes may differ.")
    model: str | None = Field(None, description="Model version (`v3`, `latest`); default the active one.")

    model_config = {
        "json_schema_extra": {
            "examples": [{"images": [{"data": _EXAMPLE_PNG, "annotations": _EXAMPLE_ANNOTATIONS}]}]
        }
    }


class RefinedImage(BaseModel):
    data: str = Field(description="Base64 PNG of the refined image (input's size, channels, 8 bits).")
    width: int
    height: int
    channels: int = Field(description="1 (grayscale) or 3 (RGB), as the input.")
    annotations: Any = Field(None, description="Exactly what was sent with this image.")


class RefineResponse(BaseModel):
    model: str = Field(description="Version of the refiner that made these images.")
    images: list[RefinedImage]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "model": "v3",
                    "images": [
                        {
                            "data": _EXAMPLE_PNG,
                            "width": 2,
                            "height": 2,
                            "channels": 1,
                            "annotations": _EXAMPLE_ANNOTATIONS,
                        }
                    ],
                }
            ]
        }
    }


class Liveness(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    status: str = "ready"
    model: str = Field(description="Version of the refiner serving /refine.")
    provider: str = Field(description="onnxruntime execution provider in use, e.g. CPUExecutionProvider.")


class ModelList(BaseModel):
    active: str | None = Field(description="Version the registry names active (pinned, else the newest).")
    pinned: str | None = Field(description="Version pinned by POST /models/{version}/activate, if any.")
    serving: str | None = Field(description="Version this process has loaded and serves.")
    models: list[dict[str, Any]] = Field(description="Model cards, oldest first.")


class Activation(BaseModel):
    pinned: str | None = Field(description="The pinned version; null when following the newest.")
    serving: str | None = Field(description="Version now serving /refine.")
    provider: str | None = None


# ------------------------------------------------- OpenAPI of POST /refine
REFINE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": text}
    for code, text in {
        400: "An image or the multipart body could not be decoded",
        404: "The named model version does not exist",
        406: "Accept: image/png with more than one image",
        413: "Over a limit: request bytes, pixels per image or images per request",
        415: "Not PNG, JPEG or .npy; or alpha, 16-bit or another unsupported pixel format",
        422: "Wrong channel count for the model, bad annotations JSON or a malformed request",
        503: "No model loaded yet, or the refine queue is full (see Retry-After)",
    }.items()
}
REFINE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": RefineResponse,
        "description": "Refined images as JSON; with `Accept: image/png` and one image, the PNG itself "
        "(model version in the `X-Model-Version` header).",
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


REFINE_REQUEST_BODY = {
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
                    "annotations": {
                        "type": "string",
                        "description": "JSON: an object for one image, or a list with one entry per image. "
                        "Returned exactly as sent.",
                    },
                    "model": {"type": "string", "description": "Model version; default the active one."},
                },
            }
        },
        "application/json": {"schema": _inline(RefineRequest.model_json_schema())},
    },
}

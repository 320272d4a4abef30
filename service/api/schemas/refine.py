"""Bodies of POST /refine: the JSON request and the JSON answer.

The multipart form of the request has no pydantic model (it is read by
service.api.refine_request); its OpenAPI description is in service.api.responses.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

# A 2x2 gray PNG, small enough to read in the docs.
_EXAMPLE_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAAAAABX3VL4AAAADklEQVR4nGNsYGBiYAAAApIAhPd8o1gAAAAASUVORK5CYII="
)
_EXAMPLE_ANNOTATIONS: Any = {"gaze": {"pitch": -4.2, "yaw": 11.0}, "keypoints": {"iris_center": [27.5, 17.0]}}


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
    stochastic: bool = Field(
        False, description="Whether that model draws per-image noise (then `seed` decides the noise)."
    )
    seed: int = Field(0, description="The request's seed: the same image and seed give the same output.")
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

"""Bodies of the /datasets endpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.datasets import DatasetInfo

MAX_SIMULATE_COUNT = 100_000
"""Most images one POST /datasets/simulate makes."""

_EXAMPLE: dict[str, Any] = {
    "id": "3f2a9c1b7d4e5f60",
    "kind": "synthetic",
    "count": 1000,
    "height": 35,
    "width": 55,
    "channels": 1,
    "created_at": "2025-01-31T12:00:00+00:00",
    "sha256": "9b1c...e0",
    "source": "simulate:eyes count=1000 domain=synthetic seed=0 gap=1.0",
    "has_annotations": True,
}


class DatasetPublic(BaseModel):
    """A stored dataset; its images share one size and channel count."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    id: str = Field(description="Content address: the same images, annotations and kind give the same id.")
    kind: Literal["synthetic", "real"]
    count: int = Field(description="Number of images.")
    height: int
    width: int
    channels: int = Field(description="1 (grayscale) or 3 (RGB).")
    created_at: str
    sha256: str = Field(description="sha256 of the stored images.npy.")
    source: str = Field(description="Where it came from: `upload:<file name>` or `simulate:<parameters>`.")
    has_annotations: bool

    @classmethod
    def of(cls, info: DatasetInfo) -> DatasetPublic:
        return cls.model_validate(info.to_dict())


class DatasetList(BaseModel):
    datasets: list[DatasetPublic] = Field(description="Oldest first.")


EXAMPLE_DATASETS: tuple[tuple[dict[str, Any], str], ...] = (
    ({"simulator": "eyes", "count": 200, "domain": "synthetic", "seed": 0}, "f0ffa60eb9a1d527"),
    ({"simulator": "eyes", "count": 200, "domain": "real", "seed": 1}, "407664626f1236f6"),
    ({"simulator": "eyes", "count": 200, "domain": "real", "seed": 2}, "1d7f813d8bfb0962"),
)
"""The simulate examples and the ids they make (datasets are content-addressed, so always the same;
a test holds them to it; other package versions can round one pixel differently and so change an id,
as a fresh install of 2026-12-03 did for the second): the other operations' examples name these ids,
so in Swagger UI running the simulate examples first makes every later example work as shown."""
EXAMPLE_SYNTHETIC, EXAMPLE_REAL, EXAMPLE_LABELED = (dataset_id for _, dataset_id in EXAMPLE_DATASETS)


# The body of POST /datasets/simulate. Not DatasetSimulate: that would rename the OpenAPI schema,
# and a docstring here would become its description.
class SimulateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [request for request, _ in EXAMPLE_DATASETS]},
    )

    simulator: str = Field("eyes", description="A built-in simulator: `eyes` (35x55 grayscale eye images).")
    count: int = Field(ge=1, le=MAX_SIMULATE_COUNT, description="Number of images to make.")
    domain: Literal["synthetic", "real"] = Field(
        "synthetic",
        description="`synthetic`: the simulator's clean images, with annotations. `real`: images "
        "with a realistic domain gap, standing in for real data. Also the dataset's kind.",
    )
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="The same seed and parameters make the same dataset."
    )
    gap: float = Field(1.0, ge=0.0, description="Strength of the real domain's gap (1.0 = the default).")

    def source(self) -> str:
        """What the stored dataset's `source` says about how it was made."""
        parameters = f"count={self.count} domain={self.domain} seed={self.seed} gap={self.gap}"
        return f"simulate:{self.simulator} {parameters}"

"""Bodies of GET /healthz and GET /readyz."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Liveness(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    status: str = "ready"
    model: str = Field(description="Version of the refiner serving /refine.")
    provider: str = Field(
        description="onnxruntime execution provider in use: CUDAExecutionProvider, OpenVINOExecutionProvider "
        "or CPUExecutionProvider."
    )
    precision: str = Field(description="Inference precision of that provider: fp32 or bf16.")
    parity_max_grey_levels: int | None = Field(
        description="Largest difference, in grey levels, between this provider's output and onnxruntime's "
        "CPU provider in fp32 on the probe batch refined at load (0 when the CPU provider serves)."
    )
    parity_mean_grey_levels: float | None = Field(description="Mean difference on that probe batch.")
    skipped: list[str] = Field(
        default_factory=list,
        description="Published versions this service could not load, each with why; none of them is served "
        "or picked as `active` (GET /models marks them `unloadable`).",
    )

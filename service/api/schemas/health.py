"""Bodies of GET /healthz and GET /readyz."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Liveness(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    status: str = "ready"
    model: str = Field(description="Version of the refiner serving /refine.")
    provider: str = Field(description="onnxruntime execution provider in use, e.g. CPUExecutionProvider.")

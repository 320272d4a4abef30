"""Bodies of the /models endpoints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ModelList(BaseModel):
    active: str | None = Field(description="Version the registry names active (pinned, else the newest).")
    pinned: str | None = Field(description="Version pinned by POST /models/{version}/activate, if any.")
    serving: str | None = Field(description="Version this process has loaded and serves.")
    models: list[dict[str, Any]] = Field(
        description="Model cards, oldest first; `unloadable` says why one cannot serve (null if it can)."
    )


class Activation(BaseModel):
    pinned: str | None = Field(description="The pinned version; null when following the newest.")
    serving: str | None = Field(description="Version now serving /refine.")
    provider: str | None = None

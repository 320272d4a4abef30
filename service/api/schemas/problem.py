"""The body of every error answer."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Problem(BaseModel):
    """Every error: `detail` says what went wrong and what to change."""

    detail: str = Field(examples=["image 1 ('eye.png') is 4000x3000 = 12000000 pixels; the limit is ..."])

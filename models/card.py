"""The model card: everything a consumer needs to feed an ONNX refiner, and where it came from.

A card is JSON beside its ONNX file. The service needs nothing but the card and the file:
`io` says what the graph takes and returns; the value mapping to the network's [-1, 1]
range is inside the graph, so callers hand over plain uint8 pixels.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

CARD_SCHEMA = 1
"""Bumped when a field changes meaning; readers refuse cards from a newer schema."""


@dataclass(frozen=True)
class IOSpec:
    """How to feed the graph: names, dtype, layout and value range of its input and output."""

    channels: int
    input_name: str = "image"
    output_name: str = "refined"
    dtype: str = "uint8"
    layout: str = "NHWC"
    value_range: tuple[int, int] = (0, 255)
    # What the graph does inside, for people reading the card (the caller does none of it).
    value_mapping: str = (
        "x / 127.5 - 1 -> refiner (output in [-1, 1]) -> round((y + 1) * 127.5) clipped to [0, 255]"
    )
    dynamic_axes: tuple[str, ...] = ("N", "H", "W")
    # A stochastic refiner's second input: (N, H, W, noise_channels) float32 standard normal noise,
    # drawn by the caller from a seed and the image (models/noise.py). 0 = deterministic, one input.
    noise_channels: int = 0
    noise_name: str = "noise"


@dataclass(frozen=True)
class ModelCard:
    """A published refiner's description. `version` is assigned by the registry at publish time."""

    io: IOSpec
    onnx_sha256: str
    onnx_opset: int
    parity_max_abs_error: float
    version: str = ""
    created_at: str = ""
    # The version that was active when this one was published, i.e. the one it was trained to replace
    # (training starts from scratch, not from its weights), and the train job that made it.
    parent: str | None = None
    job_id: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    steps_trained: int = 0
    final_losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)
    # The train job's verdict: {"verdict": "improved" | "no measurable change" | "worse", "basis",
    # "numbers", "why", "try"}; empty for cards written before verdicts existed.
    verdict: dict[str, Any] = field(default_factory=dict)
    # Whether the service may switch to this model by itself when it is the newest such one (train
    # config `activate`: `if_improved` sets it only for an `improved` verdict). A pin (ACTIVE) wins.
    auto_activate: bool = True
    producer: dict[str, str] = field(default_factory=dict)
    notes: str = ""
    schema: int = CARD_SCHEMA

    @property
    def channels(self) -> int:
        return self.io.channels

    @property
    def stochastic(self) -> bool:
        """Whether the graph takes per-image noise beside the image (same image + same seed = same output)."""
        return self.io.noise_channels > 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["io"]["value_range"] = list(self.io.value_range)
        data["io"]["dynamic_axes"] = list(self.io.dynamic_axes)
        data["stochastic"] = self.stochastic  # derived from io, written for people reading the card
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        if data.get("schema", CARD_SCHEMA) > CARD_SCHEMA:
            raise ValueError(f"model card schema {data['schema']} is newer than this build understands")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        io = dict(values.pop("io"))
        io["value_range"] = tuple(io.get("value_range", (0, 255)))
        io["dynamic_axes"] = tuple(io.get("dynamic_axes", ("N", "H", "W")))
        io_known = {f.name for f in fields(IOSpec)}
        return cls(io=IOSpec(**{k: v for k, v in io.items() if k in io_known}), **values)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        return cls.from_dict(json.loads(text))

"""Self-describing training checkpoints, written atomically.

A checkpoint holds everything needed to continue a run exactly (networks, optimisers, history
buffer, step, config, every RNG the run draws from) and everything export needs (config,
channels, datasets, losses). It is loaded with `weights_only=True`: plain tensors and Python
values only, so opening a checkpoint never runs code from it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.layout import CHECKPOINT_NAME

FORMAT = "simgan-checkpoint"
FORMAT_VERSION = 1
"""Bumped when the layout changes; older builds refuse newer checkpoints."""


class CheckpointError(RuntimeError):
    """A file that is not a checkpoint this build can read."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write `state` to `path` via a temp file, fsync and rename: a reader sees the old or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def load_checkpoint(path: Path | str, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint (training writes workdir/{CHECKPOINT_NAME})")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable simgan checkpoint ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a simgan checkpoint")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {state['format_version']} is newer than this build reads "
            f"({FORMAT_VERSION}); upgrade simgan"
        )
    return state


def capture_rng(generator: torch.Generator, device: torch.device | None = None) -> dict[str, Any]:
    """Every random state a run may draw from, as plain tensors, lists and numbers.

    The CUDA state only for a run on CUDA, and only its own GPU's: asking a CPU run for CUDA states
    would create a CUDA context (hundreds of MB on every visible GPU) for nothing.
    """
    numpy_state = np.random.get_state(legacy=False)
    cuda = [torch.cuda.get_rng_state(device)] if device is not None and device.type == "cuda" else []
    return {
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": [int(k) for k in numpy_state["state"]["key"]],
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python": random.getstate(),
        "generator": generator.get_state(),
    }


def restore_rng(
    state: dict[str, Any], generator: torch.Generator, device: torch.device | None = None
) -> None:
    """Put back what capture_rng took, on whatever machine resumes.

    A checkpoint holds no CUDA state (a CPU run), one (the run's GPU), or one per GPU (older builds
    saved every visible GPU's). A run resuming on CUDA takes the first, which is the GPU the run
    trained on, whatever the number of GPUs here; a run resuming on the CPU takes none and never
    touches CUDA.
    """
    torch.set_rng_state(state["torch"])
    if state["cuda"] and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"][0], device)
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": numpy_state["bit_generator"],
            "state": {"key": np.array(numpy_state["key"], dtype=np.uint32), "pos": numpy_state["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    generator.set_state(state["generator"])

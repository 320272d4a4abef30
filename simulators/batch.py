"""What a simulator returns, and how it is written to a dataset file (.npz, or a .zip of PNGs)."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class ImageBatch:
    """Simulated images with one annotation object per image."""

    images: np.ndarray  # (N, H, W, C) uint8
    annotations: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def gaze(self) -> np.ndarray:
        """(N, 2) float32 [pitch, yaw] in degrees, for annotations that carry a gaze."""
        return np.array(
            [[a["gaze"]["pitch"], a["gaze"]["yaw"]] for a in self.annotations], dtype=np.float32
        ).reshape(-1, 2)


def save_npz(path: str | Path, images: np.ndarray, annotations: list[dict[str, Any]] | None) -> Path:
    """Write `images` and `annotations` (a JSON string of the list) to `path`, atomically.

    The file loads without pickle: `np.load(path)["images"]`, `json.loads(str(f["annotations"]))`.
    """
    path = Path(path)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"images must be uint8 (N, H, W) or (N, H, W, C), got {images.dtype} {images.shape}")
    arrays: dict[str, np.ndarray] = {"images": images}
    if annotations is not None:
        if len(annotations) != len(images):
            raise ValueError(f"{len(annotations)} annotations for {len(images)} images: give one per image")
        arrays["annotations"] = np.array(json.dumps(annotations))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed, so a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_zip(path: str | Path, images: np.ndarray, annotations: list[dict[str, Any]] | None) -> Path:
    """Write `images` as PNGs (images/00000.png ...) with an annotations.jsonl, the archive layout
    POST /datasets takes (`{"file": "images/00000.png", ...annotation}` per line), atomically."""
    from core.images import encode_png

    path = Path(path)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
    names = [f"images/{i:05d}.png" for i in range(len(images))]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
            for name, pixels in zip(names, images, strict=True):
                archive.writestr(name, encode_png(pixels))  # PNGs are compressed already
            if annotations is not None:
                lines = [
                    json.dumps({"file": name, **note}) for name, note in zip(names, annotations, strict=True)
                ]
                archive.writestr("annotations.jsonl", "\n".join(lines) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

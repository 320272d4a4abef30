"""Image datasets for training: read whole into memory, then onto the training device.

Training samples batches by index from a uint8 tensor that lives on the device, so data
loading is never the bottleneck (a 100k-image eye dataset is 190 MB of uint8).
`load_images` needs only numpy (and h5py for .h5); torch is imported where tensors are made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.datasets import read_dataset_dir
from core.layout import IMAGES_NAME

if TYPE_CHECKING:
    import torch

FORMATS = ".npz, .h5 / .hdf5, or a stored dataset directory (with images.npy)"


class DataError(ValueError):
    """A dataset file that cannot be trained on; the message says what to fix."""


@dataclass
class ImageSet:
    images: np.ndarray  # (N, H, W, C) uint8, C in {1, 3}
    annotations: list[Any] | None = None
    names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.images)


def as_nhwc(images: np.ndarray, source: str = "images") -> np.ndarray:
    """(N, H, W) or (N, H, W, C) uint8 -> (N, H, W, C) uint8; DataError naming `source` otherwise."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        if (
            np.issubdtype(images.dtype, np.integer)
            and images.size
            and 0 <= images.min() <= images.max() <= 255
        ):
            images = images.astype(np.uint8)
        else:
            raise DataError(f"{source}: pixels must be uint8 (0..255), got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(
            f"{source}: expected images shaped (N, H, W) or (N, H, W, C) with C = 1 or 3, got {images.shape}"
        )
    if len(images) == 0:
        raise DataError(f"{source}: the dataset holds no images")
    return np.ascontiguousarray(images)


def load_images(path: Path | str) -> ImageSet:
    """Read .npz (`images`, optional `annotations` JSON), .h5 (`image`/`images`) or a stored dataset dir."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_dir():
        return _load_store_dir(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path)
    if suffix in (".h5", ".hdf5"):
        return _load_h5(path)
    raise DataError(f"{path}: unsupported dataset format; use {FORMATS}")


def _load_npz(path: Path) -> ImageSet:
    with np.load(path, allow_pickle=False) as data:
        if "images" not in data:
            raise DataError(
                f"{path}: an .npz dataset needs an `images` array (found: {', '.join(data.files)})"
            )
        images = as_nhwc(data["images"], str(path))
        annotations = _parse_annotations(str(data["annotations"]), path) if "annotations" in data else None
        names = [str(n) for n in data["names"]] if "names" in data else None
    _check_aligned(path, len(images), annotations, names)
    return ImageSet(images, annotations, names)


def _load_h5(path: Path) -> ImageSet:
    import h5py

    with h5py.File(path, "r") as f:
        key = next((k for k in ("images", "image") if k in f), None)
        if key is None:
            raise DataError(f"{path}: an .h5 dataset needs a dataset named `image` or `images`")
        images = as_nhwc(f[key][()], f"{path}:{key}")
    return ImageSet(images)


def _load_store_dir(path: Path) -> ImageSet:
    if not (path / IMAGES_NAME).is_file():
        raise DataError(f"{path}: a dataset directory needs {IMAGES_NAME}; use {FORMATS}")
    images, annotations, names = read_dataset_dir(path)
    images = as_nhwc(images, str(path / IMAGES_NAME))
    _check_aligned(path, len(images), annotations, names or None)
    return ImageSet(images, annotations, names or None)


def _parse_annotations(text: str, path: Path) -> list[Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: `annotations` must be a JSON string of a list: {exc}") from None
    if not isinstance(value, list):
        raise DataError(f"{path}: `annotations` must be a JSON list, one entry per image")
    return value


def _check_aligned(path: Path, count: int, *lists: list[Any] | None) -> None:
    for items in lists:
        if items is not None and len(items) != count:
            raise DataError(f"{path}: {count} images but {len(items)} annotation entries")


class DeviceImages:
    """A whole dataset as one uint8 tensor on the training device; batches are gathered by index."""

    def __init__(self, images: np.ndarray, device: torch.device) -> None:
        import torch

        self.pixels = torch.from_numpy(as_nhwc(images)).to(device)  # (N, H, W, C) uint8

    def __len__(self) -> int:
        return len(self.pixels)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image as the networks see it."""
        _, height, width, channels = self.pixels.shape
        return (channels, height, width)

    def batch(self, size: int, generator: torch.Generator) -> torch.Tensor:
        """(size, C, H, W) float in [-1, 1], drawn uniformly with replacement."""
        import torch

        picks = torch.randint(0, len(self.pixels), (size,), generator=generator).to(self.pixels.device)
        return self.pixels[picks].permute(0, 3, 1, 2).float() / 127.5 - 1.0

"""What one upload may cost, and the checks that hold it to that before anything is decoded or stored.

Bytes are counted while an archive is read (ByteBudget), never trusted from its headers; shapes
and pixel counts are checked from headers before any pixel is decoded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from core.errors import ClientError

if TYPE_CHECKING:
    from core.settings import Settings

ARCHIVE_SUFFIXES = {".zip": "zip", ".tar": "tar", ".tar.gz": "tar", ".tgz": "tar"}


ARRAY_SUFFIXES = {".npz": "npz", ".h5": "h5", ".hdf5": "h5"}


ACCEPTED = ", ".join([*ARCHIVE_SUFFIXES, *ARRAY_SUFFIXES])
"""Upload file types, for error messages."""


CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one upload may cost. Defaults match the Settings defaults."""

    max_upload_bytes: int = 1 << 30
    max_members: int = 200_000
    max_unpacked_bytes: int = 4 << 30
    max_ratio: int = 100
    ratio_free_bytes: int = 64 << 20
    """An archive may always unpack to this much, whatever its compression ratio."""
    max_image_pixels: int = 1 << 20
    max_dataset_pixels: int = 2_000_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_upload_bytes=settings.max_upload_bytes,
            max_members=settings.max_archive_members,
            max_unpacked_bytes=settings.max_archive_bytes,
            max_ratio=settings.max_archive_ratio,
            max_image_pixels=settings.max_image_pixels,
            max_dataset_pixels=settings.max_dataset_pixels,
        )


def upload_format(filename: str) -> str:
    """'zip', 'tar', 'npz' or 'h5' from the file name; 415 for anything else."""
    lower = filename.lower()
    for suffix, fmt in {**ARCHIVE_SUFFIXES, **ARRAY_SUFFIXES}.items():
        if lower.endswith(suffix):
            return fmt
    raise ClientError(
        415, f"'{filename}' is not a dataset file type this service reads; send one of {ACCEPTED}"
    )


def upload_size(fileobj: IO[bytes], limits: Limits) -> int:
    fileobj.seek(0, io.SEEK_END)
    size = fileobj.tell()
    fileobj.seek(0)
    if size > limits.max_upload_bytes:
        raise ClientError(
            413,
            f"the upload is {size} bytes; the most accepted is {limits.max_upload_bytes} "
            "(SIMGAN_MAX_UPLOAD_BYTES); split the dataset or raise the limit",
        )
    if size == 0:
        raise ClientError(400, "the uploaded file is empty")
    return size


class ByteBudget:
    """Bytes an archive may still unpack: counted while reading, not trusted from headers."""

    def __init__(self, limits: Limits, upload_bytes: int, what: str = "the archive unpacks to") -> None:
        ratio_cap = max(limits.max_ratio * upload_bytes, limits.ratio_free_bytes)
        self.cap = min(limits.max_unpacked_bytes, ratio_cap)
        self.limits = limits
        self.upload_bytes = upload_bytes
        self.what = what
        self.used = 0

    def _refuse(self, total: int) -> ClientError:
        if total > self.limits.max_unpacked_bytes:
            return ClientError(
                413,
                f"{self.what} more than {self.limits.max_unpacked_bytes} bytes "
                "(SIMGAN_MAX_ARCHIVE_BYTES); split the dataset or raise the limit",
            )
        return ClientError(
            413,
            f"{self.what} more than {self.limits.max_ratio} times the upload's size of "
            f"{self.upload_bytes} bytes (SIMGAN_MAX_ARCHIVE_RATIO); this looks like a decompression bomb",
        )

    def declare(self, total: int) -> None:
        """Refuse up front when the headers already say too much."""
        if total > self.cap:
            raise self._refuse(total)

    def spend(self, count: int) -> None:
        self.used += count
        if self.used > self.cap:
            raise self._refuse(self.used)

    def read(self, stream: IO[bytes], size: int | None = None) -> bytes:
        """Read `stream` to its end (or `size` bytes), never more than the budget allows."""
        chunks: list[bytes] = []
        wanted = self.cap - self.used + 1 if size is None else size
        while wanted > 0 and (chunk := stream.read(min(CHUNK, wanted))):
            self.spend(len(chunk))
            chunks.append(chunk)
            wanted -= len(chunk)
        return b"".join(chunks)


def check_stack_shape(shape: tuple[int, ...], what: str, limits: Limits) -> tuple[int, int, int, int]:
    """(N, H, W, C) for an image stack shaped (N, H, W) or (N, H, W, C); refuses others and oversize."""
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3)):
        raise ClientError(
            422, f"{what} has shape {shape}; expected (N, H, W) or (N, H, W, C) with C = 1 or 3"
        )
    n, h, w = shape[:3]
    c = shape[3] if len(shape) == 4 else 1
    if n == 0 or h == 0 or w == 0:
        raise ClientError(422, f"{what} has shape {shape}: it holds no images")
    check_image_size(w, h, f"each image in {what}", limits)
    check_dataset_pixels(n * h * w * c, limits)
    return n, h, w, c


def check_image_size(width: int, height: int, what: str, limits: Limits) -> None:
    if width * height > limits.max_image_pixels:
        raise ClientError(
            413,
            f"{what} is {width}x{height} pixels; the most per image is {limits.max_image_pixels} "
            "(SIMGAN_MAX_IMAGE_PIXELS); resize it",
        )


def check_dataset_pixels(total: int, limits: Limits) -> None:
    if total > limits.max_dataset_pixels:
        raise ClientError(
            413,
            f"the dataset holds more than {limits.max_dataset_pixels} pixel values (images x height x "
            "width x channels; SIMGAN_MAX_DATASET_PIXELS); split it or raise the limit",
        )

"""The dataset store: content-addressed, immutable datasets under SIMGAN_DATA_DIR.

Layout under the root (file names in core.layout):

    <id>/images.npy, <id>/annotations.jsonl, <id>/meta.json (written last)
    .staging-*/               creations in progress (ignored by readers)
    .trash-*/                 deletions in progress (ignored by readers)

A dataset's id is the first 16 hex digits of sha256 over its kind and the sha256 of its
images.npy and annotations.jsonl, so the same content always gets the same id and creating
it twice keeps the first. A dataset is built in a staging directory and renamed into place,
and deleted by renaming it away first: readers see a whole dataset or none.

Uploads are read by core.archives (limits, unsafe archives); this module turns their
members into images and annotations and refuses what does not make one dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from core.archives import clean_name
from core.arrays import read_h5, read_npz, require_uint8
from core.errors import ClientError, some
from core.files import rename_synced, write_synced
from core.ingest import read_archive
from core.layout import ANNOTATIONS_NAME, IMAGES_NAME, META_NAME
from core.limits import Limits, check_stack_shape, upload_format

__all__ = ["KINDS", "DatasetInfo", "DatasetStore", "Limits", "read_dataset_dir"]

KINDS = ("synthetic", "real")

_ID = re.compile(r"[0-9a-f]{16}")

Annotations = list[dict[str, Any]]
Names = list[str]


@dataclass(frozen=True)
class DatasetInfo:
    """meta.json of a stored dataset."""

    id: str
    kind: str
    count: int
    height: int
    width: int
    channels: int
    created_at: str
    sha256: str
    """sha256 of images.npy."""
    source: str
    has_annotations: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetInfo:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def read_dataset_dir(path: Path, mmap: bool = False) -> tuple[np.ndarray, Annotations | None, Names]:
    """The one reader of a stored dataset's directory: (images, annotations or None, names).

    Annotations are None when the dataset was stored without any (meta.json says so; a directory
    without meta.json, copied by hand, has them when any line carries more than its file name).
    """
    images = np.load(path / IMAGES_NAME, mmap_mode="r" if mmap else None, allow_pickle=False)
    names: Names = []
    annotations: Annotations = []
    if (path / ANNOTATIONS_NAME).is_file():
        for line in (path / ANNOTATIONS_NAME).read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                names.append(str(record.pop("file", "")))
                annotations.append(record)
    if (path / META_NAME).is_file():
        has_annotations = bool(json.loads((path / META_NAME).read_text())["has_annotations"])
    else:
        has_annotations = any(annotations)
    return images, annotations if has_annotations else None, names


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ClientError(422, f"kind must be 'synthetic' or 'real', not '{kind}'")


class DatasetStore:
    def __init__(self, root: Path | str, limits: Limits | None = None) -> None:
        self.root = Path(root)
        self.limits = limits or Limits()

    # ----------------------------------------------------------------- reading
    def path(self, dataset_id: str) -> Path:
        """The dataset's directory; 404 when there is none."""
        path = self.root / dataset_id
        if not _ID.fullmatch(dataset_id) or not (path / META_NAME).is_file():
            raise ClientError(
                404, f"dataset '{dataset_id}' does not exist; GET /datasets lists the stored ones"
            )
        return path

    def get(self, dataset_id: str) -> DatasetInfo:
        return DatasetInfo.from_dict(json.loads((self.path(dataset_id) / META_NAME).read_text()))

    def list(self) -> list[DatasetInfo]:
        """Every stored dataset, oldest first."""
        if not self.root.is_dir():
            return []
        infos = []
        for entry in self.root.iterdir():
            if _ID.fullmatch(entry.name):
                try:
                    infos.append(self.get(entry.name))
                except (ClientError, FileNotFoundError):  # deleted while we looked
                    continue
        return sorted(infos, key=lambda info: (info.created_at, info.id))

    def images_path(self, dataset_id: str) -> Path:
        return self.path(dataset_id) / IMAGES_NAME

    def load(self, dataset_id: str, mmap: bool = False) -> tuple[np.ndarray, Annotations | None, Names]:
        """(images uint8 (N, H, W, C), annotations or None, names); `mmap` maps the images read-only."""
        return read_dataset_dir(self.path(dataset_id), mmap)

    # ----------------------------------------------------------------- writing
    def create_from_upload(self, filename: str, fileobj: IO[bytes], kind: str) -> DatasetInfo:
        """Store an uploaded .zip/.tar/.tar.gz/.tgz/.npz/.h5 file; nothing is written if it is refused."""
        check_kind(kind)
        fmt = upload_format(filename)
        names: Names | None = None
        if fmt == "npz":
            images, annotations = read_npz(fileobj, self.limits)
        elif fmt == "h5":
            images, annotations = read_h5(fileobj, self.limits)
        else:
            images, annotations, names = read_archive(fmt, fileobj, self.limits)
        source = f"upload:{posixpath.basename(filename.replace(chr(92), '/'))}"
        return self.create_from_arrays(images, annotations, names, kind, source)

    def create_from_arrays(
        self,
        images: np.ndarray,
        annotations: Annotations | None = None,
        names: Names | None = None,
        kind: str = "synthetic",
        source: str = "arrays",
    ) -> DatasetInfo:
        """Store images uint8 (N, H, W) or (N, H, W, C); names default to 000000.png, 000001.png, ..."""
        check_kind(kind)
        images = _as_stack(images, self.limits)
        names = _check_names(names, len(images))
        jsonl = _annotation_lines(names, annotations)
        has_annotations = annotations is not None and any(annotations)
        try:
            return self._write(images, jsonl, kind, source, has_annotations)
        except OSError as error:
            raise ClientError(
                507,
                f"the dataset store {self.root} cannot be written ({error}); "
                "free disk space or fix SIMGAN_DATA_DIR",
            ) from error

    def _write(
        self, images: np.ndarray, jsonl: bytes, kind: str, source: str, has_annotations: bool
    ) -> DatasetInfo:
        """Build the dataset in a staging directory, then rename it to its id (or keep the existing one)."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            images_sha = _write_npy(staging / IMAGES_NAME, images)
            write_synced(staging / ANNOTATIONS_NAME, jsonl)
            key = f"{kind}\n{images_sha}\n{hashlib.sha256(jsonl).hexdigest()}\n"
            dataset_id = hashlib.sha256(key.encode()).hexdigest()[:16]
            if (self.root / dataset_id / META_NAME).is_file():
                return self.get(dataset_id)
            n, height, width, channels = images.shape
            info = DatasetInfo(
                id=dataset_id,
                kind=kind,
                count=n,
                height=height,
                width=width,
                channels=channels,
                created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
                sha256=images_sha,
                source=source,
                has_annotations=has_annotations,
            )
            write_synced(staging / META_NAME, json.dumps(info.to_dict(), indent=2).encode())
            if not rename_synced(staging, self.root / dataset_id):  # the same content won a race
                return self.get(dataset_id)
            return info
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def delete(self, dataset_id: str) -> None:
        path = self.path(dataset_id)
        trash = self.root / f".trash-{dataset_id}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, trash)
        except FileNotFoundError as error:
            raise ClientError(404, f"dataset '{dataset_id}' does not exist") from error
        shutil.rmtree(trash, ignore_errors=True)


# ---------------------------------------------------------------- archives -> images


# ---------------------------------------------------------------- validation


def _as_stack(images: np.ndarray, limits: Limits) -> np.ndarray:
    """Images as a C-contiguous uint8 (N, H, W, C) array, or a 422 saying what is wrong."""
    if not isinstance(images, np.ndarray):
        raise ClientError(422, "images must be a numpy array")
    require_uint8(images.dtype, "images")
    if images.ndim == 3:
        images = images[..., None]
    check_stack_shape(images.shape, "images", limits)
    return np.ascontiguousarray(images)


def _check_names(names: list[str] | None, count: int) -> list[str]:
    if names is None:
        width = max(6, len(str(count - 1)))
        return [f"{i:0{width}d}.png" for i in range(count)]
    if len(names) != count:
        raise ClientError(422, f"{len(names)} names were given for {count} images; give one per image")
    bad = [repr(name) for name in names if not isinstance(name, str) or not name or clean_name(name) != name]
    if bad:
        raise ClientError(
            422, f"image names must be relative paths like 'eyes/0001.png'; these are not: {some(bad)}"
        )
    seen: set[str] = set()
    twice = sorted({name for name in names if name in seen or seen.add(name)})  # type: ignore[func-returns-value]
    if twice:
        raise ClientError(422, f"image names must be unique; these repeat: {some(twice)}")
    return names


def _annotation_lines(names: list[str], annotations: Annotations | None) -> bytes:
    if annotations is not None and len(annotations) != len(names):
        raise ClientError(
            422, f"{len(annotations)} annotations were given for {len(names)} images; give one each"
        )
    lines = []
    for i, name in enumerate(names):
        record = {} if annotations is None else annotations[i]
        if not isinstance(record, dict):
            raise ClientError(
                422, f"the annotations of '{name}' must be a JSON object, not {type(record).__name__}"
            )
        if "file" in record:
            raise ClientError(
                422,
                f"the annotations of '{name}' have a 'file' field, which the store uses for the image's "
                "name; rename it",
            )
        try:
            lines.append(json.dumps({"file": name, **record}, ensure_ascii=False, allow_nan=False))
        except (TypeError, ValueError) as error:
            raise ClientError(422, f"the annotations of '{name}' are not plain JSON ({error})") from error
    return ("\n".join(lines) + "\n").encode()


# ---------------------------------------------------------------- files
class _HashingWriter:
    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.file.write(data)


def _write_npy(path: Path, images: np.ndarray) -> str:
    """Write images.npy and return its sha256, hashed on the way out rather than read back."""
    with path.open("wb") as file:
        writer = _HashingWriter(file)
        np.lib.format.write_array(writer, images, version=(1, 0), allow_pickle=False)  # type: ignore[arg-type]
        file.flush()
        os.fsync(file.fileno())
    return writer.digest.hexdigest()

"""The dataset store: content-addressed, immutable datasets under SIMGAN_DATA_DIR.

Layout under the root:

    <id>/images.npy           uint8 (N, H, W, C), C in {1, 3}
    <id>/annotations.jsonl    one line per image, in image order: {"file": name, ...annotations}
    <id>/meta.json            DatasetInfo, written last
    .staging-*/               creations in progress (ignored by readers)
    .trash-*/                 deletions in progress (ignored by readers)

A dataset's id is the first 16 hex digits of sha256 over its kind and the sha256 of its
images.npy and annotations.jsonl, so the same content always gets the same id and creating
it twice keeps the first. A dataset is built in a staging directory and renamed into place,
and deleted by renaming it away first: readers see a whole dataset or none.

Uploads are read by service.archives (limits, unsafe archives); this module turns their
members into images and annotations and refuses what does not make one dataset.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import tempfile
import uuid
import warnings
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from models.registry import fsync_dir, write_synced
from service.archives import (
    DatasetError,
    Limits,
    check_dataset_pixels,
    check_image_size,
    check_stack_shape,
    iter_members,
    npy_header,
    read_h5,
    read_npz,
    require_uint8,
    safe_name,
    upload_format,
)

__all__ = ["KINDS", "DatasetError", "DatasetInfo", "DatasetStore", "Limits"]

KINDS = ("synthetic", "real")
IMAGES_NAME = "images.npy"
ANNOTATIONS_NAME = "annotations.jsonl"
META_NAME = "meta.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")
"""Image files read from archives, at any folder depth."""

_ID = re.compile(r"[0-9a-f]{16}")
_SHOWN = 10
"""How many offending files an error message names before 'and N more'."""

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


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise DatasetError(422, f"kind must be 'synthetic' or 'real', not '{kind}'")


class DatasetStore:
    def __init__(self, root: Path | str, limits: Limits | None = None) -> None:
        self.root = Path(root)
        self.limits = limits or Limits()

    # ----------------------------------------------------------------- reading
    def path(self, dataset_id: str) -> Path:
        """The dataset's directory; 404 when there is none."""
        path = self.root / dataset_id
        if not _ID.fullmatch(dataset_id) or not (path / META_NAME).is_file():
            raise DatasetError(
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
                except (DatasetError, FileNotFoundError):  # deleted while we looked
                    continue
        return sorted(infos, key=lambda info: (info.created_at, info.id))

    def images_path(self, dataset_id: str) -> Path:
        return self.path(dataset_id) / IMAGES_NAME

    def load(self, dataset_id: str, mmap: bool = False) -> tuple[np.ndarray, Annotations | None, Names]:
        """(images uint8 (N, H, W, C), annotations or None, names); `mmap` maps the images read-only."""
        info = self.get(dataset_id)
        path = self.path(dataset_id)
        images = np.load(path / IMAGES_NAME, mmap_mode="r" if mmap else None, allow_pickle=False)
        names: Names = []
        annotations: Annotations = []
        for line in (path / ANNOTATIONS_NAME).read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            names.append(record.pop("file"))
            annotations.append(record)
        return images, annotations if info.has_annotations else None, names

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
            raise DatasetError(
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
            fsync_dir(staging)
            try:
                os.rename(staging, self.root / dataset_id)
            except OSError:
                if (self.root / dataset_id / META_NAME).is_file():  # the same content won a race
                    return self.get(dataset_id)
                raise
            fsync_dir(self.root)
            return info
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def delete(self, dataset_id: str) -> None:
        path = self.path(dataset_id)
        trash = self.root / f".trash-{dataset_id}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, trash)
        except FileNotFoundError as error:
            raise DatasetError(404, f"dataset '{dataset_id}' does not exist") from error
        shutil.rmtree(trash, ignore_errors=True)


# ---------------------------------------------------------------- archives -> images
def read_archive(
    fmt: str, fileobj: IO[bytes], limits: Limits
) -> tuple[np.ndarray, Annotations | None, list[str]]:
    """(images (N, H, W, C), annotations or None, names) from a zip or tar of image files."""
    pictures: dict[str, np.ndarray] = {}
    sidecars: dict[str, tuple[str, bytes]] = {}  # "a/0001" -> ("a/0001.json", its bytes)
    jsonl: tuple[str, bytes] | None = None
    skipped: list[str] = []
    values = 0
    for name, data in iter_members(fmt, fileobj, limits, _wanted, skipped):
        if posixpath.basename(name) == ANNOTATIONS_NAME:
            if jsonl is not None:
                raise DatasetError(
                    400, f"the archive holds two {ANNOTATIONS_NAME} ('{jsonl[0]}', '{name}'); keep one"
                )
            jsonl = (name, data)
        elif name.lower().endswith(".json"):
            sidecars[posixpath.splitext(name)[0]] = (name, data)
        else:
            pictures[name] = decode_image(name, data, limits)
            values += pictures[name].size
            check_dataset_pixels(values, limits)
    if not pictures:
        found = f"; it holds: {_some(skipped)}" if skipped else ""
        raise DatasetError(
            422,
            f"the archive holds no images (accepted at any folder depth: {', '.join(IMAGE_SUFFIXES)}){found}",
        )
    names = sorted(pictures, key=natural_key)
    _check_same_shape(names, pictures)
    annotations = _archive_annotations(names, jsonl, sidecars)
    images = np.empty((len(names), *pictures[names[0]].shape), np.uint8)
    for i, name in enumerate(names):
        images[i] = pictures.pop(name)
    return images, annotations, names


def _wanted(name: str) -> bool:
    parts = name.split("/")
    if any(part.startswith(".") or part == "__MACOSX" for part in parts):
        return False  # hidden files and macOS resource forks
    lower = name.lower()
    return parts[-1] == ANNOTATIONS_NAME or lower.endswith(".json") or lower.endswith(IMAGE_SUFFIXES)


def natural_key(name: str) -> list[Any]:
    """Sort key that puts 'eye2.png' before 'eye10.png' (UnityEyes numbers its files unpadded)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def decode_image(name: str, data: bytes, limits: Limits) -> np.ndarray:
    """One PNG, JPEG or .npy image as uint8 (H, W, C); its size is checked before it is decoded."""
    if name.lower().endswith(".npy"):
        return _decode_npy(name, data, limits)
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb guard, raised rather than printed; our pixel limit is usually lower.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as picture:
                check_image_size(*picture.size, f"'{name}'", limits)
                picture.load()
                return _pixels(name, picture)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise DatasetError(413, f"'{name}' is too large to decode ({error})") from error
    except UnidentifiedImageError as error:
        raise DatasetError(400, f"'{name}' is not a readable PNG or JPEG image; fix or remove it") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise DatasetError(
            400, f"'{name}' is not a readable PNG or JPEG image ({error}); fix or remove it"
        ) from error


def _pixels(name: str, picture: Image.Image) -> np.ndarray:
    mode = picture.mode
    if mode.startswith("I") or mode == "F":
        raise DatasetError(422, f"'{name}' has {mode} pixels; only 8-bit images are accepted, convert it")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in picture.info):
        with_alpha = picture.convert("LA" if mode == "LA" else "RGBA")
        if int(np.asarray(with_alpha)[..., -1].min()) < 255:
            raise DatasetError(
                422, f"'{name}' has transparent pixels; datasets hold gray or RGB images, so flatten it first"
            )
        picture = with_alpha.convert("L" if mode == "LA" else "RGB")
    elif mode not in ("L", "RGB"):
        picture = picture.convert("L" if mode == "1" else "RGB")  # palette, CMYK and YCbCr JPEGs
    pixels = np.asarray(picture, dtype=np.uint8)
    return pixels.reshape(pixels.shape[0], pixels.shape[1], -1)


def _decode_npy(name: str, data: bytes, limits: Limits) -> np.ndarray:
    stream = io.BytesIO(data)
    shape, fortran, dtype = npy_header(stream, f"'{name}'")
    require_uint8(dtype, f"'{name}'")
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3)):
        raise DatasetError(
            422,
            f"'{name}' has shape {shape}; an image .npy is (H, W) or (H, W, C) with C = 1 or 3 "
            "(upload a whole stack as .npz instead)",
        )
    check_image_size(shape[1], shape[0], f"'{name}'", limits)
    count = int(np.prod(shape))
    raw = data[stream.tell() :]
    if len(raw) < count:
        raise DatasetError(400, f"'{name}' is truncated: {len(raw)} of {count} bytes")
    pixels = np.frombuffer(raw, np.uint8, count).reshape(shape, order="F" if fortran else "C")
    return np.ascontiguousarray(pixels).reshape(shape[0], shape[1], -1)


def _describe(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}, {shape[2]} channel{'s' if shape[2] > 1 else ''}"


def _check_same_shape(names: list[str], pictures: dict[str, np.ndarray]) -> None:
    first = pictures[names[0]].shape
    differ = [
        f"'{name}' ({_describe(pictures[name].shape)})" for name in names if pictures[name].shape != first
    ]
    if differ:
        raise DatasetError(
            422,
            f"all images of a dataset must share one size and channel count; the first, '{names[0]}', is "
            f"{_describe(first)}, and these differ: {_some(differ)}. Convert them or upload them separately",
        )


def _archive_annotations(
    names: list[str], jsonl: tuple[str, bytes] | None, sidecars: dict[str, tuple[str, bytes]]
) -> Annotations | None:
    """Per-image annotations from annotations.jsonl and/or sidecar JSON files (a/0001.png + a/0001.json)."""
    found = _parse_jsonl(*jsonl, set(names)) if jsonl else {}
    for name in names:
        sidecar = sidecars.get(posixpath.splitext(name)[0])
        if sidecar is None:
            continue
        if name in found:
            raise DatasetError(
                422, f"'{name}' is annotated twice, in {ANNOTATIONS_NAME} and in '{sidecar[0]}'; keep one"
            )
        found[name] = _json_object(sidecar[1], f"'{sidecar[0]}'")
    return [found.get(name, {}) for name in names] if found else None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(400, f"{what} is not valid JSON ({error})") from error
    if not isinstance(value, dict):
        raise DatasetError(400, f"{what} must hold one JSON object")
    return value


def _parse_jsonl(path: str, data: bytes, names: set[str]) -> dict[str, dict[str, Any]]:
    """annotations.jsonl -> {image name: annotations}; `file` is relative to the folder holding it."""
    folder = posixpath.dirname(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(400, f"'{path}' is not UTF-8 text ({error})") from error
    found: dict[str, dict[str, Any]] = {}
    first_line: dict[str, int] = {}
    missing: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(
                400,
                f"'{path}' line {number} is not valid JSON ({error.msg} at column {error.colno}); "
                'each line is one object such as {"file": "0001.png", "gaze": [0.1, -0.2]}',
            ) from error
        if not isinstance(record, dict) or not isinstance(record.get("file"), str):
            raise DatasetError(
                400, f"'{path}' line {number} must be a JSON object with a \"file\" key naming an image"
            )
        reference = record.pop("file")
        clean = _clean(reference) or ""
        name = next((c for c in (posixpath.join(folder, clean), clean) if c in names), None)
        if name is None:
            missing.append(f"line {number} '{reference}'")
        elif name in found:
            raise DatasetError(
                400,
                f"'{path}' line {number} annotates '{reference}' again (first on line {first_line[name]})",
            )
        else:
            found[name], first_line[name] = record, number
    if missing:
        raise DatasetError(422, f"'{path}' names files that are not images in the archive: {_some(missing)}")
    return found


# ---------------------------------------------------------------- validation
def _some(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown if len(items) <= _SHOWN else f"{shown} and {len(items) - _SHOWN} more"


def _as_stack(images: np.ndarray, limits: Limits) -> np.ndarray:
    """Images as a C-contiguous uint8 (N, H, W, C) array, or a 422 saying what is wrong."""
    if not isinstance(images, np.ndarray):
        raise DatasetError(422, "images must be a numpy array")
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
        raise DatasetError(422, f"{len(names)} names were given for {count} images; give one per image")
    bad = [repr(name) for name in names if not isinstance(name, str) or not name or _clean(name) != name]
    if bad:
        raise DatasetError(
            422, f"image names must be relative paths like 'eyes/0001.png'; these are not: {_some(bad)}"
        )
    seen: set[str] = set()
    twice = sorted({name for name in names if name in seen or seen.add(name)})  # type: ignore[func-returns-value]
    if twice:
        raise DatasetError(422, f"image names must be unique; these repeat: {_some(twice)}")
    return names


def _clean(name: str) -> str | None:
    try:
        return safe_name(name)
    except DatasetError:
        return None


def _annotation_lines(names: list[str], annotations: Annotations | None) -> bytes:
    if annotations is not None and len(annotations) != len(names):
        raise DatasetError(
            422, f"{len(annotations)} annotations were given for {len(names)} images; give one each"
        )
    lines = []
    for i, name in enumerate(names):
        record = {} if annotations is None else annotations[i]
        if not isinstance(record, dict):
            raise DatasetError(
                422, f"the annotations of '{name}' must be a JSON object, not {type(record).__name__}"
            )
        if "file" in record:
            raise DatasetError(
                422,
                f"the annotations of '{name}' have a 'file' field, which the store uses for the image's "
                "name; rename it",
            )
        try:
            lines.append(json.dumps({"file": name, **record}, ensure_ascii=False, allow_nan=False))
        except (TypeError, ValueError) as error:
            raise DatasetError(422, f"the annotations of '{name}' are not plain JSON ({error})") from error
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

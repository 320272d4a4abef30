"""Uploaded image stacks: .npz (`images`, optional `annotations`) and .h5 (`image` or `images`).

Shape and dtype are checked from the file's headers before its data is read; a pickled array is
refused unread.
"""

from __future__ import annotations

import itertools
import zipfile
import zlib
from typing import IO, Any

import h5py
import numpy as np

from core.annotations import TooDeep, loads_json
from core.archives import open_zip, too_many
from core.errors import ClientError
from core.limits import ByteBudget, Limits, check_stack_shape, upload_size


def npy_header(stream: IO[bytes], what: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """(shape, fortran_order, dtype) of an .npy stream, leaving it at the first data byte."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            return fmt.read_array_header_1_0(stream)  # type: ignore[no-any-return]
        if version == (2, 0):
            return fmt.read_array_header_2_0(stream)  # type: ignore[no-any-return]
    except (ValueError, OSError, EOFError, SyntaxError) as error:
        raise ClientError(400, f"{what} is not a readable .npy array ({error})") from error
    raise ClientError(400, f"{what} uses .npy format version {version}; save it with numpy's np.save")


def require_uint8(dtype: np.dtype[Any], what: str) -> None:
    if dtype != np.uint8:
        raise ClientError(422, f"{what} holds {dtype}; images must be uint8 (0-255)")


def _json_list(text: str | bytes, what: str, count: int) -> list[dict[str, Any]]:
    try:
        value = loads_json(text, what)
    except TooDeep as error:
        raise ClientError(422, str(error)) from error
    except ValueError as error:  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
        raise ClientError(400, f"{what} is not valid JSON ({error})") from error
    if not isinstance(value, list) or len(value) != count or not all(isinstance(v, dict) for v in value):
        raise ClientError(422, f"{what} must be a JSON list of {count} objects, one per image")
    return value


def read_npz(fileobj: IO[bytes], limits: Limits) -> tuple[np.ndarray, list[dict[str, Any]] | None]:
    """`images` (N, H, W[, C]) uint8 and the optional `annotations` JSON string of a list."""
    budget = ByteBudget(limits, upload_size(fileobj, limits))
    with open_zip(fileobj, ".npz file", limits) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        if len(infos) > limits.max_members:
            raise too_many(limits)
        if "images.npy" not in infos:
            found = ", ".join(name.removesuffix(".npy") for name in infos) or "nothing"
            raise ClientError(
                422, f"the .npz has no 'images' array (found: {found}); save np.savez(f, images=...)"
            )
        try:
            with archive.open(infos["images.npy"]) as stream:
                shape, fortran, dtype = npy_header(stream, "'images'")
                require_uint8(dtype, "'images'")
                n, h, w, c = check_stack_shape(shape, "'images'", limits)
                budget.declare(n * h * w * c)
                data = budget.read(stream, n * h * w * c)
            images = np.frombuffer(data, np.uint8).reshape(shape, order="F" if fortran else "C")
            annotations = None
            if "annotations.npy" in infos:
                budget.declare(budget.used + infos["annotations.npy"].file_size)
                with archive.open(infos["annotations.npy"]) as stream:
                    shape, _, dtype = npy_header(stream, "'annotations'")
                    if shape != () or dtype.kind not in "US":  # never unpickle what a user sent
                        raise ClientError(422, "'annotations' in the .npz must be one JSON string of a list")
                    text = np.frombuffer(budget.read(stream, dtype.itemsize), dtype, 1)[0].item()
                annotations = _json_list(text, "'annotations' in the .npz", n)
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError, ValueError) as error:
            raise ClientError(400, f"the .npz file is corrupt ({error})") from error
    return np.ascontiguousarray(images.reshape(n, h, w, c)), annotations


def read_h5(fileobj: IO[bytes], limits: Limits) -> tuple[np.ndarray, list[dict[str, Any]] | None]:
    """Dataset `images` or `image` (N, H, W[, C]) uint8. Annotations come from an `annotations`
    JSON string, or else from side datasets with one small row per image (e.g. `look_vec` (N, 3))."""
    # Decoded bytes count against the archive guards (a gzip'd dataset of blank images is tiny on
    # disk): every dataset read is sized from its header, whole and per chunk, before reading.
    budget = ByteBudget(limits, upload_size(fileobj, limits), "the .h5 file's datasets decode to")
    try:
        file = h5py.File(fileobj, "r")
    except (OSError, ValueError) as error:
        raise ClientError(400, f"the upload is not a readable HDF5 file ({error})") from error
    with file:
        key = next((k for k in ("images", "image") if k in file), None)
        if key is None:
            found = ", ".join(itertools.islice(file.keys(), _SHOWN_KEYS)) or "nothing"
            raise ClientError(422, f"the .h5 file has no dataset named 'images' or 'image' (found: {found})")
        dataset = _h5_dataset(file, key)
        require_uint8(dataset.dtype, f"'{key}'")
        n, h, w, c = check_stack_shape(dataset.shape, f"'{key}'", limits)
        try:
            images = np.asarray(_h5_read(dataset, key, budget), dtype=np.uint8).reshape(n, h, w, c)
            annotations = _h5_annotations(file, key, n, budget)
        except (OSError, ValueError, TypeError) as error:
            raise ClientError(400, f"the .h5 file is corrupt ({error})") from error
    return images, annotations


def _h5_dataset(file: h5py.File, key: str) -> h5py.Dataset:
    # Links, external raw storage and virtual datasets point at other files: on this server's disk
    # they could read anything, so only plain datasets stored inside the upload are accepted.
    link = file.get(key, getlink=True)
    dataset = file.get(key)
    if not isinstance(link, h5py.HardLink) or not isinstance(dataset, h5py.Dataset):
        raise ClientError(
            400, f"'{key}' in the .h5 file must be a dataset stored in the file, not a link or group"
        )
    if dataset.external or dataset.is_virtual:
        raise ClientError(
            400, f"'{key}' in the .h5 file keeps its data in other files; store it inside the file"
        )
    return dataset


def _h5_read(dataset: h5py.Dataset, name: str, budget: ByteBudget) -> Any:
    """All of `dataset`, once its decoded size and its largest chunk's fit in `budget`."""
    _h5_fits(dataset, name, budget)
    return dataset[()]


def _h5_fits(dataset: h5py.Dataset, name: str, budget: ByteBudget) -> None:
    """Spend `dataset`'s decoded size from `budget`, refusing it first if it or one chunk is too large.
    (Variable-length strings live outside the chunks, in the file's heap: the upload's size bounds them.)"""
    itemsize = dataset.dtype.itemsize
    # A chunk is decompressed whole, and may be declared far larger than the dataset it holds.
    if dataset.chunks is not None and int(np.prod(dataset.chunks)) * itemsize > budget.cap:
        raise ClientError(
            413,
            f"'{name}' in the .h5 file is stored in chunks of {dataset.chunks} values, each over "
            f"{budget.cap} bytes once decompressed; rewrite it with smaller chunks",
        )
    budget.spend(dataset.size * itemsize)


def _h5_annotations(file: h5py.File, key: str, count: int, budget: ByteBudget) -> list[dict[str, Any]] | None:
    if "annotations" in file:
        raw = _h5_read(_h5_dataset(file, "annotations"), "annotations", budget)
        if not isinstance(raw, bytes | str):
            raise ClientError(422, "'annotations' in the .h5 file must be one JSON string of a list")
        return _json_list(raw, "'annotations' in the .h5 file", count)
    fields: dict[str, list[Any]] = {}
    for name in sorted(itertools.islice(file.keys(), _MAX_SIDE_DATASETS)):
        link = file.get(name, getlink=True)
        item = file.get(name)
        if name in (key, "file") or not isinstance(link, h5py.HardLink) or not isinstance(item, h5py.Dataset):
            continue
        per_image = int(np.prod(item.shape[1:])) if item.ndim else 0
        if item.ndim not in (1, 2) or item.shape[0] != count or per_image > _MAX_PER_IMAGE_FIELD:
            continue
        if item.external or item.is_virtual:
            continue
        if h5py.check_string_dtype(item.dtype) is not None:  # fixed or variable length text
            if item.ndim == 1:
                _h5_fits(item, name, budget)
                fields[name] = item.asstr(errors="replace")[()].tolist()
        elif item.dtype.kind in "biuf":
            fields[name] = _h5_read(item, name, budget).tolist()
    if not fields:
        return None
    return [{name: values[i] for name, values in fields.items()} for i in range(count)]


_MAX_PER_IMAGE_FIELD = 64
"""Most values per image an .h5 side dataset may hold to become an annotation field (e.g. look_vec)."""


_MAX_SIDE_DATASETS = 256
"""Most .h5 top-level names looked at for annotation fields."""


_SHOWN_KEYS = 20

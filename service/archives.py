"""Reading uploaded dataset files safely: .zip, .tar, .tar.gz/.tgz, .npz and .h5.

An upload is untrusted input. Nothing is extracted to disk: archive members are read into
memory one at a time, and every read is capped by what is left of the unpack budget, so a
header that lies about a member's size cannot make us unpack more than the limit. Refused
before any member data is read: too many members, declared sizes over the budget or over the
compression-ratio guard, absolute or `..` paths, links, devices, encrypted members.

Array files (.npz, .h5) have their shape and dtype checked before their data is read.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import h5py
import numpy as np

if TYPE_CHECKING:
    from service.config import Settings

ARCHIVE_SUFFIXES = {".zip": "zip", ".tar": "tar", ".tar.gz": "tar", ".tgz": "tar"}
ARRAY_SUFFIXES = {".npz": "npz", ".h5": "h5", ".hdf5": "h5"}
ACCEPTED = ", ".join([*ARCHIVE_SUFFIXES, *ARRAY_SUFFIXES])
"""Upload file types, for error messages."""

_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
_MAX_PER_IMAGE_FIELD = 64
"""Most values per image an .h5 side dataset may hold to become an annotation field (e.g. look_vec)."""
_MAX_SIDE_DATASETS = 256
"""Most .h5 top-level names looked at for annotation fields."""
_SHOWN_KEYS = 20
_MAX_ENTRY_BYTES = 512
"""Central-directory bytes allowed per permitted zip member (46 fixed, then name and extras)."""


class DatasetError(Exception):
    """A dataset request that cannot be honoured; `status_code` is the HTTP status to answer with."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


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
    raise DatasetError(
        415, f"'{filename}' is not a dataset file type this service reads; send one of {ACCEPTED}"
    )


def upload_size(fileobj: IO[bytes], limits: Limits) -> int:
    fileobj.seek(0, io.SEEK_END)
    size = fileobj.tell()
    fileobj.seek(0)
    if size > limits.max_upload_bytes:
        raise DatasetError(
            413,
            f"the upload is {size} bytes; the most accepted is {limits.max_upload_bytes} "
            "(SIMGAN_MAX_UPLOAD_BYTES); split the dataset or raise the limit",
        )
    if size == 0:
        raise DatasetError(400, "the uploaded file is empty")
    return size


def safe_name(name: str) -> str:
    """A member path as a clean relative POSIX path; refuses absolute paths and `..`."""
    path = name.replace("\\", "/")
    if path.startswith("/") or _DRIVE.match(path):
        raise DatasetError(
            400, f"archive member '{name}' has an absolute path; archive paths must be relative"
        )
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DatasetError(400, f"archive member '{name}' climbs out of the archive ('..'); remove it")
    if "\x00" in path:
        raise DatasetError(400, f"archive member {name!r} has a NUL byte in its name")
    return "/".join(parts)


class Budget:
    """Bytes an archive may still unpack: counted while reading, not trusted from headers."""

    def __init__(self, limits: Limits, upload_bytes: int) -> None:
        ratio_cap = max(limits.max_ratio * upload_bytes, limits.ratio_free_bytes)
        self.cap = min(limits.max_unpacked_bytes, ratio_cap)
        self.limits = limits
        self.upload_bytes = upload_bytes
        self.used = 0

    def _refuse(self, total: int) -> DatasetError:
        if total > self.limits.max_unpacked_bytes:
            return DatasetError(
                413,
                f"the archive unpacks to more than {self.limits.max_unpacked_bytes} bytes "
                "(SIMGAN_MAX_ARCHIVE_BYTES); split the dataset or raise the limit",
            )
        return DatasetError(
            413,
            f"the archive unpacks to more than {self.limits.max_ratio} times its size of "
            f"{self.upload_bytes} bytes (SIMGAN_MAX_ARCHIVE_RATIO); this looks like a zip bomb",
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
        while wanted > 0 and (chunk := stream.read(min(_CHUNK, wanted))):
            self.spend(len(chunk))
            chunks.append(chunk)
            wanted -= len(chunk)
        return b"".join(chunks)


# ---------------------------------------------------------------- archives (.zip, .tar*)
Member = tuple[str, bytes]
"""(clean path inside the archive, its bytes)"""


def iter_members(
    fmt: str, fileobj: IO[bytes], limits: Limits, wanted: Callable[[str], bool], skipped: list[str]
) -> Iterator[Member]:
    """Regular-file members whose clean path `wanted` accepts; other paths go to `skipped`."""
    budget = Budget(limits, upload_size(fileobj, limits))
    if fmt == "zip":
        yield from _zip_members(fileobj, limits, budget, wanted, skipped)
    else:
        yield from _tar_members(fileobj, limits, budget, wanted, skipped)


def _too_many(limits: Limits) -> DatasetError:
    return DatasetError(
        413,
        f"the archive holds more than {limits.max_members} files (SIMGAN_MAX_ARCHIVE_MEMBERS); "
        "split the dataset or raise the limit",
    )


def _open_zip(fileobj: IO[bytes], what: str, limits: Limits) -> zipfile.ZipFile:
    # zipfile reads the whole central directory into memory on open: size it up first. Its
    # byte size matters as well as its entry count, because zipfile reads it by size.
    directory = _zip_directory(fileobj)
    if directory is not None:
        entries, size = directory
        if entries > limits.max_members or size > limits.max_members * _MAX_ENTRY_BYTES:
            raise _too_many(limits)
    try:
        return zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise DatasetError(400, f"the upload is not a readable {what} ({error})") from error


def _zip_directory(fileobj: IO[bytes]) -> tuple[int, int] | None:
    """(entries, bytes) of the central directory, from the end record (zip64 too); None if absent."""
    size = fileobj.seek(0, io.SEEK_END)
    tail_size = min(size, (1 << 16) + 22)  # the end record closes the file, after a comment <= 64 KiB
    fileobj.seek(size - tail_size)
    tail = fileobj.read(tail_size)
    fileobj.seek(0)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    entries, directory_size = struct.unpack_from("<HI", tail, at + 10)
    if entries != 0xFFFF and directory_size != 0xFFFFFFFF:
        return entries, directory_size
    locator = tail[at - 20 : at] if at >= 20 else b""
    if not locator.startswith(b"PK\x06\x07"):
        return None
    fileobj.seek(struct.unpack_from("<Q", locator, 8)[0])
    record = fileobj.read(56)
    fileobj.seek(0)
    if len(record) < 56 or not record.startswith(b"PK\x06\x06"):
        return None
    entries64, directory_size64 = struct.unpack_from("<QQ", record, 32)
    return entries64, directory_size64


def _zip_members(
    fileobj: IO[bytes], limits: Limits, budget: Budget, wanted: Callable[[str], bool], skipped: list[str]
) -> Iterator[Member]:
    with _open_zip(fileobj, "zip archive", limits) as archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            raise _too_many(limits)
        budget.declare(sum(info.file_size for info in infos))
        seen: set[str] = set()
        for info in infos:
            name = safe_name(info.filename)
            mode = info.external_attr >> 16
            if info.is_dir() or stat.S_ISDIR(mode):
                continue
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: written without a file type
                kind = "a symlink" if stat.S_ISLNK(mode) else "not a regular file"
                raise DatasetError(400, f"archive member '{name}' is {kind}; only regular files are accepted")
            if info.flag_bits & 0x1:
                raise DatasetError(400, f"archive member '{name}' is encrypted; upload it unencrypted")
            if name in seen:
                raise DatasetError(400, f"archive member '{name}' appears twice; keep one")
            seen.add(name)
            if not wanted(name):
                skipped.append(name)
                continue
            try:
                with archive.open(info) as stream:
                    data = budget.read(stream)
            except (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError) as error:
                raise DatasetError(400, f"archive member '{name}' is corrupt ({error})") from error
            yield name, data


def _tar_members(
    fileobj: IO[bytes], limits: Limits, budget: Budget, wanted: Callable[[str], bool], skipped: list[str]
) -> Iterator[Member]:
    # Stream mode ("r|*"): one forward pass over the (possibly gzip'd) tar, never seeking back.
    try:
        archive = tarfile.open(fileobj=fileobj, mode="r|*")  # noqa: SIM115 - closed by the `with` below
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DatasetError(400, f"the upload is not a readable tar archive ({error})") from error
    with archive:
        count = 0
        seen: set[str] = set()
        members = iter(archive)
        while True:
            try:
                member = next(members, None)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
                raise DatasetError(
                    400, f"the tar archive is corrupt after {count} files ({error})"
                ) from error
            if member is None:
                return
            count += 1
            if count > limits.max_members:
                raise _too_many(limits)
            name = safe_name(member.name)
            if member.issym() or member.islnk():
                raise DatasetError(400, f"archive member '{name}' is a link; only regular files are accepted")
            if member.isdir():
                continue
            if not member.isfile():
                raise DatasetError(
                    400, f"archive member '{name}' is a device or pipe; only regular files are accepted"
                )
            if name in seen:
                raise DatasetError(400, f"archive member '{name}' appears twice; keep one")
            seen.add(name)
            # Skipped members are still decompressed on the way past, so they count too.
            budget.declare(budget.used + member.size)
            if not wanted(name):
                budget.spend(member.size)
                skipped.append(name)
                continue
            stream = archive.extractfile(member)
            if stream is None:  # pragma: no cover - isfile() members always have data
                continue
            try:
                data = budget.read(stream, member.size)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
                raise DatasetError(400, f"archive member '{name}' is corrupt ({error})") from error
            yield name, data


# ---------------------------------------------------------------- array files
def check_stack_shape(shape: tuple[int, ...], what: str, limits: Limits) -> tuple[int, int, int, int]:
    """(N, H, W, C) for an image stack shaped (N, H, W) or (N, H, W, C); refuses others and oversize."""
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3)):
        raise DatasetError(
            422, f"{what} has shape {shape}; expected (N, H, W) or (N, H, W, C) with C = 1 or 3"
        )
    n, h, w = shape[:3]
    c = shape[3] if len(shape) == 4 else 1
    if n == 0 or h == 0 or w == 0:
        raise DatasetError(422, f"{what} has shape {shape}: it holds no images")
    check_image_size(w, h, f"each image in {what}", limits)
    check_dataset_pixels(n * h * w * c, limits)
    return n, h, w, c


def check_image_size(width: int, height: int, what: str, limits: Limits) -> None:
    if width * height > limits.max_image_pixels:
        raise DatasetError(
            413,
            f"{what} is {width}x{height} pixels; the most per image is {limits.max_image_pixels} "
            "(SIMGAN_MAX_IMAGE_PIXELS); resize it",
        )


def check_dataset_pixels(total: int, limits: Limits) -> None:
    if total > limits.max_dataset_pixels:
        raise DatasetError(
            413,
            f"the dataset holds more than {limits.max_dataset_pixels} pixel values (images x height x "
            "width x channels; SIMGAN_MAX_DATASET_PIXELS); split it or raise the limit",
        )


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
        raise DatasetError(400, f"{what} is not a readable .npy array ({error})") from error
    raise DatasetError(400, f"{what} uses .npy format version {version}; save it with numpy's np.save")


def require_uint8(dtype: np.dtype[Any], what: str) -> None:
    if dtype != np.uint8:
        raise DatasetError(422, f"{what} holds {dtype}; images must be uint8 (0-255)")


def _json_list(text: str | bytes, what: str, count: int) -> list[dict[str, Any]]:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(400, f"{what} is not valid JSON ({error})") from error
    if not isinstance(value, list) or len(value) != count or not all(isinstance(v, dict) for v in value):
        raise DatasetError(422, f"{what} must be a JSON list of {count} objects, one per image")
    return value


def read_npz(fileobj: IO[bytes], limits: Limits) -> tuple[np.ndarray, list[dict[str, Any]] | None]:
    """`images` (N, H, W[, C]) uint8 and the optional `annotations` JSON string of a list."""
    budget = Budget(limits, upload_size(fileobj, limits))
    with _open_zip(fileobj, ".npz file", limits) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        if len(infos) > limits.max_members:
            raise _too_many(limits)
        if "images.npy" not in infos:
            found = ", ".join(name.removesuffix(".npy") for name in infos) or "nothing"
            raise DatasetError(
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
                        raise DatasetError(422, "'annotations' in the .npz must be one JSON string of a list")
                    text = np.frombuffer(budget.read(stream, dtype.itemsize), dtype, 1)[0].item()
                annotations = _json_list(text, "'annotations' in the .npz", n)
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError, ValueError) as error:
            raise DatasetError(400, f"the .npz file is corrupt ({error})") from error
    return np.ascontiguousarray(images.reshape(n, h, w, c)), annotations


def read_h5(fileobj: IO[bytes], limits: Limits) -> tuple[np.ndarray, list[dict[str, Any]] | None]:
    """Dataset `images` or `image` (N, H, W[, C]) uint8. Annotations come from an `annotations`
    JSON string, or else from side datasets with one small row per image (e.g. `look_vec` (N, 3))."""
    upload_size(fileobj, limits)
    try:
        file = h5py.File(fileobj, "r")
    except (OSError, ValueError) as error:
        raise DatasetError(400, f"the upload is not a readable HDF5 file ({error})") from error
    with file:
        key = next((k for k in ("images", "image") if k in file), None)
        if key is None:
            found = ", ".join(itertools.islice(file.keys(), _SHOWN_KEYS)) or "nothing"
            raise DatasetError(422, f"the .h5 file has no dataset named 'images' or 'image' (found: {found})")
        dataset = _h5_dataset(file, key)
        require_uint8(dataset.dtype, f"'{key}'")
        n, h, w, c = check_stack_shape(dataset.shape, f"'{key}'", limits)
        try:
            images = np.asarray(dataset[()], dtype=np.uint8).reshape(n, h, w, c)
            annotations = _h5_annotations(file, key, n)
        except (OSError, ValueError, TypeError) as error:
            raise DatasetError(400, f"the .h5 file is corrupt ({error})") from error
    return images, annotations


def _h5_dataset(file: h5py.File, key: str) -> h5py.Dataset:
    # Links, external raw storage and virtual datasets point at other files: on this server's disk
    # they could read anything, so only plain datasets stored inside the upload are accepted.
    link = file.get(key, getlink=True)
    dataset = file.get(key)
    if not isinstance(link, h5py.HardLink) or not isinstance(dataset, h5py.Dataset):
        raise DatasetError(
            400, f"'{key}' in the .h5 file must be a dataset stored in the file, not a link or group"
        )
    if dataset.external or dataset.is_virtual:
        raise DatasetError(
            400, f"'{key}' in the .h5 file keeps its data in other files; store it inside the file"
        )
    return dataset


def _h5_annotations(file: h5py.File, key: str, count: int) -> list[dict[str, Any]] | None:
    if "annotations" in file:
        raw = _h5_dataset(file, "annotations")[()]
        if not isinstance(raw, bytes | str):
            raise DatasetError(422, "'annotations' in the .h5 file must be one JSON string of a list")
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
                fields[name] = item.asstr(errors="replace")[()].tolist()
        elif item.dtype.kind in "biuf":
            fields[name] = item[()].tolist()
    if not fields:
        return None
    return [{name: values[i] for name, values in fields.items()} for i in range(count)]

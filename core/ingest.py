"""Uploaded dataset files -> one stack of images and their annotations.

core.archives reads the members of an archive safely and core.arrays reads .npz / .h5 stacks;
this module decodes image members (core.images, one decoder for the whole product), pairs them
with `annotations.jsonl` or per-image sidecar JSON (as UnityEyes writes them), and refuses what
does not make one dataset: mixed sizes or channel counts, annotations for files that are not there.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import IO, Any

import numpy as np

from core.annotations import TooDeep, loads_json
from core.archives import clean_name, iter_members
from core.errors import ClientError, some
from core.images import decode_image
from core.layout import ANNOTATIONS_NAME
from core.limits import ByteBudget, Limits, check_dataset_pixels, upload_size

Annotations = list[dict[str, Any]]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")
"""Image files read from archives, at any folder depth."""


def read_archive(
    fmt: str, fileobj: IO[bytes], limits: Limits
) -> tuple[np.ndarray, Annotations | None, list[str]]:
    """(images (N, H, W, C), annotations or None, names) from a zip or tar of image files."""
    pictures: dict[str, np.ndarray] = {}
    sidecars: dict[str, tuple[str, bytes]] = {}  # "a/0001" -> ("a/0001.json", its bytes)
    jsonl: tuple[str, bytes] | None = None
    skipped: list[str] = []
    values = 0
    # Decoded pixels count against the same guards as unpacked bytes, from each image's header
    # before it is decoded: a blank 1024x1024 PNG is 1 KB in the archive and 1 MB once decoded.
    decoded = ByteBudget(limits, upload_size(fileobj, limits), "the archive's images decode to")
    for name, data in iter_members(fmt, fileobj, limits, _wanted, skipped):
        if posixpath.basename(name) == ANNOTATIONS_NAME:
            if jsonl is not None:
                raise ClientError(
                    400, f"the archive holds two {ANNOTATIONS_NAME} ('{jsonl[0]}', '{name}'); keep one"
                )
            jsonl = (name, data)
        elif name.lower().endswith(".json"):
            sidecars[posixpath.splitext(name)[0]] = (name, data)
        else:
            pictures[name] = decode_image(
                data, f"'{name}'", limits.max_image_pixels, alpha="opaque", reserve=decoded.spend
            )
            values += pictures[name].size
            check_dataset_pixels(values, limits)
    if not pictures:
        found = f"; it holds: {some(skipped)}" if skipped else ""
        raise ClientError(
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


def _describe(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}, {shape[2]} channel{'s' if shape[2] > 1 else ''}"


def _check_same_shape(names: list[str], pictures: dict[str, np.ndarray]) -> None:
    first = pictures[names[0]].shape
    differ = [
        f"'{name}' ({_describe(pictures[name].shape)})" for name in names if pictures[name].shape != first
    ]
    if differ:
        raise ClientError(
            422,
            f"all images of a dataset must share one size and channel count; the first, '{names[0]}', is "
            f"{_describe(first)}, and these differ: {some(differ)}. Convert them or upload them separately",
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
            raise ClientError(
                422, f"'{name}' is annotated twice, in {ANNOTATIONS_NAME} and in '{sidecar[0]}'; keep one"
            )
        found[name] = _json_object(sidecar[1], f"'{sidecar[0]}'")
    return [found.get(name, {}) for name in names] if found else None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = loads_json(data.decode("utf-8-sig"), what)
    except TooDeep as error:
        raise ClientError(422, str(error)) from error
    except ValueError as error:  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
        raise ClientError(400, f"{what} is not valid JSON ({error})") from error
    if not isinstance(value, dict):
        raise ClientError(400, f"{what} must hold one JSON object")
    return value


def _parse_jsonl(path: str, data: bytes, names: set[str]) -> dict[str, dict[str, Any]]:
    """annotations.jsonl -> {image name: annotations}; `file` is relative to the folder holding it."""
    folder = posixpath.dirname(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ClientError(400, f"'{path}' is not UTF-8 text ({error})") from error
    found: dict[str, dict[str, Any]] = {}
    first_line: dict[str, int] = {}
    missing: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = loads_json(line, f"'{path}' line {number}")
        except TooDeep as error:
            raise ClientError(422, str(error)) from error
        except json.JSONDecodeError as error:
            raise ClientError(
                400,
                f"'{path}' line {number} is not valid JSON ({error.msg} at column {error.colno}); "
                'each line is one object such as {"file": "0001.png", "gaze": [0.1, -0.2]}',
            ) from error
        except ValueError as error:  # NaN or Infinity, which no JSON reader could take back
            raise ClientError(400, f"'{path}' line {number} is not valid JSON ({error})") from error
        if not isinstance(record, dict) or not isinstance(record.get("file"), str):
            raise ClientError(
                400, f"'{path}' line {number} must be a JSON object with a \"file\" key naming an image"
            )
        reference = record.pop("file")
        clean = clean_name(reference) or ""
        name = next((c for c in (posixpath.join(folder, clean), clean) if c in names), None)
        if name is None:
            missing.append(f"line {number} '{reference}'")
        elif name in found:
            raise ClientError(
                400,
                f"'{path}' line {number} annotates '{reference}' again (first on line {first_line[name]})",
            )
        else:
            found[name], first_line[name] = record, number
    if missing:
        raise ClientError(422, f"'{path}' names files that are not images in the archive: {some(missing)}")
    return found

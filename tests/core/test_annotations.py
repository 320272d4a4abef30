"""Annotation JSON from clients: parsed exactly, and refused with a 4xx naming the limit when it nests
too deeply for anything downstream to handle (never a RecursionError, never a 500)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from core.annotations import MAX_JSON_DEPTH, TooDeep, json_depth, loads_json, parse_annotations
from core.datasets import DatasetStore
from core.errors import ClientError
from tests.factories import image_file, npz_file, random_images, zip_file

DEEP = "[" * 10_000 + "]" * 10_000
"""10,000 nested lists: past Python's recursion limit."""
PNG = image_file(random_images(1, 4, 4)[0])


def nested(depth: int) -> str:
    return '{"a": ' * (depth - 1) + "[]" + "}" * (depth - 1)


def test_depth_counts_lists_and_objects_and_not_scalars() -> None:
    assert json_depth(1) == 0
    assert json_depth([]) == 1
    assert json_depth({"a": [1, {"b": 2}], "c": 3}) == 3


def test_annotations_nested_up_to_the_limit_pass_through_unchanged() -> None:
    text = nested(MAX_JSON_DEPTH)
    assert json_depth(loads_json(text)) == MAX_JSON_DEPTH
    assert parse_annotations(text, 1) == [loads_json(text)]


@pytest.mark.parametrize("text", [nested(MAX_JSON_DEPTH + 1), DEEP])
def test_annotations_nested_past_the_limit_are_a_422_naming_it(text: str) -> None:
    with pytest.raises(TooDeep):
        loads_json(text)
    with pytest.raises(ClientError) as caught:
        parse_annotations(text, 1)
    assert caught.value.status_code == 422
    assert f"deeper than {MAX_JSON_DEPTH} levels" in caught.value.detail


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("sidecar.zip", zip_file({"0001.png": PNG, "0001.json": ('{"gaze": ' + DEEP + "}").encode()})),
        (
            "jsonl.zip",
            zip_file(
                {"0001.png": PNG, "annotations.jsonl": ('{"file": "0001.png", "g": ' + DEEP + "}").encode()}
            ),
        ),
    ],
)
def test_dataset_annotations_nested_past_the_limit_are_refused_and_nothing_is_stored(
    tmp_path: Path, filename: str, data: bytes
) -> None:
    store = DatasetStore(tmp_path / "data")
    with pytest.raises(ClientError) as caught:
        store.create_from_upload(filename, io.BytesIO(data), "synthetic")
    assert caught.value.status_code == 422
    assert f"deeper than {MAX_JSON_DEPTH} levels" in caught.value.detail
    assert not store.root.exists() or list(store.root.iterdir()) == []


def test_npz_annotations_nested_past_the_limit_are_refused(tmp_path: Path) -> None:
    deep: object = []
    for _ in range(MAX_JSON_DEPTH + 1):
        deep = [deep]
    data = npz_file(random_images(1), annotations=[{"g": deep}])
    assert json.loads(json.dumps(deep)) == deep  # within Python's limit, past ours
    store = DatasetStore(tmp_path / "data")
    with pytest.raises(ClientError) as caught:
        store.create_from_upload("eyes.npz", io.BytesIO(data), "synthetic")
    assert caught.value.status_code == 422

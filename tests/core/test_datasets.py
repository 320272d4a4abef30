"""The dataset store: every upload format round-trips, bad content is refused with nothing written,
and datasets are content-addressed and immutable."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.datasets import DatasetStore
from core.errors import ClientError
from core.limits import Limits
from tests.factories import h5_file, image_file, npz_file, random_images, tar_file, zip_file

GAZE = [{"gaze": {"pitch": float(i), "yaw": -float(i)}} for i in range(3)]


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return DatasetStore(tmp_path / "data")


def upload(store: DatasetStore, filename: str, data: bytes, kind: str = "synthetic") -> Any:
    return store.create_from_upload(filename, io.BytesIO(data), kind)


def refusal(store: DatasetStore, filename: str, data: bytes, kind: str = "synthetic") -> ClientError:
    """The error the store raises for this upload, after checking that it stored nothing."""
    with pytest.raises(ClientError) as caught:
        upload(store, filename, data, kind)
    assert not store.root.exists() or list(store.root.iterdir()) == []
    return caught.value


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def png_with_header_size(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims width x height: a decompression bomb's header."""
    data = bytearray(image_file(random_images(1, 1, 1)[0]))
    struct.pack_into(">II", data, 16, width, height)  # IHDR width, height
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))  # IHDR crc
    return bytes(data)


# ---------------------------------------------------------------- formats round-trip
@pytest.mark.parametrize(
    ("filename", "pack"),
    [
        ("eyes.zip", zip_file),
        ("eyes.tar", tar_file),
        ("eyes.tar.gz", lambda m: tar_file(m, "gz")),
        ("eyes.tgz", lambda m: tar_file(m, "gz")),
    ],
)
def test_archive_round_trips_nested_images_with_annotations_jsonl(
    store: DatasetStore, filename: str, pack: Any
) -> None:
    images = random_images(3, 8, 10)
    members = {f"set/eyes/{i + 1}.png": image_file(images[i]) for i in (2, 0, 1)}
    records = [{"file": f"eyes/{i + 1}.png", **GAZE[i]} for i in range(3)]
    members["set/annotations.jsonl"] = jsonl(records)  # paths relative to the folder holding it

    info = upload(store, filename, pack(members))

    assert (info.count, info.height, info.width, info.channels) == (3, 8, 10, 1)
    assert (info.kind, info.source, info.has_annotations) == ("synthetic", f"upload:{filename}", True)
    stored, annotations, names = store.load(info.id)
    assert names == ["set/eyes/1.png", "set/eyes/2.png", "set/eyes/3.png"]
    np.testing.assert_array_equal(stored, images)
    assert annotations == GAZE


def test_archive_reads_sidecar_json_next_to_each_image_in_natural_order(store: DatasetStore) -> None:
    images = random_images(3, 6, 9, channels=3)
    members = {}
    for i, number in enumerate((1, 2, 10)):  # UnityEyes numbers unpadded: 1, 2, ..., 10
        members[f"imgs/{number}.png"] = image_file(images[i])
        members[f"imgs/{number}.json"] = json.dumps(GAZE[i]).encode()

    info = upload(store, "unityeyes.zip", zip_file(members))

    stored, annotations, names = store.load(info.id)
    assert names == ["imgs/1.png", "imgs/2.png", "imgs/10.png"]
    assert info.channels == 3
    np.testing.assert_array_equal(stored, images)
    assert annotations == GAZE


def test_archive_reads_npy_and_jpeg_members_and_skips_other_files(store: DatasetStore) -> None:
    images = random_images(2, 5, 7)
    smooth = np.full((5, 7, 1), 128, np.uint8)
    members = {
        "a.npy": image_file(images[0], format="NPY"),
        "b.npy": image_file(images[1][:, :, 0], format="NPY"),  # (H, W) is one channel
        "c.jpg": image_file(smooth, format="JPEG", quality=95),
        "README.txt": b"eye crops",
        "__MACOSX/._a.npy": b"resource fork",
    }
    info = upload(store, "eyes.zip", zip_file(members))

    stored, annotations, names = store.load(info.id)
    assert names == ["a.npy", "b.npy", "c.jpg"]
    np.testing.assert_array_equal(stored[:2], images)
    assert np.abs(stored[2].astype(int) - 128).max() <= 2
    assert annotations is None and info.has_annotations is False


def test_opaque_rgba_png_is_stored_as_rgb(store: DatasetStore) -> None:
    rgb = random_images(1, 4, 4, channels=3)[0]
    rgba = np.concatenate([rgb, np.full((4, 4, 1), 255, np.uint8)], axis=2)
    info = upload(store, "eyes.zip", zip_file({"a.png": image_file(rgba)}))
    assert info.channels == 3
    np.testing.assert_array_equal(store.load(info.id)[0][0], rgb)


@pytest.mark.parametrize("shape", [(3, 8, 10), (3, 8, 10, 1), (3, 8, 10, 3)])
def test_npz_round_trips_images_and_annotations(store: DatasetStore, shape: tuple[int, ...]) -> None:
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    info = upload(store, "eyes.npz", npz_file(images, GAZE))

    stored, annotations, names = store.load(info.id)
    assert stored.shape == (3, 8, 10, shape[3] if len(shape) == 4 else 1)
    np.testing.assert_array_equal(stored.reshape(shape), images)
    assert annotations == GAZE
    assert names == ["000000.png", "000001.png", "000002.png"]


@pytest.mark.parametrize("key", ["images", "image"])
def test_h5_round_trips_images_and_per_image_fields(store: DatasetStore, key: str) -> None:
    images = random_images(3, 8, 10)[..., 0]  # (N, H, W), the Kaggle eye-gaze layout
    look = np.arange(9, dtype=np.float32).reshape(3, 3)
    info = upload(store, "gaze.h5", h5_file(images, key=key, look_vec=look, path=[b"a", b"b", b"c"]))

    stored, annotations, _ = store.load(info.id)
    np.testing.assert_array_equal(stored[..., 0], images)
    assert annotations == [{"look_vec": look[i].tolist(), "path": "abc"[i]} for i in range(3)]


def test_h5_reads_annotations_json_string(store: DatasetStore) -> None:
    images = random_images(3, 4, 4)
    data = h5_file(images, annotations=json.dumps(GAZE))
    assert store.load(upload(store, "gaze.hdf5", data).id)[1] == GAZE


# ---------------------------------------------------------------- content refusals
def test_upload_refuses_mixed_sizes_naming_the_files_that_differ(store: DatasetStore) -> None:
    members = {
        "a.png": image_file(random_images(1, 35, 55)[0]),
        "b.png": image_file(random_images(1, 35, 55)[0]),
        "c.png": image_file(random_images(1, 36, 60)[0]),
        "d.png": image_file(random_images(1, 35, 55, channels=3)[0]),
    }
    error = refusal(store, "eyes.zip", zip_file(members))
    assert error.status_code == 422
    assert error.detail == (
        "all images of a dataset must share one size and channel count; the first, 'a.png', is "
        "55x35, 1 channel, and these differ: 'c.png' (60x36, 1 channel), 'd.png' (55x35, 3 channels). "
        "Convert them or upload them separately"
    )


def test_upload_refuses_archive_without_images_saying_what_it_holds(store: DatasetStore) -> None:
    error = refusal(store, "eyes.zip", zip_file({"a.bmp": b"BM", "notes.txt": b"hi"}))
    assert error.status_code == 422
    assert error.detail == (
        "the archive holds no images (accepted at any folder depth: .png, .jpg, .jpeg, .npy); "
        "it holds: a.bmp, notes.txt"
    )


@pytest.mark.parametrize(
    ("broken", "status", "says"),
    [
        (b"\x89PNG\r\n\x1a\n garbage", 415, "is not a PNG, JPEG or .npy file"),
        (image_file(random_images(1, 30, 30)[0])[:-40], 400, "could not be decoded"),
        (b"not an image", 415, "is not a PNG, JPEG or .npy file"),
    ],
    ids=["bad-data", "truncated", "not-png"],
)
def test_upload_refuses_unreadable_images_naming_them(
    store: DatasetStore, broken: bytes, status: int, says: str
) -> None:
    # Archives and /refine share one decoder, so a bad image gets the same answer from both.
    members = {"ok.png": image_file(random_images(1, 30, 30)[0]), "eyes/broken.png": broken}
    error = refusal(store, "eyes.zip", zip_file(members))
    assert error.status_code == status
    assert error.detail.startswith(f"'eyes/broken.png' {says}")


def test_upload_refuses_image_whose_header_is_too_large_before_decoding_it(store: DatasetStore) -> None:
    error = refusal(store, "eyes.zip", zip_file({"bomb.png": png_with_header_size(100_000, 100_000)}))
    assert error.status_code == 413
    assert "'bomb.png'" in error.detail


def test_upload_refuses_images_over_the_pixel_limit(tmp_path: Path) -> None:
    small = DatasetStore(tmp_path / "data", Limits(max_image_pixels=100))
    error = refusal(small, "eyes.zip", zip_file({"big.png": image_file(random_images(1, 20, 20)[0])}))
    assert error.status_code == 413
    assert error.detail.startswith("'big.png' is 20x20 = 400 pixels; the limit is 100 pixels per image")


def test_upload_refuses_transparent_and_16_bit_images(store: DatasetStore) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    error = refusal(store, "eyes.zip", zip_file({"clear.png": image_file(rgba)}))
    assert error.status_code == 422
    assert "'clear.png' has transparent pixels" in error.detail

    deep = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.full((4, 4), 4000, np.uint16)).save(deep, format="PNG")
    error = refusal(store, "eyes.zip", zip_file({"deep.png": deep.getvalue()}))
    assert error.status_code == 415
    assert "'deep.png' has 16 bits per channel" in error.detail


def test_upload_refuses_bad_json_line_naming_its_number(store: DatasetStore) -> None:
    lines = b'{"file": "a.png", "gaze": 1}\n\n{"file": "b.png", "gaze": \n'
    members = {"a.png": image_file(random_images(1, 4, 4)[0]), "b.png": image_file(random_images(1, 4, 4)[0])}
    error = refusal(store, "eyes.zip", zip_file({**members, "annotations.jsonl": lines}))
    assert error.status_code == 400
    assert error.detail.startswith("'annotations.jsonl' line 3 is not valid JSON")

    error = refusal(store, "eyes.zip", zip_file({**members, "annotations.jsonl": b'{"gaze": 1}\n'}))
    assert error.status_code == 400
    assert (
        error.detail == "'annotations.jsonl' line 1 must be a JSON object with a \"file\" key naming an image"
    )


def test_upload_refuses_annotations_naming_files_not_in_the_archive(store: DatasetStore) -> None:
    records = [{"file": "a.png"}, {"file": "missing.png"}, {"file": "../a.png"}]
    members = {"a.png": image_file(random_images(1, 4, 4)[0]), "annotations.jsonl": jsonl(records)}
    error = refusal(store, "eyes.zip", zip_file(members))
    assert error.status_code == 422
    assert error.detail == (
        "'annotations.jsonl' names files that are not images in the archive: "
        "line 2 'missing.png', line 3 '../a.png'"
    )


def test_upload_refuses_image_annotated_twice(store: DatasetStore) -> None:
    members = {
        "a.png": image_file(random_images(1, 4, 4)[0]),
        "a.json": b"{}",
        "annotations.jsonl": jsonl([{"file": "a.png"}]),
    }
    error = refusal(store, "eyes.zip", zip_file(members))
    assert error.status_code == 422
    assert "'a.png' is annotated twice, in annotations.jsonl and in 'a.json'" in error.detail


def test_upload_refuses_unknown_kind_before_reading(store: DatasetStore) -> None:
    error = refusal(store, "eyes.rar", b"", kind="fake")
    assert error.status_code == 422
    assert error.detail == "kind must be 'synthetic' or 'real', not 'fake'"


def test_npz_refuses_float_images_and_misaligned_annotations(store: DatasetStore) -> None:
    error = refusal(store, "eyes.npz", npz_file(np.zeros((2, 4, 4), np.float32)))
    assert error.status_code == 422
    assert error.detail == "'images' holds float32; images must be uint8 (0-255)"

    error = refusal(store, "eyes.npz", npz_file(random_images(2), GAZE))
    assert error.status_code == 422
    assert error.detail == "'annotations' in the .npz must be a JSON list of 2 objects, one per image"


# ---------------------------------------------------------------- the store
def test_create_from_arrays_writes_the_documented_layout(store: DatasetStore) -> None:
    images = random_images(3)
    info = store.create_from_arrays(images, GAZE, ["x/a.png", "x/b.png", "x/c.png"], "real", "test")

    folder = store.root / info.id
    assert sorted(p.name for p in folder.iterdir()) == ["annotations.jsonl", "images.npy", "meta.json"]
    assert np.load(folder / "images.npy").dtype == np.uint8
    lines = (folder / "annotations.jsonl").read_text().splitlines()
    assert json.loads(lines[1]) == {"file": "x/b.png", **GAZE[1]}
    meta = json.loads((folder / "meta.json").read_text())
    assert meta == {**info.to_dict(), "kind": "real", "count": 3, "height": 35, "width": 55, "channels": 1}
    assert store.images_path(info.id) == folder / "images.npy"


def test_same_content_gets_the_same_id_and_is_stored_once(store: DatasetStore) -> None:
    images = random_images(3)
    first = store.create_from_arrays(images, GAZE)
    again = store.create_from_arrays(images.copy(), GAZE, source="another")
    assert again == first
    assert [p.name for p in store.root.iterdir()] == [first.id]

    assert store.create_from_arrays(images, GAZE, kind="real").id != first.id
    assert store.create_from_arrays(images, GAZE[::-1]).id != first.id
    assert store.create_from_arrays(images).id != first.id


def test_same_upload_twice_gets_the_same_id(store: DatasetStore) -> None:
    data = zip_file({"a.png": image_file(random_images(1, 4, 4)[0])})
    assert upload(store, "one.zip", data).id == upload(store, "two.zip", data).id


def test_list_shows_complete_datasets_oldest_first(store: DatasetStore) -> None:
    first = store.create_from_arrays(random_images(1, seed=1))
    second = store.create_from_arrays(random_images(1, seed=2))
    (store.root / ".staging-crashed").mkdir()
    assert [info.id for info in store.list()] == [first.id, second.id]


@pytest.mark.parametrize("dataset_id", ["0123456789abcdef", "../data", "nope"])
def test_get_refuses_unknown_id_naming_it(store: DatasetStore, dataset_id: str) -> None:
    with pytest.raises(ClientError) as caught:
        store.get(dataset_id)
    assert caught.value.status_code == 404
    assert (
        caught.value.detail == f"dataset '{dataset_id}' does not exist; GET /datasets lists the stored ones"
    )


def test_delete_removes_the_dataset(store: DatasetStore) -> None:
    info = store.create_from_arrays(random_images(2))
    store.delete(info.id)
    assert store.list() == []
    assert list(store.root.iterdir()) == []
    with pytest.raises(ClientError) as caught:
        store.delete(info.id)
    assert caught.value.status_code == 404


@pytest.mark.parametrize(
    ("images", "annotations", "names", "message"),
    [
        (np.zeros((2, 4, 4), np.float64), None, None, "images holds float64; images must be uint8 (0-255)"),
        (
            np.zeros((4, 4), np.uint8),
            None,
            None,
            "images has shape (4, 4); expected (N, H, W) or (N, H, W, C)",
        ),
        (np.zeros((2, 4, 4, 4), np.uint8), None, None, "with C = 1 or 3"),
        (np.zeros((2, 4, 4), np.uint8), [{}], None, "1 annotations were given for 2 images"),
        (np.zeros((1, 4, 4), np.uint8), [{"file": "x"}], None, "have a 'file' field"),
        (np.zeros((1, 4, 4), np.uint8), [{"x": float("nan")}], None, "are not plain JSON"),
        (np.zeros((2, 4, 4), np.uint8), None, ["a.png", "a.png"], "these repeat: a.png"),
        (np.zeros((1, 4, 4), np.uint8), None, ["../a.png"], "must be relative paths"),
    ],
)
def test_create_from_arrays_refuses_what_is_not_one_dataset(
    store: DatasetStore, images: np.ndarray, annotations: Any, names: Any, message: str
) -> None:
    with pytest.raises(ClientError) as caught:
        store.create_from_arrays(images, annotations, names)
    assert caught.value.status_code == 422
    assert message in caught.value.detail
    assert not store.root.exists() or list(store.root.iterdir()) == []

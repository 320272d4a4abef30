"""Unsafe or oversized uploads are refused before anything is unpacked or stored."""

from __future__ import annotations

import io
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from core.datasets import DatasetStore
from core.errors import ClientError
from core.limits import ByteBudget, Limits
from tests.factories import h5_file, image_file, npz_file, random_images, tar_file, zip_file

PNG = image_file(random_images(1, 4, 6)[0])


def store_with(tmp_path: Path, **limits: int) -> DatasetStore:
    return DatasetStore(tmp_path / "data", Limits(**limits))


def refusal(store: DatasetStore, filename: str, data: bytes, kind: str = "synthetic") -> ClientError:
    """The error the store raises for this upload, after checking that it stored nothing."""
    with pytest.raises(ClientError) as caught:
        store.create_from_upload(filename, io.BytesIO(data), kind)
    assert not store.root.exists() or list(store.root.iterdir()) == []
    return caught.value


def tar_with(*infos: tarfile.TarInfo) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo("ok.png")
        info.size = len(PNG)
        archive.addfile(info, io.BytesIO(PNG))
        for extra in infos:
            archive.addfile(extra)
    return out.getvalue()


def zeros_zip(size: int) -> bytes:
    return zip_file({"a.png": PNG, "padding.npy": bytes(size)})


# ---------------------------------------------------------------- unsafe paths and files
@pytest.mark.parametrize("name", ["../evil.png", "eyes/../../evil.png", "/etc/evil.png", "C:/evil.png"])
@pytest.mark.parametrize("pack", [zip_file, tar_file])
def test_upload_refuses_member_paths_outside_the_archive(tmp_path: Path, name: str, pack: object) -> None:
    data = pack({"ok.png": PNG, name: PNG})  # type: ignore[operator]
    error = refusal(store_with(tmp_path), "eyes.zip" if pack is zip_file else "eyes.tar", data)
    assert error.status_code == 400
    assert name in error.detail
    assert "absolute" in error.detail or "'..'" in error.detail


def test_upload_refuses_symlink_in_zip(tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("ok.png", PNG)
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    error = refusal(store_with(tmp_path), "eyes.zip", out.getvalue())
    assert error.status_code == 400
    assert error.detail == "archive member 'link.png' is a symlink; only regular files are accepted"


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        (tarfile.SYMTYPE, "is a link"),
        (tarfile.LNKTYPE, "is a link"),
        (tarfile.CHRTYPE, "is a device or pipe"),
    ],
)
def test_upload_refuses_links_and_devices_in_tar(tmp_path: Path, kind: bytes, words: str) -> None:
    special = tarfile.TarInfo("eyes/special.png")
    special.type = kind
    special.linkname = "/etc/passwd"
    error = refusal(store_with(tmp_path), "eyes.tar", tar_with(special))
    assert error.status_code == 400
    assert f"archive member 'eyes/special.png' {words}" in error.detail


def test_upload_refuses_encrypted_zip_member(tmp_path: Path) -> None:
    data = bytearray(zip_file({"a.png": PNG}))
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + flag_offset
        data[at] |= 0x1  # the "encrypted" general-purpose flag
    error = refusal(store_with(tmp_path), "eyes.zip", bytes(data))
    assert error.status_code == 400
    assert "'a.png' is encrypted" in error.detail


@pytest.mark.parametrize("filename", ["eyes.zip", "eyes.tar"])
def test_upload_refuses_member_that_appears_twice(tmp_path: Path, filename: str) -> None:
    out = io.BytesIO()
    if filename.endswith(".zip"):
        with zipfile.ZipFile(out, "w") as archive, pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("eyes/a.png", PNG)
            archive.writestr("./eyes/a.png", PNG)
            archive.writestr("eyes/a.png", PNG)
    else:
        out.write(tar_with(tarfile.TarInfo("./ok.png")))
    error = refusal(store_with(tmp_path), filename, out.getvalue())
    assert error.status_code == 400
    assert "appears twice; keep one" in error.detail


# ---------------------------------------------------------------- bombs and limits
def test_upload_refuses_archive_whose_declared_sizes_exceed_the_limit(tmp_path: Path) -> None:
    error = refusal(store_with(tmp_path, max_unpacked_bytes=100_000), "eyes.zip", zeros_zip(200_000))
    assert error.status_code == 413
    assert "unpacks to more than 100000 bytes (SIMGAN_MAX_ARCHIVE_BYTES)" in error.detail


@pytest.mark.parametrize(("filename", "pack"), [("eyes.zip", zip_file), ("eyes.tar.gz", tar_file)])
def test_upload_refuses_archive_that_expands_far_beyond_its_size(
    tmp_path: Path, filename: str, pack: object
) -> None:
    members = {"a.png": PNG, "padding.npy": bytes(500_000)}
    data = pack(members) if pack is zip_file else tar_file(members, "gz")  # type: ignore[operator]
    assert len(data) < 5_000
    error = refusal(store_with(tmp_path, max_ratio=10, ratio_free_bytes=10_000), filename, data)
    assert error.status_code == 413
    assert "decompression bomb" in error.detail


def test_upload_refuses_zip_whose_headers_understate_a_member(tmp_path: Path) -> None:
    data = bytearray(zeros_zip(50_000))
    # Rewrite the padding member's uncompressed size (local header +22, central directory +24) to 100.
    local = data.index(b"PK\x03\x04", data.index(b"PK\x03\x04") + 1)
    central = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 1)
    struct.pack_into("<I", data, local + 22, 100)
    struct.pack_into("<I", data, central + 24, 100)
    error = refusal(store_with(tmp_path), "eyes.zip", bytes(data))
    assert error.status_code == 400
    assert "archive member 'padding.npy' is corrupt" in error.detail


BLANK_MEGAPIXEL = image_file(np.zeros((1024, 1024, 1), np.uint8))
"""A blank 1024x1024 grayscale PNG: about 1 KB that decodes to 1 MiB."""


@pytest.mark.parametrize(("filename", "pack"), [("blank.zip", zip_file), ("blank.tar.gz", tar_file)])
def test_upload_refuses_archive_of_small_pngs_that_decode_to_far_more_than_its_size(
    tmp_path: Path, filename: str, pack: object
) -> None:
    # 1000 blank megapixel PNGs: a few hundred KB that would decode to 1000 MiB. The guard counts
    # each image's pixels from its header before decoding it, so refusal comes after 64 MiB.
    members = {f"{i:04d}.png": BLANK_MEGAPIXEL for i in range(1000)}
    data = pack(members) if pack is zip_file else tar_file(members, "gz")  # type: ignore[operator]
    assert len(data) < 1_500_000
    error = refusal(store_with(tmp_path), filename, data)
    assert error.status_code == 413
    assert "the archive's images decode to more than 100 times" in error.detail
    assert "SIMGAN_MAX_ARCHIVE_RATIO" in error.detail


def test_upload_refuses_gzipped_h5_that_decodes_to_far_more_than_its_size(tmp_path: Path) -> None:
    out = io.BytesIO()
    with h5py.File(out, "w") as file:
        file.create_dataset(
            "images", data=np.zeros((100, 1024, 1024), np.uint8), compression="gzip", chunks=(1, 1024, 1024)
        )
    assert len(out.getvalue()) < 1_000_000  # 100 MiB of pixels
    error = refusal(store_with(tmp_path), "blank.h5", out.getvalue())
    assert error.status_code == 413
    assert "the .h5 file's datasets decode to more than 100 times" in error.detail


def test_upload_refuses_h5_whose_chunks_are_declared_far_larger_than_its_data(tmp_path: Path) -> None:
    out = io.BytesIO()
    with h5py.File(out, "w") as file:
        images = file.create_dataset(
            "images",
            shape=(2, 8, 8),
            maxshape=(None, 8, 8),
            chunks=(100_000, 8, 8),
            dtype="uint8",
            compression="gzip",
        )
        images[:] = 1
    assert len(out.getvalue()) < 100_000  # one 6.4 MB chunk, gzipped
    error = refusal(store_with(tmp_path, ratio_free_bytes=1_000_000), "chunky.h5", out.getvalue())
    assert error.status_code == 413
    assert "chunks of (100000, 8, 8) values" in error.detail


def test_h5_side_datasets_count_against_the_decode_budget(tmp_path: Path) -> None:
    out = io.BytesIO()
    with h5py.File(out, "w") as file:
        file.create_dataset("images", data=np.ones((4, 8, 8), np.uint8))
        file.create_dataset("look_vec", data=np.zeros((4, 64), np.float64), compression="gzip")
    limits = {"ratio_free_bytes": 4 * 8 * 8 + 100, "max_ratio": 0}
    error = refusal(store_with(tmp_path, **limits), "eyes.h5", out.getvalue())
    assert error.status_code == 413


def test_budget_stops_reading_once_the_limit_is_passed_whatever_headers_said() -> None:
    budget = ByteBudget(Limits(max_unpacked_bytes=1_000), upload_bytes=1_000)
    assert budget.read(io.BytesIO(bytes(600))) == bytes(600)
    stream = io.BytesIO(bytes(10_000_000))
    with pytest.raises(ClientError) as caught:
        budget.read(stream)
    assert caught.value.status_code == 413
    assert stream.tell() <= 1_000  # read no further than the 401 bytes left, plus one


@pytest.mark.parametrize(("filename", "pack"), [("eyes.zip", zip_file), ("eyes.tar", tar_file)])
def test_upload_refuses_archive_with_too_many_files(tmp_path: Path, filename: str, pack: object) -> None:
    data = pack({f"{i}.png": PNG for i in range(4)})  # type: ignore[operator]
    error = refusal(store_with(tmp_path, max_members=3), filename, data)
    assert error.status_code == 413
    assert "more than 3 files (SIMGAN_MAX_ARCHIVE_MEMBERS)" in error.detail


def test_upload_refuses_zip_whose_end_record_understates_its_file_count(tmp_path: Path) -> None:
    data = bytearray(zip_file({f"{'x' * 500}{i}.png": PNG for i in range(4)}))
    end = data.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 1, 1)  # entries on this disk, entries in total
    error = refusal(store_with(tmp_path, max_members=3), "eyes.zip", bytes(data))
    assert error.status_code == 413
    assert "more than 3 files" in error.detail


def test_upload_refuses_file_over_the_upload_limit(tmp_path: Path) -> None:
    data = zip_file({"a.png": PNG})
    error = refusal(store_with(tmp_path, max_upload_bytes=len(data) - 1), "eyes.zip", data)
    assert error.status_code == 413
    assert f"the upload is {len(data)} bytes; the most accepted is {len(data) - 1}" in error.detail


def test_upload_refuses_dataset_over_the_pixel_limit(tmp_path: Path) -> None:
    data = zip_file({f"{i}.png": PNG for i in range(3)})  # 3 images of 4x6x1 = 72 values
    error = refusal(store_with(tmp_path, max_dataset_pixels=50), "eyes.zip", data)
    assert error.status_code == 413
    assert "SIMGAN_MAX_DATASET_PIXELS" in error.detail


# ---------------------------------------------------------------- file types
def test_upload_refuses_unknown_file_type_naming_the_accepted_ones(tmp_path: Path) -> None:
    error = refusal(store_with(tmp_path), "eyes.rar", b"Rar!")
    assert error.status_code == 415
    assert error.detail == (
        "'eyes.rar' is not a dataset file type this service reads; "
        "send one of .zip, .tar, .tar.gz, .tgz, .npz, .h5, .hdf5"
    )


@pytest.mark.parametrize("filename", ["eyes.zip", "eyes.tar", "eyes.tgz", "eyes.npz", "eyes.h5"])
def test_upload_refuses_file_that_is_not_what_its_name_says(tmp_path: Path, filename: str) -> None:
    error = refusal(store_with(tmp_path), filename, b"this is plain text, not an archive" * 20)
    assert error.status_code == 400
    assert "not a readable" in error.detail


def test_upload_refuses_empty_file(tmp_path: Path) -> None:
    error = refusal(store_with(tmp_path), "eyes.zip", b"")
    assert error.status_code == 400
    assert error.detail == "the uploaded file is empty"


def test_upload_refuses_truncated_tar_gz(tmp_path: Path) -> None:
    data = tar_file({f"{i}.png": image_file(random_images(1, 40, 40, seed=i)[0]) for i in range(3)}, "gz")
    error = refusal(store_with(tmp_path), "eyes.tar.gz", data[: len(data) // 2])
    assert error.status_code == 400
    assert "corrupt" in error.detail


def test_npz_refuses_pickled_arrays(tmp_path: Path) -> None:
    out = io.BytesIO()
    np.savez(out, images=np.array([{"not": "pixels"}], dtype=object))
    error = refusal(store_with(tmp_path), "eyes.npz", out.getvalue())
    assert error.status_code == 422
    assert error.detail == "'images' holds object; images must be uint8 (0-255)"

    out = io.BytesIO()
    np.savez(out, images=random_images(1), annotations=np.array([{"gaze": 1}], dtype=object))
    error = refusal(store_with(tmp_path), "eyes.npz", out.getvalue())
    assert error.status_code == 422
    assert "'annotations' in the .npz must be one JSON string of a list" in error.detail


def test_npz_refuses_file_without_images(tmp_path: Path) -> None:
    out = io.BytesIO()
    np.savez(out, pictures=random_images(2))
    error = refusal(store_with(tmp_path), "eyes.npz", out.getvalue())
    assert error.status_code == 422
    assert "no 'images' array (found: pictures)" in error.detail


def test_h5_refuses_data_stored_in_other_files(tmp_path: Path) -> None:
    raw = tmp_path / "secret.bin"
    raw.write_bytes(bytes(range(32)))
    out = io.BytesIO()
    with h5py.File(out, "w") as file:
        file.create_dataset("images", shape=(2, 4, 4), dtype="uint8", external=[(str(raw), 0, 32)])
    error = refusal(store_with(tmp_path), "eyes.h5", out.getvalue())
    assert error.status_code == 400
    assert "keeps its data in other files" in error.detail

    out = io.BytesIO()
    with h5py.File(out, "w") as file:
        file["image"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/images")
    error = refusal(store_with(tmp_path), "eyes.h5", out.getvalue())
    assert error.status_code == 400
    assert "must be a dataset stored in the file" in error.detail


def test_h5_refuses_file_without_images(tmp_path: Path) -> None:
    error = refusal(store_with(tmp_path), "eyes.h5", h5_file(random_images(2), key="pixels"))
    assert error.status_code == 422
    assert "no dataset named 'images' or 'image' (found: pixels)" in error.detail


def test_npz_refuses_images_of_more_pixels_than_allowed(tmp_path: Path) -> None:
    error = refusal(
        store_with(tmp_path, max_image_pixels=100), "eyes.npz", npz_file(random_images(2, 20, 20))
    )
    assert error.status_code == 413
    assert "each image in 'images' is 20x20 pixels; the most per image is 100" in error.detail

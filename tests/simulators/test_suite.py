"""The domain suite: every pair's splits are well-formed, deterministic and distinct, and each real
side is drawn by a different renderer (or comes from photographs), not the synthetic side plus noise."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simulators import PAIRS as EXPORTED_PAIRS
from simulators import horizon, photos, shapes
from simulators.eyes import simulate_eyes
from simulators.suite import PAIRS, QUICK, SPLITS, make_split, target_values

CLASSES = {"glyphs8": 10, "glyphs28": 10, "shapes32": 4}


def ink_fraction_per_digit(name: str, split: str) -> np.ndarray:
    """(10,) fraction of pixels at least a quarter bright, per digit, over 200 images."""
    batch = make_split(name, split, 200, seed=0)
    ink = batch.images[..., 0] >= 64
    digits = target_values(PAIRS[name], batch)[:, 0]
    return np.array([ink[digits == d].mean() for d in range(10)])


def slant(images: np.ndarray) -> np.ndarray:
    """(N,) ink-weighted dx/dy of each image: < 0 when the tops of the glyphs lean right (rows go down)."""
    ink = images[..., 0].astype(np.float64)
    rows, cols = np.mgrid[0 : ink.shape[1], 0 : ink.shape[2]]
    mass = ink.sum(axis=(1, 2))
    dx = cols - ((ink * cols).sum(axis=(1, 2)) / mass)[:, None, None]
    dy = rows - ((ink * rows).sum(axis=(1, 2)) / mass)[:, None, None]
    return (ink * dx * dy).sum(axis=(1, 2)) / (ink * dy * dy).sum(axis=(1, 2))


@pytest.fixture
def photo_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in scikit-image install whose data folder holds one flat-coloured photo per name."""
    data = tmp_path / "skimage" / "data"
    data.mkdir(parents=True)
    for i, name in enumerate(photos.PHOTOS):
        Image.new("RGB", (300 + 40 * i, 260), (40 * i, 200 - 30 * i, 90)).save(data / name)
    spec = importlib.machinery.ModuleSpec("skimage", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path / "skimage")]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: spec if name == "skimage" else real_find_spec(name, *a)
    )
    return data


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", list(PAIRS))
def test_every_split_gives_uint8_images_of_the_declared_size_with_their_targets(
    name: str, split: str
) -> None:
    pair = PAIRS[name]

    batch = make_split(name, split, 12, seed=0)

    assert batch.images.shape == (12, pair.height, pair.width, pair.channels)
    assert batch.images.dtype == np.uint8
    assert len(batch.annotations) == 12
    assert np.isfinite(target_values(pair, batch)).all()
    assert pair.kind in ("classification", "regression") and pair.description


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", list(PAIRS))
def test_the_same_seed_gives_identical_bytes_and_another_seed_other_images(name: str, split: str) -> None:
    first, again, other = (make_split(name, split, 8, seed=s) for s in (3, 3, 4))

    assert first.images.tobytes() == again.images.tobytes()
    assert json.dumps(first.annotations) == json.dumps(again.annotations)
    assert not np.array_equal(first.images, other.images)


@pytest.mark.parametrize("name", list(PAIRS))
def test_real_and_held_out_real_images_of_one_seed_share_no_image(name: str) -> None:
    real, heldout = make_split(name, "real", 50, seed=1), make_split(name, "real_heldout", 50, seed=1)

    assert not {image.tobytes() for image in real.images} & {image.tobytes() for image in heldout.images}


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", list(CLASSES))
def test_class_labels_are_in_range_and_all_classes_appear_in_200_images(name: str, split: str) -> None:
    labels = target_values(PAIRS[name], make_split(name, split, 200, seed=2))[:, 0]

    assert set(labels.astype(int)) == set(range(CLASSES[name]))
    assert np.array_equal(labels, labels.astype(int))


def test_shape_names_match_their_class() -> None:
    batch = make_split("shapes32", "real", 40, seed=0)

    assert all(a["shape_name"] == shapes.SHAPES[a["shape"]] for a in batch.annotations)


@pytest.mark.parametrize("split", SPLITS)
def test_tilts_spread_over_the_whole_range(split: str) -> None:
    tilt = target_values(PAIRS["horizon64"], make_split("horizon64", split, 200, seed=0))[:, 0]

    assert tilt.min() >= -horizon.TILT and tilt.max() <= horizon.TILT
    assert tilt.min() < -25 and tilt.max() > 25


def test_the_eyes_pair_is_the_eye_simulator_at_gap_one() -> None:
    assert (
        make_split("eyes", "synthetic", 5, seed=7).images.tobytes()
        == simulate_eyes(5, "synthetic", 7).images.tobytes()
    )
    assert (
        make_split("eyes", "real", 5, seed=7).images.tobytes() == simulate_eyes(5, "real", 7).images.tobytes()
    )


@pytest.mark.parametrize("name", ["glyphs8", "glyphs28"])
def test_real_glyph_strokes_are_wider_than_the_fonts_for_every_digit(name: str) -> None:
    ratio = ink_fraction_per_digit(name, "real") / ink_fraction_per_digit(name, "synthetic")

    assert ratio.min() > (1.15 if name == "glyphs8" else 1.0)


def test_real_28px_digits_lean_right_where_the_font_stands_upright() -> None:
    synthetic = slant(make_split("glyphs28", "synthetic", 200, seed=0).images)
    real = slant(make_split("glyphs28", "real_heldout", 200, seed=0).images)

    assert abs(synthetic.mean()) < 0.08
    assert real.mean() < -0.15


def test_real_shapes_are_flattened_where_synthetic_ones_keep_their_proportions() -> None:
    circles = np.zeros(60, dtype=np.int64)

    def height_over_width(style: shapes.ShapeStyle) -> float:
        cover, _ = shapes.masks(circles, style, np.random.default_rng(0))
        inside = cover > 0.5
        return float(inside.any(axis=2).sum(axis=1).mean() / inside.any(axis=1).sum(axis=1).mean())

    assert height_over_width(shapes.SHAPES32["synthetic"]) == pytest.approx(1.0, abs=0.05)
    assert height_over_width(shapes.SHAPES32["real"]) < 0.85


def test_real_shapes_lie_on_textured_cloth_and_synthetic_ones_on_a_plain_background() -> None:
    def corner_spread(split: str) -> np.ndarray:
        images = make_split("shapes32", split, 100, seed=0).images.astype(np.float64)
        return images[:, :5, :5].std(axis=(1, 2)).max(axis=1)  # a corner the shape never reaches

    assert corner_spread("synthetic").max() == 0
    assert np.median(corner_spread("real")) > 3


def test_horizon_crops_are_cut_from_the_photo_files(photo_folder: Path) -> None:
    batch = make_split("horizon64", "real", 60, seed=0)

    for image, annotation in zip(batch.images, batch.annotations, strict=True):
        colour = Image.open(photo_folder / annotation["photo"]).getpixel((0, 0))
        assert np.abs(image.astype(int) - np.array(colour)).max() <= 1
    assert {a["photo"] for a in batch.annotations} == set(photos.PHOTOS)


def test_held_out_photo_windows_are_centred_on_the_other_cells() -> None:
    photo = Image.new("RGB", (400, 300))
    cell = photos.CELL * 300
    footprints = np.full(500, 150.0)

    for heldout in (False, True):
        centres = photos.centres(photo, footprints, heldout, np.random.default_rng(0))
        colour = np.floor(centres / cell).sum(axis=1) % 2
        assert np.all(colour == heldout)
        assert np.all((centres >= 75) & (centres <= np.array([325, 225])))


def test_scenes_and_photos_turn_the_same_way_for_one_tilt() -> None:
    tilts = np.array([-20.0, 0.0, 20.0])
    p = horizon.sample_scenes(3, np.random.default_rng(0))
    p["tilt"], p["horizon"] = tilts, np.zeros(3, dtype=np.float32)
    for name in ("sky_top", "sky_low", "fog_colour"):
        p[name][:] = 1
    for name in ("ground_far", "ground_near", "furrows", "fog", "half_width"):
        p[name][:] = 0
    scenes = horizon.render(p)[0]  # (3, 64, 64): white sky over a black ground
    half = np.zeros((400, 400, 3), dtype=np.uint8)
    half[:200] = 255
    photo = Image.fromarray(half)  # a photo of the same, cropped about its horizon
    footprint = int(np.ceil(150 * np.sqrt(2))) + 1
    corner = 200 - footprint // 2
    crops = [photos.crop(photo, corner, corner, 150, float(t))[..., 0] / 255 for t in tilts]

    for scene, crop in zip(scenes, crops, strict=True):
        assert np.mean((scene > 0.5) != (crop > 0.5)) < 0.03
    assert scenes[2][32, 58] < 0.5 < scenes[2][32, 5]  # tilt 20: the horizon rises to the right


def test_a_missing_scikit_image_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real_find_spec(name, *a)
    )

    with pytest.raises(photos.PhotosMissing, match="pip install scikit-image"):
        make_split("horizon64", "real_heldout", 4, seed=0)
    assert make_split("horizon64", "synthetic", 4, seed=0).images.shape == (4, 64, 64, 3)


def test_a_data_folder_without_the_photos_names_the_missing_files(photo_folder: Path) -> None:
    (photo_folder / "rocket.jpg").unlink()

    with pytest.raises(photos.PhotosMissing, match=r"lacks rocket\.jpg.*pip install scikit-image"):
        make_split("horizon64", "real", 4, seed=0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("mnist", "real", 4, 0), "unknown pair 'mnist'"),
        (("glyphs8", "test", 4, 0), "unknown split 'test'"),
        (("glyphs8", "real", 0, 0), "count must be a positive"),
        (("glyphs8", "real", 4, -1), "seed must be a whole number"),
    ],
)
def test_make_split_refuses_bad_arguments_by_name(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_split(*args)


def test_the_quick_pairs_are_suite_pairs_and_the_package_exports_the_suite() -> None:
    assert set(QUICK) <= set(PAIRS)
    assert EXPORTED_PAIRS is PAIRS

"""The built-in eye simulator: deterministic, labels that match the pictures, a measurable domain gap."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simgan.cli import main
from simulators import SIMULATORS, ImageBatch, save_npz, simulate, simulate_eyes
from simulators.eyes import (
    EYELID_POINTS,
    Scene,
    annotate,
    eyelid_points,
    iris_centres,
    render_scenes,
    sample_scenes,
)


def scenes(count: int = 40, **fixed: float) -> Scene:
    """Random scenes with some parameters (e.g. yaw in radians) set to one value for all."""
    scene = sample_scenes(count, np.random.default_rng(7))
    for name, value in fixed.items():
        scene[name] = np.full(count, value, dtype=np.float32)
    return scene


def noise_std(images: np.ndarray) -> float:
    """Robust pixel-noise estimate: median absolute 2x2 diagonal difference, scaled to a Gaussian std."""
    x = images[..., 0].astype(np.float32)
    diagonal = (x[:, 1:, 1:] - x[:, :-1, 1:] - x[:, 1:, :-1] + x[:, :-1, :-1]) / 2
    return float(np.median(np.abs(diagonal)) * 1.4826)


@pytest.mark.parametrize("domain", ["synthetic", "real"])
def test_same_seed_gives_identical_bytes(domain: str) -> None:
    first, second = simulate_eyes(20, domain, seed=3), simulate_eyes(20, domain, seed=3)

    assert first.images.tobytes() == second.images.tobytes()
    assert json.dumps(first.annotations) == json.dumps(second.annotations)


@pytest.mark.parametrize("domain", ["synthetic", "real"])
def test_different_seeds_give_different_images_and_labels(domain: str) -> None:
    first, second = simulate_eyes(20, domain, seed=1), simulate_eyes(20, domain, seed=2)

    assert not np.array_equal(first.images, second.images)
    assert first.annotations != second.annotations


@pytest.mark.parametrize("domain", ["synthetic", "real"])
def test_images_are_uint8_eye_crops_with_one_annotation_each(domain: str) -> None:
    batch = simulate("eyes", 5, domain, seed=0)

    assert isinstance(batch, ImageBatch)
    assert batch.images.shape == (5, 35, 55, 1)
    assert batch.images.dtype == np.uint8
    assert len(batch.annotations) == len(batch) == 5
    first = batch.annotations[0]
    assert set(first) == {"gaze", "keypoints"}
    assert set(first["gaze"]) == {"pitch", "yaw"}
    assert set(first["keypoints"]) == {"iris_center", "eyelid_upper", "eyelid_lower"}
    assert len(first["keypoints"]["eyelid_upper"]) == len(first["keypoints"]["eyelid_lower"]) == EYELID_POINTS
    assert batch.gaze.shape == (5, 2)


@pytest.mark.parametrize("domain", ["synthetic", "real"])
def test_keypoints_lie_inside_the_image(domain: str) -> None:
    batch = simulate_eyes(2000, domain, seed=5)

    points = np.array(
        [
            [a["keypoints"]["iris_center"], *a["keypoints"]["eyelid_upper"], *a["keypoints"]["eyelid_lower"]]
            for a in batch.annotations
        ]
    )  # (N, 1 + 2 * EYELID_POINTS, 2)
    assert points[..., 0].min() >= 0 and points[..., 0].max() <= 54
    assert points[..., 1].min() >= 0 and points[..., 1].max() <= 34


def test_iris_centre_label_moves_right_with_yaw_and_up_with_pitch() -> None:
    batch = simulate_eyes(1000, "synthetic", seed=11)
    keypoints = [a["keypoints"] for a in batch.annotations]
    # Offsets from the midpoint of the eye corners remove where the eye sits in the crop.
    corners = np.array([[k["eyelid_upper"][0], k["eyelid_upper"][-1]] for k in keypoints]).mean(axis=1)
    offset = np.array([k["iris_center"] for k in keypoints]) - corners
    pitch, yaw = batch.gaze[:, 0], batch.gaze[:, 1]

    assert np.corrcoef(yaw, offset[:, 0])[0, 1] > 0.9
    assert np.corrcoef(pitch, offset[:, 1])[0, 1] < -0.9


def test_rendered_iris_sits_at_the_labelled_centre_when_the_gaze_turns() -> None:
    left, right = scenes(yaw=np.radians(-25), pitch=0.0), scenes(yaw=np.radians(25), pitch=0.0)
    image_left = render_scenes(left)[..., 0].astype(np.float32)
    image_right = render_scenes(right)[..., 0].astype(np.float32)
    # Where the right-looking eye is darker than the left-looking one, its iris has arrived.
    arrived = np.clip(image_left - image_right, 0, None)  # (N, H, W)
    centroid_x = (arrived * np.arange(55)).sum(axis=(1, 2)) / arrived.sum(axis=(1, 2))

    assert np.all(iris_centres(right)[:, 0] > iris_centres(left)[:, 0])
    assert np.abs(centroid_x - iris_centres(right)[:, 0]).mean() < 1.5


def test_eyelids_rise_when_the_eye_looks_up() -> None:
    up_upper, up_lower = eyelid_points(scenes(pitch=np.radians(20)))
    down_upper, down_lower = eyelid_points(scenes(pitch=np.radians(-20)))
    middle = EYELID_POINTS // 2

    assert np.all(up_upper[:, middle, 1] < down_upper[:, middle, 1])
    assert np.all(up_lower[:, middle, 1] < down_lower[:, middle, 1])
    # The upper lid moves more than the lower one, so the eye opens wider looking up.
    assert np.all(
        up_lower[:, middle, 1] - up_upper[:, middle, 1] > down_lower[:, middle, 1] - down_upper[:, middle, 1]
    )
    # Corners stay where they are.
    np.testing.assert_allclose(up_upper[:, 0], down_upper[:, 0], atol=1e-4)


def test_annotations_are_the_scene_labels_in_degrees_and_pixels() -> None:
    scene = scenes(3, pitch=np.radians(10), yaw=np.radians(-5))

    first = annotate(scene)[0]

    assert first["gaze"] == {"pitch": pytest.approx(10, abs=1e-3), "yaw": pytest.approx(-5, abs=1e-3)}
    assert first["keypoints"]["iris_center"] == pytest.approx(iris_centres(scene)[0].tolist(), abs=1e-3)


def test_domains_share_the_label_distribution() -> None:
    synthetic, real = simulate_eyes(2000, "synthetic", seed=4).gaze, simulate_eyes(2000, "real", seed=4).gaze

    np.testing.assert_allclose(synthetic.mean(axis=0), real.mean(axis=0), atol=1.5)
    np.testing.assert_allclose(synthetic.std(axis=0), real.std(axis=0), rtol=0.1)


def test_real_domain_is_noisier_than_synthetic() -> None:
    synthetic = simulate_eyes(300, "synthetic", seed=2).images

    for gap in (0.5, 1.0, 2.0):
        assert noise_std(simulate_eyes(300, "real", seed=2, gap=gap).images) > 2 * noise_std(synthetic)


def test_real_render_departs_from_the_clean_render_more_as_the_gap_grows() -> None:
    scene = scenes(100)
    clean = render_scenes(scene, "synthetic").astype(np.float32)

    departures = [
        np.abs(render_scenes(scene, "real", gap=gap, seed=1).astype(np.float32) - clean).mean()
        for gap in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
    ]

    assert departures[0] == 0
    assert all(a < b for a, b in itertools.pairwise(departures))


def test_real_at_gap_zero_renders_exactly_like_synthetic() -> None:
    scene = scenes(50)

    np.testing.assert_array_equal(render_scenes(scene, "real", gap=0.0), render_scenes(scene, "synthetic"))


def test_real_at_gap_zero_has_synthetic_image_statistics() -> None:
    synthetic = simulate_eyes(500, "synthetic", seed=9).images
    real = simulate_eyes(500, "real", seed=9, gap=0.0).images

    assert abs(float(synthetic.mean()) - float(real.mean())) < 3
    assert noise_std(real) == pytest.approx(noise_std(synthetic), abs=0.5)


def test_unknown_simulator_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match=r"unknown simulator 'hands'.*eyes"):
        simulate("hands", 2, "synthetic", 0)


def test_unknown_domain_is_refused_with_the_known_domains() -> None:
    with pytest.raises(ValueError, match=r"unknown domain 'sim'.*synthetic, real"):
        simulate("eyes", 2, "sim", 0)


@pytest.mark.parametrize(
    ("count", "seed", "gap", "message"),
    [(0, 0, 1.0, "count"), (2, -1, 1.0, "seed"), (2, 0, -0.5, "gap"), (2, 0, float("nan"), "gap")],
)
def test_bad_count_seed_or_gap_is_refused_by_name(count: int, seed: int, gap: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulate_eyes(count, "real", seed=seed, gap=gap)


def test_simulators_registry_names_the_eye_simulator() -> None:
    assert SIMULATORS["eyes"] is simulate_eyes


def test_save_npz_writes_images_and_annotations_that_load_without_pickle(tmp_path: Path) -> None:
    batch = simulate_eyes(4, "real", seed=1)

    path = save_npz(tmp_path / "sub" / "eyes.npz", batch.images, batch.annotations)

    with np.load(path, allow_pickle=False) as data:
        np.testing.assert_array_equal(data["images"], batch.images)
        assert json.loads(str(data["annotations"])) == batch.annotations
    assert [p.name for p in path.parent.iterdir()] == ["eyes.npz"]


def test_save_npz_refuses_a_different_number_of_annotations(tmp_path: Path) -> None:
    batch = simulate_eyes(3)

    with pytest.raises(ValueError, match="2 annotations for 3 images"):
        save_npz(tmp_path / "eyes.npz", batch.images, batch.annotations[:2])


def test_cli_writes_a_loadable_npz_with_one_annotation_per_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "real.npz"

    code = main(
        [
            "simulate",
            "eyes",
            "--domain",
            "real",
            "--count",
            "12",
            "--seed",
            "3",
            "--gap",
            "0.5",
            "--out",
            str(out),
        ]
    )

    assert code == 0
    assert "wrote 12 real eyes images" in capsys.readouterr().out
    with np.load(out) as data:
        assert data["images"].shape == (12, 35, 55, 1)
        annotations = json.loads(str(data["annotations"]))
    assert len(annotations) == 12
    assert annotations == simulate_eyes(12, "real", seed=3, gap=0.5).annotations


def test_cli_grid_shows_both_domains_upscaled(tmp_path: Path) -> None:
    grid = tmp_path / "grid.png"

    assert main(["simulate", "eyes", "--seed", "1", "--grid", str(grid)]) == 0

    with Image.open(grid) as picture:
        assert picture.mode == "L"
        # Four lines of eight 55x35 images at 4x, with gutters and a label column.
        assert picture.width > 8 * 55 * 4 and picture.height > 4 * 35 * 4


def test_cli_refuses_unknown_domain_and_missing_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "eyes", "--domain", "sim", "--grid", "x.png"]) == 2
    assert "unknown domain 'sim'" in capsys.readouterr().err
    assert main(["simulate", "eyes"]) == 2
    assert "--out" in capsys.readouterr().err


def test_importing_and_running_the_simulators_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import simgan.commands.simulate, simulators, simulators.grid\n"
        "simulators.simulate('eyes', 2, 'real', 0)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr

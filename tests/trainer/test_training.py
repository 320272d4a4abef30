from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import onnxruntime as ort
import pytest
import torch

from core.layout import ARTIFACTS_DIR, CURVES_NAME, SAMPLES_NAME
from core.settings import Settings
from core.train_config import ConfigError, TrainConfig
from models import Registry
from simgan.cli import main
from tests.factories import TINY, tiny_config, tiny_images
from trainer.artifacts import sample_grid
from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.data import DataError, load_images
from trainer.export import publish_checkpoint
from trainer.networks import RefinerConfig, build_refiner
from trainer.run import PHASES, SimGAN
from trainer.selection import CRITERION
from trainer.training import Hooks, Progress, TrainingError, TrainResult, sample_rows, train


def _train(
    tmp_path: Path,
    config: TrainConfig,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    steps_only: bool = True,
    **kwargs: Any,
) -> TrainResult:
    """`progress` hears of each step done; with steps_only=False also of the start and of selecting."""
    kwargs.setdefault("workdir", tmp_path / "run")
    if progress is not None and steps_only:
        heard = progress
        progress = lambda p: heard(p) if p.losses and p.phase != "selecting" else None  # noqa: E731
    hooks = Hooks(progress=progress, should_stop=should_stop)
    return train(config, tiny_images(1), tiny_images(2), hooks=hooks, **kwargs)


def test_training_ends_at_a_checkpoint_whose_published_model_matches_torch(tmp_path: Path) -> None:
    result = _train(tmp_path, tiny_config())
    assert (result.stopped, result.step) == (False, 6)
    assert result.checkpoint == tmp_path / "run" / "checkpoint.pt"
    registry = Registry(tmp_path / "models")
    assert publish_checkpoint(result.checkpoint, registry).version == "v1"
    state = load_checkpoint(result.checkpoint)
    refiner = build_refiner(RefinerConfig(**state["refiner_config"]))
    refiner.load_state_dict(state["refiner"])
    image = tiny_images(3, count=2)
    (onnx_out,) = ort.InferenceSession(str(registry.onnx_path("v1")), providers=["CPUExecutionProvider"]).run(
        ["refined"], {"image": image}
    )
    with torch.no_grad():
        y = refiner(torch.from_numpy(image).permute(0, 3, 1, 2).float() / 127.5 - 1)
    expected = torch.round((y + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(onnx_out.astype(int) - expected.astype(int)).max() <= 1
    card = registry.get("v1")
    assert card.steps_trained == 6
    assert card.config == tiny_config().to_dict()
    assert card.final_losses == result.final_losses
    assert [d["kind"] for d in card.datasets] == ["synthetic", "real"]


def test_progress_reports_every_step_through_the_three_phases(tmp_path: Path) -> None:
    reports: list[Progress] = []
    _train(tmp_path, tiny_config(), progress=reports.append, steps_only=False)
    assert [p.step for p in reports] == [0, 1, 2, 3, 4, 5, 6]  # step 0: before the first step is timed
    assert {p.total_steps for p in reports} == {6}
    assert [p.phase for p in reports] == [PHASES[0], PHASES[0], PHASES[1], *[PHASES[2]] * 4]
    assert reports[0].eta_seconds is None and reports[0].losses == {}
    assert set(reports[1].losses) == {"self_regularization", "refiner"}
    assert {"refiner_adversarial", "discriminator", "discriminator_accuracy"} <= set(reports[-1].losses)
    assert reports[-1].eta_seconds == 0
    assert all(p.eta_seconds is not None and p.eta_seconds >= 0 for p in reports[1:])


def test_should_stop_leaves_a_checkpoint_to_resume_from(tmp_path: Path) -> None:
    steps: list[int] = []
    result = _train(
        tmp_path,
        tiny_config(),
        progress=lambda p: steps.append(p.step),
        should_stop=lambda: len(steps) >= 3,
    )
    assert (result.stopped, result.step) == (True, 3)
    assert load_checkpoint(result.checkpoint)["step"] == 3


def test_on_checkpoint_hears_of_every_checkpoint_once_it_is_written(tmp_path: Path) -> None:
    heard: list[tuple[int, int]] = []

    def checkpointed(run: SimGAN, path: Path) -> None:
        heard.append((run.step, load_checkpoint(path)["step"]))

    hooks = Hooks(on_checkpoint=checkpointed)
    train(tiny_config(checkpoint_every=2), tiny_images(1), tiny_images(2), workdir=tmp_path, hooks=hooks)
    assert heard == [(2, 2), (4, 4), (6, 6)]


@pytest.mark.parametrize("instance_noise", [0.0, 0.3])
def test_resume_continues_with_exactly_the_losses_of_an_uninterrupted_run(
    tmp_path: Path, instance_noise: float
) -> None:
    # Exact resume is promised for fp32 (reduced precisions and cuDNN are not bit-reproducible).
    config = tiny_config(instance_noise=instance_noise, precision="fp32")
    straight: list[Progress] = []
    _train(tmp_path / "straight", config, progress=straight.append)
    interrupted: list[Progress] = []
    first = _train(
        tmp_path / "resumed",
        config,
        progress=interrupted.append,
        should_stop=lambda: len(interrupted) >= 3,
    )
    # The history is full at the break (4 slots, 2 pushes per D step), so resuming must also
    # restore where random overwrites go.
    assert len(load_checkpoint(first.checkpoint)["history"]["images"]) == 4
    resumed: list[Progress] = []
    _train(tmp_path / "resumed", config, resume=first.checkpoint, progress=resumed.append)
    assert [p.step for p in resumed] == [4, 5, 6]
    assert [p.losses for p in resumed] == [p.losses for p in straight[3:]]


def test_a_resumed_run_logs_the_same_loss_curve_as_an_uninterrupted_one(tmp_path: Path) -> None:
    straight = _train(tmp_path / "straight", tiny_config())
    seen: list[Progress] = []
    first = _train(
        tmp_path / "resumed", tiny_config(), progress=seen.append, should_stop=lambda: len(seen) >= 3
    )
    resumed = _train(tmp_path / "resumed", tiny_config(), resume=first.checkpoint)

    log = load_checkpoint(resumed.checkpoint)["loss_log"]
    assert log == load_checkpoint(straight.checkpoint)["loss_log"]
    assert [entry["step"] for entry in log] == [1, 2, 3, 4, 5, 6]
    assert "discriminator_accuracy" in log[-1] and "self_regularization" in log[0]


def test_every_run_draws_its_sample_grid_and_loss_curves(tmp_path: Path) -> None:
    result = _train(tmp_path, tiny_config())

    assert set(result.artifacts) == {SAMPLES_NAME, CURVES_NAME}
    for name, path in result.artifacts.items():
        assert path == tmp_path / "run" / ARTIFACTS_DIR / name
        assert path.read_bytes().startswith(b"\x89PNG")


def test_the_final_sample_grid_shows_the_refiner_that_gets_published(tmp_path: Path) -> None:
    result = _train(tmp_path, tiny_config(checkpoint_every=2), selector=EarliestSelector())
    registry = Registry(tmp_path / "models")
    card = publish_checkpoint(result.checkpoint, registry)
    seed = tiny_config().seed
    synthetic, real = tiny_images(1)[sample_rows(16, seed)], tiny_images(2)[sample_rows(16, seed + 1)]

    session = ort.InferenceSession(str(registry.onnx_path(card.version)))
    published = session.run(None, {"image": synthetic})[0]

    chosen = load_checkpoint(result.checkpoint)["selection"]["step"]
    title = f"run - step 6 - to publish: the refiner of step {chosen}"  # the workdir's name, the step
    assert result.artifacts[SAMPLES_NAME].read_bytes() == sample_grid(synthetic, published, real, title=title)


def test_instance_noise_is_what_the_discriminator_sees_on_top_of_both_domains() -> None:
    images = torch.zeros(64, 1, 12, 16)  # (B, C, H, W)
    plain = SimGAN(tiny_config(instance_noise=0), tiny_images(1), tiny_images(2), torch.device("cpu"))
    noisy = SimGAN(tiny_config(instance_noise=0.2), tiny_images(1), tiny_images(2), torch.device("cpu"))

    assert plain.seen_by_discriminator(images) is images
    seen = noisy.seen_by_discriminator(images)
    assert seen.shape == images.shape
    assert float(seen.std()) == pytest.approx(0.2, rel=0.05)
    assert not torch.equal(seen, noisy.seen_by_discriminator(images))  # fresh noise at every call


def test_instance_noise_changes_training(tmp_path: Path) -> None:
    plain = _train(tmp_path / "plain", tiny_config(instance_noise=0))
    noisy = _train(tmp_path / "noisy", tiny_config(instance_noise=0.5))
    assert plain.final_losses["discriminator"] != noisy.final_losses["discriminator"]


def _as_if_saved_before_instance_noise(checkpoint: Path) -> None:
    state = load_checkpoint(checkpoint)
    del state["config"]["instance_noise"]
    save_checkpoint(checkpoint, state)


def test_a_checkpoint_from_before_instance_noise_resumes_without_it(tmp_path: Path) -> None:
    config = tiny_config(instance_noise=0)
    straight: list[Progress] = []
    _train(tmp_path / "straight", config, progress=straight.append)
    seen: list[Progress] = []
    first = _train(tmp_path / "old", config, progress=seen.append, should_stop=lambda: len(seen) >= 3)
    _as_if_saved_before_instance_noise(first.checkpoint)

    with pytest.raises(ConfigError, match="different instance_noise"):
        _train(tmp_path / "old", tiny_config(instance_noise=0.25), resume=first.checkpoint)
    saved = TrainConfig.from_saved(load_checkpoint(first.checkpoint)["config"])
    assert saved.instance_noise == 0
    resumed: list[Progress] = []
    _train(tmp_path / "old", saved, resume=first.checkpoint, progress=resumed.append)
    assert [p.losses for p in resumed] == [p.losses for p in straight[3:]]


def test_resume_refuses_a_config_that_changes_the_run(tmp_path: Path) -> None:
    first = _train(tmp_path, tiny_config(), should_stop=lambda: True)
    with pytest.raises(ConfigError, match="different lambda_reg, seed"):
        _train(tmp_path, tiny_config(seed=5, lambda_reg=0.1), resume=first.checkpoint)


def test_training_with_the_same_seed_is_deterministic(tmp_path: Path) -> None:
    runs = [_train(tmp_path / str(i), tiny_config(steps=1)).final_losses for i in range(2)]
    assert runs[0] == runs[1]


def test_training_refuses_datasets_with_different_channel_counts(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="same channel count"):
        train(
            tiny_config(),
            tiny_images(1, channels=3),
            tiny_images(2, channels=1),
            workdir=tmp_path,
        )


def test_training_on_colour_images_with_channel_mean_regularization(tmp_path: Path) -> None:
    config = tiny_config(regularization_space="channel_mean", optimizer="sgd", steps=1)
    result = train(config, tiny_images(1, channels=3), tiny_images(2, channels=3), workdir=tmp_path)
    assert publish_checkpoint(result.checkpoint, Registry(tmp_path / "models")).io.channels == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a usable CUDA device")
def test_training_on_cuda_publishes_a_model(tmp_path: Path) -> None:
    result = _train(tmp_path, tiny_config(device="cuda"))
    card = publish_checkpoint(result.checkpoint, Registry(tmp_path / "models"))
    assert card.version == "v1"
    assert card.parity_max_abs_error <= 1


# ---------------------------------------------------------------- datasets (trainer/data.py)


def test_npz_dataset_gets_a_channel_axis_and_its_annotations(tmp_path: Path) -> None:
    path = tmp_path / "eyes.npz"
    annotations = [{"gaze": {"pitch": 1.0, "yaw": -2.0}}, {"gaze": {"pitch": 0.0, "yaw": 3.0}}]
    np.savez(path, images=np.zeros((2, 35, 55), np.uint8), annotations=json.dumps(annotations))
    loaded = load_images(path)
    assert loaded.images.shape == (2, 35, 55, 1)
    assert loaded.annotations == annotations


def test_h5_dataset_is_read_from_its_image_dataset(tmp_path: Path) -> None:
    path = tmp_path / "real_gaze.h5"
    with h5py.File(path, "w") as f:
        f["image"] = np.full((3, 35, 55), 7, np.uint8)
    loaded = load_images(path)
    assert loaded.images.shape == (3, 35, 55, 1)
    assert loaded.annotations is None


def test_stored_dataset_directory_gives_names_and_annotations(tmp_path: Path) -> None:
    np.save(tmp_path / "images.npy", np.zeros((2, 8, 8, 3), np.uint8))
    lines = [{"file": "a.png", "gaze": 1}, {"file": "b/c.png", "gaze": 2}]
    (tmp_path / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    loaded = load_images(tmp_path)
    assert loaded.images.shape == (2, 8, 8, 3)
    assert loaded.names == ["a.png", "b/c.png"]
    assert loaded.annotations == [{"gaze": 1}, {"gaze": 2}]


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 8, 8, 2), np.uint8), "C = 1 or 3"),
        (np.zeros((2, 8, 8), np.float32), "pixels must be uint8"),
        (np.zeros((0, 8, 8), np.uint8), "holds no images"),
    ],
)
def test_unusable_datasets_are_refused_with_what_to_fix(
    tmp_path: Path, images: np.ndarray, message: str
) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, images=images)
    with pytest.raises(DataError, match=message):
        load_images(path)


def test_unknown_dataset_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "eyes.csv"
    path.write_text("1,2,3")
    with pytest.raises(DataError, match="unsupported dataset format"):
        load_images(path)


# ---------------------------------------------------------------- `simgan train`


def _npz(path: Path, seed: int) -> Path:
    np.savez(path, images=tiny_images(seed)[..., 0])
    return path


def test_train_command_publishes_into_the_registry(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    synthetic, real = _npz(tmp_path / "syn.npz", 1), _npz(tmp_path / "real.npz", 2)
    pairs = [f"{k}={v}" for k, v in TINY.items() if k != "steps"]
    argv = ["train", "--synthetic", str(synthetic), "--real", str(real), "--steps", "1", "--config", *pairs]
    assert main([*argv, "--workdir", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    assert "published v1" in out
    assert f"samples.png: {tmp_path / 'run' / 'artifacts' / 'samples.png'}" in err
    card = Registry(settings.models_path).get("latest")
    assert card.steps_trained == 3
    assert card.datasets[0]["source"] == str(synthetic)
    assert card.selection is not None and card.selection["criterion"] == CRITERION


def test_train_command_without_selection_publishes_the_last_step(tmp_path: Path, settings: Settings) -> None:
    synthetic, real = _npz(tmp_path / "syn.npz", 1), _npz(tmp_path / "real.npz", 2)
    pairs = [f"{k}={v}" for k, v in TINY.items() if k != "steps"]
    argv = ["train", "--synthetic", str(synthetic), "--real", str(real), "--steps", "1", "--config", *pairs]
    assert main([*argv, "--workdir", str(tmp_path / "run"), "--no-select"]) == 0
    assert Registry(settings.models_path).get("latest").selection == {"criterion": "last", "step": 3}


def test_train_command_refuses_unknown_config_keys_by_name(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    synthetic, real = _npz(tmp_path / "syn.npz", 1), _npz(tmp_path / "real.npz", 2)
    argv = ["train", "--synthetic", str(synthetic), "--real", str(real), "--config", "lr=0.1"]
    assert main(argv) == 2
    assert (
        "unknown config key(s): 'lr' (did you mean refiner_lr or discriminator_lr?)"
        in capsys.readouterr().err
    )
    assert Registry(settings.models_path).versions() == []


class EarliestSelector:
    """A checkpoint selector that prefers the earliest checkpoint it sees."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.best_state: dict[str, torch.Tensor] | None = None

    def consider(self, step: int, refiner: torch.nn.Module) -> bool:
        self.steps.append(step)
        if self.best_state is not None:
            return False
        self.best_state = {k: v.detach().clone() for k, v in refiner.state_dict().items()}
        return True

    def summary(self) -> dict[str, Any]:
        return {"criterion": "earliest", "step": self.steps[0] if self.steps else None}

    def verdict(self) -> dict[str, Any]:
        return {"verdict": "improved", "basis": "test", "numbers": {}, "why": "the earliest", "try": []}

    def state_dict(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "best_state": self.best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.best_state = list(state["steps"]), state["best_state"]


def test_a_selector_scores_every_scheduled_checkpoint_and_its_choice_is_published(tmp_path: Path) -> None:
    selector = EarliestSelector()
    result = _train(tmp_path, tiny_config(checkpoint_every=2, refiner_residual=False), selector=selector)
    assert selector.steps == [2, 4, 6]
    card = publish_checkpoint(result.checkpoint, Registry(tmp_path / "models"))
    assert card.selection == {"criterion": "earliest", "step": 2}
    assert card.steps_trained == 6
    state = load_checkpoint(result.checkpoint)
    assert state["selected_refiner"].keys() == state["refiner"].keys()
    assert not torch.equal(state["selected_refiner"]["head.weight"], state["refiner"]["head.weight"])


def test_a_resumed_selector_goes_on_from_its_checkpointed_state(tmp_path: Path) -> None:
    seen: list[int] = []
    first = _train(
        tmp_path,
        tiny_config(checkpoint_every=2),
        selector=EarliestSelector(),
        progress=lambda p: seen.append(p.step),
        should_stop=lambda: len(seen) >= 3,
    )
    selector = EarliestSelector()
    _train(tmp_path, tiny_config(checkpoint_every=2), selector=selector, resume=first.checkpoint)
    assert selector.steps == [0, 2, 4, 6]  # the untrained (identity) refiner, then each checkpoint


def test_a_residual_run_offers_the_identity_to_its_selector_before_training(tmp_path: Path) -> None:
    selector = EarliestSelector()
    result = _train(tmp_path, tiny_config(checkpoint_every=2), selector=selector)
    assert selector.steps == [0, 2, 4, 6]
    card = publish_checkpoint(result.checkpoint, Registry(tmp_path / "models"))
    synthetic = tiny_images(1)
    session = ort.InferenceSession(str(Registry(tmp_path / "models").onnx_path(card.version)))
    assert np.array_equal(session.run(None, {"image": synthetic})[0], synthetic)

"""The S+U training loop (SimGAN, Algorithm 1): one function for the CLI and the job queue.

`train()` ends at a checkpoint holding the selected refiner's weights; its callers publish that
checkpoint (trainer.export.publish_checkpoint), so training never touches the registry.

The run itself (R, D, the two steps) is trainer.run.SimGAN.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from core.layout import ARTIFACTS_DIR, CHECKPOINT_NAME
from core.train_config import LEGACY_VALUES, ConfigError, TrainConfig
from trainer.artifacts import Marks, write_artifacts
from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.data import as_nhwc
from trainer.device import resolve_device
from trainer.eta import Eta, step_weights
from trainer.export import dataset_entry
from trainer.label_keeper import build_keeper
from trainer.refining import refine_with_module
from trainer.run import PHASES, SimGAN

log = logging.getLogger(__name__)

ARTIFACT_SAMPLES = 8
"""Rows of the sample grid written with every checkpoint."""
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "device", "precision", "evaluate", "activate")
"""Config keys a resumed run may change; any other change would not continue the same run. A run may
move between machines (a GPU run resumes on the CPU), so device and precision may change."""


class Selector(Protocol):
    """Chooses which checkpoint's refiner to publish (GAN training oscillates; the last is not always best).

    `consider` is called at every scheduled checkpoint and at the end; the winner's weights
    (`best_state`), `summary()` and `verdict()` (trainer.verdict) go into the checkpoint, and
    publishing a checkpoint publishes those.
    """

    best_state: dict[str, torch.Tensor] | None

    def consider(self, step: int, refiner: nn.Module) -> bool: ...
    def summary(self) -> dict[str, Any]: ...
    def verdict(self) -> dict[str, Any]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to change."""


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    phase: str
    losses: dict[str, float]
    eta_seconds: float | None


@dataclass(frozen=True)
class TrainResult:
    stopped: bool  # should_stop() turned true before the last step; resume from `checkpoint`
    step: int
    checkpoint: Path  # holds the selected refiner (or the last), ready to publish
    final_losses: dict[str, float]
    artifacts: dict[str, Path]  # name -> file (sample grid, loss curves) in workdir/artifacts


@dataclass(frozen=True)
class Hooks:
    """What a caller of train() hears and says while it runs; every one is optional.

    progress(p) after every step; should_stop() before every step (true: checkpoint and return);
    on_checkpoint(run, path) after every checkpoint is written and its pictures drawn.
    """

    progress: Callable[[Progress], None] | None = None
    should_stop: Callable[[], bool] | None = None
    on_checkpoint: Callable[[SimGAN, Path], None] | None = None


def _check_resumable(config: TrainConfig, state: dict[str, Any], path: Path) -> None:
    saved = {**LEGACY_VALUES, **state["config"]}
    changed = sorted(k for k in saved if k not in RESUMABLE_CHANGES and saved[k] != getattr(config, k))
    if changed:
        raise ConfigError(
            f"{path} was trained with a different {', '.join(changed)}; resume with the checkpoint's "
            f"values (only {', '.join(RESUMABLE_CHANGES)} may change)"
        )


def sample_rows(count: int, seed: int) -> np.ndarray:
    """The rows of a set the sample grid shows: fixed for a run, so successive pictures compare like
    for like, and drawn at random, since a set sorted by class would show one class in its first rows."""
    return np.sort(np.random.default_rng(seed).permutation(count)[:ARTIFACT_SAMPLES])


class _Checkpoints:
    """Writes workdir/checkpoint.pt with the selector's choice, and redraws the pictures beside it."""

    def __init__(
        self,
        run: SimGAN,
        images: tuple[np.ndarray, np.ndarray],
        workdir: Path,
        selector: Selector | None,
        hooks: Hooks,
    ) -> None:
        self.run, self.workdir, self.selector, self.hooks = run, workdir, selector, hooks
        self.path = workdir / CHECKPOINT_NAME
        synthetic, real = images
        self.samples = (
            synthetic[sample_rows(len(synthetic), run.config.seed)],
            real[sample_rows(len(real), run.config.seed + 1)],
        )
        # What the checkpoint says it was trained on; publishers that know more pass their own.
        self.datasets = [dataset_entry("synthetic", synthetic), dataset_entry("real", real)]

    def save(self, scheduled: bool = True) -> dict[str, Path]:
        """Write the checkpoint, draw its pictures, tell on_checkpoint; the pictures' paths."""
        extra: dict[str, Any] = {"datasets": self.datasets}
        if self.selector is not None:
            if scheduled:  # a stop is not a checkpoint of the schedule: resuming must not score twice
                self.selector.consider(self.run.step, self.run.published_refiner)
            extra.update(
                selector=self.selector.state_dict(),
                selected_refiner=self.selector.best_state,
                selection=self.selector.summary(),
                verdict=self.selector.verdict(),
            )
        save_checkpoint(self.path, {**self.run.state_dict(), **extra})
        paths = self.pictures(self.run.published_refiner)
        if self.hooks.on_checkpoint is not None:
            self.hooks.on_checkpoint(self.run, self.path)
        return paths

    def marks(self, chosen: int | None) -> Marks:
        """Phase starts, the checkpoints scored so far (or written, without a selector), the chosen one."""
        config = self.run.config
        first_d, adversarial = (
            config.pretrain_refiner_steps,
            config.pretrain_refiner_steps + config.pretrain_discriminator_steps,
        )
        if self.selector is not None:
            checkpoints = tuple(c.step for c in getattr(self.selector, "candidates", []))
        else:
            checkpoints = tuple(range(config.checkpoint_every, self.run.step + 1, config.checkpoint_every))
        return Marks((("D pretraining", first_d), ("adversarial", adversarial)), checkpoints, chosen)

    def pictures(self, refiner: nn.Module, chosen: int | None = None) -> dict[str, Path]:
        synthetic, real = self.samples
        refined = refine_with_module(refiner, synthetic)  # (8, H, W, C) uint8, as the ONNX graph rounds
        # The workdir is named by the job id (jobs/<id>/) or the CLI run (runs/train-<time>/).
        title = f"{self.workdir.name} - step {self.run.step}"
        if chosen is not None:
            title += f" - to publish: the refiner of step {chosen}"
        return write_artifacts(
            self.workdir / ARTIFACTS_DIR,
            synthetic,
            refined,
            real,
            self.run.loss_log,
            title=title,
            marks=self.marks(chosen),
        )

    def final(self) -> dict[str, Path]:
        """The last checkpoint; its pictures show the selected refiner, the one that will be published."""
        paths = self.save()
        if self.selector is None or self.selector.best_state is None:
            return paths
        selected = copy.deepcopy(self.run.published_refiner)
        selected.load_state_dict(self.selector.best_state)
        return self.pictures(selected, chosen=self.selector.summary()["step"])


def _checked_images(synthetic: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    synthetic, real = as_nhwc(synthetic, "synthetic images"), as_nhwc(real, "real images")
    if synthetic.shape[-1] != real.shape[-1]:
        raise TrainingError(
            f"synthetic images have {synthetic.shape[-1]} channel(s) and real ones {real.shape[-1]}; "
            "both datasets must have the same channel count"
        )
    return synthetic, real


def _resume(run: SimGAN, resume: Path, selector: Selector | None) -> None:
    # On the CPU: RNG states must be CPU tensors; modules and optimisers move their own.
    state = load_checkpoint(resume, map_location="cpu")
    _check_resumable(run.config, state, resume)
    run.load_state_dict(state)
    if selector is not None and "selector" in state:
        selector.load_state_dict(state["selector"])


def train(
    config: TrainConfig,
    synthetic: np.ndarray,
    real: np.ndarray,
    *,
    workdir: Path,
    resume: Path | None = None,
    hooks: Hooks = Hooks(),  # frozen: one shared default is safe
    selector: Selector | None = None,
) -> TrainResult:
    """Train a refiner on (synthetic, real) uint8 images; ends at a checkpoint, publishes nothing.

    Writes workdir/checkpoint.pt every `checkpoint_every` steps, when `hooks.should_stop()` turns
    true (then returns with `stopped`), and at the end, when it holds the refiner to publish: the
    last one, or the one `selector` chose among the checkpoints (trainer.export.publish_checkpoint
    publishes it). With every checkpoint the pictures in workdir/artifacts (trainer/artifacts.py)
    are redrawn, so a long run can be watched; the last ones show the selected refiner.
    """
    images = _checked_images(synthetic, real)
    device = resolve_device(config.device)
    keeper = None
    if config.label_weight > 0:
        # The selector's labeled synthetic set; without usable annotations there is nothing to keep.
        keeper = build_keeper(getattr(selector, "label_set", None), config.seed, device)
        if keeper is None:
            log.warning("label_weight is set but the synthetic images have no usable annotations: ignored")
    run = SimGAN(config, *images, device, keeper=keeper)
    precision = run.precision
    log.info("training on %s in %s (%s)", run.device, precision.name, precision.reason)
    if resume is not None:
        _resume(run, Path(resume), selector)
    checkpoints = _Checkpoints(run, images, Path(workdir), selector, hooks)
    if selector is not None and run.step == 0 and config.refiner_residual:
        # The untrained residual refiner is the identity: a candidate from the start, so that a run none
        # of whose checkpoints keeps the labels publishes "change nothing", not the least bad change.
        selector.consider(0, run.published_refiner)
    total = run.total_steps
    eta = Eta(
        [
            (PHASES[0], config.pretrain_refiner_steps),
            (PHASES[1], config.pretrain_discriminator_steps),
            (PHASES[2], config.steps),
        ],
        step_weights(config.kg, config.kd),
        config.checkpoint_every,
    )
    if hooks.progress is not None and run.step < total:  # from the first second, before a step is timed
        hooks.progress(Progress(run.step, total, run.phase(run.step + 1), {}, None))
    while run.step < total:
        started = time.perf_counter()
        if hooks.should_stop is not None and hooks.should_stop():
            paths = checkpoints.save(scheduled=False)
            return TrainResult(True, run.step, checkpoints.path, run.losses, paths)
        losses = run.train_step()
        if not all(math.isfinite(v) for v in losses.values()):
            raise TrainingError(
                f"losses became non-finite at step {run.step} ({losses}); lower refiner_lr and "
                f"discriminator_lr, or resume from the last checkpoint {checkpoints.path}"
            )
        eta.observe(run.phase(run.step), time.perf_counter() - started)
        if hooks.progress is not None:
            hooks.progress(Progress(run.step, total, run.phase(run.step), losses, eta.remaining(run.step)))
        if run.step % config.checkpoint_every == 0 and run.step < total:
            saved = time.perf_counter()
            checkpoints.save()
            eta.observe_checkpoint(time.perf_counter() - saved)
    if hooks.progress is not None and selector is not None:
        # The last checkpoint is scored like the others: it takes about as long as they did.
        hooks.progress(Progress(run.step, total, "selecting", run.losses, eta.per_checkpoint))
    paths = checkpoints.final()
    return TrainResult(False, run.step, checkpoints.path, run.losses, paths)

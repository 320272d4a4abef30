"""The S+U training loop (SimGAN, Algorithm 1): one function for the CLI and the job queue.

`train()` ends at a checkpoint holding the selected refiner's weights; its callers publish that
checkpoint (trainer.export.publish_checkpoint), so training never touches the registry.

Steps are counted across three phases: `pretrain_refiner` (R with the self-regularisation
loss only), `pretrain_discriminator` (D against the pretrained R), then `adversarial`, where
one step is one iteration of Algorithm 1: `kg` refiner updates, then `kd` D updates.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from core.layout import ARTIFACTS_DIR, CHECKPOINT_NAME
from core.train_config import LEGACY_VALUES, ConfigError, TrainConfig
from trainer.artifacts import write_artifacts
from trainer.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from trainer.data import DeviceImages, as_nhwc
from trainer.device import autocast, prepare_module, resolve_device
from trainer.export import dataset_entry
from trainer.history import ImageHistory
from trainer.losses import REAL, REFINED, local_adversarial_loss, patch_accuracy, self_regularization_loss
from trainer.networks import DiscriminatorConfig, RefinerConfig, build_discriminator, build_refiner
from trainer.selection import refine_with_module

PHASES = ("pretrain_refiner", "pretrain_discriminator", "adversarial")
LOSS_LOG_POINTS = 200
"""About this many logged points per run make the loss curves (one every total_steps // 200 steps)."""
ARTIFACT_SAMPLES = 8
"""Rows of the sample grid written with every checkpoint."""
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "device", "evaluate")
"""Config keys a resumed run may change; any other change would not continue the same run."""


class Selector(Protocol):
    """Chooses which checkpoint's refiner to publish (GAN training oscillates; the last is not always best).

    `consider` is called at every scheduled checkpoint and at the end; the winner's weights
    (`best_state`) and `summary()` go into the checkpoint, and publishing a checkpoint publishes those.
    """

    best_state: dict[str, torch.Tensor] | None

    def consider(self, step: int, refiner: nn.Module) -> bool: ...
    def summary(self) -> dict[str, Any]: ...
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


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(flag)


def _optimizer(name: str, module: nn.Module, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(module.parameters(), lr=lr)
    # beta1 = 0.5: the usual choice for GANs, it keeps D and R from chasing stale momentum.
    return torch.optim.Adam(module.parameters(), lr=lr, betas=(0.5, 0.999))


class SimGAN:
    """Everything one run owns: data on the device, R, D, their optimisers, the history, the RNG."""

    def __init__(self, config: TrainConfig, synthetic: np.ndarray, real: np.ndarray, device: torch.device):
        self.config = config
        self.device = device
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed image sizes: let cuDNN time its kernels once
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)  # network initialisation
        self.generator = torch.Generator().manual_seed(config.seed)  # batches and history slots
        self.synthetic = DeviceImages(synthetic, device)
        self.real = DeviceImages(real, device)
        channels = self.synthetic.shape[0]
        self.refiner_config = RefinerConfig(
            channels, config.refiner_channels, config.refiner_blocks, config.refiner_kernel
        )
        self.refiner = prepare_module(build_refiner(self.refiner_config), device)
        self.discriminator = prepare_module(build_discriminator(DiscriminatorConfig(channels)), device)
        self.refiner_optimizer = _optimizer(config.optimizer, self.refiner, config.refiner_lr)
        self.discriminator_optimizer = _optimizer(
            config.optimizer, self.discriminator, config.discriminator_lr
        )
        assert config.history_size is not None  # resolved by TrainConfig
        self.history = ImageHistory(config.history_size, self.synthetic.shape, device)
        self.step = 0
        self.losses: dict[str, float] = {}
        # [{"step": s, loss name: value, ...}] every `log_every` steps: the loss curves' data.
        self.loss_log: list[dict[str, float]] = []

    @property
    def total_steps(self) -> int:
        c = self.config
        return c.pretrain_refiner_steps + c.pretrain_discriminator_steps + c.steps

    @property
    def log_every(self) -> int:
        return max(1, self.total_steps // LOSS_LOG_POINTS)

    def phase(self, step: int) -> str:
        """The phase that step number `step` (1-based) belongs to."""
        if step <= self.config.pretrain_refiner_steps:
            return PHASES[0]
        if step <= self.config.pretrain_refiner_steps + self.config.pretrain_discriminator_steps:
            return PHASES[1]
        return PHASES[2]

    def seen_by_discriminator(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images plus instance noise of std `instance_noise` (none at 0), drawn from the
        run's generator so that a resumed run draws the same noise."""
        sigma = self.config.instance_noise
        if sigma == 0:
            return images
        noise = torch.randn(images.shape, generator=self.generator).to(self.device, images.dtype)
        return images + sigma * noise

    def refiner_step(self, adversarial: bool = True) -> dict[str, float]:
        """One R update: fool D (frozen) while staying close to the synthetic input."""
        synthetic = self.synthetic.batch(self.config.batch_size, self.generator)  # (B, C, H, W)
        _set_requires_grad(self.discriminator, False)
        with autocast(self.device):
            refined = self.refiner(synthetic)
            regularization = self_regularization_loss(refined, synthetic, self.config.regularization_space)
            if not adversarial:
                loss = regularization  # pretraining: learn to reproduce the input
            else:
                # R wants every patch of its output classified as real.
                fooling = local_adversarial_loss(
                    self.discriminator(self.seen_by_discriminator(refined)), REAL
                )
                loss = fooling + self.config.lambda_reg * regularization
        self.refiner_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.refiner_optimizer.step()
        _set_requires_grad(self.discriminator, True)
        losses = {"self_regularization": regularization.item(), "refiner": loss.item()}
        if adversarial:
            losses["refiner_adversarial"] = fooling.item()
        return losses

    def discriminator_step(self) -> dict[str, float]:
        """One D update on b real images and b refined ones: b/2 fresh, b/2 from the history."""
        batch = self.config.batch_size
        half = batch // 2
        with torch.no_grad(), autocast(self.device):
            # Refined without a graph: D's loss must not reach R.
            fresh = self.refiner(self.synthetic.batch(batch, self.generator)).float()  # (B, C, H, W)
        if len(self.history) >= half:
            refined = torch.cat([fresh[: batch - half], self.history.sample(half, self.generator)])
        else:
            refined = fresh  # the first steps: no history yet
        real = self.real.batch(batch, self.generator)
        with autocast(self.device):
            real_logits = self.discriminator(self.seen_by_discriminator(real))  # (B, 2, h, w) per patch
            refined_logits = self.discriminator(self.seen_by_discriminator(refined))
            loss_real = local_adversarial_loss(real_logits, REAL)
            loss_refined = local_adversarial_loss(refined_logits, REFINED)
            loss = loss_real + loss_refined
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.discriminator_optimizer.step()
        self.history.push(fresh[:half], self.generator)
        accuracy = (patch_accuracy(real_logits, REAL) + patch_accuracy(refined_logits, REFINED)) / 2
        return {
            "discriminator_real": loss_real.item(),
            "discriminator_refined": loss_refined.item(),
            "discriminator": loss.item(),
            "discriminator_accuracy": accuracy.item(),
        }

    def train_step(self) -> dict[str, float]:
        """Run step number `self.step + 1` of its phase; returns its losses."""
        phase = self.phase(self.step + 1)
        if phase == "pretrain_refiner":
            losses = self.refiner_step(adversarial=False)
        elif phase == "pretrain_discriminator":
            losses = self.discriminator_step()
        else:
            runs = [self.refiner_step() for _ in range(self.config.kg)]
            runs += [self.discriminator_step() for _ in range(self.config.kd)]
            losses = {k: float(np.mean([r[k] for r in runs if k in r])) for r in runs for k in r}
        self.step += 1
        self.losses = losses
        if self.step % self.log_every == 0 or self.step == self.total_steps:
            self.loss_log.append({"step": float(self.step), **losses})
        return losses

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "refiner_config": asdict(self.refiner_config),
            "refiner": self.refiner.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "refiner_optimizer": self.refiner_optimizer.state_dict(),
            "discriminator_optimizer": self.discriminator_optimizer.state_dict(),
            "history": self.history.state_dict(),
            "step": self.step,
            "phase": self.phase(max(self.step, 1)),
            "losses": self.losses,
            "loss_log": self.loss_log,
            "rng": capture_rng(self.generator),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.refiner.load_state_dict(state["refiner"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.refiner_optimizer.load_state_dict(state["refiner_optimizer"])
        self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
        self.history.load_state_dict(state["history"])
        self.step = state["step"]
        self.losses = dict(state["losses"])
        self.loss_log = list(state.get("loss_log", []))
        restore_rng(state["rng"], self.generator)


def _check_resumable(config: TrainConfig, state: dict[str, Any], path: Path) -> None:
    saved = {**LEGACY_VALUES, **state["config"]}
    changed = sorted(k for k in saved if k not in RESUMABLE_CHANGES and saved[k] != getattr(config, k))
    if changed:
        raise ConfigError(
            f"{path} was trained with a different {', '.join(changed)}; resume with the checkpoint's "
            f"values (only {', '.join(RESUMABLE_CHANGES)} may change)"
        )


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
        # Fixed rows for the sample grid, so pictures of successive checkpoints compare like for like.
        self.samples = synthetic[:ARTIFACT_SAMPLES], real[:ARTIFACT_SAMPLES]
        # What the checkpoint says it was trained on; publishers that know more pass their own.
        self.datasets = [dataset_entry("synthetic", synthetic), dataset_entry("real", real)]

    def save(self, scheduled: bool = True) -> dict[str, Path]:
        """Write the checkpoint, draw its pictures, tell on_checkpoint; the pictures' paths."""
        extra: dict[str, Any] = {"datasets": self.datasets}
        if self.selector is not None:
            if scheduled:  # a stop is not a checkpoint of the schedule: resuming must not score twice
                self.selector.consider(self.run.step, self.run.refiner)
            extra.update(
                selector=self.selector.state_dict(),
                selected_refiner=self.selector.best_state,
                selection=self.selector.summary(),
            )
        save_checkpoint(self.path, {**self.run.state_dict(), **extra})
        paths = self.pictures(self.run.refiner)
        if self.hooks.on_checkpoint is not None:
            self.hooks.on_checkpoint(self.run, self.path)
        return paths

    def pictures(self, refiner: nn.Module) -> dict[str, Path]:
        synthetic, real = self.samples
        refined = refine_with_module(refiner, synthetic)  # (8, H, W, C) uint8, as the ONNX graph rounds
        return write_artifacts(self.workdir / ARTIFACTS_DIR, synthetic, refined, real, self.run.loss_log)

    def final(self) -> dict[str, Path]:
        """The last checkpoint; its pictures show the selected refiner, the one that will be published."""
        paths = self.save()
        if self.selector is None or self.selector.best_state is None:
            return paths
        selected = copy.deepcopy(self.run.refiner)
        selected.load_state_dict(self.selector.best_state)
        return self.pictures(selected)


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
    run = SimGAN(config, *images, resolve_device(config.device))
    if resume is not None:
        _resume(run, Path(resume), selector)
    checkpoints = _Checkpoints(run, images, Path(workdir), selector, hooks)
    total, first_step, started = run.total_steps, run.step, time.perf_counter()
    while run.step < total:
        if hooks.should_stop is not None and hooks.should_stop():
            paths = checkpoints.save(scheduled=False)
            return TrainResult(True, run.step, checkpoints.path, run.losses, paths)
        losses = run.train_step()
        if not all(math.isfinite(v) for v in losses.values()):
            raise TrainingError(
                f"losses became non-finite at step {run.step} ({losses}); lower refiner_lr and "
                f"discriminator_lr, or resume from the last checkpoint {checkpoints.path}"
            )
        if hooks.progress is not None:
            per_step = (time.perf_counter() - started) / (run.step - first_step)
            eta = per_step * (total - run.step)
            hooks.progress(Progress(run.step, total, run.phase(run.step), losses, eta))
        if run.step % config.checkpoint_every == 0 and run.step < total:
            checkpoints.save()
    paths = checkpoints.final()
    return TrainResult(False, run.step, checkpoints.path, run.losses, paths)

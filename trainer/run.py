"""One run of S+U learning (SimGAN, Algorithm 1): the data on the device, R, D, their optimisers,
the history of refined images, the run's random generator, and the two steps written out plainly.

Steps are counted across three phases: `pretrain_refiner` (R with the self-regularisation
loss only), `pretrain_discriminator` (D against the pretrained R), then `adversarial`, where
one step is one iteration of Algorithm 1: `kg` refiner updates, then `kd` D updates.

Three things keep the same defaults meaningful on any data (core.train_config says more):
the self-regularisation is a budget held by an adapted weight (trainer.budget), D's patch is a
share of the image (trainer.networks.patch_depth), and what is
scored and exported is a moving average of R's weights (trainer.ema).
"""

from __future__ import annotations

import random
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from core.train_config import TrainConfig
from trainer.budget import DualWeight, budget_for
from trainer.checkpoint import capture_rng, restore_rng
from trainer.data import DeviceImages
from trainer.device import Precision, autocast, grad_scaler, prepare_module, resolve_precision
from trainer.ema import WeightAverage
from trainer.history import ImageHistory
from trainer.label_keeper import LabelKeeper
from trainer.losses import REAL, REFINED, local_adversarial_loss, patch_accuracy, self_regularization_loss
from trainer.networks import (
    DiscriminatorConfig,
    RefinerConfig,
    build_discriminator,
    build_refiner,
    patch_depth,
)

BUDGET_SAMPLE = 256
"""Images of each domain the budget's pixel distance is measured on."""

PHASES = ("pretrain_refiner", "pretrain_discriminator", "adversarial")


LOSS_LOG_POINTS = 200
"""About this many logged points per run make the loss curves (one every total_steps // 200 steps)."""


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

    def __init__(
        self,
        config: TrainConfig,
        synthetic: np.ndarray,
        real: np.ndarray,
        device: torch.device,
        precision: Precision | None = None,
        keeper: LabelKeeper | None = None,
    ):
        self.config = config
        self.device = device
        # Config `precision` on this device (trainer.device); tests pass one to reach every branch.
        self.precision = precision or resolve_precision(config.precision, device)
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
            channels,
            config.refiner_channels,
            config.refiner_blocks,
            config.refiner_kernel,
            config.refiner_residual,
            config.noise_channels,
        )
        self.refiner = prepare_module(build_refiner(self.refiner_config), device, self.precision)
        _, height, width = self.synthetic.shape
        self.discriminator_config = DiscriminatorConfig(
            channels,
            depth=patch_depth(height, width, config.discriminator_patch),
            spectral_norm=config.discriminator_norm == "spectral",
        )
        self.discriminator = prepare_module(
            build_discriminator(self.discriminator_config), device, self.precision
        )
        # What is scored, pictured and exported: R's weight average, or R itself with ema_decay 0.
        self.average = WeightAverage(self.refiner, config.ema_decay) if config.ema_decay > 0 else None
        self.dual = (
            DualWeight(
                budget_for(synthetic[:BUDGET_SAMPLE], real[:BUDGET_SAMPLE], config.reg_budget),
                config.lambda_reg,
                config.reg_floor * config.lambda_reg,
            )
            if config.reg_budget > 0
            else None
        )
        self.refiner_optimizer = _optimizer(config.optimizer, self.refiner, config.refiner_lr)
        self.discriminator_optimizer = _optimizer(
            config.optimizer, self.discriminator, config.discriminator_lr
        )
        # One gradient scaler per network (each has its own loss and step); pass-through but for fp16.
        self.refiner_scaler = grad_scaler(self.precision)
        self.discriminator_scaler = grad_scaler(self.precision)
        assert config.history_size is not None  # resolved by TrainConfig
        self.history = ImageHistory(config.history_size, self.synthetic.shape, device)
        # label_weight > 0 with usable annotations: R also keeps what a task model reads (label_keeper).
        self.keeper = keeper if config.label_weight > 0 else None
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

    def refine(self, synthetic: torch.Tensor) -> torch.Tensor:
        """R of (B, C, H, W) images; a stochastic R (noise_channels > 0) also gets (B, k, H, W) noise,
        drawn from the run's generator so that a resumed run draws the same noise."""
        k = self.refiner_config.noise_channels
        if k == 0:
            return self.refiner(synthetic)
        b, _, h, w = synthetic.shape
        noise = torch.randn((b, k, h, w), generator=self.generator).to(self.device, synthetic.dtype)
        return self.refiner(synthetic, noise)

    def refiner_step(self, adversarial: bool = True) -> dict[str, float]:
        """One R update: fool D (frozen) while staying close to the synthetic input."""
        synthetic = self.synthetic.batch(self.config.batch_size, self.generator)  # (B, C, H, W)
        _set_requires_grad(self.discriminator, False)
        with autocast(self.precision):
            refined = self.refine(synthetic)
            regularization = self_regularization_loss(refined, synthetic, self.config.regularization_space)
            if not adversarial:
                loss = regularization  # pretraining: learn to reproduce the input
            else:
                # R wants every patch of its output classified as real.
                fooling = local_adversarial_loss(
                    self.discriminator(self.seen_by_discriminator(refined)), REAL
                )
                loss = fooling + self.regularization_weight * regularization
                if self.keeper is not None:
                    label_loss = self.keeper.loss(synthetic, refined)
                    loss = loss + self.config.label_weight * label_loss
        self.refiner_optimizer.zero_grad(set_to_none=True)
        self.refiner_scaler.scale(loss).backward()
        self.refiner_scaler.step(self.refiner_optimizer)  # skipped when fp16 gradients overflowed
        self.refiner_scaler.update()
        _set_requires_grad(self.discriminator, True)
        if self.average is not None:
            self.average.update(self.refiner)
        losses = {"self_regularization": regularization.item(), "refiner": loss.item()}
        if adversarial:
            losses["refiner_adversarial"] = fooling.item()
            if self.keeper is not None:
                losses["label_loss"] = label_loss.item()
            if self.dual is not None:
                losses["regularization_weight"] = self.dual.value
                self.dual.update(losses["self_regularization"])
        return losses

    @property
    def regularization_weight(self) -> float:
        """lambda / eps under a budget (the L1 counted in units of its budget), else the fixed lambda."""
        if self.dual is None:
            return self.config.lambda_reg
        return self.dual.value / self.dual.eps

    @property
    def published_refiner(self) -> nn.Module:
        """The refiner checkpoints are scored on and export publishes: the weight average, if kept."""
        return self.refiner if self.average is None else self.average.module

    def discriminator_step(self) -> dict[str, float]:
        """One D update on b real images and b refined ones: b/2 fresh, b/2 from the history."""
        batch = self.config.batch_size
        half = batch // 2
        with torch.no_grad(), autocast(self.precision):
            # Refined without a graph: D's loss must not reach R.
            fresh = self.refine(self.synthetic.batch(batch, self.generator)).float()  # (B, C, H, W)
        if len(self.history) >= half:
            refined = torch.cat([fresh[: batch - half], self.history.sample(half, self.generator)])
        else:
            refined = fresh  # the first steps: no history yet
        real = self.real.batch(batch, self.generator)
        with autocast(self.precision):
            real_logits = self.discriminator(self.seen_by_discriminator(real))  # (B, 2, h, w) per patch
            refined_logits = self.discriminator(self.seen_by_discriminator(refined))
            loss_real = local_adversarial_loss(real_logits, REAL)
            loss_refined = local_adversarial_loss(refined_logits, REFINED)
            loss = loss_real + loss_refined
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        self.discriminator_scaler.scale(loss).backward()
        self.discriminator_scaler.step(self.discriminator_optimizer)
        self.discriminator_scaler.update()
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
            "rng": capture_rng(self.generator, self.device),
            "refiner_average": None if self.average is None else self.average.state_dict(),
            "dual": None if self.dual is None else self.dual.state_dict(),
            "scalers": (
                {
                    "refiner": self.refiner_scaler.state_dict(),
                    "discriminator": self.discriminator_scaler.state_dict(),
                }
                if self.precision.scaled
                else None
            ),
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
        restore_rng(state["rng"], self.generator, self.device)
        if self.average is not None and state.get("refiner_average") is not None:
            self.average.load_state_dict(state["refiner_average"])
        if self.dual is not None and state.get("dual") is not None:
            self.dual.load_state_dict(state["dual"])
        # An fp16 run's loss scales; a run resumed in another precision (on the CPU, say) starts without.
        if self.precision.scaled and state.get("scalers") is not None:
            self.refiner_scaler.load_state_dict(state["scalers"]["refiner"])
            self.discriminator_scaler.load_state_dict(state["scalers"]["discriminator"])

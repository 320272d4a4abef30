"""Which checkpoint to publish: GAN training oscillates, so the last step is not always the best.

The criterion needs no labels. At each checkpoint the refiner refines a fixed sample of synthetic
images, and a fresh real-vs-refined classifier (trainer/task_models.py, the evaluation's realism test) is
trained on half of them against real images and tested on the other half: the lower its held-out
accuracy, the more real the refiner's output looks (0.5 = indistinguishable). A checkpoint is
eligible only while its refiner moves pixels no further than `bound_factor` times the least any map
from synthetic to real pixel statistics must move them (the 1-Wasserstein distance between the two
sets' pixel values): a refiner that fools the classifier by redrawing the image is not chosen.

A KID-style distance (features of a real-vs-synthetic classifier trained once) is recorded too and
breaks ties. It is not the criterion: those features cannot see artefacts that no synthetic image
has, and on the eye simulator it rated checkpoints whose refined images a fresh classifier still
told from real 96-99% of the time as nearly real.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from trainer import task_models
from trainer.task_models import TaskBudget

CRITERION = "realism_accuracy"
PROBE_SIZE = 256
"""Images of each domain the selector tests on (and as many again that its classifiers train on)."""

BOUND_FACTOR = 2.0
"""Eligible refiners move pixels (mean |R(x) - x|) at most this many times the synthetic-to-real W1."""

SELECTION_BUDGET = TaskBudget(steps=200, batch_size=64)


@dataclass(frozen=True)
class Candidate:
    step: int
    realism: float  # held-out accuracy of a fresh real-vs-refined classifier; lower is more real
    kid: float  # refined probe vs real probe; lower is more real
    reg_distance: float  # mean |R(x) - x| over probe pixels, in [-1, 1] units
    eligible: bool


def pixel_w1(a: np.ndarray, b: np.ndarray, quantiles: int = 1001) -> float:
    """1-Wasserstein distance between the pixel values of two uint8 image sets, in [-1, 1] units."""
    levels = np.linspace(0.0, 1.0, quantiles)
    qa = np.quantile(a.astype(np.float64) / 127.5 - 1.0, levels)
    qb = np.quantile(b.astype(np.float64) / 127.5 - 1.0, levels)
    return float(np.abs(qa - qb).mean())


@torch.no_grad()
def refine_with_module(refiner: nn.Module, images: np.ndarray, batch: int = 128) -> np.ndarray:
    """uint8 (N, H, W, C) through a torch refiner, rounded as the exported graph does."""
    device = next(refiner.parameters()).device
    was_training = refiner.training
    refiner.eval()
    try:
        out = []
        for start in range(0, len(images), batch):
            x = task_models.to_tensor(images[start : start + batch]).to(device)  # (B, C, H, W) in [-1, 1]
            y = torch.round((refiner(x).float() + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)
            out.append(y.permute(0, 2, 3, 1).cpu().numpy())  # (B, H, W, C)
        return np.concatenate(out)
    finally:
        refiner.train(was_training)


class CheckpointSelector:
    """Scores checkpoints and keeps the best refiner's weights (on the CPU)."""

    def __init__(
        self,
        synthetic: np.ndarray,
        real: np.ndarray,
        *,
        seed: int = 0,
        probe_size: int = PROBE_SIZE,
        bound_factor: float = BOUND_FACTOR,
        budget: TaskBudget = SELECTION_BUDGET,
    ) -> None:
        rng = np.random.default_rng(seed)
        syn = synthetic[rng.permutation(len(synthetic))[: 2 * probe_size]]
        real = real[rng.permutation(len(real))[: 2 * probe_size]]
        if len(syn) < 4 or len(real) < 4:
            raise ValueError("checkpoint selection needs at least 4 synthetic and 4 real images")
        self.seed, self.budget, self.synthetic = seed, budget, syn
        self.half = len(syn) // 2  # synthetic[:half] trains each classifier, synthetic[half:] tests it
        self.fit_real, self.probe_real = real[: len(real) // 2], real[len(real) // 2 :]
        self.features = task_models.fit_domain_classifier(
            self.fit_real, syn[: self.half], seed=seed, budget=budget
        )
        self._real_raw = self.features.features(self.probe_real)
        self.max_reg_distance = bound_factor * pixel_w1(syn, real)
        self.candidates: list[Candidate] = []
        self.best: Candidate | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    def distance(self, refined: np.ndarray) -> float:
        reference = task_models.scale_like(self._real_raw, self._real_raw)
        return task_models.kernel_distance(
            task_models.scale_like(self.features.features(refined), self._real_raw), reference
        )

    def realism(self, refined: np.ndarray) -> float:
        """Held-out accuracy of a fresh real-vs-refined classifier; `refined` aligned with self.synthetic."""
        classifier = task_models.fit_domain_classifier(
            self.fit_real, refined[: self.half], seed=self.seed, budget=self.budget
        )
        return task_models.domain_accuracy(classifier, self.probe_real, refined[self.half :])

    def score(self, step: int, refine: Callable[[np.ndarray], np.ndarray]) -> Candidate:
        refined = refine(self.synthetic)
        moved = float(np.abs(refined.astype(np.float64) - self.synthetic.astype(np.float64)).mean() / 127.5)
        return Candidate(
            step,
            self.realism(refined),
            self.distance(refined[self.half :]),
            moved,
            moved <= self.max_reg_distance,
        )

    def _better(self, candidate: Candidate) -> bool:
        best = self.best
        if best is None or candidate.eligible != best.eligible:
            return best is None or candidate.eligible
        if candidate.eligible:
            return (candidate.realism, candidate.kid) < (best.realism, best.kid)
        return candidate.reg_distance < best.reg_distance

    def consider(self, step: int, refiner: nn.Module) -> bool:
        """Score the refiner at `step`; True (and its weights kept) when it is the best so far."""
        candidate = self.score(step, lambda images: refine_with_module(refiner, images))
        self.candidates.append(candidate)
        if not self._better(candidate):
            return False
        self.best = candidate
        self.best_state = {k: v.detach().cpu().clone() for k, v in refiner.state_dict().items()}
        return True

    def summary(self) -> dict[str, Any]:
        """What the model card records under `selection`."""
        if self.best is None:
            return {"criterion": CRITERION, "step": None, "why": "no checkpoint was scored"}
        best = self.best
        if best.eligible:
            why = (
                f"most real-looking: a fresh real-vs-refined classifier was right on {best.realism:.1%} of "
                f"held-out images (0.5 = cannot tell), the lowest among the "
                f"{sum(c.eligible for c in self.candidates)} of {len(self.candidates)} checkpoints whose "
                f"refiner moves pixels by at most {self.max_reg_distance:.3f} "
                "(mean |R(x) - x|, [-1, 1] units)"
            )
        else:
            why = (
                f"no checkpoint kept mean |R(x) - x| within {self.max_reg_distance:.3f}; "
                f"chose the one closest to its input ({best.reg_distance:.3f})"
            )
        return {
            "criterion": CRITERION,
            "step": best.step,
            "realism": best.realism,
            "kid": best.kid,
            "reg_distance": best.reg_distance,
            "max_reg_distance": self.max_reg_distance,
            "why": why,
            "candidates": [asdict(c) for c in self.candidates],
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to go on choosing exactly as before."""
        return {
            "features": copy.deepcopy(self.features.net.state_dict()),
            "candidates": [asdict(c) for c in self.candidates],
            "best": asdict(self.best) if self.best else None,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.features.net.load_state_dict(state["features"])
        self._real_raw = self.features.features(self.probe_real)
        self.candidates = [Candidate(**c) for c in state["candidates"]]
        self.best = Candidate(**state["best"]) if state["best"] else None
        self.best_state = state["best_state"]

"""Do refined images still carry the simulator's labels? Two label checks that need no real labels.

Every user has the synthetic annotations, so both use them:

- **Consistency** (`LabelConsistency`): a task model trained on synthetic images and their
  annotations reads the annotations back from the refined images. Its quality on refined images
  over its quality on held-out synthetic ones is the score (1.0 = read as well as synthetic ones).
  It is recorded and reported, but it does not decide: a refiner that does its job moves images
  toward the real domain, and a synthetic-trained model reads *any* other domain worse. On the
  suite it refused the checkpoints that helped most (horizon64: consistency -2.3 at a checkpoint
  whose refined images cut the downstream error from 16.0 to 13.9; glyphs28: 0.83 while the
  error fell from 0.42 to 0.26). It measures the domain gap as much as label damage.
- **Retention** (`LabelRetention`): a task model trained on refined images and their (synthetic)
  annotations reads them back from other refined images as well as one trained and tested on the
  synthetic images does. This asks only whether the labels are still *in* the images (a refiner
  that blurs a digit's strokes away or collapses poses fails it) and is blind to the domain the
  images are in. It is the gate: a checkpoint keeps the labels when retention >= CONSISTENT, or its
  shortfall is within two standard errors of the probe.

  What retention cannot see is a consistent rewrite of one label into another (every 1 drawn as a
  7): a model learns that mapping as easily. The refiner's movement budget (trainer.budget) is
  what stands against that, and consistency is kept in every record for a person to read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainer.evaluate import Targets, fit_task, target_array
from trainer.task_models import TaskBudget

CONSISTENT = 0.95
"""Least share of the synthetic images' label quality the refined images must keep."""
LEARNABLE = 0.1
"""A task model whose quality on held-out synthetic images is below this learned nothing to check with."""


def quality(error: float, baseline_error: float) -> float:
    """1 - error / the error of guessing (the majority class, the mean target): 1 = perfect, 0 = guessing."""
    return 1.0 - error / baseline_error if baseline_error > 0 else 0.0


class LabelConsistency:
    """A task model fit on `fit` synthetic images, scored on the images of `probe` and their refinements."""

    def __init__(
        self,
        fit: np.ndarray,
        fit_annotations: list[Any],
        probe: np.ndarray,
        probe_annotations: list[Any],
        targets: Targets,
        *,
        seed: int,
        budget: TaskBudget,
    ) -> None:
        self.targets = targets
        self.labels = target_array(probe_annotations, targets)
        labels = target_array(fit_annotations, targets)
        self.model = fit_task(fit, labels, targets, seed, budget, "cpu")
        self.baseline_error = _guessing_error(labels, self.labels, targets)
        self.synthetic_quality = quality(self.model.error(probe, self.labels), self.baseline_error)

    @property
    def learnable(self) -> bool:
        return self.synthetic_quality >= LEARNABLE

    def score(self, refined_probe: np.ndarray) -> float:
        """Quality on the refined probe images over quality on the synthetic ones they came from."""
        refined = quality(self.model.error(refined_probe, self.labels), self.baseline_error)
        return refined / self.synthetic_quality if self.learnable else float("nan")

    def describe(self) -> dict[str, Any]:
        return {
            "targets": list(self.targets.fields),
            "kind": self.targets.kind,
            "synthetic_quality": self.synthetic_quality,
            "learnable": self.learnable,
        }


class LabelRetention:
    """Task models fit on the first half of a probe and tested on the second, synthetic vs refined.

    `labels` (N,) or (N, K) are the probe images' annotations as task targets, in the order of the
    images every `score` call gets; the synthetic images' own quality is measured once, here.
    """

    def __init__(
        self, synthetic: np.ndarray, labels: np.ndarray, targets: Targets, *, seed: int, budget: TaskBudget
    ) -> None:
        self.targets, self.labels, self.seed, self.budget = targets, labels, seed, budget
        self.half = len(synthetic) // 2
        self.baseline_error = _guessing_error(labels[: self.half], labels[self.half :], targets)
        self.synthetic_quality, self._synthetic_errors = self._quality(synthetic)

    @property
    def learnable(self) -> bool:
        return self.synthetic_quality >= LEARNABLE

    def _quality(self, images: np.ndarray) -> tuple[float, np.ndarray]:
        fit, test = slice(0, self.half), slice(self.half, None)
        model = fit_task(images[fit], self.labels[fit], self.targets, self.seed, self.budget, "cpu")
        errors = _per_image_errors(model.predict(images[test]), self.labels[test], self.targets)
        return quality(float(errors.mean()), self.baseline_error), errors

    def score(self, refined: np.ndarray) -> tuple[float, bool]:
        """(retention, keeps the labels): refined quality over synthetic quality, and whether it is at
        least CONSISTENT or short of it by no more than two standard errors of the difference."""
        if not self.learnable:
            return float("nan"), True
        refined_quality, errors = self._quality(refined)
        retention = refined_quality / self.synthetic_quality
        # Two standard errors of the paired difference of mean errors (the same test images), in the
        # units of retention: quality = 1 - error / baseline_error, retention = quality / synthetic's.
        paired = (errors - self._synthetic_errors).std() / np.sqrt(len(errors))
        noise = 2 * paired / self.baseline_error / self.synthetic_quality
        return float(retention), bool(retention >= CONSISTENT - noise)

    def describe(self) -> dict[str, Any]:
        return {"synthetic_quality": self.synthetic_quality, "learnable": self.learnable}


def _per_image_errors(predicted: np.ndarray, truth: np.ndarray, targets: Targets) -> np.ndarray:
    if targets.kind == "classification":
        return (predicted != truth).astype(np.float64)
    return np.asarray(np.linalg.norm(predicted - truth, axis=1), dtype=np.float64)


def _guessing_error(fit_labels: np.ndarray, labels: np.ndarray, targets: Targets) -> float:
    if targets.kind == "classification":
        majority = np.bincount(fit_labels).argmax()
        return float((labels != majority).mean())
    return float(np.linalg.norm(labels - fit_labels.mean(axis=0), axis=1).mean())

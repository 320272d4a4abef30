"""Label consistency: do refined images still carry the simulator's labels?

Every user has the synthetic annotations, so this needs no real labels: a task model trained on
synthetic images and their annotations must read the same annotations back from the refined
images. Its quality on refined images over its quality on held-out synthetic ones is the score
(1.0 = the labels survived refinement intact; the product asks for at least CONSISTENT).
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


def _guessing_error(fit_labels: np.ndarray, labels: np.ndarray, targets: Targets) -> float:
    if targets.kind == "classification":
        majority = np.bincount(fit_labels).argmax()
        return float((labels != majority).mean())
    return float(np.linalg.norm(labels - fit_labels.mean(axis=0), axis=1).mean())

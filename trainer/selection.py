"""Which checkpoint to publish: GAN training oscillates, so the last step is not always the best.

A refiner is useful when models trained on its output do better on real images. Without real
labels that cannot be measured directly, so the selector uses what every user has:

1. Labels kept (trainer.consistency): label retention (a task model trained on half of a probe of
   refined images and their synthetic annotations must read them from the other half at least 95%
   as well as one trained and tested on the synthetic images does, within the probe's noise) and a
   floor on label consistency (a synthetic-trained model must read the refined images at at least
   half its quality on synthetic ones). Consistency at 95% alone would refuse any real move of the
   domain, which is what a refiner is for; retention alone cannot see images redrawn in a style a
   model learns as easily.
2. Realism: a fresh real-vs-refined classifier is trained on half of a fixed sample of refined
   images against real ones and tested on the other half; the lower its held-out accuracy, the more
   real the output looks (0.5 = indistinguishable). Among eligible checkpoints the most real wins;
   checkpoints whose realism differs by less than the probe's noise (trainer.verdict.accuracy_margin)
   are a tie, broken by the KID-style distance below (that classifier is near 1.0 on every checkpoint
   of most suite pairs, so its small differences are noise, while the distance still moves).

With a labeled real set (`real_labeled`), a checkpoint is scored by what users want instead: the
error on a held-out part of it of a task model trained on that checkpoint's refined images.

The raw synthetic images are scored the same way first (the `baseline`), so the verdict
(trainer.verdict) can say whether the chosen checkpoint is measurably better than no refiner at all.
A KID-style distance (features of a real-vs-synthetic classifier trained once) is recorded and
breaks ties; it cannot see artefacts that no synthetic image has, so it is never the first criterion.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from trainer import task_models, verdict
from trainer.budget import pixel_w1
from trainer.consistency import (
    CONSISTENCY_FLOOR,
    CONSISTENT,
    LabelConsistency,
    LabelRetention,
    keeps_labels,
)
from trainer.evaluate import EvaluationError, Targets, choose_targets, fit_task, target_array
from trainer.refining import refine_with_module
from trainer.task_models import TaskBudget

log = logging.getLogger(__name__)

CRITERION = "label_consistency_then_realism"
DOWNSTREAM_CRITERION = "downstream_error"
PROBE_SIZE = 256
"""Images of each domain the selector tests on (and as many again that its classifiers train on)."""
CONSISTENCY_FIT = 1024
"""Most synthetic images the label-consistency task model trains on (none of them in the probe)."""
SELECTION_BUDGET = TaskBudget(steps=200, batch_size=64, members=1, max_epochs=50)
"""200 steps of 64 on a full probe half (256 images) is 50 epochs; a smaller set trains 50 epochs too
(a 24-image half: 50 steps), not 200 steps that only memorise it."""

__all__ = [
    "CRITERION",
    "Candidate",
    "CheckpointSelector",
    "LabeledSet",
    "build_selector",
    "pixel_w1",
]


@dataclass(frozen=True)
class Candidate:
    step: int  # -1 = the baseline: the raw synthetic images, no refiner
    realism: float  # held-out accuracy of a fresh real-vs-refined classifier; lower is more real
    kid: float  # refined probe vs real probe; lower is more real
    reg_distance: float  # mean |R(x) - x| over probe pixels, in [-1, 1] units
    consistency: float | None  # a synthetic-trained model's quality, refined / synthetic; None without labels
    eligible: bool  # keeps the labels (trainer.consistency.keeps_labels: retention and a consistency floor)
    downstream: float | None = None  # task error on held-out labeled real images, when given
    retention: float | None = None  # label quality learnt from refined / from synthetic images


@dataclass(frozen=True)
class LabeledSet:
    """Images with annotations and the fields a task model predicts from them."""

    images: np.ndarray  # (N, H, W, C) uint8
    annotations: Sequence[Any]
    targets: Targets


class CheckpointSelector:
    """Scores checkpoints and keeps the best refiner's weights (on the CPU)."""

    def __init__(
        self,
        synthetic: np.ndarray,
        real: np.ndarray,
        *,
        labels: LabeledSet | None = None,
        real_labeled: LabeledSet | None = None,
        seed: int = 0,
        probe_size: int = PROBE_SIZE,
        budget: TaskBudget = SELECTION_BUDGET,
        keep_candidates: bool = False,
    ) -> None:
        """`labels`: the synthetic images' annotations (aligned with `synthetic`) for label consistency."""
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(synthetic))
        pick, rest = order[: 2 * probe_size], order[2 * probe_size :]
        syn = synthetic[pick]
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
        self.consistency = self._consistency(labels, pick, rest)
        self.labels = (
            None if labels is None else target_array([labels.annotations[i] for i in pick], labels.targets)
        )
        self.targets = None if labels is None else labels.targets
        self.retention = self._retention()
        self.label_set = labels  # the whole labeled synthetic set (training's label keeper fits on it)
        self.real_labeled = real_labeled
        self.keep_candidates = keep_candidates
        self.states: dict[int, dict[str, torch.Tensor]] = {}
        self._baseline_errors = np.zeros(0)
        self.candidates: list[Candidate] = []
        self.best: Candidate | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.baseline = self.score(-1, lambda images: images)

    def _consistency(
        self, labels: LabeledSet | None, pick: np.ndarray, rest: np.ndarray
    ) -> LabelConsistency | None:
        if labels is None or len(rest) < 8:
            return None
        fit = rest[:CONSISTENCY_FIT]
        probe = pick[self.half :]
        checker = LabelConsistency(
            labels.images[fit],
            [labels.annotations[i] for i in fit],
            labels.images[probe],
            [labels.annotations[i] for i in probe],
            labels.targets,
            seed=self.seed,
            budget=self.budget,
        )
        return checker if checker.learnable else None

    def _retention(self) -> LabelRetention | None:
        if self.labels is None or self.targets is None or self.half < 8:
            return None
        checker = LabelRetention(
            self.synthetic, self.labels, self.targets, seed=self.seed, budget=self.budget
        )
        return checker if checker.learnable else None

    @property
    def criterion(self) -> str:
        return DOWNSTREAM_CRITERION if self._downstream_ready else CRITERION

    @property
    def _downstream_ready(self) -> bool:
        return self.real_labeled is not None and self.labels is not None and self.targets is not None

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

    def downstream_errors(self, refined: np.ndarray) -> np.ndarray:
        """Per-image error on the labeled real set of a task model trained on `refined` (all 2 x probe)."""
        assert self.real_labeled is not None and self.labels is not None and self.targets is not None
        model = fit_task(refined, self.labels, self.targets, self.seed, self.budget, "cpu")
        real = self.real_labeled
        truth = target_array(list(real.annotations), self.targets, "real-labeled")
        predicted = model.predict(real.images)
        if self.targets.kind == "classification":
            return (predicted != truth).astype(np.float64)
        return np.linalg.norm(predicted - truth, axis=1)

    def score(self, step: int, refine: Callable[[np.ndarray], np.ndarray]) -> Candidate:
        refined = refine(self.synthetic)
        moved = float(np.abs(refined.astype(np.float64) - self.synthetic.astype(np.float64)).mean() / 127.5)
        consistency = None if self.consistency is None else self.consistency.score(refined[self.half :])
        retention, keeps = (None, True) if self.retention is None else self.retention.score(refined)
        downstream = None
        if self._downstream_ready:
            errors = self.downstream_errors(refined)
            if step == -1:  # the baseline's per-image errors give the verdict its noise, once
                self._baseline_errors = errors
            downstream = float(errors.mean())
        return Candidate(
            step,
            self.realism(refined),
            self.distance(refined[self.half :]),
            moved,
            consistency,
            keeps_labels(consistency, keeps),
            downstream,
            retention,
        )

    def _key(self, candidate: Candidate) -> tuple[float, ...]:
        """Smaller is better."""
        if candidate.downstream is not None:
            return (candidate.downstream, candidate.realism)
        if candidate.eligible:
            return (0.0, candidate.realism, candidate.kid)
        kept = [v for v in (candidate.retention, candidate.consistency) if v is not None and math.isfinite(v)]
        return (1.0, -min(kept, default=0.0), candidate.realism)  # the closest to keeping them first

    def _better(self, candidate: Candidate, best: Candidate) -> bool:
        """Whether `candidate` beats `best`: by _key, except that two eligible label-free candidates whose
        realism differs by less than the probe's noise are compared by their KID-style distance."""
        label_free = candidate.downstream is None and best.downstream is None
        if label_free and candidate.eligible and best.eligible:
            margin = verdict.accuracy_margin(best.realism, len(self.probe_real))
            if abs(candidate.realism - best.realism) <= margin:
                return candidate.kid < best.kid
        return self._key(candidate) < self._key(best)

    def consider(self, step: int, refiner: nn.Module) -> bool:
        """Score the refiner at `step`; True (and its weights kept) when it is the best so far."""
        candidate = self.score(step, lambda images: refine_with_module(refiner, images))
        self.candidates.append(candidate)
        state = {k: v.detach().cpu().clone() for k, v in refiner.state_dict().items()}
        if self.keep_candidates:
            self.states[step] = state
        if self.best is not None and not self._better(candidate, self.best):
            return False
        self.best, self.best_state = candidate, state
        return True

    def verdict(self) -> dict[str, Any]:
        """Is the chosen checkpoint measurably better than the raw synthetic images? (trainer.verdict)"""
        best, base = self.best, self.baseline
        if best is None:
            return verdict.label_free(base.realism, base.realism, len(self.probe_real), None)
        if best.downstream is not None and base.downstream is not None:
            return verdict.downstream(base.downstream, best.downstream, None, self._downstream_noise(base))
        return verdict.label_free(
            base.realism, best.realism, len(self.probe_real), best.consistency, best.retention, best.eligible
        )

    def _downstream_noise(self, base: Candidate) -> float:
        assert self.real_labeled is not None and base.downstream is not None
        count = len(self.real_labeled.images)
        if self.targets is not None and self.targets.kind == "classification":
            p = min(max(base.downstream, 0.05), 0.95)
            return math.sqrt(2 * p * (1 - p) / count)
        return float(self._baseline_errors.std() * math.sqrt(2 / count))

    def summary(self) -> dict[str, Any]:
        """What the model card records under `selection`."""
        base = asdict(self.baseline)
        if self.best is None:
            return {
                "criterion": self.criterion,
                "step": None,
                "why": "no checkpoint was scored",
                "baseline": base,
            }
        return {
            "criterion": self.criterion,
            "step": self.best.step,
            **{k: v for k, v in asdict(self.best).items() if k != "step"},
            "why": self._why(self.best),
            "baseline": base,
            "label_consistency": None if self.consistency is None else self.consistency.describe(),
            "label_retention": None if self.retention is None else self.retention.describe(),
            "candidates": [asdict(c) for c in self.candidates],
        }

    def _why(self, best: Candidate) -> str:
        scored = len(self.candidates)
        if best.downstream is not None:
            return (
                f"lowest error on held-out labeled real images ({best.downstream:.4g}, against "
                f"{self.baseline.downstream:.4g} for the raw synthetic images) among {scored} checkpoints"
            )
        if not best.eligible:
            return (
                f"no checkpoint kept the labels (a task model must learn them from refined images at least "
                f"{CONSISTENT:.0%} as well as from synthetic ones, and a synthetic-trained one read refined "
                f"images at at least {CONSISTENCY_FLOOR:.0%} of its quality); chose the one closest to that"
            )
        kept = "" if best.retention is None else f", keeping {best.retention:.0%} of the labels' quality"
        margin = verdict.accuracy_margin(self.baseline.realism, len(self.probe_real))
        if self.baseline.realism - best.realism <= margin:
            return (
                f"no checkpoint looked measurably more real than the raw synthetic images (fresh-classifier "
                f"accuracy {best.realism:.1%} against {self.baseline.realism:.1%}); chose the least "
                f"distinguishable of {sum(c.eligible for c in self.candidates)} that keep the labels{kept}"
            )
        return (
            f"most real-looking of the {sum(c.eligible for c in self.candidates)} of {scored} checkpoints "
            f"that keep the labels: a fresh real-vs-refined classifier was right on {best.realism:.1%} of "
            f"held-out images (raw synthetic: {self.baseline.realism:.1%}; 0.5 = cannot tell){kept}"
        )

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
        self.candidates = [_candidate(c) for c in state["candidates"]]
        self.best = _candidate(state["best"]) if state["best"] else None
        self.best_state = state["best_state"]


def _candidate(saved: dict[str, Any]) -> Candidate:
    """A Candidate from a checkpoint, also one written before label consistency existed."""
    saved = {"consistency": None, "downstream": None, "retention": None, **saved}
    return Candidate(**saved)


def build_selector(
    synthetic: np.ndarray,
    annotations: Sequence[Any] | None,
    real: np.ndarray,
    *,
    targets: Sequence[str] | None = None,
    real_labeled: tuple[np.ndarray, Sequence[Any]] | None = None,
    seed: int = 0,
    keep_candidates: bool = False,
    budget: TaskBudget = SELECTION_BUDGET,
) -> CheckpointSelector | None:
    """The selector every caller uses: label consistency on the annotation fields `targets` (default:
    what trainer.evaluate.choose_targets finds), downstream error when `real_labeled` is given.

    None (and a log line saying why) for sets too small to test a classifier on; without usable
    annotations the selector judges realism alone and its summary says so. `budget`: how long its
    classifiers and task models train (only the suite's `--quick` smoke run shortens it).
    """
    labels: LabeledSet | None = None
    if annotations:
        try:
            chosen = choose_targets(list(annotations), targets)
            target_array(list(annotations), chosen)
            labels = LabeledSet(synthetic, annotations, chosen)
        except EvaluationError as exc:
            log.warning("label consistency is off: %s", exc)
    labeled = None
    if real_labeled is not None and labels is not None:
        labeled = LabeledSet(real_labeled[0], real_labeled[1], labels.targets)
    try:
        return CheckpointSelector(
            synthetic,
            real,
            labels=labels,
            real_labeled=labeled,
            seed=seed,
            keep_candidates=keep_candidates,
            budget=budget,
        )
    except ValueError as exc:
        log.warning("checkpoint selection is off: %s; the last checkpoint is published", exc)
        return None

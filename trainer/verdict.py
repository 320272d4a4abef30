"""The verdict of a train job: did the published refiner help, and by what numbers?

`improved`, `no measurable change` or `worse`, always with the figures behind it and, for the last
two, what to try. With a labeled real set the verdict rests on downstream error (what users train a
refiner for); without one, on what every run can measure: realism (a fresh real-vs-refined
classifier) and label retention (trainer.consistency; label consistency is reported beside it). A
change smaller than its own noise is `no measurable change`, never an improvement.
"""

from __future__ import annotations

import math
from typing import Any

from trainer.consistency import CONSISTENCY_FLOOR, CONSISTENT

IMPROVED = "improved"
NO_CHANGE = "no measurable change"
WORSE = "worse"
MIN_MARGIN = 0.02
"""Smallest change in a classifier's accuracy that counts, whatever the probe size."""

TRY_NO_CHANGE = [
    "train longer (config steps) or with a larger budget (config reg_budget)",
    "check the real set shows what the simulator misses (GET /train-jobs/{id}/artifacts/samples.png)",
    "for per-image texture or sensor noise no deterministic map can add, give the refiner noise inputs",
]
TRY_WORSE = [
    "lower config reg_budget so the refiner stays closer to its input and keeps the labels",
    "give a labeled real set (real_labeled_dataset) so selection can use downstream error",
    "keep using the previous model: this one was published but not activated",
]


def accuracy_margin(accuracy: float, count: int) -> float:
    """Two standard errors of the difference of two accuracies measured on `count` probe images each."""
    p = min(max(accuracy, 0.05), 0.95)
    return max(MIN_MARGIN, 2 * math.sqrt(2 * p * (1 - p) / max(count, 1)))


def label_free(
    realism_synthetic: float,
    realism_refined: float,
    probe_count: int,
    consistency: float | None,
    retention: float | None = None,
    keeps_labels: bool = True,
) -> dict[str, Any]:
    """Realism: held-out accuracy of fresh real-vs-X classifiers (0.5 = indistinguishable).

    `keeps_labels` is the selector's retention gate (trainer.consistency.LabelRetention.score);
    `consistency` is reported only (it falls with any change of domain, wanted or not)."""
    margin = accuracy_margin(realism_synthetic, probe_count)
    gain = realism_synthetic - realism_refined
    numbers: dict[str, Any] = {
        "realism_synthetic": realism_synthetic,
        "realism_refined": realism_refined,
        "realism_gain": gain,
        "margin": margin,
        "label_consistency": consistency,
        "label_retention": retention,
    }
    if not keeps_labels:
        learnt = "n/a" if retention is None else f"{retention:.0%}"
        read = "n/a" if consistency is None else f"{consistency:.0%}"
        why = (
            f"refinement damages the labels: a task model learns them from refined images with {learnt} "
            f"of the quality it reaches on synthetic ones (at least {CONSISTENT:.0%} needed), and a "
            f"synthetic-trained one reads refined images at {read} of its quality (at least "
            f"{CONSISTENCY_FLOOR:.0%} needed)"
        )
        return _verdict(WORSE, "label-free", numbers, why)
    if gain > margin:
        why = (
            f"a fresh classifier tells refined from real images {realism_refined:.1%} of the time, against "
            f"{realism_synthetic:.1%} for the raw synthetic ones (a gain of {gain:.3f} > noise {margin:.3f})"
        )
        return _verdict(IMPROVED, "label-free", numbers, why + _kept(retention, consistency))
    if gain < -margin:
        why = (
            "refined images are easier to tell from real than synthetic ones "
            f"({realism_refined:.1%} > {realism_synthetic:.1%})"
        )
        return _verdict(WORSE, "label-free", numbers, why)
    why = (
        f"realism moved by {gain:+.3f} ({realism_synthetic:.1%} -> {realism_refined:.1%}), within the "
        f"noise of {margin:.3f}"
    )
    return _verdict(NO_CHANGE, "label-free", numbers, why)


def downstream(
    error_synthetic: float, error_refined: float, error_real: float | None, noise: float
) -> dict[str, Any]:
    """Error on held-out labeled real images of a task model trained on synthetic vs refined images.

    `noise` is the standard error of the difference (from the evaluation's held-out split).
    """
    numbers: dict[str, Any] = {
        "error_synthetic": error_synthetic,
        "error_refined": error_refined,
        "error_real": error_real,
        "noise": noise,
    }
    change = error_synthetic - error_refined
    if change > 2 * noise:
        why = (
            f"the downstream error fell from {error_synthetic:.4g} to {error_refined:.4g} (noise {noise:.2g})"
        )
        return _verdict(IMPROVED, "downstream", numbers, why)
    if change < -2 * noise:
        why = (
            f"the downstream error rose from {error_synthetic:.4g} to {error_refined:.4g} (noise {noise:.2g})"
        )
        return _verdict(WORSE, "downstream", numbers, why)
    why = (
        f"the downstream error moved from {error_synthetic:.4g} to {error_refined:.4g}, "
        f"within 2 x noise {noise:.2g}"
    )
    return _verdict(NO_CHANGE, "downstream", numbers, why)


def _kept(retention: float | None, consistency: float | None) -> str:
    if retention is None:
        return "; label retention not measured (the synthetic set has no usable annotations)"
    read = "" if consistency is None else f"; a synthetic-trained model reads them at {consistency:.0%}"
    return f", and the refined images keep {retention:.0%} of the labels' quality{read}"


def _verdict(verdict: str, basis: str, numbers: dict[str, Any], why: str) -> dict[str, Any]:
    tries = {IMPROVED: [], NO_CHANGE: TRY_NO_CHANGE, WORSE: TRY_WORSE}[verdict]
    return {"verdict": verdict, "basis": basis, "numbers": numbers, "why": why, "try": list(tries)}


def activates(verdict: dict[str, Any], policy: str) -> bool:
    """Whether a model with `verdict` becomes active by itself under train config `activate`."""
    if policy == "always":
        return True
    if policy == "never":
        return False
    return verdict.get("verdict") == IMPROVED

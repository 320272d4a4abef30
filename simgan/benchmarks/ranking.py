"""How well the label-free figures track usefulness: every scored checkpoint of a suite run, ranked.

Each checkpoint the selector scored is refined again, a task model is trained on its output and its
error on the held-out labeled real images (which the product never sees) is set beside the
checkpoint's label-free figures. The rank correlation of each figure with that error says whether
it orders checkpoints by usefulness (Musgrave et al. 2022 rank domain-adaptation validators this way).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def spearman(x: list[float], y: list[float]) -> float | None:
    """Rank correlation of two equally long lists (ties get their mean rank); None below 3 points."""
    if len(x) < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(values: list[float]) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    array = np.asarray(values)
    for value in np.unique(array):  # ties share their mean rank
        ranks[array == value] = ranks[array == value].mean()
    return ranks


def label_free_score(candidate: dict[str, Any]) -> float:
    """The selector's ordering as one number (lower is chosen first): realism among checkpoints that
    keep the labels, every one that does not ranked after them. (The selector also breaks realism
    ties within the probe's noise by KID; one number cannot say that, so `kid` is reported apart.)"""
    return candidate["realism"] + (0.0 if candidate["eligible"] else 1.0)


def checkpoint_ranking(
    selector: Any, shape: dict[str, Any], synthetic: Any, heldout: Any, pair: Any, seed: int, steps: int
) -> dict[str, Any]:
    """Every scored checkpoint's label-free score and downstream error on the held-out real images."""
    import copy

    from trainer.evaluate import choose_targets, fit_task, target_array
    from trainer.networks import RefinerConfig, build_refiner
    from trainer.refining import refine_with_module
    from trainer.task_models import TaskBudget

    targets = choose_targets(synthetic.annotations, list(pair.targets), pair.kind)
    labels = target_array(synthetic.annotations, targets)
    truth = target_array(heldout.annotations, targets, "real-labeled")
    budget = TaskBudget(steps=steps, members=1)
    refiner = build_refiner(RefinerConfig(**shape))
    points = []
    for candidate in selector.candidates:
        state = selector.states.get(candidate.step)
        if state is None:
            continue
        model = copy.deepcopy(refiner)
        model.load_state_dict(state)
        refined = refine_with_module(model, synthetic.images)
        task = fit_task(refined, labels, targets, seed, budget, "cpu")
        error = task.error(heldout.images, truth)
        points.append(
            {
                "step": candidate.step,
                "score": label_free_score(candidate.__dict__),
                "error": error,
                # The parts of the score, so other label-free criteria can be judged on the same runs.
                "realism": candidate.realism,
                "consistency": candidate.consistency,
                "retention": candidate.retention,
                "eligible": candidate.eligible,
                "reg_distance": candidate.reg_distance,
                "kid": candidate.kid,
            }
        )
    errors = [p["error"] for p in points]
    rho = spearman([p["score"] for p in points], errors)
    validators = {
        name: spearman([sign * float(p[key]) for p in points], errors)
        if all(p[key] is not None and math.isfinite(p[key]) for p in points)
        else None
        for name, key, sign in VALIDATORS
    }
    base = selector.baseline
    baseline = {"realism": base.realism, "consistency": base.consistency, "kid": base.kid}
    return {"checkpoints": points, "spearman": rho, "validators": validators, "baseline": baseline}


VALIDATORS = (
    ("realism", "realism", 1.0),
    ("kid", "kid", 1.0),
    ("-consistency", "consistency", -1.0),
    ("-retention", "retention", -1.0),
    ("reg_distance", "reg_distance", 1.0),
)
"""Label-free figures per checkpoint, signed so that lower should mean more useful; each one's rank
correlation with downstream error is reported (Musgrave et al. 2022 rank validators this way)."""

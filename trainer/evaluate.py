"""Does a refiner work? The S+U paper's protocol on data we can make or ship (SIMGAN.md, "How we measure it").

1. Downstream gap closure: one small task model trained on synthetic, on refined and (oracle) on
   labeled real images, each tested on held-out labeled real images;
   gap_closed = (e_syn - e_ref) / (e_syn - e_real). Each "task model" is an ensemble of a few small
   nets (task_models.Ensemble): a single net's error on the other domain swings with its seed.
2. Realism: held-out balanced accuracy of a fresh real-vs-refined classifier, and of real-vs-synthetic
   for contrast (0.5 = indistinguishable).
3. Kernel distance (KID-style): unbiased MMD^2, cubic polynomial kernel, between refined and real, on
   the penultimate features of the real-vs-synthetic classifier trained here (no downloaded weights).
   Those features know what tells synthetic from real, so the distance says how far refined images
   still are in that respect; artefacts that no synthetic image has are invisible to it (on the eye
   simulator KID fell a thousandfold while the fresh classifier of 2 still told refined from real
   96% of the time). Read it next to 2, never alone.
4. Label preservation: the oracle's error on refined images against their synthetic labels, next to
   its error on the synthetic images themselves.

A published model is refined through its ONNX file with onnxruntime, so what is measured is exactly
what is served. Without a labeled real set only 2 and 3 are measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from models.session import RefinerSession, load_refiner
from trainer import task_models
from trainer.task_models import TaskBudget

RefineFn = Callable[[np.ndarray], np.ndarray]
"""uint8 (N, H, W, C) -> uint8 (N, H, W, C)."""

DEFAULT_TARGETS = ("gaze.pitch", "gaze.yaw")
"""Targets used when none are named and the annotations carry them (the eye simulator's gaze)."""

MAX_IMAGES = 2000
"""Most images taken from each set (a seeded sample). The cost is the task models' training steps, not
the image count: about two minutes on a shared 2-core CPU at the default budget."""

REFINE_BATCH = 256
DEFAULT_BUDGET = TaskBudget()


class EvaluationError(ValueError):
    """Inputs that cannot be evaluated; the message says what to fix."""


class Annotated(Protocol):
    images: np.ndarray
    annotations: list[Any] | None


@dataclass(frozen=True)
class Targets:
    """What the task model predicts: annotation fields (dotted paths) and whether they are classes."""

    fields: tuple[str, ...]
    kind: str  # "regression" | "classification"
    classes: tuple[Any, ...] = ()

    def describe(self) -> str:
        if self.kind == "classification":
            return f"error rate of an ensemble classifying {self.fields[0]} ({len(self.classes)} classes)"
        return (
            f"mean Euclidean error of ({', '.join(self.fields)}) predicted by an ensemble of task models, "
            "in the annotations' units"
        )


def _field(annotation: Any, path: str, index: int, source: str) -> Any:
    value = annotation
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise EvaluationError(
                f"{source} image {index}'s annotations have no '{path}'; name fields that every image "
                f"has (e.g. --target gaze.pitch,gaze.yaw)"
            )
        value = value[part]
    return value


def choose_targets(
    annotations: Sequence[Any],
    fields: Sequence[str] | None = None,
    kind: str = "auto",
    source: str = "synthetic",
) -> Targets:
    """Decide what the task predicts from the training set's annotations: `fields` (default: gaze
    pitch and yaw when present). `source` names the set in error messages.

    `kind` auto: classification when a value is a string or bool, regression when all are numbers.
    """
    if not annotations:
        raise EvaluationError(f"the {source} set carries no annotations; the task model needs labels")
    if not fields:
        try:
            for path in DEFAULT_TARGETS:
                _field(annotations[0], path, 0, source)
        except EvaluationError:
            raise EvaluationError(
                "the annotations have no gaze.pitch/gaze.yaw; name the fields to predict "
                "(e.g. --target label or --target pose.x,pose.y)"
            ) from None
        fields = DEFAULT_TARGETS
    values = [[_field(a, f, i, source) for f in fields] for i, a in enumerate(annotations)]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for row in values for v in row)
    if kind == "auto":
        kind = "regression" if numeric else "classification"
    if kind == "regression" and not numeric:
        raise EvaluationError(f"regression needs numeric values in {', '.join(fields)}")
    if kind == "classification":
        if len(fields) != 1:
            raise EvaluationError("classification predicts one field; name exactly one with --target")
        return Targets(tuple(fields), kind, tuple(sorted({row[0] for row in values}, key=str)))
    if kind != "regression":
        raise EvaluationError(f"task kind must be auto, regression or classification, got '{kind}'")
    return Targets(tuple(fields), kind)


def target_array(annotations: Sequence[Any], targets: Targets, source: str = "synthetic") -> np.ndarray:
    """(N, k) float targets for regression, or (N,) int class indices for classification."""
    rows = [[_field(a, f, i, source) for f in targets.fields] for i, a in enumerate(annotations)]
    if targets.kind == "regression":
        return np.asarray(rows, dtype=np.float64)
    index = {c: i for i, c in enumerate(targets.classes)}
    unknown = {row[0] for row in rows} - set(index)
    if unknown:
        raise EvaluationError(
            f"{source}: {targets.fields[0]} has values the synthetic set does not, so no model trained on "
            f"it can predict them: {sorted(unknown, key=str)}"
        )
    return np.asarray([index[row[0]] for row in rows], dtype=np.int64)


def per_image_errors(predicted: np.ndarray, truth: np.ndarray, targets: Targets) -> np.ndarray:
    """(N,) errors: 0/1 for a class, the Euclidean distance for regression targets."""
    if targets.kind == "classification":
        return (predicted != truth).astype(np.float64)
    return np.asarray(np.linalg.norm(predicted - truth, axis=1), dtype=np.float64)


def gap_closed(
    error_synthetic: float, error_refined: float, error_real: float, noise: float = 0.0
) -> float | None:
    """(e_syn - e_ref) / (e_syn - e_real): 1 = refined data is as good as real, 0 = no better than
    synthetic, < 0 = worse. None when the oracle is not better than synthetic by more than `noise`
    (there is no gap to close, and a ratio over a gap within the noise would be any number)."""
    gap = error_synthetic - error_real
    if gap <= max(noise, 1e-12 * max(abs(error_synthetic), 1.0)):
        return None
    return (error_synthetic - error_refined) / gap


def onnx_refiner(session: RefinerSession) -> RefineFn:
    """Refine through an onnxruntime session, in batches."""

    def refine(images: np.ndarray) -> np.ndarray:
        out = [
            session.refine(np.ascontiguousarray(images[i : i + REFINE_BATCH]))
            for i in range(0, len(images), REFINE_BATCH)
        ]
        return np.concatenate(out)

    return refine


def published_refiner(version: str, registry: Any) -> tuple[str, RefineFn]:
    """(resolved version, refine function) for a model in the registry, after its sha256 check, on the
    engine the service would choose (SIMGAN_PROVIDER), so evaluation measures what is served."""
    from core.settings import get_settings

    session = load_refiner(registry, version, get_settings(), warm_batch_sizes=(1,))
    return session.version, onnx_refiner(session)


def _sample(count: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.permutation(count)[:limit]) if count > limit else np.arange(count)


def _halves(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(count)
    return order[: count // 2], order[count // 2 :]


def _check_images(name: str, images: np.ndarray, like: np.ndarray | None = None) -> None:
    if images.dtype != np.uint8 or images.ndim != 4:
        raise EvaluationError(f"{name}: images must be uint8 (N, H, W, C), got {images.dtype}{images.shape}")
    if len(images) < 4:
        raise EvaluationError(f"{name}: at least 4 images are needed, got {len(images)}")
    if like is not None and images.shape[1:] != like.shape[1:]:
        raise EvaluationError(
            f"{name}: images are {images.shape[1:]} (H, W, C) but the synthetic ones are {like.shape[1:]}"
        )


def realism(
    synthetic: np.ndarray,
    refined: np.ndarray,
    real: np.ndarray,
    *,
    seed: int,
    budget: TaskBudget,
    device: str,
    control: np.ndarray | None = None,
) -> dict[str, float]:
    """Realism accuracies and kernel distances; `synthetic` and `refined` are aligned (same images).

    `control`, other real images, gives the floor: real-vs-real accuracy (0.5 but for noise) and
    kernel distance (0 but for noise).
    """
    rng = np.random.default_rng(seed + 1)
    fake_train, fake_test = _halves(len(synthetic), rng)
    real_train, real_test = _halves(len(real), rng)
    vs_synthetic = task_models.fit_domain_classifier(
        real[real_train], synthetic[fake_train], seed=seed, budget=budget, device=device
    )
    vs_refined = task_models.fit_domain_classifier(
        real[real_train], refined[fake_train], seed=seed, budget=budget, device=device
    )
    # Features of held-out images from the net that learned what tells synthetic from real.
    real_features = vs_synthetic.features(real[real_test])

    def kid(images: np.ndarray) -> float:
        features = task_models.scale_like(vs_synthetic.features(images), real_features)
        return task_models.kernel_distance(features, task_models.scale_like(real_features, real_features))

    figures = {
        "accuracy_real_vs_refined": task_models.domain_accuracy(
            vs_refined, real[real_test], refined[fake_test]
        ),
        "accuracy_real_vs_synthetic": task_models.domain_accuracy(
            vs_synthetic, real[real_test], synthetic[fake_test]
        ),
        "kid_refined_vs_real": kid(refined[fake_test]),
        "kid_synthetic_vs_real": kid(synthetic[fake_test]),
    }
    if control is not None:
        other_train, other_test = _halves(len(control), rng)
        vs_real = task_models.fit_domain_classifier(
            real[real_train], control[other_train], seed=seed, budget=budget, device=device
        )
        figures["accuracy_real_vs_real"] = task_models.domain_accuracy(
            vs_real, real[real_test], control[other_test]
        )
        figures["kid_real_vs_real"] = kid(control[other_test])
    return figures


def fit_task(
    images: np.ndarray, y: np.ndarray, targets: Targets, seed: int, budget: TaskBudget, device: str
) -> task_models.Ensemble:
    """`budget.members` task models on (images, y), seeds derived from `seed`, as one ensemble."""
    seeds = [seed * 1000 + member for member in range(budget.members)]
    if targets.kind == "regression":
        return task_models.Ensemble(
            [task_models.fit_regressor(images, y, seed=s, budget=budget, device=device) for s in seeds]
        )
    classes = len(targets.classes)
    return task_models.Ensemble(
        [
            task_models.fit_classifier(images, y, seed=s, classes=classes, budget=budget, device=device)
            for s in seeds
        ]
    )


def downstream(
    synthetic: np.ndarray,
    refined: np.ndarray,
    labels: np.ndarray,
    real: np.ndarray,
    real_labels: np.ndarray,
    targets: Targets,
    *,
    seed: int,
    budget: TaskBudget,
    device: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(gap closure, label preservation) figures; `real` is split into the oracle's train and test halves."""
    train, test = _halves(len(real), np.random.default_rng(seed + 2))
    on_synthetic = fit_task(synthetic, labels, targets, seed, budget, device)
    on_refined = fit_task(refined, labels, targets, seed, budget, device)
    oracle = fit_task(real[train], real_labels[train], targets, seed, budget, device)
    errors = {
        "error_synthetic": on_synthetic.error(real[test], real_labels[test]),
        "error_refined": on_refined.error(real[test], real_labels[test]),
        "error_real": oracle.error(real[test], real_labels[test]),
    }
    # Two standard errors of the paired difference synthetic - real on the same test images: a gap
    # smaller than that is not a gap (shapes32 once had 0.340 against 0.335 on 400 images).
    paired = per_image_errors(on_synthetic.predict(real[test]), real_labels[test], targets) - (
        per_image_errors(oracle.predict(real[test]), real_labels[test], targets)
    )
    noise = float(2 * paired.std() / np.sqrt(max(len(paired), 1)))
    closed = gap_closed(**errors, noise=noise)
    gap = {**errors, "gap_noise": noise, "gap_closed": closed, "metric": targets.describe()}
    label_refined = oracle.error(refined, labels)
    label_synthetic = oracle.error(synthetic, labels)
    preservation = {
        "oracle_error_refined": label_refined,
        "oracle_error_synthetic": label_synthetic,
        "oracle_error_real": errors["error_real"],
        "shift": label_refined - label_synthetic,
    }
    return gap, preservation


def evaluate(
    model: str | RefineFn,
    synthetic: Annotated | np.ndarray,
    real_unlabeled: np.ndarray,
    real_labeled: Annotated | None = None,
    *,
    seed: int = 0,
    device: str = "cpu",
    registry: Any = None,
    targets: Sequence[str] | None = None,
    task: str = "auto",
    max_images: int = MAX_IMAGES,
    budget: TaskBudget = DEFAULT_BUDGET,
) -> dict[str, Any]:
    """Measure a refiner: a published `model` version (refined through its ONNX file; `registry`
    defaults to the configured one) or a refine function uint8 (N, H, W, C) -> same.

    `synthetic` needs annotations only when `real_labeled` is given (for the downstream task and
    label preservation); `real_unlabeled` feeds the realism figures. Deterministic for a seed.
    """
    started = time.perf_counter()
    version: str | None = None
    if isinstance(model, str):
        if registry is None:
            from core.settings import get_settings
            from models import Registry

            registry = Registry(get_settings().models_path)
        version, refine = published_refiner(model, registry)
    else:
        refine = model
    syn_images = synthetic if isinstance(synthetic, np.ndarray) else synthetic.images
    syn_notes = None if isinstance(synthetic, np.ndarray) else synthetic.annotations
    _check_images("synthetic", syn_images)
    _check_images("real", real_unlabeled, syn_images)
    if real_labeled is not None:
        _check_images("real-labeled", real_labeled.images, syn_images)
        if syn_notes is None or real_labeled.annotations is None:
            raise EvaluationError(
                "the downstream task needs annotations on the synthetic and real-labeled sets"
            )
    rng = np.random.default_rng(seed)
    pick = _sample(len(syn_images), max_images, rng)
    syn_images = syn_images[pick]
    real = real_unlabeled[_sample(len(real_unlabeled), max_images, rng)]
    refined = np.asarray(refine(syn_images))
    if refined.shape != syn_images.shape or refined.dtype != np.uint8:
        raise EvaluationError(
            f"the refiner returned {refined.dtype}{refined.shape}, expected {syn_images.shape}"
        )

    result: dict[str, Any] = {
        "model": version,
        "seed": seed,
        "counts": {"synthetic": len(syn_images), "real": len(real)},
    }
    control: np.ndarray | None = None
    if real_labeled is not None:
        assert syn_notes is not None and real_labeled.annotations is not None
        keep = _sample(len(real_labeled.images), max_images, rng)
        chosen = choose_targets([syn_notes[i] for i in pick], targets, task)
        labels = target_array([syn_notes[i] for i in pick], chosen)
        control = real_labeled.images[keep]
        real_labels = target_array([real_labeled.annotations[i] for i in keep], chosen, "real-labeled")
        result["counts"]["real_labeled"] = len(keep)
        result["task"] = {"kind": chosen.kind, "targets": list(chosen.fields)}
        result["downstream"], result["labels"] = downstream(
            syn_images, refined, labels, control, real_labels, chosen, seed=seed, budget=budget, device=device
        )
    result["realism"] = realism(
        syn_images, refined, real, seed=seed, budget=budget, device=device, control=control
    )
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result

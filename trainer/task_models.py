"""Small task models that measure a refiner: a regressor or classifier of annotations, a real-vs-other
classifier, and the features a kernel distance is computed on.

One architecture serves every task, so that the numbers differ only by what the model was trained
on. Everything runs on the CPU in seconds, and the same seed gives the same model: weights are drawn
and batches ordered inside a forked RNG, so calling these from a training loop leaves its random
state untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

FEATURES = 64
"""Width of the penultimate layer: the feature vector a kernel distance is computed on."""

POOL_GRID = (3, 4)
"""(h, w) cells the last feature maps are averaged into: keeps coarse position (where the iris is)."""


@dataclass(frozen=True)
class TaskBudget:
    """How long a task model trains: `steps` Adam steps of `batch_size` images, on `threads` CPU threads.

    One thread by default: these nets are too small to gain from more, and on a shared CPU the
    threads' synchronisation made a fit 3.7x slower with 2 threads than with 1.
    """

    steps: int = 300
    batch_size: int = 64
    lr: float = 2e-3
    threads: int = 1
    members: int = 3  # task models per ensemble (the downstream task; classifiers of realism are single)
    # At most this many passes over the training images, whatever `steps` says (None: no cap). On a
    # small set more steps only memorise it and cost seconds at every checkpoint.
    max_epochs: int | None = None


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch CPU ops on `count` threads inside the block, then restore the caller's setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class TaskNet(nn.Module):
    """(B, C, H, W) in [-1, 1] -> (B, outputs); `features` gives the (B, FEATURES) penultimate layer."""

    def __init__(self, channels: int, outputs: int, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),  # (B, w, H, W)
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),  # (B, 2w, H/2, W/2)
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),  # (B, 2w, H/4, W/4)
            nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1),  # (B, 4w, H/8, W/8)
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(POOL_GRID),  # (B, 4w, 3, 4) whatever the image size
            nn.Flatten(),
            nn.Linear(4 * width * POOL_GRID[0] * POOL_GRID[1], FEATURES),
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, outputs)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def to_tensor(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [-1, 1], the refiner's own scaling."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _fit(
    net: TaskNet, x: Tensor, loss_fn: nn.Module, y: Tensor, seed: int, budget: TaskBudget, device: str
) -> TaskNet:
    net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=budget.lr)
    rng = np.random.default_rng(seed)
    batch = min(budget.batch_size, len(x))
    steps = budget.steps
    if budget.max_epochs is not None:
        steps = min(steps, max(1, -(-budget.max_epochs * len(x) // batch)))
    with torch_threads(budget.threads):
        for _ in range(steps):
            idx = torch.from_numpy(rng.integers(0, len(x), size=batch))
            loss = loss_fn(net(x[idx].to(device)), y[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return net.eval()


@torch.no_grad()
def _outputs(
    net: TaskNet, images: np.ndarray, device: str, features: bool = False, threads: int = 1
) -> np.ndarray:
    chunks = []
    with torch_threads(threads):
        for start in range(0, len(images), 512):
            x = to_tensor(images[start : start + 512]).to(device)
            chunks.append((net.features(x) if features else net(x)).cpu())
    return torch.cat(chunks).numpy().astype(np.float64)


class Regressor:
    """Predicts (N, k) real-valued targets; trained on standardised targets, answers in their units."""

    def __init__(self, net: TaskNet, mean: np.ndarray, std: np.ndarray, device: str) -> None:
        self.net, self.mean, self.std, self.device = net, mean, std, device

    def predict(self, images: np.ndarray) -> np.ndarray:
        return _outputs(self.net, images, self.device) * self.std + self.mean

    def error(self, images: np.ndarray, targets: np.ndarray) -> float:
        """Mean Euclidean distance between predicted and true target vectors, in the targets' units."""
        return float(np.linalg.norm(self.predict(images) - targets, axis=1).mean())

    def features(self, images: np.ndarray) -> np.ndarray:
        return _outputs(self.net, images, self.device, features=True)


class Classifier:
    """Predicts one of `classes` integer labels."""

    def __init__(self, net: TaskNet, device: str) -> None:
        self.net, self.device = net, device

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        logits = _outputs(self.net, images, self.device)  # (N, classes)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return _outputs(self.net, images, self.device).argmax(axis=1)

    def error(self, images: np.ndarray, labels: np.ndarray) -> float:
        """Fraction of images whose class is wrong."""
        return float((self.predict(images) != labels).mean())

    def features(self, images: np.ndarray) -> np.ndarray:
        return _outputs(self.net, images, self.device, features=True)


class Ensemble:
    """The mean prediction of task models trained alike but for their seed.

    How a model trained on one domain errs on another depends much on its initialisation (one
    regressor's error on real images ranged 9.9-12.0 degrees over 4 seeds); averaging a few members'
    predictions makes the figure a property of the training data rather than of a seed.
    """

    def __init__(self, members: list[Regressor] | list[Classifier]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = members

    def predict(self, images: np.ndarray) -> np.ndarray:
        members = self.members
        if isinstance(members[0], Regressor):
            return np.mean([m.predict(images) for m in members], axis=0)  # type: ignore[union-attr]
        return np.mean([m.probabilities(images) for m in members], axis=0).argmax(axis=1)  # type: ignore[union-attr]

    def error(self, images: np.ndarray, targets: np.ndarray) -> float:
        """Regression: mean Euclidean error in the targets' units; classification: error rate."""
        predicted = self.predict(images)
        if isinstance(self.members[0], Regressor):
            return float(np.linalg.norm(predicted - targets, axis=1).mean())
        return float((predicted != targets).mean())


def _check(images: np.ndarray, count: int) -> None:
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N, H, W, C), got {images.dtype}{images.shape}")
    if len(images) != count:
        raise ValueError(f"{len(images)} images but {count} labels")
    if count == 0:
        raise ValueError("cannot train a task model on zero images")


def fit_regressor(
    images: np.ndarray,
    targets: np.ndarray,
    *,
    seed: int,
    budget: TaskBudget = TaskBudget(),
    device: str = "cpu",
) -> Regressor:
    """Train a regressor of `targets` (N, k) from uint8 `images` (N, H, W, C)."""
    targets = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    _check(images, len(targets))
    mean = targets.mean(axis=0)
    std = targets.std(axis=0) + 1e-6
    y = torch.from_numpy((targets - mean) / std).float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = TaskNet(images.shape[-1], targets.shape[1])
        _fit(net, to_tensor(images), nn.MSELoss(), y, seed, budget, device)
    return Regressor(net, mean, std, device)


def fit_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int,
    classes: int | None = None,
    budget: TaskBudget = TaskBudget(),
    device: str = "cpu",
) -> Classifier:
    """Train a classifier of integer `labels` (N,) in [0, classes) from uint8 `images` (N, H, W, C)."""
    labels = np.asarray(labels, dtype=np.int64)
    _check(images, len(labels))
    classes = classes or int(labels.max()) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = TaskNet(images.shape[-1], max(classes, 2))
        _fit(net, to_tensor(images), nn.CrossEntropyLoss(), torch.from_numpy(labels), seed, budget, device)
    return Classifier(net, device)


def fit_domain_classifier(
    real: np.ndarray, other: np.ndarray, *, seed: int, budget: TaskBudget = TaskBudget(), device: str = "cpu"
) -> Classifier:
    """A real (class 0) vs other (class 1) classifier, trained on equal numbers of each."""
    count = min(len(real), len(other))
    images = np.concatenate([real[:count], other[:count]])
    labels = np.concatenate([np.zeros(count, np.int64), np.ones(count, np.int64)])
    return fit_classifier(images, labels, seed=seed, classes=2, budget=budget, device=device)


def domain_accuracy(classifier: Classifier, real: np.ndarray, other: np.ndarray) -> float:
    """Balanced held-out accuracy of a real-vs-other classifier (0.5 = cannot tell them apart)."""
    real_correct = 1.0 - classifier.predict(real).mean()
    other_correct = classifier.predict(other).mean()
    return float((real_correct + other_correct) / 2)


def kernel_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel k(a, b) = (a.b / d + 1)^3, as KID computes it.

    `x` (n, d) and `y` (m, d) are feature vectors; 0 in expectation when both come from one
    distribution (the unbiased estimate can dip slightly below 0).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("a kernel distance needs at least 2 feature vectors on each side")
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    n, m = len(x), len(y)
    within_x = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within_x + within_y - 2.0 * kxy.mean())


def scale_like(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Divide features by one number, the reference set's root-mean-square feature value, so that
    a.b / d is about 1 for reference vectors (the regime KID's kernel is used in) whatever scale the
    feature net happened to learn; one number for all units keeps their relative weights."""
    rms = float(np.sqrt(np.mean(np.square(reference))))
    return features / max(rms, 1e-12)

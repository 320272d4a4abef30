"""Self-regularisation as a budget: how far R may move an image, held by an adapted weight (dual ascent).

A fixed lambda means different things on different data: the L1 between R(x) and x scales with the
image's contrast, and the adversarial loss's pull with how far apart the domains are. So the user-
facing knob is a budget `eps` in the data's own units (a multiple of the pixel distance between the
two domains), and the weight is a Lagrange multiplier: it grows while R moves images further than
`eps` on average and shrinks while R stays inside, so R uses its budget where D asks for it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MIN_SPREAD_SHARE = 0.05
"""The budget's floor as a share of the synthetic images' mean absolute deviation, so that domains
whose pixel values are distributed alike (a pure shape gap) still leave R room to move."""
STEP = 0.05
"""Dual ascent rate on log(lambda): lambda changes by at most about 5% per step when the constraint
is missed by its own size, so it follows the refiner's drift without oscillating."""
LAMBDA_RANGE = (1e-3, 1e3)


def pixel_w1(a: np.ndarray, b: np.ndarray, quantiles: int = 1001) -> float:
    """1-Wasserstein distance between the pixel values of two uint8 image sets, in [-1, 1] units."""
    levels = np.linspace(0.0, 1.0, quantiles)
    qa = np.quantile(a.astype(np.float64) / 127.5 - 1.0, levels)
    qb = np.quantile(b.astype(np.float64) / 127.5 - 1.0, levels)
    return float(np.abs(qa - qb).mean())


def budget_for(synthetic: np.ndarray, real: np.ndarray, multiple: float) -> float:
    """`multiple` x max(pixel W1 between the domains, 5% of the synthetic mean absolute deviation)."""
    values = synthetic.astype(np.float32) / 127.5 - 1
    spread = float(np.abs(values - values.mean()).mean())
    return multiple * max(pixel_w1(synthetic, real), MIN_SPREAD_SHARE * spread, 1e-4)


class DualWeight:
    """lambda for the self-regularisation term `lambda * distance / eps`, adapted every step."""

    def __init__(self, eps: float, initial: float, floor: float = 0.0) -> None:
        """`floor`: the lowest weight on the mean distance itself, lambda / eps (so lambda >= floor * eps;
        never below LAMBDA_RANGE's 1e-3): the budget can tighten a fixed weight, never loosen it."""
        self.eps = eps
        self.log_lambda = math.log(min(max(initial, LAMBDA_RANGE[0]), LAMBDA_RANGE[1]))
        self.log_floor = math.log(min(max(floor * eps, LAMBDA_RANGE[0]), LAMBDA_RANGE[1]))
        self.log_lambda = max(self.log_lambda, self.log_floor)

    @property
    def value(self) -> float:
        return math.exp(self.log_lambda)

    def update(self, distance: float) -> None:
        """One ascent step on log(lambda) after a refiner update that moved images by `distance`."""
        excess = min(max(distance / self.eps - 1.0, -1.0), 1.0)  # clipped: one outlier batch moves little
        self.log_lambda = min(max(self.log_lambda + STEP * excess, self.log_floor), math.log(LAMBDA_RANGE[1]))

    def state_dict(self) -> dict[str, Any]:
        return {"eps": self.eps, "log_lambda": self.log_lambda, "log_floor": self.log_floor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.eps = float(state["eps"])
        self.log_lambda = float(state["log_lambda"])
        # A checkpoint saved before the floor existed ran with LAMBDA_RANGE's low end.
        self.log_floor = float(state.get("log_floor", math.log(LAMBDA_RANGE[0])))

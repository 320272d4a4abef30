"""The time left of a training run, smoothed, and right across phases whose steps cost differently.

A pretraining step updates one network once; an adversarial step updates the refiner `kg` times
and the discriminator `kd` times, each through both networks. An ETA from the mean step time so far
therefore jumps when the adversarial phase starts, and one from the last step's time jitters. Here
each phase keeps a moving average of its own step time; a phase not reached yet is priced from the
one being run, scaled by how many network passes its steps take.
"""

from __future__ import annotations

from collections.abc import Sequence

SMOOTHING = 0.1
"""Weight of the newest step in each phase's moving average of step time (about the last 10 steps)."""


def step_weights(kg: int, kd: int) -> dict[str, float]:
    """Relative cost of one step of each phase: R pretraining, D pretraining, adversarial."""
    # An adversarial R update also runs D forward and backward (about 1.5 pretraining R steps).
    return {"pretrain_refiner": 1.0, "pretrain_discriminator": 1.0, "adversarial": 1.5 * kg + kd}


class Eta:
    """Seconds left of steps 1..total, the phases' steps in `lengths` order (name, count)."""

    def __init__(
        self, lengths: Sequence[tuple[str, int]], weights: dict[str, float], checkpoint_every: int = 0
    ) -> None:
        self.lengths = list(lengths)
        self.weights = weights
        self.checkpoint_every = checkpoint_every
        self.per_step: dict[str, float] = {}
        self.per_checkpoint: float | None = None

    def observe_checkpoint(self, seconds: float) -> None:
        """One checkpoint (written, scored by the selector, drawn) took `seconds`: with a labeled real
        set a checkpoint can cost more than hundreds of steps, so it is priced on its own."""
        last = self.per_checkpoint
        self.per_checkpoint = seconds if last is None else last + SMOOTHING * (seconds - last)

    def _checkpoints_left(self, step: int) -> int:
        total = sum(count for _, count in self.lengths)
        if not self.checkpoint_every or step >= total:
            return 0
        scheduled = (total - 1) // self.checkpoint_every - step // self.checkpoint_every
        return max(0, scheduled) + 1  # and the final one

    def observe(self, phase: str, seconds: float) -> None:
        """One step of `phase` took `seconds`."""
        last = self.per_step.get(phase)
        self.per_step[phase] = seconds if last is None else last + SMOOTHING * (seconds - last)

    def remaining(self, step: int) -> float | None:
        """Seconds until the last step, after `step` steps are done; None before any step is timed."""
        if not self.per_step:
            return None
        known, cost = next(iter(reversed(self.per_step.items())))
        per_weight = cost / self.weights[known]
        left, start = 0.0, 0
        for phase, count in self.lengths:
            todo = max(0, min(count, start + count - step))
            left += todo * self.per_step.get(phase, per_weight * self.weights[phase])
            start += count
        return left + self._checkpoints_left(step) * (self.per_checkpoint or 0.0)

"""The ETA of a run: smoothed, and priced per phase so it does not jump when the phase changes."""

from __future__ import annotations

from trainer.eta import Eta, step_weights

LENGTHS = [("pretrain_refiner", 10), ("pretrain_discriminator", 10), ("adversarial", 100)]


def test_nothing_is_estimated_before_a_step_is_timed() -> None:
    assert Eta(LENGTHS, step_weights(2, 1)).remaining(0) is None


def test_a_phase_not_reached_yet_is_priced_by_its_network_passes() -> None:
    eta = Eta(LENGTHS, step_weights(2, 1))
    eta.observe("pretrain_refiner", 0.1)

    # 9 R steps + 10 D steps at 0.1 s, 100 adversarial steps at 4x the cost (1.5 x 2 + 1).
    assert abs(eta.remaining(1) - (0.9 + 1.0 + 100 * 0.4)) < 1e-9


def test_one_slow_step_moves_the_estimate_by_a_tenth_of_its_excess() -> None:
    eta = Eta(LENGTHS, step_weights(2, 1))
    for _ in range(20):
        eta.observe("adversarial", 1.0)
    before = eta.remaining(50)
    eta.observe("adversarial", 3.0)  # a checkpoint-heavy or contended step

    assert before == 70.0
    assert abs(eta.remaining(51) - 69 * 1.2) < 1e-9


def test_the_estimate_is_zero_after_the_last_step() -> None:
    eta = Eta(LENGTHS, step_weights(2, 1))
    eta.observe("adversarial", 1.0)
    assert eta.remaining(120) == 0


def test_checkpoints_still_to_come_are_priced_by_the_last_ones() -> None:
    eta = Eta(LENGTHS, step_weights(2, 1), checkpoint_every=50)
    eta.observe("adversarial", 0.1)
    eta.observe_checkpoint(30.0)  # scoring with a labeled set: far more than a step

    # After step 60 of 120: adversarial steps left 60 at 0.1 s, checkpoints at 100 and the final one.
    assert abs(eta.remaining(60) - (60 * 0.1 + 2 * 30.0)) < 1e-9
    assert eta.remaining(120) == 0

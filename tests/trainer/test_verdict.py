"""The verdict: improvements beyond the noise only; damaged labels are worse whatever the realism."""

from __future__ import annotations

from trainer import verdict


def test_a_realism_gain_within_the_noise_is_no_measurable_change() -> None:
    result = verdict.label_free(0.90, 0.89, probe_count=256, consistency=1.0)
    assert result["verdict"] == verdict.NO_CHANGE
    assert result["try"] == verdict.TRY_NO_CHANGE


def test_a_realism_gain_beyond_the_noise_with_labels_kept_is_improved() -> None:
    result = verdict.label_free(0.99, 0.70, probe_count=256, consistency=0.80, retention=0.98)
    assert result["verdict"] == verdict.IMPROVED
    assert result["try"] == []
    assert "98%" in result["why"] and "80%" in result["why"]


def test_refined_images_that_lose_their_labels_are_worse_however_real_they_look() -> None:
    result = verdict.label_free(
        0.99, 0.50, probe_count=256, consistency=0.99, retention=0.60, keeps_labels=False
    )
    assert result["verdict"] == verdict.WORSE
    assert "damages the labels" in result["why"] and "60%" in result["why"]


def test_a_synthetic_trained_model_reading_refined_images_worse_alone_is_not_damage() -> None:
    # The domain moved (what a refiner is for); the labels can still be learnt from the refined images.
    result = verdict.label_free(0.99, 0.70, probe_count=256, consistency=0.40, retention=1.0)
    assert result["verdict"] == verdict.IMPROVED


def test_the_noise_margin_shrinks_with_more_probe_images() -> None:
    assert verdict.accuracy_margin(0.8, 100) > verdict.accuracy_margin(0.8, 10_000) == verdict.MIN_MARGIN


def test_downstream_errors_decide_when_labeled_real_images_are_given() -> None:
    assert verdict.downstream(10.0, 7.0, 6.0, noise=0.5)["verdict"] == verdict.IMPROVED
    assert verdict.downstream(10.0, 9.5, 6.0, noise=0.5)["verdict"] == verdict.NO_CHANGE
    assert verdict.downstream(10.0, 12.0, 6.0, noise=0.5)["verdict"] == verdict.WORSE


def test_only_an_improved_model_activates_itself_by_default() -> None:
    improved, unchanged = {"verdict": verdict.IMPROVED}, {"verdict": verdict.NO_CHANGE}
    assert verdict.activates(improved, "if_improved") and not verdict.activates(unchanged, "if_improved")
    assert verdict.activates(unchanged, "always") and not verdict.activates(improved, "never")

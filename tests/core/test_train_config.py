from __future__ import annotations

import subprocess
import sys

import pytest

from core.train_config import CONFIG_KEYS, ConfigError, TrainConfig

DESIGN_KEYS = (
    *("steps", "batch_size", "refiner_lr", "discriminator_lr", "optimizer", "lambda_reg"),
    *("regularization_space", "history_size", "kg", "kd", "pretrain_refiner_steps"),
    *("pretrain_discriminator_steps", "refiner_channels", "refiner_blocks", "refiner_kernel"),
    *("checkpoint_every", "seed", "device", "evaluate", "instance_noise", "activate"),
)
ADDED_KEYS = (
    "reg_budget",
    "reg_floor",
    "discriminator_patch",
    "discriminator_norm",
    "ema_decay",
    "refiner_residual",
    "noise_channels",
    "label_weight",
    "precision",
)
"""Keys beyond DESIGN.md's list (README, "Training"; bench/results/quality_investigation.md says why)."""


def test_config_keys_are_exactly_the_design_keys_and_the_quality_keys() -> None:
    assert sorted(CONFIG_KEYS) == sorted(DESIGN_KEYS + ADDED_KEYS)
    assert sorted(TrainConfig().to_dict()) == sorted(DESIGN_KEYS + ADDED_KEYS)


def test_cli_strings_are_coerced_to_the_keys_types() -> None:
    config = TrainConfig.from_overrides(
        {"steps": "12", "refiner_lr": "1e-3", "evaluate": "true", "optimizer": "SGD", "device": "cpu"}
    )
    assert config.steps == 12
    assert config.refiner_lr == 0.001
    assert config.evaluate is True
    assert config.optimizer == "sgd"
    assert TrainConfig.from_overrides({"evaluate": "false"}).evaluate is False


def test_history_size_defaults_to_a_hundred_batches() -> None:
    assert TrainConfig.from_overrides({"batch_size": 8}).history_size == 800
    assert TrainConfig.from_overrides({"batch_size": 8, "history_size": "50"}).history_size == 50


def test_unknown_config_keys_are_refused_by_name_with_the_nearest_known_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_overrides({"lr": 1e-3, "foo": 1, "stpes": 5, "batchsize": 8})
    message = str(caught.value)
    assert message.startswith(
        "unknown config key(s): 'batchsize' (did you mean batch_size?), 'foo', "
        "'lr' (did you mean refiner_lr or discriminator_lr?), 'stpes' (did you mean steps?); "
        "known keys: steps,"
    )
    assert message.count("known keys:") == 1


def test_every_bad_value_is_named_with_what_is_allowed() -> None:
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_overrides(
            {"optimizer": "rmsprop", "steps": "0", "batch_size": "many", "evaluate": "maybe", "device": "tpu"}
        )
    message = str(caught.value)
    assert "optimizer must be one of adam, sgd, got 'rmsprop'" in message
    assert "steps must be a positive integer, got 0" in message
    assert "batch_size must be an integer, got 'many'" in message
    assert "evaluate must be true or false" in message
    assert "device must be one of auto, cpu, cuda" in message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"regularization_space": "vgg"}, "regularization_space must be one of identity, channel_mean"),
        ({"refiner_kernel": 4}, "refiner_kernel must be odd"),
        ({"batch_size": 1}, "batch_size must be at least 2"),
        ({"lambda_reg": -1}, "lambda_reg must be a number >= 0"),
        ({"instance_noise": -0.1}, "instance_noise must be a number >= 0"),
        ({"refiner_lr": 0}, "refiner_lr must be a positive number"),
        ({"pretrain_refiner_steps": -1}, "pretrain_refiner_steps must be an integer >= 0"),
        ({"kg": 2.5}, "kg must be an integer"),
    ],
)
def test_bad_values_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_overrides(overrides)


def test_config_round_trips_through_its_dict() -> None:
    config = TrainConfig.from_overrides({"steps": 7, "lambda_reg": 0.1, "kg": 50})
    assert TrainConfig.from_overrides(config.to_dict()) == config


def test_config_module_does_not_import_torch() -> None:
    code = "import sys, core.train_config; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_saved_config_keeps_the_meaning_it_had_before_newer_keys_existed() -> None:
    saved = TrainConfig.from_overrides({"steps": 7}).to_dict()
    del saved["reg_budget"]  # as a job queued before the key existed recorded it

    assert TrainConfig.from_saved(saved).reg_budget == 0  # the fixed lambda it trained with
    assert TrainConfig.from_saved(saved, {"reg_budget": "1.5"}).reg_budget == 1.5
    assert TrainConfig.from_saved(saved).steps == 7
    assert TrainConfig.from_overrides({}).reg_budget == 2.0

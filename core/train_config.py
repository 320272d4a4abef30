"""The training configuration: exactly the config keys of DESIGN.md, with defaults and checks.

Torch-free: the service validates train-job configs with it before anything is queued.
Values may arrive as strings (CLI `--config key=value`); `TrainConfig.from_overrides` coerces them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("adam", "sgd"),
    "regularization_space": ("identity", "channel_mean"),
    "device": ("auto", "cpu", "cuda"),
    "discriminator_norm": ("spectral", "none"),
    "activate": ("if_improved", "always", "never"),
}
"""Keys whose value must be one of a few names."""

LEGACY_VALUES: dict[str, Any] = {
    "instance_noise": 0.0,
    "reg_budget": 0.0,
    "discriminator_patch": 0.0,
    "discriminator_norm": "none",
    "ema_decay": 0.0,
    "activate": "always",
    "refiner_residual": False,
    "noise_channels": 0,
}
"""Keys added after a run may have started, with the value such a run trained with: a saved config
(a checkpoint's, a queued job's) that lacks one means this value, not today's default."""

HISTORY_PER_BATCH = 100
"""history_size defaults to this many batches of refined images (SIMGAN.md: B = 100 x batch size)."""


MAX_NOISE_CHANNELS = 16
"""More noise channels than this only slow R's first conv: a few already give every pixel its own draw."""


class ConfigError(ValueError):
    """A training config with unknown keys or bad values; the message names every one of them."""


@dataclass(frozen=True)
class TrainConfig:
    # Algorithm 1 iterations after pretraining (each: kg refiner updates, then kd D updates).
    # 1000 is about 8 minutes on 2 CPU cores at the defaults below.
    steps: int = 1000
    # Images per update. The paper uses 512 with SGD; 32 keeps a CPU step under half a second.
    batch_size: int = 32
    # Adam's usual GAN rate (with betas 0.5, 0.999); for optimizer=sgd the paper's 1e-3 is a better start.
    refiner_lr: float = 2e-4
    discriminator_lr: float = 2e-4
    # Most reimplementations use Adam and it needs no tuning of momentum; sgd follows the paper.
    optimizer: str = "adam"
    # Weight of the self-regularisation L1, taken as the MEAN over pixels and channels of
    # |psi(R(x)) - psi(x)| in [-1, 1] units (so it is independent of image size), against the mean
    # per-patch cross-entropy (about 0.69 at balance). On the eye simulator after 400 steps: 0.5 moved
    # pixels by 32 levels on average and drew ghost contours; 1.0 by 20 (matching the real set's
    # brightness); 2.0 by 10. Lower it for stronger refinement. A lambda L for a sum-normalised L1
    # (summed over the H * W * C values of an image) corresponds to L * H * W * C here.
    lambda_reg: float = 1.0
    # How far R may move an image: the mean |psi(R(x)) - psi(x)| may use at most this multiple of the
    # pixel distance between the two domains (the 1-Wasserstein distance of their pixel values, floored
    # at 5% of the synthetic images' mean absolute deviation). lambda_reg is then only the starting
    # weight: it is adapted every step (dual ascent) so the refiner spends its budget and no more, which
    # means the same on 8x8 and 224x224 images, high- and low-contrast ones. 0 = the paper's fixed lambda.
    reg_budget: float = 2.0
    # psi: identity for grayscale eyes (the paper's choice); channel_mean for colour or depth images.
    regularization_space: str = "identity"
    # Refined images kept for D (history buffer); None means HISTORY_PER_BATCH x batch_size (the paper's B).
    history_size: int | None = None
    # Std of Gaussian noise added to every image D sees, real and refined alike, in [-1, 1] units
    # ("instance noise"). It hides fine texture and sensor noise that a deterministic refiner cannot
    # produce, so D's gradient stops rewarding artefacts that imitate them. 0 = the paper's D. On the
    # eye simulator 0.25 took the median downstream gap closed from -0.11 / -0.09 to 0.81 / 0.69
    # (gap 0.5 / 1.0, 3 seeds; bench/results/quality.md against quality_no_instance_noise.md).
    instance_noise: float = 0.25
    # D's patch (receptive field) as a share of the image's shorter side, at most the paper's 23 pixels,
    # so D stays local on small images too (23x23 covers all of an 8x8 image). 0 = the paper's 23 px.
    discriminator_patch: float = 0.5
    # Spectral normalisation of D's convs keeps D's gradients bounded, so R is not thrown around by an
    # overconfident D; none = the paper's D.
    discriminator_norm: str = "spectral"
    # Exponential moving average of R's weights, which is what checkpoints are scored on and what is
    # exported: it smooths the oscillation of adversarial training. 0 = the raw weights.
    ema_decay: float = 0.99
    # Refiner and discriminator updates per iteration; the paper's default ratio (Kg=2, Kd=1).
    kg: int = 2
    kd: int = 1
    # The paper pretrains R for 1000 steps and D for 200; R learns near-identity long before 1000 at
    # Adam's rate, and these shorter phases keep a CPU run to minutes.
    pretrain_refiner_steps: int = 200
    pretrain_discriminator_steps: int = 50
    # Refiner width, ResNet blocks and kernel. The paper's eye refiner is 64/4/3; width 32 is ~3.5x
    # faster on CPU and ample for 55x35 eyes. Set refiner_channels=64 to reproduce the paper.
    refiner_channels: int = 32
    refiner_blocks: int = 4
    refiner_kernel: int = 3
    # R(x) = clip(x + f(x)), starting as the exact identity (trainer/networks.py); false: tanh(f(x)).
    refiner_residual: bool = True
    # Channels of per-pixel standard normal noise R takes beside the image (a stochastic refiner), for
    # data whose real side has per-image texture or sensor noise that no deterministic map can
    # produce. The published model then takes a seed: the same image with the same seed gives the
    # same output (models/noise.py). 0 = deterministic.
    noise_channels: int = 0
    # A checkpoint costs a few MB and well under a second; every 250 steps loses at most ~2 minutes on CPU.
    checkpoint_every: int = 250
    seed: int = 0
    # auto: CUDA when available (with bf16 autocast and channels_last), else CPU.
    device: str = "auto"
    # Run the evaluation (realism, label preservation) after training and record it in the model card.
    evaluate: bool = False
    # Whether the published model becomes the one the service refines with: if_improved (only when the
    # job's verdict is `improved`), always, or never (activate it by hand: POST /models/{v}/activate).
    activate: str = "if_improved"

    def __post_init__(self) -> None:
        problems = _problems(asdict(self))
        if problems:
            raise ConfigError("; ".join(problems))
        if self.history_size is None:
            object.__setattr__(self, "history_size", HISTORY_PER_BATCH * self.batch_size)

    @classmethod
    def from_overrides(cls, mapping: Mapping[str, Any] | None = None) -> TrainConfig:
        """The defaults with `mapping` applied; values may be strings ("true", "64", "1e-4")."""
        mapping = dict(mapping or {})
        unknown = sorted(set(mapping) - set(CONFIG_KEYS))
        problems = []
        if unknown:
            problems.append(
                f"unknown config key(s): {', '.join(unknown)} (known keys: {', '.join(CONFIG_KEYS)})"
            )
        values: dict[str, Any] = {}
        for key, raw in mapping.items():
            if key in unknown:
                continue
            try:
                values[key] = _coerce(key, raw)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            # Also name the bad values among the keys that did coerce, so one message lists everything.
            problems += _problems({**asdict(cls()), "history_size": None, **values})
            raise ConfigError("; ".join(problems))
        return cls(**values)

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """The config a checkpoint or a queued job recorded (keys it predates get LEGACY_VALUES), with
        `overrides` applied: resuming continues the run that was started, whatever today's defaults."""
        return cls.from_overrides({**LEGACY_VALUES, **saved, **(overrides or {})})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CONFIG_KEYS: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig))

_INT_KEYS = (
    "steps",
    "batch_size",
    "history_size",
    "kg",
    "kd",
    "pretrain_refiner_steps",
    "pretrain_discriminator_steps",
    "refiner_channels",
    "refiner_blocks",
    "refiner_kernel",
    "checkpoint_every",
    "seed",
    "noise_channels",
)
_POSITIVE_INT_KEYS = (
    "steps",
    "batch_size",
    "kg",
    "kd",
    "refiner_channels",
    "refiner_blocks",
    "refiner_kernel",
    "checkpoint_every",
)
_NON_NEGATIVE_INT_KEYS = ("pretrain_refiner_steps", "pretrain_discriminator_steps", "seed", "noise_channels")
_FLOAT_KEYS = (
    "refiner_lr",
    "discriminator_lr",
    "lambda_reg",
    "instance_noise",
    "reg_budget",
    "discriminator_patch",
    "ema_decay",
)
_BOOL_KEYS = ("evaluate", "refiner_residual")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _coerce(key: str, raw: Any) -> Any:
    """One value from the CLI or JSON, as the type of `key`; ValueError naming the key otherwise."""
    if key == "history_size" and raw in (None, "", "auto"):
        return None
    if key in _INT_KEYS:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError(f"{key} must be an integer, got {raw!r}")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{key} must be an integer, got {raw!r}") from None
    if key in _FLOAT_KEYS:
        if isinstance(raw, bool):
            raise ValueError(f"{key} must be a number, got {raw!r}")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{key} must be a number, got {raw!r}") from None
    if key in _BOOL_KEYS:
        if isinstance(raw, bool):
            return raw
        if str(raw).strip().lower() in _TRUE:
            return True
        if str(raw).strip().lower() in _FALSE:
            return False
        raise ValueError(f"{key} must be true or false, got {raw!r}")
    return str(raw).strip().lower() if isinstance(raw, str) else raw


def _problems(config: dict[str, Any]) -> list[str]:
    """Every bad value in `config` (a TrainConfig as a dict), as messages that say what is allowed."""
    problems = []
    for key in _POSITIVE_INT_KEYS:
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{key} must be a positive integer, got {value!r}")
    for key in _NON_NEGATIVE_INT_KEYS:
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(f"{key} must be an integer >= 0, got {value!r}")
    batch = config["batch_size"]
    if isinstance(batch, int) and batch == 1:
        problems.append("batch_size must be at least 2 (each D step takes half fresh, half history images)")
    history = config["history_size"]
    if history is not None and (not isinstance(history, int) or isinstance(history, bool) or history < 1):
        problems.append(f"history_size must be a positive integer, got {history!r}")
    for key in ("refiner_lr", "discriminator_lr"):
        value = config[key]
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < float("inf"):
            problems.append(f"{key} must be a positive number, got {value!r}")
    for key in ("lambda_reg", "instance_noise", "reg_budget"):
        value = config[key]
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < float("inf"):
            problems.append(f"{key} must be a number >= 0, got {value!r}")
    for key in ("discriminator_patch", "ema_decay"):
        value = config[key]
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1:
            problems.append(f"{key} must be a number in [0, 1), got {value!r}")
    noise = config["noise_channels"]
    if isinstance(noise, int) and noise > MAX_NOISE_CHANNELS:
        problems.append(f"noise_channels must be at most {MAX_NOISE_CHANNELS}, got {noise}")
    kernel = config["refiner_kernel"]
    if isinstance(kernel, int) and kernel >= 1 and kernel % 2 == 0:
        problems.append(f"refiner_kernel must be odd (same padding keeps the image size), got {kernel}")
    for key, choices in CHOICES.items():
        value = config[key]
        if value not in choices:
            problems.append(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    for key in _BOOL_KEYS:
        if not isinstance(config[key], bool):
            problems.append(f"{key} must be true or false, got {config[key]!r}")
    return problems

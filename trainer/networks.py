"""The refiner R and the local discriminator D of S+U learning (SimGAN, Shrivastava et al. 2017).

Pure `nn.Module`s: no I/O, no optimiser, no device logic. Both take (B, C, H, W) float
images scaled to [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

ALLOWED_CHANNELS = (1, 3)
"""Image channel counts the product handles (grayscale and RGB)."""


@dataclass(frozen=True)
class RefinerConfig:
    """Shape of the refiner: `width` feature maps, `blocks` ResNet blocks, `kernel` x `kernel` convs.

    The paper's eye refiner is width 64, 4 blocks, kernel 3; its hand-pose refiner uses kernel 7, 10 blocks.
    """

    channels: int
    width: int = 64
    blocks: int = 4
    kernel: int = 3
    # R(x) = clip(x + f(x)) with f's last conv starting at zero: the identity before any training, so
    # the run starts from "change nothing" exactly instead of a pretrained approximation of it (which
    # blurred one-pixel strokes of 8x8 glyphs). False: the paper's tanh(f(x)).
    residual: bool = False
    # Channels of standard normal noise concatenated to the image at R's input (PixelDA's noise
    # vector, per pixel here): R can then draw per-image texture or sensor noise that no
    # deterministic map of the image can produce. 0 = deterministic, the paper's R.
    noise_channels: int = 0


PATCH_SIZES = (3, 7, 15, 23)
"""Receptive field of one D output after its first 1, 2, 3 or 4 context layers (the paper's is 23)."""


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Feature maps of D's four hidden convs (the paper's are 96, 64, 32, 32), how many of its context
    layers it keeps (`depth`, see PATCH_SIZES) and whether its convs are spectrally normalised."""

    channels: int
    widths: tuple[int, int, int, int] = (96, 64, 32, 32)
    depth: int = 4
    spectral_norm: bool = False


def patch_depth(height: int, width: int, fraction: float) -> int:
    """D's depth whose patch is the largest at most `fraction` of the shorter side (at least 1 layer).

    0 means the paper's D (depth 4, a 23x23 patch) whatever the size. With 0.5: an 8x8 glyph gets
    3x3 patches, a 28x28 digit 7x7, a 55x35 eye 15x15, 64x64 and larger the paper's 23x23.
    """
    if fraction <= 0:
        return len(PATCH_SIZES)
    limit = fraction * min(height, width)
    return max(1, sum(1 for size in PATCH_SIZES if size <= limit))


def _check_channels(channels: int) -> None:
    if channels not in ALLOWED_CHANNELS:
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _same_conv(channels_in: int, channels_out: int, kernel: int) -> nn.Conv2d:
    # Replicate (edge) padding: zero padding reads the border as black, and the refiner learns
    # to paint a frame around its output. Edge padding works for any size, even a 1x1 image.
    return nn.Conv2d(channels_in, channels_out, kernel, padding=kernel // 2, padding_mode="replicate")


class ResnetBlock(nn.Module):
    """conv-ReLU-conv, add the input, ReLU; same padding keeps (B, width, H, W)."""

    def __init__(self, width: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = _same_conv(width, width, kernel)
        self.conv2 = _same_conv(width, width, kernel)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(x + self.conv2(self.relu(self.conv1(x))))


class Refiner(nn.Module):
    """Fully convolutional, no stride or pooling: refines any size and keeps geometry pixel for pixel."""

    def __init__(self, cfg: RefinerConfig) -> None:
        super().__init__()
        self.config = cfg
        self.stem = nn.Sequential(
            _same_conv(cfg.channels + cfg.noise_channels, cfg.width, cfg.kernel), nn.ReLU()
        )
        self.blocks = nn.Sequential(*(ResnetBlock(cfg.width, cfg.kernel) for _ in range(cfg.blocks)))
        self.head = nn.Conv2d(cfg.width, cfg.channels, 1)
        if cfg.residual:
            nn.init.zeros_(self.head.weight)
            assert self.head.bias is not None  # nn.Conv2d has one by default
            nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        # (B, C, H, W) in [-1, 1], noise (B, noise_channels, H, W) -> (B, C, H, W) in [-1, 1]
        if self.config.noise_channels:
            if noise is None:
                k = self.config.noise_channels
                raise ValueError(f"this refiner takes {k} noise channel(s) beside its input")
            features = self.stem(torch.cat([x, noise.to(x.dtype)], dim=1))
        else:
            features = self.stem(x)
        change = self.head(self.blocks(features))
        if self.config.residual:
            return (x + change).clamp(-1.0, 1.0)
        return change.tanh()


class Discriminator(nn.Module):
    """The paper's local D, with padding 1 on every 3x3 conv and on the max-pool.

    The paper's layers without padding shrink a 55x35 eye to a 4x9 map and cannot take an
    8x8 image at all. With padding each stride-2 conv maps H to ceil(H / 2), so the output is
    (ceil(H / 4), ceil(W / 4)): at least 1x1 for any input, 9x14 for 55x35. With all four context
    layers the receptive field of one output is 23x23 pixels, the paper's local patch; fewer layers
    keep the patch local on small images (`patch_depth`).
    """

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = cfg
        w1, w2, w3, w4 = cfg.widths
        context: list[nn.Module] = [
            nn.Conv2d(cfg.channels, w1, 3, stride=2, padding=1),  # (B, w1, ceil(H/2), ceil(W/2)); patch 3
            nn.Conv2d(w1, w2, 3, stride=2, padding=1),  # (B, w2, ceil(H/4), ceil(W/4)); patch 7
            nn.MaxPool2d(3, stride=1, padding=1),  # patch 15
            nn.Conv2d(w2, w3, 3, padding=1),  # patch 23
        ]
        kept = context[: cfg.depth]
        out = [w1, w2, w2, w3][cfg.depth - 1]
        layers: list[nn.Module] = []
        for layer in kept:
            layers += [layer] if isinstance(layer, nn.MaxPool2d) else [layer, nn.ReLU()]
        layers += [nn.Conv2d(out, w4, 1), nn.ReLU(), nn.Conv2d(w4, 2, 1)]
        if cfg.spectral_norm:
            # Every conv's largest singular value held at 1: D cannot sharpen its decision boundary
            # without bound, so the gradients R gets stay informative (Miyato et al. 2018).
            layers = [
                nn.utils.parametrizations.spectral_norm(m) if isinstance(m, nn.Conv2d) else m for m in layers
            ]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        # (B, C, H, W) -> (B, 2, h, w) per-patch logits; class 1 = refined, class 0 = real
        return self.layers(x)


def build_refiner(cfg: RefinerConfig) -> Refiner:
    _check_channels(cfg.channels)
    _check_positive(width=cfg.width, blocks=cfg.blocks, kernel=cfg.kernel)
    if not isinstance(cfg.noise_channels, int) or cfg.noise_channels < 0:
        raise ValueError(f"noise_channels must be a non-negative integer, got {cfg.noise_channels!r}")
    if cfg.kernel % 2 == 0:
        raise ValueError(f"kernel must be odd so that same padding keeps the image size, got {cfg.kernel}")
    return Refiner(cfg)


def build_discriminator(cfg: DiscriminatorConfig) -> Discriminator:
    _check_channels(cfg.channels)
    if len(cfg.widths) != 4:
        raise ValueError(f"widths must list the 4 hidden convs' feature maps, got {cfg.widths!r}")
    _check_positive(**{f"widths[{i}]": w for i, w in enumerate(cfg.widths)})
    if cfg.depth not in range(1, len(PATCH_SIZES) + 1):
        raise ValueError(f"depth must be 1 to {len(PATCH_SIZES)} context layers, got {cfg.depth}")
    return Discriminator(cfg)

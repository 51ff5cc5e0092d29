"""How a posed-image dataset is read (torch-free, so that the gRPC process validates it as the worker does)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

MAX_IMAGES = 10_000  # most images one dataset may reference


@dataclass(frozen=True)
class DatasetConfig:
    downscale: int = 1  # integer factor the images (and intrinsics) are reduced by; 1 = full size
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)  # RGB in [0, 1] under transparent pixels
    test_every: int = 8  # hold out every n-th image (index % n == 0) when the data names no split; 0 = none
    max_images: int = MAX_IMAGES  # refuse datasets that reference more images than this
    keep_alpha: bool = False  # NeRF-synthetic: also keep each photo's alpha (PosedImageDataset.alphas)

    def validate(self) -> None:
        if isinstance(self.downscale, bool) or not isinstance(self.downscale, int) or not 1 <= self.downscale <= 64:
            raise ConfigError(f"downscale must be an integer in 1..64, got {self.downscale!r}")
        bg = self.background
        if len(bg) != 3 or not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in bg):
            raise ConfigError(f"background must be three numbers in [0, 1], got {bg!r}")
        if isinstance(self.test_every, bool) or not isinstance(self.test_every, int) or self.test_every < 0:
            raise ConfigError(f"test_every must be a non-negative integer, got {self.test_every!r}")
        if not 1 <= self.max_images <= MAX_IMAGES:
            raise ConfigError(f"max_images must be in 1..{MAX_IMAGES}, got {self.max_images!r}")

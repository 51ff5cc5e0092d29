"""Export filters: what a scene keeps on its way into a file (the options splat-transform users
know as ``-H``, ``-V opacity``, ``-B`` and ``-N``).

Applied in this order: drop Gaussians with a non-finite value, crop to a box, drop by opacity,
reduce the SH degree. Each step counts what it removed (``FilterReport``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...errors import ConfigError
from ..model import GaussianSplats


@dataclass(frozen=True)
class ExportFilter:
    """What an export keeps. The defaults keep everything."""

    sh_degree: int | None = None  # keep SH bands up to this degree (0..3); None = as the scene has them
    min_opacity: float = 0.0  # drop Gaussians whose opacity sigmoid(logit) is below this (0..1); 0 = keep all
    box_min: tuple[float, float, float] | None = None  # keep Gaussians whose centre lies in [box_min, box_max]
    box_max: tuple[float, float, float] | None = None  # (scene units, both corners inclusive; both or neither)
    drop_non_finite: bool = False  # drop Gaussians with any NaN or infinite value instead of refusing them

    def __post_init__(self) -> None:
        if self.sh_degree is not None and (isinstance(self.sh_degree, bool) or self.sh_degree not in (0, 1, 2, 3)):
            raise ConfigError(f"sh_degree must be 0, 1, 2 or 3, got {self.sh_degree!r}")
        if not (isinstance(self.min_opacity, (int, float)) and 0.0 <= self.min_opacity <= 1.0):
            raise ConfigError(f"min_opacity must be in [0, 1] (an opacity, not a logit), got {self.min_opacity!r}")
        if (self.box_min is None) != (self.box_max is None):
            raise ConfigError("a crop box needs both corners: box_min and box_max")
        if self.box_min is not None and self.box_max is not None:
            for name, c in (("box_min", self.box_min), ("box_max", self.box_max)):
                if len(c) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in c):
                    raise ConfigError(f"{name} must be three finite numbers, got {c!r}")
            if any(lo > hi for lo, hi in zip(self.box_min, self.box_max, strict=True)):
                raise ConfigError(f"box_min {self.box_min} must not exceed box_max {self.box_max} on any axis")

    @property
    def is_identity(self) -> bool:
        return self == ExportFilter()


@dataclass(frozen=True)
class FilterReport:
    kept: int
    non_finite: int = 0  # Gaussians dropped for a NaN or infinite value
    outside_box: int = 0
    low_opacity: int = 0
    sh_degree: int = 0  # the SH degree written

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("kept", "non_finite", "outside_box", "low_opacity", "sh_degree")}


def filter_splats(splats: GaussianSplats, f: ExportFilter) -> tuple[GaussianSplats, FilterReport]:
    """The Gaussians of ``splats`` that ``f`` keeps, in their order, and what was dropped."""
    counts = {"non_finite": 0, "outside_box": 0, "low_opacity": 0}

    def drop(s: GaussianSplats, keep: torch.Tensor, what: str) -> GaussianSplats:  # keep: [N] bool
        counts[what] += int((~keep).sum())
        return s if bool(keep.all()) else s.index(keep)

    s = splats
    if f.drop_non_finite:
        N = s.num_gaussians
        ok = torch.ones(N, dtype=torch.bool, device=s.device)
        for v in s.tensors().values():
            ok &= torch.isfinite(v.reshape(N, -1)).all(dim=1) if v.numel() else ok
        s = drop(s, ok, "non_finite")
    if f.box_min is not None and f.box_max is not None:
        lo = torch.tensor(f.box_min, dtype=s.means.dtype, device=s.device)
        hi = torch.tensor(f.box_max, dtype=s.means.dtype, device=s.device)
        s = drop(s, ((s.means >= lo) & (s.means <= hi)).all(dim=1), "outside_box")
    if f.min_opacity > 0.0:
        s = drop(s, torch.sigmoid(s.opacities.double()) >= f.min_opacity, "low_opacity")
    if f.sh_degree is not None and f.sh_degree < s.sh_degree:
        s = s.with_sh_degree(f.sh_degree)
    return s, FilterReport(kept=s.num_gaussians, sh_degree=s.sh_degree, **counts)

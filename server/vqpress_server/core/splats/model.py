"""The one model of a Gaussian splat scene, in the parameterization 3DGS trains in.

Conventions (the same names in core, in the file formats and in the .proto):

- ``means``      [N, 3] float32, world space
- ``quats``      [N, 4] float32, (w, x, y, z), not necessarily normalized
- ``scales``     [N, 3] float32, log of the standard deviations
- ``opacities``  [N]    float32, logit of the opacity
- ``sh0``        [N, 1, 3] float32, the DC spherical-harmonic coefficient per color channel
- ``shN``        [N, (d+1)^2 - 1, 3] float32, the remaining SH coefficients, coefficient-major
                 (``shN[i, j, c]`` is coefficient j+1 of channel c). SH degree d is 0..3.

Colors follow the INRIA convention: ``rgb = 0.5 + SH_C0 * sh0`` for the DC term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch

from ..errors import NonFiniteError, VqpressInputError

SH_C0 = 0.28209479177387814
MAX_SH_DEGREE = 3


def num_sh_rest(degree: int) -> int:
    """Number of non-DC SH coefficients per channel for an SH degree."""
    return (degree + 1) ** 2 - 1


def sh_degree_from_rest(n_rest: int) -> int:
    """SH degree from the number of non-DC coefficients per channel; raises on a layout that is none."""
    for d in range(MAX_SH_DEGREE + 1):
        if num_sh_rest(d) == n_rest:
            return d
    raise VqpressInputError(
        f"{n_rest} SH rest coefficients per channel is not a valid layout "
        f"(expected one of {[num_sh_rest(d) for d in range(MAX_SH_DEGREE + 1)]} for degree 0..3)"
    )


@dataclass
class RepairReport:
    """What was repaired when non-finite or out-of-range values were found (counts of elements)."""

    means_dropped: int = 0  # Gaussians removed because their position was not finite
    scales_dropped: int = 0  # Gaussians removed because a log-scale was +inf (an infinitely large splat)
    quats_reset: int = 0  # rotations replaced by identity (non-finite or zero norm)
    scales_clamped: int = 0  # log-scales that were NaN or -inf, set to -20 (invisible)
    opacities_clamped: int = 0  # non-finite opacity logits clamped to [-20, 20]
    sh_zeroed: int = 0  # non-finite SH coefficients set to 0

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class GaussianSplats:
    means: torch.Tensor  # [N, 3]
    quats: torch.Tensor  # [N, 4] (w, x, y, z)
    scales: torch.Tensor  # [N, 3] log
    opacities: torch.Tensor  # [N] logit
    sh0: torch.Tensor  # [N, 1, 3]
    shN: torch.Tensor  # [N, (d+1)^2 - 1, 3]
    meta: dict[str, str] = field(default_factory=dict)  # free-form provenance (source format, file name)

    def __post_init__(self) -> None:
        self.check_shapes()

    # -- shape and identity -------------------------------------------------------------
    def check_shapes(self) -> None:
        N = self.means.shape[0]
        assert self.means.shape == (N, 3), self.means.shape
        assert self.quats.shape == (N, 4), self.quats.shape
        assert self.scales.shape == (N, 3), self.scales.shape
        assert self.opacities.shape == (N,), self.opacities.shape
        assert self.sh0.shape == (N, 1, 3), self.sh0.shape
        assert self.shN.ndim == 3 and self.shN.shape[0] == N and self.shN.shape[2] == 3, self.shN.shape
        sh_degree_from_rest(self.shN.shape[1])  # raises on an invalid layout

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    def __len__(self) -> int:
        return self.num_gaussians

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_rest(self.shN.shape[1])

    @property
    def device(self) -> torch.device:
        return self.means.device

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "means": self.means,
            "quats": self.quats,
            "scales": self.scales,
            "opacities": self.opacities,
            "sh0": self.sh0,
            "shN": self.shN,
        }

    # -- construction and conversion ----------------------------------------------------
    @classmethod
    def from_numpy(
        cls,
        means: np.ndarray,
        quats: np.ndarray,
        scales: np.ndarray,
        opacities: np.ndarray,
        sh0: np.ndarray,
        shN: np.ndarray | None = None,
        meta: dict[str, str] | None = None,
    ) -> GaussianSplats:
        N = means.shape[0]
        if shN is None:
            shN = np.zeros((N, 0, 3), np.float32)

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

        return cls(
            t(means),
            t(quats),
            t(scales),
            t(opacities).reshape(N),
            t(sh0).reshape(N, 1, 3),
            t(shN),
            dict(meta or {}),
        )

    def numpy(self) -> dict[str, np.ndarray]:
        return {k: v.detach().to("cpu", torch.float32).numpy() for k, v in self.tensors().items()}

    @classmethod
    def empty(cls, sh_degree: int = 0) -> GaussianSplats:
        z = np.zeros
        return cls.from_numpy(z((0, 3)), z((0, 4)), z((0, 3)), z(0), z((0, 1, 3)), z((0, num_sh_rest(sh_degree), 3)))

    def to(self, device: torch.device | str) -> GaussianSplats:
        return replace(self, **{k: v.to(device) for k, v in self.tensors().items()}, meta=dict(self.meta))

    def detach(self) -> GaussianSplats:
        return replace(self, **{k: v.detach() for k, v in self.tensors().items()}, meta=dict(self.meta))

    def index(self, idx: torch.Tensor) -> GaussianSplats:
        """A new scene with the Gaussians selected (or reordered) by an index or boolean mask."""
        return replace(self, **{k: v[idx] for k, v in self.tensors().items()}, meta=dict(self.meta))

    def with_sh_degree(self, degree: int) -> GaussianSplats:
        """Truncate (or zero-pad) the SH coefficients to ``degree``."""
        n = num_sh_rest(degree)
        cur = self.shN.shape[1]
        if n <= cur:
            shN = self.shN[:, :n]
        else:
            pad = torch.zeros(self.num_gaussians, n - cur, 3, dtype=self.shN.dtype, device=self.device)
            shN = torch.cat([self.shN, pad], dim=1)
        return replace(self, shN=shN.contiguous(), meta=dict(self.meta))

    # -- derived quantities -------------------------------------------------------------
    def normalized_quats(self) -> torch.Tensor:  # [N, 4]
        return torch.nn.functional.normalize(self.quats, dim=-1)

    def colors_rgb(self) -> torch.Tensor:  # [N, 3] the view-independent color in [0, 1] (unclamped)
        return 0.5 + SH_C0 * self.sh0[:, 0, :]

    # -- validation and repair ----------------------------------------------------------
    def repair_non_finite(self, strict: bool = False) -> tuple[GaussianSplats, RepairReport]:
        """Apply the documented repair policy for non-finite values (see README, "Bad input").

        - a Gaussian whose position is not finite is dropped (it has no place in the scene);
        - a Gaussian with a +inf log-scale is dropped (clamped to any finite size, such a splat
          would still cover the view);
        - a rotation with a non-finite component or zero norm becomes the identity (1, 0, 0, 0);
        - a log-scale that is NaN or -inf becomes -20 (invisible);
        - a non-finite opacity logit is clamped: NaN -> -20 (transparent), +inf -> 20, -inf -> -20;
        - a non-finite SH coefficient becomes 0.

        With ``strict=True`` any non-finite value raises ``NonFiniteError`` instead.
        """
        rep = RepairReport()
        ranges, min_quat_l1 = self._value_ranges(with_quat_l1=True)
        if min_quat_l1 > 0 and all(math.isfinite(lo) and math.isfinite(hi) for lo, hi in ranges.values()):
            return self, rep  # the usual scene: one pass over each tensor, one transfer to the host
        bad_means = ~torch.isfinite(self.means).all(dim=1)
        bad_quats = ~torch.isfinite(self.quats).all(dim=1) | (self.quats.abs().sum(dim=1) == 0)
        huge = torch.isposinf(self.scales).any(dim=1) & ~bad_means  # dropped, not clamped
        bad_scales = ~torch.isfinite(self.scales) & ~torch.isposinf(self.scales)
        bad_opac = ~torch.isfinite(self.opacities)
        bad_sh0 = ~torch.isfinite(self.sh0)
        bad_shN = ~torch.isfinite(self.shN)
        masks = (bad_means, bad_quats, bad_scales, bad_opac, bad_sh0, bad_shN, huge)
        *counts, n_huge = torch.stack([m.sum() for m in masks]).tolist()  # one transfer to the host
        if sum(counts) + n_huge == 0:
            return self, rep
        if strict:
            names = ["means", "quats", "scales", "opacities", "sh0", "shN"]
            counts[2] += int(torch.isposinf(self.scales).sum())
            detail = ", ".join(f"{n}: {c}" for n, c in zip(names, counts, strict=True) if c)
            raise NonFiniteError(f"non-finite values found ({detail}); run without strict mode to repair them")
        quats = torch.where(bad_quats[:, None], torch.tensor([1.0, 0, 0, 0], device=self.device), self.quats)
        scales = torch.nan_to_num(self.scales, nan=-20.0, posinf=0.0, neginf=-20.0)  # +inf: dropped below
        opac = torch.nan_to_num(self.opacities, nan=-20.0, posinf=20.0, neginf=-20.0)
        sh0 = torch.nan_to_num(self.sh0, nan=0.0, posinf=0.0, neginf=0.0)
        shN = torch.nan_to_num(self.shN, nan=0.0, posinf=0.0, neginf=0.0)
        out = replace(self, quats=quats, scales=scales, opacities=opac, sh0=sh0, shN=shN, meta=dict(self.meta))
        rep.quats_reset = counts[1]
        rep.scales_clamped = counts[2]
        rep.opacities_clamped = counts[3]
        rep.sh_zeroed = counts[4] + counts[5]
        if counts[0] or n_huge:
            out = out.index(~(bad_means | huge))
            rep.means_dropped = counts[0]
            rep.scales_dropped = n_huge
        return out, rep

    def _value_ranges(self, with_quat_l1: bool = False) -> tuple[dict[str, tuple[float, float]], float]:
        """(min, max) of every non-empty tensor (NaN when it holds a NaN: min and max propagate it)
        and, with ``with_quat_l1``, the smallest L1 norm of a rotation (0: a zero quaternion; inf
        when there are no Gaussians): one reduction per tensor on its device, one transfer to the host."""
        stats, names = [], []
        for k, v in self.tensors().items():
            if v.numel():
                lo, hi = torch.aminmax(v.detach())
                stats += [lo.float(), hi.float()]
                names.append(k)
        if with_quat_l1 and self.num_gaussians:
            stats.append(self.quats.detach().abs().sum(dim=1).min().float())
        vals = torch.stack(stats).tolist() if stats else []
        ranges = {k: (vals[2 * i], vals[2 * i + 1]) for i, k in enumerate(names)}
        return ranges, (vals[-1] if with_quat_l1 and self.num_gaussians else math.inf)

    def value_ranges(self) -> dict[str, tuple[float, float]]:
        """(min, max) of every non-empty tensor, NaN where it holds a NaN: one reduction per tensor
        on its device and one transfer to the host (every value is finite when every bound is)."""
        return self._value_ranges()[0]

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Robust scene bounds: the 1st and 99th percentile of positions per axis."""
        if self.num_gaussians == 0:
            z = torch.zeros(3)
            return z, z
        m = self.means.float()
        q = torch.quantile(m[: 1 << 20], torch.tensor([0.01, 0.99], device=m.device), dim=0)
        return q[0], q[1]

    def extent(self) -> float:
        lo, hi = self.bounds()
        return float(max((hi - lo).norm().item(), 1e-6)) if self.num_gaussians else 1.0


__all__ = [
    "SH_C0",
    "GaussianSplats",
    "RepairReport",
    "num_sh_rest",
    "sh_degree_from_rest",
]

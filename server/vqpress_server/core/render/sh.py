"""Real spherical harmonics up to degree 3, with the constants and sign convention of the 3DGS
reference implementation (the same basis gsplat evaluates)."""

from __future__ import annotations

import torch

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:  # [N, 3] -> [N, (degree+1)^2]
    """The real SH basis functions at unit directions ``dirs`` (normalized here)."""
    assert 0 <= degree <= 3, degree
    assert dirs.ndim == 2 and dirs.shape[1] == 3, dirs.shape
    d = torch.nn.functional.normalize(dirs, dim=-1)
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def eval_sh(coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:  # [N, K, 3], [N, 3] -> [N, 3]
    """Sum of SH coefficients times the basis at ``dirs``; degree from K = (degree+1)^2."""
    N, K, _ = coeffs.shape
    assert coeffs.shape == (N, K, 3), coeffs.shape
    assert dirs.shape == (N, 3), dirs.shape
    degree = {1: 0, 4: 1, 9: 2, 16: 3}.get(K)
    assert degree is not None, f"{K} SH coefficients is not (d+1)^2 for d in 0..3"
    basis = sh_basis(degree, dirs)  # [N, K]
    return torch.einsum("nk,nkc->nc", basis, coeffs)


def sh_to_rgb(sh0: torch.Tensor, shN: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:  # -> [N, 3]
    """View-dependent color: SH(dirs) + 0.5, clamped at 0 (not above, as in 3DGS).

    sh0: [N, 1, 3]; shN: [N, (d+1)^2 - 1, 3]; dirs: [N, 3] from the camera center to each Gaussian."""
    return torch.clamp_min(eval_sh(torch.cat([sh0, shN], dim=1), dirs) + 0.5, 0.0)


__all__ = ["SH_C0", "eval_sh", "sh_basis", "sh_to_rgb"]

"""Morton (Z-order) codes of 3D points: sorting Gaussians by them puts neighbours next to each other,
so delta-coded positions and per-Gaussian streams compress better."""

from __future__ import annotations

import torch

MORTON_BITS = 21  # bits per axis; 3 * 21 = 63 bits fit a non-negative int64


def _spread_bits(v: torch.Tensor) -> torch.Tensor:  # [N] int64 < 2**21 -> bits spread 3 apart
    v = v & 0x1FFFFF
    v = (v | (v << 32)) & 0x1F00000000FFFF
    v = (v | (v << 16)) & 0x1F0000FF0000FF
    v = (v | (v << 8)) & 0x100F00F00F00F00F
    v = (v | (v << 4)) & 0x10C30C30C30C30C3
    v = (v | (v << 2)) & 0x1249249249249249
    return v


def morton_codes(
    means: torch.Tensor,  # [N, 3]
    lo: torch.Tensor | None = None,  # [3] box minimum; default: min of means
    hi: torch.Tensor | None = None,  # [3] box maximum; default: max of means
    bits: int = MORTON_BITS,
) -> torch.Tensor:  # [N] int64
    """Interleave ``bits`` (1..21) bits per axis of the positions quantized within [lo, hi]."""
    N = means.shape[0]
    assert means.shape == (N, 3), means.shape
    assert 1 <= bits <= MORTON_BITS, bits
    if N == 0:
        return torch.zeros(0, dtype=torch.int64, device=means.device)
    m = means.double()
    lo = m.min(dim=0).values if lo is None else lo.to(m)
    hi = m.max(dim=0).values if hi is None else hi.to(m)
    span = torch.clamp(hi - lo, min=1e-30)
    top = (1 << bits) - 1
    q = torch.clamp(torch.round((m - lo) / span * top), 0, top).to(torch.int64)
    return (_spread_bits(q[:, 0]) << 2) | (_spread_bits(q[:, 1]) << 1) | _spread_bits(q[:, 2])


def _compact_bits(v: torch.Tensor) -> torch.Tensor:  # [N] int64: every third bit (from bit 0) -> value
    v = v & 0x1249249249249249
    v = (v | (v >> 2)) & 0x10C30C30C30C30C3
    v = (v | (v >> 4)) & 0x100F00F00F00F00F
    v = (v | (v >> 8)) & 0x1F0000FF0000FF
    v = (v | (v >> 16)) & 0x1F00000000FFFF
    v = (v | (v >> 32)) & 0x1FFFFF
    return v


def morton_decode(codes: torch.Tensor) -> torch.Tensor:  # [N] int64 -> [N, 3] int64
    """Inverse of the interleaving in ``morton_codes``: the integer (x, y, z) per code."""
    return torch.stack([_compact_bits(codes >> 2), _compact_bits(codes >> 1), _compact_bits(codes)], dim=1)


def morton_order(means: torch.Tensor) -> torch.Tensor:  # [N, 3] -> [N] int64 permutation
    """The permutation that sorts the points by Morton code (stable, so ties keep their order)."""
    return torch.argsort(morton_codes(means), stable=True)


__all__ = ["MORTON_BITS", "morton_codes", "morton_decode", "morton_order"]

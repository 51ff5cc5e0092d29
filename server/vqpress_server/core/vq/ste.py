"""Straight-through vector quantization for quantization-aware training (Compact3D-style).

The forward pass uses the codebook entry of each vector; the backward pass hands the gradient to
the unquantized vector unchanged. Centroids follow their members between full re-assignments
through ``update_centroids`` (the mean of each cluster's current members).
"""

from __future__ import annotations

import torch

from .kmeans import update_centroids

__all__ = ["quantize_ste", "update_centroids"]


def quantize_ste(
    x: torch.Tensor,  # [N, d]
    codebook: torch.Tensor,  # [K, d]
    idx: torch.Tensor,  # [N] int64 in [0, K)
) -> torch.Tensor:  # [N, d]
    """codebook[idx] in the forward pass, identity gradient to x in the backward pass."""
    N, d = x.shape
    K = codebook.shape[0]
    assert codebook.shape == (K, d), codebook.shape
    assert idx.shape == (N,), idx.shape
    return x - x.detach() + codebook.detach()[idx].to(x.dtype)

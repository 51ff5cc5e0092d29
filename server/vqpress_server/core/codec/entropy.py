"""Entropy measures of symbol streams: the floor an entropy coder could reach, to compare the stored
sizes against (e.g. zstd on a bit-packed index stream vs its order-0 entropy)."""

from __future__ import annotations

import numpy as np
import torch


def entropy_bits(symbols: torch.Tensor | np.ndarray) -> float:  # [N] non-negative ints
    """Order-0 Shannon entropy in bits per symbol of a stream of non-negative integers (0 for N = 0)."""
    s = symbols.detach().cpu().numpy() if isinstance(symbols, torch.Tensor) else np.asarray(symbols)
    s = s.reshape(-1)
    if s.size == 0:
        return 0.0
    if s.dtype.kind not in "ui" or int(s.min()) < 0:
        raise ValueError("entropy_bits needs non-negative integer symbols")
    counts = np.bincount(s.astype(np.int64))
    p = counts[counts > 0] / s.size
    return float(-(p * np.log2(p)).sum())


__all__ = ["entropy_bits"]

"""Bit-packing of integer tensors at ceil(log2 K) bits, on top of the container's numpy packer."""

from __future__ import annotations

import numpy as np
import torch
from vqpress.vqp import bits_for, pack_bits, unpack_bits


def pack_indices(labels: torch.Tensor, k: int) -> tuple[bytes, int]:  # labels [N] int in 0..k-1
    """Pack codebook indices at ceil(log2 k) bits each; returns (bytes, bits)."""
    assert labels.ndim == 1, labels.shape
    bits = bits_for(k)
    return pack_bits(labels.detach().to("cpu", torch.int64).numpy().astype(np.uint32), bits), bits


def unpack_indices(buf: bytes, bits: int, n: int, device: torch.device | str = "cpu") -> torch.Tensor:  # [N] int64
    """Inverse of ``pack_indices``."""
    return torch.from_numpy(unpack_bits(buf, bits, n).astype(np.int64)).to(device)


__all__ = ["bits_for", "pack_bits", "pack_indices", "unpack_bits", "unpack_indices"]

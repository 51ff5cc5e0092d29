"""Post-hoc compression of a trained uncompressed grid: k-means VQ (kmVQ) and low-rank (LRA).

Both keep the decoder and replace the grid by an inference-only grid:
- kmVQ: per level, k-means (``core.vq.kmeans``, exact fp32) of the vertex features into 2^bits
  centroids; each vertex stores its centroid index (bits bits) -> ``VqGrid``.
- LRA: per level, the rank-r truncated SVD of the mean-centred feature matrix [m, k]:
  features ~= mean + coeffs [m, r] @ basis [r, k] -> ``LowRankGrid``.
"""

from __future__ import annotations

import copy

import torch

from ..errors import ConfigError
from ..progress import Progress, sub_progress
from ..vq.kmeans import kmeans
from .grid import DenseGrid, LowRankGrid, VqGrid
from .model import NeuralField


def _dense_tables(field: NeuralField) -> list[torch.Tensor]:
    grid = field.grid
    if not isinstance(grid, DenseGrid) or any(grid.hashed):
        raise ConfigError("post-hoc compression needs a field trained with an uncompressed DenseGridConfig grid")
    return [t.detach() for t in grid.tables]


def _with_grid(field: NeuralField, grid: VqGrid | LowRankGrid) -> NeuralField:
    out = copy.deepcopy(field)
    out.grid = grid.to(next(field.parameters()).device)
    return out


def kmvq_field(
    field: NeuralField, bits: int, iters: int = 10, seed: int = 0, progress: Progress | None = None
) -> NeuralField:
    """Replace the dense grid by per-level k-means codebooks of 2^bits entries (bits in 1..16)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ConfigError(f"kmVQ bits must be an integer in [1, 16], got {bits!r}")
    tables = _dense_tables(field)
    indices, codebooks = [], []
    for level, t in enumerate(tables):
        res = kmeans(
            t,
            1 << bits,
            iters=iters,
            seed=seed,
            progress=sub_progress(progress, level / len(tables), (level + 1) / len(tables)),
        )
        indices.append(res.labels)
        codebooks.append(res.centroids)
    g = field.grid
    return _with_grid(field, VqGrid(g.dims, g.resolutions, g.combine, indices, codebooks, bits))


def lra_field(field: NeuralField, rank: int) -> NeuralField:
    """Replace the dense grid by a per-level rank-``rank`` approximation (1 <= rank <= features)."""
    tables = _dense_tables(field)
    k = tables[0].shape[1]
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= k:
        raise ConfigError(f"LRA rank must be an integer in [1, {k}] (the grid's features), got {rank!r}")
    coeffs, bases, means = [], [], []
    for t in tables:
        mu = t.mean(0)
        c = t - mu
        # The principal axes from the k x k Gram matrix in float64 rather than an SVD of the
        # [vertices, k] table: the same subspace, and no solver workspace that grows with the table
        # (cuSOLVER's gesvdj refuses a 256^3-vertex level's 16.7M rows as an invalid size).
        gram = c.double().T @ c.double()
        _, vecs = torch.linalg.eigh(gram)  # ascending eigenvalues
        basis = vecs[:, -rank:].flip(-1).to(t.dtype)  # [k, rank], the largest first
        coeffs.append(c @ basis)
        bases.append(basis.T.contiguous())
        means.append(mu)
    g = field.grid
    return _with_grid(field, LowRankGrid(g.dims, g.resolutions, g.combine, coeffs, bases, means))

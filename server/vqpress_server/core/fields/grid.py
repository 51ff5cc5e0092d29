"""Multi-resolution feature grids: dense, VQ-AD, hash, and the inference-only tables.

Coordinates are in [0, 1]^d (d = 2 or 3; callers map their domain). Level ``l`` has ``n_l``
vertices per axis, ``n_l = floor(base * growth^l)`` with geometric growth from ``base_resolution``
to ``max_resolution``. A point is interpolated (bilinear in 2D, trilinear in 3D) from the 2^d
vertices of its cell; levels are summed or concatenated.

Every grid implements ``level_features(level, ids [B, 2^d]) -> [B, 2^d, k]``: the per-vertex
features of the given vertex (or hash-table row) ids. Interpolation and level combination are
shared, so the baked VQ-AD grid and the training-mode hard forward compute bit-identical outputs.
"""

from __future__ import annotations

import math
from typing import Any, assert_never

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .config import Combine, DenseGridConfig, GridConfig, HashGridConfig, VqadGridConfig

# Instant-NGP's spatial-hash primes (the first is 1 so that x is not scrambled).
HASH_PRIMES = (1, 2654435761, 805459861)
# Rows of logits processed at once by the VQ-AD lookup: bounds its transient memory to
# about VQAD_CHUNK_ELEMS floats whatever the codebook size.
VQAD_CHUNK_ELEMS = 1 << 24


def level_resolutions(levels: int, base: int, top: int) -> list[int]:
    """Vertices per axis for each level, geometric from base to top (both included)."""
    if levels == 1:
        return [base]
    growth = math.exp((math.log(top) - math.log(base)) / (levels - 1))
    return [min(top, int(math.floor(base * growth**i + 1e-6))) for i in range(levels)]


def corner_offsets(dims: int, device: torch.device) -> Tensor:  # [2^d, d]
    """The 2^d corner offsets of a cell, bit j of the corner number = offset along axis j."""
    c = torch.arange(1 << dims, device=device)
    return torch.stack([(c >> j) & 1 for j in range(dims)], dim=-1)


def cell_corners(x: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Integer corner coordinates [B, 2^d, d] and interpolation weights [B, 2^d] of points x [B, d]."""
    d = x.shape[-1]
    p = x.clamp(0.0, 1.0) * (n - 1)
    i0 = p.floor().clamp(0, n - 2).to(torch.int64)  # [B, d]
    frac = p - i0.to(p.dtype)  # [B, d]
    offs = corner_offsets(d, x.device)  # [2^d, d]
    corners = i0[:, None, :] + offs[None]  # [B, 2^d, d]
    w = torch.where(offs[None].bool(), frac[:, None, :], 1.0 - frac[:, None, :]).prod(-1)  # [B, 2^d]
    return corners, w


class MultiResGrid(nn.Module):
    """Base class: level geometry, vertex indexing, interpolation and level combination."""

    def __init__(
        self,
        dims: int,
        levels: int,
        base_resolution: int,
        max_resolution: int,
        features: int,
        combine: Combine,
        table_rows: int | None = None,
    ) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ConfigError(f"grid dims must be 2 or 3, got {dims}")
        self.dims = dims
        self.features = features
        self.combine = combine
        self.resolutions = level_resolutions(levels, base_resolution, max_resolution)
        # Rows per level: all vertices (dense), or min(vertices, table_rows) when hashed.
        self.vertex_counts = [n**dims for n in self.resolutions]
        self.rows = [m if table_rows is None else min(m, table_rows) for m in self.vertex_counts]
        self.hashed = [r < m for r, m in zip(self.rows, self.vertex_counts, strict=True)]

    @property
    def levels(self) -> int:
        return len(self.resolutions)

    @property
    def out_dim(self) -> int:
        return self.features * (self.levels if self.combine == "concat" else 1)

    def vertex_ids(self, level: int, corners: Tensor) -> Tensor:  # [B, 2^d]
        """Row ids of integer corners [B, 2^d, d]: linear for dense levels, spatial hash otherwise."""
        if self.hashed[level]:
            h = torch.zeros(corners.shape[:-1], dtype=torch.int64, device=corners.device)
            for j in range(self.dims):
                h = h ^ (corners[..., j] * HASH_PRIMES[j])
            return h & (self.rows[level] - 1)  # rows is a power of two for hashed levels
        n = self.resolutions[level]
        ids = corners[..., 0]
        stride = 1
        for j in range(1, self.dims):
            stride *= n
            ids = ids + corners[..., j] * stride
        return ids

    def level_features(self, level: int, ids: Tensor) -> Tensor:  # [B, 2^d, k]
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:  # x [B, d] in [0, 1] -> [B, out_dim]
        assert x.ndim == 2 and x.shape[1] == self.dims, x.shape
        outs = []
        for level, n in enumerate(self.resolutions):
            corners, w = cell_corners(x, n)
            f = self.level_features(level, self.vertex_ids(level, corners))  # [B, 2^d, k]
            outs.append((f * w[..., None].to(f.dtype)).sum(1))
        if self.combine == "concat":
            return torch.cat(outs, dim=-1)
        return torch.stack(outs, 0).sum(0)

    def geometry(self) -> dict[str, Any]:
        """What a decoder of this grid needs besides its arrays (written to the .vqp manifest)."""
        return {
            "dims": self.dims,
            "features": self.features,
            "combine": self.combine,
            "resolutions": self.resolutions,
            "rows": self.rows,
            "hashed": self.hashed,
        }


class DenseGrid(MultiResGrid):
    """Uncompressed grid (table_rows None) or hash grid (table_rows = T): a float table per level."""

    def __init__(
        self,
        dims: int,
        cfg: DenseGridConfig | HashGridConfig,
        generator: torch.Generator | None = None,
    ) -> None:
        rows = 1 << cfg.log2_table_size if isinstance(cfg, HashGridConfig) else None
        super().__init__(dims, cfg.levels, cfg.base_resolution, cfg.max_resolution, cfg.features, cfg.combine, rows)
        self.tables = nn.ParameterList(
            nn.Parameter(torch.randn(r, cfg.features, generator=generator) * cfg.init_std) for r in self.rows
        )

    def level_features(self, level: int, ids: Tensor) -> Tensor:
        return self.tables[level][ids]


class _VqadCodes(torch.autograd.Function):
    """Per-unique-vertex VQ-AD features: softmax(C[u]) @ D (soft) or D[argmax C[u]] (hard).

    Backward recomputes the softmax in row chunks, so neither pass keeps more than
    ~VQAD_CHUNK_ELEMS logits alive, and nothing of shape [samples, 2^d, 2^b, k] ever exists.
    The hard forward has straight-through softmax gradients: dL/dC = J_softmax^T (dL/dF D^T),
    dL/dD = onehot(argmax C)^T dL/dF.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, codebook: Tensor, u: Tensor, hard: bool) -> Tensor:
        # logits [m, K], codebook [K, k], u [U] unique vertex ids -> [U, k]
        ctx.save_for_backward(logits, codebook, u)
        ctx.hard = hard
        K = logits.shape[1]
        chunk = max(1, VQAD_CHUNK_ELEMS // K)
        out = torch.empty(u.shape[0], codebook.shape[1], dtype=codebook.dtype, device=codebook.device)
        for s in range(0, u.shape[0], chunk):
            cu = logits[u[s : s + chunk]]
            if hard:
                out[s : s + chunk] = codebook[cu.argmax(-1)]
            else:
                out[s : s + chunk] = torch.softmax(cu, -1) @ codebook
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        logits, codebook, u = ctx.saved_tensors
        K = logits.shape[1]
        chunk = max(1, VQAD_CHUNK_ELEMS // K)
        grad_logits = torch.zeros_like(logits) if ctx.needs_input_grad[0] else None
        grad_codebook = torch.zeros_like(codebook) if ctx.needs_input_grad[1] else None
        for s in range(0, u.shape[0], chunk):
            uc = u[s : s + chunk]
            g = grad_out[s : s + chunk]  # [c, k]
            cu = logits[uc]
            p = torch.softmax(cu, -1)  # [c, K]
            if grad_codebook is not None:
                if ctx.hard:
                    grad_codebook.index_add_(0, cu.argmax(-1), g)
                else:
                    grad_codebook.addmm_(p.t(), g)
            if grad_logits is not None:
                gp = g @ codebook.t()  # [c, K]
                grad_logits[uc] = p * (gp - (p * gp).sum(-1, keepdim=True))
        return grad_logits, grad_codebook, None, None


def vqad_features(logits: Tensor, codebook: Tensor, ids: Tensor, hard: bool) -> Tensor:
    """Memory-efficient VQ-AD lookup: features [B, 2^d, k] of vertex ids [B, 2^d].

    logits [m, 2^b], codebook [2^b, k]. Each vertex touched by the batch is decoded once.
    """
    u, inv = torch.unique(ids, return_inverse=True)
    return _VqadCodes.apply(logits, codebook, u, hard)[inv]


def vqad_features_reference(logits: Tensor, codebook: Tensor, ids: Tensor, hard: bool) -> Tensor:
    """The dense (kaolin-wisp style) VQ-AD lookup, the slow twin of ``vqad_features``.

    Materialises [B, 2^d, 2^b, k]: memory grows with samples x 2^d x 2^b x k.
    """
    c = logits[ids]  # [B, 2^d, K]
    p = torch.softmax(c, -1)
    if hard:
        onehot = nn.functional.one_hot(c.argmax(-1), c.shape[-1]).to(p.dtype)
        p = onehot - p.detach() + p  # straight-through: one-hot forward, softmax gradients
    return (p[..., None] * codebook[None, None]).sum(-2)


class VqadGrid(MultiResGrid):
    """VQ-AD training grid: logits C [m, 2^b] per vertex and a codebook D [2^b, k] per level."""

    def __init__(self, dims: int, cfg: VqadGridConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(dims, cfg.levels, cfg.base_resolution, cfg.max_resolution, cfg.features, cfg.combine)
        self.bits = cfg.bits
        K = 1 << cfg.bits
        self.hard = cfg.forward == "hard"
        self.reference = False  # True: use the dense wisp-style lookup (benchmarks and tests only)
        self.logits = nn.ParameterList(
            nn.Parameter(torch.randn(m, K, generator=generator) * 0.01) for m in self.vertex_counts
        )
        self.codebooks = nn.ParameterList(
            nn.Parameter(torch.randn(K, cfg.features, generator=generator) * cfg.init_std) for _ in self.vertex_counts
        )

    def level_features(self, level: int, ids: Tensor) -> Tensor:
        lookup = vqad_features_reference if self.reference else vqad_features
        return lookup(self.logits[level], self.codebooks[level], ids, self.hard)

    def bake(self) -> VqGrid:
        """The inference grid: V = argmax C per vertex (b bits) and the codebooks D."""
        indices = [c.detach().argmax(-1) for c in self.logits]
        codebooks = [d.detach().clone() for d in self.codebooks]
        return VqGrid(self.dims, self.resolutions, self.combine, indices, codebooks, self.bits)


class VqGrid(MultiResGrid):
    """Inference-only VQ grid: per level integer indices V [m] into a codebook D [K, k].

    Produced by baking a VQ-AD grid or by k-means of a trained dense grid (kmVQ).
    """

    def __init__(
        self,
        dims: int,
        resolutions: list[int],
        combine: Combine,
        indices: list[Tensor],
        codebooks: list[Tensor],
        bits: int,
    ) -> None:
        super().__init__(dims, len(resolutions), resolutions[0], resolutions[-1], codebooks[0].shape[1], combine)
        self.resolutions = list(resolutions)
        self.vertex_counts = [n**dims for n in self.resolutions]
        self.rows = list(self.vertex_counts)
        self.hashed = [False] * len(resolutions)
        self.bits = bits
        for level, (v, d) in enumerate(zip(indices, codebooks, strict=True)):
            assert v.shape == (self.vertex_counts[level],), (v.shape, self.vertex_counts[level])
            assert d.ndim == 2 and d.shape[0] <= 1 << bits, (d.shape, bits)
            self.register_buffer(f"indices_{level}", v.to(torch.int64))
            self.register_buffer(f"codebook_{level}", d.float())

    def level_indices(self, level: int) -> Tensor:  # [m]
        return getattr(self, f"indices_{level}")

    def level_codebook(self, level: int) -> Tensor:  # [K, k]
        return getattr(self, f"codebook_{level}")

    def level_features(self, level: int, ids: Tensor) -> Tensor:
        return self.level_codebook(level)[self.level_indices(level)[ids]]


class LowRankGrid(MultiResGrid):
    """Inference-only low-rank grid (LRA): per level features = mean + coeffs [m, r] @ basis [r, k]."""

    def __init__(
        self,
        dims: int,
        resolutions: list[int],
        combine: Combine,
        coeffs: list[Tensor],
        bases: list[Tensor],
        means: list[Tensor],
    ) -> None:
        super().__init__(dims, len(resolutions), resolutions[0], resolutions[-1], bases[0].shape[1], combine)
        self.resolutions = list(resolutions)
        self.vertex_counts = [n**dims for n in self.resolutions]
        self.rows = list(self.vertex_counts)
        self.hashed = [False] * len(resolutions)
        for level, (a, b, mu) in enumerate(zip(coeffs, bases, means, strict=True)):
            assert a.shape[0] == self.vertex_counts[level] and a.shape[1] == b.shape[0], (a.shape, b.shape)
            self.register_buffer(f"coeffs_{level}", a.float())
            self.register_buffer(f"basis_{level}", b.float())
            self.register_buffer(f"mean_{level}", mu.float())

    def level_features(self, level: int, ids: Tensor) -> Tensor:
        a = getattr(self, f"coeffs_{level}")[ids]  # [B, 2^d, r]
        return a @ getattr(self, f"basis_{level}") + getattr(self, f"mean_{level}")


def build_grid(dims: int, cfg: GridConfig, generator: torch.Generator | None = None) -> MultiResGrid:
    """The trainable grid for a config."""
    if isinstance(cfg, DenseGridConfig):
        return DenseGrid(dims, cfg, generator)
    if isinstance(cfg, HashGridConfig):
        return DenseGrid(dims, cfg, generator)
    if isinstance(cfg, VqadGridConfig):
        return VqadGrid(dims, cfg, generator)
    assert_never(cfg)

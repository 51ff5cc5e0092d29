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
        # Sparse levels hold a buffer rows_<l> [m] int32: each vertex's row in the level's compact
        # arrays, -1 for a vertex without one (feature 0). Set by the sparse grids.
        self.sparse = [False] * len(self.resolutions)

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

    def support_level(self) -> int | None:
        """The sparse level whose allocated vertices bound the field (None: the whole cube)."""
        return None

    def level_rows(self, level: int) -> Tensor:  # [m] int32, sparse levels only
        rows: Tensor = getattr(self, f"rows_{level}")
        return rows

    def level_active(self, level: int, ids: Tensor) -> Tensor:  # [B, 2^d] bool
        """Which of the vertex ids are allocated (all of them on a dense level)."""
        if not self.sparse[level]:
            return torch.ones_like(ids, dtype=torch.bool)
        return self.level_rows(level)[ids] >= 0

    def features_and_support(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Grid features [B, out_dim] of x [B, d] in [0, 1], and for sparse grids which points lie
        in the allocated region (any corner of their cell in ``support_level()`` allocated) [B]."""
        assert x.ndim == 2 and x.shape[1] == self.dims, x.shape
        outs = []
        support = None
        sl = self.support_level()
        for level, n in enumerate(self.resolutions):
            corners, w = cell_corners(x, n)
            ids = self.vertex_ids(level, corners)
            f = self.level_features(level, ids)  # [B, 2^d, k]
            outs.append((f * w[..., None].to(f.dtype)).sum(1))
            if level == sl:
                support = self.level_active(level, ids).any(-1)
        if self.combine == "concat":
            return torch.cat(outs, dim=-1), support
        return torch.stack(outs, 0).sum(0), support

    def forward(self, x: Tensor) -> Tensor:  # x [B, d] in [0, 1] -> [B, out_dim]
        return self.features_and_support(x)[0]

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


def sparse_rows(active: Tensor) -> Tensor:  # [m] bool -> [m] int32, -1 where not allocated
    """Row of each allocated vertex in its level's compact arrays (allocation order = vertex id order)."""
    rows = torch.cumsum(active.to(torch.int32), 0, dtype=torch.int32) - 1
    return torch.where(active, rows, torch.full_like(rows, -1))


def vqad_features_sparse(logits: Tensor, codebook: Tensor, rows: Tensor, hard: bool) -> Tensor:
    """``vqad_features`` over compact rows [B, 2^d] (-1: not allocated, feature 0).

    The gather is an embedding with the unallocated entries on its padding row, which the backward
    skips: a plain index would accumulate every unallocated sample's gradient into one row, which
    serialises on a GPU (seconds per step before the fine levels are allocated).
    """
    k = codebook.shape[1]
    if logits.shape[0] == 0:  # nothing allocated yet
        return torch.zeros(*rows.shape, k, dtype=codebook.dtype, device=codebook.device)
    u, inv = torch.unique(rows, return_inverse=True)
    if u.numel() and int(u[0]) < 0:
        u = u[1:]  # the -1 entries already map to 0, the padding row
    else:
        inv = inv + 1
    f = _VqadCodes.apply(logits, codebook, u.long(), hard)
    table = torch.cat([torch.zeros(1, k, dtype=f.dtype, device=f.device), f])
    return nn.functional.embedding(inv, table, padding_idx=0)


def active_vertices(occupied: Tensor, n: int) -> Tensor:  # occupied [R, R, R] bool (x, y, z) -> [n^3] bool
    """Vertices of an n^3 grid over the unit cube whose cells touch an occupied cell, in vertex-id
    order (id = x + n y + n^2 z). A vertex at v / (n - 1) touches the occupancy cells within
    ceil(R / (n - 1)) of its own, so the occupancy mask is dilated by that many cells first."""
    R = occupied.shape[0]
    assert occupied.shape == (R, R, R) and occupied.dtype == torch.bool, (occupied.shape, occupied.dtype)
    r = math.ceil(R / (n - 1))
    dil = torch.nn.functional.max_pool3d(occupied[None, None].float(), 2 * r + 1, stride=1, padding=r)[0, 0] > 0
    cell = (torch.arange(n, device=occupied.device, dtype=torch.float64) / (n - 1) * R).floor().long().clamp(0, R - 1)
    act = dil[cell[:, None, None], cell[None, :, None], cell[None, None, :]]  # [x, y, z]
    return act.permute(2, 1, 0).reshape(-1)


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
    """VQ-AD training grid: logits C [m, 2^b] per vertex and a codebook D [2^b, k] per level.

    Sparse levels (``cfg.sparse``, 3D, resolution >= ``cfg.sparse_min_resolution``) hold logits
    only for allocated vertices: ``rows_<l>`` [m] int32 maps a vertex id to its logits row (-1: not
    allocated, feature 0). They start unallocated (feature 0 everywhere, no bound on the field);
    ``allocate`` fits them to an occupancy mask, after which the finest one bounds the field.
    """

    def __init__(self, dims: int, cfg: VqadGridConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(dims, cfg.levels, cfg.base_resolution, cfg.max_resolution, cfg.features, cfg.combine)
        self.bits = cfg.bits
        K = 1 << cfg.bits
        self.hard = cfg.forward == "hard"
        self.reference = False  # True: use the dense wisp-style lookup (benchmarks and tests only)
        self.sparse = [cfg.sparse and dims == 3 and n >= cfg.sparse_min_resolution for n in self.resolutions]
        self.logits = nn.ParameterList(
            nn.Parameter(torch.randn(0 if sp else m, K, generator=generator) * 0.01)
            for m, sp in zip(self.vertex_counts, self.sparse, strict=True)
        )
        self.codebooks = nn.ParameterList(
            nn.Parameter(torch.randn(K, cfg.features, generator=generator) * cfg.init_std) for _ in self.vertex_counts
        )
        for level, (m, sp) in enumerate(zip(self.vertex_counts, self.sparse, strict=True)):
            if sp:
                self.register_buffer(f"rows_{level}", torch.full((m,), -1, dtype=torch.int32))

    def support_level(self) -> int | None:
        """The finest allocated sparse level. An allocation is never empty (``allocate`` skips an
        empty mask, and the dilated mask of an occupied cell holds vertices), so a sparse level is
        allocated exactly when it has logits rows."""
        done = [l for l in range(self.levels) if self.sparse[l] and self.logits[l].shape[0] > 0]
        return done[-1] if done else None

    def level_features(self, level: int, ids: Tensor) -> Tensor:
        if self.sparse[level]:
            assert not self.reference, "the dense reference lookup has no sparse form"
            rows = self.level_rows(level)[ids]
            return vqad_features_sparse(self.logits[level], self.codebooks[level], rows, self.hard)
        lookup = vqad_features_reference if self.reference else vqad_features
        return lookup(self.logits[level], self.codebooks[level], ids, self.hard)

    def allocated_vertices(self) -> list[int]:
        """Rows of logits per level (all vertices for dense levels)."""
        return [int(c.shape[0]) for c in self.logits]

    @torch.no_grad()
    def allocate(
        self, occupied: Tensor, generator: torch.Generator | None = None
    ) -> dict[int, tuple[nn.Parameter, Tensor, Tensor]]:
        """Fit the sparse levels to an occupancy mask [R, R, R] (bool, x/y/z over the unit cube).

        A vertex is allocated when one of its cells touches an occupied cell. Vertices that stay
        keep their logits; new ones start like a fresh grid's. Returns, per re-allocated level,
        (the old logits parameter, its kept rows, their new rows) so an optimizer can carry its
        state over. An empty mask changes nothing (an empty field would never recover).
        """
        moved: dict[int, tuple[nn.Parameter, Tensor, Tensor]] = {}
        if not bool(occupied.any()):
            return moved
        for level, n in enumerate(self.resolutions):
            if not self.sparse[level]:
                continue
            active = active_vertices(occupied.to(self.level_rows(level).device), n)
            old_rows = self.level_rows(level)
            new_rows = sparse_rows(active)
            old = self.logits[level]
            keep = (old_rows >= 0) & active
            old_idx, new_idx = old_rows[keep].long(), new_rows[keep].long()
            K = old.shape[1]
            dev = generator.device if generator is not None else old.device
            fresh = torch.randn(int(active.sum()), K, generator=generator, device=dev) * 0.01
            fresh = fresh.to(old.device, old.dtype)
            fresh[new_idx] = old[old_idx]
            self.logits[level] = nn.Parameter(fresh)
            self.register_buffer(f"rows_{level}", new_rows)
            moved[level] = (old, old_idx, new_idx)
        return moved

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Resize sparse levels to the saved allocation before loading (its size is part of the state)."""
        for level, sp in enumerate(self.sparse):
            rows = state_dict.get(f"{prefix}rows_{level}")
            logits = state_dict.get(f"{prefix}logits.{level}")
            if not sp or rows is None or logits is None:
                continue
            m, K = self.vertex_counts[level], self.logits[level].shape[1]
            n_alloc = int((rows >= 0).sum()) if rows.shape == (m,) else -1
            if rows.shape != (m,) or logits.shape != (n_alloc, K) or not torch.equal(rows, sparse_rows(rows >= 0)):
                raise ValueError(
                    f"sparse level {level}: rows {tuple(rows.shape)} / logits {tuple(logits.shape)} do not form "
                    f"an allocation of {m} vertices with {K} codes"
                )
            dev = self.logits[level].device
            self.logits[level] = nn.Parameter(torch.empty(n_alloc, K, device=dev))
            self.register_buffer(f"rows_{level}", torch.empty(m, dtype=torch.int32, device=dev))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def bake(self) -> VqGrid:
        """The inference grid: V = argmax C per (allocated) vertex (b bits) and the codebooks D."""
        indices = [c.detach().argmax(-1) for c in self.logits]
        codebooks = [d.detach().clone() for d in self.codebooks]
        active = [self.level_rows(l) >= 0 if sp else None for l, sp in enumerate(self.sparse)]
        return VqGrid(
            self.dims, self.resolutions, self.combine, indices, codebooks, self.bits, active, self.support_level()
        )


class VqGrid(MultiResGrid):
    """Inference-only VQ grid: per level integer indices V [m] into a codebook D [K, k].

    Produced by baking a VQ-AD grid or by k-means of a trained dense grid (kmVQ). A sparse level
    has an ``active`` mask [m] and indices for its allocated vertices only (the others read 0);
    ``support`` names the level whose allocation bounds the field.
    """

    def __init__(
        self,
        dims: int,
        resolutions: list[int],
        combine: Combine,
        indices: list[Tensor],
        codebooks: list[Tensor],
        bits: int,
        active: list[Tensor | None] | None = None,
        support: int | None = None,
    ) -> None:
        super().__init__(dims, len(resolutions), resolutions[0], resolutions[-1], codebooks[0].shape[1], combine)
        self.resolutions = list(resolutions)
        self.vertex_counts = [n**dims for n in self.resolutions]
        self.rows = list(self.vertex_counts)
        self.hashed = [False] * len(resolutions)
        self.bits = bits
        active = active if active is not None else [None] * len(resolutions)
        self.sparse = [a is not None for a in active]
        assert support is None or self.sparse[support], (support, self.sparse)
        self._support = support
        for level, (v, d, a) in enumerate(zip(indices, codebooks, active, strict=True)):
            m = self.vertex_counts[level]
            if a is not None:
                assert a.shape == (m,) and a.dtype == torch.bool, (a.shape, a.dtype, m)
                self.register_buffer(f"rows_{level}", sparse_rows(a))
                m = int(a.sum())
            assert v.shape == (m,), (v.shape, m)
            assert d.ndim == 2 and d.shape[0] <= 1 << bits, (d.shape, bits)
            self.register_buffer(f"indices_{level}", v.to(torch.int64))
            self.register_buffer(f"codebook_{level}", d.float())

    def support_level(self) -> int | None:
        return self._support

    def level_mask(self, level: int) -> Tensor | None:  # [m] bool, None for a dense level
        return self.level_rows(level) >= 0 if self.sparse[level] else None

    def level_indices(self, level: int) -> Tensor:  # [m]
        return getattr(self, f"indices_{level}")

    def level_codebook(self, level: int) -> Tensor:  # [K, k]
        return getattr(self, f"codebook_{level}")

    def level_features(self, level: int, ids: Tensor) -> Tensor:
        if self.sparse[level]:
            rows = self.level_rows(level)[ids]
            cb = self.level_codebook(level)
            if self.level_indices(level).numel() == 0:  # nothing allocated: every vertex reads 0
                return torch.zeros(*rows.shape, cb.shape[1], dtype=cb.dtype, device=cb.device)
            f = cb[self.level_indices(level)[rows.clamp(min=0).long()]]
            return torch.where((rows >= 0)[..., None], f, torch.zeros((), dtype=f.dtype, device=f.device))
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

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
# The all-levels lookup's per-level constants, in the order ``MultiResGrid.lookup_inputs`` passes them.
GEOMETRY_KEYS = ("scale", "top", "strides", "primes", "hashed", "mask")
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
        # True: ``features_and_support`` takes the all-levels path (``features_and_support_fused``;
        # grids with training tables only). A run-time choice of the trainer, not part of the state.
        self.fused_lookup = False

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

    def level_features(self, level: int, ids: Tensor, table: Tensor | None = None) -> Tensor:  # [B, 2^d, k]
        """Features of vertex ids; ``table`` is the level's ``level_tables()`` entry when the
        caller computed them (a compiled lookup takes them as inputs), else the grid's own."""
        raise NotImplementedError

    def level_tables(self) -> list[Tensor | None]:
        """Per level, the table ``level_features`` gathers from (None: no such table; the
        inference grids read their buffers). Passed back through ``features_and_support``."""
        return [None] * self.levels

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

    def features_and_support(
        self, x: Tensor, tables: list[Tensor | None] | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Grid features [B, out_dim] of x [B, d] in [0, 1], and for sparse grids which points lie
        in the allocated region (any corner of their cell in ``support_level()`` allocated) [B].
        ``tables``: the grid's ``lookup_inputs()``, computed by the caller (None: here)."""
        if self.fused_lookup and not getattr(self, "reference", False):
            return self.features_and_support_fused(x, tables)
        assert x.ndim == 2 and x.shape[1] == self.dims, x.shape
        outs = []
        support = None
        sl = self.support_level()
        for level, n in enumerate(self.resolutions):
            corners, w = cell_corners(x, n)
            ids = self.vertex_ids(level, corners)
            f = self.level_features(level, ids, None if tables is None else tables[level])  # [B, 2^d, k]
            outs.append((f * w[..., None].to(f.dtype)).sum(1))
            if level == sl:
                support = self.level_active(level, ids).any(-1)
        if self.combine == "concat":
            return torch.cat(outs, dim=-1), support
        return torch.stack(outs, 0).sum(0), support

    def forward(self, x: Tensor) -> Tensor:  # x [B, d] in [0, 1] -> [B, out_dim]
        return self.features_and_support(x)[0]

    def _level_geometry(self, device: torch.device) -> list[Tensor]:
        """Per-level constants of the all-levels lookup (GEOMETRY_KEYS), made once per device:
        a host-to-device copy in the loop would wait for the device."""
        cache: dict[torch.device, list[Tensor]] = self.__dict__.setdefault("_geometry_cache", {})
        if device not in cache:
            n = torch.tensor(self.resolutions, dtype=torch.int64)
            geo = {
                "scale": (n - 1).to(torch.float32),  # [L]
                "top": (n - 2).to(torch.float32),  # [L]
                "strides": torch.stack([n**j for j in range(self.dims)], -1),  # [L, d]
                "primes": torch.tensor(HASH_PRIMES[: self.dims], dtype=torch.int64),  # [d]
                "hashed": torch.tensor(self.hashed),  # [L]
                "mask": torch.tensor(self.rows, dtype=torch.int64) - 1,  # [L]
            }
            cache[device] = [geo[k].to(device) for k in GEOMETRY_KEYS]
        return cache[device]

    def lookup_inputs(self) -> list[Tensor | None]:
        """What ``features_and_support`` takes as ``tables``: ``level_tables()``, and with
        ``fused_lookup`` the all-levels path's constants after them (``_level_geometry``, then the
        grid's own, ``fused_inputs``), so that a compiled lookup reads no cache of its own."""
        tables = self.level_tables()
        if not self.fused_lookup:
            return tables
        dev = next(t for t in tables if t is not None).device
        return [*tables, *self._level_geometry(dev), *self.fused_inputs(tables, dev)]

    def level_ids(self, x: Tensor, geometry: list[Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """``cell_corners`` + ``vertex_ids`` of every level at once: the same integers and weights
        as the per-level loop, in a handful of kernels instead of a few dozen per level.
        x [B, d] -> ids [B, L, 2^d], w [B, L, 2^d]."""
        scale, top, strides, primes, hashed_level, mask = geometry or self._level_geometry(x.device)
        p = x.clamp(0.0, 1.0)[:, None, :] * scale[None, :, None]  # [B, L, d]
        i0 = torch.minimum(p.floor(), top[None, :, None]).clamp(min=0).to(torch.int64)
        frac = p - i0.to(p.dtype)
        offs = corner_offsets(self.dims, x.device)  # [2^d, d]
        corners = i0[:, :, None, :] + offs  # [B, L, 2^d, d]
        w = torch.where(offs.bool(), frac[:, :, None, :], 1.0 - frac[:, :, None, :]).prod(-1)  # [B, L, 2^d]
        linear = (corners * strides[:, None, :]).sum(-1)
        if not any(self.hashed):
            return linear, w
        h = corners * primes
        hashed = h[..., 0]
        for j in range(1, self.dims):
            hashed = hashed ^ h[..., j]
        return torch.where(hashed_level[:, None], hashed & mask[:, None], linear), w

    def fused_inputs(self, tables: list[Tensor | None], device: torch.device) -> list[Tensor]:
        """The grid's own constants of the all-levels lookup (``fused_rows`` reads them)."""
        raise NotImplementedError(f"{type(self).__name__} has no fused lookup")

    def fused_rows(
        self, ids: Tensor, tables: list[Tensor], inputs: list[Tensor]
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """(one table of every level's rows [R, k], the rows of ids [B, L, 2^d] in it, the support [B]
        or None): what ``features_and_support_fused`` gathers. Grids with training tables only."""
        raise NotImplementedError(f"{type(self).__name__} has no fused lookup")

    def features_and_support_fused(
        self, x: Tensor, tables: list[Tensor | None] | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """``features_and_support`` with every level at once: the ids of all levels in one pass
        (``level_ids``), one gather from the levels' tables concatenated, and a backward that adds
        the gradient rows with ``index_add_`` (atomics on a GPU) rather than sorting the ids. The
        same features to float rounding (sums in another order); the per-level loop is its twin.
        ``tables``: ``lookup_inputs()`` (None: made here)."""
        assert x.ndim == 2 and x.shape[1] == self.dims, x.shape
        inputs = self.lookup_inputs() if tables is None else tables
        L, G = self.levels, len(GEOMETRY_KEYS)
        assert len(inputs) > L + G, "fused lookup needs lookup_inputs() with fused_lookup set"
        level_tables = [t for t in inputs[:L] if t is not None]
        ids, w = self.level_ids(x, [t for t in inputs[L : L + G] if t is not None])
        table, rows, support = self.fused_rows(ids, level_tables, [t for t in inputs[L + G :] if t is not None])
        f = gather_table_rows(table, rows)  # [B, L, 2^d, k]
        out = (f * w[..., None].to(f.dtype)).sum(2)  # [B, L, k]
        if self.combine == "concat":
            return out.reshape(x.shape[0], -1), support
        return out.sum(1), support

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


class _GatherRows(torch.autograd.Function):
    """table[rows] with a backward by ``index_add_`` (atomic adds on a GPU, no sort of the rows)."""

    @staticmethod
    def forward(ctx: Any, table: Tensor, rows: Tensor) -> Tensor:  # table [R, k], rows [...] -> [..., k]
        ctx.save_for_backward(rows)
        ctx.table_shape = table.shape
        return table.index_select(0, rows.reshape(-1)).reshape(*rows.shape, table.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (rows,) = ctx.saved_tensors
        out = torch.zeros(ctx.table_shape, dtype=grad.dtype, device=grad.device)
        return out.index_add_(0, rows.reshape(-1), grad.reshape(-1, ctx.table_shape[1])), None


def gather_table_rows(table: Tensor, rows: Tensor) -> Tensor:  # table [R, k], rows [...] int64 -> [..., k]
    """Rows of a table, gradient by ``index_add_`` (``_GatherRows``)."""
    return _GatherRows.apply(table, rows)


def _level_offsets(counts: list[int], device: torch.device) -> Tensor:  # [L] first row of each level
    return torch.tensor([sum(counts[:i]) for i in range(len(counts))], dtype=torch.int64).to(device)


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

    def level_features(self, level: int, ids: Tensor, table: Tensor | None = None) -> Tensor:
        return (self.tables[level] if table is None else table)[ids]

    def level_tables(self) -> list[Tensor | None]:
        return list(self.tables)

    def fused_inputs(self, tables: list[Tensor | None], device: torch.device) -> list[Tensor]:
        cache: dict[torch.device, Tensor] = self.__dict__.setdefault("_offsets_cache", {})
        if device not in cache:
            cache[device] = _level_offsets(self.rows, device)
        return [cache[device]]  # [L] each level's first row in the concatenated table

    def fused_rows(
        self, ids: Tensor, tables: list[Tensor], inputs: list[Tensor]
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        (offsets,) = inputs
        return torch.cat(tables), ids + offsets[:, None], None


class _VqadTable(torch.autograd.Function):
    """The VQ-AD feature of every row: softmax(C) @ D (soft) or D[code of argmax C] (hard), as a
    table [m + 1, k] whose row 0 is the zero feature (unallocated vertices read it).

    Each row's logits C [m, M] score M codes: all 2^b codes (``candidates`` None), or the M codes
    ``candidates`` [m, M] names. Both passes go over the rows in chunks of ~VQAD_CHUNK_ELEMS
    logits, so nothing of shape [samples, 2^d, 2^b, k] (nor [m, 2^b] when M < 2^b) ever exists:
    the cost of a step is that of the optimizer's own pass over C, and the samples then gather
    from the table as the hash grid gathers from its own. The hard forward has straight-through
    softmax gradients: dL/dC = J_softmax^T (dL/dF D^T), dL/dD = onehot(code)^T dL/dF. A row no
    sample touched gets dL/dF = 0 and so dL/dC = 0 exactly.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, codebook: Tensor, candidates: Tensor | None, hard: bool) -> Tensor:
        # logits [m, M], codebook [K, k], candidates [m, M] int or None (M = K) -> [m + 1, k]
        ctx.save_for_backward(logits, codebook, candidates)
        ctx.hard = hard
        m, M = logits.shape
        chunk = max(1, VQAD_CHUNK_ELEMS // M)
        out = torch.empty(m + 1, codebook.shape[1], dtype=codebook.dtype, device=codebook.device)
        out[0] = 0.0
        for s in range(0, m, chunk):
            c = logits[s : s + chunk]
            cand = None if candidates is None else candidates[s : s + chunk].long()
            if hard:
                code = c.argmax(-1)
                if cand is not None:
                    code = cand.gather(1, code[:, None])[:, 0]
                out[1 + s : 1 + s + chunk] = codebook[code]
            elif cand is None:
                out[1 + s : 1 + s + chunk] = torch.softmax(c, -1) @ codebook
            else:
                out[1 + s : 1 + s + chunk] = (torch.softmax(c, -1)[..., None] * codebook[cand]).sum(1)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        logits, codebook, candidates = ctx.saved_tensors
        m, M = logits.shape
        k = codebook.shape[1]
        chunk = max(1, VQAD_CHUNK_ELEMS // M)
        grad_logits = torch.empty_like(logits) if ctx.needs_input_grad[0] else None
        grad_codebook = torch.zeros_like(codebook) if ctx.needs_input_grad[1] else None
        for s in range(0, m, chunk):
            g = grad_out[1 + s : 1 + s + chunk]  # [c, k]
            c = logits[s : s + chunk]
            cand = None if candidates is None else candidates[s : s + chunk].long()
            p = torch.softmax(c, -1)  # [c, M]
            if grad_codebook is not None:
                if ctx.hard:
                    code = c.argmax(-1)
                    if cand is not None:
                        code = cand.gather(1, code[:, None])[:, 0]
                    grad_codebook.index_add_(0, code, g)
                elif cand is None:
                    grad_codebook.addmm_(p.t(), g)
                else:
                    grad_codebook.index_add_(0, cand.reshape(-1), (p[..., None] * g[:, None]).reshape(-1, k))
            if grad_logits is not None:
                gp = g @ codebook.t() if cand is None else (codebook[cand] * g[:, None]).sum(-1)  # [c, M]
                grad_logits[s : s + chunk] = p * (gp - (p * gp).sum(-1, keepdim=True))
        return grad_logits, grad_codebook, None, None


def vqad_table(logits: Tensor, codebook: Tensor, candidates: Tensor | None, hard: bool) -> Tensor:  # [m + 1, k]
    """Every row's VQ-AD feature, row 0 the zero feature (``_VqadTable``)."""
    return _VqadTable.apply(logits, codebook, candidates, hard)


def gather_rows(table: Tensor, rows: Tensor) -> Tensor:  # table [m + 1, k], rows [B, 2^d] (-1: none) -> [B, 2^d, k]
    """Features of compact rows from a table with the zero feature at row 0. An embedding with that
    row as its padding row: its backward skips the unallocated entries, which a plain index would
    all accumulate into one row (that serialises on a GPU)."""
    return nn.functional.embedding(rows.long() + 1, table, padding_idx=0)


def vqad_features(
    logits: Tensor, codebook: Tensor, rows: Tensor, hard: bool, candidates: Tensor | None = None
) -> Tensor:  # [B, 2^d, k]
    """The VQ-AD lookup: features of rows [B, 2^d] (-1: not allocated, feature 0).

    logits [m, M], codebook [2^b, k], candidates [m, M] (None: M = 2^b). The table of every row
    is decoded once, then gathered; the slow twin is ``vqad_features_reference``."""
    return gather_rows(vqad_table(logits, codebook, candidates, hard), rows)


def sparse_rows(active: Tensor) -> Tensor:  # [m] bool -> [m] int32, -1 where not allocated
    """Row of each allocated vertex in its level's compact arrays (allocation order = vertex id order)."""
    rows = torch.cumsum(active.to(torch.int32), 0, dtype=torch.int32) - 1
    return torch.where(active, rows, torch.full_like(rows, -1))


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


def vqad_features_reference(
    logits: Tensor, codebook: Tensor, rows: Tensor, hard: bool, candidates: Tensor | None = None
) -> Tensor:  # [B, 2^d, k]
    """The dense (kaolin-wisp style) VQ-AD lookup, the slow twin of ``vqad_features``.

    Materialises [B, 2^d, M, k]: memory grows with samples x 2^d x 2^b x k.
    """
    valid = rows >= 0  # [B, 2^d]
    r = rows.clamp(min=0).long()
    if logits.shape[0] == 0:
        return torch.zeros(*rows.shape, codebook.shape[1], dtype=codebook.dtype, device=codebook.device)
    c = logits[r]  # [B, 2^d, M]
    p = torch.softmax(c, -1)
    if hard:
        onehot = nn.functional.one_hot(c.argmax(-1), c.shape[-1]).to(p.dtype)
        p = onehot - p.detach() + p  # straight-through: one-hot forward, softmax gradients
    d = codebook[None, None] if candidates is None else codebook[candidates[r].long()]  # [.., M, k]
    return (p[..., None] * d).sum(-2) * valid[..., None].to(codebook.dtype)


def code_neighbours(codebook: Tensor, centers: Tensor, count: int, chunk: int = 1 << 14) -> Tensor:
    """The ``count`` codes nearest (squared distance in feature space) to each code of
    ``centers`` [n], that code first: [n, count] int16."""
    out = torch.empty(centers.shape[0], count, dtype=torch.int16, device=centers.device)
    cb = codebook.detach().float()
    for s in range(0, centers.shape[0], chunk):
        c = centers[s : s + chunk].long()
        d = torch.cdist(cb[c], cb)  # [c, K]
        d.scatter_(1, c[:, None], -1.0)  # the centre itself first, whatever ties there are
        out[s : s + chunk] = d.topk(count, dim=1, largest=False).indices.to(torch.int16)
    return out


def spread_candidates(m: int, K: int, M: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Initial candidate lists [m, M] int16: M distinct codes from a random start, wrapping."""
    dev = generator.device if generator is not None else device
    start = torch.randint(0, K, (m, 1), generator=generator, device=dev, dtype=torch.int16).to(device)
    return (start + torch.arange(M, device=device, dtype=torch.int16)) % K  # int16 throughout: no [m, M] int64


class VqadGrid(MultiResGrid):
    """VQ-AD training grid: logits C [m, M] per vertex and a codebook D [2^b, k] per level.

    Each vertex scores M = min(``cfg.candidates``, 2^b) codes (all 2^b when candidates is 0 or
    >= 2^b). With M < 2^b, the buffer ``cand_<l>`` [m, M] int16 names the codes a vertex's logits
    score: the M codes nearest (in feature space) to its current choice, re-chosen by
    ``refresh_candidates``, so the logits and their optimizer state do not grow with 2^b.

    Sparse levels (``cfg.sparse``, 3D, resolution >= ``cfg.sparse_min_resolution``) hold logits
    only for allocated vertices: ``rows_<l>`` [m] int32 maps a vertex id to its logits row (-1: not
    allocated, feature 0). They start unallocated (feature 0 everywhere, no bound on the field);
    ``allocate`` fits them to an occupancy mask, after which the finest one bounds the field.
    """

    def __init__(self, dims: int, cfg: VqadGridConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(dims, cfg.levels, cfg.base_resolution, cfg.max_resolution, cfg.features, cfg.combine)
        self.bits = cfg.bits
        K = 1 << cfg.bits
        self.candidates = K if cfg.candidates == 0 else min(cfg.candidates, K)  # M
        M = self.candidates
        self.hard = cfg.forward == "hard"
        self.reference = False  # True: use the dense wisp-style lookup (benchmarks and tests only)
        self.sparse = [cfg.sparse and dims == 3 and n >= cfg.sparse_min_resolution for n in self.resolutions]
        self.logits = nn.ParameterList(
            nn.Parameter(torch.randn(0 if sp else m, M, generator=generator) * 0.01)
            for m, sp in zip(self.vertex_counts, self.sparse, strict=True)
        )
        self.codebooks = nn.ParameterList(
            nn.Parameter(torch.randn(K, cfg.features, generator=generator) * cfg.init_std) for _ in self.vertex_counts
        )
        for level, (m, sp) in enumerate(zip(self.vertex_counts, self.sparse, strict=True)):
            if sp:
                self.register_buffer(f"rows_{level}", torch.full((m,), -1, dtype=torch.int32))
            if self.uses_candidates:
                self.register_buffer(
                    f"cand_{level}", spread_candidates(0 if sp else m, K, M, generator, torch.device("cpu"))
                )
        # No-grad lookups (the marcher's density pass, occupancy updates) reuse a level's table
        # until its logits, codebook or candidates change (in-place updates bump _version).
        self._tables: dict[int, tuple[tuple[Any, ...], Tensor]] = {}

    def tables_changed(self) -> None:
        """Drop the cached no-grad tables (the training loops call it after each optimizer step)."""
        self._tables.clear()

    @property
    def uses_candidates(self) -> bool:
        return self.candidates < (1 << self.bits)

    def level_candidates(self, level: int) -> Tensor | None:  # [rows, M] int16, None when M = 2^b
        return getattr(self, f"cand_{level}") if self.uses_candidates else None

    def support_level(self) -> int | None:
        """The finest allocated sparse level. An allocation is never empty (``allocate`` skips an
        empty mask, and the dilated mask of an occupied cell holds vertices), so a sparse level is
        allocated exactly when it has logits rows. Kept as a plain attribute, set where the
        allocation changes: a compiled lookup that read the logits' shapes here would be guarded on
        them and compiled again after every re-fit of the allocation."""
        return self.__dict__.get("_support_level")

    def _allocation_changed(self) -> None:
        done = [l for l in range(self.levels) if self.sparse[l] and self.logits[l].shape[0] > 0]
        self.__dict__["_support_level"] = done[-1] if done else None
        self._tables.clear()

    def level_table(self, level: int) -> Tensor:  # [rows + 1, k]
        """The level's feature table (``vqad_table``), cached for no-grad calls."""
        logits, cb, cand = self.logits[level], self.codebooks[level], self.level_candidates(level)
        if torch.is_grad_enabled() and (logits.requires_grad or cb.requires_grad):
            return vqad_table(logits, cb, cand, self.hard)
        tensors = (logits, cb) if cand is None else (logits, cb, cand)
        key = (*((t.data_ptr(), t._version, tuple(t.shape)) for t in tensors), self.hard)
        hit = self._tables.get(level)
        if hit is not None and hit[0] == key:
            return hit[1]
        with torch.no_grad():
            table = vqad_table(logits, cb, cand, self.hard)
        self._tables[level] = (key, table)
        return table

    def level_features(self, level: int, ids: Tensor, table: Tensor | None = None) -> Tensor:
        rows = self.level_rows(level)[ids] if self.sparse[level] else ids
        if self.reference:
            cand = self.level_candidates(level)
            return vqad_features_reference(self.logits[level], self.codebooks[level], rows, self.hard, cand)
        return gather_rows(self.level_table(level) if table is None else table, rows)

    def level_tables(self) -> list[Tensor | None]:
        """Every level's ``level_table`` (with gradient when grad is enabled, else the cached ones)."""
        return [self.level_table(level) for level in range(self.levels)]

    def fused_inputs(self, tables: list[Tensor | None], device: torch.device) -> list[Tensor]:
        """[each level's first row in the concatenated tables [L]], and with sparse levels [their
        ``rows_<l>`` maps concatenated [sum m] int64, each level's first entry in it [L], which
        levels are sparse [L] bool]; cached on the tables' sizes and the maps' storage and version."""
        sizes = tuple(t.shape[0] for t in tables if t is not None)
        assert len(sizes) == self.levels, "every VQ-AD level has a table"
        hit = self.__dict__.get("_table_offsets")
        if hit is None or hit[0] != (sizes, device):
            hit = ((sizes, device), _level_offsets(list(sizes), device))
            self.__dict__["_table_offsets"] = hit
        if not any(self.sparse):
            return [hit[1]]
        maps = [self.level_rows(l) for l in range(self.levels) if self.sparse[l]]
        key = (tuple((m.data_ptr(), m._version) for m in maps), device)
        rows_hit = self.__dict__.get("_rows_cache")
        if rows_hit is None or rows_hit[0] != key:
            counts = [m if sp else 0 for m, sp in zip(self.vertex_counts, self.sparse, strict=True)]
            cat = torch.cat([m.to(torch.int64) for m in maps]).to(device)
            rows_hit = (key, [cat, _level_offsets(counts, device), torch.tensor(self.sparse).to(device)])
            self.__dict__["_rows_cache"] = rows_hit
        return [hit[1], *rows_hit[1]]

    def fused_rows(
        self, ids: Tensor, tables: list[Tensor], inputs: list[Tensor]
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Each level's table has its zero row first; a sparse level maps vertex ids to rows by
        its ``rows_<l>`` (-1: that zero row)."""
        table_offsets, *maps = inputs
        rows = ids
        support = None
        if maps:
            cat, map_offsets, sparse = maps
            mapped = cat[(ids + map_offsets[:, None]).where(sparse[:, None], torch.zeros_like(ids))]
            rows = torch.where(sparse[:, None], mapped, ids)
            sl = self.support_level()
            if sl is not None:
                support = (rows[:, sl] >= 0).any(-1)
        return torch.cat(tables), rows + 1 + table_offsets[:, None], support

    def allocated_vertices(self) -> list[int]:
        """Rows of logits per level (all vertices for dense levels)."""
        return [int(c.shape[0]) for c in self.logits]

    def state_bytes(self) -> int:
        """Bytes of the trainable VQ-AD state: logits (with their gradient and Adam's two moments,
        4 copies) plus candidate lists and codebooks; what grows with b is the candidates' index only."""
        logits = sum(c.numel() * c.element_size() for c in self.logits) * 4
        cands = (self.level_candidates(l) for l in range(self.levels))
        cand = sum(c.numel() * c.element_size() for c in cands if c is not None)
        books = sum(d.numel() * d.element_size() for d in self.codebooks) * 4
        return logits + cand + books

    def _choices(self, level: int) -> Tensor:  # [rows] int64: the code each row's argmax selects
        a = self.logits[level].detach().argmax(-1)
        cand = self.level_candidates(level)
        return a if cand is None else cand.gather(1, a[:, None]).long()[:, 0]

    @torch.no_grad()
    def refresh_candidates(self, opt: torch.optim.Optimizer | None = None) -> None:
        """Re-choose every vertex's M candidate codes: the M codes nearest its current choice in
        the codebook (the choice first). Codes that stay keep their logits (and Adam moments, when
        ``opt`` holds the logits); new ones start at the row's lowest logit with zero moments, so the
        choice, and so the baked field, is unchanged. Nothing to do when M = 2^b."""
        if not self.uses_candidates:
            return
        for level in range(self.levels):
            logits, old = self.logits[level], self.level_candidates(level)
            assert old is not None
            if logits.shape[0] == 0:
                continue
            new = code_neighbours(self.codebooks[level], self._choices(level), self.candidates)
            state = opt.state.get(logits, {}) if opt is not None else {}
            moments = [v for v in state.values() if isinstance(v, Tensor) and v.shape == logits.shape]
            chunk = max(1, VQAD_CHUNK_ELEMS // (self.candidates * self.candidates))
            for s in range(0, logits.shape[0], chunk):
                eq = new[s : s + chunk, :, None] == old[s : s + chunk, None, :]  # [c, M, M]
                has, pos = eq.any(-1), eq.to(torch.uint8).argmax(-1).long()  # [c, M]
                c = logits[s : s + chunk]
                fill = c.min(-1, keepdim=True).values.expand_as(c)
                c.copy_(torch.where(has, c.gather(1, pos), fill))
                for v in moments:
                    vc = v[s : s + chunk]
                    vc.copy_(torch.where(has, vc.gather(1, pos), torch.zeros_like(vc)))
            old.copy_(new)

    @torch.no_grad()
    def allocate(
        self, occupied: Tensor, generator: torch.Generator | None = None
    ) -> dict[int, tuple[nn.Parameter, Tensor, Tensor]]:
        """Fit the sparse levels to an occupancy mask [R, R, R] (bool, x/y/z over the unit cube).

        A vertex is allocated when one of its cells touches an occupied cell. Vertices that stay
        keep their logits (and candidate codes); new ones start like a fresh grid's. Returns, per
        re-allocated level, (the old logits parameter, its kept rows, their new rows) so an
        optimizer can carry its state over. An empty mask changes nothing (an empty field would
        never recover).
        """
        moved: dict[int, tuple[nn.Parameter, Tensor, Tensor]] = {}
        if not bool(occupied.any()):
            return moved
        K, M = 1 << self.bits, self.candidates
        for level, n in enumerate(self.resolutions):
            if not self.sparse[level]:
                continue
            active = active_vertices(occupied.to(self.level_rows(level).device), n)
            old_rows = self.level_rows(level)
            new_rows = sparse_rows(active)
            old = self.logits[level]
            keep = (old_rows >= 0) & active
            old_idx, new_idx = old_rows[keep].long(), new_rows[keep].long()
            count = int(active.sum())
            dev = generator.device if generator is not None else old.device
            fresh = torch.randn(count, M, generator=generator, device=dev) * 0.01
            fresh = fresh.to(old.device, old.dtype)
            fresh[new_idx] = old[old_idx]
            self.logits[level] = nn.Parameter(fresh)
            self.register_buffer(f"rows_{level}", new_rows)
            cand = self.level_candidates(level)
            if cand is not None:
                new_cand = spread_candidates(count, K, M, generator, cand.device)
                new_cand[new_idx] = cand[old_idx]
                self.register_buffer(f"cand_{level}", new_cand)
            moved[level] = (old, old_idx, new_idx)
        self._allocation_changed()
        return moved

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Resize sparse levels to the saved allocation before loading (its size is part of the state)."""
        for level, sp in enumerate(self.sparse):
            rows = state_dict.get(f"{prefix}rows_{level}")
            logits = state_dict.get(f"{prefix}logits.{level}")
            if not sp or rows is None or logits is None:
                continue
            m, M = self.vertex_counts[level], self.logits[level].shape[1]
            n_alloc = int((rows >= 0).sum()) if rows.shape == (m,) else -1
            if rows.shape != (m,) or logits.shape != (n_alloc, M) or not torch.equal(rows, sparse_rows(rows >= 0)):
                raise ValueError(
                    f"sparse level {level}: rows {tuple(rows.shape)} / logits {tuple(logits.shape)} do not form "
                    f"an allocation of {m} vertices with {M} codes"
                )
            dev = self.logits[level].device
            self.logits[level] = nn.Parameter(torch.empty(n_alloc, M, device=dev))
            self.register_buffer(f"rows_{level}", torch.empty(m, dtype=torch.int32, device=dev))
            if self.uses_candidates:
                self.register_buffer(f"cand_{level}", torch.empty(n_alloc, M, dtype=torch.int16, device=dev))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._allocation_changed()

    def bake(self) -> VqGrid:
        """The inference grid: V = the code of argmax C per (allocated) vertex (b bits) and the codebooks D."""
        indices = [self._choices(l) for l in range(self.levels)]
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

    def level_features(self, level: int, ids: Tensor, table: Tensor | None = None) -> Tensor:
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

    def level_features(self, level: int, ids: Tensor, table: Tensor | None = None) -> Tensor:
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

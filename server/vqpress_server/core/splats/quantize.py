"""Compact3D post-hoc quantization of a Gaussian splat scene into a .vqp file.

Each Gaussian's color (SH DC, 3-d), SH rest (45-d at degree 3), scale (3-d, log space) and rotation
(4-d, unit quaternion with w >= 0) is replaced by the index of its nearest centroid in a per-attribute
k-means codebook (stored fp16, indices bit-packed at ceil(log2 K) bits). Positions and opacities are
not vector-quantized: the Gaussians are sorted in Morton order, positions are stored as B-bit fixed
point within the scene's box (B = 14 by default; as delta-coded 3B-bit Morton codes) or as floats, and opacities as
8-bit sigmoid values or fp16 logits. Every section is zstd-compressed where that pays; with zstd,
each codebook is numbered by use (most used entry first), the indices are stored with the
container's "backref" filter (a Gaussian's index often equals one of the last 255 Gaussians' in
Morton order: 46% of dc and 51% of sh indices on trained_lego30k_sh3) and the Morton deltas with
"bitlen" (bit lengths apart from the bits), each where it pays.

Measured on trained_lego_sh3 (71,616 Gaussians, SH 3), bits per Gaussian: positions (fixed16,
delta-coded Morton codes + zstd) 26.7 vs 48 raw and 30.9 for per-axis deltas; opacity uint8 + zstd
5.1 vs fp16 11.6, at no measurable PSNR cost (uint8 opacity alone: 66.9 dB vs the original; with the
default codebooks 38.870 dB for uint8 and 38.870 dB for fp16 on two test views), hence the uint8
default. The default preset (CPU, bench/bench_vqp_coding.py for the coding): trained_lego_sh3 keeps
60,874 Gaussians in 944,090 bytes (124.1 bits/Gaussian, 18.8x the .ply; 982,580 bytes with .vqp
version 1's coding), trained_lego30k_sh3 219,058 in 2,440,309 bytes (89.1 bits/Gaussian, 26.2x;
2,528,060 before); per section, dc / sh / scale / rot indices 10.4 / 9.5 / 13.8 / 10.9 bits and
positions 21.5 bits per Gaussian on the latter (BENCHMARKS §3b). See bench/bench_quality.py for the end-to-end numbers.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from vqpress.vqp import (
    EncodedSection,
    Section,
    VqpFormatError,
    assemble_vqp,
    bits_for,
    check_splats_layout,
    encode_section,
    position_bits,
    read_vqp,
    write_vqp,
)

from ..cpu_threads import cpu_map
from ..errors import FormatError, NonFiniteError, VqpressInputError
from ..progress import Progress
from ..vq.kmeans import MAX_ABS, KMeansResult, kmeans
from .model import GaussianSplats, num_sh_rest
from .morton import morton_codes, morton_decode
from .quantize_config import MAX_CODEBOOK, MAX_ITERS, PRESETS, QuantizeConfig

ATTRIBUTES = ("dc", "sh", "scale", "rot")  # quantized attributes, in the order they are clustered
ENCODE_THREADS = 4  # threads encoding sections while k-means runs (quantize_splats(encode_ahead=True))


@dataclass
class QuantizedSplats:
    """A quantized scene, Gaussians in Morton order: what goes into the .vqp file."""

    config: QuantizeConfig
    num_gaussians: int
    sh_degree: int
    box_min: list[float]  # [3] fixed-point box (world units); also recorded for float positions
    box_max: list[float]  # [3]
    means: np.ndarray  # fixed16: [N] uint64 Morton codes of the fixed-point coords; else [N, 3] fp16/fp32
    opacities: np.ndarray  # [N] uint8 (255 * sigmoid) or float16 (logit)
    codebooks: dict[str, np.ndarray]  # attr -> [K', ...] float16
    indices: dict[str, np.ndarray]  # attr -> [N] uint32
    order: np.ndarray  # [N] int64: Gaussian i of the file is Gaussian order[i] of the input
    timings_s: dict[str, float] = field(default_factory=dict)  # seconds per stage (quantize:<attr>, ...)
    inertia: dict[str, float] = field(default_factory=dict)  # k-means sum of squared distances per attr

    def manifest(self) -> dict[str, Any]:
        return {
            "num_gaussians": self.num_gaussians,
            "sh_degree": self.sh_degree,
            "codebook_sizes": {a: int(cb.shape[0]) for a, cb in self.codebooks.items()},
            "position": {
                "precision": self.config.position_precision,
                "box_min": self.box_min,
                "box_max": self.box_max,
                **({"bits": self.config.position_bits} if self.config.position_bits != 16 else {}),
            },
            "opacity": {"precision": self.config.opacity_precision},
            "order": "morton",
            "config": self.config.as_dict(),
        }

    encoder: SectionEncoder | None = field(default=None, init=False, repr=False, compare=False)
    # ^ the sections being encoded since their data was ready (quantize_splats(encode_ahead=True));
    #   not carried by dataclasses.replace, so a changed copy encodes its own sections

    def sections(self) -> list[Section]:
        """The file's sections. With zstd, each codebook is renumbered by how many Gaussians use its
        entries (most used first: the index and codebook streams grow more skewed), the indices
        are stored with the "backref" filter (a Gaussian's index often repeats one of the previous
        255 Gaussians', in Morton order) and the Morton deltas with "bitlen"; every Gaussian decodes
        to the same values as without."""
        out = geometry_sections(self.means, self.opacities, self.config)
        for attr in ATTRIBUTES:
            if attr in self.codebooks:
                out += attribute_sections(attr, self.codebooks[attr], self.indices[attr], self.config)
        return out

    def section_names(self) -> list[str]:
        """The names of ``sections()``, in file order, without building them."""
        names = ["means_morton" if self.means.ndim == 1 else "means", "opacities"]
        return names + [f"{a}_{part}" for a in ATTRIBUTES if a in self.codebooks for part in ("codebook", "idx")]

    def to_vqp_bytes(self) -> bytes:
        if self.encoder is None:
            return write_vqp("splats", self.manifest(), self.sections())
        return assemble_vqp("splats", self.manifest(), [self.encoder.result(n) for n in self.section_names()])


def geometry_sections(means: np.ndarray, opacities: np.ndarray, config: QuantizeConfig) -> list[Section]:
    """The positions' and opacities' sections (``PackedGeometry.means`` / ``.opacities``)."""
    entropy = config.entropy == "zstd"
    codec: Literal["zstd", "raw"] = "zstd" if entropy else "raw"
    if means.ndim == 1:
        layout = "bitlen" if entropy else "shuffle"  # with zstd: the deltas' bit lengths apart from their bits
        out = [Section("means_morton", means, codec=codec, filters=("delta", layout))]
    else:
        out = [Section("means", means, codec=codec, filters=("shuffle",))]
    return out + [Section("opacities", opacities, codec=codec, filters=("shuffle",))]


def attribute_sections(attr: str, codebook: np.ndarray, indices: np.ndarray, config: QuantizeConfig) -> list[Section]:
    """One attribute's codebook and index sections (with zstd: renumbered by use, indices "backref")."""
    entropy = config.entropy == "zstd"
    codec: Literal["zstd", "raw"] = "zstd" if entropy else "raw"
    filters: tuple[str, ...] = ()
    if entropy:
        codebook, indices = renumber_by_use(codebook, indices)
        filters = ("backref",)
    return [
        Section(f"{attr}_codebook", codebook, codec=codec, filters=("shuffle",)),
        Section(f"{attr}_idx", indices, bits=bits_for(codebook.shape[0]), codec=codec, filters=filters),
    ]


class SectionEncoder:
    """Encodes .vqp sections on threads as their data becomes ready, each exactly as ``write_vqp``
    would (``encode_section``): the positions while k-means runs, each attribute's sections while
    the next attribute's k-means runs. ``thread_s``: the encoding's thread-seconds so far."""

    def __init__(self, workers: int = ENCODE_THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(workers, os.cpu_count() or 1)), thread_name_prefix="vqp")
        self._futures: dict[str, Future[EncodedSection]] = {}
        self._lock = threading.Lock()
        self.thread_s = 0.0

    def submit(self, sections: list[Section]) -> None:
        for sec in sections:
            self._futures[sec.name] = self._pool.submit(self._encode, sec)

    def _encode(self, sec: Section) -> EncodedSection:
        t0 = time.perf_counter()
        out = encode_section(sec)
        with self._lock:
            self.thread_s += time.perf_counter() - t0
        return out

    def result(self, name: str) -> EncodedSection:
        return self._futures[name].result()

    def close(self, cancel: bool = False) -> None:
        """No more sections: the threads end once the submitted ones are done (or dropped: ``cancel``)."""
        self._pool.shutdown(wait=False, cancel_futures=cancel)


def renumber_by_use(codebook: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same codebook and indices with entries sorted by use, most used first (ties keep their
    order): ``new_cb[new_idx]`` equals ``codebook[indices]`` exactly. ``codebook`` [K, ...], ``indices`` [N]."""
    K = codebook.shape[0]
    assert indices.ndim == 1 and (indices.size == 0 or int(indices.max()) < K), (indices.shape, K)
    order = np.argsort(-np.bincount(indices, minlength=K), kind="stable")  # new entry j = old order[j]
    rank = np.empty(K, indices.dtype)
    rank[order] = np.arange(K, dtype=indices.dtype)
    return codebook[order], rank[indices]


def check_clusterable(
    splats: GaussianSplats, where: object | None = None, ranges: dict[str, tuple[float, float]] | None = None
) -> None:
    """Refuse values k-means cannot cluster (beyond ±1e30: their squares leave float32), naming the
    attribute and, when ``where`` (a file) is given, the file (``FormatError``). ``ranges``: the
    scene's ``value_ranges()`` when the caller has them (else they are computed: one pass)."""
    if ranges is None:
        ranges = splats.value_ranges()
    for name in ("sh0", "shN", "scales"):
        if name not in ranges:  # no values
            continue
        lo, hi = ranges[name]
        big = max(abs(lo), abs(hi))
        if big > MAX_ABS:
            t = getattr(splats, name).detach()
            n = int((t.abs() > MAX_ABS).sum())
            msg = (
                f"'{name}' has {n} values beyond ±{MAX_ABS:g} (largest {big:g}), more than k-means can cluster: "
                "the scene is corrupt; fix or drop those Gaussians"
            )
            raise FormatError(where, msg) if where is not None else VqpressInputError(msg)


def _flat_attributes(splats: GaussianSplats) -> dict[str, torch.Tensor]:
    """The vectors each codebook clusters, [N, d] float32."""
    N = splats.num_gaussians
    q = splats.normalized_quats().float()
    q = torch.where(q[:, :1] < 0, -q, q)  # q and -q are the same rotation: cluster one hemisphere
    out = {"dc": splats.sh0.reshape(N, 3).float()}
    if splats.shN.shape[1]:
        out["sh"] = splats.shN.reshape(N, -1).float()
    out["scale"] = splats.scales.float()
    out["rot"] = q
    return out


@dataclass
class PackedGeometry:
    """Positions and opacities as the .vqp stores them, Gaussians in Morton order."""

    order: torch.Tensor  # [N] int64: Gaussian i of the file is Gaussian order[i] of the input
    means: np.ndarray  # fixed16: [N] uint64 Morton codes of the fixed-point coords; else [N, 3] fp16/fp32
    opacities: np.ndarray  # [N] uint8 (255 * sigmoid) or float16 (logit)
    box_min: list[float]  # [3] the box of the fixed-point positions (world units)
    box_max: list[float]  # [3]


def pack_geometry(splats: GaussianSplats, config: QuantizeConfig) -> PackedGeometry:
    """Morton order (neighbours in space become neighbours in every stream), positions in
    ``config.position_precision`` / ``position_bits`` and opacities in ``opacity_precision``.
    Post-hoc quantization and QAT's encoder both store their scenes through here."""
    m = splats.means.detach().double()
    lo, hi = m.min(dim=0).values, m.max(dim=0).values
    if config.position_precision == "fixed16":
        top = float((1 << config.position_bits) - 1)
        span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        qpos = torch.round((m - lo) / span * top).clamp(0, top)
        codes = morton_codes(qpos, torch.zeros(3), torch.full((3,), top), bits=config.position_bits)
        order = torch.argsort(codes, stable=True)
        means_np = codes[order].cpu().numpy().astype(np.uint64)
    else:
        if config.position_precision == "fp16" and float(m.abs().max()) > 65504.0:
            raise VqpressInputError("positions exceed the fp16 range (65504); use position_precision='fixed16'")
        order = torch.argsort(morton_codes(splats.means.detach()), stable=True)
        dtype = np.float16 if config.position_precision == "fp16" else np.float32
        means_np = splats.means.detach()[order].float().cpu().numpy().astype(dtype)
    logits = splats.opacities.detach()[order]
    if config.opacity_precision == "uint8":
        opac = torch.round(torch.sigmoid(logits.double()) * 255).to(torch.uint8).cpu().numpy()
    else:
        opac = _to_fp16(logits)
    return PackedGeometry(order, means_np, opac, [float(v) for v in lo.tolist()], [float(v) for v in hi.tolist()])


def _to_fp16(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().clamp(-65504.0, 65504.0).to("cpu").numpy().astype(np.float16)


def _cluster_attributes(
    attrs: dict[str, torch.Tensor],  # attr -> [N, d] float32
    sizes: dict[str, int],  # attr -> codebook entries
    config: QuantizeConfig,
    weights: torch.Tensor | None,  # [N]
    progress: Progress | None,
    on_done: Callable[[str, KMeansResult], None] | None = None,
) -> dict[str, tuple[KMeansResult, float]]:  # attr -> (k-means result, seconds), in the order of attrs
    """k-means of every attribute. On the CPU with n >= 2 intra-op threads, the attributes run side
    by side on n threads of one intra-op thread each (the longest first), since k-means on the CPU
    is a long series of mid-sized passes that the second thread of an op barely speeds up and, on a
    loaded machine, keeps waiting (BENCHMARKS §2 CPU). Every op runs on one thread either way, so
    the result is the same bits as one after the other on one thread.

    Progress: stage ``quantize:<attr>`` of the attribute reporting, and the fraction of the whole
    clustering done, each attribute counting in proportion to its k-means cost (~ N * K * d).
    The first exception a progress call raises (``Cancelled``) stops the other attributes at their
    next report and is raised here. ``on_done(attr, result)`` is called as each attribute finishes
    (from the thread that ran it).
    """
    cost = {a: x.shape[1] * sizes[a] for a, x in attrs.items()}
    total = float(sum(cost.values()))
    frac = dict.fromkeys(attrs, 0.0)
    lock = threading.Lock()
    failed: list[BaseException] = []

    def report(attr: str, f: float, metrics: Any = None) -> None:
        if progress is None:
            return
        with lock:
            if failed:
                raise _Abandoned
            frac[attr] = max(frac[attr], min(max(f, 0.0), 1.0))
            try:
                progress(f"quantize:{attr}", sum(cost[a] * frac[a] for a in attrs) / total, dict(metrics or {}))
            except BaseException as exc:
                failed.append(exc)
                raise

    def one(attr: str) -> tuple[KMeansResult, float]:
        t0 = time.perf_counter()
        report(attr, 0.0)
        res = kmeans(
            attrs[attr].contiguous(),
            sizes[attr],
            iters=config.kmeans_iters,
            seed=config.seed,
            weights=weights,
            progress=lambda _stage, f, metrics: report(attr, f, metrics),
        )
        report(attr, 1.0, {"inertia": float(res.inertia)})
        seconds = time.perf_counter() - t0
        if on_done is not None:
            on_done(attr, res)
        return res, seconds

    longest_first = sorted(attrs, key=lambda a: -cost[a])
    device = next(iter(attrs.values())).device
    try:
        done = dict(zip(longest_first, cpu_map(one, longest_first, device), strict=True))
    except _Abandoned:
        raise failed[0] from None
    return {a: done[a] for a in attrs}


class _Abandoned(Exception):
    """Raised in the other k-means threads once a progress call has raised."""


def quantize_splats(
    splats: GaussianSplats,
    config: QuantizeConfig = QuantizeConfig(),
    progress: Progress | None = None,
    *,
    weights: torch.Tensor | None = None,  # [N] per-Gaussian k-means weights (``importance``), or None
    encode_ahead: bool = False,
) -> QuantizedSplats:
    """Quantize a (repaired, finite) scene. k-means runs on the scene's device.

    ``weights``: how much each Gaussian counts in its codebooks' k-means (see ``importance.py``);
    None weighs every Gaussian alike. With weights, ``config.prune`` drops that fraction of the
    Gaussians first, the least weighted ones (``order`` then maps the kept ones to the input).

    ``encode_ahead``: encode the .vqp sections on threads as soon as their data is ready (the
    positions during k-means, each attribute after its k-means), so that ``to_vqp_bytes`` only
    waits for the last; the bytes are the same.

    Raises ``VqpressInputError`` for an empty scene (there is nothing to compress: no .vqp is written)
    and ``NonFiniteError`` when a value is not finite (repair it first with ``load_scene``).
    """
    config.validate()
    splats.check_shapes()
    N = splats.num_gaussians
    if N == 0:
        raise VqpressInputError("the scene has no Gaussians; nothing to compress")
    ranges = splats.value_ranges()  # one pass over the scene, one transfer to the host
    for name, (lo, hi) in ranges.items():
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise NonFiniteError(f"'{name}' has non-finite values; repair the scene first (load_scene)")
    check_clusterable(splats, ranges=ranges)
    if weights is not None:
        if weights.shape != (N,):
            raise VqpressInputError(f"weights must have shape ({N},) (one per Gaussian), got {tuple(weights.shape)}")
        weights = weights.detach().to(splats.device, torch.float32)
        w_lo, w_hi = torch.stack(torch.aminmax(weights)).tolist()
        if not (math.isfinite(w_lo) and math.isfinite(w_hi)) or w_lo < 0:
            raise VqpressInputError("weights must be finite and non-negative")
        if not w_hi > 0:
            weights = None  # nothing to prefer: plain k-means
    if config.sh_degree is not None and config.sh_degree < splats.sh_degree:
        splats = splats.with_sh_degree(config.sh_degree)
    timings: dict[str, float] = {}

    kept = None  # [N'] indices of the Gaussians that stay, when pruning drops some
    if config.prune > 0 and weights is not None and N > 1:
        # The least important Gaussians go first (a stable sort: ties keep file order).
        drop = min(int(config.prune * N), N - 1)
        kept = torch.sort(torch.argsort(weights, stable=True)[drop:]).values
        splats, weights, N = splats.index(kept), weights[kept], int(kept.numel())

    encoder = SectionEncoder() if encode_ahead else None
    try:
        # Morton order: neighbours in space become neighbours in every stream.
        t0 = time.perf_counter()
        geo = pack_geometry(splats, config)
        if encoder is not None:
            encoder.submit(geometry_sections(geo.means, geo.opacities, config))
        order = geo.order
        splats = splats.index(order)
        if weights is not None:
            weights = weights[order]
        timings["sort"] = time.perf_counter() - t0

        attrs = _flat_attributes(splats)
        sizes = {
            "dc": config.dc_codebook,
            "sh": config.sh_codebook,
            "scale": config.scale_codebook,
            "rot": config.rot_codebook,
        }
        host: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # attr -> (fp16 codebook, uint32 indices)

        def finished(attr: str, res: KMeansResult) -> None:
            cb = _to_fp16(res.centroids)
            if attr == "sh":
                cb = cb.reshape(cb.shape[0], -1, 3)
            host[attr] = cb, res.labels.to("cpu").numpy().astype(np.uint32)
            if encoder is not None:
                encoder.submit(attribute_sections(attr, *host[attr], config))

        t0 = time.perf_counter()
        results = _cluster_attributes(attrs, sizes, config, weights, progress, on_done=finished)
        timings["kmeans"] = time.perf_counter() - t0
    except BaseException:
        if encoder is not None:
            encoder.close(cancel=True)
        raise
    if encoder is not None:
        encoder.close()
    codebooks: dict[str, np.ndarray] = {}
    indices: dict[str, np.ndarray] = {}
    inertia: dict[str, float] = {}
    for attr, (res, seconds) in results.items():
        codebooks[attr], indices[attr] = host[attr]
        inertia[attr] = float(res.inertia)
        timings[f"quantize:{attr}"] = seconds

    out = QuantizedSplats(
        config=config,
        num_gaussians=N,
        sh_degree=splats.sh_degree,
        box_min=geo.box_min,
        box_max=geo.box_max,
        means=geo.means,
        opacities=geo.opacities,
        codebooks=codebooks,
        indices=indices,
        order=(order if kept is None else kept[order]).cpu().numpy(),
        timings_s=timings,
        inertia=inertia,
    )
    out.encoder = encoder
    return out


def decode_vqp_splats(data: bytes, name: str = "<bytes>", device: torch.device | str = "cpu") -> GaussianSplats:
    """Decode .vqp splat bytes with torch (the twin of the numpy ``vqpress.vqp.decode_splats``).

    Raises ``FormatError`` when the bytes are not a valid splats .vqp file.
    """
    try:
        vqp = read_vqp(data, name=name)
        n, degree = check_splats_layout(vqp)
    except VqpFormatError as exc:
        raise FormatError(name, str(exc).removeprefix(f"{name}: ")) from None
    s = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in vqp.sections.items() if v.dtype != np.uint64}
    pos = vqp.manifest["position"]

    if "means_morton" in vqp.sections:
        q = morton_decode(torch.from_numpy(vqp.sections["means_morton"].astype(np.int64))).double()
        lo = torch.tensor(pos["box_min"], dtype=torch.float64)
        hi = torch.tensor(pos["box_max"], dtype=torch.float64)
        top = float((1 << position_bits(vqp.manifest)) - 1)
        means = (lo + q * ((hi - lo) / top)).float()
    else:
        means = s["means"].float()
    op = s["opacities"]
    if op.dtype == torch.uint8:
        a = torch.clamp(op.double() / 255.0, 0.5 / 255.0, 1.0 - 0.5 / 255.0)
        opacities = torch.log(a / (1.0 - a)).float()
    else:
        opacities = op.float()

    def lookup(attr: str) -> torch.Tensor:
        return s[f"{attr}_codebook"].float()[s[f"{attr}_idx"].long()]

    n_rest = num_sh_rest(degree)
    sh0 = lookup("dc").reshape(n, 1, 3)
    shN = lookup("sh").reshape(n, n_rest, 3) if n_rest else torch.zeros(n, 0, 3)
    quats = lookup("rot")
    norm = quats.norm(dim=1, keepdim=True)
    quats = torch.where(norm > 0, quats / norm.clamp_min(1e-12), torch.tensor([1.0, 0, 0, 0]))
    out = GaussianSplats(means, quats, lookup("scale"), opacities, sh0, shN, meta={"source_format": "vqp"})
    return out.to(device)


__all__ = [
    "MAX_CODEBOOK",
    "MAX_ITERS",
    "PRESETS",
    "QuantizeConfig",
    "QuantizedSplats",
    "check_clusterable",
    "decode_vqp_splats",
    "quantize_splats",
]

"""Fields to and from .vqp (kind "field"), and the size/quality report.

Sections (all float arrays fp16):
- VQ grids (baked VQ-AD, kmVQ): ``grid.<l>.indices`` bit-packed at ``bits`` bits, ``grid.<l>.codebook`` [K, k].
  A sparse level (manifest ``grid.sparse[l]``) adds ``grid.<l>.active``, one bit per vertex in
  vertex-id order, and its indices are those of the allocated vertices in that order; the others
  read feature 0, and outside the allocation of level ``grid.support`` the field's density is 0.
- dense and hash grids: ``grid.<l>.table`` [rows, k].
- low-rank grids (LRA): ``grid.<l>.coeffs`` [m, r], ``grid.<l>.basis`` [r, k], ``grid.<l>.mean`` [k].
- decoder: ``mlp.<i>.weight`` / ``mlp.<i>.bias`` (and ``color_mlp.<i>.*`` in 3D), the Linear layers in order,
  ReLU between them; 2D ends with a sigmoid.
- 3D fields trained with the occupancy-grid marcher: ``occupancy``, one bit per cell of the grid the
  training marched (x-major over the unit cube, manifest ``occupancy.resolution`` R per axis); a
  renderer marches only those cells. Files without it have one estimated from the density.
The manifest holds the field config, the grid geometry and storage, and the layer names in order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from vqpress.vqp import Section, VqpFormatError, read_vqp, write_vqp

from ..errors import FormatError
from .config import DenseGridConfig, HashGridConfig, field_config_from_dict, field_config_to_dict
from .grid import DenseGrid, LowRankGrid, MultiResGrid, VqadGrid, VqGrid
from .manifest import FIELD_FORMAT
from .model import NeuralField

MAX_OCCUPANCY_RESOLUTION = 512  # cells per axis of a stored occupancy grid (the trainer's own bound)


def _f16(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy().astype(np.float16)


def _linear(model: NeuralField, name: str) -> nn.Linear:
    """The decoder layer ``name`` (a manifest names them: untrusted when decoding)."""
    try:
        m = model.get_submodule(name) if isinstance(name, str) else None
    except AttributeError:
        m = None
    if not isinstance(m, nn.Linear):
        raise ValueError(f"layer {str(name)[:80]!r} is not a Linear layer of this field's decoder")
    return m


def _linear_names(seq: nn.Sequential, prefix: str) -> list[str]:
    return [f"{prefix}.{i}" for i, m in enumerate(seq) if isinstance(m, nn.Linear)]


def encode_field(model: NeuralField, extra: dict[str, Any] | None = None) -> bytes:
    """Serialize a field; a VQ-AD training grid is baked first (argmax of its logits).

    ``extra`` (JSON-able) is stored in the manifest, e.g. the image size or the scene box.
    """
    grid: MultiResGrid = model.grid
    if isinstance(grid, VqadGrid):
        grid = grid.bake()
    sections: list[Section] = []
    geo = grid.geometry()
    if isinstance(grid, VqGrid):
        geo["storage"] = "vq"
        geo["bits"] = grid.bits
        geo["sparse"] = list(grid.sparse)
        geo["support"] = grid.support_level()
        for l in range(grid.levels):
            mask = grid.level_mask(l)
            if mask is not None:
                sections.append(Section(f"grid.{l}.active", mask.cpu().numpy().astype(np.uint8), bits=1))
            v = grid.level_indices(l).cpu().numpy().astype(np.uint16 if grid.bits <= 16 else np.uint32)
            sections.append(Section(f"grid.{l}.indices", v, bits=grid.bits))
            sections.append(Section(f"grid.{l}.codebook", _f16(grid.level_codebook(l))))
    elif isinstance(grid, LowRankGrid):
        geo["storage"] = "lowrank"
        for l in range(grid.levels):
            for part in ("coeffs", "basis", "mean"):
                sections.append(Section(f"grid.{l}.{part}", _f16(getattr(grid, f"{part}_{l}"))))
    elif isinstance(grid, DenseGrid):
        geo["storage"] = "table"
        for l, t in enumerate(grid.tables):
            sections.append(Section(f"grid.{l}.table", _f16(t)))
    else:
        raise TypeError(f"cannot serialize grid {type(grid).__name__}")
    layers = {"mlp": _linear_names(model.mlp, "mlp")}
    if model.color_mlp is not None:
        layers["color_mlp"] = _linear_names(model.color_mlp, "color_mlp")
    for names in layers.values():
        for name in names:
            lin = _linear(model, name)
            sections.append(Section(f"{name}.weight", _f16(lin.weight)))
            sections.append(Section(f"{name}.bias", _f16(lin.bias)))
    mask = model.occupancy_mask
    if mask is not None and model.config.dims == 3:
        sections.append(Section("occupancy", mask.reshape(-1).cpu().numpy().astype(np.uint8), bits=1))
    manifest: dict[str, Any] = {
        "format": FIELD_FORMAT,
        "config": field_config_to_dict(model.config),
        "grid": geo,
        "layers": layers,
        "extra": extra or {},
    }
    if mask is not None and model.config.dims == 3:
        manifest["occupancy"] = {"resolution": int(mask.shape[0])}
    return write_vqp("field", manifest, sections)


def decode_field(
    data: bytes, name: str = "<bytes>", device: torch.device | str = "cpu"
) -> tuple[NeuralField, dict[str, Any]]:
    """Load a field .vqp back into torch: (field with an inference grid, manifest extra)."""
    try:
        vqp = read_vqp(data, name)
    except VqpFormatError as e:
        raise FormatError(name, str(e)) from None
    if vqp.kind != "field" or vqp.manifest.get("format") != FIELD_FORMAT:
        raise FormatError(name, f"not a vqpress field (kind {vqp.kind!r}, format {vqp.manifest.get('format')!r})")
    try:
        return _build(vqp.manifest, vqp.sections, device)
    except (KeyError, TypeError, ValueError, AssertionError, RuntimeError) as e:
        raise FormatError(name, f"inconsistent field file: {e}") from None


def _build(
    man: dict[str, Any], sec: dict[str, np.ndarray], device: torch.device | str
) -> tuple[NeuralField, dict[str, Any]]:
    cfg = field_config_from_dict(man["config"])
    geo = man["grid"]
    dims, res, combine = int(geo["dims"]), [int(n) for n in geo["resolutions"]], geo["combine"]
    L = len(res)

    def t(key: str) -> torch.Tensor:
        return torch.from_numpy(np.asarray(sec[key], dtype=np.float32))

    grid: MultiResGrid
    if geo["storage"] == "vq":
        bits = int(geo["bits"])
        sparse = [bool(v) for v in geo.get("sparse", [False] * L)]
        if len(sparse) != L:
            raise ValueError(f"grid.sparse has {len(sparse)} entries for {L} levels")
        support = geo.get("support")
        indices = [torch.from_numpy(sec[f"grid.{l}.indices"].astype(np.int64)) for l in range(L)]
        codebooks = [t(f"grid.{l}.codebook") for l in range(L)]
        for l in range(L):
            if indices[l].numel() and int(indices[l].max()) >= codebooks[l].shape[0]:
                raise ValueError(f"level {l} has indices beyond its {codebooks[l].shape[0]}-entry codebook")
        active = [
            torch.from_numpy(sec[f"grid.{l}.active"].astype(bool)).reshape(-1) if sp else None
            for l, sp in enumerate(sparse)
        ]
        for l, a in enumerate(active):
            if a is not None and (a.shape[0] != res[l] ** dims or int(a.sum()) != indices[l].shape[0]):
                raise ValueError(f"level {l}: {indices[l].shape[0]} indices for {int(a.sum())} allocated vertices")
        if support is not None and not (isinstance(support, int) and 0 <= support < L and sparse[support]):
            raise ValueError(f"grid.support {support!r} is not a sparse level")
        grid = VqGrid(dims, res, combine, indices, codebooks, bits, active, support)
    elif geo["storage"] == "lowrank":
        grid = LowRankGrid(
            dims,
            res,
            combine,
            [t(f"grid.{l}.coeffs") for l in range(L)],
            [t(f"grid.{l}.basis") for l in range(L)],
            [t(f"grid.{l}.mean") for l in range(L)],
        )
    elif geo["storage"] == "table":
        if not isinstance(cfg.grid, DenseGridConfig | HashGridConfig):
            raise ValueError("table storage needs a dense or hash grid config")
        grid = DenseGrid(dims, cfg.grid)
        with torch.no_grad():
            for l, p in enumerate(grid.tables):
                p.copy_(t(f"grid.{l}.table"))
    else:
        raise ValueError(f"unknown grid storage {geo['storage']!r}")
    if grid.resolutions != res:
        raise ValueError(f"grid resolutions {res} do not match the config's {grid.resolutions}")
    model = NeuralField(cfg, grid=grid)
    with torch.no_grad():
        for names in man["layers"].values():
            for name in names:
                lin = _linear(model, name)
                lin.weight.copy_(t(f"{name}.weight"))
                lin.bias.copy_(t(f"{name}.bias"))
    occ = man.get("occupancy")
    if occ is not None:
        r = occ.get("resolution") if isinstance(occ, dict) else None
        if dims != 3 or isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= MAX_OCCUPANCY_RESOLUTION:
            raise ValueError(f"occupancy.resolution must be an integer in [1, {MAX_OCCUPANCY_RESOLUTION}] (3D fields)")
        bits = np.asarray(sec["occupancy"]).reshape(-1)
        if bits.shape[0] != r**3:
            raise ValueError(f"occupancy holds {bits.shape[0]} cells, not {r}^3")
        model.occupancy_mask = torch.from_numpy(bits.astype(bool)).reshape(r, r, r)
    return model.to(device).eval(), dict(man.get("extra", {}))


@dataclass
class FieldReport:
    """Size and quality of one encoded field. Bytes are those of the .vqp actually written."""

    method: str  # e.g. "vqad b=4", "dense", "hash", "kmvq b=4", "lra r=2"
    total_bytes: int  # whole .vqp file
    grid_bytes: int  # sum of the grid.* sections as stored
    section_bytes: dict[str, int]  # stored bytes per section
    vertices: int  # grid vertices over all levels
    bits_per_vertex: float  # grid_bytes * 8 / vertices
    psnr: float | None = None  # dB, against the reference image(s)
    ssim: float | None = None
    train_time_s: float | None = None
    peak_memory_bytes: int | None = None  # CUDA peak during training
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def field_report(method: str, data: bytes, model: NeuralField, **metrics: Any) -> FieldReport:
    """Measure an encoded field (``data`` from encode_field); metrics fill psnr, ssim, times."""
    vqp = read_vqp(data)
    grid_bytes = sum(b for k, b in vqp.section_bytes.items() if k.startswith("grid."))
    vertices = sum(model.grid.vertex_counts)
    return FieldReport(
        method=method,
        total_bytes=len(data),
        grid_bytes=grid_bytes,
        section_bytes=dict(vqp.section_bytes),
        vertices=vertices,
        bits_per_vertex=grid_bytes * 8 / vertices,
        **metrics,
    )

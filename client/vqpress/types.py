"""The client's public data types: numpy arrays and dataclasses, never protobuf messages."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from .errors import invalid

MAX_SH_DEGREE = 3
MAX_IMAGE_SIDE = 8192  # largest camera width or height the service accepts (pixels)
MAX_CODEBOOK = 1 << 23  # largest codebook size (entries): the server's k-means limit (core/budgets.py)


def num_sh_rest(degree: int) -> int:
    """Number of non-DC SH coefficients per channel for an SH degree."""
    return (degree + 1) ** 2 - 1


# -- scenes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Splats:
    """A Gaussian splat scene as float32 numpy arrays, in the parameterization 3DGS trains in.

    Shapes and dtypes are checked on construction (every array must be float32: convert with
    ``Splats.from_arrays`` or ``.astype(np.float32)``), so a bad tensor fails here, not on the server.
    """

    means: np.ndarray  # [N, 3] world space
    quats: np.ndarray  # [N, 4] (w, x, y, z), not necessarily normalized
    scales: np.ndarray  # [N, 3] log of the standard deviations
    opacities: np.ndarray  # [N] logit of the opacity
    sh0: np.ndarray  # [N, 1, 3] DC spherical-harmonic coefficient per channel
    shN: np.ndarray  # [N, (d+1)^2 - 1, 3] the remaining SH coefficients, d in 0..3

    def __post_init__(self) -> None:
        for f in fields(self):
            a = getattr(self, f.name)
            if not isinstance(a, np.ndarray):
                raise invalid(f"Splats.{f.name} must be a numpy array, got {type(a).__name__}")
            if a.dtype != np.float32:
                raise invalid(f"Splats.{f.name} must be float32, got {a.dtype} (use .astype(np.float32))")
        N = self.means.shape[0] if self.means.ndim == 2 else -1
        expected = {
            "means": (N, 3),
            "quats": (N, 4),
            "scales": (N, 3),
            "opacities": (N,),
            "sh0": (N, 1, 3),
        }
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                want = "[" + ", ".join("N" if s == N else str(s) for s in shape) + "]"
                raise invalid(f"Splats.{name} has shape {list(got)}, expected {want} with N = {N}")
        rest = self.shN.shape
        valid_rest = [num_sh_rest(d) for d in range(MAX_SH_DEGREE + 1)]
        if len(rest) != 3 or rest[0] != N or rest[2] != 3 or rest[1] not in valid_rest:
            raise invalid(
                f"Splats.shN has shape {list(rest)}, expected [N, R, 3] with N = {N} and R in {valid_rest} "
                "(SH degree 0..3)"
            )

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> Splats:
        """Splats from a mapping of array-likes (any float dtype; cast to contiguous float32).

        A missing ``shN`` means SH degree 0.
        """
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in arrays and n != "shN"]
        if missing:
            raise invalid(f"Splats.from_arrays: missing arrays {missing}")
        vals = {n: np.ascontiguousarray(arrays[n], dtype=np.float32) for n in names if n in arrays}
        if "shN" not in vals:
            vals["shN"] = np.zeros((vals["means"].shape[0], 0, 3), np.float32)
        return cls(**vals)

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    def __len__(self) -> int:
        return self.num_gaussians

    @property
    def sh_degree(self) -> int:
        return int(round(math.sqrt(self.shN.shape[1] + 1))) - 1

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays().values())


# -- cameras -----------------------------------------------------------------------------


def _matrix(value: Any, shape: tuple[int, int], where: str) -> np.ndarray:
    try:
        a = np.array(value, dtype=np.float64)  # a copy: a Camera does not share the caller's array
    except (TypeError, ValueError):
        raise invalid(f"{where} must be a {shape[0]}x{shape[1]} matrix of numbers") from None
    if a.shape == (shape[0] * shape[1],):
        a = a.reshape(shape)
    if a.shape != shape:
        raise invalid(f"{where} has shape {list(a.shape)}, expected {list(shape)}")
    if not np.isfinite(a).all():
        raise invalid(f"{where} contains NaN or inf")
    return a


def _side(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise invalid(f"{where} must be an integer, got {value!r}")
    if not 1 <= int(value) <= MAX_IMAGE_SIDE:
        raise invalid(f"{where} = {value} is out of range [1, {MAX_IMAGE_SIDE}] pixels")
    return int(value)


def _check_camera(viewmat: Any, K: Any, width: Any, height: Any, where: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Validated (viewmat [4, 4], K [3, 3], width, height); errors are prefixed with ``where``."""
    v = _matrix(viewmat, (4, 4), f"{where}: viewmat")
    k = _matrix(K, (3, 3), f"{where}: K")
    w = _side(width, f"{where}: width")
    h = _side(height, f"{where}: height")
    if not np.allclose(v[3], [0.0, 0.0, 0.0, 1.0]):
        raise invalid(f"{where}: viewmat's last row must be [0, 0, 0, 1], got {v[3].tolist()}")
    if not (k[0, 0] > 0 and k[1, 1] > 0):
        raise invalid(f"{where}: K's focal lengths must be positive, got fx={k[0, 0]}, fy={k[1, 1]}")
    v.flags.writeable = False  # a Camera is immutable, its matrices too
    k.flags.writeable = False
    return v, k, w, h


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: world-to-camera ``viewmat`` in OpenCV axes (x right, y down, z forward),
    intrinsics ``K`` in pixels, and the image size in pixels. Checked on construction."""

    viewmat: np.ndarray  # [4, 4] float64 world-to-camera
    K: np.ndarray  # [3, 3] float64 intrinsics (fx, fy, cx, cy in pixels)
    width: int  # pixels
    height: int  # pixels
    name: str = ""

    def __post_init__(self) -> None:
        where = f"camera {self.name!r}" if self.name else "camera"
        viewmat, K, width, height = _check_camera(self.viewmat, self.K, self.width, self.height, where)
        object.__setattr__(self, "viewmat", viewmat)
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "height", height)

    def to_dict(self) -> dict[str, Any]:
        """The service's camera dict: row-major ``viewmat`` (16 floats) and ``K`` (9 floats)."""
        return {
            "viewmat": self.viewmat.reshape(-1).tolist(),
            "K": self.K.reshape(-1).tolist(),
            "width": self.width,
            "height": self.height,
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "camera") -> Camera:
        """A camera from a dict with ``viewmat`` (4x4 or 16), ``K`` (3x3 or 9), ``width``, ``height``
        and optionally ``name`` (or ``file``)."""
        if not isinstance(d, Mapping):
            raise invalid(f"{where} must be an object, got {type(d).__name__}")
        missing = [k for k in ("viewmat", "K", "width", "height") if k not in d]
        if missing:
            raise invalid(f"{where} lacks {missing}")
        name = d.get("name", d.get("file", ""))
        if not isinstance(name, str):
            raise invalid(f"{where}: name must be a string")
        viewmat, K, width, height = _check_camera(d["viewmat"], d["K"], d["width"], d["height"], where)
        return cls(viewmat=viewmat, K=K, width=width, height=height, name=name)


Background = tuple[float, float, float]


def _background(value: Any, where: str) -> Background:
    try:
        bg = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise invalid(f"{where} must be 3 numbers in [0, 1]") from None
    if bg.shape != (3,) or not np.isfinite(bg).all() or (bg < 0).any() or (bg > 1).any():
        raise invalid(f"{where} must be 3 numbers in [0, 1], got {value!r}")
    return (float(bg[0]), float(bg[1]), float(bg[2]))


def load_cameras_json(path: str | Path, split: str | None = None) -> tuple[list[Camera], Background | None]:
    """Cameras and background from a cameras.json file.

    The file is ``{"cameras": [{"viewmat", "K", "width", "height", "file"?, "name"?, "split"?}, ...],
    "background": [r, g, b]?}`` (a bare list of cameras is accepted too). With ``split`` only the
    cameras whose ``split`` equals it are returned. The input is untrusted: every problem raises a
    VqpressError (INVALID_ARGUMENT) that names the file, the camera and the field.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise invalid(f"{path}: cannot read cameras file: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise invalid(f"{path}: not a JSON file: {e}") from None
    background = None
    if isinstance(doc, list):
        cams = doc
    elif isinstance(doc, dict) and isinstance(doc.get("cameras"), list):
        cams = doc["cameras"]
        if doc.get("background") is not None:
            background = _background(doc["background"], f"{path}: background")
    else:
        raise invalid(f'{path}: expected {{"cameras": [...]}} or a list of cameras')
    out = []
    for i, c in enumerate(cams):
        where = f"{path}: cameras[{i}]"
        if split is not None and (not isinstance(c, dict) or c.get("split") != split):
            continue
        out.append(Camera.from_dict(c, where))
    if not out:
        have = sorted({str(c.get("split")) for c in cams if isinstance(c, dict)})
        what = f"no cameras with split {split!r} (splits present: {have})" if split is not None else "no cameras"
        raise invalid(f"{path}: {what}")
    return out, background


# -- configuration -----------------------------------------------------------------------

PRESETS = ("default", "high_ratio", "high_quality")
POSITION_PRECISIONS = ("fixed16", "fp16", "fp32")
OPACITY_PRECISIONS = ("uint8", "fp16")
ENTROPY = ("zstd", "none")
IMPORTANCES = ("views", "none")


@dataclass(frozen=True)
class ExportOptions:
    """What an export to a scene format keeps, and how .spz and .sog are written (not for "vqp").

    Filters run in this order: drop_non_finite, the box, min_opacity, sh_degree. The defaults keep
    everything and write a .spz in the scene's own axes (see the README's format section).
    """

    sh_degree: int | None = None  # keep SH bands up to this degree (0..3); None keeps the scene's
    min_opacity: float = 0.0  # drop Gaussians whose opacity sigmoid(logit) is below this (0..1)
    box_min: tuple[float, float, float] | None = None  # keep Gaussians whose centre is in [box_min, box_max]
    box_max: tuple[float, float, float] | None = None  # (both corners or neither)
    drop_non_finite: bool = False  # drop Gaussians with a NaN/inf value instead of repairing them
    spz_axes: str = "ply"  # "ply": the scene's own axes (splat-transform, Spark); "rub": converted to RUB
    sog_sh_palette: int = 0  # SH palette entries of a .sog, 1..65536; 0 = by scene size

    def validate(self) -> ExportOptions:
        if self.sh_degree is not None and self.sh_degree not in (0, 1, 2, 3):
            raise invalid(f"ExportOptions.sh_degree must be 0..3, got {self.sh_degree!r}")
        if not 0.0 <= float(self.min_opacity) <= 1.0:
            raise invalid(f"ExportOptions.min_opacity must be an opacity in 0..1, got {self.min_opacity!r}")
        if (self.box_min is None) != (self.box_max is None):
            raise invalid("ExportOptions: a crop box needs both box_min and box_max")
        for c in (self.box_min, self.box_max):
            if c is not None and len(c) != 3:
                raise invalid(f"ExportOptions: a box corner is 3 numbers, got {c!r}")
        if self.spz_axes not in ("ply", "rub"):
            raise invalid(f"ExportOptions.spz_axes must be 'ply' or 'rub', got {self.spz_axes!r}")
        if not 0 <= int(self.sog_sh_palette) <= 65536:
            raise invalid(f"ExportOptions.sog_sh_palette must be in 0..65536, got {self.sog_sh_palette!r}")
        return self


@dataclass(frozen=True)
class QuantizeConfig:
    """Compression settings. Every field is optional: None means the server's default (or the preset's).

    Field meanings mirror the server's ``QuantizeConfig``; codebook sizes are entries (the server's
    defaults are 4096 / 4096 / 16384 / 4096, k-means weighted by the scene's views, 15% pruned,
    14-bit positions).
    """

    preset: str | None = None  # "default" | "high_ratio" | "high_quality"; base values for the fields below
    dc_codebook: int | None = None  # entries in the SH DC (color) codebook
    sh_codebook: int | None = None  # entries in the SH rest codebook
    scale_codebook: int | None = None  # entries in the log-scale codebook
    rot_codebook: int | None = None  # entries in the rotation codebook
    kmeans_iters: int | None = None  # Lloyd iterations per codebook, 0..1000
    seed: int | None = None  # k-means seed (same seed, same input -> same bytes)
    position_precision: str | None = None  # "fixed16" (16 bits per axis in the scene's box) | "fp16" | "fp32"
    opacity_precision: str | None = None  # "uint8" (round(255 * sigmoid)) | "fp16" (the logit)
    entropy: str | None = None  # "zstd" | "none"
    sh_degree: int | None = None  # keep SH up to this degree (0..3); None keeps the input's
    strict: bool | None = None  # fail on non-finite input instead of repairing it
    importance: str | None = None  # "views" (weigh k-means by each Gaussian's blending weight) | "none"
    position_bits: int | None = None  # bits per axis of fixed16 positions, 8..16 [14]
    prune: float | None = None  # fraction of the least important Gaussians dropped, 0..0.9 [0.15]

    def validate(self) -> QuantizeConfig:
        """Check types and obvious ranges (the server checks its own limits too); returns self."""

        def integer(name: str, lo: int, hi: int) -> None:
            v = getattr(self, name)
            if v is None:
                return
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise invalid(f"QuantizeConfig.{name} must be an integer, got {v!r}")
            if not lo <= v <= hi:
                raise invalid(f"QuantizeConfig.{name} = {v} is out of range [{lo}, {hi}]")

        def choice(name: str, allowed: tuple[str, ...]) -> None:
            v = getattr(self, name)
            if v is not None and v not in allowed:
                raise invalid(f"QuantizeConfig.{name} = {v!r}; choose one of {list(allowed)}")

        for name in ("dc_codebook", "sh_codebook", "scale_codebook", "rot_codebook"):
            integer(name, 1, MAX_CODEBOOK)
        integer("kmeans_iters", 0, 1000)
        integer("seed", 0, 2**63 - 1)
        integer("sh_degree", 0, MAX_SH_DEGREE)
        choice("preset", PRESETS)
        choice("position_precision", POSITION_PRECISIONS)
        choice("opacity_precision", OPACITY_PRECISIONS)
        choice("entropy", ENTROPY)
        choice("importance", IMPORTANCES)
        integer("position_bits", 8, 16)
        if self.prune is not None and (
            isinstance(self.prune, bool) or not isinstance(self.prune, (int, float)) or not 0.0 <= self.prune <= 0.9
        ):
            raise invalid(f"QuantizeConfig.prune must be a number in 0..0.9, got {self.prune!r}")
        if self.strict is not None and not isinstance(self.strict, bool):
            raise invalid(f"QuantizeConfig.strict must be a bool, got {self.strict!r}")
        return self

    def overrides(self) -> dict[str, Any]:
        """The fields that were set (not None), preset excluded."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "preset" and getattr(self, f.name) is not None
        }


def _check_fields(cfg: Any, choices: Mapping[str, tuple[str, ...]] | None = None) -> None:
    """Type checks of an all-optional config dataclass: ints are ints >= 0, floats finite, choices known.
    Ranges are the server's to check (INVALID_ARGUMENT naming the field)."""
    name = type(cfg).__name__
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if v is None or is_dataclass(v):
            continue
        where = f"{name}.{f.name}"
        if choices and f.name in choices:
            if v not in choices[f.name]:
                raise invalid(f"{where} = {v!r}; choose one of {list(choices[f.name])}")
        elif f.name == "background":
            _background(v, where)
        elif "bool" in str(f.type):
            if not isinstance(v, bool):
                raise invalid(f"{where} must be a bool, got {v!r}")
        elif "int" in str(f.type):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise invalid(f"{where} must be a non-negative integer, got {v!r}")
        elif isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not math.isfinite(v):
            raise invalid(f"{where} must be a finite number, got {v!r}")


def set_fields(cfg: Any) -> dict[str, Any]:
    """The fields of a config dataclass that were set (not None)."""
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if getattr(cfg, f.name) is not None}


@dataclass(frozen=True)
class QatConfig:
    """Compact3D quantization-aware training of splats. None = the server's default (in brackets)."""

    enabled: bool | None = None  # False trains plain 3DGS and quantizes after [True]
    start_step: int | None = None  # step of the first k-means; the quantized forward starts here [15000]
    freeze_step: int | None = None  # no re-assignment from this step on [25000]
    reassign_every: int | None = None  # k-means re-assignment period, steps [100]
    kmeans_iters: int | None = None  # Lloyd iterations per re-assignment, 0..100 [10]
    dc_codebook: int | None = None  # SH DC color codebook entries, 1..65536 [4096]
    sh_codebook: int | None = None  # SH rest codebook entries [512]
    scale_codebook: int | None = None  # log-scale codebook entries [4096]
    rot_codebook: int | None = None  # rotation codebook entries [4096]
    opacity_reg: float | None = None  # weight of the opacity regularizer [1e-7]
    prune_opacity: float | None = None  # prune Gaussians below this opacity, 0..1 [0.005]
    prune_every: int | None = None  # pruning period, steps [1000]
    prune_start: int | None = None  # regularization and pruning start, step [15000]
    prune_stop: int | None = None  # ... and stop, step [20000]
    # "finetune": plain training, the post-hoc default quantizer, then finetune_steps through the
    # quantized scene; "compact3d": the codebooks above train from start_step on ["finetune"]
    mode: str | None = None
    finetune_steps: int | None = None  # mode "finetune": steps after the schedule, 1..100000 [steps // 10]

    def validate(self) -> QatConfig:
        _check_fields(self, {"mode": QAT_MODES})
        return self


SPLAT_INITS = ("auto", "points", "random", "object", "camera_spread")
QAT_MODES = ("compact3d", "finetune")
SCHEDULES = ("full", "fast")
DENSIFY_STRATEGIES = ("default", "mcmc", "none")


@dataclass(frozen=True)
class SplatTrainConfig:
    """Training of a splat scene (3DGS + Compact3D QAT). None = the server's default (in brackets).

    ``steps`` alone scales the whole 30k-step schedule (every step count here and in ``qat``)."""

    schedule: str | None = None  # "full" (3DGS / Compact3D, 30k steps) | "fast" (the same in 7k) [full]
    steps: int | None = None  # optimizer steps, one photo each, 1..1e6 [30000]
    seed: int | None = None  # [0]
    sh_degree: int | None = None  # final SH degree 0..3 [3]
    sh_degree_interval: int | None = None  # the SH degree rises every this many steps [1000]
    ssim_lambda: float | None = None  # D-SSIM weight in the loss, 0..1 [0.2]
    init: str | None = None  # "auto" | "points" | "random" | "object" | "camera_spread" [auto]
    init_num_points: int | None = None  # Gaussians of the random init [100000]
    init_extent: float | None = None  # half-size of the camera-spread rule's box, in scene scales [3.0]
    init_opacity: float | None = None  # initial opacity (0, 1) [0.1]
    init_scale: float | None = None  # initial scale, times the 3-NN distance [1.0]
    means_lr: float | None = None  # position learning rate, times the scene scale [1.6e-4]
    means_lr_final: float | None = None  # ... at the last step [1.6e-6]
    scales_lr: float | None = None  # [5e-3]
    quats_lr: float | None = None  # [1e-3]
    opacities_lr: float | None = None  # [5e-2]
    sh0_lr: float | None = None  # [2.5e-3]
    shN_lr: float | None = None  # [1.25e-4]
    strategy: str | None = None  # densification on CUDA: "default" | "mcmc" | "none" [default]
    refine_start: int | None = None  # densification starts after this step [500]
    refine_stop: int | None = None  # ... and stops at this step [15000]
    refine_every: int | None = None  # densification period, steps [100]
    reset_every: int | None = None  # opacity reset period, steps [3000]
    reset_on_white: bool | None = None  # 3DGS's extra reset at refine_start on white NeRF-synthetic data [True]
    grow_grad2d: float | None = None  # image-plane gradient threshold for growing [2e-4]
    cap_max: int | None = None  # most Gaussians of the MCMC strategy [1000000]
    checkpoint_every: int | None = None  # steps between resumable checkpoints [1000]
    qat: QatConfig | None = None  # quantization-aware training [QatConfig()]
    downscale: int | None = None  # dataset: integer image reduction 1..64 [1]
    background: Background | None = None  # dataset: RGB under transparent pixels [(1, 1, 1)]
    test_every: int | None = None  # dataset: hold out every n-th image when no split, 0 = none [8]

    def validate(self) -> SplatTrainConfig:
        _check_fields(self, {"init": SPLAT_INITS, "strategy": DENSIFY_STRATEGIES, "schedule": SCHEDULES})
        if self.qat is not None:
            if not isinstance(self.qat, QatConfig):
                raise invalid(f"SplatTrainConfig.qat must be a QatConfig, got {type(self.qat).__name__}")
            self.qat.validate()
        return self


COMBINES = ("sum", "concat")
VQAD_FORWARDS = ("soft", "hard")


@dataclass(frozen=True)
class DenseGridConfig:
    """Uncompressed multi-resolution grid (post-hoc kmVQ/LRA compress it). None = server default."""

    levels: int | None = None  # resolution levels 1..16 [4]
    base_resolution: int | None = None  # vertices per axis, coarsest level [16]
    max_resolution: int | None = None  # vertices per axis, finest level [128]
    features: int | None = None  # features per vertex and level 1..64 [8]
    combine: str | None = None  # "sum" | "concat" [sum]
    init_std: float | None = None  # [0.1]


@dataclass(frozen=True)
class VqadGridConfig:
    """VQ-AD grid: 2^bits codebook entries per level, bits bits per vertex. None = server default."""

    levels: int | None = None  # [4]
    base_resolution: int | None = None  # [16]
    max_resolution: int | None = None  # [128]
    features: int | None = None  # codebook vector length [8]
    bits: int | None = None  # 1..10 [4]
    combine: str | None = None  # "sum" | "concat" [sum]
    forward: str | None = None  # training forward "soft" | "hard" [hard]
    anneal_hard_fraction: float | None = None  # soft only: last fraction trained hard [0.2]
    init_std: float | None = None  # [0.1]
    sparse: bool | None = None  # radiance fields: fine levels only near occupied space [True]
    sparse_min_resolution: int | None = None  # levels with this many vertices per axis are sparse [32]
    candidates: int | None = None  # codes each vertex scores, 0 = all 2^bits [16]


@dataclass(frozen=True)
class HashGridConfig:
    """Instant-NGP hash grid (baseline). None = server default."""

    levels: int | None = None  # [4]
    base_resolution: int | None = None  # [16]
    max_resolution: int | None = None  # [128]
    features: int | None = None  # [8]
    log2_table_size: int | None = None  # rows per level = 2^this, 4..24 [14]
    combine: str | None = None  # "sum" | "concat" [sum]
    init_std: float | None = None  # [0.1]


@dataclass(frozen=True)
class DecoderConfig:
    """The field's MLP decoder. None = server default."""

    hidden: int | None = None  # hidden width 1..1024 [64]
    layers: int | None = None  # hidden layers 1..8 [2]
    color_layers: int | None = None  # 3D: color MLP hidden layers [1]
    geo_features: int | None = None  # 3D: density -> color features [15]
    dir_degree: int | None = None  # 3D: SH degree of the direction encoding 0..3 [2]


GridConfig = DenseGridConfig | VqadGridConfig | HashGridConfig

# dtypes a field tensor may be sent in (bool arrays go as uint8 0/1).
FIELD_TENSOR_DTYPES = ("float16", "float32", "float64", "uint8", "int32", "int64", "bool")


@dataclass(frozen=True)
class NeuralField:
    """A neural field sent inline: its state dict as numpy arrays, and the grid and decoder config it
    was built with (None = the server's defaults, as in FieldTrainConfig).

    The server builds the field this config describes, checks that ``tensors`` holds exactly its
    state-dict names with their shapes, float parameters and finite values, and stores it as a
    field .vqp for the job. Whether it is a 2D image field or a 3D radiance field follows from the
    tensors (a 3D field has ``color_mlp.*``). From torch:
    ``NeuralField({k: v.cpu().numpy() for k, v in field.state_dict().items()}, grid=..., decoder=...)``.
    A field that does not fit one message (64 MiB) is sent as a stored .vqp instead.
    """

    tensors: Mapping[str, np.ndarray]  # state-dict name -> array (dtype one of FIELD_TENSOR_DTYPES)
    grid: GridConfig | None = None  # [VqadGridConfig()]
    decoder: DecoderConfig | None = None  # [DecoderConfig()]

    def __post_init__(self) -> None:
        if not isinstance(self.tensors, Mapping) or not self.tensors:
            raise invalid("NeuralField.tensors must be a non-empty mapping of state-dict names to numpy arrays")
        for name, a in self.tensors.items():
            if not isinstance(name, str) or not isinstance(a, np.ndarray):
                raise invalid(f"NeuralField.tensors[{name!r}] must be a numpy array named by a string")
            if a.dtype.name not in FIELD_TENSOR_DTYPES:
                raise invalid(f"NeuralField.tensors[{name!r}] is {a.dtype}; send one of {list(FIELD_TENSOR_DTYPES)}")
        if self.grid is not None:
            if not isinstance(self.grid, DenseGridConfig | VqadGridConfig | HashGridConfig):
                raise invalid(f"NeuralField.grid must be a grid config, got {type(self.grid).__name__}")
            _check_fields(self.grid, {"combine": COMBINES, "forward": VQAD_FORWARDS})
        if self.decoder is not None:
            if not isinstance(self.decoder, DecoderConfig):
                raise invalid(f"NeuralField.decoder must be a DecoderConfig, got {type(self.decoder).__name__}")
            _check_fields(self.decoder)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.tensors.values())


@dataclass(frozen=True)
class FieldTrainConfig:
    """Training of a neural field: a 2D image field from a PNG/JPEG, or a 3D radiance field from a
    posed-image archive. None = the server's default (in brackets)."""

    grid: GridConfig | None = None  # [VqadGridConfig()]
    decoder: DecoderConfig | None = None  # [DecoderConfig()]
    steps: int | None = None  # optimizer steps [2000]
    batch_size: int | None = None  # pixels (2D) or rays (3D) per step [16384]
    lr: float | None = None  # Adam learning rate of the grid [1e-2]
    mlp_lr: float | None = None  # Adam learning rate of the decoder [1e-2]
    seed: int | None = None  # [0]
    samples_per_ray: int | None = None  # 3D [64]
    occupancy_resolution: int | None = None  # 3D [64]
    occupancy_update_every: int | None = None  # 3D, steps [16]
    occupancy_warmup: int | None = None  # 3D, steps [256]
    occupancy_threshold: float | None = None  # 3D [0.01]
    log_every: int | None = None  # steps between progress reports [50]
    downscale: int | None = None  # 3D dataset: integer image reduction 1..64 [1]
    background: Background | None = None  # 3D dataset: RGB under transparent pixels [(1, 1, 1)]
    test_every: int | None = None  # 3D dataset: hold out every n-th image when no split, 0 = none [8]
    # 3D fields default to the Instant-NGP-class trainer (sampler "march" ... time_budget_s 360).
    sampler: str | None = None  # 3D: "stratified" | "march" [march for 3D]
    march_steps: int | None = None  # march: steps per box diagonal [1024]
    target_samples: int | None = None  # march: samples per step [2^18]
    early_stop_eps: float | None = None  # march: transmittance cut-off [1e-4]
    lr_warmup: int | None = None  # steps of linear warm-up [100 for 3D]
    lr_decay: str | None = None  # "none" | "step" [step for 3D]
    weight_decay: float | None = None  # Adam L2 penalty [1e-6 for 3D]
    loss: str | None = None  # "mse" | "huber" [huber for 3D]
    huber_delta: float | None = None  # [0.1]
    random_background: bool | None = None  # 3D photos with alpha [True for 3D]
    time_budget_s: float | None = None  # seconds of training, 0 = none [360 for 3D]
    candidate_refresh_every: int | None = None  # VQ-AD candidates: steps between re-choosing [16]
    # Speed options; each trains what the default does (same losses to float tolerance).
    march_box_bound: bool | None = None  # march: steps bounded by the box diagonal [False]
    fused_grid: bool | None = None  # all grid levels in one lookup [False]
    fused_adam: bool | None = None  # torch's fused Adam [False]
    torch_compile: str | None = None  # "none" | "inductor" | "aot_eager" [none]

    def validate(self) -> FieldTrainConfig:
        _check_fields(self)
        if self.grid is not None:
            if not isinstance(self.grid, DenseGridConfig | VqadGridConfig | HashGridConfig):
                raise invalid(f"FieldTrainConfig.grid must be a grid config, got {type(self.grid).__name__}")
            _check_fields(self.grid, {"combine": COMBINES, "forward": VQAD_FORWARDS})
        if self.decoder is not None:
            if not isinstance(self.decoder, DecoderConfig):
                raise invalid(f"FieldTrainConfig.decoder must be a DecoderConfig, got {type(self.decoder).__name__}")
            _check_fields(self.decoder)
        return self


FIELD_QUANTIZE_METHODS = ("kmvq", "lra")


@dataclass(frozen=True)
class FieldQuantizeConfig:
    """Post-hoc compression of a dense-grid field .vqp. None = the server's default (in brackets)."""

    method: str | None = None  # "kmvq" (k-means per level) | "lra" (low-rank per level) [kmvq]
    bits: int | None = None  # kmvq: 2^bits centroids per level, 1..10 [4]
    rank: int | None = None  # lra: rank, 1..the grid's features [4]
    iters: int | None = None  # kmvq: Lloyd iterations [10]
    seed: int | None = None  # kmvq: k-means seed [0]

    def validate(self) -> FieldQuantizeConfig:
        _check_fields(self, {"method": FIELD_QUANTIZE_METHODS})
        return self


# -- artifacts and jobs ------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactRef:
    """A stored artifact, by its id: its bytes' digest, ``blake3:<hex>`` (BLAKE3-256) or ``<hex>`` (sha256)."""

    id: str


@dataclass(frozen=True)
class ArtifactInfo(ArtifactRef):
    """What the server knows about an artifact (usable wherever an ArtifactRef is)."""

    name: str = ""  # file name given at upload or by the job that made it
    kind: str = ""  # "ply", "splat", "spz", "vqp", "npz", "png", "json", ...
    size: int = 0  # bytes
    created_at: float = 0.0  # seconds since the epoch
    source_job: str | None = None  # the job that produced it; None for uploads

    @property
    def ref(self) -> ArtifactRef:
        return ArtifactRef(self.id)


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of a job."""

    id: str
    kind: str  # "quantize", "export", "render", "train_splats", "train_field", "build_field"
    state: JobState
    stage: str = ""  # what it is doing now, e.g. "kmeans:sh"
    progress: float = 0.0  # 0..1
    metrics: dict[str, float] = field(default_factory=dict)
    results: list[ArtifactInfo] = field(default_factory=list)  # filled when SUCCEEDED
    error: str = ""  # why it FAILED (or was cancelled)
    created_at: float | None = None  # seconds since the epoch
    started_at: float | None = None
    finished_at: float | None = None
    worker: str = ""  # who runs (ran) it: "<host>/w<slot>/<pid>", or "ray/<node id>@<ip>/a<n>" on a Ray cluster

    @property
    def terminal(self) -> bool:
        return self.state.terminal


@dataclass(frozen=True)
class ServerInfo:
    """What serves the API (``Client.server_info()``)."""

    version: str  # the server's vqpress version
    executor: str  # what runs jobs, e.g. "local worker processes"
    workers: int  # worker processes
    devices: tuple[str, ...]  # each worker's device: "cuda:0", "cpu"
    auth_required: bool
    tls: bool
    limits: dict[str, int]  # max_message_bytes, chunk_bytes, max_artifact_bytes, max_queued_jobs, ...
    upload_digest_last: bool = False  # uploads may send their digest after the bytes (hashed while sent)
    # the digest functions uploads may use, the server's own first; () = a server before them (sha256)
    digest_functions: tuple[str, ...] = ()

    @property
    def upload_sha256_last(self) -> bool:
        """``upload_digest_last`` by its name before digest functions."""
        return self.upload_digest_last

    @property
    def gpus(self) -> tuple[str, ...]:
        """The CUDA devices among ``devices`` (empty: every job runs on the CPU)."""
        return tuple(d for d in self.devices if d.startswith("cuda"))

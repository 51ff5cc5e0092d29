"""Proto <-> Python conversion for the RPC layer, in one module (numpy only, no torch).

Every conversion from a request validates what it converts and raises ``core.errors``
exceptions (mapped to INVALID_ARGUMENT) whose message names the field and what to send instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from vqpress.v1 import vqpress_pb2 as pb

from ..artifacts.store import ArtifactInfo
from ..core.data.config import DatasetConfig
from ..core.errors import ConfigError, NonFiniteError, VqpressInputError
from ..core.fields.config import (
    FieldConfig,
    FieldQuantizeConfig,
    TrainConfig,
    field_config_from_dict,
    field_config_from_spec,
    train_config_from_spec,
)
from ..core.splats.quantize_config import MAX_CODEBOOK, MAX_ITERS, PRESETS, QuantizeConfig
from ..core.splats.train_config import SplatTrainConfig
from ..jobs.model import JobKind, JobRecord, JobState
from ..jobs.specs import CameraSpec, ExportOptions, SpecError


def _enum_name(enum: Any, value: int) -> str:
    return enum.Name(value) if value in enum.values() else str(value)


# -- tensors ------------------------------------------------------------------------------

DTYPES: dict[int, np.dtype] = {
    pb.DTYPE_FLOAT32: np.dtype("<f4"),
    pb.DTYPE_FLOAT16: np.dtype("<f2"),
    pb.DTYPE_FLOAT64: np.dtype("<f8"),
    pb.DTYPE_UINT8: np.dtype("u1"),
    pb.DTYPE_INT32: np.dtype("<i4"),
    pb.DTYPE_INT64: np.dtype("<i8"),
}
_PB_DTYPE = {dt.str: code for code, dt in DTYPES.items()}


def array_from_tensor(t: pb.Tensor, name: str) -> np.ndarray:
    """The array a Tensor message holds (a read-only view of its bytes); checks dtype, shape and length."""
    dt = DTYPES.get(t.dtype)
    if dt is None:
        raise VqpressInputError(f"{name}: dtype {_enum_name(pb.DType, t.dtype)} is not supported; send a listed DType")
    shape = tuple(int(s) for s in t.shape)
    if any(s < 0 for s in shape):
        raise VqpressInputError(f"{name}: shape {list(shape)} has a negative dimension")
    expected = math.prod(shape) * dt.itemsize  # Python ints: no overflow on absurd shapes
    if len(t.data) != expected:
        raise VqpressInputError(
            f"{name}: {len(t.data)} bytes of data, but shape {list(shape)} of {dt.name} needs {expected}; "
            "send the tensor's raw little-endian bytes in row-major order"
        )
    return np.frombuffer(t.data, dtype=dt).reshape(shape)


def tensor_from_array(a: np.ndarray) -> pb.Tensor:
    a = np.ascontiguousarray(a)
    le = a.astype(a.dtype.newbyteorder("<"), copy=False)
    code = _PB_DTYPE.get(le.dtype.str)
    if code is None:
        raise TypeError(f"no proto DType for numpy dtype {a.dtype}")
    return pb.Tensor(data=le.tobytes(), shape=list(a.shape), dtype=code)


# -- scenes -------------------------------------------------------------------------------

SPLAT_FIELDS = ("means", "quats", "scales", "opacities", "sh0", "shN")


def splats_arrays(msg: pb.GaussianSplats, *, strict: bool) -> dict[str, np.ndarray]:
    """Validated float32 arrays of an inline scene, keyed as in ``SPLAT_FIELDS``.

    Shapes must agree (N > 0 Gaussians, shN matching sh_degree). With ``strict`` a non-finite value
    raises NonFiniteError; without it the values pass unchanged and the worker repairs them by the
    documented policy when it loads the scene.
    """
    f32 = pb.DTYPE_FLOAT32
    for name in SPLAT_FIELDS[:5]:
        if not msg.HasField(name):
            raise VqpressInputError(f"splats.{name} is missing; an inline scene needs {', '.join(SPLAT_FIELDS[:5])}")
    arrays: dict[str, np.ndarray] = {}
    for name in SPLAT_FIELDS:
        t = getattr(msg, name)
        if name == "shN" and not msg.HasField("shN"):
            continue
        if t.dtype != f32:
            raise VqpressInputError(f"splats.{name} must be DTYPE_FLOAT32, got {_enum_name(pb.DType, t.dtype)}")
        arrays[name] = array_from_tensor(t, f"splats.{name}")
    means = arrays["means"]
    if means.ndim != 2 or means.shape[1] != 3:
        raise VqpressInputError(f"splats.means must have shape [N, 3], got {list(means.shape)}")
    n = means.shape[0]
    if n == 0:
        raise VqpressInputError("the inline scene has no Gaussians (splats.means is [0, 3]); send a non-empty scene")
    if msg.sh_degree > 3:
        raise VqpressInputError(f"splats.sh_degree must be 0..3, got {msg.sh_degree}")
    rest = (msg.sh_degree + 1) ** 2 - 1
    if "shN" not in arrays or (arrays["shN"].size == 0 and rest == 0):
        arrays["shN"] = np.zeros((n, 0, 3), np.float32)
    expected = {
        "quats": (n, 4),
        "scales": (n, 3),
        "opacities": (n,),
        "sh0": (n, 1, 3),
        "shN": (n, rest, 3),
    }
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise VqpressInputError(
                f"splats.{name} must have shape {list(shape)} for N = {n} Gaussians at sh_degree "
                f"{msg.sh_degree}, got {list(arrays[name].shape)}"
            )
    if strict:
        bad = {k: int(np.count_nonzero(~np.isfinite(v))) for k, v in arrays.items()}
        if any(bad.values()):
            detail = ", ".join(f"{k}: {c}" for k, c in bad.items() if c)
            raise NonFiniteError(
                f"non-finite values in the inline scene ({detail}); fix them or unset strict to repair them"
            )
    return arrays


# -- cameras ------------------------------------------------------------------------------

MAX_CAMERAS = 1024  # views per Render or Quantize call
MAX_IMAGE_SIDE = 8192  # pixels
MAX_PNG_PIXELS = 4096 * 4096  # a worst-case PNG of this many RGB pixels still fits in one message
MAX_FLOAT32_PIXELS = (60 << 20) // 12  # float32 RGB images up to 60 MiB fit a 64 MiB message


def camera_spec(cam: pb.Camera, where: str) -> CameraSpec:
    """The job-spec camera of a Camera message (viewmat and K row-major); checks sizes and values."""
    try:
        return CameraSpec(
            viewmat=tuple(float(v) for v in cam.viewmat), K=tuple(float(v) for v in cam.K), width=int(cam.width),
            height=int(cam.height), name=cam.name,
        )  # fmt: skip
    except SpecError as e:
        raise VqpressInputError(f"{where}: {e}") from None


def camera_specs(cams: Sequence[pb.Camera], *, max_pixels: int | None = None) -> tuple[CameraSpec, ...]:
    if len(cams) > MAX_CAMERAS:
        raise VqpressInputError(f"{len(cams)} cameras is more than the {MAX_CAMERAS} one call accepts; split the call")
    out = []
    for i, cam in enumerate(cams):
        c = camera_spec(cam, f"cameras[{i}]")
        if max_pixels is not None and c.width * c.height > max_pixels:
            raise VqpressInputError(
                f"cameras[{i}]: {c.width} x {c.height} pixels is more than the {max_pixels} one image "
                "may have in this encoding; render it smaller (or as PNG)"
            )
        out.append(c)
    return tuple(out)  # the spec checks the pixel budget when it is built, before any job is queued


def background(color: pb.Color, where: str = "background") -> tuple[float, float, float]:
    rgb = (float(color.r), float(color.g), float(color.b))
    if not all(math.isfinite(c) and 0.0 <= c <= 1.0 for c in rgb):
        raise VqpressInputError(f"{where} channels must be in [0, 1], got {list(rgb)}")
    return rgb


# -- quantize config ----------------------------------------------------------------------
# The bounds and presets are the quantizer's own (core/splats/quantize_config.py is torch-free).

_POSITION_PRECISIONS = {pb.PRECISION_FIXED16: "fixed16", pb.PRECISION_FP16: "fp16", pb.PRECISION_FP32: "fp32"}
_OPACITY_PRECISIONS = {pb.PRECISION_UINT8: "uint8", pb.PRECISION_FP16: "fp16"}
_ENTROPIES = {pb.ENTROPY_ZSTD: "zstd", pb.ENTROPY_NONE: "none"}
_IMPORTANCES = {pb.IMPORTANCE_VIEWS: "views", pb.IMPORTANCE_NONE: "none"}


def quantize_config(msg: pb.QuantizeConfig) -> QuantizeConfig:
    """The QuantizeConfig a request asked for: its preset with each field the request set, validated."""
    preset = msg.preset or "default"
    if preset not in PRESETS:
        raise ConfigError(f"unknown QuantizeConfig.preset {preset!r}; use one of {', '.join(PRESETS)}")
    cfg: dict[str, Any] = {"preset": preset}
    for name in ("dc_codebook", "sh_codebook", "scale_codebook", "rot_codebook"):
        if msg.HasField(name):
            k = getattr(msg, name)
            if not 1 <= k <= MAX_CODEBOOK:
                raise ConfigError(
                    f"QuantizeConfig.{name} must be in 1..{MAX_CODEBOOK} (2^23: k-means' limit) entries, got {k}"
                )
            cfg[name] = int(k)
    if msg.HasField("kmeans_iters"):
        if msg.kmeans_iters > MAX_ITERS:
            raise ConfigError(f"QuantizeConfig.kmeans_iters must be in 0..{MAX_ITERS}, got {msg.kmeans_iters}")
        cfg["kmeans_iters"] = int(msg.kmeans_iters)
    if msg.HasField("seed"):
        if msg.seed >= 2**63:
            raise ConfigError(f"QuantizeConfig.seed must be below 2^63, got {msg.seed}")
        cfg["seed"] = int(msg.seed)
    for name, table, enum in (
        ("position_precision", _POSITION_PRECISIONS, pb.Precision),
        ("opacity_precision", _OPACITY_PRECISIONS, pb.Precision),
        ("entropy", _ENTROPIES, pb.Entropy),
        ("importance", _IMPORTANCES, pb.Importance),
    ):
        value = getattr(msg, name)
        if not msg.HasField(name) or value == 0:  # unset or UNSPECIFIED: the preset's value
            continue
        if value not in table:
            allowed = ", ".join(enum.Name(k) for k in table)
            raise ConfigError(f"QuantizeConfig.{name} cannot be {_enum_name(enum, value)}; use one of {allowed}")
        cfg[name] = table[value]
    if msg.HasField("sh_degree"):
        if msg.sh_degree > 3:
            raise ConfigError(f"QuantizeConfig.sh_degree must be 0..3, got {msg.sh_degree}")
        cfg["sh_degree"] = int(msg.sh_degree)
    if msg.HasField("strict"):
        cfg["strict"] = bool(msg.strict)
    if msg.HasField("position_bits"):
        cfg["position_bits"] = int(msg.position_bits)
    if msg.HasField("prune"):
        if not math.isfinite(msg.prune):
            raise ConfigError(f"QuantizeConfig.prune must be a number in 0..0.9, got {msg.prune}")
        cfg["prune"] = float(msg.prune)
    return QuantizeConfig.from_preset(**cfg)  # the quantizer's own validation


# -- export and render --------------------------------------------------------------------

EXPORT_FORMATS = {
    pb.EXPORT_FORMAT_PLY: "ply",
    pb.EXPORT_FORMAT_SPLAT: "splat",
    pb.EXPORT_FORMAT_SPZ: "spz",
    pb.EXPORT_FORMAT_VQP: "vqp",
    pb.EXPORT_FORMAT_SOG: "sog",
    pb.EXPORT_FORMAT_COMPRESSED_PLY: "compressed_ply",
}
SPZ_AXES = {pb.SPZ_AXES_UNSPECIFIED: "ply", pb.SPZ_AXES_PLY: "ply", pb.SPZ_AXES_RUB: "rub"}
IMAGE_ENCODINGS = {
    pb.IMAGE_ENCODING_UNSPECIFIED: "png",
    pb.IMAGE_ENCODING_PNG: "png",
    pb.IMAGE_ENCODING_FLOAT32: "float32",
}


def export_format(value: int) -> str:
    if value not in EXPORT_FORMATS:
        raise VqpressInputError(
            f"ExportRequest.format must be one of {', '.join(pb.ExportFormat.Name(k) for k in EXPORT_FORMATS)}"
        )
    return EXPORT_FORMATS[value]


def export_options(msg: pb.ExportOptions) -> ExportOptions:
    """The ExportOptions of the message (the fields of core's ExportFilter and WriteOptions), validated."""
    lo, hi = [float(v) for v in msg.box_min], [float(v) for v in msg.box_max]
    if (lo or hi) and (len(lo) != 3 or len(hi) != 3):
        raise ConfigError("ExportOptions.box_min and box_max must both be 3 finite numbers")
    if msg.spz_axes not in SPZ_AXES:
        raise ConfigError(f"ExportOptions.spz_axes {msg.spz_axes} is unknown; use SPZ_AXES_PLY or SPZ_AXES_RUB")
    try:
        return ExportOptions(
            sh_degree=int(msg.sh_degree) if msg.HasField("sh_degree") else None,
            min_opacity=float(msg.min_opacity),
            box_min=(lo[0], lo[1], lo[2]) if lo else None,
            box_max=(hi[0], hi[1], hi[2]) if hi else None,
            drop_non_finite=bool(msg.drop_non_finite),
            spz_axes=SPZ_AXES[msg.spz_axes],
            sog_sh_palette=int(msg.sog_sh_palette),
        )
    except SpecError as e:
        raise ConfigError(str(e)) from None


def image_encoding(value: int) -> str:
    if value not in IMAGE_ENCODINGS:
        raise VqpressInputError(f"RenderRequest.encoding {value} is unknown; use IMAGE_ENCODING_PNG or _FLOAT32")
    return IMAGE_ENCODINGS[value]


# -- artifacts and jobs -------------------------------------------------------------------


def artifact_info(info: ArtifactInfo) -> pb.ArtifactInfo:
    return pb.ArtifactInfo(
        id=info.id,
        name=info.name,
        kind=info.kind,
        size=info.size,
        created_at=info.created_at,
        source_job=info.source_job or "",
    )


def job_state(state: JobState) -> int:
    return pb.JobState.Value(f"JOB_STATE_{state.value}")


def job_states(values: Iterable[int]) -> list[JobState] | None:
    """JobStates of a ListJobs filter; None (all states) for an empty filter."""
    out = []
    for v in values:
        name = pb.JobState.Name(v) if v in pb.JobState.values() else ""
        if not name or v == pb.JOB_STATE_UNSPECIFIED:
            raise VqpressInputError(f"ListJobsRequest.states has an invalid state {v}")
        out.append(JobState(name.removeprefix("JOB_STATE_")))
    return out or None


def job_kind(kind: JobKind) -> int:
    return pb.JobKind.Value(f"JOB_KIND_{kind.name}")


def job_status(rec: JobRecord, results: Sequence[pb.ArtifactInfo]) -> pb.JobStatus:
    return pb.JobStatus(
        id=rec.id,
        kind=job_kind(rec.kind),
        state=job_state(rec.state),
        stage=rec.stage,
        progress=float(rec.progress),
        metrics={k: float(v) for k, v in rec.metrics.items()},
        results=list(results),
        error=rec.error,
        attempts=rec.attempts,
        created_at=rec.created_at,
        started_at=rec.started_at or 0.0,
        finished_at=rec.finished_at or 0.0,
        worker=rec.worker_id or "",
    )


# -- training configs ---------------------------------------------------------------------


def _set_fields(msg: Any, where: str) -> dict[str, Any]:
    """The scalar fields a message has set (enum fields only when not UNSPECIFIED), by name.

    Doubles must be finite; enums are returned as their number (the caller maps them)."""
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        if fd.message_type is not None:
            continue
        if fd.enum_type is not None and value == 0:
            continue  # UNSPECIFIED = the default
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}.{fd.name} must be finite, got {value}")
        out[fd.name] = value
    return out


def _enum_value(value: int, table: dict[int, str], enum: Any, where: str) -> str:
    if value not in table:
        raise ConfigError(f"{where} cannot be {_enum_name(enum, value)}; use one of {', '.join(table.values())}")
    return table[value]


_SPLAT_INITS = {
    pb.SPLAT_INIT_AUTO: "auto",
    pb.SPLAT_INIT_POINTS: "points",
    pb.SPLAT_INIT_RANDOM: "random",
    pb.SPLAT_INIT_OBJECT: "object",
    pb.SPLAT_INIT_CAMERA_SPREAD: "camera_spread",
}
_SCHEDULES = {pb.TRAIN_SCHEDULE_FULL: "full", pb.TRAIN_SCHEDULE_FAST: "fast"}
_QAT_MODES = {pb.QAT_MODE_COMPACT3D: "compact3d", pb.QAT_MODE_FINETUNE: "finetune"}
_STRATEGIES = {
    pb.DENSIFY_STRATEGY_DEFAULT: "default",
    pb.DENSIFY_STRATEGY_MCMC: "mcmc",
    pb.DENSIFY_STRATEGY_NONE: "none",
}


def splat_train_config(msg: pb.SplatTrainConfig) -> SplatTrainConfig:
    """The SplatTrainConfig of the fields the request set (``qat`` nested), validated by the trainer's
    own dataclass (``core/splats/train_config.py`` is torch-free)."""
    cfg = _set_fields(msg, "SplatTrainConfig")
    if "init" in cfg:
        cfg["init"] = _enum_value(cfg["init"], _SPLAT_INITS, pb.SplatInit, "SplatTrainConfig.init")
    if "strategy" in cfg:
        cfg["strategy"] = _enum_value(cfg["strategy"], _STRATEGIES, pb.DensifyStrategy, "SplatTrainConfig.strategy")
    if "schedule" in cfg:
        cfg["schedule"] = _enum_value(cfg["schedule"], _SCHEDULES, pb.TrainSchedule, "SplatTrainConfig.schedule")
    if msg.HasField("qat"):
        qat = _set_fields(msg.qat, "SplatTrainConfig.qat")
        if "mode" in qat:
            qat["mode"] = _enum_value(qat["mode"], _QAT_MODES, pb.QatMode, "SplatTrainConfig.qat.mode")
        if qat:
            cfg["qat"] = qat
    return SplatTrainConfig.from_dict(cfg)


# Field configs are plain dataclasses without torch (core/fields/config.py): validated by the real thing.
_COMBINES = {pb.GRID_COMBINE_SUM: "sum", pb.GRID_COMBINE_CONCAT: "concat"}
_FORWARDS = {pb.VQAD_FORWARD_SOFT: "soft", pb.VQAD_FORWARD_HARD: "hard"}
MAX_DOWNSCALE = 64


def field_config(msg: pb.FieldConfig) -> dict[str, Any]:
    """The set fields of a FieldConfig ({"grid": {"kind", set fields}, "decoder": {set fields}}), checked
    against ``core.fields.config`` for a 2D field (the dims and the defaults follow the dataset or tensors)."""
    kind = msg.WhichOneof("grid") or "vqad"
    grid_msg = getattr(msg, kind)
    grid = _set_fields(grid_msg, f"FieldConfig.{kind}")
    if "combine" in grid:
        grid["combine"] = _enum_value(grid["combine"], _COMBINES, pb.GridCombine, f"FieldConfig.{kind}.combine")
    if "forward" in grid:
        grid["forward"] = _enum_value(grid["forward"], _FORWARDS, pb.VqadForward, f"FieldConfig.{kind}.forward")
    decoder = _set_fields(msg.decoder, "FieldConfig.decoder")
    spec = {"grid": {"kind": kind, **grid}, "decoder": decoder}
    field_config_from_dict({"dims": 2, **spec})
    return spec


def dataset_options(d: pb.DatasetOptions, where: str) -> DatasetConfig:
    """The DatasetConfig of a request's DatasetOptions (unset fields: the defaults), validated."""
    values: dict[str, Any] = {}
    if d.HasField("downscale"):
        if not 1 <= d.downscale <= MAX_DOWNSCALE:
            raise ConfigError(f"{where}.downscale must be in 1..{MAX_DOWNSCALE}, got {d.downscale}")
        values["downscale"] = int(d.downscale)
    if d.HasField("background"):
        values["background"] = background(d.background, f"{where}.background")
    if d.HasField("test_every"):
        values["test_every"] = int(d.test_every)
    options = DatasetConfig(**values)
    try:
        options.validate()
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    return options


def field_train_configs(msg: pb.FieldTrainConfig, dims: int) -> tuple[FieldConfig, TrainConfig, DatasetConfig]:
    """The FieldConfig, TrainConfig and DatasetConfig a TRAIN_FIELD request asks for, for a ``dims``-D
    field (2: the dataset is one image; 3: posed photos), with the defaults of that kind of field."""
    train = _set_fields(msg, "FieldTrainConfig")
    if train.get("seed", 0) >= 2**63:
        raise ConfigError(f"FieldTrainConfig.seed must be below 2^63, got {train['seed']}")
    try:
        TrainConfig(**train).validate()
        train_cfg = train_config_from_spec(train, dims)
    except ConfigError as e:
        raise ConfigError(f"FieldTrainConfig: {e}") from None
    options = dataset_options(msg.dataset, "FieldTrainConfig.dataset") if msg.HasField("dataset") else DatasetConfig()
    source = "the dataset is a single image (2D field)" if dims == 2 else "the dataset is posed photos (3D field)"
    config = field_config_from_spec(field_config(msg.field), dims, source, radiance_defaults=True)
    return config, train_cfg, options


# -- post-hoc field quantization ----------------------------------------------------------

FIELD_QUANTIZE_METHODS = {
    pb.FIELD_QUANTIZE_METHOD_UNSPECIFIED: "kmvq",
    pb.FIELD_QUANTIZE_METHOD_KMVQ: "kmvq",
    pb.FIELD_QUANTIZE_METHOD_LRA: "lra",
}


def field_quantize_config(msg: pb.FieldQuantizeConfig, features: int | None = None) -> FieldQuantizeConfig:
    """The FieldQuantizeConfig a request asked for (unset fields: the defaults), validated by the
    worker's own dataclass; ``features`` (the stored field's features per grid vertex) bounds the LRA rank."""
    method = _enum_value(msg.method, FIELD_QUANTIZE_METHODS, pb.FieldQuantizeMethod, "FieldQuantizeConfig.method")
    values = {**_set_fields(msg, "FieldQuantizeConfig"), "method": method}
    if values.get("seed", 0) >= 2**63:
        raise ConfigError(f"FieldQuantizeConfig.seed must be below 2^63, got {values['seed']}")
    cfg = FieldQuantizeConfig.from_dict(values, "FieldQuantizeConfig")
    if features is not None:
        try:
            cfg.validate(features)
        except ConfigError as e:
            raise ConfigError(f"FieldQuantizeConfig.{e}") from None
    return cfg

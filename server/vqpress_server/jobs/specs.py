"""One frozen dataclass per job: what a request asked for, typed from the RPC to the handler.

The RPC layer builds a spec once from the proto (``rpc/convert.py``, ``rpc/servicer.py``); the
job table stores ``spec.to_json()``; the worker rebuilds it with ``spec_from_json`` and runs the
handler registered for its class (``jobs/handlers.py``). Constructing a spec validates it
(``__post_init__``), and ``from_json`` refuses unknown keys, missing keys and values of the wrong
type with a ``SpecError`` naming the key, so no later layer checks a field again.

Whether a source is a splat scene or a neural field is decided once, at the RPC, from the stored
artifact's header: it is the spec's class (``QuantizeSplatsSpec`` or ``QuantizeFieldSpec``, ...).
Artifacts are named by their content digest (vqpress.digests). Torch-free: the gRPC process imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal, TypeVar

from ..core.budgets import check_pixels
from ..core.data.config import DatasetConfig
from ..core.errors import ConfigError, VqpressInputError
from ..core.fields.config import (
    FieldConfig,
    FieldQuantizeConfig,
    TrainConfig,
    check_spec_fields,
    field_config_from_dict,
    field_config_to_dict,
)
from ..core.splats.quantize_config import QuantizeConfig
from ..core.splats.train_config import MAX_FINETUNE_STEPS, SplatTrainConfig
from .model import JobKind

MAX_RENDER_CAMERAS = 4096  # cameras one job may ask for
MAX_IMAGE_SIDE = 8192  # pixels of a camera's width or height
EXPORT_FORMATS = ("ply", "compressed_ply", "splat", "spz", "sog", "vqp")
ExportFormat = Literal["ply", "compressed_ply", "splat", "spz", "sog", "vqp"]
RENDER_ENCODINGS = ("png", "float32")
Encoding = Literal["png", "float32"]
SPZ_AXES = ("ply", "rub")
DEFAULT_FINETUNE_STEPS = 3000  # steps of a quantize job's fine-tune when the request names none
MAX_SOG_SH_PALETTE = 65536


class SpecError(VqpressInputError):
    """A job spec (or its JSON) that is not what its class allows; the message names the key."""


# -- strict JSON readers ----------------------------------------------------------------------


def _object(d: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise SpecError(f"{where} must be a JSON object, got {type(d).__name__}")
    unknown = sorted(set(d) - set(required) - set(optional))
    if unknown:
        raise SpecError(f"{where} has unknown key(s) {unknown}; known: {sorted(required + optional)}")
    missing = [k for k in required if k not in d]
    if missing:
        raise SpecError(f"{where} lacks {', '.join(missing)}")
    return d


def _int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(f"{where} must be an integer, got {str(v)[:40]!r}")
    return v


def _float(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise SpecError(f"{where} must be a finite number, got {str(v)[:40]!r}")
    return float(v)


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise SpecError(f"{where} must be a string, got {str(v)[:40]!r}")
    return v


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise SpecError(f"{where} must be true or false, got {str(v)[:40]!r}")
    return v


def _floats(v: Any, n: int, where: str) -> tuple[float, ...]:
    if not isinstance(v, list | tuple) or len(v) != n:
        raise SpecError(f"{where} must be a list of {n} numbers, got {str(v)[:80]}")
    return tuple(_float(x, f"{where}[{i}]") for i, x in enumerate(v))


def _config(build: Any, value: Any, where: str) -> Any:
    """A core config from its JSON form, its own messages prefixed with ``where``."""
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be a JSON object, got {type(value).__name__}")
    try:
        return build(dict(value))
    except ConfigError as e:
        raise SpecError(f"{where}: {e}") from None
    except TypeError as e:  # a key the dataclass does not have
        raise SpecError(f"{where}: {e}") from None


def _artifact_id(v: Any, where: str) -> str:
    s = _str(v, where)
    if not s:
        raise SpecError(f"{where} must be an artifact id, got an empty string")
    return s


# -- parts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraSpec:
    """A view: world-to-camera ``viewmat`` (4x4, OpenCV axes) and intrinsics ``K`` (3x3), row-major."""

    viewmat: tuple[float, ...]  # 16 floats, last row (0, 0, 0, 1)
    K: tuple[float, ...]  # 9 floats, fx = K[0] and fy = K[4] positive (pixels)
    width: int  # pixels, 1..MAX_IMAGE_SIDE
    height: int  # pixels, 1..MAX_IMAGE_SIDE
    name: str = ""

    def __post_init__(self) -> None:
        vm, K = self.viewmat, self.K
        if len(vm) != 16 or len(K) != 9:
            raise SpecError(f"viewmat needs 16 values and K 9 (row-major 4x4 and 3x3), got {len(vm)} and {len(K)}")
        if not all(isinstance(v, float) and math.isfinite(v) for v in vm + K):
            raise SpecError("viewmat and K must be finite")
        if max(abs(v) for v in vm[12:15]) > 1e-6 or abs(vm[15] - 1.0) > 1e-6:
            raise SpecError(f"viewmat's last row must be (0, 0, 0, 1), got {list(vm[12:])}; send it row-major")
        if K[0] <= 0 or K[4] <= 0:
            raise SpecError("focal lengths K[0] (fx) and K[4] (fy) must be positive pixels")
        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_IMAGE_SIDE:
                raise SpecError(
                    f"width and height must be 1..{MAX_IMAGE_SIDE} pixels, got {self.width} x {self.height}"
                )
        if not isinstance(self.name, str):
            raise SpecError(f"camera name must be a string, got {type(self.name).__name__}")

    def to_json(self) -> dict[str, Any]:
        return {"viewmat": list(self.viewmat), "K": list(self.K), "width": self.width, "height": self.height,
                "name": self.name}  # fmt: skip

    @classmethod
    def from_json(cls, d: Any, where: str = "camera") -> CameraSpec:
        d = _object(d, where, ("viewmat", "K", "width", "height"), ("name",))
        try:
            return cls(
                viewmat=_floats(d["viewmat"], 16, f"{where}.viewmat"),
                K=_floats(d["K"], 9, f"{where}.K"),
                width=_int(d["width"], f"{where}.width"),
                height=_int(d["height"], f"{where}.height"),
                name=_str(d.get("name", ""), f"{where}.name"),
            )
        except SpecError as e:
            if str(e).startswith(where):
                raise
            raise SpecError(f"{where}: {e}") from None


Cameras = tuple[CameraSpec, ...]
RGB = tuple[float, float, float]


def _check_cameras(cams: Cameras | None, *, required: bool) -> None:
    if cams is None:
        if required:
            raise SpecError("cameras must be a non-empty list of cameras")
        return
    if required and not cams:
        raise SpecError("cameras must be a non-empty list of cameras")
    if len(cams) > MAX_RENDER_CAMERAS:
        raise SpecError(f"{len(cams)} cameras requested; at most {MAX_RENDER_CAMERAS} per job")
    if not all(isinstance(c, CameraSpec) for c in cams):
        raise SpecError("cameras must be CameraSpec values")
    check_pixels([(c.width, c.height) for c in cams], "cameras")  # LimitExceeded: over a pixel budget


def _cameras_json(cams: Cameras | None) -> list[dict[str, Any]] | None:
    return None if cams is None else [c.to_json() for c in cams]


def _cameras_from(v: Any, where: str = "cameras") -> Cameras | None:
    if v is None:
        return None
    if not isinstance(v, list):
        raise SpecError(f"{where} must be a list of cameras or null, got {type(v).__name__}")
    return tuple(CameraSpec.from_json(c, f"{where}[{i}]") for i, c in enumerate(v))


def _check_rgb(v: RGB | None, where: str) -> None:
    if v is None:
        return
    if len(v) != 3 or not all(isinstance(c, float) and math.isfinite(c) and 0.0 <= c <= 1.0 for c in v):
        raise SpecError(f"{where} must be 3 numbers [r, g, b] in [0, 1], got {list(v)}")


def _rgb_from(v: Any, where: str) -> RGB | None:
    if v is None:
        return None
    r, g, b = _floats(v, 3, where)
    return (r, g, b)


def _choice(v: Any, choices: tuple[str, ...], where: str) -> str:
    if v not in choices:
        raise SpecError(f"{where} must be one of {list(choices)}, got {str(v)[:40]!r}")
    return str(v)


@dataclass(frozen=True)
class ExportOptions:
    """What a splat export keeps and how the lossy writers encode (core's ExportFilter and WriteOptions)."""

    sh_degree: int | None = None  # keep SH bands up to this degree (0..3); None = as the scene has them
    min_opacity: float = 0.0  # drop Gaussians whose opacity is below this (0..1)
    box_min: tuple[float, float, float] | None = None  # keep centres inside [box_min, box_max] (both or neither)
    box_max: tuple[float, float, float] | None = None
    drop_non_finite: bool = False  # drop Gaussians with NaN/inf values instead of refusing them
    spz_axes: str = "ply"  # "ply": the scene's own axes; "rub": converted to RUB
    sog_sh_palette: int = 0  # SOG SH palette entries (0..65536; 0 = splat-transform's size)

    def __post_init__(self) -> None:
        if self.sh_degree is not None and (isinstance(self.sh_degree, bool) or self.sh_degree not in (0, 1, 2, 3)):
            raise SpecError(f"ExportOptions.sh_degree must be 0..3, got {self.sh_degree!r}")
        if not (isinstance(self.min_opacity, float) and 0.0 <= self.min_opacity <= 1.0):
            raise SpecError(f"ExportOptions.min_opacity must be an opacity in 0..1, got {self.min_opacity!r}")
        if (self.box_min is None) != (self.box_max is None):
            raise SpecError("ExportOptions.box_min and box_max must both be 3 finite numbers")
        if self.box_min is not None and self.box_max is not None:
            for c in (self.box_min, self.box_max):
                if len(c) != 3 or not all(isinstance(v, float) and math.isfinite(v) for v in c):
                    raise SpecError("ExportOptions.box_min and box_max must both be 3 finite numbers")
            if any(a > b for a, b in zip(self.box_min, self.box_max, strict=True)):
                raise SpecError(f"ExportOptions.box_min {list(self.box_min)} exceeds box_max {list(self.box_max)} "
                                "on an axis")  # fmt: skip
        if not isinstance(self.drop_non_finite, bool):
            raise SpecError("ExportOptions.drop_non_finite must be true or false")
        _choice(self.spz_axes, SPZ_AXES, "ExportOptions.spz_axes")
        p = self.sog_sh_palette
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= MAX_SOG_SH_PALETTE:
            raise SpecError(f"ExportOptions.sog_sh_palette must be at most {MAX_SOG_SH_PALETTE} entries, got {p}")

    def to_json(self) -> dict[str, Any]:
        return {
            "sh_degree": self.sh_degree,
            "min_opacity": self.min_opacity,
            "box_min": None if self.box_min is None else list(self.box_min),
            "box_max": None if self.box_max is None else list(self.box_max),
            "drop_non_finite": self.drop_non_finite,
            "spz_axes": self.spz_axes,
            "sog_sh_palette": self.sog_sh_palette,
        }

    @classmethod
    def from_json(cls, d: Any, where: str = "options") -> ExportOptions:
        keys = ("sh_degree", "min_opacity", "box_min", "box_max", "drop_non_finite", "spz_axes", "sog_sh_palette")
        d = _object(d, where, keys)
        box = [None if d[k] is None else _floats(d[k], 3, f"{where}.{k}") for k in ("box_min", "box_max")]
        return cls(
            sh_degree=None if d["sh_degree"] is None else _int(d["sh_degree"], f"{where}.sh_degree"),
            min_opacity=_float(d["min_opacity"], f"{where}.min_opacity"),
            box_min=box[0],  # type: ignore[arg-type]
            box_max=box[1],  # type: ignore[arg-type]
            drop_non_finite=_bool(d["drop_non_finite"], f"{where}.drop_non_finite"),
            spz_axes=_str(d["spz_axes"], f"{where}.spz_axes"),
            sog_sh_palette=_int(d["sog_sh_palette"], f"{where}.sog_sh_palette"),
        )


@dataclass(frozen=True)
class FinetuneSpec:
    """A fine-tune through the quantized scene on posed photos (``core.splats.finetune``)."""

    dataset: str  # artifact id of a zip/tar archive of posed photos (NeRF-synthetic, instant-ngp or COLMAP)
    steps: int = DEFAULT_FINETUNE_STEPS  # optimizer steps, one photo each, 1..MAX_FINETUNE_STEPS

    def __post_init__(self) -> None:
        _artifact_id(self.dataset, "finetune.dataset")
        v = self.steps
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_FINETUNE_STEPS:
            raise SpecError(f"finetune.steps must be an integer in 1..{MAX_FINETUNE_STEPS}, got {str(v)[:40]!r}")

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "steps": self.steps}

    @classmethod
    def from_json(cls, d: Any, where: str = "finetune") -> FinetuneSpec:
        d = _object(d, where, ("dataset", "steps"))
        return cls(_artifact_id(d["dataset"], f"{where}.dataset"), _int(d["steps"], f"{where}.steps"))


def _dataset_config_from(d: Any, where: str) -> DatasetConfig:
    d = _object(d, where, ("downscale", "background", "test_every", "max_images", "keep_alpha"))
    bg = _floats(d["background"], 3, f"{where}.background")
    cfg = DatasetConfig(
        downscale=_int(d["downscale"], f"{where}.downscale"),
        background=(bg[0], bg[1], bg[2]),
        test_every=_int(d["test_every"], f"{where}.test_every"),
        max_images=_int(d["max_images"], f"{where}.max_images"),
        keep_alpha=_bool(d["keep_alpha"], f"{where}.keep_alpha"),
    )
    _validated_dataset(cfg, where)
    return cfg


def _validated_dataset(cfg: DatasetConfig, where: str) -> None:
    if not isinstance(cfg, DatasetConfig):
        raise SpecError(f"{where} must be a DatasetConfig")
    try:
        cfg.validate()
    except ConfigError as e:
        raise SpecError(f"{where}: {e}") from None


def _dataset_json(cfg: DatasetConfig) -> dict[str, Any]:
    return {"downscale": cfg.downscale, "background": list(cfg.background), "test_every": cfg.test_every,
            "max_images": cfg.max_images, "keep_alpha": cfg.keep_alpha}  # fmt: skip


def _train_config_from(d: Any, where: str) -> TrainConfig:
    if not isinstance(d, Mapping):
        raise SpecError(f"{where} must be a JSON object, got {type(d).__name__}")
    try:
        defaults = asdict(TrainConfig())
        check_spec_fields(d, defaults, where)
        missing = sorted(set(defaults) - set(d))
        if missing:
            raise SpecError(f"{where} lacks {', '.join(missing)}")
        cfg = TrainConfig(**d)
        cfg.validate()
    except ConfigError as e:
        raise SpecError(f"{where}: {e}") from None
    return cfg


# -- the specs --------------------------------------------------------------------------------


class JobSpec:
    """Base of the job specs: ``TYPE`` tags its JSON, ``KIND`` is the job kind it runs as."""

    TYPE: ClassVar[str]
    KIND: ClassVar[JobKind]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.TYPE, **self._fields_json()}

    def _fields_json(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_json(cls: type[S], d: Any) -> S:
        """The spec of a stored JSON object (its "type" must be this class's ``TYPE``)."""
        if not isinstance(d, Mapping):
            raise SpecError(f"a {cls.TYPE} spec must be a JSON object, got {type(d).__name__}")
        if d.get("type") != cls.TYPE:
            raise SpecError(f"spec type {str(d.get('type'))[:40]!r} is not {cls.TYPE!r}")
        return cls._from_fields({k: v for k, v in d.items() if k != "type"})

    @classmethod
    def _from_fields(cls: type[S], d: Mapping[str, Any]) -> S:
        raise NotImplementedError


S = TypeVar("S", bound=JobSpec)


@dataclass(frozen=True)
class QuantizeSplatsSpec(JobSpec):
    """Compact3D quantization of a splat scene -> [<stem>.vqp, report.json]."""

    TYPE: ClassVar[str] = "quantize_splats"
    KIND: ClassVar[JobKind] = JobKind.QUANTIZE
    source: str  # artifact id of the scene (any accepted scene kind)
    config: QuantizeConfig = QuantizeConfig()
    cameras: Cameras | None = None  # views for importance and evaluation; None = the core's default views
    background: RGB | None = None  # evaluation background; None = the core's
    evaluate: bool = True  # render original and quantized scenes to measure PSNR/SSIM
    # then fine-tune the quantized scene on photos (PSNR/SSIM measured on their held-out views instead)
    finetune: FinetuneSpec | None = None

    def __post_init__(self) -> None:
        _artifact_id(self.source, "source")
        if not isinstance(self.config, QuantizeConfig):
            raise SpecError("config must be a QuantizeConfig")
        _check_cameras(self.cameras, required=False)
        _check_rgb(self.background, "background")
        _bool(self.evaluate, "evaluate")
        if self.finetune is not None and not isinstance(self.finetune, FinetuneSpec):
            raise SpecError("finetune must be a FinetuneSpec or None")

    def _fields_json(self) -> dict[str, Any]:
        return {"source": self.source, "config": self.config.as_dict(), "cameras": _cameras_json(self.cameras),
                "background": None if self.background is None else list(self.background),
                "evaluate": self.evaluate,
                "finetune": None if self.finetune is None else self.finetune.to_json()}  # fmt: skip

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> QuantizeSplatsSpec:
        d = _object(d, cls.TYPE, ("source", "config", "cameras", "background", "evaluate", "finetune"))
        return cls(
            source=_artifact_id(d["source"], "source"),
            config=_config(QuantizeConfig.from_dict, d["config"], "config"),
            cameras=_cameras_from(d["cameras"]),
            background=_rgb_from(d["background"], "background"),
            evaluate=_bool(d["evaluate"], "evaluate"),
            finetune=None if d["finetune"] is None else FinetuneSpec.from_json(d["finetune"]),
        )


@dataclass(frozen=True)
class QuantizeFieldSpec(JobSpec):
    """Post-hoc kmVQ or LRA of a field .vqp trained with a dense grid -> [field.vqp, report.json]."""

    TYPE: ClassVar[str] = "quantize_field"
    KIND: ClassVar[JobKind] = JobKind.QUANTIZE
    source: str  # artifact id of the field .vqp
    config: FieldQuantizeConfig = FieldQuantizeConfig()
    cameras: Cameras | None = None  # 3D: views the PSNR against the source field is measured at
    background: RGB | None = None  # 3D: background of those views; None = the field's own

    def __post_init__(self) -> None:
        _artifact_id(self.source, "source")
        if not isinstance(self.config, FieldQuantizeConfig):
            raise SpecError("config must be a FieldQuantizeConfig")
        _check_cameras(self.cameras, required=False)
        _check_rgb(self.background, "background")

    def _fields_json(self) -> dict[str, Any]:
        return {"source": self.source, "config": self.config.as_dict(), "cameras": _cameras_json(self.cameras),
                "background": None if self.background is None else list(self.background)}  # fmt: skip

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> QuantizeFieldSpec:
        d = _object(d, cls.TYPE, ("source", "config", "cameras", "background"))
        return cls(
            source=_artifact_id(d["source"], "source"),
            config=_config(lambda v: FieldQuantizeConfig.from_dict(v, "config"), d["config"], "config"),
            cameras=_cameras_from(d["cameras"]),
            background=_rgb_from(d["background"], "background"),
        )


@dataclass(frozen=True)
class ExportSplatsSpec(JobSpec):
    """A splat scene written in another format -> [<stem>.<format>]."""

    TYPE: ClassVar[str] = "export_splats"
    KIND: ClassVar[JobKind] = JobKind.EXPORT
    source: str  # artifact id of the scene
    format: ExportFormat
    config: QuantizeConfig | None = None  # format "vqp": the quantizer's config (None = defaults)
    options: ExportOptions | None = None  # the other formats: filters and writer choices (None = defaults)

    def __post_init__(self) -> None:
        _artifact_id(self.source, "source")
        _choice(self.format, EXPORT_FORMATS, "format")
        if self.config is not None and not isinstance(self.config, QuantizeConfig):
            raise SpecError("config must be a QuantizeConfig or None")
        if self.options is not None and not isinstance(self.options, ExportOptions):
            raise SpecError("options must be ExportOptions or None")

    def _fields_json(self) -> dict[str, Any]:
        return {"source": self.source, "format": self.format,
                "config": None if self.config is None else self.config.as_dict(),
                "options": None if self.options is None else self.options.to_json()}  # fmt: skip

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> ExportSplatsSpec:
        d = _object(d, cls.TYPE, ("source", "format", "config", "options"))
        return cls(
            source=_artifact_id(d["source"], "source"),
            format=_choice(d["format"], EXPORT_FORMATS, "format"),  # type: ignore[arg-type]
            config=None if d["config"] is None else _config(QuantizeConfig.from_dict, d["config"], "config"),
            options=None if d["options"] is None else ExportOptions.from_json(d["options"]),
        )


@dataclass(frozen=True)
class ExportFieldSpec(JobSpec):
    """A field .vqp decoded and encoded again (fields export to .vqp only) -> [<stem>.vqp]."""

    TYPE: ClassVar[str] = "export_field"
    KIND: ClassVar[JobKind] = JobKind.EXPORT
    source: str  # artifact id of the field .vqp

    def __post_init__(self) -> None:
        _artifact_id(self.source, "source")

    def _fields_json(self) -> dict[str, Any]:
        return {"source": self.source}

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> ExportFieldSpec:
        d = _object(d, cls.TYPE, ("source",))
        return cls(source=_artifact_id(d["source"], "source"))


def outbox_name(index: int, encoding: str) -> str:
    """The file image ``index`` of a streamed render (``stream=True``) is delivered as, in its
    job's outbox (``Settings.outbox_dir / job id``)."""
    return f"{index:04d}.{'png' if encoding == 'png' else 'npy'}"


@dataclass(frozen=True)
class RenderSplatsSpec(JobSpec):
    """Images of a splat scene, one per camera in camera order (PNG, or float32 [H, W, 3] .npy)."""

    TYPE: ClassVar[str] = "render_splats"
    KIND: ClassVar[JobKind] = JobKind.RENDER
    source: str
    cameras: Cameras
    background: RGB = (0.0, 0.0, 0.0)
    encoding: Encoding = "png"
    # True: the images go to the Render call that asked for them (through the data directory's
    # outbox, by a worker of this server), not into the artifact store; False: stored as results.
    stream: bool = False

    def __post_init__(self) -> None:
        _artifact_id(self.source, "source")
        _check_cameras(self.cameras, required=True)
        _check_rgb(self.background, "background")
        _choice(self.encoding, RENDER_ENCODINGS, "encoding")
        _bool(self.stream, "stream")

    def _fields_json(self) -> dict[str, Any]:
        return {"source": self.source, "cameras": _cameras_json(self.cameras), "background": list(self.background),
                "encoding": self.encoding, "stream": self.stream}  # fmt: skip

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> RenderSplatsSpec:
        d = _object(d, cls.TYPE, ("source", "cameras", "background", "encoding"), ("stream",))
        return cls(
            source=_artifact_id(d["source"], "source"),
            cameras=_cameras_from(d["cameras"]) or (),
            background=_rgb_from(d["background"], "background") or (0.0, 0.0, 0.0),
            encoding=_choice(d["encoding"], RENDER_ENCODINGS, "encoding"),  # type: ignore[arg-type]
            stream=_bool(d.get("stream", False), "stream"),
        )


@dataclass(frozen=True)
class RenderFieldSpec(JobSpec):
    """Images of a field .vqp: 3D fields volume-rendered at each camera, 2D fields at each camera's size."""

    TYPE: ClassVar[str] = "render_field"
    KIND: ClassVar[JobKind] = JobKind.RENDER
    source: str
    cameras: Cameras
    background: RGB | None = None  # None: the background the field was trained on
    encoding: Encoding = "png"
    # True: the images go to the Render call that asked for them (through the data directory's
    # outbox, by a worker of this server), not into the artifact store; False: stored as results.
    stream: bool = False

    def __post_init__(self) -> None:
        _artifact_id(self.source, "source")
        _check_cameras(self.cameras, required=True)
        _check_rgb(self.background, "background")
        _choice(self.encoding, RENDER_ENCODINGS, "encoding")
        _bool(self.stream, "stream")

    def _fields_json(self) -> dict[str, Any]:
        return {"source": self.source, "cameras": _cameras_json(self.cameras),
                "background": None if self.background is None else list(self.background),
                "encoding": self.encoding, "stream": self.stream}  # fmt: skip

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> RenderFieldSpec:
        d = _object(d, cls.TYPE, ("source", "cameras", "background", "encoding"), ("stream",))
        return cls(
            source=_artifact_id(d["source"], "source"),
            cameras=_cameras_from(d["cameras"]) or (),
            background=_rgb_from(d["background"], "background"),
            encoding=_choice(d["encoding"], RENDER_ENCODINGS, "encoding"),  # type: ignore[arg-type]
            stream=_bool(d.get("stream", False), "stream"),
        )


@dataclass(frozen=True)
class TrainSplatsSpec(JobSpec):
    """QAT training of a splat scene from posed photos -> [scene.vqp, scene.ply, report.json]."""

    TYPE: ClassVar[str] = "train_splats"
    KIND: ClassVar[JobKind] = JobKind.TRAIN_SPLATS
    dataset: str  # artifact id of a zip/tar archive (NeRF-synthetic, instant-ngp or COLMAP)
    config: SplatTrainConfig = SplatTrainConfig()
    init: str | None = None  # artifact id of a splat scene to fine-tune instead of initializing
    dataset_options: DatasetConfig = DatasetConfig()  # how the photos are read (downscale, background, split)

    def __post_init__(self) -> None:
        _artifact_id(self.dataset, "dataset")
        if not isinstance(self.config, SplatTrainConfig):
            raise SpecError("config must be a SplatTrainConfig")
        if self.init is not None:
            _artifact_id(self.init, "init")
        _validated_dataset(self.dataset_options, "dataset_options")

    def _fields_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "config": self.config.as_dict(), "init": self.init,
                "dataset_options": _dataset_json(self.dataset_options)}  # fmt: skip

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> TrainSplatsSpec:
        # dataset_options is optional: a job queued before it existed reads the photos at the defaults
        d = _object(d, cls.TYPE, ("dataset", "config", "init"), ("dataset_options",))
        options = d.get("dataset_options")
        return cls(
            dataset=_artifact_id(d["dataset"], "dataset"),
            config=_config(SplatTrainConfig.from_dict, d["config"], "config"),
            init=None if d["init"] is None else _artifact_id(d["init"], "init"),
            dataset_options=DatasetConfig() if options is None else _dataset_config_from(options, "dataset_options"),
        )


@dataclass(frozen=True)
class TrainFieldSpec(JobSpec):
    """Training of a neural field: a 2D image field from one image, a 3D radiance field from posed
    photos (``config.dims``, decided at the RPC from the dataset's content) -> [field.vqp,
    report.json] (+ preview.png for 2D fields)."""

    TYPE: ClassVar[str] = "train_field"
    KIND: ClassVar[JobKind] = JobKind.TRAIN_FIELD
    dataset: str  # artifact id: a PNG/JPEG image (dims 2) or a zip/tar archive of posed photos (dims 3)
    config: FieldConfig
    train: TrainConfig
    dataset_options: DatasetConfig = DatasetConfig()

    def __post_init__(self) -> None:
        _artifact_id(self.dataset, "dataset")
        if not isinstance(self.config, FieldConfig) or not isinstance(self.train, TrainConfig):
            raise SpecError("config must be a FieldConfig and train a TrainConfig")
        try:
            self.config.validate()
            self.train.validate()
        except ConfigError as e:
            raise SpecError(str(e)) from None
        _validated_dataset(self.dataset_options, "dataset_options")

    @property
    def dims(self) -> int:
        return self.config.dims

    def _fields_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "config": field_config_to_dict(self.config), "train": asdict(self.train),
                "dataset_options": _dataset_json(self.dataset_options)}  # fmt: skip

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> TrainFieldSpec:
        d = _object(d, cls.TYPE, ("dataset", "config", "train", "dataset_options"))
        return cls(
            dataset=_artifact_id(d["dataset"], "dataset"),
            config=_config(field_config_from_dict, d["config"], "config"),
            train=_train_config_from(d["train"], "train"),
            dataset_options=_dataset_config_from(d["dataset_options"], "dataset_options"),
        )


@dataclass(frozen=True)
class BuildFieldSpec(JobSpec):
    """A neural field sent inline (config + state-dict tensors) built and encoded -> [inline-field.vqp].

    The tensors are an npz artifact of the named arrays; the RPC waits for this job and uses its
    result as the source of the job the request asked for."""

    TYPE: ClassVar[str] = "build_field"
    KIND: ClassVar[JobKind] = JobKind.BUILD_FIELD
    tensors: str  # artifact id of an npz holding the field's state dict, one array per tensor name
    config: Mapping[str, Any]  # {"grid": {"kind", set fields}, "decoder": {set fields}}; dims follow the tensors

    def __post_init__(self) -> None:
        _artifact_id(self.tensors, "tensors")
        _object(self.config, "config", (), ("grid", "decoder"))

    def _fields_json(self) -> dict[str, Any]:
        return {"tensors": self.tensors, "config": dict(self.config)}

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> BuildFieldSpec:
        d = _object(d, cls.TYPE, ("tensors", "config"))
        config = _object(d["config"], "config", (), ("grid", "decoder"))
        return cls(tensors=_artifact_id(d["tensors"], "tensors"), config=config)


SPEC_TYPES: tuple[type[JobSpec], ...] = (
    QuantizeSplatsSpec,
    QuantizeFieldSpec,
    ExportSplatsSpec,
    ExportFieldSpec,
    RenderSplatsSpec,
    RenderFieldSpec,
    TrainSplatsSpec,
    TrainFieldSpec,
    BuildFieldSpec,
)
_BY_TYPE = {cls.TYPE: cls for cls in SPEC_TYPES}


def spec_from_json(d: Any, kind: JobKind | None = None) -> JobSpec:
    """The spec a job table row stores (``to_json`` of one of ``SPEC_TYPES``); with ``kind``, the
    spec must be one that runs as that job kind."""
    if not isinstance(d, Mapping):
        raise SpecError(f"a job spec must be a JSON object, got {type(d).__name__}")
    if "type" not in d:
        raise SpecError(f'a job spec names its "type" (one of {sorted(_BY_TYPE)}); this one has none')
    cls = _BY_TYPE.get(d["type"])
    if cls is None:
        raise SpecError(f"unknown job spec type {str(d.get('type'))[:40]!r}; known: {sorted(_BY_TYPE)}")
    if kind is not None and cls.KIND is not kind:
        raise SpecError(f"a {cls.TYPE} spec runs as a {cls.KIND.value} job, not {kind.value}")
    return cls.from_json(d)


__all__ = [
    "EXPORT_FORMATS",
    "MAX_RENDER_CAMERAS",
    "RENDER_ENCODINGS",
    "SPEC_TYPES",
    "BuildFieldSpec",
    "CameraSpec",
    "ExportFieldSpec",
    "ExportOptions",
    "ExportSplatsSpec",
    "FinetuneSpec",
    "JobSpec",
    "QuantizeFieldSpec",
    "QuantizeSplatsSpec",
    "RenderFieldSpec",
    "RenderSplatsSpec",
    "SpecError",
    "TrainFieldSpec",
    "TrainSplatsSpec",
    "outbox_name",
    "spec_from_json",
]

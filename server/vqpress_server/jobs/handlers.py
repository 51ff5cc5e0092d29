"""One handler per job kind: read the spec, run the core, leave result files in scratch.

Specs (JSON dicts built by the RPC layer; every field is untrusted):

- quantize: {"source": {"artifact": id}, "config": {QuantizeConfig fields} | null,
  "cameras": [camera dict] | null, "background": [r, g, b] | null}
  -> results [<stem>.vqp, report.json]; metrics ratio, psnr, ssim, output_bytes, seconds.
- export: {"source", "format": "ply" | "splat" | "spz" | "vqp", "config": {...} | null}
  -> results [<stem>.<format>]; metrics output_bytes, num_gaussians, seconds.
- render: {"source", "cameras": [camera dict], "background": [r, g, b] | null, "encoding": "png" | "float32"}
  -> one result per camera, in camera order: PNG, or .npy of float32 [H, W, 3] (np.save).

A camera dict is {"viewmat": 16 floats row-major, "K": 9 floats row-major, "width", "height", "name"}.

A source that is a neural-field .vqp (container kind "field", read from its header) goes to
field_handler.py, as does a quantize spec with a "field" key; train_splats jobs run in
train_handler.py, train_field jobs in field_handler.py.
Handlers import the core lazily so the worker module stays importable without torch.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import Cancelled, ConfigError, VqpressInputError
from .context import JobContext, Source, safe_name
from .model import JobKind
from .train_handler import run_train_splats

if TYPE_CHECKING:
    from ..core.render.cameras import Camera
    from ..core.splats.quantize_config import QuantizeConfig

MAX_RENDER_CAMERAS = 4096  # cameras one render job may ask for
EXPORT_FORMATS = ("ply", "compressed_ply", "splat", "spz", "sog", "vqp")
_EXPORT_SUFFIX = {"compressed_ply": "compressed.ply"}  # the others are their names
RENDER_ENCODINGS = ("png", "float32")


@dataclass(frozen=True)
class Output:
    """A result file a handler produced; the worker stores it as an artifact."""

    path: Path
    name: str
    kind: str


@dataclass
class HandlerResult:
    outputs: list[Output]
    metrics: dict[str, float] = field(default_factory=dict)


Handler = Callable[[JobContext, Mapping[str, Any]], HandlerResult]


# -- spec parsing ----------------------------------------------------------------------
def quantize_config(value: Any) -> QuantizeConfig:
    """A QuantizeConfig from a spec's dict of its fields (``"preset"`` picks the base); None = defaults."""
    from ..core.splats.quantize_config import QuantizeConfig

    if value is None:
        return QuantizeConfig()
    if not isinstance(value, Mapping):
        raise ConfigError(f"config must be an object of QuantizeConfig fields, got {type(value).__name__}")
    return QuantizeConfig.from_preset(**dict(value))


def cameras(value: Any, *, required: bool) -> list[Camera] | None:
    from ..core.budgets import check_pixels
    from ..core.render.cameras import camera_from_dict

    if not required and (value is None or value == []):
        return None  # none given: the core picks its default views
    if not isinstance(value, list) or (required and not value):
        raise VqpressInputError("cameras must be a non-empty list of camera objects")
    if len(value) > MAX_RENDER_CAMERAS:
        raise VqpressInputError(f"{len(value)} cameras requested; at most {MAX_RENDER_CAMERAS} per job")
    out = []
    for i, d in enumerate(value):
        if not isinstance(d, Mapping):
            raise VqpressInputError(f"camera {i} must be an object, got {type(d).__name__}")
        try:
            out.append(camera_from_dict(d))
        except VqpressInputError as e:
            raise VqpressInputError(f"camera {i}: {e}") from None
    check_pixels([(c.width, c.height) for c in out], "cameras")
    return out


def background(value: Any) -> tuple[float, float, float] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list | tuple)
        or len(value) != 3
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        raise VqpressInputError(f"background must be 3 finite numbers [r, g, b], got {str(value)[:80]}")
    return (float(value[0]), float(value[1]), float(value[2]))


def _choice(spec: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str | None = None) -> str:
    value = spec.get(key, default)
    if value not in choices:
        raise VqpressInputError(f"{key} must be one of {list(choices)}, got {str(value)[:40]!r}")
    return str(value)


# -- handlers --------------------------------------------------------------------------
def run_quantize(ctx: JobContext, spec: Mapping[str, Any]) -> HandlerResult:
    src = ctx.source(spec.get("source"))
    if spec.get("field") is not None or is_field_source(src):
        from .field_handler import run_quantize_field

        return run_quantize_field(ctx, spec, src)
    from ..core.splats.compress import compress_file

    config = quantize_config(spec.get("config"))
    cams = cameras(spec.get("cameras"), required=False)
    bg = background(spec.get("background"))
    evaluate = spec.get("evaluate", True)
    if not isinstance(evaluate, bool):
        raise VqpressInputError(f"evaluate must be true or false, got {str(evaluate)[:40]}")
    scene = ctx.scene_file(src)
    ctx.check_cancelled()
    t0 = time.perf_counter()
    dst = ctx.scratch / f"{src.stem}.vqp"
    evaluating = False

    def progress(stage: str, fraction: float, metrics: Mapping[str, float] | None = None) -> None:
        # Once the .vqp is written and its evaluation renders run, a cancel stops the renders only:
        # the finished .vqp is the result, with a report that says the evaluation was cancelled.
        nonlocal evaluating
        evaluating = evaluating or (stage == "evaluate" and dst.exists())
        try:
            ctx.progress(stage, fraction, metrics)
        except Cancelled:
            if evaluating:
                raise _EvaluationCancelled from None
            raise

    try:
        with src.named_errors():
            report = compress_file(
                scene, dst, config, cameras=cams, background=bg, evaluate=evaluate, device=ctx.device,
                progress=progress,
            )  # fmt: skip
        rep = report.as_dict()
        ctx.check_cancelled()
    except _EvaluationCancelled:
        rep = _vqp_only_report(scene, dst)
    seconds = time.perf_counter() - t0
    # The paths are the worker's scratch files: name the files as the client knows them instead.
    rep["input_path"], rep["output_path"] = Path(src.info.name.replace("\\", "/")).name, dst.name
    report_path = ctx.scratch / "report.json"
    report_path.write_text(json.dumps(rep, indent=2, default=str))
    metrics = {"seconds": seconds, "output_bytes": float(dst.stat().st_size)}
    for key in ("ratio", "psnr", "ssim"):
        if isinstance(rep.get(key), int | float):
            metrics[key] = float(rep[key])
    return HandlerResult([Output(dst, dst.name, "vqp"), Output(report_path, "report.json", "json")], metrics)


class _EvaluationCancelled(Exception):
    """Cancelled after the .vqp was written, while its quality was being measured."""


def _vqp_only_report(scene: Path, dst: Path) -> dict[str, Any]:
    """The report of a .vqp whose evaluation was cancelled: sizes and counts, no quality."""
    from vqpress.vqp import read_vqp

    data = dst.read_bytes()
    vqp = read_vqp(data, name=dst.name)
    input_bytes = scene.stat().st_size
    return {
        "input_bytes": input_bytes,
        "output_bytes": len(data),
        "ratio": input_bytes / max(1, len(data)),
        "num_gaussians": vqp.manifest.get("num_gaussians"),
        "sh_degree": vqp.manifest.get("sh_degree"),
        "section_bytes": dict(vqp.section_bytes),
        "psnr": None,
        "ssim": None,
        "evaluation": "cancelled",
    }


def run_export(ctx: JobContext, spec: Mapping[str, Any]) -> HandlerResult:
    fmt = _choice(spec, "format", EXPORT_FORMATS)
    src = ctx.source(spec.get("source"))
    if is_field_source(src):
        from .field_handler import run_export_field

        return run_export_field(ctx, spec, src)
    t0 = time.perf_counter()
    dst = ctx.scratch / f"{src.stem}.{_EXPORT_SUFFIX.get(fmt, fmt)}"
    metrics: dict[str, float] = {}
    if fmt == "vqp":
        from ..core.splats.compress import compress_file

        config = quantize_config(spec.get("config"))
        scene = ctx.scene_file(src)
        ctx.check_cancelled()
        with src.named_errors():
            report = compress_file(scene, dst, config, evaluate=False, device=ctx.device, progress=ctx.progress)
        metrics["num_gaussians"] = float(report.as_dict().get("num_gaussians", 0))
    else:
        from ..core.splats.formats import export_splats

        filters, options = _export_options(spec.get("options"))
        ctx.progress("read", 0.0)
        splats = ctx.load_splats(src, repair=not filters.drop_non_finite)
        ctx.progress("write", 0.5)
        _, rep = export_splats(splats, dst, fmt, filters=filters, options=options)  # type: ignore[arg-type]
        metrics["num_gaussians"] = float(rep.kept)
        metrics.update(
            {f"dropped_{k}": float(v) for k, v in rep.as_dict().items() if k not in ("kept", "sh_degree") and v}
        )
    ctx.check_cancelled()
    metrics.update(output_bytes=float(dst.stat().st_size), seconds=time.perf_counter() - t0)
    return HandlerResult([Output(dst, dst.name, fmt)], metrics)


def _export_options(opts: Mapping[str, Any] | None) -> tuple[Any, Any]:
    """core's ExportFilter and WriteOptions from an export spec's "options" (rpc.convert.export_options)."""
    from ..core.splats.formats import ExportFilter, SogConfig, WriteOptions

    o = dict(opts or {})
    box_min, box_max = o.get("box_min"), o.get("box_max")
    filters = ExportFilter(
        sh_degree=o.get("sh_degree"),
        min_opacity=float(o.get("min_opacity", 0.0)),
        box_min=tuple(box_min) if box_min else None,
        box_max=tuple(box_max) if box_max else None,
        drop_non_finite=bool(o.get("drop_non_finite", False)),
    )
    options = WriteOptions(spz_axes=o.get("spz_axes", "ply"), sog=SogConfig(sh_palette=int(o.get("sog_sh_palette", 0))))
    return filters, options


def run_render(ctx: JobContext, spec: Mapping[str, Any]) -> HandlerResult:
    from ..core.render.splats import render

    src = ctx.source(spec.get("source"))
    if is_field_source(src):
        from .field_handler import run_render_field

        return run_render_field(ctx, spec, src)
    cams = cameras(spec.get("cameras"), required=True)
    assert cams is not None
    bg = background(spec.get("background")) or (0.0, 0.0, 0.0)
    encoding = _choice(spec, "encoding", RENDER_ENCODINGS, default="png")
    t0 = time.perf_counter()
    splats = ctx.warm.scene(src.id, lambda: ctx.load_splats(src))
    outputs = []
    n = len(cams)
    for i, cam in enumerate(cams):
        ctx.progress(f"render {i + 1}/{n}", i / n)
        outputs.append(save_view(ctx, i, cam, render(splats, cam, background=bg), encoding))
    ctx.progress("render", 1.0)
    seconds = time.perf_counter() - t0
    return HandlerResult(outputs, {"seconds": seconds, "images": float(n)})


def render_encoding(spec: Mapping[str, Any]) -> str:
    """The spec's "encoding": "png" (default) or "float32"."""
    return _choice(spec, "encoding", RENDER_ENCODINGS, default="png")


def save_view(ctx: JobContext, index: int, cam: Camera, img: Any, encoding: str) -> Output:  # img [H, W, 3]
    """Write one rendered view into scratch as ``<index>_<camera name>.png`` or ``.npy`` (float32)."""
    import numpy as np
    import torch

    stem = f"{index:04d}" + (f"_{safe_name(cam.name)}" if safe_name(cam.name) else "")
    if encoding == "png":
        from ..core.render.images import save_png

        path = ctx.scratch / f"{stem}.png"
        save_png(img, path)
        return Output(path, path.name, "png")
    path = ctx.scratch / f"{stem}.npy"
    np.save(path, img.detach().to("cpu", torch.float32).numpy())
    return Output(path, path.name, "npy")


def is_field_source(src: Source) -> bool:
    """Whether a source is a neural-field .vqp (read from the container header, not the whole file)."""
    return src.kind == "vqp" and vqp_container_kind(src.path) == "field"


def vqp_container_kind(path: Path) -> str | None:
    """The ``kind`` of a .vqp container ("splats", "field"), reading only its header and manifest;
    None when the file is not a readable .vqp (the full reader then reports what is wrong)."""
    from vqpress.vqp import VqpFormatError, read_header

    try:
        return read_header(path).kind
    except VqpFormatError:
        return None


def _train_field(ctx: JobContext, spec: Mapping[str, Any]) -> HandlerResult:
    from .field_handler import run_train_field  # here: field_handler.py imports this module

    return run_train_field(ctx, spec)


HANDLERS: dict[JobKind, Handler] = {
    JobKind.QUANTIZE: run_quantize,
    JobKind.EXPORT: run_export,
    JobKind.RENDER: run_render,
    JobKind.TRAIN_SPLATS: run_train_splats,
    JobKind.TRAIN_FIELD: _train_field,
}

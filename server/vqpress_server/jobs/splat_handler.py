"""Splat-scene jobs: quantize, export and render a Gaussian splat scene (``jobs/specs.py`` says what each takes).

- QuantizeSplatsSpec -> results [<stem>.vqp, report.json]; metrics ratio, psnr, ssim, output_bytes, seconds.
  With ``finetune``, the quantized scene is then fine-tuned on the dataset's photos (indices fixed,
  ``core.splats.finetune``), and PSNR/SSIM are those of the fine-tuned .vqp on the held-out photos
  (the report's "finetune" has them before and after).
- ExportSplatsSpec -> results [<stem>.<format>]; metrics output_bytes, num_gaussians, seconds.
- RenderSplatsSpec -> one result per camera, in camera order: PNG, or .npy of float32 [H, W, 3] (np.save);
  metrics seconds, images, render_s and encode_s (the renders and the image files, summed over cameras).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from vqpress.vqp import read_vqp

from ..core.errors import Cancelled
from ..core.render.cameras import Camera, camera_from_dict
from ..core.render.splats import render
from ..core.splats.compress import compress_file
from ..core.splats.finetune import FinetuneConfig, finetune_vqp
from ..core.splats.formats import ExportFilter, SogConfig, WriteOptions, export_splats
from ..core.splats.quantize_config import QuantizeConfig
from .context import JobContext
from .results import HandlerResult, Output, save_view
from .specs import CameraSpec, ExportOptions, ExportSplatsSpec, QuantizeSplatsSpec, RenderSplatsSpec
from .train_handler import open_dataset

_EXPORT_SUFFIX = {"compressed_ply": "compressed.ply"}  # the other formats are their names


def core_cameras(cams: tuple[CameraSpec, ...] | None) -> list[Camera] | None:
    """The core's cameras of a spec's (None stays None: the core picks its default views)."""
    return None if cams is None else [camera_from_dict(c.to_json()) for c in cams]


def run_quantize_splats(ctx: JobContext, spec: QuantizeSplatsSpec) -> HandlerResult:
    src = ctx.source(spec.source)
    scene = ctx.scene_file(src)
    dataset = None
    if spec.finetune is not None:
        ctx.progress("dataset", 0.0)
        dataset = open_dataset(ctx, spec.finetune.dataset)
    ctx.check_cancelled()
    t0 = time.perf_counter()
    dst = ctx.scratch / f"{src.stem}.vqp"
    evaluating = False
    share = 1.0 if dataset is None else 0.3  # of the progress bar: the quantizer's, then the fine-tune's

    def progress(stage: str, fraction: float, metrics: Mapping[str, float] | None = None) -> None:
        # Once the .vqp is written and its evaluation renders run, a cancel stops the renders only:
        # the finished .vqp is the result, with a report that says the evaluation was cancelled.
        nonlocal evaluating
        evaluating = evaluating or (stage == "evaluate" and dst.exists())
        try:
            ctx.progress(stage, share * fraction, metrics)
        except Cancelled:
            if evaluating:
                raise _EvaluationCancelled from None
            raise

    try:
        with src.named_errors():
            report = compress_file(
                scene, dst, spec.config, cameras=core_cameras(spec.cameras), background=spec.background,
                evaluate=spec.evaluate and dataset is None, device=ctx.device, progress=progress,
            )  # fmt: skip
        rep = report.as_dict()
        ctx.check_cancelled()
    except _EvaluationCancelled:
        rep = _vqp_only_report(scene, dst)
    if dataset is not None:
        assert spec.finetune is not None
        rep = _finetuned(ctx, dst, dataset, spec, rep)
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


def _finetuned(
    ctx: JobContext, dst: Path, dataset: Any, spec: QuantizeSplatsSpec, rep: dict[str, Any]
) -> dict[str, Any]:
    """Fine-tune the .vqp at ``dst`` on ``dataset`` in place; the quantize report, updated."""
    assert spec.finetune is not None

    def progress(stage: str, fraction: float, metrics: Mapping[str, float] | None = None) -> None:
        ctx.progress("finetune", 0.3 + 0.7 * fraction, metrics)

    config = FinetuneConfig(steps=spec.finetune.steps, seed=spec.config.seed)
    vqp, ft = finetune_vqp(dst.read_bytes(), dataset, config, progress=progress, device=ctx.device)
    dst.write_bytes(vqp)
    sections = dict(read_vqp(vqp, name=dst.name).section_bytes)
    n = max(1, int(rep["num_gaussians"] or 0))
    return {
        **rep,
        "output_bytes": len(vqp),
        "ratio": int(rep["input_bytes"]) / max(1, len(vqp)),
        "section_bytes": sections,
        "bits_per_gaussian": {**{k: 8.0 * v / n for k, v in sections.items()}, "total": 8.0 * len(vqp) / n},
        # What the user gets, on photos the fine-tune did not train on (the training photos when none
        # is held out): the decoded fine-tuned .vqp, and before it the post-hoc one.
        "psnr": ft["psnr"],
        "ssim": ft["ssim"],
        "psnr_reference": f"the dataset's {ft['eval_split']} photos ({ft['num_eval_views']})",
        "finetune": {
            "steps": config.steps,
            "seconds": ft["finetune_seconds"],
            "psnr_before": ft["psnr_before"],
            "ssim_before": ft["ssim_before"],
            "loss_first": ft["finetune_loss_first"],
            "loss_last": ft["finetune_loss_last"],
            "eval_split": ft["eval_split"],
            "num_eval_views": ft["num_eval_views"],
        },
    }


class _EvaluationCancelled(Exception):
    """Cancelled after the .vqp was written, while its quality was being measured."""


def _vqp_only_report(scene: Path, dst: Path) -> dict[str, Any]:
    """The report of a .vqp whose evaluation was cancelled: sizes and counts, no quality."""
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


def run_export_splats(ctx: JobContext, spec: ExportSplatsSpec) -> HandlerResult:
    src = ctx.source(spec.source)
    fmt = spec.format
    t0 = time.perf_counter()
    dst = ctx.scratch / f"{src.stem}.{_EXPORT_SUFFIX.get(fmt, fmt)}"
    metrics: dict[str, float] = {}
    if fmt == "vqp":
        scene = ctx.scene_file(src)
        ctx.check_cancelled()
        with src.named_errors():
            config = spec.config if spec.config is not None else QuantizeConfig()
            report = compress_file(scene, dst, config, evaluate=False, device=ctx.device, progress=ctx.progress)
        metrics["num_gaussians"] = float(report.as_dict().get("num_gaussians", 0))
    else:
        filters, options = _export_options(spec.options or ExportOptions())
        ctx.progress("read", 0.0)
        splats = ctx.load_splats(src, repair=not filters.drop_non_finite)
        ctx.progress("write", 0.5)
        _, rep = export_splats(splats, dst, fmt, filters=filters, options=options)
        metrics["num_gaussians"] = float(rep.kept)
        metrics.update(
            {f"dropped_{k}": float(v) for k, v in rep.as_dict().items() if k not in ("kept", "sh_degree") and v}
        )
    ctx.check_cancelled()
    metrics.update(output_bytes=float(dst.stat().st_size), seconds=time.perf_counter() - t0)
    return HandlerResult([Output(dst, dst.name, fmt)], metrics)


def _export_options(o: ExportOptions) -> tuple[ExportFilter, WriteOptions]:
    """core's ExportFilter and WriteOptions of a spec's ExportOptions."""
    filters = ExportFilter(
        sh_degree=o.sh_degree, min_opacity=o.min_opacity, box_min=o.box_min, box_max=o.box_max,
        drop_non_finite=o.drop_non_finite,
    )  # fmt: skip
    return filters, WriteOptions(spz_axes=o.spz_axes, sog=SogConfig(sh_palette=o.sog_sh_palette))  # type: ignore[arg-type]


def run_render_splats(ctx: JobContext, spec: RenderSplatsSpec) -> HandlerResult:
    src = ctx.source(spec.source)
    cams = core_cameras(spec.cameras) or []
    t0 = time.perf_counter()
    splats = ctx.warm.scene(src.id, lambda: ctx.load_splats(src))
    outputs = []
    n = len(cams)
    render_s = encode_s = 0.0  # where the call's time goes (the Render RPC's overhead is the rest)
    for i, cam in enumerate(cams):
        ctx.progress(f"render {i + 1}/{n}", i / n)
        t1 = time.perf_counter()
        img = render(splats, cam, background=spec.background)
        if img.is_cuda:
            torch.cuda.synchronize(img.device)  # the encode reads it back anyway
        t2 = time.perf_counter()
        outputs.append(save_view(ctx, i, spec.cameras[i], img, spec.encoding))
        render_s, encode_s = render_s + t2 - t1, encode_s + time.perf_counter() - t2
    ctx.progress("render", 1.0)
    metrics = {"seconds": time.perf_counter() - t0, "images": float(n), "render_s": render_s, "encode_s": encode_s}
    return HandlerResult(outputs, metrics)


__all__ = ["core_cameras", "run_export_splats", "run_quantize_splats", "run_render_splats"]

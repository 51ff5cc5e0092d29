"""Neural-field jobs: train a field, and quantize, render, export or build one (``jobs/specs.py``).

- TrainFieldSpec -> results [field.vqp, report.json] (+ preview.png for 2D fields); metrics psnr,
  ssim, vqp_bytes, bits_per_vertex, seconds (and resumed_from_step after a resume). Progress
  metrics carry step, loss and psnr (of the training batch).
- QuantizeFieldSpec (a field trained with a dense grid) -> results [field.vqp, report.json].
- RenderFieldSpec: one image per camera, as ``core.fields.evaluate.field_view`` sees the field.
- ExportFieldSpec: the field decoded and encoded again -> [<stem>.vqp].
- BuildFieldSpec: a field sent inline (config + state-dict tensors) -> [inline-field.vqp].

Training writes ``field.pt`` (``{config, state, step}`` plus what identifies the job's run) into the
job's checkpoint folder every tenth of the run, from inside the training loop, so the schedules that
depend on the run's length (the soft-to-hard anneal, sparse allocation) are those of an
uninterrupted run; a re-run of the job after its worker died resumes there and reports
``resumed_from_step``.

What the 2D report's PSNR/SSIM compare: the decoded field.vqp against the training image. 3D: the
decoded field's renders against the held-out photos (every ``test_every``-th; the training photos
when none is held out).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ..core.checkpoint import load_checkpoint, save_checkpoint
from ..core.data import PosedImageDataset, open_dataset_archive
from ..core.data.dataset import load_image
from ..core.fields.config import FieldConfig, TrainConfig, VqadGridConfig, field_config_to_dict, grid_kind
from ..core.fields.evaluate import MAX_EVAL_VIEWS, compare_fields, field_view, occupancy, score_image, score_views
from ..core.fields.inline import field_from_tensors
from ..core.fields.manifest import FieldExtra
from ..core.fields.model import NeuralField
from ..core.fields.posthoc import kmvq_field, lra_field
from ..core.fields.serialize import decode_field, encode_field, field_report
from ..core.fields.train import CheckpointHook, FitResult, SceneBox, fit_image, fit_radiance
from ..core.progress import Progress
from ..core.render.images import save_png
from .context import JobContext, Source, artifact_errors
from .results import HandlerResult, Output, save_view
from .specs import BuildFieldSpec, ExportFieldSpec, QuantizeFieldSpec, RenderFieldSpec, TrainFieldSpec
from .splat_handler import core_cameras
from .train_handler import MAX_ARCHIVE_BYTES, MAX_ARCHIVE_FILES, dataset_file

CHECKPOINT_NAME = "field.pt"
CHECKPOINT_FORMAT = 2  # 2: sparse VQ-AD state and unbounded boxes; older checkpoints start over
CHECKPOINTS_PER_RUN = 10  # a checkpoint every tenth of the run (rounded up to a multiple of log_every)
TRAIN_SHARE = 0.95  # progress fraction of TRAIN_FIELD spent training; evaluation takes the rest


# -- checkpoints ---------------------------------------------------------------------------
def checkpoint_interval(train: TrainConfig) -> int:
    """Steps between checkpoints: a tenth of the run, rounded up to a multiple of log_every."""
    every = math.ceil(train.steps / CHECKPOINTS_PER_RUN)
    return max(train.log_every, math.ceil(every / train.log_every) * train.log_every)


FitFn = Callable[[dict[str, Any] | None, Callable[..., None], Callable[[FitResult], None], int], FitResult]


def fit_with_checkpoints(
    ctx: JobContext, fit: FitFn, train: TrainConfig, run: dict[str, Any]
) -> tuple[FitResult, int | None]:
    """Train once, checkpointing every ``checkpoint_interval`` steps from the training loop and
    resuming from the job's last checkpoint. ``fit(resume, progress, on_checkpoint, every)`` runs
    the fit. Returns (result with the whole run's history and time, resumed-from step)."""
    path = ctx.checkpoint_dir / CHECKPOINT_NAME
    ck = load_checkpoint(path, format=CHECKPOINT_FORMAT, run=run)
    resume = {k: ck[k] for k in ("config", "state", "step")} if ck else None
    resumed_from = int(ck["step"]) if ck else None
    history: list[dict[str, float]] = list(ck["history"]) if ck else []
    train_time = float(ck["train_time_s"]) if ck else 0.0
    peak = ck.get("peak_memory_bytes") if ck else None
    if resumed_from is not None:
        share = TRAIN_SHARE * resumed_from / train.steps
        ctx.progress("train_field", share, {"step": float(resumed_from), "resumed_from_step": float(resumed_from)})

    stage_now = ["train_field"]  # the training stage a checkpoint is taken in

    def report(stage: str, fraction: float, metrics: Mapping[str, float] | None) -> None:
        done = round(fraction * train.steps)
        stage_now[0] = stage
        ctx.progress(stage, TRAIN_SHARE * fraction, {**(metrics or {}), "step": float(done)})

    def save(res: FitResult) -> None:
        top = max(peak or 0, res.peak_memory_bytes or 0) or None  # None on CPU
        save_checkpoint(
            path,
            {
                **res.checkpoint(),
                "format": CHECKPOINT_FORMAT,
                "run": run,
                "history": history + res.history,
                "train_time_s": train_time + res.train_time_s,
                "peak_memory_bytes": top,
            },
        )
        # A checkpoint is a moment within a stage, not a stage: the stage shown stays the training one.
        ctx.progress(stage_now[0], TRAIN_SHARE * res.step / train.steps, {"checkpoint_step": float(res.step)})

    res = fit(resume, report, save, checkpoint_interval(train))
    res.history = history + res.history
    res.train_time_s += train_time
    if peak is not None:
        res.peak_memory_bytes = max(peak, res.peak_memory_bytes or 0)
    return res, resumed_from


# -- TRAIN_FIELD -------------------------------------------------------------------------
def _method(cfg: FieldConfig) -> str:
    return f"vqad b={cfg.grid.bits}" if isinstance(cfg.grid, VqadGridConfig) else grid_kind(cfg.grid)


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def run_train_field(ctx: JobContext, spec: TrainFieldSpec) -> HandlerResult:
    """Run a TRAIN_FIELD job (see the module docstring for the results)."""
    path, name = dataset_file(ctx, spec.dataset)
    cfg, train, data_cfg, dims = spec.config, spec.train, spec.dataset_options, spec.dims
    t0 = time.perf_counter()
    ctx.progress("dataset", 0.0)
    run = {
        "dataset": spec.dataset,
        "field": field_config_to_dict(cfg),
        "train": dataclasses.asdict(train),
        "dataset_options": dataclasses.asdict(data_cfg),
    }
    image: torch.Tensor | None = None
    ds: PosedImageDataset | None = None
    if dims == 2:
        with artifact_errors(path, name):
            image = load_image(path, data_cfg.background, data_cfg.downscale, path, "dataset")  # [H, W, 3]
        img = image

        def fit(resume: dict[str, Any] | None, progress: Progress, hook: CheckpointHook, every: int) -> FitResult:
            return fit_image(
                img, cfg, train, device=ctx.device, progress=progress, resume=resume, on_checkpoint=hook,
                checkpoint_every=every,
            )  # fmt: skip

    else:
        with artifact_errors(path, name):
            ds = open_dataset_archive(
                path, ctx.scratch / "dataset", max_bytes=MAX_ARCHIVE_BYTES, max_files=MAX_ARCHIVE_FILES, config=data_cfg
            )
        # Object captures on a transparent background (NeRF-synthetic) are bounded; photos of real
        # places (instant-ngp, COLMAP) see the room around the object, so the field is unbounded.
        box = SceneBox.from_cameras(ds.cameras, unbounded=ds.layout != "nerf_synthetic")
        imgs, cams = zip(*ds.split("train"), strict=True)
        bg = ds.background

        def fit(resume: dict[str, Any] | None, progress: Progress, hook: CheckpointHook, every: int) -> FitResult:
            return fit_radiance(
                list(imgs), list(cams), cfg, train, box=box, background=bg, device=ctx.device, progress=progress,
                resume=resume, on_checkpoint=hook, checkpoint_every=every,
            )  # fmt: skip

    ctx.check_cancelled()
    result, resumed_from = fit_with_checkpoints(ctx, fit, train, run)

    # Evaluate what the user gets: the encoded field, decoded again.
    ctx.progress("evaluate", TRAIN_SHARE)
    if image is not None:
        H, W = int(image.shape[0]), int(image.shape[1])
        extra = FieldExtra(height=H, width=W)
        decoded, _ = decode_field(encode_field(result.field, extra.to_json()), device=ctx.device)
        p, s, out = score_image(decoded, image)
        eval_split, n_eval = "image", 1
    else:
        assert ds is not None
        extra = FieldExtra(
            box=(box.lo, box.hi),
            unbounded=box.unbounded,
            background=ds.background,
            samples_per_ray=train.samples_per_ray,
            # render it as it was trained: the occupancy-grid marcher
            march_steps=train.march_steps if train.sampler == "march" else None,
        )
        decoded, _ = decode_field(encode_field(result.field, extra.to_json()), device=ctx.device)
        eval_split = "test" if ds.test_indices else "train"
        views = ds.split(eval_split)[:MAX_EVAL_VIEWS]

        def step(i: int) -> None:
            ctx.progress("evaluate", TRAIN_SHARE + (1.0 - TRAIN_SHARE) * i / len(views))

        p, s = score_views(decoded, extra, views, ds.background, progress=step)
        n_eval = len(views)
    extra = replace(extra, scored=True, psnr=_finite(p), ssim=_finite(s))
    data = encode_field(result.field, extra.to_json())
    vqp_path = ctx.scratch / "field.vqp"
    vqp_path.write_bytes(data)
    rep = field_report(
        _method(cfg),
        data,
        result.field,
        psnr=_finite(p),
        ssim=_finite(s),
        train_time_s=result.train_time_s,
        peak_memory_bytes=result.peak_memory_bytes,
    ).as_dict()
    rep.update(
        dims=dims,
        steps=result.step,
        resumed_from_step=resumed_from,
        eval_split=eval_split,
        num_eval_views=n_eval,
        seconds=time.perf_counter() - t0,
        history=result.history,
        config={"field": run["field"], "train": run["train"], "dataset_options": run["dataset_options"]},
        field_extra=extra.to_json(),  # what the .vqp's manifest carries besides the field
    )
    outputs = [Output(vqp_path, "field.vqp", "vqp")]
    report_path = ctx.scratch / "report.json"
    report_path.write_text(json.dumps(rep, indent=2))
    outputs.append(Output(report_path, "report.json", "json"))
    if image is not None:
        preview = ctx.scratch / "preview.png"
        save_png(out, preview)
        outputs.append(Output(preview, "preview.png", "png"))
    metrics = {
        "vqp_bytes": float(len(data)),
        "bits_per_vertex": float(rep["bits_per_vertex"]),
        "seconds": rep["seconds"],
        "steps": float(result.step),
    }
    for key, v in (("psnr", p), ("ssim", s)):
        if _finite(v) is not None:
            metrics[key] = float(v)
    if resumed_from is not None:
        metrics["resumed_from_step"] = float(resumed_from)
    return HandlerResult(outputs, metrics)


# -- a field .vqp as a source ----------------------------------------------------------------
def load_field(ctx: JobContext, src: Source) -> tuple[NeuralField, FieldExtra]:
    """Decode a field .vqp source (cached per worker by artifact id) on the worker's device."""

    def load() -> tuple[NeuralField, FieldExtra]:
        with src.named_errors():
            model, extra = decode_field(src.path.read_bytes(), name=src.path.name)
            return model, FieldExtra.from_json(extra, src.path.name)

    return ctx.warm.field(src.id, load)


def run_render_field(ctx: JobContext, spec: RenderFieldSpec) -> HandlerResult:
    """RENDER of a field .vqp: one PNG or float32 .npy per camera, in camera order."""
    src = ctx.source(spec.source)
    cams = core_cameras(spec.cameras) or []
    t0 = time.perf_counter()
    model, extra = load_field(ctx, src)
    occ = occupancy(model, extra)
    outputs = []
    n = len(cams)
    for i, cam in enumerate(cams):
        ctx.progress(f"render {i + 1}/{n}", i / n)
        img = field_view(model, extra, cam, spec.background, occ)
        outputs.append(save_view(ctx, i, spec.cameras[i], img, spec.encoding))
    ctx.progress("render", 1.0)
    return HandlerResult(outputs, {"seconds": time.perf_counter() - t0, "images": float(n)})


def run_export_field(ctx: JobContext, spec: ExportFieldSpec) -> HandlerResult:
    """EXPORT of a field .vqp to .vqp (decoded and encoded again)."""
    src = ctx.source(spec.source)
    t0 = time.perf_counter()
    model, extra = load_field(ctx, src)
    dst = ctx.scratch / f"{src.stem}.vqp"
    dst.write_bytes(encode_field(model, extra.to_json()))
    return HandlerResult(
        [Output(dst, dst.name, "vqp")], {"output_bytes": float(dst.stat().st_size), "seconds": time.perf_counter() - t0}
    )


def run_quantize_field(ctx: JobContext, spec: QuantizeFieldSpec) -> HandlerResult:
    """QUANTIZE of a field .vqp trained with a dense grid: kmVQ or LRA post hoc, then a size/quality report.

    PSNR compares the compressed field with the source field's own output: for 2D fields the image
    at the size stored with the field; for 3D fields renders at the spec's cameras, if any. Without
    them only the source's stored PSNR (against its training photos) is reported, as source_psnr.
    """
    opts = spec.config
    src = ctx.source(spec.source)
    t0 = time.perf_counter()
    model, src_extra = load_field(ctx, src)
    ctx.progress("quantize", 0.0)
    if opts.method == "kmvq":

        def progress(stage: str, fraction: float, metrics: Mapping[str, float] | None = None) -> None:
            ctx.progress(stage, 0.9 * fraction, metrics)  # the last tenth: evaluation

        out = kmvq_field(model, opts.bits, iters=opts.iters, seed=opts.seed, progress=progress)
        method = f"kmvq b={opts.bits}"
    else:
        out = lra_field(model, opts.rank)
        method = f"lra r={opts.rank}"
    ctx.check_cancelled()
    ctx.progress("evaluate", 0.9)
    compared = compare_fields(model, out, src_extra, core_cameras(spec.cameras) or [], spec.background)
    p, s, compare = compared if compared is not None else (None, None, None)
    extra = src_extra.compressed(method)
    data = encode_field(out, extra.to_json())
    dst = ctx.scratch / "field.vqp"
    dst.write_bytes(data)
    rep = field_report(method, data, out, psnr=_finite(p), ssim=_finite(s)).as_dict()
    rep.update(
        input_bytes=src.info.size,
        output_bytes=len(data),
        ratio=src.info.size / max(len(data), 1),
        psnr_reference=compare,
        source_psnr=extra.source_psnr,
        seconds=time.perf_counter() - t0,
        options=opts.as_dict(),
    )
    report_path = ctx.scratch / "report.json"
    report_path.write_text(json.dumps(rep, indent=2))
    metrics = {"ratio": rep["ratio"], "output_bytes": float(len(data)), "seconds": rep["seconds"]}
    if _finite(p) is not None:
        metrics["psnr"] = float(p)  # type: ignore[arg-type]
    if _finite(s) is not None:
        metrics["ssim"] = float(s)  # type: ignore[arg-type]
    return HandlerResult([Output(dst, "field.vqp", "vqp"), Output(report_path, "report.json", "json")], metrics)


def run_build_field(ctx: JobContext, spec: BuildFieldSpec) -> HandlerResult:
    """BUILD_FIELD: the field of an inline config and its state-dict tensors, encoded as a .vqp
    with an empty manifest extra (a 3D field renders in the default scene box, a 2D one at each
    camera's size). Bad names, dtypes, shapes and values fail as the input's fault, naming the tensor."""
    info = ctx.store.stat(spec.tensors)
    with np.load(ctx.store.path(info.id), allow_pickle=False) as npz:
        arrays = {name.removesuffix(".npy"): npz[name.removesuffix(".npy")] for name in npz.files}
    ctx.progress("build", 0.0)
    data = encode_field(field_from_tensors(spec.config, arrays))
    dst = ctx.scratch / "inline-field.vqp"
    dst.write_bytes(data)
    return HandlerResult([Output(dst, dst.name, "vqp")], {"output_bytes": float(len(data))})


__all__ = [
    "checkpoint_interval",
    "fit_with_checkpoints",
    "load_field",
    "run_build_field",
    "run_export_field",
    "run_quantize_field",
    "run_render_field",
    "run_train_field",
]

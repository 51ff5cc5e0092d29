"""Neural-field jobs: TRAIN_FIELD, and QUANTIZE / RENDER / EXPORT of a field .vqp source.

Specs (untrusted JSON built by the RPC layer):

- train_field: {"dataset": {"artifact": id}  a zip/tar archive of posed photos (3D radiance field) or
  one PNG/JPEG image (2D image field), told apart by the artifact's content,
  "field": {field_config_to_dict format; missing keys = defaults; "dims" follows the dataset} | null,
  "train": {TrainConfig fields} | null,
  "dataset_options": {"downscale": int, "background": [r, g, b], "test_every": int} | null}
  -> results [field.vqp, report.json] (+ preview.png for 2D fields); metrics psnr, ssim, vqp_bytes,
  bits_per_vertex, seconds (and resumed_from_step after a resume). Progress metrics carry step,
  loss and psnr (of the training batch).
- quantize with "field": {"method": "kmvq" | "lra", "bits": 1..10 (kmvq, default 4),
  "rank": int (lra, default 4), "iters": int (kmvq, default 10), "seed": int (default 0)}
  of a field trained with a dense grid -> results [field.vqp, report.json].
- render: 3D fields are volume-rendered at each camera inside the scene box stored with the field,
  and beyond it, contracted, when the field is unbounded (trained from instant-ngp or COLMAP photos),
  on the spec's background, else the one the field was trained on; 2D image fields are evaluated on
  each camera's width x height pixel grid (the camera's pose and intrinsics are ignored).
- export: format "vqp" only (the field is decoded and encoded again).

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
import logging
import math
import tarfile
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.checkpoint import load_checkpoint, save_checkpoint
from ..core.errors import ConfigError, VqpressInputError
from ..core.fields.config import FieldQuantizeConfig, field_config_from_spec
from ..core.fields.config import check_spec_fields as _check_fields
from ..core.magic import dataset_format, read_head
from .context import JobContext, Source, artifact_errors
from .handlers import HandlerResult, Output, background, cameras, is_field_source, render_encoding, save_view
from .train_handler import MAX_ARCHIVE_BYTES, MAX_ARCHIVE_FILES

if TYPE_CHECKING:
    import torch

    from ..core.data import DatasetConfig, PosedImageDataset
    from ..core.fields.config import FieldConfig, TrainConfig
    from ..core.fields.model import NeuralField
    from ..core.fields.train import CheckpointHook, FitResult, SceneBox
    from ..core.progress import Progress
    from ..core.render.cameras import Camera
    from ..core.render.volume import OccupancyGrid

CHECKPOINT_NAME = "field.pt"
CHECKPOINT_FORMAT = 2  # 2: sparse VQ-AD state and unbounded boxes; older checkpoints start over
CHECKPOINTS_PER_RUN = 10  # a checkpoint every tenth of the run (rounded up to a multiple of log_every)
MAX_EVAL_VIEWS = 16  # held-out views a 3D report renders
TRAIN_SHARE = 0.95  # progress fraction of TRAIN_FIELD spent training; evaluation takes the rest

log = logging.getLogger(__name__)


# -- spec parsing ----------------------------------------------------------------------
def train_config(value: Any, dims: int = 2) -> TrainConfig:
    """A TrainConfig from the spec's "train" (the fields the user set; None = the defaults of a
    ``dims``-D field: ``core.fields.config.train_config_from_spec``), validated."""
    from ..core.fields.config import train_config_from_spec

    return train_config_from_spec(value, dims)


def dataset_config(value: Any) -> DatasetConfig:
    """DatasetConfig from the spec's "dataset_options" (downscale, background, test_every; None = defaults)."""
    from ..core.data import DatasetConfig

    if value is None:
        return DatasetConfig()
    if not isinstance(value, Mapping):
        raise ConfigError(f"dataset_options must be an object, got {type(value).__name__}")
    defaults = {"downscale": 1, "background": None, "test_every": 8}
    _check_fields(value, defaults, "dataset_options")
    values = dict(value)
    if "background" in values:
        bg = background(values["background"])
        if bg is None:
            values.pop("background")
        else:
            values["background"] = bg
    cfg = DatasetConfig(**values)
    cfg.validate()
    return cfg


# -- the dataset -------------------------------------------------------------------------
def _dataset_path(ctx: JobContext, ref: Any) -> tuple[Path, str, str]:
    """(file, artifact name, artifact id) of the spec's dataset reference."""
    if not isinstance(ref, Mapping) or not isinstance(ref.get("artifact"), str):
        raise VqpressInputError(f'dataset must be {{"artifact": "<sha256 id>"}}, got {str(ref)[:100]}')
    info = ctx.store.stat(ref["artifact"])
    return ctx.store.path(info.id), info.name, info.id


def _dataset_kind(path: Path, name: str) -> str:
    """Whether the dataset is an "image" (PNG/JPEG) or an "archive" (zip/tar), from its content."""
    if dataset_format(read_head(path, 16)) == "image":
        return "image"
    if zipfile.is_zipfile(path) or tarfile.is_tarfile(path):
        return "archive"
    raise VqpressInputError(
        f"dataset {name!r} is neither a PNG/JPEG image (for a 2D image field) nor a zip/tar archive of "
        "posed photos (for a 3D radiance field)"
    )


# -- checkpoints ---------------------------------------------------------------------------
def checkpoint_interval(train: TrainConfig) -> int:
    """Steps between checkpoints: a tenth of the run, rounded up to a multiple of log_every."""
    every = math.ceil(train.steps / CHECKPOINTS_PER_RUN)
    return max(train.log_every, math.ceil(every / train.log_every) * train.log_every)


FitFn = Callable[[dict[str, Any] | None, Callable[..., None], Callable[["FitResult"], None], int], "FitResult"]


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
    from ..core.fields.config import VqadGridConfig, grid_kind

    return f"vqad b={cfg.grid.bits}" if isinstance(cfg.grid, VqadGridConfig) else grid_kind(cfg.grid)


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def run_train_field(ctx: JobContext, spec: Mapping[str, Any]) -> HandlerResult:
    """Run a TRAIN_FIELD job (see the module docstring for the spec and results)."""
    from ..core.data import open_dataset_archive
    from ..core.data.dataset import load_image
    from ..core.fields.config import field_config_to_dict
    from ..core.fields.serialize import decode_field, encode_field, field_report
    from ..core.fields.train import SceneBox, fit_image, fit_radiance
    from ..core.metrics import psnr, ssim

    path, name, dataset_id = _dataset_path(ctx, spec.get("dataset"))
    kind = _dataset_kind(path, name)
    dims = 2 if kind == "image" else 3
    source = "the dataset is a single image (2D field)" if dims == 2 else "the dataset is posed photos (3D field)"
    cfg = field_config_from_spec(spec.get("field"), dims, source, radiance_defaults=True)
    train = train_config(spec.get("train"), dims)
    data_cfg = dataset_config(spec.get("dataset_options"))
    t0 = time.perf_counter()
    ctx.progress("dataset", 0.0)
    run = {
        "dataset": dataset_id,
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
    extra: dict[str, Any]
    if image is not None:
        H, W = int(image.shape[0]), int(image.shape[1])
        extra = {"height": H, "width": W}
        decoded, _ = decode_field(encode_field(result.field, extra), device=ctx.device)
        out = decoded.image_pixels(H, W).cpu()
        p, s = psnr(out, image), ssim(out, image)
        eval_split, n_eval = "image", 1
    else:
        assert ds is not None
        extra = {
            "box": [list(box.lo), list(box.hi)],
            "unbounded": box.unbounded,
            "background": list(ds.background),
            "samples_per_ray": train.samples_per_ray,
        }
        if train.sampler == "march":  # render it as it was trained: the occupancy-grid marcher
            extra["march_steps"] = train.march_steps
        decoded, _ = decode_field(encode_field(result.field, extra), device=ctx.device)
        eval_split = "test" if ds.test_indices else "train"
        views = ds.split(eval_split)[:MAX_EVAL_VIEWS]
        occupancy = _occupancy(decoded, extra)
        ps, ss = [], []
        for i, (ref, cam) in enumerate(views):
            ctx.progress("evaluate", TRAIN_SHARE + (1.0 - TRAIN_SHARE) * i / len(views))
            out = _field_view(decoded, extra, cam, ds.background, occupancy)
            ps.append(psnr(out.cpu(), ref))
            ss.append(ssim(out.cpu(), ref))
        p, s = sum(ps) / len(ps), sum(ss) / len(ss)
        n_eval = len(views)
    extra.update(psnr=_finite(p), ssim=_finite(s))
    data = encode_field(result.field, extra)
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
        field_extra=extra,  # what the .vqp's manifest carries besides the field
    )
    outputs = [Output(vqp_path, "field.vqp", "vqp")]
    report_path = ctx.scratch / "report.json"
    report_path.write_text(json.dumps(rep, indent=2))
    outputs.append(Output(report_path, "report.json", "json"))
    if image is not None:
        from ..core.render.images import save_png

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
def load_field(ctx: JobContext, src: Source) -> tuple[NeuralField, dict[str, Any]]:
    """Decode a field .vqp source (cached per worker by artifact id) on the worker's device."""
    from ..core.fields.serialize import decode_field

    def load() -> tuple[NeuralField, dict[str, Any]]:
        with src.named_errors():
            return decode_field(src.path.read_bytes(), name=src.path.name)

    return ctx.warm.field(src.id, load)


def _box(extra: Mapping[str, Any]) -> SceneBox:
    from ..core.fields.train import SceneBox

    box = extra.get("box")
    try:
        lo, hi = ([float(v) for v in box[0]], [float(v) for v in box[1]])  # type: ignore[index]
        assert len(lo) == len(hi) == 3
    except (TypeError, ValueError, IndexError, AssertionError):
        return SceneBox()
    return SceneBox(tuple(lo), tuple(hi), extra.get("unbounded") is True)  # type: ignore[arg-type]


def _march_steps(extra: Mapping[str, Any]) -> int | None:
    steps = extra.get("march_steps")
    return steps if isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= 1 << 16 else None


def _occupancy(model: NeuralField, extra: Mapping[str, Any]) -> OccupancyGrid | None:
    """The occupancy grid a marched 3D field renders with (estimated once for many views)."""
    from ..core.fields.train import field_occupancy

    steps = _march_steps(extra)
    if model.config.dims != 3 or steps is None:
        return None
    return field_occupancy(model, _box(extra), march_steps=steps)


def _field_view(
    model: NeuralField,
    extra: Mapping[str, Any],
    cam: Camera,
    bg: tuple[float, float, float] | None,
    occupancy: OccupancyGrid | None = None,
) -> torch.Tensor:  # [H, W, 3]
    """A field seen by one camera: 3D volume rendering (with the occupancy-grid marcher when the
    field was trained with it), or a 2D image at the camera's size."""
    from ..core.fields.train import render_field

    if model.config.dims == 2:
        return model.image_pixels(cam.height, cam.width)
    if bg is None:
        stored = extra.get("background")
        bg = background(stored) if isinstance(stored, list) else (0.0, 0.0, 0.0)
    samples = extra.get("samples_per_ray", 64)
    samples = samples if isinstance(samples, int) and 1 <= samples <= 4096 else 64
    steps = _march_steps(extra)
    if steps is not None and occupancy is None:
        occupancy = _occupancy(model, extra)
    return render_field(
        model, cam, box=_box(extra), samples_per_ray=samples, background=bg or (0.0, 0.0, 0.0), march_steps=steps,
        occupancy=occupancy,
    )  # fmt: skip


def run_render_field(ctx: JobContext, spec: Mapping[str, Any], src: Source) -> HandlerResult:
    """RENDER of a field .vqp: one PNG or float32 .npy per camera, in camera order."""
    cams = cameras(spec.get("cameras"), required=True)
    assert cams is not None
    bg = background(spec.get("background"))
    encoding = render_encoding(spec)
    t0 = time.perf_counter()
    model, extra = load_field(ctx, src)
    occupancy = _occupancy(model, extra)
    outputs = []
    n = len(cams)
    for i, cam in enumerate(cams):
        ctx.progress(f"render {i + 1}/{n}", i / n)
        outputs.append(save_view(ctx, i, cam, _field_view(model, extra, cam, bg, occupancy), encoding))
    ctx.progress("render", 1.0)
    return HandlerResult(outputs, {"seconds": time.perf_counter() - t0, "images": float(n)})


def run_export_field(ctx: JobContext, spec: Mapping[str, Any], src: Source) -> HandlerResult:
    """EXPORT of a field .vqp: format "vqp" only (decoded and encoded again)."""
    from ..core.fields.serialize import encode_field

    fmt = spec.get("format")
    if fmt != "vqp":
        raise VqpressInputError(
            f"{src.info.name} is a neural field: fields export only to 'vqp', not {str(fmt)[:20]!r} "
            "(ply, splat and spz hold Gaussian splats)"
        )
    t0 = time.perf_counter()
    model, extra = load_field(ctx, src)
    dst = ctx.scratch / f"{src.stem}.vqp"
    dst.write_bytes(encode_field(model, extra))
    return HandlerResult(
        [Output(dst, dst.name, "vqp")], {"output_bytes": float(dst.stat().st_size), "seconds": time.perf_counter() - t0}
    )


def run_quantize_field(ctx: JobContext, spec: Mapping[str, Any], src: Source) -> HandlerResult:
    """QUANTIZE of a field .vqp trained with a dense grid: kmVQ or LRA post hoc, then a size/quality report.

    PSNR compares the compressed field with the source field's own output: for 2D fields the image
    at the size stored with the field; for 3D fields renders at the spec's cameras, if any. Without
    them only the source's stored PSNR (against its training photos) is reported, as source_psnr.
    """
    from ..core.fields.posthoc import kmvq_field, lra_field
    from ..core.fields.serialize import encode_field, field_report
    from ..core.metrics import psnr, ssim

    if not is_field_source(src):
        raise VqpressInputError(
            f'{src.info.name} is a splat scene, but the spec\'s "field" options quantize neural fields; '
            'leave "field" out to quantize splats'
        )
    if spec.get("field") is None:
        raise VqpressInputError(
            f'{src.info.name} is a neural field: give "field": {{"method": "kmvq" | "lra", ...}} to quantize it '
            "(splat quantize options do not apply)"
        )
    opts = FieldQuantizeConfig.from_dict(spec["field"])
    cams = cameras(spec.get("cameras"), required=False)
    bg = background(spec.get("background"))
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
    compare: str | None = None
    p = s = None
    if model.config.dims == 2 and isinstance(src_extra.get("height"), int) and isinstance(src_extra.get("width"), int):
        H, W = src_extra["height"], src_extra["width"]
        ref, got = model.image_pixels(H, W), out.image_pixels(H, W)
        p, s, compare = psnr(got, ref), ssim(got, ref), f"source field's image ({W}x{H})"
    elif model.config.dims == 3 and cams:
        ps, ss = [], []
        for cam in cams:
            ref, got = _field_view(model, src_extra, cam, bg), _field_view(out, src_extra, cam, bg)
            ps.append(psnr(got, ref))
            ss.append(ssim(got, ref))
        p, s, compare = sum(ps) / len(ps), sum(ss) / len(ss), f"source field's renders at {len(cams)} camera(s)"
    psnr_in = src_extra.get("psnr")
    source_psnr = psnr_in if isinstance(psnr_in, int | float) and not isinstance(psnr_in, bool) else None
    extra = {k: v for k, v in src_extra.items() if k not in ("psnr", "ssim")}
    extra.update(posthoc=method, source_psnr=source_psnr)
    data = encode_field(out, extra)
    dst = ctx.scratch / "field.vqp"
    dst.write_bytes(data)
    rep = field_report(method, data, out, psnr=_finite(p), ssim=_finite(s)).as_dict()
    rep.update(
        input_bytes=src.info.size,
        output_bytes=len(data),
        ratio=src.info.size / max(len(data), 1),
        psnr_reference=compare,
        source_psnr=source_psnr,
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


__all__ = [
    "checkpoint_interval",
    "dataset_config",
    "fit_with_checkpoints",
    "load_field",
    "run_export_field",
    "run_quantize_field",
    "run_render_field",
    "run_train_field",
    "train_config",
]

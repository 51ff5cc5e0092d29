"""The TRAIN_SPLATS job: posed photos in, a QAT-trained scene out (.vqp, .ply, report.json).

``TrainSplatsSpec``: a dataset archive (NeRF-synthetic, instant-ngp or COLMAP), the SplatTrainConfig,
and optionally a scene (.ply, .splat, .spz, .vqp, ...) to fine-tune instead of initializing
-> results [scene.vqp, scene.ply, report.json]; metrics psnr, ssim, ratio, vqp_bytes, num_gaussians, seconds.

The archive is extracted with core.data's checks into the job's scratch folder. Checkpoints live in
``<scratch root>/<job id>-checkpoints`` (one folder per job, not per attempt), so a re-run of the
job after its worker died resumes from the last one; the folder is removed when the job ends here.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ..core.budgets import BUDGETS
from ..core.data import DatasetConfig, PosedImageDataset, open_dataset_archive
from ..core.splats.formats import write_splats
from ..core.splats.train import train_splats
from .context import JobContext, artifact_errors
from .results import HandlerResult, Output
from .specs import TrainSplatsSpec

MAX_ARCHIVE_BYTES = BUDGETS.max_archive_bytes  # uncompressed size of a dataset archive, all members together
MAX_ARCHIVE_FILES = BUDGETS.max_archive_files  # members of a dataset archive


def checkpoint_dir(ctx: JobContext) -> Path:
    """The job's checkpoint folder: beside the per-attempt scratch folders, keyed by job id only."""
    return ctx.checkpoint_dir


def dataset_file(ctx: JobContext, artifact_id: str) -> tuple[Path, str]:
    """(file, artifact name) of a spec's dataset artifact."""
    info = ctx.store.stat(artifact_id)
    return ctx.store.path(info.id), info.name


def open_dataset(ctx: JobContext, artifact_id: str, config: DatasetConfig = DatasetConfig()) -> PosedImageDataset:
    """A spec's dataset archive, extracted with core.data's checks into the job's scratch folder and
    read as ``config`` says (downscale, background, held-out split)."""
    archive, archive_name = dataset_file(ctx, artifact_id)
    with artifact_errors(archive, archive_name):
        return open_dataset_archive(
            archive,
            ctx.scratch / "dataset",
            max_bytes=MAX_ARCHIVE_BYTES,
            max_files=MAX_ARCHIVE_FILES,
            config=config,
        )


def run_train_splats(ctx: JobContext, spec: TrainSplatsSpec) -> HandlerResult:
    """Run a TRAIN_SPLATS job (see the module docstring for the spec and results)."""
    config = spec.config
    init = None
    if spec.init is not None:
        init = ctx.load_splats(ctx.source(spec.init, "init"))
    ctx.progress("dataset", 0.0)
    dataset = open_dataset(ctx, spec.dataset, spec.dataset_options)
    ctx.check_cancelled()
    t0 = time.perf_counter()
    ckpt = checkpoint_dir(ctx)
    result = train_splats(
        dataset, config, checkpoint_dir=ckpt, resume=True, progress=ctx.progress, init=init, device=ctx.device
    )
    vqp_path = ctx.scratch / "scene.vqp"
    vqp_path.write_bytes(result.vqp)
    ply_path = ctx.scratch / "scene.ply"
    write_splats(result.splats, ply_path, "ply")
    report = dict(result.report)
    report["ply_bytes"] = ply_path.stat().st_size  # measured on disk
    report["ratio"] = report["ply_bytes"] / max(vqp_path.stat().st_size, 1)
    opts = spec.dataset_options
    report["dataset"] = {  # how the photos were read: the figures above are at this resolution
        "layout": dataset.layout, "images": len(dataset), "train": len(dataset.train_indices),
        "test": len(dataset.test_indices), "downscale": opts.downscale, "test_every": opts.test_every,
        "background": list(dataset.background), "width": dataset.cameras[0].width, "height": dataset.cameras[0].height,
    }  # fmt: skip
    losses = report.pop("losses")
    report["losses_every"] = max(1, len(losses) // 1000)  # the loss curve, at most ~1000 points
    report["losses"] = losses[:: report["losses_every"]]
    report_path = ctx.scratch / "report.json"
    report_path.write_text(json.dumps(report, indent=2))
    shutil.rmtree(ckpt, ignore_errors=True)
    metrics = {
        "seconds": time.perf_counter() - t0,
        "vqp_bytes": float(len(result.vqp)),
        "num_gaussians": float(result.splats.num_gaussians),
        "ratio": float(report["ratio"]),
    }
    for key in ("psnr", "ssim"):
        if isinstance(report.get(key), float):
            metrics[key] = report[key]
    return HandlerResult(
        [
            Output(vqp_path, "scene.vqp", "vqp"),
            Output(ply_path, "scene.ply", "ply"),
            Output(report_path, "report.json", "json"),
        ],
        metrics,
    )


__all__ = ["checkpoint_dir", "dataset_file", "open_dataset", "run_train_splats"]

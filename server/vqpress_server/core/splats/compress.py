"""The compress pipeline: read any scene file -> repair -> quantize -> write .vqp -> evaluate, with a report.

The ratio is (input file bytes) / (.vqp bytes), both measured on disk. Evaluation renders the
repaired original and the decoded .vqp at the same cameras and averages PSNR/SSIM over the views.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from vqpress.vqp import loads_json, parse_header

from ..atomic import atomic_write_bytes
from ..budgets import check_pixels
from ..cpu_threads import cpu_map
from ..errors import VqpressInputError
from ..metrics import psnr, ssim
from ..progress import Progress, sub_progress
from ..render.cameras import orbit_cameras, read_cameras_json
from ..render.splats import render
from .formats import ExportFilter, WriteOptions, filter_splats, read_splats, write_splats
from .importance import importance_views, view_importance
from .model import GaussianSplats
from .quantize import QuantizeConfig, check_clusterable, decode_vqp_splats, quantize_splats

ORBIT_VIEWS = 8  # cameras placed around the scene when none are given and no cameras.json is beside it
ORBIT_SIZE = 400  # orbit image width and height (pixels)


@dataclass
class CompressReport:
    """What compress_file did: sizes on disk, bits per Gaussian, repairs, timings and quality."""

    input_path: str
    output_path: str
    input_bytes: int  # input file size on disk
    output_bytes: int  # .vqp file size on disk
    num_gaussians: int  # stored: after repair (non-finite positions are dropped) and importance pruning
    sh_degree: int  # SH degree stored
    section_bytes: dict[str, int]  # stored bytes per .vqp section
    repaired: dict[str, int]  # counts of repaired values (model.RepairReport)
    timings_s: dict[str, float]  # seconds per stage: read, repair, sort, kmeans (all four), quantize:<attr>,
    # encode (after k-means), encode_ahead (thread-seconds of all the encoding), write, evaluate
    config: QuantizeConfig
    psnr: float | None = None  # mean PSNR (dB) of decoded vs original renders; None without evaluation
    ssim: float | None = None  # mean SSIM of decoded vs original renders
    num_cameras: int = 0
    cameras_source: str = "none"  # "given", "cameras.json:<split>", "orbit" or "none" (not evaluated)
    psnr_per_view: list[float] = field(default_factory=list)
    num_gaussians_input: int = 0  # after repair, before pruning
    importance: str = "none"  # which cameras weighed k-means: "given", "cameras.json:<split>", or "none ..."
    # Gaussians that none of the importance cameras sees (weight 0; pruning drops these first). Nothing
    # fitted them to a photo: on a held-out view they are often floaters, so dropping them can move that
    # view away from the original's render and closer to its photo (BENCHMARKS 3b, lego_7k).
    num_gaussians_unseen: int = 0

    @property
    def ratio(self) -> float:
        return self.input_bytes / max(self.output_bytes, 1)

    @property
    def bits_per_gaussian(self) -> dict[str, float]:
        n = max(self.num_gaussians, 1)
        out = {k: 8.0 * v / n for k, v in self.section_bytes.items()}
        out["total"] = 8.0 * self.output_bytes / n
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_path": self.input_path,
            "output_path": self.output_path,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "ratio": self.ratio,
            "num_gaussians": self.num_gaussians,
            "num_gaussians_input": self.num_gaussians_input,
            "importance": self.importance,
            "num_gaussians_unseen": self.num_gaussians_unseen,
            "sh_degree": self.sh_degree,
            "section_bytes": dict(self.section_bytes),
            "bits_per_gaussian": self.bits_per_gaussian,
            "repaired": dict(self.repaired),
            "timings_s": dict(self.timings_s),
            "psnr": self.psnr,
            "ssim": self.ssim,
            "psnr_per_view": list(self.psnr_per_view),
            "num_cameras": self.num_cameras,
            "cameras_source": self.cameras_source,
            "config": self.config.as_dict(),
        }

    def format_text(self) -> str:
        weighed = not self.importance.startswith("none")
        lines = [
            f"{self.input_path} -> {self.output_path}",
            f"  Gaussians {self.num_gaussians:,} of {self.num_gaussians_input:,}  SH degree {self.sh_degree}  "
            f"importance: {self.importance}"
            + (f" ({self.num_gaussians_unseen:,} seen by none of its cameras)" if weighed else ""),
            f"  input {self.input_bytes:,} B   .vqp {self.output_bytes:,} B   ratio {self.ratio:.2f}x   "
            f"{self.bits_per_gaussian['total']:.2f} bits/Gaussian",
            "",
            f"  {'section':<16}{'bytes':>12}{'bits/G':>10}{'share':>8}",
        ]
        bpg = self.bits_per_gaussian
        for k, v in self.section_bytes.items():
            lines.append(f"  {k:<16}{v:>12,}{bpg[k]:>10.2f}{100.0 * v / max(self.output_bytes, 1):>7.1f}%")
        overhead = self.output_bytes - sum(self.section_bytes.values())
        lines.append(f"  {'header+manifest':<16}{overhead:>12,}{8.0 * overhead / max(self.num_gaussians, 1):>10.2f}")
        lines.append("")
        if self.psnr is not None:
            lines.append(
                f"  quality vs original: PSNR {self.psnr:.2f} dB  SSIM {self.ssim:.4f}  "
                f"({self.num_cameras} cameras, {self.cameras_source})"
            )
        else:
            lines.append("  quality: not evaluated")
        rep = {k: v for k, v in self.repaired.items() if v}
        lines.append(f"  repaired: {', '.join(f'{k} {v}' for k, v in rep.items()) if rep else 'nothing'}")
        lines.append("  time: " + "  ".join(f"{k} {v:.2f}s" for k, v in self.timings_s.items()))
        c = self.config
        lines.append(
            f"  config: codebooks dc {c.dc_codebook} sh {c.sh_codebook} scale {c.scale_codebook} rot "
            f"{c.rot_codebook}, {c.kmeans_iters} iters, positions {c.position_precision}"
            f"{f' {c.position_bits} bits' if c.position_precision == 'fixed16' else ''}, prune {c.prune:g}, "
            f"opacity {c.opacity_precision}, entropy {c.entropy}"
        )
        return "\n".join(lines)


def scene_cameras(src: str | os.PathLike[str]) -> tuple[list[Any], tuple[float, float, float] | None, str] | None:
    """The cameras stored beside a scene: ``cameras.json`` in its folder, its test split when it has one.

    Returns (cameras, background, source) or None when there is no cameras.json.
    """

    path = Path(src).parent / "cameras.json"
    if not path.is_file():
        return None
    try:
        doc = loads_json(path.read_text(encoding="utf-8"))
        has_test = any(isinstance(c, dict) and c.get("split") == "test" for c in doc.get("cameras", []))
    except (OSError, ValueError, AttributeError):
        has_test = False  # read_cameras_json below reports what is wrong with the file
    split = "test" if has_test else None
    cams = read_cameras_json(path, split=split)
    return cams.cameras, cams.background, f"cameras.json:{split or 'all'}"


def evaluate_quality(
    original: GaussianSplats,
    decoded: GaussianSplats,
    cameras: Sequence[Any],
    background: Sequence[float],
    progress: Progress | None = None,
) -> tuple[float, float, list[float]]:
    """Mean PSNR (dB) and SSIM of ``decoded`` vs ``original`` over ``cameras``, and PSNR per view.
    On the CPU the views run side by side, one intra-op thread each (``cpu_threads.cpu_map``)."""

    def one(cam: Any) -> tuple[float, float]:
        ref = render(original, cam, background=background)
        img = render(decoded, cam, background=background)
        return psnr(img, ref), ssim(img, ref)

    psnrs, ssims = [], []
    for i, (p, s) in enumerate(cpu_map(one, cameras, original.device)):
        psnrs.append(p)
        ssims.append(s)
        if progress is not None:
            progress("evaluate", (i + 1) / len(cameras), {"psnr": p})
    return sum(psnrs) / len(psnrs), sum(ssims) / len(ssims), psnrs


def _evaluation_cameras(
    src: Path, splats: GaussianSplats, cameras: list[Any] | None, background: Sequence[float] | None
) -> tuple[list[Any], tuple[float, float, float], str]:
    """(cameras, background, source) to measure quality at: the given cameras, else the test split of
    a cameras.json beside ``src`` (with its background), else 8 orbit cameras of 400x400."""
    source = "given"
    if cameras is None:
        found = scene_cameras(src)
        if found is not None:
            cameras, file_bg, source = found
            background = background if background is not None else file_bg
    if not cameras:
        cameras, source = orbit_cameras(splats, n=ORBIT_VIEWS, width=ORBIT_SIZE, height=ORBIT_SIZE), "orbit"
    bg = tuple(background) if background is not None else (0.0, 0.0, 0.0)
    return list(cameras), (float(bg[0]), float(bg[1]), float(bg[2])), source


def _train_cameras(src: Path) -> list[Any] | None:
    """The ``train`` split of the cameras.json beside ``src``, if it has one."""

    path = src.parent / "cameras.json"
    try:
        doc = loads_json(path.read_text(encoding="utf-8"))
        if not any(isinstance(c, dict) and c.get("split") == "train" for c in doc.get("cameras", [])):
            return None
    except (OSError, ValueError, AttributeError):
        return None
    return read_cameras_json(path, split="train").cameras


def _synced(dev: torch.device, t0: float) -> float:
    """Seconds since ``t0`` once the device's queued work is done (a stage's own time on CUDA)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t0


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def compress_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    config: QuantizeConfig = QuantizeConfig(),
    *,
    cameras: list[Any] | None = None,
    background: Sequence[float] | None = None,
    importance_cameras: list[Any] | None = None,
    evaluate: bool = True,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
) -> CompressReport:
    """Compress a scene file (ply, compressed ply, splat, spz, npz) into a .vqp file at ``dst``.

    Non-finite values are repaired (counted in the report) unless ``config.strict``. With
    ``evaluate``, the original and the decoded scene are rendered at ``cameras``; when none are
    given, at the test split of a ``cameras.json`` beside ``src`` (with its background), else at
    8 orbit cameras of 400x400. ``background`` defaults to that file's, else black. ``device``
    (default: CUDA when present) runs k-means and rendering. ``config.importance == "views"`` weighs
    k-means by each Gaussian's blending weight at ``importance_cameras``; when none are given, at the
    ``train`` split of the ``cameras.json`` beside ``src``, else at the evaluation cameras. Progress
    stages: read, repair, importance, quantize:<attr>, encode, write, evaluate. The .vqp is written
    to a temporary file and renamed.
    """

    config.validate()
    for given, what in ((cameras, "cameras"), (importance_cameras, "importance_cameras")):
        if given:  # before the scene is read: a request over the pixel budget costs nothing
            check_pixels([(c.width, c.height) for c in given], what)
    src, dst = Path(src), Path(dst)
    dev = torch.device(device) if device is not None else _default_device()
    timings: dict[str, float] = {}
    q_end = 0.75 if evaluate else 0.95

    def stage(name: str, frac: float) -> None:
        if progress is not None:
            progress(name, frac, {})

    stage("read", 0.0)
    t0 = time.perf_counter()
    try:
        input_bytes = src.stat().st_size
    except OSError as exc:
        raise VqpressInputError(f"{src}: cannot read the input ({exc.strerror or exc})") from None
    raw = read_splats(src, device=dev)  # a .ply goes straight to the device
    timings["read"] = _synced(dev, t0)

    stage("repair", 0.02)
    t0 = time.perf_counter()
    splats, repair = raw.repair_non_finite(strict=config.strict)  # on the device, one transfer of counts
    del raw
    check_clusterable(splats, src)
    timings["repair"] = _synced(dev, t0)
    eval_cameras: list[Any] = []
    if evaluate or config.importance == "views":
        eval_cameras, eval_bg, eval_source = _evaluation_cameras(src, splats, cameras, background)
    weights, importance_source = None, "none"
    if config.importance == "views" and splats.num_gaussians > 0:
        # The scene's own cameras: orbit views around a scene seen from inside would weigh its walls
        # and drop its interior, so a scene without cameras is quantized unweighted.
        views, importance_source = importance_cameras, "given"
        if not views:
            views, importance_source = _train_cameras(src), "cameras.json:train"
        if not views and eval_source != "orbit":
            views, importance_source = eval_cameras, eval_source
        if views:
            stage("importance", 0.04)
            t0 = time.perf_counter()
            views = importance_views(list(views), dev, prune=config.prune > 0)
            weights = view_importance(splats, views, progress=sub_progress(progress, 0.04, 0.05))
            timings["importance"] = time.perf_counter() - t0
        else:
            importance_source = "none (no cameras)"
    quantized = quantize_splats(
        splats, config, progress=sub_progress(progress, 0.05, q_end), weights=weights, encode_ahead=True
    )
    timings.update({k: v for k, v in quantized.timings_s.items()})

    stage("encode", q_end)
    t0 = time.perf_counter()
    data = quantized.to_vqp_bytes()  # the sections were encoded as their data came (encode_ahead)
    timings["encode"] = time.perf_counter() - t0  # what was left after k-means
    if quantized.encoder is not None:
        timings["encode_ahead"] = quantized.encoder.thread_s  # thread-seconds of all the encoding

    stage("write", q_end + 0.02)
    t0 = time.perf_counter()
    atomic_write_bytes(dst, data)
    timings["write"] = time.perf_counter() - t0

    section_bytes = {e["name"]: int(e["length"]) for e in parse_header(data, name=str(dst)).sections}
    report = CompressReport(
        input_path=str(src),
        output_path=str(dst),
        input_bytes=input_bytes,
        output_bytes=dst.stat().st_size,
        num_gaussians=quantized.num_gaussians,
        sh_degree=quantized.sh_degree,
        section_bytes=section_bytes,
        repaired=repair.as_dict(),
        timings_s=timings,
        config=config,
        num_gaussians_input=splats.num_gaussians,
        importance=importance_source,
        num_gaussians_unseen=int((weights == 0).sum()) if weights is not None else 0,
    )
    if evaluate:
        t0 = time.perf_counter()
        decoded = decode_vqp_splats(data, name=str(dst), device=dev)
        report.psnr, report.ssim, report.psnr_per_view = evaluate_quality(
            splats, decoded, eval_cameras, eval_bg, progress=sub_progress(progress, q_end + 0.05, 1.0)
        )
        report.num_cameras, report.cameras_source = len(eval_cameras), eval_source
        timings["evaluate"] = time.perf_counter() - t0
    stage("done", 1.0)
    return report


def decompress_file(
    src_vqp: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    filters: ExportFilter | None = None,
    options: WriteOptions | None = None,
) -> GaussianSplats:
    """Decode a .vqp file and write the scene in the format of ``dst``'s name (.ply, .compressed.ply,
    .splat, .spz, .sog, meta.json), keeping what ``filters`` keep; returns the scene written."""

    src_vqp = Path(src_vqp)
    try:
        data = src_vqp.read_bytes()
    except OSError as exc:
        raise VqpressInputError(f"{src_vqp}: cannot read ({exc.strerror or exc})") from None
    splats, _ = filter_splats(decode_vqp_splats(data, name=str(src_vqp)), filters or ExportFilter())
    write_splats(splats, dst, options=options or WriteOptions())
    return splats


__all__ = ["CompressReport", "compress_file", "decompress_file", "evaluate_quality", "scene_cameras"]

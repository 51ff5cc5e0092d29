"""Splat training with QAT on the GPU (gsplat + DefaultStrategy), held to quality and size floors on real data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from vqpress_server.core.data import DatasetConfig, load_dataset
from vqpress_server.core.splats.quantize import decode_vqp_splats
from vqpress_server.core.splats.train import QatConfig, SplatTrainConfig, train_splats

# The "fast" preset (the 30k 3DGS / Compact3D schedule in 7k steps) on lego 400x400, white background,
# every 8th photo held out: the object rule frames the random init (100k Gaussians in +-1.31), the
# default strategy densifies, QAT from 3500. Measured on an H200 (BENCHMARKS.md 6b, this test with two
# other trainings on the GPU): 33.64 dB, SSIM 0.9774, 23.6x its own .ply (25.9x the plain run's .ply).
# Floors are that less a margin for run-to-run noise (about 0.6 dB, 0.007, 1.6x).
LEGO_PSNR_FLOOR = 33.0  # dB, held-out, decoded .vqp vs photos
LEGO_SSIM_FLOOR = 0.97
LEGO_RATIO_FLOOR = 22.0  # the same scene's uncompressed .ply bytes / .vqp bytes


@pytest.mark.gpu
@pytest.mark.timeout(900)
def test_lego_qat_reaches_the_floors(shared_scene: Callable[..., Path], tmp_path: Path) -> None:
    ds = load_dataset(shared_scene("nerf_synthetic_lego_400"), DatasetConfig(background=(1.0, 1.0, 1.0), test_every=8))
    assert len(ds.test_indices) == 13
    cfg = SplatTrainConfig.preset("fast")
    cfg = replace(cfg, qat=replace(cfg.qat, mode="compact3d"))  # the floors are Compact3D QAT's
    res = train_splats(ds, cfg, checkpoint_dir=tmp_path, device="cuda")
    rep = res.report
    assert rep["init"] == "object" and rep["framing"]["box_half"] < 1.4 and rep["schedule"] == "fast"
    print({k: v for k, v in rep.items() if k not in ("losses", "config")})
    assert rep["device"] == "cuda" and rep["strategy"] == "default" and rep["vqp_source"] == "qat"
    assert rep["psnr"] >= LEGO_PSNR_FLOOR, rep["psnr"]
    assert rep["ssim"] >= LEGO_SSIM_FLOOR, rep["ssim"]
    assert rep["ratio"] >= LEGO_RATIO_FLOOR, rep["ratio"]
    # The .vqp is the trained scene up to storage precision (fp16 codebooks, 16-bit positions, 8-bit opacity).
    assert abs(rep["psnr"] - rep["psnr_trained"]) < 0.5
    assert rep["num_gaussians"] <= rep["num_gaussians_before_prune"]
    assert rep["num_gaussians_before_prune"] != rep["num_gaussians_init"] == 100_000  # the strategy densified
    assert rep["kmeans_share"] < 0.25, rep["kmeans_share"]  # re-assignment every 100 steps, not every 10
    assert decode_vqp_splats(res.vqp).num_gaussians == rep["num_gaussians"]
    assert torch.isfinite(res.splats.means).all()


# The default Train path (full schedule, QAT mode "finetune") on the same data. Measured on an H200 alone
# (BENCHMARKS.md 6b), with the .vqp coding of version 2: this test, 36.47 dB / SSIM 0.9881, 0.45 dB under
# its own plain scene (36.91 dB), 25.82x that scene's .ply, 367 s. Earlier runs with version 1's coding
# (3.5-3.9% larger files): 36.44 / 36.48 dB, 0.45 / 0.44 dB under, 25.0x / 24.95x. Floors: the PSNR less
# a 0.45 dB margin; the gap 0.15 dB over the three runs' worst; the ratio the goal (25x), 0.8x under this
# run's.
DEFAULT_PSNR_FLOOR = 36.0
DEFAULT_GAP_CEILING = 0.6  # dB, trained scene minus its .vqp
DEFAULT_RATIO_FLOOR = 25.0


@pytest.mark.gpu
@pytest.mark.timeout(1200)
def test_lego_default_train_stays_within_half_a_db_of_plain(shared_scene: Callable[..., Path], tmp_path: Path) -> None:
    ds = load_dataset(shared_scene("nerf_synthetic_lego_400"), DatasetConfig(background=(1.0, 1.0, 1.0), test_every=8))
    res = train_splats(ds, SplatTrainConfig(), checkpoint_dir=tmp_path, device="cuda")
    rep = res.report
    print({k: v for k, v in rep.items() if k not in ("losses", "config")})
    assert rep["vqp_source"] == "finetune" and rep["steps"] == 30_000 and rep["finetune"]["steps"] == 3000
    assert rep["psnr"] >= DEFAULT_PSNR_FLOOR, rep["psnr"]
    assert rep["psnr_trained"] - rep["psnr"] <= DEFAULT_GAP_CEILING, (rep["psnr_trained"], rep["psnr"])
    assert rep["ratio"] >= DEFAULT_RATIO_FLOOR, rep["ratio"]
    assert decode_vqp_splats(res.vqp).num_gaussians == rep["num_gaussians"] < rep["num_gaussians_before_prune"]


@pytest.mark.gpu
@pytest.mark.timeout(600)
def test_gpu_resume_continues_the_checkpoint(shared_scene: Callable[..., Path], tmp_path: Path) -> None:
    from vqpress_server.core.errors import Cancelled

    ds = load_dataset(shared_scene("nerf_synthetic_lego_400"), DatasetConfig(downscale=4))
    cfg = SplatTrainConfig(checkpoint_every=100, qat=QatConfig(mode="compact3d")).scale_schedule(300)

    def stop(stage: str, fraction: float, metrics: dict | None = None) -> None:
        if stage == "train" and metrics and metrics["step"] >= 250:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        train_splats(ds, cfg, checkpoint_dir=tmp_path, progress=stop, device="cuda")
    res = train_splats(ds, cfg, checkpoint_dir=tmp_path, device="cuda")
    assert res.report["resumed_from_step"] == 200
    assert len(res.report["losses"]) == 300
    assert res.report["vqp_source"] == "qat"

"""Splat training with Compact3D QAT on the CPU twin: a tiny posed-image set rendered from a known scene."""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from vqpress_server.core.data.dataset import PosedImageDataset
from vqpress_server.core.errors import Cancelled, ConfigError, VqpressInputError
from vqpress_server.core.metrics import psnr
from vqpress_server.core.render.cameras import orbit_cameras
from vqpress_server.core.render.splats import render, render_views
from vqpress_server.core.splats.model import GaussianSplats
from vqpress_server.core.splats.qat import QatConfig
from vqpress_server.core.splats.quantize import decode_vqp_splats
from vqpress_server.core.splats.train import SplatTrainConfig, train_splats

N_GT = 150
SIZE = 64
BG = (1.0, 1.0, 1.0)


def _ground_truth() -> GaussianSplats:
    g = torch.Generator().manual_seed(1)
    N = N_GT
    return GaussianSplats(
        means=torch.randn(N, 3, generator=g) * 0.4,
        quats=torch.randn(N, 4, generator=g),
        scales=torch.full((N, 3), -2.8) + 0.3 * torch.randn(N, 3, generator=g),
        opacities=torch.full((N,), 2.0),
        sh0=torch.randn(N, 1, 3, generator=g),
        shN=0.2 * torch.randn(N, 3, 3, generator=g),
    )


@pytest.fixture(scope="module")
def gt_scene() -> GaussianSplats:
    return _ground_truth()


@pytest.fixture(scope="module")
def tiny_dataset(gt_scene: GaussianSplats) -> PosedImageDataset:
    """8 views of 64x64 rendered by the twin on white; view 0 held out; SfM-like points = noisy truth."""
    cams = orbit_cameras(gt_scene, 8, SIZE, SIZE)
    images = [render(gt_scene, c, background=BG) for c in cams]
    g = torch.Generator().manual_seed(2)
    points = gt_scene.means + 0.05 * torch.randn(N_GT, 3, generator=g)
    return PosedImageDataset(
        images,
        cams,
        list(range(1, 8)),
        [0],
        "synthetic",
        BG,
        points=points,
        point_colors=gt_scene.colors_rgb().clamp(0, 1),
    )


def _qat_config(steps: int = 60, **qat: int | float) -> SplatTrainConfig:
    q = QatConfig(
        mode="compact3d",
        start_step=20,
        freeze_step=50,
        reassign_every=10,
        kmeans_iters=3,
        dc_codebook=32,
        sh_codebook=16,
        scale_codebook=32,
        rot_codebook=32,
        prune_start=30,
        prune_stop=50,
        prune_every=10,
    )
    return SplatTrainConfig(
        steps=steps, sh_degree=1, sh_degree_interval=20, strategy="none", init="auto", qat=replace(q, **qat)
    )


def test_qat_lowers_the_loss_and_its_vqp_renders_like_the_trained_scene(
    tiny_dataset: PosedImageDataset, tmp_path: Path
) -> None:
    seen: list[tuple[str, float, dict]] = []
    res = train_splats(
        tiny_dataset, _qat_config(), checkpoint_dir=tmp_path, progress=lambda s, f, m=None: seen.append((s, f, m))
    )
    rep = res.report
    assert rep["vqp_source"] == "qat" and rep["init"] == "points" and rep["strategy"] == "none"
    assert rep["loss_last"] < 0.8 * rep["loss_first"], (rep["loss_first"], rep["loss_last"])

    # The held-out view beats the initial point cloud's render of it.
    init_psnr = psnr(render(_init_scene(tiny_dataset), tiny_dataset.cameras[0], background=BG), tiny_dataset.images[0])
    assert rep["psnr"] > init_psnr + 2.0, (rep["psnr"], init_psnr)

    # The .vqp holds the trained codebooks: it decodes to the trained scene up to storage precision.
    decoded = decode_vqp_splats(res.vqp)
    assert decoded.num_gaussians == res.splats.num_gaussians == rep["num_gaussians"]
    assert decoded.sh_degree == 1
    assert len(res.vqp) == rep["vqp_bytes"] and rep["ratio"] == pytest.approx(rep["ply_bytes"] / len(res.vqp))
    assert rep["ratio"] > 2.0
    for a, b in zip(
        render_views(decoded, tiny_dataset.cameras, BG), render_views(res.splats, tiny_dataset.cameras, BG), strict=True
    ):
        assert psnr(a, b) > 35.0
    # Every trained color is a codebook entry: at most dc_codebook distinct values.
    assert len(torch.unique(res.splats.sh0.reshape(-1, 3), dim=0)) <= 32
    assert 0.0 < rep["kmeans_share"] < 1.0

    train = [m for s, _, m in seen if s == "train"]
    assert len(train) == 60 and train[-1]["step"] == 60.0
    assert {"loss", "psnr", "num_gaussians"} <= set(train[-1])
    fractions = [f for _, f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_finetune_mode_quantizes_the_plain_result_and_trains_through_it(
    tiny_dataset: PosedImageDataset, tmp_path: Path
) -> None:
    seen: list[tuple[str, float, dict]] = []
    cfg = replace(_qat_config(steps=40), qat=QatConfig(mode="finetune", finetune_steps=25))
    res = train_splats(tiny_dataset, cfg, checkpoint_dir=tmp_path, progress=lambda s, f, m=None: seen.append((s, f, m)))
    rep = res.report
    assert rep["vqp_source"] == "finetune" and rep["kmeans_seconds"] == 0.0  # no codebooks during the schedule
    ft = rep["finetune"]
    assert ft["steps"] == 25 and ft["quantize_preset"] == "default"
    # The fine-tune trains through the quantized scene: it ends at least where the quantizer left it.
    assert rep["psnr"] >= ft["psnr_before"] - 0.05, (rep["psnr"], ft["psnr_before"])
    assert rep["psnr_trained"] > 20.0
    decoded = decode_vqp_splats(res.vqp)
    assert (
        decoded.num_gaussians == rep["num_gaussians"] <= rep["num_gaussians_before_prune"] == res.splats.num_gaussians
    )
    assert len(res.vqp) == rep["vqp_bytes"]
    stages = [s for s, _, _ in seen]
    assert stages.count("finetune") == 25 and stages.index("finetune") > stages.index("encode")
    fractions = [f for _, f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def _init_scene(ds: PosedImageDataset) -> GaussianSplats:
    from vqpress_server.core.splats.train import frame_dataset, initial_splats

    frame = frame_dataset(ds, _qat_config(), [ds.cameras[i] for i in ds.train_indices])
    assert frame.rule == "points"
    return initial_splats(ds, _qat_config(), frame, torch.Generator().manual_seed(0))


def test_fine_tuning_prunes_transparent_gaussians(
    tiny_dataset: PosedImageDataset, gt_scene: GaussianSplats, tmp_path: Path
) -> None:
    junk = 30
    g = torch.Generator().manual_seed(3)
    extra = GaussianSplats(
        torch.randn(junk, 3, generator=g) * 0.4,
        torch.randn(junk, 4, generator=g),
        torch.full((junk, 3), -3.0),
        torch.full((junk,), -8.0),
        torch.randn(junk, 1, 3, generator=g),
        torch.zeros(junk, 3, 3),
    )
    init = GaussianSplats(
        *(torch.cat([a, b]) for a, b in zip(gt_scene.tensors().values(), extra.tensors().values(), strict=True))
    )
    cfg = replace(
        _qat_config(
            steps=12, start_step=4, freeze_step=8, reassign_every=4, prune_start=5, prune_stop=8, prune_every=3
        ),
        init="random",
    )
    res = train_splats(tiny_dataset, cfg, checkpoint_dir=tmp_path, init=init)
    assert res.report["init"] == "scene"
    assert res.report["num_gaussians_init"] == N_GT + junk
    assert res.report["num_gaussians_before_prune"] == N_GT + junk
    assert res.report["num_gaussians"] == N_GT  # the 30 transparent ones are gone, the opaque ones stay
    assert decode_vqp_splats(res.vqp).num_gaussians == N_GT
    # Fine-tuning the true scene keeps it close to the photos.
    assert res.report["psnr_trained"] > 25.0


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tiny_dataset: PosedImageDataset, tmp_path: Path) -> None:
    cfg = replace(
        _qat_config(
            steps=20, start_step=6, freeze_step=16, reassign_every=4, prune_start=8, prune_stop=16, prune_every=4
        ),
        checkpoint_every=5,
    )
    full = train_splats(tiny_dataset, cfg, checkpoint_dir=tmp_path / "a")

    def stop_at_12(stage: str, fraction: float, metrics: dict | None = None) -> None:
        if stage == "train" and metrics and metrics["step"] >= 12:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        train_splats(tiny_dataset, cfg, checkpoint_dir=tmp_path / "b", progress=stop_at_12)
    assert (tmp_path / "b" / "last.pt").is_file()
    resumed = train_splats(tiny_dataset, cfg, checkpoint_dir=tmp_path / "b")
    assert resumed.report["resumed_from_step"] == 10
    assert resumed.report["losses"] == pytest.approx(full.report["losses"], rel=1e-5)
    for k, v in full.splats.tensors().items():
        torch.testing.assert_close(resumed.splats.tensors()[k], v, rtol=1e-5, atol=1e-6, msg=k)
    assert resumed.vqp == full.vqp

    # A checkpoint is only continued with the config and dataset it was written for.
    with pytest.raises(ConfigError, match="another training config"):
        train_splats(tiny_dataset, replace(cfg, seed=1), checkpoint_dir=tmp_path / "b")
    other = PosedImageDataset(
        [1.0 - im for im in tiny_dataset.images],
        tiny_dataset.cameras,
        tiny_dataset.train_indices,
        tiny_dataset.test_indices,
        "synthetic",
        BG,
        tiny_dataset.points,
        tiny_dataset.point_colors,
    )
    with pytest.raises(VqpressInputError, match="another dataset"):
        train_splats(other, cfg, checkpoint_dir=tmp_path / "b")


def test_scale_schedule_scales_events_and_keeps_periods_above_their_floors() -> None:
    base = SplatTrainConfig(qat=QatConfig(mode="compact3d"))
    assert base.scale_schedule(30_000) == base
    c = base.scale_schedule(3000)
    assert c.steps == 3000
    # Events scale (refine_start at least steps // 10, SH rising at most every steps // 6);
    # densify / reset periods keep gsplat's 100 / 3000 steps.
    assert (c.sh_degree_interval, c.refine_start, c.refine_stop, c.refine_every, c.reset_every) == (
        500,
        300,
        1500,
        100,
        3000,
    )
    q = c.qat
    # QAT from 1500, frozen from 2500, re-assigned every 100 steps (not 10), one prune at 2000.
    assert (q.start_step, q.freeze_step, q.reassign_every, q.prune_start, q.prune_stop, q.prune_every) == (
        1500,
        2500,
        100,
        1500,
        2000,
        500,
    )
    assert [s for s in range(3000) if q.prunes_at(s)] == [2000]
    # The default mode fine-tunes a tenth of the schedule after it, and never prunes inside it.
    d = SplatTrainConfig().scale_schedule(3000).qat
    assert (
        d.mode == "finetune"
        and d.finetune_steps_for(3000) == 300
        and SplatTrainConfig().qat.finetune_steps_for(30_000) == 3000
    )
    assert not any(d.prunes_at(s) or d.in_prune_window(s) for s in range(3000))
    assert c.checkpoint_every == base.checkpoint_every and q.kmeans_iters == 10 and q.dc_codebook == 4096
    for steps in (30, 300, 1000, 7000):
        s = base.scale_schedule(steps).validate()
        assert s.refine_every == 100 and s.reset_every == 3000 and s.qat.reassign_every == 100
        assert s.refine_start < s.refine_stop and s.sh_degree_interval * s.sh_degree <= s.qat.start_step
        assert any(s.qat.prunes_at(t) for t in range(steps))  # the prune window is never empty
    tiny = base.scale_schedule(30)
    assert tiny.qat.start_step == 15 and tiny.refine_start == 3
    # steps alone scales the default schedule
    assert SplatTrainConfig.from_dict({"steps": 3000, "qat": {"mode": "compact3d"}}) == c
    # Explicit step fields switch the scaling off: the rest keeps the 30k defaults.
    explicit = SplatTrainConfig.from_dict({"steps": 3000, "qat": {"start_step": 100, "freeze_step": 2000}})
    assert explicit.qat.start_step == 100 and explicit.qat.prune_start == 15_000 and explicit.refine_stop == 15_000
    with pytest.raises(ConfigError):
        base.scale_schedule(0)


@pytest.mark.parametrize(
    "change",
    [
        {"steps": 0},
        {"steps": 10**9},
        {"sh_degree": 4},
        {"ssim_lambda": 1.5},
        {"means_lr": float("nan")},
        {"scales_lr": -1.0},
        {"init": "mesh"},
        {"init_num_points": 0},
        {"init_opacity": 1.0},
        {"strategy": "adc"},
        {"sh_degree_interval": 0},
        {"checkpoint_every": True},
        {"qat": QatConfig(mode="compact3d", start_step=30_000)},  # never starts within 30k steps
        {"qat": QatConfig(mode="compact3d", freeze_step=100)},
        {"qat": QatConfig(dc_codebook=0)},
        {"qat": QatConfig(sh_codebook=1 << 20)},
        {"qat": QatConfig(kmeans_iters=-1)},
        {"qat": QatConfig(reassign_every=0)},
        {"qat": QatConfig(prune_opacity=1.0)},
        {"qat": QatConfig(mode="compact3d", prune_stop=10)},
        {"qat": QatConfig(mode="c3dgs")},
        {"qat": QatConfig(mode="finetune", finetune_steps=0)},
    ],
)
def test_bad_configs_are_rejected(change: dict) -> None:
    with pytest.raises(ConfigError):
        replace(SplatTrainConfig(), **change).validate()


def test_config_from_dict_rejects_unknown_fields_and_round_trips() -> None:
    with pytest.raises(ConfigError, match="unknown"):
        SplatTrainConfig.from_dict({"stepz": 10})
    with pytest.raises(ConfigError, match="qat.colour"):
        SplatTrainConfig.from_dict({"qat": {"colour": 1}})
    with pytest.raises(ConfigError):
        SplatTrainConfig.from_dict({"steps": "many"})
    c = SplatTrainConfig().scale_schedule(500)
    assert SplatTrainConfig.from_dict(json.loads(json.dumps(c.as_dict()))) == c


def test_bad_inputs_fail_clearly(tiny_dataset: PosedImageDataset, gt_scene: GaussianSplats, tmp_path: Path) -> None:
    no_train = PosedImageDataset(tiny_dataset.images[:1], tiny_dataset.cameras[:1], [], [0], "synthetic", BG)
    with pytest.raises(VqpressInputError, match="no training images"):
        train_splats(no_train, _qat_config(), checkpoint_dir=tmp_path)
    bad = replace(gt_scene, means=gt_scene.means.clone())
    bad.means[3, 1] = float("nan")
    with pytest.raises(VqpressInputError, match="non-finite"):
        train_splats(tiny_dataset, _qat_config(), checkpoint_dir=tmp_path, init=bad)
    with pytest.raises(VqpressInputError, match="no Gaussians"):
        train_splats(tiny_dataset, _qat_config(), checkpoint_dir=tmp_path, init=GaussianSplats.empty(1))
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(VqpressInputError, match="checkpoint"):
        train_splats(tiny_dataset, _qat_config(), checkpoint_dir=tmp_path)


def _nerf_synthetic_zip(ds: PosedImageDataset, path: Path) -> Path:
    """The tiny dataset as a NeRF-synthetic archive (RGB PNGs, OpenGL camera-to-world)."""
    frames = []
    with zipfile.ZipFile(path, "w") as zf:
        for i, (img, cam) in enumerate(zip(ds.images, ds.cameras, strict=True)):
            c2w = np.linalg.inv(cam.viewmat)
            c2w[:3, 1:3] *= -1.0  # OpenCV -> OpenGL axes
            frames.append({"file_path": f"./train/r_{i}", "transform_matrix": c2w.tolist()})
            png = path.parent / f"r_{i}.png"
            Image.fromarray((img.numpy() * 255 + 0.5).astype(np.uint8)).save(png)
            zf.write(png, f"tiny/train/r_{i}.png")
        angle = 2 * math.atan(0.5 * SIZE / float(ds.cameras[0].K[0, 0]))
        zf.writestr("tiny/transforms_train.json", json.dumps({"camera_angle_x": angle, "frames": frames}))
    return path


def test_train_job_handler_writes_vqp_ply_and_report(tiny_dataset: PosedImageDataset, tmp_path: Path) -> None:
    from vqpress_server.artifacts import ArtifactStore
    from vqpress_server.jobs.context import JobContext, WarmState
    from vqpress_server.jobs.specs import SpecError, TrainSplatsSpec, spec_from_json
    from vqpress_server.jobs.table import JobTable
    from vqpress_server.jobs.train_handler import checkpoint_dir, run_train_splats

    store = ArtifactStore(tmp_path / "artifacts", 1 << 30)
    table = JobTable(tmp_path / "jobs.sqlite3")
    archive = store.put_file(_nerf_synthetic_zip(tiny_dataset, tmp_path / "tiny.zip"), "tiny.zip", "zip")
    cfg = replace(
        _qat_config(steps=10, start_step=4, freeze_step=8, reassign_every=2, prune_start=5, prune_stop=8),
        init_num_points=300,
    )
    spec = TrainSplatsSpec(archive.id, cfg)
    table.submit_spec(spec)
    job = table.claim("w1", lease_s=60)
    assert job is not None
    scratch = tmp_path / "scratch" / f"{job.id}-{job.attempts}"
    scratch.mkdir(parents=True)
    ctx = JobContext(job=job, worker_id="w1", table=table, store=store, warm=WarmState("cpu"), scratch=scratch)
    stored = spec_from_json(job.spec)
    assert stored == spec  # the table's JSON gives the same typed spec back
    out = run_train_splats(ctx, stored)
    assert [o.name for o in out.outputs] == ["scene.vqp", "scene.ply", "report.json"]
    report = json.loads(out.outputs[2].path.read_text())
    assert report["ply_bytes"] == out.outputs[1].path.stat().st_size
    assert report["vqp_bytes"] == out.outputs[0].path.stat().st_size
    assert report["eval_split"] == "test" and report["num_eval_views"] == 1  # every 8th photo held out
    assert decode_vqp_splats(out.outputs[0].path.read_bytes()).num_gaussians == report["num_gaussians"]
    assert out.metrics["ratio"] == pytest.approx(report["ratio"])
    assert not checkpoint_dir(ctx).exists()

    # A stored spec is checked when it is read back, naming the key.
    with pytest.raises(SpecError, match="unknown"):
        spec_from_json({**spec.to_json(), "config": {"bogus": 1}})
    with pytest.raises(SpecError, match="dataset"):
        spec_from_json({**spec.to_json(), "dataset": {"artifact": archive.id}})


def test_random_box_init_learns_the_scene_in_100_steps(gt_scene: GaussianSplats, tmp_path: Path) -> None:
    """From 500 random Gaussians in the box fitted to the object (no points, no densification) the
    held-out view reaches 18 dB in 100 steps (plain white is 13.9 dB). The orbit cameras surround the
    scene, so the object rule is chosen with no flag: gsplat's camera-spread box (+-3 scene scales) is
    far too wide to learn anything without densification."""
    size = 32
    cams = orbit_cameras(gt_scene, 8, size, size)
    ds = PosedImageDataset(
        [render(gt_scene, c, background=BG) for c in cams], cams, list(range(1, 8)), [0], "synthetic", BG
    )
    cfg = SplatTrainConfig(
        steps=100, sh_degree=0, strategy="none", init="random", init_num_points=500, qat=QatConfig(enabled=False)
    )
    res = train_splats(ds, cfg, checkpoint_dir=tmp_path)
    rep = res.report
    assert rep["init"] == "object" and rep["framing"]["rule"] == "object" and rep["num_gaussians"] == 500
    assert psnr(torch.ones(size, size, 3), ds.images[0]) < 14.5
    assert rep["psnr_trained"] > 18.0, rep["psnr_trained"]
    wide = train_splats(ds, replace(cfg, init="camera_spread"), checkpoint_dir=tmp_path / "wide")
    assert wide.report["framing"]["box_half"] > 5 * rep["framing"]["box_half"]
    assert wide.report["psnr_trained"] < rep["psnr_trained"] - 2.0, (wide.report["psnr_trained"], rep["psnr_trained"])


def test_random_box_is_uniform_in_the_framing_box() -> None:
    """Uniform in center +- box_half, scale = log of the RMS distance to 3 neighbours, gsplat's opacity."""
    from vqpress_server.core.splats.framing import Framing
    from vqpress_server.core.splats.train import initial_splats

    frame = Framing("camera_spread", (1.0, -2.0, 0.5), 2.0, 6.0, 1.0, 30.0, 0.9)
    cfg = SplatTrainConfig(init="random", init_num_points=4000)
    scene = initial_splats(None, cfg, frame, torch.Generator().manual_seed(0))
    assert scene.num_gaussians == 4000
    center = torch.tensor(frame.center)
    lo, hi = scene.means.min(0).values, scene.means.max(0).values
    torch.testing.assert_close(lo, center - 6.0, atol=0.05, rtol=0)
    torch.testing.assert_close(hi, center + 6.0, atol=0.05, rtol=0)
    d2 = torch.cdist(scene.means[:50], scene.means).square()
    rms = d2.topk(4, dim=1, largest=False).values[:, 1:].mean(1).sqrt()
    torch.testing.assert_close(scene.scales[:50], torch.log(rms)[:, None].expand(50, 3))
    torch.testing.assert_close(torch.sigmoid(scene.opacities), torch.full((4000,), 0.1))


def test_presets_full_is_the_default_and_fast_is_the_same_schedule_in_7k() -> None:
    full, fast = SplatTrainConfig.preset("full"), SplatTrainConfig.preset("fast")
    assert full == SplatTrainConfig() and full.steps == 30_000 and full.schedule == "full"
    assert fast.steps == 7000 and fast.schedule == "fast"
    assert fast == replace(SplatTrainConfig().scale_schedule(7000), schedule="fast")
    assert SplatTrainConfig.from_dict({"schedule": "fast"}) == fast
    assert SplatTrainConfig.from_dict({"schedule": "fast", "steps": 7000}) == fast
    assert SplatTrainConfig.from_dict({}) == full
    with pytest.raises(ConfigError, match="schedule"):
        SplatTrainConfig.from_dict({"schedule": "turbo"})
    with pytest.raises(ConfigError, match="schedule"):
        SplatTrainConfig.preset("turbo")

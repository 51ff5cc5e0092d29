"""The Instant-NGP-class radiance-field trainer on the CPU: the occupancy-grid marcher against its
per-ray twin, packed compositing, the learning-rate schedule, random backgrounds behind alpha, and
a tiny field that trains with the marcher."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from vqpress_server.core.errors import ConfigError
from vqpress_server.core.fields.config import (
    DecoderConfig,
    FieldConfig,
    HashGridConfig,
    TrainConfig,
    VqadGridConfig,
    instant_ngp_field,
    instant_ngp_train,
)
from vqpress_server.core.fields.model import NeuralField
from vqpress_server.core.fields.serialize import decode_field, encode_field
from vqpress_server.core.fields.train import SceneBox, field_occupancy, fit_radiance, lr_factor, render_field
from vqpress_server.core.render.cameras import Camera, look_at
from vqpress_server.core.render.volume import (
    OccupancyGrid,
    composite_packed,
    march_rays,
    render_image,
    render_rays_marched,
    render_rays_marched_reference,
    transmittance_packed,
)


def _blob(x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Analytic scene: a dense ball of radius 0.5 (density 40) and a faint shell around it."""
    r = x.norm(dim=-1)
    density = 40.0 * torch.sigmoid((0.5 - r) * 30.0) + 0.5 * torch.exp(-((r - 0.8) ** 2) / 0.01)
    rgb = 0.5 + 0.5 * torch.tanh(x + 0.3 * d)
    return density, rgb


def _orbit(n: int, size: int, dist: float = 2.5) -> list[Camera]:
    K = np.array([[size * 1.2, 0, size / 2], [0, size * 1.2, size / 2], [0, 0, 1.0]])
    cams = []
    for i in range(n):
        a = 2 * math.pi * i / n
        eye = np.array([dist * math.cos(a), dist * math.sin(a), 0.8 * (-1) ** i])
        cams.append(Camera(viewmat=look_at(eye, np.zeros(3), np.array([0.0, 0.0, 1.0])), K=K, width=size, height=size))
    return cams


def _rays(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    o = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * 2.5
    target = torch.randn(n, 3, generator=g) * 0.4
    return o, torch.nn.functional.normalize(target - o, dim=-1)


@pytest.mark.parametrize("unbounded", [False, True])
@pytest.mark.parametrize("eps", [1e-4, 0.05])
def test_marcher_matches_per_ray_twin(unbounded: bool, eps: float) -> None:
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3])
    occ = OccupancyGrid(aabb, 16, 1, unbounded=unbounded, step_size=2 * math.sqrt(3) / 96)
    occ.fill(lambda x: _blob(x, torch.zeros_like(x))[0])
    assert 0.02 < occ.fraction() < 0.9  # empty space is skipped, the ball is not
    o, d = _rays(8 if unbounded else 24)  # the twin is slow beyond the box: few rays
    step = 2 * math.sqrt(3) / 96
    density = lambda x: _blob(x, torch.zeros_like(x))[0]  # noqa: E731
    bg = torch.tensor([0.2, 0.4, 0.9])
    rgb, op, _, n = render_rays_marched(
        _blob, density, o, d, aabb, step, occupancy=occ, early_stop_eps=eps, background=bg, unbounded=unbounded
    )
    ref_rgb, ref_op = render_rays_marched_reference(
        _blob, o, d, aabb, step, occupancy=occ, early_stop_eps=eps, background=bg, unbounded=unbounded
    )
    torch.testing.assert_close(rgb, ref_rgb, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(op, ref_op, atol=2e-5, rtol=1e-4)
    assert float(op.max()) > 0.9 and float(op.min()) < 0.5  # some rays hit the ball, some miss it
    # Early termination drops samples: with the looser eps fewer samples are evaluated.
    _, _, _, n_loose = render_rays_marched(
        _blob, density, o, d, aabb, step, occupancy=occ, early_stop_eps=0.2, unbounded=unbounded
    )
    assert n_loose < n


def test_marched_image_matches_dense_stratified_render() -> None:
    # The marcher (with its occupancy grid) renders what 1024 evenly spaced samples render. The
    # threshold is low enough for the faint shell (the default one skips cells that faint).
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3])
    cam = _orbit(1, 20)[0]
    dense = render_image(_blob, cam, aabb, 1024, background=(1.0, 1.0, 1.0))
    occ = OccupancyGrid(aabb, 32, 1024, threshold=1e-4)
    occ.fill(lambda x: _blob(x, torch.zeros_like(x))[0])
    from vqpress_server.core.render.volume import render_image_marched

    marched = render_image_marched(
        _blob, lambda x: _blob(x, torch.zeros_like(x))[0], cam, aabb, 2 * math.sqrt(3) / 1024, occupancy=occ
    )
    assert float((marched - dense).abs().max()) < 0.02


def test_packed_transmittance_and_compositing_match_cumprod() -> None:
    g = torch.Generator().manual_seed(1)
    counts = [0, 5, 1, 40, 7]
    ray_ids = torch.cat([torch.full((c,), i) for i, c in enumerate(counts)]).long()
    sig = torch.rand(ray_ids.shape[0], generator=g) * 30
    delta = torch.rand(ray_ids.shape[0], generator=g) * 0.05
    rgb = torch.rand(ray_ids.shape[0], 3, generator=g)
    t = torch.cumsum(delta, 0)
    out, op, _ = composite_packed(ray_ids, len(counts), sig, rgb, t, delta)
    trans = transmittance_packed(ray_ids, len(counts), sig * delta)
    s = 0
    for i, c in enumerate(counts):
        a = 1 - torch.exp(-sig[s : s + c] * delta[s : s + c])
        T = torch.cumprod(torch.cat([torch.ones(1), 1 - a]), 0)[:-1]
        torch.testing.assert_close(trans[s : s + c], T)
        torch.testing.assert_close(out[i], (T * a) @ rgb[s : s + c] if c else torch.zeros(3))
        torch.testing.assert_close(op[i], (T * a).sum())
        s += c


def test_march_keeps_samples_in_occupied_cells_only() -> None:
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3])
    occ = OccupancyGrid(aabb, 8, 1)
    dens = torch.zeros(8, 8, 8)
    dens[3:5, 3:5, 3:5] = 100.0  # a block in the middle
    occ.load(dens)
    o, d = _rays(32, seed=3)
    ray_ids, t, delta = march_rays(o, d, aabb, 0.01, occupancy=occ, generator=torch.Generator().manual_seed(0))
    x = o[ray_ids] + t[:, None] * d[ray_ids]
    assert ray_ids.numel() > 0 and bool((x.abs() <= 0.25 + 1e-4).all())
    assert bool((ray_ids[1:] >= ray_ids[:-1]).all())  # grouped by ray
    same = ray_ids[1:] == ray_ids[:-1]
    assert bool((t[1:][same] > t[:-1][same]).all())  # ordered along the ray
    torch.testing.assert_close(delta, torch.full_like(delta, 0.01), atol=1e-5, rtol=0)


def test_lr_schedule_warms_up_and_steps_down() -> None:
    tr = TrainConfig(steps=1000, lr_warmup=100, lr_decay="step")
    f = [lr_factor(s, s / tr.steps, tr) for s in (0, 50, 100, 499, 500, 750, 900, 999)]
    assert f[0] == pytest.approx(0.01) and f[1] == pytest.approx(0.505) and f[2] == f[3] == 1.0
    assert f[4] == pytest.approx(0.33) and f[5] == pytest.approx(0.33**2) and f[6] == f[7] == pytest.approx(0.33**3)
    assert lr_factor(10, 0.01, TrainConfig()) == 1.0  # no schedule by default


@pytest.mark.parametrize(
    "bad",
    [{"sampler": "cone"}, {"march_steps": 0}, {"loss": "l1"}, {"lr_decay": "cosine"}, {"target_samples": 3}],
)
def test_bad_trainer_settings_are_config_errors(bad: dict) -> None:
    with pytest.raises(ConfigError):
        TrainConfig(**bad).validate()


def test_ngp_presets_are_valid() -> None:
    cfg, tr = instant_ngp_field(), instant_ngp_train()
    cfg.validate()
    tr.validate()
    assert isinstance(cfg.grid, HashGridConfig) and cfg.grid.levels == 16 and cfg.grid.max_resolution >= 1024
    model = NeuralField(cfg)
    assert model.grid.out_dim == 32 and any(model.grid.hashed) and not all(model.grid.hashed)


def _scene(n: int = 4, size: int = 12) -> tuple[list[torch.Tensor], list[Camera], SceneBox]:
    """Photos of the ball with alpha: rgba [H, W, 4], straight colour."""
    box = SceneBox((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
    aabb = box.tensor("cpu")
    cams = _orbit(n, size)
    black = [render_image(_blob, c, aabb, 128, background=(0.0, 0.0, 0.0)) for c in cams]
    white = [render_image(_blob, c, aabb, 128, background=(1.0, 1.0, 1.0)) for c in cams]
    imgs = []
    for b, w in zip(black, white, strict=True):
        a = (1.0 - (w - b).mean(-1, keepdim=True)).clamp(0, 1)
        imgs.append(torch.cat([(b / a.clamp(min=1e-4)).clamp(0, 1) * (a > 1e-4), a], -1))
    return imgs, cams, box


def test_tiny_field_trains_with_the_marcher_and_renders_from_its_file() -> None:
    imgs, cams, box = _scene()
    cfg = FieldConfig(
        dims=3,
        grid=VqadGridConfig(
            levels=2,
            base_resolution=8,
            max_resolution=16,
            features=2,
            combine="concat",
            bits=4,
            sparse_min_resolution=16,
        ),
        decoder=DecoderConfig(hidden=16, layers=1, color_layers=1, dir_degree=3),
    )
    train = TrainConfig(
        steps=30,
        batch_size=128,
        lr=0.03,
        mlp_lr=0.01,
        sampler="march",
        march_steps=48,
        target_samples=1024,
        occupancy_resolution=16,
        occupancy_warmup=10,
        occupancy_update_every=5,
        lr_warmup=5,
        lr_decay="step",
        weight_decay=1e-6,
        loss="huber",
        random_background=True,
        log_every=10,
    )
    res = fit_radiance(imgs, cams, cfg, train, box=box)
    hist = res.history
    assert res.step == 30 and len(hist) == 3
    assert hist[-1]["loss"] < 0.6 * hist[0]["loss"], hist
    assert hist[-1]["samples"] > 0 and hist[-1]["rays"] != train.batch_size  # rays follow the sample budget
    assert hist[-1]["allocated_vertices"] > 0  # the sparse level was allocated from the occupancy grid
    model, _ = decode_field(encode_field(res.field))
    occ = field_occupancy(model, box, resolution=16, march_steps=48)
    out = render_field(model, cams[0], box=box, background=(1.0, 1.0, 1.0), march_steps=48, occupancy=occ)
    ref = imgs[0][..., :3] * imgs[0][..., 3:] + (1 - imgs[0][..., 3:])
    assert float(((out - ref) ** 2).mean()) < 0.05


def test_the_trained_occupancy_grid_travels_in_the_file_and_bounds_the_render() -> None:
    # Cells the marcher skipped in training never learned to be empty; the file keeps the grid the
    # field was trained through, and a render marches only its cells.
    imgs, cams, box = _scene(3, 10)
    cfg = FieldConfig(
        dims=3,
        grid=HashGridConfig(levels=2, base_resolution=8, max_resolution=16, features=2, log2_table_size=10),
        decoder=DecoderConfig(hidden=16, layers=1, color_layers=1),
    )
    train = TrainConfig(
        steps=12, batch_size=96, sampler="march", march_steps=40, target_samples=768, occupancy_resolution=16,
        occupancy_warmup=4, occupancy_update_every=4, log_every=4,
    )  # fmt: skip
    res = fit_radiance(imgs, cams, cfg, train, box=box)
    field = res.field
    grid = OccupancyGrid(box.tensor("cpu"), 16, 1, step_size=float(box.tensor("cpu").diff(dim=0).norm()) / 40)
    assert res.occupancy is not None
    grid.load(res.occupancy)
    assert field.occupancy_mask is not None and torch.equal(field.occupancy_mask, grid.mask)
    # A grid that marks part of the box empty survives the file as it is.
    partial = torch.zeros(16, 16, 16, dtype=torch.bool)
    partial[3:13, 2:11, 5:14] = True
    field.occupancy_mask = partial
    model, _ = decode_field(encode_field(field))
    assert model.occupancy_mask is not None and torch.equal(model.occupancy_mask, partial)
    assert torch.equal(field_occupancy(model, box, resolution=32, march_steps=40).mask, partial)
    # An empty stored grid renders nothing but the background; without one the density decides.
    model.occupancy_mask = torch.zeros_like(partial)
    empty = render_field(model, cams[0], box=box, background=(0.25, 0.5, 0.75), march_steps=40)
    assert torch.allclose(empty, torch.tensor([0.25, 0.5, 0.75]).expand_as(empty))
    model.occupancy_mask = None
    estimated = render_field(model, cams[0], box=box, background=(0.25, 0.5, 0.75), march_steps=40)
    assert not torch.allclose(estimated, empty)


def test_a_stored_occupancy_grid_that_lies_about_its_size_is_a_format_error() -> None:
    from vqpress.vqp import Section, read_vqp, write_vqp
    from vqpress_server.core.errors import FormatError

    cfg = FieldConfig(
        dims=3,
        grid=HashGridConfig(levels=2, base_resolution=4, max_resolution=8, features=2, log2_table_size=8),
        decoder=DecoderConfig(hidden=8, layers=1, color_layers=1),
    )
    field = NeuralField(cfg)
    field.occupancy_mask = torch.ones(8, 8, 8, dtype=torch.bool)
    vqp = read_vqp(encode_field(field))
    assert vqp.manifest["occupancy"] == {"resolution": 8}
    for bad in ({"resolution": 9}, {"resolution": 10_000}, {"resolution": "8"}, [8]):
        manifest = {**vqp.manifest, "occupancy": bad}
        sections = [Section(k, np.asarray(v)) for k, v in vqp.sections.items()]
        with pytest.raises(FormatError, match="occupancy"):
            decode_field(write_vqp("field", manifest, sections))


def test_random_background_is_learned_as_transparency() -> None:
    # Trained on random backgrounds, the empty corners of the photos become transparent: rendered
    # on black and on white they take (mostly) the background's colour.
    imgs, cams, box = _scene()
    cfg = FieldConfig(
        dims=3,
        grid=HashGridConfig(
            levels=2, base_resolution=8, max_resolution=16, features=2, log2_table_size=12, combine="concat"
        ),
        decoder=DecoderConfig(hidden=16, layers=1, color_layers=1),
    )
    train = TrainConfig(
        steps=40,
        batch_size=128,
        lr=0.03,
        mlp_lr=0.01,
        sampler="march",
        march_steps=48,
        target_samples=1024,
        occupancy_resolution=16,
        occupancy_warmup=10,
        occupancy_update_every=5,
        random_background=True,
        log_every=10,
    )
    model = fit_radiance(imgs, cams, cfg, train, box=box).field
    occ = field_occupancy(model, box, resolution=16, march_steps=48)
    outs = [
        render_field(model, cams[0], box=box, background=bg, march_steps=48, occupancy=occ)
        for bg in ((0.0,) * 3, (1.0,) * 3)
    ]
    corner = slice(0, 2)
    assert float((outs[1] - outs[0])[corner, corner].min()) > 0.5  # opacity below 0.5 there


def test_3d_field_jobs_default_to_the_instant_ngp_class_trainer_within_a_time_budget() -> None:
    from vqpress_server.core.fields.config import RADIANCE_TIME_BUDGET_S, field_config_from_spec, train_config_from_spec

    t3 = train_config_from_spec(None, 3)
    assert t3.sampler == "march" and t3.target_samples == 1 << 18 and t3.random_background
    assert t3.lr_decay == "step" and t3.loss == "huber" and 0 < t3.time_budget_s == RADIANCE_TIME_BUDGET_S <= 420
    short = train_config_from_spec({"steps": 300, "time_budget_s": 0.0}, 3)
    assert short.steps == 300 and short.time_budget_s == 0.0 and short.lr_warmup == 30  # what is set wins
    assert train_config_from_spec(None, 2) == TrainConfig()  # image fields keep theirs
    f3 = field_config_from_spec({"grid": {"bits": 8}}, 3, radiance_defaults=True)
    assert isinstance(f3.grid, VqadGridConfig) and f3.grid.bits == 8 and f3.grid.levels == 16
    assert f3.grid.max_resolution == 256 and f3.grid.sparse and f3.grid.combine == "concat"
    assert f3.decoder == instant_ngp_field().decoder
    hash3 = field_config_from_spec({"grid": {"kind": "hash"}}, 3, radiance_defaults=True).grid
    assert isinstance(hash3, HashGridConfig) and hash3.log2_table_size == 19 and hash3.max_resolution == 2048
    f2 = field_config_from_spec({"grid": {"kind": "vqad"}}, 2, radiance_defaults=True)
    assert f2.grid == VqadGridConfig() and f2.decoder == DecoderConfig()
    # A field that exists (inline tensors, a .vqp) keeps the class defaults whatever its dims.
    assert field_config_from_spec({"grid": {"kind": "vqad"}}, 3).decoder == DecoderConfig()
    with pytest.raises(ConfigError, match="unknown train field"):
        train_config_from_spec({"stpes": 3}, 3)

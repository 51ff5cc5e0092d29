"""The radiance-field trainer's speed options against the default path on the CPU: each must train
the same field (same samples, same losses to float tolerance). The all-levels grid lookup against
the per-level loop (features and gradients, dense / hash / sparse VQ-AD), the marcher's box bound
against the exact one, and whole fits with every option, the compiled lookup among them."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from test_fields_march import _rays, _scene
from test_sparse_fields import ball
from vqpress_server.core.errors import ConfigError
from vqpress_server.core.fields.config import (
    DecoderConfig,
    DenseGridConfig,
    FieldConfig,
    HashGridConfig,
    TrainConfig,
    VqadGridConfig,
)
from vqpress_server.core.fields.grid import VqadGrid, build_grid
from vqpress_server.core.fields.train import fit_radiance
from vqpress_server.core.render.volume import OccupancyGrid, march_rays, march_steps_bound

GRIDS = {
    "dense": DenseGridConfig(levels=3, base_resolution=4, max_resolution=16, features=2, combine="concat"),
    "hash": HashGridConfig(levels=4, base_resolution=4, max_resolution=64, features=2, log2_table_size=9),
    "hash-sum": HashGridConfig(
        levels=3, base_resolution=4, max_resolution=32, features=2, log2_table_size=8, combine="sum"
    ),  # fmt: skip
    "vqad-sparse": VqadGridConfig(
        levels=3,
        base_resolution=8,
        max_resolution=32,
        features=2,
        bits=4,
        sparse=True,
        sparse_min_resolution=16,
        combine="concat",
    ),  # fmt: skip
    "vqad-2": VqadGridConfig(
        levels=2,
        base_resolution=8,
        max_resolution=16,
        features=2,
        bits=4,
        sparse=True,
        sparse_min_resolution=16,
        combine="concat",
    ),  # fmt: skip
    "vqad-candidates": VqadGridConfig(
        levels=2, base_resolution=4, max_resolution=8, features=2, bits=6, candidates=8, combine="concat"
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_all_levels_lookup_matches_the_per_level_loop(name: str) -> None:
    grid = build_grid(3, GRIDS[name], torch.Generator().manual_seed(0))
    if isinstance(grid, VqadGrid) and any(grid.sparse):
        grid.allocate(ball(16), generator=torch.Generator().manual_seed(1))
    x = torch.rand(300, 3, generator=torch.Generator().manual_seed(2)) * 1.1 - 0.05  # a few outside the cube
    outs = []
    for fused in (False, True):
        grid.fused_lookup = fused
        grid.zero_grad(set_to_none=True)
        feats, support = grid.features_and_support(x)
        (feats * torch.linspace(-1, 1, feats.shape[1])).square().sum().backward()
        grads = [p.grad.clone() if p.grad is not None else None for p in grid.parameters()]
        outs.append((feats.detach(), support, grads))
    (f0, s0, g0), (f1, s1, g1) = outs
    torch.testing.assert_close(f1, f0, rtol=1e-6, atol=1e-7)
    assert (s0 is None) == (s1 is None) and (s0 is None or torch.equal(s0, s1))
    assert (s0 is not None) == any(grid.sparse)  # an allocated sparse grid bounds the field
    if s0 is not None:
        assert 0 < int(s0.sum()) < s0.numel()
    assert sum(g is not None for g in g0) > 0
    for a, b in zip(g0, g1, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def test_box_bound_marches_the_same_samples_without_the_longest_ray() -> None:
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3])
    occ = OccupancyGrid(aabb, 8, 1)
    dens = torch.zeros(8, 8, 8)
    dens[2:6, 1:5, 3:7] = 100.0
    occ.load(dens)
    o, d = _rays(64, seed=5)
    step = float((aabb[1] - aabb[0]).norm()) / 96
    bound = march_steps_bound(aabb, step)
    assert 97 <= bound <= 99
    exact = march_rays(o, d, aabb, step, occupancy=occ, generator=torch.Generator().manual_seed(0))
    boxed = march_rays(o, d, aabb, step, occupancy=occ, generator=torch.Generator().manual_seed(0), max_steps=bound)
    assert exact[0].numel() > 0
    for a, b in zip(exact, boxed, strict=True):
        assert torch.equal(a, b)


BASE = TrainConfig(
    steps=12, batch_size=96, sampler="march", march_steps=40, target_samples=768, occupancy_resolution=16,
    occupancy_warmup=4, occupancy_update_every=4, lr_warmup=3, lr_decay="step", weight_decay=1e-6, loss="huber",
    random_background=True, log_every=4,
)  # fmt: skip


def _fit(grid: str, imgs: list, cams: list, box: object, **options: object) -> list[dict[str, float]]:
    cfg = FieldConfig(dims=3, grid=GRIDS[grid], decoder=DecoderConfig(hidden=16, layers=1, color_layers=1))
    return fit_radiance(imgs, cams, cfg, dataclasses.replace(BASE, **options), box=box).history  # type: ignore[arg-type]


ALL_OPTIONS = {"march_box_bound": True, "fused_grid": True, "fused_adam": True}


@pytest.mark.parametrize("grid", ["hash", "vqad-sparse"])
def test_speed_options_train_the_same_field(grid: str) -> None:
    imgs, cams, box = _scene(3, 10)
    ref = _fit(grid, imgs, cams, box)
    hist = _fit(grid, imgs, cams, box, **ALL_OPTIONS)
    assert len(ref) == 3 and ref[-1]["loss"] < ref[0]["loss"]
    assert [h["samples"] for h in hist] == [h["samples"] for h in ref]
    assert [h["rays"] for h in hist] == [h["rays"] for h in ref]
    for h, r in zip(hist, ref, strict=True):
        assert h["loss"] == pytest.approx(r["loss"], rel=1e-4)


@pytest.mark.slow
def test_compiled_lookup_trains_the_same_field() -> None:
    # aot_eager traces what inductor compiles (dynamic shapes, the tables as inputs, the graph
    # again for the new table sizes after the sparse level's allocation at step 4) without
    # generating code: fast enough for the CPU lane.
    imgs, cams, box = _scene(3, 10)
    ref = _fit("vqad-2", imgs, cams, box, steps=6, log_every=3)
    hist = _fit("vqad-2", imgs, cams, box, steps=6, log_every=3, torch_compile="aot_eager", **ALL_OPTIONS)
    assert [h["samples"] for h in hist] == [h["samples"] for h in ref] and hist[-1]["allocated_vertices"] > 0
    for h, r in zip(hist, ref, strict=True):
        assert h["loss"] == pytest.approx(r["loss"], rel=1e-4)


@pytest.mark.parametrize("fused", [False, True])
def test_compiled_lookup_is_not_compiled_again_when_the_sparse_allocation_changes(fused: bool) -> None:
    # Every re-fit of a sparse VQ-AD grid resizes its logits. A lookup whose graph read their shapes
    # was guarded on them and compiled again at each re-fit (on the GPU the run hit dynamo's
    # recompile limit and fell back to eager for the rest of the run): one graph must serve them all.
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    grid = build_grid(3, GRIDS["vqad-sparse"])
    grid.fused_lookup = fused
    lookup = torch.compile(lambda x, t: grid.features_and_support(x, t), backend="aot_eager", dynamic=True)
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(0))
    sizes = []
    for r in (2, 3, 4, 5, 6):
        occupied = torch.zeros(16, 16, 16, dtype=torch.bool)
        occupied[:r, :r, :r] = True
        grid.allocate(occupied)
        sizes.append(grid.allocated_vertices()[-1])
        out, support = lookup(x, grid.lookup_inputs())
        ref, ref_support = grid.features_and_support(x, grid.lookup_inputs())
        assert torch.allclose(out, ref) and torch.equal(support, ref_support)
    assert len(set(sizes)) == 5
    assert counters["stats"]["unique_graphs"] == 1
    torch._dynamo.reset()


@pytest.mark.parametrize("bad", [{"torch_compile": "max"}, {"fused_adam": 1}, {"march_box_bound": "yes"}])
def test_bad_speed_options_are_config_errors(bad: dict) -> None:
    with pytest.raises(ConfigError):
        dataclasses.replace(BASE, **bad).validate()


def test_a_run_with_the_speed_options_resumes_as_the_default_one_does() -> None:
    # A resumed run restarts its ray count and batch sampling from the checkpoint's step, so it is
    # held against the default path resumed the same way (the fused optimizer's state round trip).
    imgs, cams, box = _scene(3, 10)
    cfg = FieldConfig(dims=3, grid=GRIDS["vqad-2"], decoder=DecoderConfig(hidden=16, layers=1, color_layers=1))
    finals = []
    for options in ({}, ALL_OPTIONS):
        train = dataclasses.replace(BASE, steps=8, **options)
        saved: list[dict] = []
        hook = saved.append
        fit_radiance(imgs, cams, cfg, train, box=box, checkpoint_every=4,
                     on_checkpoint=lambda r, keep=hook: keep(copy.deepcopy(r.checkpoint())))  # fmt: skip
        assert len(saved) == 1 and saved[0]["step"] == 4
        resumed = fit_radiance(imgs, cams, cfg, train, box=box, resume=saved[0])
        assert resumed.step == 8 and resumed.history[-1]["step"] == 8
        finals.append(resumed.history[-1])
    assert finals[1]["samples"] == finals[0]["samples"]
    assert finals[1]["loss"] == pytest.approx(finals[0]["loss"], rel=1e-4)

"""Sparse VQ-AD grids on the CPU: allocation from an occupancy mask, bake == hard forward with the
allocation bound, the .vqp round trip through the numpy decoder, optimizer state carried across
re-allocation, a tiny radiance field that trains sparse and resumes, and lying sparse state."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from test_fields import _orbit, _sphere
from vqpress.field import decode_field as np_decode_field
from vqpress.field import grid_features as np_grid_features
from vqpress_server.core.errors import FormatError
from vqpress_server.core.fields.config import DecoderConfig, FieldConfig, TrainConfig, VqadGridConfig
from vqpress_server.core.fields.grid import VqadGrid, active_vertices
from vqpress_server.core.fields.model import NeuralField
from vqpress_server.core.fields.serialize import decode_field, encode_field
from vqpress_server.core.fields.train import (
    FitResult,
    SceneBox,
    fit_image,
    fit_radiance,
    render_field,
    sparse_allocation_due,
    sparse_allocation_steps,
)
from vqpress_server.core.render.volume import render_image

SPARSE = VqadGridConfig(levels=3, base_resolution=8, max_resolution=32, features=4, bits=4, sparse=True,
                        sparse_min_resolution=16)  # fmt: skip
DEC3 = DecoderConfig(hidden=16, layers=1, color_layers=1)


def ball(R: int, radius: float = 0.25) -> torch.Tensor:  # [R, R, R] bool, cells whose centre is in a ball
    c = (torch.arange(R, dtype=torch.float32) + 0.5) / R - 0.5
    x, y, z = torch.meshgrid(c, c, c, indexing="ij")
    return (x - 0.1) ** 2 + y**2 + (z + 0.05) ** 2 < radius**2


@pytest.mark.parametrize("n", [5, 16, 33])
def test_points_in_occupied_cells_have_all_corners_allocated(n: int) -> None:
    R = 12
    gen = torch.Generator().manual_seed(n)
    occ = torch.rand(R, R, R, generator=gen) < 0.02
    act = active_vertices(occ, n).reshape(n, n, n).permute(2, 1, 0)  # back to [x, y, z]
    cells = occ.nonzero().float()
    pts = ((cells[:, None, :] + torch.rand(cells.shape[0], 64, 3, generator=gen)) / R).reshape(-1, 3)
    i0 = (pts * (n - 1)).floor().long().clamp(0, n - 2)
    for corner in range(8):
        off = torch.tensor([(corner >> j) & 1 for j in range(3)])
        v = i0 + off
        assert bool(act[v[:, 0], v[:, 1], v[:, 2]].all()), corner
    # ... and it stays local: nothing farther than two level cells plus the dilation from occupied space.
    r = math.ceil(R / (n - 1))
    far = torch.nn.functional.max_pool3d(occ[None, None].float(), 2 * (2 * r + 2) + 1, 1, 2 * r + 2)[0, 0] == 0
    vc = (torch.arange(n) / (n - 1) * R).floor().long().clamp(0, R - 1)
    assert not bool((act & far[vc[:, None, None], vc[None, :, None], vc[None, None, :]]).any())
    if n > R:
        assert int(act.sum()) < n**3 // 2  # finer than the occupancy grid, a sparse mask allocates a minority


def test_image_fields_ignore_sparse() -> None:
    grid = NeuralField(FieldConfig(dims=2, grid=SPARSE)).grid
    assert isinstance(grid, VqadGrid) and grid.sparse == [False, False, False]


def _allocated_grid(seed: int = 0) -> NeuralField:
    model = NeuralField(FieldConfig(dims=3, grid=SPARSE, decoder=DEC3), seed=seed)
    grid = model.grid
    assert isinstance(grid, VqadGrid) and grid.sparse == [False, True, True]
    assert grid.allocated_vertices()[1:] == [0, 0] and grid.support_level() is None
    grid.allocate(ball(16), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for p in grid.logits:
            p.normal_(generator=torch.Generator().manual_seed(seed + 1))
    return model


def test_unallocated_sparse_levels_read_zero_and_do_not_bound_the_field() -> None:
    model = NeuralField(FieldConfig(dims=3, grid=SPARSE, decoder=DEC3))
    grid = model.grid
    x = torch.rand(500, 3)
    feats, support = grid.features_and_support(x)
    assert support is None
    assert grid.allocated_vertices() == [8**3, 0, 0]  # only the dense level 0 has logits
    from vqpress_server.core.fields.grid import cell_corners

    for level in (1, 2):
        corners, _ = cell_corners(x, grid.resolutions[level])
        assert not bool(grid.level_features(level, grid.vertex_ids(level, corners)).any())
    # So the features are level 0's alone (sum combine) ...
    corners, w = cell_corners(x, grid.resolutions[0])
    level0 = (grid.level_features(0, grid.vertex_ids(0, corners)) * w[..., None]).sum(1)
    torch.testing.assert_close(feats, level0)
    # ... and, with nothing allocated, the field is not bounded: density everywhere.
    assert bool((model.density(x) > 0).all())


def test_sparse_bake_equals_hard_forward_and_bounds_the_field() -> None:
    model = _allocated_grid()
    grid = model.grid
    assert isinstance(grid, VqadGrid)
    m = grid.vertex_counts
    assert 0 < grid.allocated_vertices()[2] < m[2] // 3 and grid.support_level() == 2
    x = torch.rand(4000, 3, generator=torch.Generator().manual_seed(3))
    f_train, s_train = grid.features_and_support(x)
    baked = grid.bake()
    f_baked, s_baked = baked.features_and_support(x)
    assert torch.equal(f_train, f_baked) and s_train is not None and torch.equal(s_train, s_baked)
    assert 0.02 < float(s_train.float().mean()) < 0.5
    d = model.density(x)
    assert bool((d[~s_train] == 0).all()) and bool((d[s_train] > 0).all())


def test_sparse_vqp_round_trip_numpy_equals_torch() -> None:
    model = _allocated_grid(seed=5)
    data = encode_field(model)
    dense_data = encode_field(NeuralField(FieldConfig(dims=3, grid=VqadGridConfig(**{
        **SPARSE.__dict__, "sparse": False}), decoder=DEC3)))  # fmt: skip
    assert len(data) < 0.5 * len(dense_data)  # one bit per vertex + b bits per allocated vertex
    decoded, _ = decode_field(data)
    x = torch.rand(3000, 3, generator=torch.Generator().manual_seed(4))
    f_torch, support = decoded.grid.features_and_support(x)
    f_ref, s_ref = model.grid.bake().features_and_support(x)
    assert support is not None and s_ref is not None and torch.equal(support, s_ref)
    npf = np_decode_field(data)
    assert [lv.get("active") is not None for lv in npf.levels] == [False, True, True]
    f_np = np_grid_features(npf, x.numpy())
    np.testing.assert_allclose(f_np, f_torch.numpy(), atol=1e-5)
    np.testing.assert_allclose(f_torch.numpy(), f_ref.numpy(), atol=2e-3)  # fp16 codebooks in the file


def test_reallocation_keeps_logits_and_optimizer_state() -> None:
    from vqpress_server.core.fields.train import _carry_adam_state

    model = NeuralField(FieldConfig(dims=3, grid=SPARSE, decoder=DEC3))
    grid = model.grid
    assert isinstance(grid, VqadGrid)
    grid.allocate(ball(16, 0.2))
    opt = torch.optim.Adam(grid.parameters(), lr=0.1)
    loss = grid(torch.rand(2000, 3)).square().sum()
    loss.backward()
    opt.step()
    old_rows, old_logits = grid.level_rows(2).clone(), grid.logits[2].detach().clone()
    old_avg = opt.state[grid.logits[2]]["exp_avg"].clone()
    assert float(old_avg.abs().sum()) > 0
    moved = grid.allocate(ball(16, 0.3))
    for level, (old, o, n) in moved.items():
        _carry_adam_state(opt, old, grid.logits[level], o, n)
    new_rows = grid.level_rows(2)
    both = (old_rows >= 0) & (new_rows >= 0)
    assert int(both.sum()) == int((old_rows >= 0).sum())  # the larger ball contains the smaller
    assert int((new_rows >= 0).sum()) > int(both.sum())
    torch.testing.assert_close(grid.logits[2].detach()[new_rows[both].long()], old_logits[old_rows[both].long()])
    st = opt.state[grid.logits[2]]
    torch.testing.assert_close(st["exp_avg"][new_rows[both].long()], old_avg[old_rows[both].long()])
    fresh = (new_rows >= 0) & (old_rows < 0)
    assert float(st["exp_avg"][new_rows[fresh].long()].abs().sum()) == 0
    assert all(any(p is q for q in opt.param_groups[0]["params"]) for p in grid.logits)
    opt.zero_grad()
    grid(torch.rand(2000, 3)).square().sum().backward()
    opt.step()  # the swapped parameter trains


def test_allocation_schedule() -> None:
    # First once empty space is known, then at 10, 20, 30, 50, 70 and 90% of the run: the late
    # re-fits follow the occupancy as it shrinks to the object.
    t = TrainConfig(steps=5000, occupancy_warmup=256, occupancy_update_every=16)
    assert sparse_allocation_steps(t) == [256, 500, 1000, 1500, 2500, 3500, 4500]
    assert sparse_allocation_steps(TrainConfig(steps=1000, occupancy_warmup=250)) == [250, 300, 500, 700, 900]
    assert sparse_allocation_steps(TrainConfig(steps=100, occupancy_warmup=256)) == []
    # A time-budgeted run passes the same fractions by elapsed time, whatever its step count.
    assert sparse_allocation_due(256, 0.0, 0.01, t) and not sparse_allocation_due(300, 0.01, 0.02, t)
    assert sparse_allocation_due(301, 0.69, 0.71, t) and not sparse_allocation_due(200, 0.69, 0.71, t)


def test_sparse_radiance_field_trains_resumes_and_is_bounded() -> None:
    box = SceneBox((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
    cams = _orbit(7, 24)
    images = [render_image(_sphere, c, box.tensor("cpu"), 96, background=(1.0, 1.0, 1.0)) for c in cams]
    cfg = FieldConfig(dims=3, grid=SPARSE, decoder=DEC3)
    train = TrainConfig(
        steps=120,
        batch_size=512,
        samples_per_ray=32,
        lr=0.03,
        mlp_lr=0.01,
        occupancy_resolution=16,
        occupancy_warmup=60,
        occupancy_update_every=10,
        log_every=10,
    )
    assert sparse_allocation_steps(train) == [60, 84, 108]
    snaps: list[dict] = []

    def keep(r: FitResult) -> None:
        # The snapshot shares tensors with the running fit: keep a copy, as saving it would.
        snaps.append({"step": r.step, "ck": copy.deepcopy(r.checkpoint()), "history": list(r.history)})

    res = fit_radiance(images[:6], cams[:6], cfg, train, box=box, on_checkpoint=keep, checkpoint_every=40)
    assert [s["step"] for s in snaps] == [40, 80]
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < 0.5 * losses[0], losses
    grid = res.field.grid
    assert isinstance(grid, VqadGrid)
    alloc = grid.allocated_vertices()
    assert 0 < alloc[2] < 0.75 * grid.vertex_counts[2], alloc  # empty space (blurred at 16^3) is left out
    assert res.history[-1]["allocated_vertices"] == sum(alloc)
    # Held-out view: the sparse field renders the sphere.
    out = render_field(res.field, cams[6], box=box, samples_per_ray=32)
    mse = float(((out - images[6]) ** 2).mean())
    assert -10 * math.log10(mse) > 15.0, mse
    # Resume from the step-80 checkpoint (after the first allocation): it loads that allocation,
    # re-fits at 84 and 108 as the whole run did, and continues.
    more = fit_radiance(images[:6], cams[:6], cfg, train, box=box, resume=snaps[1]["ck"])
    assert [h["step"] for h in more.history][0] == 90 and more.step == 120
    saved = snaps[1]["ck"]["state"]["model"]
    assert saved["grid.logits.2"].shape[0] > 0
    assert 0 < more.field.grid.allocated_vertices()[2] < 0.75 * grid.vertex_counts[2]
    assert more.history[-1]["loss"] < 0.5 * losses[0]
    # Resumed from before the allocation (step 40), the field allocates when it gets there.
    assert snaps[0]["ck"]["state"]["model"]["grid.logits.2"].shape[0] == 0
    later = fit_radiance(images[:6], cams[:6], cfg, train, box=box, resume=snaps[0]["ck"])
    assert 0 < later.field.grid.allocated_vertices()[2] < 0.75 * grid.vertex_counts[2]


def test_image_checkpoint_hook_resumes_with_the_same_schedule() -> None:
    img = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    cfg = FieldConfig(dims=2, grid=VqadGridConfig(levels=2, base_resolution=4, max_resolution=8), decoder=DEC3)
    train = TrainConfig(steps=30, batch_size=64, log_every=5)
    seen: list[FitResult] = []
    full = fit_image(img, cfg, train, on_checkpoint=lambda r: seen.append(r), checkpoint_every=10)
    assert [r.step for r in seen] == [10, 20]
    assert [h["step"] for h in seen[1].history] == [5, 10, 15, 20]
    more = fit_image(img, cfg, train, resume=seen[1].checkpoint())
    assert [h["step"] for h in more.history] == [25, 30] and full.step == more.step == 30


def test_lying_sparse_state_and_files_are_rejected() -> None:
    model = _allocated_grid()
    state = model.state_dict()
    fresh = NeuralField(FieldConfig(dims=3, grid=SPARSE, decoder=DEC3))
    bad = dict(state)
    bad["grid.logits.2"] = state["grid.logits.2"][:-1]  # one row short of the allocation
    with pytest.raises(ValueError, match="sparse level 2"):
        fresh.load_state_dict(bad)
    bad = dict(state)
    rows = state["grid.rows_2"].clone()
    rows[rows >= 0] = 0  # every vertex on row 0: not an allocation
    bad["grid.rows_2"] = rows
    with pytest.raises(ValueError, match="sparse level 2"):
        fresh.load_state_dict(bad)
    fresh.load_state_dict(state)  # the true state loads, resized
    assert fresh.grid.allocated_vertices() == model.grid.allocated_vertices()

    from vqpress.vqp import Section, read_vqp, write_vqp

    vqp = read_vqp(encode_field(model))
    secs = [Section(k, v, bits=1 if k.endswith(".active") else (4 if k.endswith(".indices") else None))
            for k, v in vqp.sections.items()]  # fmt: skip
    man = dict(vqp.manifest)
    man["grid"] = {**man["grid"], "support": 0}  # a dense level cannot bound the field
    with pytest.raises(FormatError, match="support"):
        decode_field(write_vqp("field", man, secs))
    dropped = [s for s in secs if s.name != "grid.2.active"]
    with pytest.raises(FormatError):
        decode_field(write_vqp("field", vqp.manifest, dropped))
    short = [Section(s.name, s.data[:-1], bits=4) if s.name == "grid.1.indices" else s for s in secs]
    with pytest.raises(FormatError, match="allocated"):
        decode_field(write_vqp("field", vqp.manifest, short))


@pytest.mark.parametrize("hard", [False, True])
def test_sparse_lookup_matches_masked_dense_reference(hard: bool) -> None:
    from vqpress_server.core.fields.grid import sparse_rows, vqad_features, vqad_features_reference

    gen = torch.Generator().manual_seed(int(hard))
    m, K, k = 400, 16, 4
    full = torch.randn(m, K, generator=gen)
    codebook = torch.randn(K, k, generator=gen)
    active = torch.rand(m, generator=gen) < 0.3
    ids = torch.randint(0, m, (256, 8), generator=gen)
    compact = full[active].clone().requires_grad_(True)
    cb1 = codebook.clone().requires_grad_(True)
    out = vqad_features(compact, cb1, sparse_rows(active)[ids], hard)
    weights = torch.randn(out.shape, generator=gen)
    (out * weights).sum().backward()
    ref_logits, cb2 = full.clone().requires_grad_(True), codebook.clone().requires_grad_(True)
    ref = vqad_features_reference(ref_logits, cb2, ids, hard) * active[ids][..., None]
    (ref * weights).sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(compact.grad, ref_logits.grad[active])
    torch.testing.assert_close(cb1.grad, cb2.grad)
    assert bool((out[~active[ids]] == 0).all())
    nothing = vqad_features(torch.zeros(0, K), codebook, torch.full((5, 8), -1), hard)
    assert nothing.shape == (5, 8, k) and not bool(nothing.any())


def test_a_manifest_naming_a_non_layer_is_a_format_error() -> None:
    from vqpress.vqp import Section, read_vqp, write_vqp

    vqp = read_vqp(encode_field(_allocated_grid()))
    secs = [Section(k, v, bits=1 if k.endswith(".active") else (4 if k.endswith(".indices") else None))
            for k, v in vqp.sections.items()]  # fmt: skip
    for bad in (["grid"], ["mlp.1"], ["nowhere.0"], [3]):
        man = {**vqp.manifest, "layers": {**vqp.manifest["layers"], "mlp": bad}}
        with pytest.raises(FormatError):
            decode_field(write_vqp("field", man, secs))


def test_a_checkpoint_that_does_not_fit_is_a_config_error() -> None:
    from vqpress_server.core.errors import ConfigError

    img = np.random.default_rng(1).random((16, 16, 3)).astype(np.float32)
    cfg = FieldConfig(dims=2, grid=VqadGridConfig(levels=2, base_resolution=4, max_resolution=8), decoder=DEC3)
    ck = fit_image(img, cfg, TrainConfig(steps=5, batch_size=64, log_every=5)).checkpoint()
    ck["state"]["model"]["grid.logits.0"] = ck["state"]["model"]["grid.logits.0"][:3]
    with pytest.raises(ConfigError, match="does not fit"):
        fit_image(img, cfg, TrainConfig(steps=10, batch_size=64, log_every=5), resume=ck)

"""Neural fields on CUDA: lego at 400x400 reaches a PSNR floor; VQ-AD training memory does not scale
with samples x 2^b x k; the CUDA lookup matches the dense reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from vqpress_server.core.data.dataset import DatasetConfig, load_dataset
from vqpress_server.core.fields.config import DecoderConfig, FieldConfig, TrainConfig, VqadGridConfig
from vqpress_server.core.fields.grid import vqad_features, vqad_features_reference
from vqpress_server.core.fields.model import NeuralField
from vqpress_server.core.fields.serialize import decode_field, encode_field
from vqpress_server.core.fields.train import fit_radiance, radiance_fn, render_field
from vqpress_server.core.metrics import psnr
from vqpress_server.core.render.volume import camera_rays, render_rays

pytestmark = pytest.mark.gpu

GRID = dict(levels=4, base_resolution=16, max_resolution=64, features=8)
DECODER = DecoderConfig(hidden=64, layers=2, color_layers=2)


@pytest.fixture(scope="module")
def lego(request: pytest.FixtureRequest):  # noqa: ANN201
    shared = request.getfixturevalue("shared_data")
    return load_dataset(shared / "nerf_synthetic_lego_400", DatasetConfig(test_every=8))


def test_cuda_lookup_matches_reference() -> None:
    g = torch.Generator(device="cuda").manual_seed(0)
    logits = torch.randn(5000, 64, device="cuda", generator=g, requires_grad=True)
    codebook = torch.randn(64, 8, device="cuda", generator=g, requires_grad=True)
    ids = torch.randint(0, 5000, (4096, 8), device="cuda", generator=g)
    for hard in (False, True):
        res = []
        for fn in (vqad_features, vqad_features_reference):
            out = fn(logits, codebook, ids, hard)
            out.square().sum().backward()
            res.append((out.detach(), logits.grad.clone(), codebook.grad.clone()))
            logits.grad = codebook.grad = None
        for a, b in zip(*res, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_lego_short_schedule_reaches_floor(lego) -> None:  # noqa: ANN001
    # 1500 steps x 8192 rays, VQ-AD b=4 (sparse, the default), 64^3 finest level: the floor is 22 dB on 4 held-out views
    # (every 8th image), measured on the decoded .vqp.
    imgs, cams = zip(*lego.split("train"), strict=True)
    cfg = FieldConfig(dims=3, grid=VqadGridConfig(bits=4, **GRID), decoder=DECODER)
    train = TrainConfig(steps=1500, batch_size=8192, samples_per_ray=64, log_every=100)
    res = fit_radiance(list(imgs), list(cams), cfg, train, device="cuda")
    model, _ = decode_field(encode_field(res.field), device="cuda")
    scores = [psnr(render_field(model, cam), img.cuda()) for img, cam in lego.split("test")[:4]]
    assert np.mean(scores) >= 22.0, scores


def _peak_training_memory(lego, bits: int, steps: int = 10) -> int:  # noqa: ANN001
    """Peak CUDA memory of `steps` VQ-AD steps at 16384 rays x 64 samples (every sample evaluated)."""
    torch.cuda.empty_cache()
    model = NeuralField(
        FieldConfig(dims=3, grid=VqadGridConfig(bits=bits, sparse=False, **GRID), decoder=DECODER)
    ).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    img, cam = lego.split("train")[0]
    aabb = torch.tensor([[-1.5] * 3, [1.5] * 3], device="cuda")
    origins, dirs = camera_rays(cam, "cuda")
    target = img.cuda().reshape(-1, 3)
    gen = torch.Generator(device="cuda").manual_seed(0)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        sel = torch.randint(0, target.shape[0], (16384,), device="cuda", generator=gen)
        rgb, _, _ = render_rays(radiance_fn(model, aabb), origins[sel], dirs[sel], aabb, 64, generator=gen)
        loss = torch.mean((rgb - target[sel]) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    peak = int(torch.cuda.max_memory_allocated())
    del model, opt
    return peak


def test_peak_memory_b8_within_1_5x_of_b4(lego) -> None:  # noqa: ANN001
    # The lookup decodes each touched vertex once, so per-sample memory does not depend on 2^b.
    # What does scale with 2^b is the logits themselves (with their gradient and Adam moments:
    # 16 bytes x vertices x 2^b), which at 64^3 finest stays well under the per-sample activations.
    p4, p8 = _peak_training_memory(lego, 4), _peak_training_memory(lego, 8)
    assert p8 <= 1.5 * p4, (p8 / 2**20, p4 / 2**20)


def _fit_sparse(lego, bits: int, steps: int):  # noqa: ANN001, ANN202
    imgs, cams = zip(*lego.split("train"), strict=True)
    grid = VqadGridConfig(bits=bits, sparse=True, **GRID)
    cfg = FieldConfig(dims=3, grid=grid, decoder=DECODER)
    train = TrainConfig(steps=steps, batch_size=8192, samples_per_ray=64, log_every=100, occupancy_warmup=256)
    torch.cuda.empty_cache()
    return fit_radiance(list(imgs), list(cams), cfg, train, device="cuda")


def test_sparse_lego_reaches_floor_with_b8_memory_within_1_5x_of_b4(lego) -> None:  # noqa: ANN001
    # Sparse grid: the fine levels' logits (2^b wide, with gradient and Adam moments) exist only near
    # the surface, so b = 8 costs little more than b = 4 over a whole run, allocation included.
    r4 = _fit_sparse(lego, 4, 1000)
    model, _ = decode_field(encode_field(r4.field), device="cuda")
    scores = [psnr(render_field(model, cam), img.cuda()) for img, cam in lego.split("test")[:4]]
    alloc = r4.field.grid.allocated_vertices()
    print(f"sparse b=4: {np.mean(scores):.2f} dB, allocated {alloc} of {r4.field.grid.vertex_counts}")
    assert sum(alloc) < 0.5 * sum(r4.field.grid.vertex_counts)
    assert np.mean(scores) >= 21.5, scores
    r8 = _fit_sparse(lego, 8, 400)
    p4, p8 = r4.peak_memory_bytes, r8.peak_memory_bytes
    print(f"sparse peak memory: b=4 {p4 / 2**20:.0f} MiB, b=8 {p8 / 2**20:.0f} MiB")
    assert p8 <= 1.5 * p4, (p8 / 2**20, p4 / 2**20)


def test_instant_ngp_trainer_on_lego_reaches_floor(lego_alpha) -> None:  # noqa: ANN001
    # The Instant-NGP-class trainer (occupancy-grid marcher, 2^18 samples a step, hash grid 16 x 2
    # to 2048^3): 900 steps reached 29.4 dB on all 13 held-out views of the decoded file (H200,
    # sharing the GPU with five other trainings). The floor leaves 1.4 dB for run-to-run noise.
    from vqpress_server.core.fields.config import instant_ngp_field, instant_ngp_train
    from vqpress_server.core.fields.train import field_occupancy

    ds = lego_alpha
    imgs = []
    for i in ds.train_indices:
        a = ds.alphas[i]
        rgb = ((ds.images[i] - (1.0 - a)) / a.clamp(min=1e-6)).clamp(0, 1) * (a > 0)
        imgs.append(torch.cat([rgb, a], -1))
    cams = [ds.cameras[i] for i in ds.train_indices]
    res = fit_radiance(imgs, cams, instant_ngp_field(), instant_ngp_train(steps=900), device="cuda")
    model, _ = decode_field(encode_field(res.field), device="cuda")
    occ = field_occupancy(model, march_steps=1024)
    scores = [
        psnr(render_field(model, cam, march_steps=1024, occupancy=occ), img.cuda()) for img, cam in ds.split("test")
    ]
    print(f"ngp 900 steps: {np.mean(scores):.2f} dB on {len(scores)} views, {res.train_time_s:.1f} s")
    assert len(scores) == 13 and np.mean(scores) >= 28.0, scores


@pytest.fixture(scope="module")
def lego_alpha(request: pytest.FixtureRequest):  # noqa: ANN201
    shared = request.getfixturevalue("shared_data")
    return load_dataset(shared / "nerf_synthetic_lego_400", DatasetConfig(test_every=8, keep_alpha=True))


def _lego_rgba(ds):  # noqa: ANN001, ANN202
    imgs = []
    for i in ds.train_indices:
        a = ds.alphas[i]
        rgb = ((ds.images[i] - (1.0 - a)) / a.clamp(min=1e-6)).clamp(0, 1) * (a > 0)
        imgs.append(torch.cat([rgb, a], -1))
    return imgs, [ds.cameras[i] for i in ds.train_indices]


def test_vqad_at_256_on_the_ngp_trainer_b8_within_1_5x_of_b4_and_20x_smaller(lego_alpha) -> None:  # noqa: ANN001
    # VQ-AD as the benchmark runs it (16 x 2 to 256^3, sparse from 32^3) on the Instant-NGP-class
    # trainer, 600 steps each: b = 8 scores 16 candidate codes per vertex, so its peak training
    # memory stays within 1.5x of b = 4's, and b = 4's grid section is >= 20x smaller than the
    # uncompressed 256^3 grid's fp16 tables (39,163,942 vertices x 2 features x 2 bytes).
    from vqpress_server.core.fields.config import instant_ngp_field, instant_ngp_train, radiance_grid
    from vqpress_server.core.fields.serialize import field_report

    imgs, cams = _lego_rgba(lego_alpha)
    peaks, sizes = {}, {}
    for bits in (4, 8):
        grid = dataclasses.replace(radiance_grid("vqad"), bits=bits)
        torch.cuda.empty_cache()
        res = fit_radiance(imgs, cams, instant_ngp_field(grid), instant_ngp_train(steps=600), device="cuda")
        peaks[bits] = res.peak_memory_bytes
        sizes[bits] = field_report("vqad", encode_field(res.field), res.field).grid_bytes
        print(f"b={bits}: peak {peaks[bits] / 2**30:.2f} GiB, grid {sizes[bits] / 1024:.0f} KiB,"
              f" allocated {sum(res.field.grid.allocated_vertices())}")  # fmt: skip
    assert peaks[8] <= 1.5 * peaks[4], peaks
    assert sizes[4] * 20 <= 39_163_942 * 2 * 2, sizes

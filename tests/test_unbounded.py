"""Unbounded radiance fields on the CPU: the contraction of space outside the scene box, rendering
of a bounded scene either way, and a scene with a distant backdrop that only an unbounded field fits."""

from __future__ import annotations

import math

import pytest
import torch
from test_fields import _orbit, _sphere
from vqpress_server.core.fields.config import DecoderConfig, DenseGridConfig, FieldConfig, TrainConfig
from vqpress_server.core.fields.serialize import decode_field, encode_field
from vqpress_server.core.fields.train import SceneBox, fit_radiance, render_field
from vqpress_server.core.render.volume import FAR_BOX_UNITS, render_image, unit_coords, world_coords

AABB = torch.tensor([[-1.0, -2.0, 0.0], [1.0, 2.0, 2.0]])  # not a cube, not centred on the origin


def test_contraction_keeps_the_box_and_squeezes_the_rest() -> None:
    gen = torch.Generator().manual_seed(0)
    inside = AABB[0] + torch.rand(1000, 3, generator=gen) * (AABB[1] - AABB[0])
    u = unit_coords(inside, AABB, unbounded=True)
    assert bool(((u >= 0.25) & (u <= 0.75)).all())  # the box fills the central half
    torch.testing.assert_close(u, 0.25 + 0.5 * unit_coords(inside, AABB))  # linearly, as when bounded
    far = torch.randn(1000, 3, generator=gen) * 1e4
    uf = unit_coords(far, AABB, unbounded=True)
    assert bool(((uf >= 0.0) & (uf <= 1.0)).all()) and float((uf - 0.5).abs().amax(-1).min()) > 0.49
    for unbounded in (False, True):
        pts = torch.cat([inside, torch.randn(500, 3, generator=gen) * 20.0])
        back = world_coords(unit_coords(pts, AABB, unbounded), AABB, unbounded)
        torch.testing.assert_close(back, pts, rtol=1e-4, atol=1e-3)
    # Along a ray leaving the box, the contracted point moves monotonically outwards.
    t = torch.linspace(0.0, 3 * FAR_BOX_UNITS, 2000)[:, None]
    ray = torch.tensor([0.0, 0.0, 1.0]) + t * torch.tensor([0.6, 0.0, 0.8])
    r = (unit_coords(ray, AABB, unbounded=True) - 0.5).abs().amax(-1)
    assert bool((r[1:] >= r[:-1] - 1e-6).all()) and float(r[-1]) <= 0.5


def test_a_scene_inside_the_box_renders_the_same_unbounded() -> None:
    box = torch.tensor([[-1.0] * 3, [1.0] * 3])
    cam = _orbit(1, 32)[0]
    bounded = render_image(_sphere, cam, box, 256, background=(1.0, 1.0, 1.0))
    unbounded = render_image(_sphere, cam, box, 512, background=(1.0, 1.0, 1.0), unbounded=True)
    mse = float(((bounded - unbounded) ** 2).mean())
    assert -10 * math.log10(mse) > 30.0, mse


def _backdrop(x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The sphere of test_fields inside the box, and a wall of colour stripes 6 units away, outside it."""
    s_density, s_rgb = _sphere(x, d)
    r = x.norm(dim=-1)
    wall = 50.0 * torch.sigmoid((r - 6.0) * 20.0) * torch.sigmoid((6.5 - r) * 20.0)
    stripes = 0.5 + 0.5 * torch.sin(torch.atan2(x[:, 1], x[:, 0]) * 3.0)
    w_rgb = torch.stack([stripes, 1.0 - stripes, torch.full_like(stripes, 0.3)], -1)
    density = s_density + wall
    rgb = (s_rgb * s_density[:, None] + w_rgb * wall[:, None]) / density.clamp(min=1e-6)[:, None]
    return density, rgb


@pytest.mark.timeout(900)  # two small trainings: 19 s on a quiet 2-core machine, 6 minutes seen under load
def test_only_an_unbounded_field_fits_a_distant_backdrop() -> None:
    box = SceneBox((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
    cams = _orbit(7, 24)
    truth = SceneBox((-7.0,) * 3, (7.0,) * 3)  # the reference renders sample everything
    images = [render_image(_backdrop, c, truth.tensor("cpu"), 384, background=(0.0, 0.0, 0.0)) for c in cams]
    assert float((images[0].sum(-1) > 0.1).float().mean()) > 0.9  # the backdrop fills the view
    cfg = FieldConfig(
        dims=3,
        grid=DenseGridConfig(levels=2, base_resolution=8, max_resolution=24, features=4),
        decoder=DecoderConfig(hidden=32, layers=1, color_layers=1),
    )
    train = TrainConfig(
        steps=150, batch_size=512, samples_per_ray=48, lr=0.03, mlp_lr=0.01, occupancy_resolution=16,
        occupancy_warmup=1000, log_every=50,
    )  # fmt: skip
    scores = {}
    for mode in (False, True):
        b = SceneBox(box.lo, box.hi, unbounded=mode)
        res = fit_radiance(images[:6], cams[:6], cfg, train, box=b, background=(0.0, 0.0, 0.0))
        model, _ = decode_field(encode_field(res.field))
        out = render_field(model, cams[6], box=b, samples_per_ray=48, background=(0.0, 0.0, 0.0))
        scores[mode] = -10 * math.log10(float(((out - images[6]) ** 2).mean()))
    print(scores)
    assert scores[True] > scores[False] + 3.0, scores

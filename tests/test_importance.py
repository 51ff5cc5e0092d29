"""Importance-weighted quantization: k-means spends its entries where the picture is."""

from __future__ import annotations

import pytest
import torch
from vqpress_server.core.errors import Cancelled, ConfigError, VqpressInputError
from vqpress_server.core.metrics import psnr
from vqpress_server.core.render.cameras import orbit_cameras
from vqpress_server.core.render.splats import rasterize, render_views
from vqpress_server.core.render.torch_raster import blend_weights_torch, world_covariances
from vqpress_server.core.splats.importance import (
    CPU_MAX_VIEWS,
    _gradient_weights,
    cpu_downscale,
    importance_views,
    reduced_blend_weights,
    view_importance,
)
from vqpress_server.core.splats.model import GaussianSplats
from vqpress_server.core.splats.quantize import QuantizeConfig, decode_vqp_splats, quantize_splats


def _scene(n: int, seed: int) -> GaussianSplats:
    g = torch.Generator().manual_seed(seed)
    return GaussianSplats(
        means=torch.randn(n, 3, generator=g) * 0.4,
        quats=torch.randn(n, 4, generator=g),
        scales=torch.full((n, 3), -2.6) + 0.3 * torch.randn(n, 3, generator=g),
        opacities=torch.randn(n, generator=g) + 1.0,
        sh0=torch.randn(n, 1, 3, generator=g),
        shN=torch.zeros(n, 0, 3),
    )


def test_view_importance_is_each_gaussians_share_of_the_alpha() -> None:
    """Summed over Gaussians, the blending weights of a view are its alpha (1 - final transmittance)."""
    scene = _scene(120, 0)
    cams = orbit_cameras(scene, 3, 40, 40)
    w = view_importance(scene, cams)
    assert w.shape == (120,) and bool((w >= 0).all())
    total_alpha = 0.0
    for c in cams:
        _, alpha = rasterize(
            scene.means, scene.quats, scene.scales, scene.opacities, scene.sh0, scene.shN,
            torch.tensor(c.viewmat, dtype=torch.float32), torch.tensor(c.K, dtype=torch.float32),
            c.width, c.height, torch.zeros(3),
        )  # fmt: skip
        total_alpha += float(alpha.double().sum())
    assert float(w.double().sum()) == pytest.approx(total_alpha, rel=1e-4)
    # A Gaussian behind every camera's view (far outside the orbit) gets no weight.
    far = GaussianSplats(
        *(torch.cat([a, b[:1]]) for a, b in zip(scene.tensors().values(), scene.tensors().values(), strict=True))
    )
    far.means[-1] = torch.tensor([0.0, 0.0, 500.0])
    assert float(view_importance(far, cams)[-1]) == 0.0
    with pytest.raises(VqpressInputError, match="camera"):
        view_importance(scene, [])


@pytest.mark.parametrize("block_elements", [1 << 20, 8 * 256])
def test_cpu_weights_equal_the_gradient_of_a_white_render(block_elements: int) -> None:
    """The CPU sums the blending weights while compositing; the slow twin is the gradient of a
    white scene's rendered sum with respect to the colors through the PyTorch rasterizer (what the
    CUDA path computes with gsplat). Dense enough that pixels saturate and stop; the small block
    makes every tile take many rounds."""
    scene = _scene(600, 5)
    scene.opacities[:] += 2.0  # mostly opaque: compositing stops early on many pixels
    cams = orbit_cameras(scene, 3, 64, 48)
    slow = torch.zeros(600, dtype=torch.float64)
    fast = torch.zeros(600, dtype=torch.float64)
    for c in cams:
        viewmat, K = torch.tensor(c.viewmat, dtype=torch.float32), torch.tensor(c.K, dtype=torch.float32)
        slow += _gradient_weights(
            scene.means, scene.quats, scene.scales, scene.opacities, viewmat, K, c.width, c.height
        )
        fast += blend_weights_torch(
            scene.means, scene.quats, torch.exp(scene.scales), torch.sigmoid(scene.opacities), viewmat, K,
            c.width, c.height, block_elements=block_elements,
        )  # fmt: skip
    assert int((slow > 0).sum()) > 300 and float(slow.max()) > 20.0  # many Gaussians, many pixels each
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(view_importance(scene, cams).double(), slow.float().double(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tile", [4, 16])
def test_cpu_weights_on_images_that_tiles_do_not_fill(tile: int) -> None:
    """50x30 pixels: the edge tiles reach past the image; their outside pixels weigh nothing, as in
    the cropped render the gradient comes from, and the tile size changes no weight."""
    scene = _scene(300, 9)
    cams = orbit_cameras(scene, 2, 50, 30)
    for c in cams:
        viewmat, K = torch.tensor(c.viewmat, dtype=torch.float32), torch.tensor(c.K, dtype=torch.float32)
        slow = _gradient_weights(scene.means, scene.quats, scene.scales, scene.opacities, viewmat, K, 50, 30)
        scales, opac = torch.exp(scene.scales), torch.sigmoid(scene.opacities)
        fast = blend_weights_torch(scene.means, scene.quats, scales, opac, viewmat, K, 50, 30, tile=tile)
        projected = blend_weights_torch(
            scene.means, scene.quats, scales, opac, viewmat, K, 50, 30, tile=tile,
            covars=world_covariances(scene.quats, scales),
        )  # fmt: skip
        assert float(slow.sum()) > 100.0
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(projected, slow, rtol=1e-4, atol=1e-4)


def test_reduced_resolution_weights_stay_close_to_the_full_ones() -> None:
    """The CPU weighs views at 1/4 of their size: per Gaussian about the full-size sums (the filter
    kept in full-size pixels, the sums scaled by the area ratio), and nearly the same least
    important 15%, the ones a prune drops."""
    scene = _scene(500, 7)
    cams = orbit_cameras(scene, 3, 200, 160)
    scales, opac = torch.exp(scene.scales), torch.sigmoid(scene.opacities)
    covars = world_covariances(scene.quats, scales)
    sums = {f: torch.zeros(500, dtype=torch.float64) for f in (1, 2, 4)}
    for c in cams:
        viewmat, K = torch.tensor(c.viewmat, dtype=torch.float32), torch.tensor(c.K, dtype=torch.float32)
        for f, total in sums.items():
            total += reduced_blend_weights(scene.means, scene.quats, scales, opac, viewmat, K, 200, 160, f, covars)
    full = sums[1]
    assert int((full > 0).sum()) == 500
    drop = 75
    least = set(torch.argsort(full, stable=True)[:drop].tolist())
    top_half = full > full.median()
    for f, tol in ((2, 0.01), (4, 0.1)):
        w = sums[f]
        assert float(w.sum() / full.sum()) == pytest.approx(1.0, abs=0.005)
        rel = ((w - full).abs() / full)[top_half]
        assert float(rel.median()) < 0.01 and float(rel.max()) < tol, (f, rel.median(), rel.max())
        assert len(least & set(torch.argsort(w, stable=True)[:drop].tolist())) >= 0.95 * drop
    sizes = ((400, 400), (400, 399), (250, 300), (48, 48))
    assert [cpu_downscale(w, h) for w, h in sizes] == [4, 2, 2, 1]


def test_the_cpu_weighs_by_a_few_evenly_spaced_views() -> None:
    cams = orbit_cameras(_scene(4, 1), 40, 16, 16)
    picked = importance_views(cams, torch.device("cpu"))
    assert len(picked) == CPU_MAX_VIEWS and picked[0] is cams[0] and picked[1] is cams[40 // CPU_MAX_VIEWS]
    assert importance_views(cams[:3], torch.device("cpu")) == cams[:3]
    # weights that also prune see every view: a Gaussian only the skipped views see would be dropped
    assert importance_views(cams, torch.device("cpu"), prune=True) == cams


def test_weighted_kmeans_keeps_the_visible_gaussians_sharper() -> None:
    """Half the Gaussians are nearly transparent: plain k-means spends half of a small color codebook
    on them; weighted by view importance the visible half gets the entries and renders closer."""
    visible = _scene(200, 2)
    hidden = _scene(200, 3)
    hidden.opacities[:] = -9.0  # alpha 1e-4: nothing to see
    hidden.sh0[:] = 3.0 * torch.randn(200, 1, 3, generator=torch.Generator().manual_seed(4))
    scene = GaussianSplats(
        *(torch.cat([a, b]) for a, b in zip(visible.tensors().values(), hidden.tensors().values(), strict=True))
    )
    cams = orbit_cameras(scene, 4, 48, 48)
    refs = render_views(scene, cams)
    cfg = QuantizeConfig(dc_codebook=12, scale_codebook=64, rot_codebook=64, kmeans_iters=10)

    def quality(weights: torch.Tensor | None) -> float:
        dec = decode_vqp_splats(quantize_splats(scene, cfg, weights=weights).to_vqp_bytes())
        return sum(psnr(a, b) for a, b in zip(render_views(dec, cams), refs, strict=True)) / len(cams)

    plain, weighted = quality(None), quality(view_importance(scene, cams))
    assert weighted > plain + 1.0, (plain, weighted)
    with pytest.raises(VqpressInputError, match="weights"):
        quantize_splats(scene, cfg, weights=torch.ones(3))
    with pytest.raises(VqpressInputError, match="non-negative"):
        quantize_splats(scene, cfg, weights=-torch.ones(400))


def test_importance_option_is_validated() -> None:
    assert QuantizeConfig().importance == "views" and QuantizeConfig(importance="none").validate().prune == 0.15
    with pytest.raises(ConfigError, match="importance"):
        QuantizeConfig(importance="most").validate()


def test_cpu_views_side_by_side_give_the_one_thread_sums_and_stop_on_cancel() -> None:
    scene = _scene(300, 6)
    cams = orbit_cameras(scene, 5, 40, 32)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = view_importance(scene, cams)
        torch.set_num_threads(2)
        seen: list[float] = []
        two = view_importance(scene, cams, progress=lambda s, f, m: seen.append(f))
        assert torch.get_num_threads() == 2
        assert torch.equal(one, two)
        assert seen == [(i + 1) / 5 for i in range(5)]

        def cancel(stage: str, fraction: float, metrics: object) -> None:
            raise Cancelled()

        with pytest.raises(Cancelled):
            view_importance(scene, cams, progress=cancel)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)

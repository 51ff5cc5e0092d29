"""The PyTorch splat rasterizer: geometry, compositing, SH, gradients, and real scenes on the CPU."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from vqpress_server.core.errors import ConfigError, VqpressInputError
from vqpress_server.core.metrics import psnr
from vqpress_server.core.render.cameras import Camera, look_at, orbit_cameras, read_cameras_json
from vqpress_server.core.render.images import save_grid, save_png, to_uint8
from vqpress_server.core.render.sh import SH_C0, eval_sh, sh_basis
from vqpress_server.core.render.splats import rasterize, render, render_views
from vqpress_server.core.splats.model import GaussianSplats

TEST_DATA = Path(__file__).resolve().parent / "data"
WHITE_SH0 = 0.5 / SH_C0  # sh0 that gives color 1.0


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _scene(
    means: list[list[float]],
    scale: float | list[float],
    opacity: float | list[float],
    rgb: list[list[float]] | None = None,
    sh_degree: int = 0,
) -> GaussianSplats:
    N = len(means)
    scales = np.log(np.broadcast_to(np.asarray(scale, np.float64).reshape(-1, 1), (N, 3)))
    opac = np.broadcast_to(np.asarray([_logit(o) for o in np.atleast_1d(opacity)]), (N,))
    colors = np.ones((N, 3)) if rgb is None else np.asarray(rgb, np.float64)
    sh0 = ((colors - 0.5) / SH_C0)[:, None, :]
    shN = np.zeros((N, (sh_degree + 1) ** 2 - 1, 3))
    quats = np.tile([1.0, 0, 0, 0], (N, 1))
    return GaussianSplats.from_numpy(np.asarray(means), quats, scales, opac, sh0, shN)


def _front_camera(width: int = 64, height: int = 48, f: float = 60.0) -> Camera:
    """Identity pose: camera at the origin looking down +z (OpenCV axes)."""
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    return Camera(np.eye(4), K, width, height)


def _at_pixel_center(z: float, f: float = 60.0) -> list[float]:
    """A point at depth z that _front_camera projects onto the center of pixel (32, 24)."""
    return [0.5 * z / f, 0.5 * z / f, z]


def _random_scene(n: int, sh_degree: int, seed: int) -> GaussianSplats:
    g = torch.Generator().manual_seed(seed)
    return GaussianSplats(
        means=(torch.rand(n, 3, generator=g) - 0.5) * 2.0,
        quats=torch.randn(n, 4, generator=g),
        scales=torch.log(0.05 + 0.15 * torch.rand(n, 3, generator=g)),
        opacities=torch.randn(n, generator=g) * 2,
        sh0=torch.randn(n, 1, 3, generator=g),
        shN=0.3 * torch.randn(n, (sh_degree + 1) ** 2 - 1, 3, generator=g),
    )


# -- geometry ------------------------------------------------------------------------------


def test_single_gaussian_lands_at_its_projected_pixel() -> None:
    eye = np.array([2.0, -3.0, 1.5])
    viewmat = look_at(eye, np.array([0.1, 0.2, -0.1]), np.array([0.0, 0.0, 1.0]))
    K = np.array([[80.0, 0, 37.0], [0, 90.0, 29.0], [0, 0, 1]])
    cam = Camera(viewmat, K, 80, 64)
    p = np.array([0.3, 0.1, 0.2])
    pc = viewmat @ np.append(p, 1.0)
    expected = (K @ pc[:3])[:2] / pc[2]
    img = render(_scene([p.tolist()], 0.02, 0.9), cam)  # white on black
    w = img[..., 0].double().numpy()
    ys, xs = np.mgrid[0 : cam.height, 0 : cam.width] + 0.5  # pixel centers
    centroid = np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()
    # The footprint is symmetric about the projected mean; the centroid finds it to sub-pixel accuracy.
    np.testing.assert_allclose(centroid, expected, atol=0.02)


def test_isotropic_gaussian_matches_the_analytic_2d_gaussian() -> None:
    z, s, o, f = 4.0, 0.1, 0.6, 60.0
    cam = _front_camera(64, 48, f)
    img = render(_scene([[0.0, 0.0, z]], s, o), cam)
    # On the optical axis the Jacobian is diag(f/z, f/z): the 2D std is f s / z, plus eps2d 0.3 px^2.
    var = (f * s / z) ** 2 + 0.3
    ys, xs = np.mgrid[0:48, 0:64] + 0.5
    alpha = o * np.exp(-0.5 * ((xs - 32) ** 2 + (ys - 24) ** 2) / var)
    alpha[alpha < 1 / 255] = 0.0
    np.testing.assert_allclose(img[..., 0].numpy(), alpha, atol=2e-6)
    np.testing.assert_allclose(img[..., 2].numpy(), alpha, atol=2e-6)


def test_near_opaque_gaussian_hides_a_far_one_in_any_input_order() -> None:
    cam = _front_camera()
    near = [0.0, 0.0, 2.0]
    far = [0.0, 0.0, 4.0]
    a = _scene([near, far], [0.3, 1.5], [0.99999, 0.99999], rgb=[[1, 0, 0], [0, 1, 0]])
    b = _scene([far, near], [1.5, 0.3], [0.99999, 0.99999], rgb=[[0, 1, 0], [1, 0, 0]])
    img_a, img_b = render(a, cam), render(b, cam)
    torch.testing.assert_close(img_a, img_b, rtol=0, atol=1e-6)
    center = img_a[24, 32]
    # The near one leaves T ~ 0.003; the far one (alpha ~ 0.99) would take T below 1e-4, so it is cut.
    assert center[0] > 0.99 and center[1] == 0.0, center
    # Where only the far (larger) one reaches, it shows.
    assert img_a[24, 4, 1] > 0.4 and img_a[24, 4, 0] < 0.02, img_a[24, 4]


def test_compositing_stops_before_transmittance_reaches_1e4() -> None:
    """Three stacked Gaussians with alpha 0.98 at a pixel center: T goes 1 -> 0.02 -> 4e-4; the third
    would bring it to 8e-6, so (like gsplat) compositing stops before it."""
    cam = _front_camera()
    o = 0.98
    s = _scene(
        [_at_pixel_center(z) for z in (2.0, 3.0, 4.0)],
        [0.5, 0.75, 1.0],
        [o, o, o],
        rgb=[[1, 0, 0], [0, 1, 0], [0, 0, 1]],
    )
    rgb, alpha = rasterize(
        s.means,
        s.quats,
        s.scales,
        s.opacities,
        s.sh0,
        s.shN,
        torch.eye(4),
        torch.tensor(cam.K, dtype=torch.float32),
        cam.width,
        cam.height,
        torch.zeros(3),
    )
    c = rgb[24, 32]
    assert c[0].item() == pytest.approx(0.98, abs=1e-5)
    assert c[1].item() == pytest.approx(0.02 * 0.98, abs=1e-5)
    assert c[2].item() == 0.0
    assert alpha[24, 32, 0].item() == pytest.approx(1 - 0.02 * 0.02, abs=1e-5)


def test_gaussians_behind_the_near_plane_are_not_drawn() -> None:
    cam = _front_camera()
    img = render(_scene([[0, 0, -1.0], [0, 0, 0.005]], 0.2, 0.9), cam, background=(0.2, 0.3, 0.4))
    assert torch.equal(img, torch.tensor([0.2, 0.3, 0.4]).expand(48, 64, 3))


def test_background_shows_where_nothing_is() -> None:
    cam = _front_camera()
    bg = (0.25, 0.5, 0.75)
    empty = render(GaussianSplats.empty(), cam, background=bg)
    assert torch.equal(empty, torch.tensor(bg).expand(48, 64, 3))
    # A small Gaussian in the top-left corner leaves the rest exactly the background.
    img = render(_scene([[-1.9, -1.4, 4.0]], 0.03, 0.9, rgb=[[1, 0, 0]]), cam, background=bg)
    assert torch.equal(img[24:, 32:], torch.tensor(bg).expand(24, 32, 3))
    assert img[:12, :12, 0].max() > 0.5


def test_background_is_blended_by_remaining_transmittance() -> None:
    cam = _front_camera()
    img = render(_scene([_at_pixel_center(3.0)], 0.2, 0.5, rgb=[[0.2, 0.2, 0.2]]), cam, background=(1, 1, 1))
    # At the footprint's center alpha = 0.5: 0.5 * 0.2 + 0.5 * 1.
    assert img[24, 32, 0].item() == pytest.approx(0.6, abs=1e-5)


# -- spherical harmonics -------------------------------------------------------------------


def test_sh_basis_is_orthonormal_on_the_sphere() -> None:
    # A Fibonacci lattice integrates low-degree polynomials on the sphere very accurately.
    n = 20000
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5**0.5) * i
    r = torch.sqrt(1 - z * z)
    dirs = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)
    Y = sh_basis(3, dirs)  # [n, 16]
    gram = 4 * math.pi * (Y.T @ Y) / n
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=2e-3, rtol=0)


def test_sh_known_values() -> None:
    dirs = torch.tensor([[0.0, 0.0, 2.0], [1.0, 0.0, 0.0]])  # not normalized on purpose
    coeffs = torch.zeros(2, 4, 3)
    coeffs[:, 0] = 1.0  # DC
    coeffs[:, 2] = 1.0  # the z band of degree 1 (3DGS: +C1 z)
    coeffs[:, 3] = 1.0  # the x band of degree 1 (3DGS: -C1 x)
    out = eval_sh(coeffs, dirs)
    c0, c1 = 0.28209479177387814, 0.4886025119029199
    torch.testing.assert_close(out[0], torch.full((3,), c0 + c1))
    torch.testing.assert_close(out[1], torch.full((3,), c0 - c1))


def test_sh_degree_3_with_zero_rest_renders_like_degree_0() -> None:
    s0 = _random_scene(60, 0, seed=3)
    s3 = s0.with_sh_degree(3)
    assert s3.sh_degree == 3
    cam = Camera(look_at(np.array([0.0, -3.5, 1.0]), np.zeros(3), np.array([0, 0, 1.0])), _front_camera().K, 64, 48)
    assert torch.equal(render(s0, cam), render(s3, cam))


def test_view_dependent_color_follows_the_viewing_direction() -> None:
    """A degree-1 coefficient on the z band: the color seen from +z (looking down -z) differs from -z."""
    s = _scene([[0.0, 0.0, 0.0]], 0.3, 0.95, rgb=[[0.5, 0.5, 0.5]], sh_degree=1)
    s.shN[0, 1, :] = 0.5  # coefficient 2 (z): color += C1 * z_dir * 0.5, dir = mean - camera
    K = _front_camera().K
    above = Camera(look_at(np.array([0, 0, 3.0]), np.zeros(3), np.array([0, 1.0, 0])), K, 64, 48)
    below = Camera(look_at(np.array([0, 0, -3.0]), np.zeros(3), np.array([0, 1.0, 0])), K, 64, 48)
    a = render(s, above)[24, 32, 0].item()  # dir = -z: 0.5 - 0.2443
    b = render(s, below)[24, 32, 0].item()  # dir = +z: 0.5 + 0.2443
    # Pixel (32, 24) is half a pixel off the footprint's center in x and y; 2D variance (60 * 0.3 / 3)^2 + 0.3.
    alpha = 0.95 * math.exp(-0.5 * 0.5 / (6.0**2 + 0.3))
    assert a == pytest.approx(alpha * (0.5 - 0.4886025 * 0.5), abs=1e-5)
    assert b == pytest.approx(alpha * (0.5 + 0.4886025 * 0.5), abs=1e-5)


# -- gradients -----------------------------------------------------------------------------


def test_gradients_match_finite_differences() -> None:
    g = torch.Generator().manual_seed(0)
    n = 3
    params = {
        "means": (torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.5)
        * torch.tensor([1.0, 0.8, 0.5], dtype=torch.float64),
        "quats": torch.randn(n, 4, generator=g, dtype=torch.float64),
        "scales": torch.log(0.15 + 0.2 * torch.rand(n, 3, generator=g, dtype=torch.float64)),
        "opacities": torch.randn(n, generator=g, dtype=torch.float64),
        "sh0": torch.randn(n, 1, 3, generator=g, dtype=torch.float64),
        "shN": 0.3 * torch.randn(n, 3, 3, generator=g, dtype=torch.float64),
    }
    viewmat = torch.tensor(look_at(np.array([0.3, -3.0, 1.2]), np.zeros(3), np.array([0, 0, 1.0])))
    K = torch.tensor([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]], dtype=torch.float64)
    bg = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    weights = torch.rand(24, 32, 3, generator=g, dtype=torch.float64)
    names = list(params)

    def loss(*tensors: torch.Tensor) -> torch.Tensor:
        rgb, alpha = rasterize(*tensors, viewmat, K, 32, 24, bg, backend="torch")
        return (rgb * weights).sum() + 0.5 * alpha.sum()

    inputs = tuple(params[k].clone().requires_grad_(True) for k in names)
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)


def test_differentiable_and_inference_paths_render_the_same_image() -> None:
    """With gradients off the compositing runs in place; it must equal the autograd path."""
    s = _random_scene(200, 2, seed=11)
    cam = Camera(look_at(np.array([0.5, -3.0, 1.0]), np.zeros(3), np.array([0, 0, 1.0])), _front_camera().K, 64, 48)
    args = (torch.tensor(cam.viewmat, dtype=torch.float32), torch.tensor(cam.K, dtype=torch.float32), 64, 48)
    bg = torch.tensor([0.3, 0.6, 0.9])
    with torch.no_grad():
        rgb_a, alpha_a = rasterize(*s.tensors().values(), *args, bg)
    params = [t.clone().requires_grad_(True) for t in s.tensors().values()]
    rgb_b, alpha_b = rasterize(*params, *args, bg)
    assert rgb_b.requires_grad
    torch.testing.assert_close(rgb_a, rgb_b.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(alpha_a, alpha_b.detach(), rtol=0, atol=1e-6)
    assert (alpha_a > 0.5).float().mean() > 0.2  # the view is not empty


def test_training_step_reduces_the_loss() -> None:
    """The twin is usable for training: a few Adam steps toward a target image lower the L1 loss."""
    target_scene = _random_scene(30, 0, seed=5)
    cam = Camera(look_at(np.array([0.0, -3.5, 1.0]), np.zeros(3), np.array([0, 0, 1.0])), _front_camera().K, 64, 48)
    target = render(target_scene, cam)
    init = _random_scene(30, 0, seed=6)
    params = {k: v.clone().requires_grad_(True) for k, v in init.tensors().items()}
    opt = torch.optim.Adam(params.values(), lr=0.02)
    viewmat = torch.tensor(cam.viewmat, dtype=torch.float32)
    K = torch.tensor(cam.K, dtype=torch.float32)
    losses = []
    for _ in range(10):
        rgb, _ = rasterize(*params.values(), viewmat, K, 64, 48, torch.zeros(3))
        loss = (rgb - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


# -- input handling ------------------------------------------------------------------------


def test_render_rejects_bad_input() -> None:
    cam = _front_camera()
    s = _scene([[0, 0, 3.0]], 0.2, 0.5)
    with pytest.raises(ConfigError, match="backend"):
        render(s, cam, backend="vulkan")  # type: ignore[arg-type]
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            render(s, cam, backend="gsplat")
    with pytest.raises(VqpressInputError, match="background"):
        render(s, cam, background=(0.0, float("nan"), 0.0))
    bad = _scene([[0, 0, 3.0]], 0.2, 0.5)
    bad.sh0[0, 0, 1] = float("inf")
    with pytest.raises(VqpressInputError, match="non-finite.*sh0"):
        render(bad, cam)
    with pytest.raises(VqpressInputError, match="Camera"):
        render(s, {"width": 3})  # type: ignore[arg-type]


def test_huge_gaussians_are_drawn_without_blowing_up() -> None:
    """A Gaussian right in front of the lens covers the whole image; the render stays finite and correct."""
    cam = _front_camera()
    img = render(_scene([[0, 0, 0.05]], 1.0, 0.5), cam)
    torch.testing.assert_close(img, torch.full((48, 64, 3), 0.5), atol=1e-3, rtol=0)


def test_absurd_overlap_counts_are_refused_before_allocating() -> None:
    """Thousands of screen-filling Gaussians on an 8192x8192 image would need billions of
    Gaussian-tile pairs on the CPU: a clear error, not an out-of-memory crash."""
    n = 2000
    s = _scene([[0.0, 0.0, 1.0]] * n, 5.0, 0.5)
    K = np.array([[4000.0, 0, 4096], [0, 4000.0, 4096], [0, 0, 1]])
    with pytest.raises(VqpressInputError, match="overlaps"):
        render(s, Camera(np.eye(4), K, 8192, 8192))


# -- images --------------------------------------------------------------------------------


def test_png_and_contact_sheet(tmp_path: Path) -> None:
    from PIL import Image

    img = torch.rand(10, 12, 3)
    img[0, 0] = torch.tensor([-0.2, 1.7, 0.5])
    u8 = to_uint8(img)
    assert u8.dtype == np.uint8 and u8.shape == (10, 12, 3)
    assert u8[0, 0].tolist() == [0, 255, 128]
    save_png(img, tmp_path / "a.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), u8)
    save_grid([img, img, np.zeros((5, 6, 3))], tmp_path / "grid.png", cols=2, pad=2)
    sheet = np.asarray(Image.open(tmp_path / "grid.png"))
    assert sheet.shape == (2 * 10 + 3 * 2, 2 * 12 + 3 * 2, 3)
    assert np.array_equal(sheet[2:12, 16:28], u8)
    with pytest.raises(VqpressInputError):
        save_grid([], tmp_path / "none.png")


# -- real scenes ---------------------------------------------------------------------------


def _donut() -> GaussianSplats:
    from vqpress_server.core.splats.formats import read_splats

    return read_splats(TEST_DATA / "donut_small.ply")


def test_donut_renders_as_an_object_from_orbit_cameras(tmp_path: Path) -> None:
    s = _donut()
    cams = orbit_cameras(s, n=4, width=160, height=160)
    t0 = time.perf_counter()
    imgs = render_views(s, cams, background=(1.0, 1.0, 1.0))
    elapsed = time.perf_counter() - t0
    for img in imgs:
        assert img.shape == (160, 160, 3)
        covered = ((1.0 - img).abs().amax(-1) > 0.05).float()
        # The donut fills about a quarter of a framed view: not empty, not a screen-filling smear.
        assert 0.12 < covered.mean().item() < 0.45, covered.mean().item()
        # Framed: the border rows and columns show the background.
        border = torch.cat(
            [covered[:4].flatten(), covered[-4:].flatten(), covered[:, :4].flatten(), covered[:, -4:].flatten()]
        )
        assert border.mean().item() < 0.02
        # Pink icing: red dominates blue dominates... at least the object is not grey.
        obj = img[covered.bool()]
        assert (obj[:, 0] - obj[:, 1]).mean() > 0.1
    assert elapsed < 60.0, f"4 views of 3,000 Gaussians at 160x160 took {elapsed:.1f} s"
    save_grid(imgs, tmp_path / "donut.png", cols=4)


# Per-view PSNR (dB) of the twin on held-out lego views, against the photos on white. Over all 13
# held-out views the twin measured a mean of 29.1706 dB, the value the gsplat trainer reported
# (cameras.json: test_psnr_reference_l1_trainer = 29.17062); every third view is checked here.
LEGO_VIEW_PSNR = {"r_0": 33.618, "r_24": 18.583, "r_48": 31.564, "r_72": 29.635, "r_96": 34.662}


def test_trained_lego_reaches_the_gsplat_trainer_psnr_on_held_out_views(shared_scene: Callable[..., Path]) -> None:
    from PIL import Image
    from vqpress_server.core.splats.formats import read_splats

    root = shared_scene("trained_lego_sh3")
    splats = read_splats(root / "lego_7k.ply")
    cams = read_cameras_json(root / "cameras.json", split="test")
    assert len(cams.cameras) == 13 and cams.background == (1.0, 1.0, 1.0)
    got = {}
    for cam in cams.cameras[::3]:
        img = render(splats, cam, background=cams.background, backend="torch")
        name = cam.name.removeprefix("./train/")
        rgba = np.asarray(Image.open(shared_scene("nerf_synthetic_lego_400") / "train" / f"{name}.png"))
        rgba = rgba.astype(np.float32) / 255.0
        gt = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])  # composited on white
        got[name] = psnr(img, gt)
    assert got == pytest.approx(LEGO_VIEW_PSNR, abs=0.02)
    assert np.mean(list(got.values())) >= 29.5  # floor for these five views (measured 29.61)


def test_uint8_images_pass_through_png_helpers_unchanged(tmp_path):
    """Images that come back from the Render RPC as uint8 keep their values (not clipped to white)."""
    from PIL import Image
    from vqpress_server.core.render.images import save_grid, to_uint8

    img = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    assert np.array_equal(to_uint8(img), img)
    save_grid([img, img], tmp_path / "g.png", cols=2, pad=0)
    sheet = np.asarray(Image.open(tmp_path / "g.png"))
    assert np.array_equal(sheet[:, :5], img) and np.array_equal(sheet[:, 5:], img)

"""Framing a capture from its cameras: which initialization rule, and the box it starts in."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from vqpress_server.core.render.cameras import Camera, look_at
from vqpress_server.core.splats.framing import OBJECT_FILL, frame_capture, scene_scale

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _camera(eye: np.ndarray, target: np.ndarray, fov_deg: float = 40.0, size: int = 400) -> Camera:
    f = 0.5 * size / math.tan(math.radians(fov_deg) / 2)
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    return Camera(look_at(eye, target, np.array([0.0, 0.0, 1.0])), K, size, size)


def _hemisphere(n: int, radius: float, center: np.ndarray, seed: int = 0) -> list[Camera]:
    rng = np.random.default_rng(seed)
    cams = []
    for _ in range(n):
        az, el = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 1.3)
        d = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        cams.append(_camera(center + radius * d, center))
    return cams


def test_cameras_around_an_object_get_a_box_fitted_to_it() -> None:
    center = np.array([0.5, -1.0, 0.2])
    cams = _hemisphere(60, 4.0, center)
    f = frame_capture(cams)
    assert f.rule == "object"
    np.testing.assert_allclose(f.center, center, atol=1e-6)
    # The box fills OBJECT_FILL of the nearest view: 4 * tan(20 deg) * 0.9 = 1.31.
    assert f.box_half == pytest.approx(OBJECT_FILL * 4.0 * math.tan(math.radians(20)), rel=1e-6)
    assert f.scale == pytest.approx(scene_scale(cams))
    assert f.box_half < 0.3 * f.scale  # gsplat's box would be 3 scene scales: ~12x wider


def test_turntable_ring_is_object_centric() -> None:
    center = np.zeros(3)
    cams = [_camera(np.array([3 * np.cos(a), 3 * np.sin(a), 1.0]), center) for a in np.linspace(0, 2 * np.pi, 24)[:-1]]
    assert frame_capture(cams).rule == "object"


def test_forward_facing_and_walkthrough_captures_keep_the_camera_spread_rule() -> None:
    # Forward-facing: a 3x3 grid of cameras all looking along +y at a wall far away.
    grid = [_camera(np.array([x, 0.0, z]), np.array([x, 10.0, z])) for x in (-1, 0, 1) for z in (-0.5, 0, 0.5)]
    f = frame_capture(grid, init_extent=3.0)
    assert f.rule == "camera_spread" and f.box_half == pytest.approx(3.0 * f.scale)
    # Converging, but from one side only (a wall-mounted object seen from the front).
    center = np.zeros(3)
    arc = [_camera(np.array([4 * np.sin(a), -4 * np.cos(a), 0.3]), center) for a in np.linspace(-0.5, 0.5, 15)]
    assert frame_capture(arc).rule == "camera_spread"


def test_sfm_points_win_and_give_their_bounds() -> None:
    cams = _hemisphere(20, 4.0, np.zeros(3))
    pts = np.array([[-1.0, -2.0, 0.0], [3.0, 2.0, 1.0]])
    f = frame_capture(cams, pts)
    assert f.rule == "points" and f.center == (1.0, 0.0, 0.5) and f.box_half == 2.0


def _nerf_cameras(path: Path) -> list[Camera]:
    from vqpress_server.core.data.blender import opengl_c2w_to_viewmat

    d = json.loads(path.read_text())
    if "camera_angle_x" in d:
        w = h = 400
        fx = fy = 0.5 * w / math.tan(0.5 * d["camera_angle_x"])
        cx, cy = w / 2, h / 2
    else:
        w, h, fx, fy, cx, cy = int(d["w"]), int(d["h"]), d["fl_x"], d["fl_y"], d["cx"], d["cy"]
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    return [Camera(opengl_c2w_to_viewmat(f["transform_matrix"], path, "frame"), K, w, h) for f in d["frames"]]


@pytest.mark.skipif(not (SHARED / "nerf_synthetic_lego_400").is_dir(), reason="shared data not present")
def test_real_camera_sets() -> None:
    """lego (NeRF-synthetic): the object rule with 3DGS's +-1.3; fox (handheld, one side of a
    wall-mounted head): camera spread; garden (mip-NeRF 360 COLMAP): its SfM points."""
    lego = frame_capture(_nerf_cameras(SHARED / "nerf_synthetic_lego_400" / "transforms_train.json"))
    assert lego.rule == "object" and lego.box_half == pytest.approx(1.3, abs=0.02)
    assert 5.0 < lego.scale < 5.4  # 3DGS's extent for these cameras: 5.2
    fox = frame_capture(_nerf_cameras(SHARED / "instant_ngp_fox" / "transforms.json"))
    assert fox.rule == "camera_spread"
    z = np.load(SHARED / "garden_colmap_points" / "test_garden.npz")
    garden_cams = [
        Camera(z["viewmats"][i].astype(np.float64), z["Ks"][i].astype(np.float64), int(z["width"]), int(z["height"]))
        for i in range(len(z["viewmats"]))
    ]
    garden = frame_capture(garden_cams, z["means3d"])
    assert garden.rule == "points" and garden.box_half > 5.0
    assert frame_capture(garden_cams).rule == "camera_spread"  # 3 cameras on one side, without the points

"""Cameras: the cameras.json reader, validation of untrusted input, orbit cameras, the dict form."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from vqpress_server.core.errors import VqpressInputError
from vqpress_server.core.render.cameras import (
    Camera,
    camera_from_dict,
    camera_to_dict,
    look_at,
    orbit_cameras,
    read_cameras_json,
)
from vqpress_server.core.splats.model import GaussianSplats

K = [[100.0, 0.0, 32.0], [0.0, 100.0, 24.0], [0.0, 0.0, 1.0]]


def _cam_dict(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "viewmat": np.eye(4).tolist(),
        "K": K,
        "width": 64,
        "height": 48,
        "file": "./r_0",
        "split": "train",
    }
    d.update(over)
    return d


def _project(cam: Camera, p: np.ndarray) -> tuple[np.ndarray, float]:
    pc = cam.viewmat @ np.append(p, 1.0)
    return (cam.K @ pc[:3])[:2] / pc[2], float(pc[2])


def test_reads_the_trained_lego_cameras(shared_scene: Callable[..., Path]) -> None:
    path = shared_scene("trained_lego_sh3") / "cameras.json"
    everything = read_cameras_json(path)
    test = read_cameras_json(path, split="test")
    train = read_cameras_json(path, split="train")
    assert len(everything.cameras) == 100 and len(test.cameras) == 13 and len(train.cameras) == 87
    assert test.background == (1.0, 1.0, 1.0)
    cam = test.cameras[0]
    assert cam.name == "./train/r_0" and (cam.width, cam.height) == (400, 400)
    assert cam.K[0, 0] == pytest.approx(555.5555419921875)
    # The NeRF-synthetic cameras sit on a sphere of radius ~4 looking at the origin (OpenCV: +z forward).
    assert np.linalg.norm(cam.position) == pytest.approx(4.03, abs=0.01)
    uv, depth = _project(cam, np.zeros(3))
    assert depth > 0 and np.allclose(uv, [200, 200], atol=2)


def test_reads_a_dict_and_flat_row_major_matrices() -> None:
    flat = _cam_dict(viewmat=np.eye(4).reshape(-1).tolist(), K=np.asarray(K).reshape(-1).tolist())
    cs = read_cameras_json({"cameras": [flat, _cam_dict(split="test")]}, split="train")
    assert len(cs.cameras) == 1 and cs.background is None
    assert np.array_equal(cs.cameras[0].K, np.asarray(K))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"viewmat": [[1.0, 0.0], [0.0, 1.0]]}, "viewmat must have shape"),
        ({"viewmat": "eye"}, "viewmat must be"),
        ({"viewmat": np.diag([1.0, 1.0, float("nan"), 1.0]).tolist()}, "NaN or infinite"),
        ({"viewmat": np.diag([1.0, 1.0, 0.0, 1.0]).tolist()}, "not invertible"),
        ({"viewmat": (np.eye(4) + np.eye(4, k=-3)).tolist()}, "last row"),
        ({"K": [[0.0, 0.0, 1.0], [0.0, 100.0, 1.0], [0.0, 0.0, 1.0]]}, "focal lengths"),
        ({"K": [[100.0, 0.0, 1.0], [0.0, 100.0, 1.0], [1.0, 0.0, 1.0]]}, "K must be"),
        ({"width": 0}, "width must be between 1 and 8192"),
        ({"height": 8193}, "height must be between 1 and 8192"),
        ({"width": 12.5}, "width must be an integer"),
        ({"width": True}, "width must be an integer"),
        ({"height": "48"}, "height must be an integer"),
        ({"split": "holdout"}, "unknown split 'holdout'"),
        ({"file": 3}, "name must be a string"),
    ],
)
def test_rejects_bad_cameras_naming_the_problem(change: dict[str, Any], message: str) -> None:
    with pytest.raises(VqpressInputError, match=message):
        read_cameras_json({"cameras": [_cam_dict(**change)]})


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "'cameras' list"),
        ({"cameras": {}}, "'cameras' list"),
        ({"cameras": [3]}, "camera 0 is not an object"),
        ({"cameras": [{"K": K}]}, "missing viewmat, width, height"),
        ({"cameras": [], "background": [1, 1]}, "background must be 3 numbers"),
        ({"cameras": [], "background": [1, 2, 0]}, "background must be 3 numbers"),
    ],
)
def test_rejects_bad_files(data: Any, message: str, tmp_path: Path) -> None:
    p = tmp_path / "cameras.json"
    p.write_text(json.dumps(data))
    with pytest.raises(VqpressInputError, match=message):
        read_cameras_json(p)


def test_rejects_unreadable_files_and_unknown_split_arguments(tmp_path: Path) -> None:
    with pytest.raises(VqpressInputError, match="cannot read"):
        read_cameras_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"cameras": [')
    with pytest.raises(VqpressInputError, match="not valid JSON"):
        read_cameras_json(tmp_path / "bad.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(VqpressInputError, match="UTF-8"):
        read_cameras_json(tmp_path / "bin.json")
    with pytest.raises(VqpressInputError, match="unknown split 'dev'"):
        read_cameras_json({"cameras": []}, split="dev")


def test_dict_round_trip_is_exact_and_json_able() -> None:
    viewmat = look_at(np.array([1.0, -2.0, 0.7]), np.array([0.1, 0.0, 0.2]), np.array([0.0, 0.0, 1.0]))
    cam = Camera(viewmat, np.asarray(K), 64, 48, name="front")
    d = json.loads(json.dumps(camera_to_dict(cam)))
    assert len(d["viewmat"]) == 16 and len(d["K"]) == 9
    back = camera_from_dict(d)
    assert back == cam and hash(back) == hash(cam)
    assert back != Camera(viewmat, np.asarray(K), 64, 49, name="front")


def test_camera_is_immutable() -> None:
    cam = Camera(np.eye(4), np.asarray(K), 64, 48)
    with pytest.raises(ValueError):
        cam.viewmat[0, 0] = 2.0  # read-only array


def _box_scene(lo: list[float], hi: list[float], n: int = 2000) -> GaussianSplats:
    g = torch.Generator().manual_seed(0)
    lo_t, hi_t = torch.tensor(lo), torch.tensor(hi)
    means = lo_t + (hi_t - lo_t) * torch.rand(n, 3, generator=g)
    return GaussianSplats(
        means=means,
        quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        scales=torch.full((n, 3), -4.0),
        opacities=torch.zeros(n),
        sh0=torch.zeros(n, 1, 3),
        shN=torch.zeros(n, 0, 3),
    )


def test_orbit_cameras_frame_the_scene() -> None:
    s = _box_scene([2.0, -1.0, 5.0], [4.0, 0.0, 5.5])
    lo, hi = (b.numpy().astype(np.float64) for b in s.bounds())
    center = 0.5 * (lo + hi)
    cams = orbit_cameras(s, n=6, width=120, height=80)
    assert len(cams) == 6 and len({c.name for c in cams}) == 6
    distances = [np.linalg.norm(c.position - center) for c in cams]
    assert np.ptp(distances) < 1e-9 and distances[0] > np.linalg.norm(hi - lo) / 2
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    for c in cams:
        assert (c.width, c.height) == (120, 80)
        uv, depth = _project(c, center)
        assert depth > 0 and np.allclose(uv, [60, 40], atol=1e-6)  # looks at the center
        for p in corners:  # the robust bounding box is inside the image
            uv, depth = _project(c, p)
            assert depth > 0 and 0 <= uv[0] <= 120 and 0 <= uv[1] <= 80, uv
        # OpenCV axes: world "up" (+z by default) points up in the image (smaller v).
        uv_up, _ = _project(c, center + np.array([0.0, 0.0, 0.1]))
        assert uv_up[1] < 40
    # Evenly spaced: consecutive cameras are 60 degrees apart around the up axis.
    a = [math.atan2(*(c.position - center)[[1, 0]]) for c in cams]
    steps = np.diff(np.unwrap(a))
    assert np.allclose(np.abs(steps), 2 * math.pi / 6)


def test_orbit_cameras_reject_bad_requests() -> None:
    s = _box_scene([0, 0, 0], [1, 1, 1], n=10)
    with pytest.raises(VqpressInputError, match="empty scene"):
        orbit_cameras(GaussianSplats.empty())
    with pytest.raises(VqpressInputError, match="between 1 and"):
        orbit_cameras(s, n=0)
    with pytest.raises(VqpressInputError, match="width"):
        orbit_cameras(s, width=100_000)
    with pytest.raises(VqpressInputError, match="up must be"):
        orbit_cameras(s, up=(0.0, 0.0, 0.0))

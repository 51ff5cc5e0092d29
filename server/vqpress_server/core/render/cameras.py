"""Pinhole cameras: world-to-camera ``viewmat`` in OpenCV axes (x right, y down, z forward) plus ``K``.

Cameras arrive from users (JSON files, gRPC messages), so every constructor validates: shapes,
finite values, positive sizes no larger than ``MAX_IMAGE_SIZE``, an invertible rigid ``viewmat``
and positive focal lengths. A bad camera raises ``VqpressInputError`` saying what to fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from vqpress.vqp import loads_json

from ..budgets import BUDGETS, check_pixels
from ..errors import VqpressInputError
from ..splats.model import GaussianSplats

MAX_IMAGE_SIZE = BUDGETS.max_image_side  # largest width or height accepted (pixels)
MAX_CAMERAS = 10_000  # largest number of cameras in one cameras.json
SPLITS = ("train", "test", "val")  # the split names cameras.json may use


def _matrix(value: Any, shape: tuple[int, int], what: str) -> np.ndarray:
    try:
        a = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise VqpressInputError(f"{what} must be a {shape[0]}x{shape[1]} matrix of numbers ({e})") from None
    if a.size == shape[0] * shape[1] and a.ndim <= 2:
        a = a.reshape(shape)  # row-major flat lists are accepted (the gRPC/JSON camera dict form)
    if a.shape != shape:
        raise VqpressInputError(
            f"{what} must have shape {shape} (or {shape[0] * shape[1]} row-major values), got {a.shape}"
        )
    if not np.isfinite(a).all():
        raise VqpressInputError(f"{what} contains NaN or infinite values; give finite numbers")
    return a


def _size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)):
        raise VqpressInputError(f"{what} must be an integer number of pixels, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise VqpressInputError(f"{what} must be an integer number of pixels, got {value!r}")
    v = int(value)
    if not 1 <= v <= MAX_IMAGE_SIZE:
        raise VqpressInputError(f"{what} must be between 1 and {MAX_IMAGE_SIZE} pixels, got {v}")
    return v


@dataclass(frozen=True, eq=False)
class Camera:
    """One pinhole camera. ``viewmat`` maps world to camera coordinates (OpenCV axes); ``K`` maps
    camera coordinates to pixels, with pixel centers at half-integers (pixel (0, 0) covers [0, 1)^2)."""

    viewmat: np.ndarray  # [4, 4] float64, world-to-camera, OpenCV axes
    K: np.ndarray  # [3, 3] float64 intrinsics (fx, fy, cx, cy in pixels)
    width: int  # image width (pixels), 1..MAX_IMAGE_SIZE
    height: int  # image height (pixels), 1..MAX_IMAGE_SIZE
    name: str = ""  # free-form label (file name of the photo for dataset cameras)

    def __post_init__(self) -> None:
        label = f"camera {self.name!r}" if self.name else "camera"
        viewmat = _matrix(self.viewmat, (4, 4), f"{label}: viewmat")
        K = _matrix(self.K, (3, 3), f"{label}: K")
        width = _size(self.width, f"{label}: width")
        height = _size(self.height, f"{label}: height")
        if not np.allclose(viewmat[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
            raise VqpressInputError(f"{label}: the last row of viewmat must be [0, 0, 0, 1], got {viewmat[3].tolist()}")
        R = viewmat[:3, :3]
        s = np.linalg.svd(R, compute_uv=False)
        if s.min() < 1e-6 * max(s.max(), 1e-300):
            raise VqpressInputError(
                f"{label}: viewmat is not invertible (its 3x3 rotation part is singular); "
                "give a world-to-camera rigid transform"
            )
        if not (K[0, 0] > 0 and K[1, 1] > 0):
            raise VqpressInputError(
                f"{label}: focal lengths K[0,0] and K[1,1] must be positive, got {K[0, 0]}, {K[1, 1]}"
            )
        if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0:
            raise VqpressInputError(f"{label}: K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], got {K.tolist()}")
        if not isinstance(self.name, str):
            raise VqpressInputError(f"camera name must be a string, got {type(self.name).__name__}")
        viewmat.setflags(write=False)
        K.setflags(write=False)
        object.__setattr__(self, "viewmat", viewmat)
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "height", height)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Camera):
            return NotImplemented
        return (
            np.array_equal(self.viewmat, other.viewmat)
            and np.array_equal(self.K, other.K)
            and (self.width, self.height, self.name) == (other.width, other.height, other.name)
        )

    def __hash__(self) -> int:
        return hash((self.viewmat.tobytes(), self.K.tobytes(), self.width, self.height, self.name))

    @property
    def position(self) -> np.ndarray:  # [3] the camera center in world coordinates
        R, t = self.viewmat[:3, :3], self.viewmat[:3, 3]
        return -np.linalg.solve(R, t)


@dataclass(frozen=True)
class CameraSet:
    cameras: list[Camera]
    background: tuple[float, float, float] | None  # the scene's background color in [0, 1], if stated


def camera_to_dict(camera: Camera) -> dict[str, Any]:
    """The JSON form: viewmat and K as row-major flat lists (16 and 9 floats)."""
    return {
        "viewmat": [float(v) for v in camera.viewmat.reshape(-1)],
        "K": [float(v) for v in camera.K.reshape(-1)],
        "width": camera.width,
        "height": camera.height,
        "name": camera.name,
    }


def camera_from_dict(d: Mapping[str, Any]) -> Camera:
    """Inverse of ``camera_to_dict``; also accepts nested 4x4 / 3x3 lists. Validates everything."""
    if not isinstance(d, Mapping):
        raise VqpressInputError(f"a camera must be an object with viewmat, K, width, height; got {type(d).__name__}")
    missing = [k for k in ("viewmat", "K", "width", "height") if k not in d]
    if missing:
        raise VqpressInputError(f"camera is missing {', '.join(missing)} (needs viewmat, K, width, height)")
    name = d.get("name", d.get("file", ""))
    if not isinstance(name, str):
        raise VqpressInputError(f"camera name must be a string, got {type(name).__name__}")
    return Camera(viewmat=d["viewmat"], K=d["K"], width=d["width"], height=d["height"], name=name)


def _background(value: Any) -> tuple[float, float, float]:
    try:
        bg = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise VqpressInputError(f"background must be 3 numbers in [0, 1], got {value!r}") from None
    if bg.shape != (3,) or not np.isfinite(bg).all() or (bg < 0).any() or (bg > 1).any():
        raise VqpressInputError(f"background must be 3 numbers in [0, 1], got {value!r}")
    return (float(bg[0]), float(bg[1]), float(bg[2]))


def read_cameras_json(path_or_dict: str | Path | Mapping[str, Any], split: str | None = None) -> CameraSet:
    """Read a cameras.json: ``{"background": [r, g, b], "cameras": [{"viewmat", "K", "width", "height",
    "file", "split"}, ...]}``. ``split`` keeps only the cameras of that split ("train", "test", "val");
    None keeps all. Each camera's ``name`` is its ``file`` (or ``name``) entry."""
    if split is not None and split not in SPLITS:
        raise VqpressInputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)} or None for all")
    where = "<dict>"
    if isinstance(path_or_dict, Mapping):
        data: Any = path_or_dict
    else:
        where = str(path_or_dict)
        try:
            text = Path(path_or_dict).read_text(encoding="utf-8")
        except OSError as e:
            raise VqpressInputError(f"{where}: cannot read cameras file ({e.strerror or e})") from None
        except UnicodeDecodeError:
            raise VqpressInputError(f"{where}: cameras file is not UTF-8 JSON") from None
        try:
            data = loads_json(text, BUDGETS.max_json_depth)
        except ValueError as e:  # invalid, or nested deeper than max_json_depth
            raise VqpressInputError(f"{where}: not valid JSON or nested too deeply ({e})") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("cameras"), list):
        raise VqpressInputError(f"{where}: expected an object with a 'cameras' list")
    raw = data["cameras"]
    if len(raw) > MAX_CAMERAS:
        raise VqpressInputError(f"{where}: {len(raw)} cameras; at most {MAX_CAMERAS} are accepted")
    background = None if data.get("background") is None else _background(data["background"])
    cameras = []
    for i, c in enumerate(raw):
        if not isinstance(c, Mapping):
            raise VqpressInputError(f"{where}: camera {i} is not an object")
        cam_split = c.get("split")
        if cam_split is not None and cam_split not in SPLITS:
            raise VqpressInputError(
                f"{where}: camera {i} has unknown split {cam_split!r}; use one of {', '.join(SPLITS)}"
            )
        if split is not None and cam_split != split:
            continue
        try:
            cameras.append(camera_from_dict(c))
        except VqpressInputError as e:
            raise VqpressInputError(f"{where}: camera {i}: {e}") from None
    check_pixels([(c.width, c.height) for c in cameras], where)
    return CameraSet(cameras=cameras, background=background)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:  # [4, 4]
    """World-to-camera matrix (OpenCV axes) of a camera at ``eye`` looking at ``target``; ``up`` is the
    world direction that appears up in the image."""
    f = target - eye
    f = f / np.linalg.norm(f)
    right = np.cross(f, up)
    n = np.linalg.norm(right)
    if n < 1e-9:
        raise VqpressInputError("look_at: the viewing direction is parallel to the up vector; choose another up")
    right = right / n
    down = np.cross(f, right)
    R = np.stack([right, down, f])
    viewmat = np.eye(4)
    viewmat[:3, :3] = R
    viewmat[:3, 3] = -R @ eye
    return viewmat


def orbit_cameras(
    splats: GaussianSplats,
    n: int = 8,
    width: int = 400,
    height: int = 400,
    *,
    up: Sequence[float] = (0.0, 0.0, 1.0),
    elevation_deg: float = 25.0,
    fov_deg: float = 50.0,
) -> list[Camera]:
    """``n`` cameras evenly spaced on a circle around the scene's robust center (the middle of
    ``splats.bounds()``), looking at it, at ``elevation_deg`` above the plane normal to ``up``.
    The distance puts the robust bounding sphere inside the narrower field of view (``fov_deg``,
    degrees) with a 10% margin, so the whole object is framed."""
    if not 1 <= n <= MAX_CAMERAS:
        raise VqpressInputError(f"number of orbit cameras must be between 1 and {MAX_CAMERAS}, got {n}")
    _size(width, "width")
    _size(height, "height")
    if not 1.0 <= fov_deg <= 170.0:
        raise VqpressInputError(f"fov_deg must be in [1, 170] degrees, got {fov_deg}")
    if not -89.0 <= elevation_deg <= 89.0:
        raise VqpressInputError(f"elevation_deg must be in [-89, 89] degrees, got {elevation_deg}")
    up_v = np.asarray(up, dtype=np.float64)
    if up_v.shape != (3,) or not np.isfinite(up_v).all() or np.linalg.norm(up_v) == 0:
        raise VqpressInputError(f"up must be a non-zero finite 3-vector, got {up!r}")
    up_v = up_v / np.linalg.norm(up_v)
    if splats.num_gaussians == 0:
        raise VqpressInputError("cannot place orbit cameras around an empty scene (0 Gaussians)")
    lo, hi = (b.detach().double().cpu().numpy() for b in splats.bounds())
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise VqpressInputError("scene positions are not finite; repair the scene first (load_scene)")
    center = 0.5 * (lo + hi)
    radius = max(0.5 * float(np.linalg.norm(hi - lo)), 1e-6)

    focal = 0.5 * min(width, height) / math.tan(math.radians(fov_deg) / 2)
    K = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    distance = 1.1 * radius / math.sin(math.radians(fov_deg) / 2)

    # An orthonormal basis (a, b) of the plane normal to up.
    helper = np.array([1.0, 0.0, 0.0]) if abs(up_v[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    a = np.cross(up_v, helper)
    a /= np.linalg.norm(a)
    b = np.cross(up_v, a)
    el = math.radians(elevation_deg)
    cameras = []
    for i in range(n):
        az = 2 * math.pi * i / n
        direction = math.cos(el) * (math.cos(az) * a + math.sin(az) * b) + math.sin(el) * up_v
        eye = center + distance * direction
        cameras.append(Camera(look_at(eye, center, up_v), K, width, height, name=f"orbit_{i:03d}"))
    return cameras


__all__ = [
    "MAX_IMAGE_SIZE",
    "Camera",
    "CameraSet",
    "camera_from_dict",
    "camera_to_dict",
    "look_at",
    "orbit_cameras",
    "read_cameras_json",
]

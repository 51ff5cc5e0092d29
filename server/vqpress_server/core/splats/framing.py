"""Framing a capture: where the scene is and how big, read off the cameras (and SfM points).

Training splats starts from Gaussians spread where the scene is, and three quantities follow from
the capture: the scene scale (the learning rate of positions and densification thresholds are in
its units), the centre, and the box of the random initialization. A box sized from the camera
spread (gsplat's COLMAP default, 3x the camera radius) holds an object-centric capture's object in
a sliver of its volume: on NeRF-synthetic lego that is a box of +-15 units around an object of
+-1.3, and it cost 6.6 dB. So the rule is chosen from the capture itself:

- ``points``: the dataset has SfM points; training starts from them (the box is their bounds).
- ``object``: the cameras surround a common look-at point (NeRF-synthetic, turntables, orbit
  captures): every optical axis passes close to one point, that point is near the middle of
  every view, and the cameras see it from all around. The random box is fitted to the object:
  centred on that point, half-size ``OBJECT_FILL * d_min * tan(fov_min / 2)`` with ``d_min`` the
  nearest camera's distance and ``fov_min`` the narrowest field of view, so the box fills at most
  90% of the nearest view (lego: +-1.31, where 3DGS uses +-1.3 for every Blender scene).
- ``camera_spread``: anything else (forward-facing and walk-through captures): gsplat's rule, a box of
  ``init_extent`` scene scales around the centre.

The scene scale is 3DGS's in every case: 1.1 x the largest distance of a camera from the cameras'
mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ..render.cameras import Camera

# An object-centric capture (rule "object") passes all three tests:
AXIS_SPREAD_MAX = 0.05  # RMS distance of the optical axes from the look-at point, x the median camera distance
VIEW_ANGLE_MAX_DEG = 5.0  # median angle between a camera's axis and its ray to the look-at point
SURROUND_MAX = 0.75  # length of the mean unit vector from the point to the cameras (a hemisphere: 0.5)
OBJECT_FILL = 0.9  # the object box fills at most this fraction of the nearest camera's narrowest view

Rule = Literal["points", "object", "camera_spread"]


@dataclass(frozen=True)
class Framing:
    """Where training starts: the rule chosen, the scene's centre and scale, and the init box."""

    rule: Rule
    center: tuple[float, float, float]  # world units
    scale: float  # 3DGS scene scale: 1.1 x the largest camera distance from the cameras' mean (world units)
    box_half: float  # half-size of the random-init cube around center (world units; for "points" their half-span)
    axis_spread: float  # RMS distance of the axes from the look-at point / median camera distance
    view_angle_deg: float  # median angle between the optical axes and the rays to the look-at point
    surround: float  # length of the mean unit vector from the look-at point to the cameras (0 all round, 1 one side)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def look_at_point(cameras: Sequence[Camera]) -> np.ndarray | None:  # [3]
    """The point nearest to every optical axis (least squares), or None when the axes are near parallel."""
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c in cameras:
        d = c.viewmat[2, :3]  # the camera's forward axis (+z) in world coordinates
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ c.position
    if np.linalg.cond(A) >= 1e6:
        return None
    return np.linalg.solve(A, b)


def scene_scale(cameras: Sequence[Camera]) -> float:
    """3DGS's scene extent: 1.1 x the largest distance of a camera from the cameras' mean (1 for one camera)."""
    pos = np.stack([c.position for c in cameras])  # [C, 3]
    scale = 1.1 * float(np.linalg.norm(pos - pos.mean(0), axis=1).max()) if len(cameras) > 1 else 1.0
    return scale if scale > 1e-9 else 1.0


def scene_frame(cameras: Sequence[Camera]) -> tuple[np.ndarray, float]:
    """(center [3], scale): the look-at point of the optical axes (the cameras' mean when the axes are
    near parallel or the point lies far away) and ``scene_scale``."""
    pos = np.stack([c.position for c in cameras])  # [C, 3]
    scale = scene_scale(cameras)
    center = look_at_point(cameras) if len(cameras) > 1 else None
    if center is None or not np.isfinite(center).all() or np.linalg.norm(center - pos.mean(0)) > 10 * scale:
        center = pos.mean(0)
    return center, scale


def _fov_min(c: Camera) -> float:
    """The narrower of the horizontal and vertical fields of view (radians)."""
    return 2.0 * float(np.arctan(0.5 * min(c.width / c.K[0, 0], c.height / c.K[1, 1])))


def frame_capture(
    cameras: Sequence[Camera],
    points: np.ndarray | None = None,  # [P, 3] SfM points, if the dataset has them
    init_extent: float = 3.0,
) -> Framing:
    """Choose the initialization rule for these cameras (and points) and the box it starts in."""
    if len(cameras) == 0:
        raise ValueError("framing needs at least one camera")
    pos = np.stack([c.position for c in cameras])  # [C, 3]
    center, scale = scene_frame(cameras)
    to_center = center - pos  # [C, 3]
    dist = np.linalg.norm(to_center, axis=1)  # [C]
    fwd = np.stack([c.viewmat[2, :3] for c in cameras])  # [C, 3]
    along = (to_center * fwd).sum(1)
    perp = np.linalg.norm(to_center - along[:, None] * fwd, axis=1)
    d_med = float(np.median(dist))
    if d_med > 1e-9:
        spread = float(np.sqrt((perp**2).mean())) / d_med
        cosang = np.clip(along / np.maximum(dist, 1e-12), -1.0, 1.0)
        angle = float(np.degrees(np.median(np.arccos(cosang))))
        surround = float(np.linalg.norm((-to_center / np.maximum(dist, 1e-12)[:, None]).mean(0)))
    else:
        spread, angle, surround = float("inf"), 180.0, 1.0
    stats = {"axis_spread": spread, "view_angle_deg": angle, "surround": surround}

    if points is not None and len(points) > 0:
        p = np.asarray(points, dtype=np.float64)
        lo, hi = p.min(0), p.max(0)
        return Framing("points", _t3((lo + hi) / 2), scale, float((hi - lo).max() / 2), **stats)
    in_front = bool((along > 0).all())
    if (
        len(cameras) >= 3
        and in_front
        and spread <= AXIS_SPREAD_MAX
        and angle <= VIEW_ANGLE_MAX_DEG
        and (surround <= SURROUND_MAX)
    ):
        d_min = float(dist.min())
        fov = min(_fov_min(c) for c in cameras)
        half = OBJECT_FILL * d_min * float(np.tan(0.5 * fov))
        return Framing("object", _t3(center), scale, half, **stats)
    return Framing("camera_spread", _t3(center), scale, init_extent * scale, **stats)


def _t3(v: np.ndarray) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


__all__ = ["Framing", "frame_capture", "look_at_point", "scene_frame", "scene_scale"]

"""NeRF-synthetic (transforms_{train,val,test}.json) and instant-ngp (transforms.json) readers.

Both store per frame a ``transform_matrix``: camera-to-world in OpenGL axes (x right, y up,
z backward). We flip its y and z columns to OpenCV axes, then invert it to world-to-camera.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from vqpress.vqp import loads_json

from ..budgets import MAX_JSON_DEPTH
from ..errors import FormatError
from ..render.cameras import Camera
from .dataset import DatasetConfig, PosedImageDataset, holdout_split, load_image, resolve_inside, scale_intrinsics
from .distortion import undistort_image

MAX_JSON_BYTES = 64 << 20  # a transforms file larger than this is refused


def opengl_c2w_to_viewmat(c2w: Any, source: Path, what: str) -> np.ndarray:  # [4, 4]
    """World-to-camera (OpenCV axes) from a camera-to-world matrix in OpenGL axes (3x4 or 4x4)."""
    try:
        m = np.array(c2w, dtype=np.float64)
    except (TypeError, ValueError):
        raise FormatError(source, f"{what}: transform_matrix must be a 4x4 array of numbers") from None
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise FormatError(source, f"{what}: transform_matrix must be a finite 4x4 matrix, got shape {m.shape}")
    m = m.copy()
    m[:3, 1:3] *= -1.0  # OpenGL (y up, z backward) -> OpenCV (y down, z forward)
    R = m[:3, :3]
    if abs(np.linalg.det(R)) < 1e-9:
        raise FormatError(source, f"{what}: transform_matrix has a singular rotation; give a rigid camera-to-world")
    view = np.eye(4)
    Rinv = np.linalg.inv(R)
    view[:3, :3] = Rinv
    view[:3, 3] = -Rinv @ m[:3, 3]
    return view


def read_json(path: Path) -> dict[str, Any]:
    if path.stat().st_size > MAX_JSON_BYTES:
        raise FormatError(path, f"file is larger than {MAX_JSON_BYTES >> 20} MiB")
    try:
        data = loads_json(path.read_text(encoding="utf-8"), MAX_JSON_DEPTH)
    except (UnicodeDecodeError, ValueError) as e:  # invalid, or nested deeper than MAX_JSON_DEPTH
        raise FormatError(path, f"not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise FormatError(path, "expected an object with a 'frames' list")
    return data


def _number(d: dict[str, Any], key: str, source: Path, default: float | None = None) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise FormatError(source, f"'{key}' must be a finite number, got {v!r}")
    return float(v)


def _image_path(root: Path, frame: dict[str, Any], source: Path, what: str) -> Path:
    p = resolve_inside(root, frame.get("file_path"), source, what)
    if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".exr", ".webp"):
        return p
    for ext in (".png", ".jpg", ".jpeg", ".PNG", ".JPG"):
        if p.with_name(p.name + ext).is_file():
            return p.with_name(p.name + ext)
    return p.with_name(p.name + ".png")  # reported as missing by load_image


def _frames(root: Path, data: dict[str, Any], source: Path, config: DatasetConfig, start: int) -> list[dict]:
    frames = data["frames"]
    if start + len(frames) > config.max_images:
        raise FormatError(source, f"{start + len(frames)} frames exceed the limit of {config.max_images} images")
    for i, f in enumerate(frames):
        if not isinstance(f, dict) or "transform_matrix" not in f:
            raise FormatError(source, f"frame {i} must be an object with file_path and transform_matrix")
    return frames


def read_nerf_synthetic(root: Path, config: DatasetConfig = DatasetConfig()) -> PosedImageDataset:
    """NeRF-synthetic: transforms_train.json (+ transforms_test.json), camera_angle_x, RGBA PNGs.

    With a test json the named splits are used; with only train, every config.test_every-th image
    is held out. The val split is not read.
    """
    config.validate()
    images: list[torch.Tensor] = []
    cameras: list[Camera] = []
    split_of: list[str] = []
    alphas: list[torch.Tensor] | None = [] if config.keep_alpha else None
    for split in ("train", "test"):
        source = root / f"transforms_{split}.json"
        if not source.is_file():
            continue
        data = read_json(source)
        angle = _number(data, "camera_angle_x", source)
        if not 0.0 < angle < math.pi:
            raise FormatError(source, f"camera_angle_x must be in (0, pi) radians, got {angle}")
        for i, f in enumerate(_frames(root, data, source, config, len(images))):
            what = f"{split} frame {i}"
            img = load_image(
                _image_path(root, f, source, what), config.background, config.downscale, source, what, alphas
            )
            h, w = img.shape[:2]
            focal = 0.5 * w / math.tan(0.5 * angle)  # focal of the loaded (possibly downscaled) width
            K = np.array([[focal, 0.0, w / 2], [0.0, focal, h / 2], [0.0, 0.0, 1.0]])
            view = opengl_c2w_to_viewmat(f["transform_matrix"], source, what)
            cameras.append(Camera(view, K, w, h, name=str(f.get("file_path"))))
            images.append(img)
            split_of.append(split)
    if not images:
        raise FormatError(root, "transforms_train.json has no frames")
    if "test" in split_of:
        train = [i for i, s in enumerate(split_of) if s == "train"]
        test = [i for i, s in enumerate(split_of) if s == "test"]
    else:
        train, test = holdout_split(len(images), config.test_every)
    return PosedImageDataset(
        images, cameras, train, test, "nerf_synthetic", config.background, meta={"root": str(root)}, alphas=alphas
    )


def read_instant_ngp(root: Path, config: DatasetConfig = DatasetConfig()) -> PosedImageDataset:
    """instant-ngp transforms.json: fl_x fl_y cx cy w h (per frame or shared), k1 k2 p1 p2 [k3].

    Photos are undistorted to the pinhole K on load. Every config.test_every-th image is held out.
    """
    config.validate()
    source = root / "transforms.json"
    data = read_json(source)
    if data.get("is_fisheye") or data.get("fisheye"):
        raise FormatError(source, "fisheye cameras are not supported; undistort the photos to pinhole first")
    images: list[torch.Tensor] = []
    cameras: list[Camera] = []
    for i, f in enumerate(_frames(root, data, source, config, 0)):
        what = f"frame {i}"
        params = {**data, **f}  # per-frame intrinsics override the shared ones
        img = load_image(_image_path(root, f, source, what), config.background, config.downscale, source, what)
        h, w = img.shape[:2]
        W = _number(params, "w", source, w * config.downscale)
        H = _number(params, "h", source, h * config.downscale)
        if "fl_x" in params:
            fx = _number(params, "fl_x", source)
            fy = _number(params, "fl_y", source, fx)
        else:
            angle = _number(params, "camera_angle_x", source)
            fx = fy = 0.5 * W / math.tan(0.5 * angle)
            if "camera_angle_y" in params:
                fy = 0.5 * H / math.tan(0.5 * _number(params, "camera_angle_y", source))
        cx = _number(params, "cx", source, W / 2)
        cy = _number(params, "cy", source, H / 2)
        if fx <= 0 or fy <= 0:
            raise FormatError(source, f"{what}: focal lengths must be positive, got {fx}, {fy}")
        K = scale_intrinsics(np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), w / W, h / H)
        coeffs = tuple(_number(params, k, source, 0.0) for k in ("k1", "k2", "p1", "p2", "k3"))
        img = undistort_image(img, K, coeffs)
        view = opengl_c2w_to_viewmat(f["transform_matrix"], source, what)
        cameras.append(Camera(view, K, w, h, name=str(f.get("file_path"))))
        images.append(img)
    if not images:
        raise FormatError(source, "transforms.json has no frames")
    train, test = holdout_split(len(images), config.test_every)
    return PosedImageDataset(images, cameras, train, test, "instant_ngp", config.background, meta={"root": str(root)})

"""COLMAP sparse models (cameras, images, points3D in .bin or .txt) with photos under images/.

Supported camera models: SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV (photos are
undistorted to the pinhole part on load). COLMAP poses are world-to-camera in OpenCV axes already.
The SfM points become ``points`` / ``point_colors`` for initializing Gaussians.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import FormatError
from ..render.cameras import Camera
from .dataset import DatasetConfig, PosedImageDataset, holdout_split, load_image, resolve_inside, scale_intrinsics
from .distortion import undistort_image

# model id -> (name, number of params)
MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8)}
MODEL_IDS = {name: (i, n) for i, (name, n) in MODELS.items()}
MAX_POINTS = 50_000_000  # SfM points accepted


def intrinsics(model: str, params: list[float]) -> tuple[np.ndarray, tuple[float, ...]]:
    """(K [3, 3], distortion (k1, k2, p1, p2)) of a COLMAP camera."""
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        f, cx, cy = params[:3]
        fx = fy = f
        dist = tuple(params[3:])  # SIMPLE_RADIAL: (k,), RADIAL: (k1, k2), SIMPLE_PINHOLE: ()
    else:
        fx, fy, cx, cy = params[:4]
        dist = tuple(params[4:8])
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return K, tuple(dist) + (0.0,) * (4 - len(dist))


def qvec_to_R(q: np.ndarray) -> np.ndarray:  # [3, 3] from (w, x, y, z)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError("zero or non-finite quaternion")
    w, x, y, z = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


class _Reader:
    """Bounds-checked little-endian reads: a lying count raises FormatError before any allocation."""

    def __init__(self, path: Path) -> None:
        self.path, self.buf, self.pos = path, path.read_bytes(), 0

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise FormatError(self.path, f"truncated at byte {self.pos} (needed {size} more bytes)")
        out = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return out

    def skip(self, count: int, item: int, what: str) -> None:
        if count < 0 or self.pos + count * item > len(self.buf):
            raise FormatError(self.path, f"{what} count {count} runs past the end of the file")
        self.pos += count * item

    def cstring(self) -> str:
        end = self.buf.find(b"\0", self.pos)
        if end < 0:
            raise FormatError(self.path, "truncated image name")
        s = self.buf[self.pos : end].decode("utf-8", errors="replace")
        self.pos = end + 1
        return s

    def count(self, item: int, what: str) -> int:
        (n,) = self.read("Q")
        if n * item > len(self.buf) - self.pos:
            raise FormatError(self.path, f"claims {n} {what}, more than the file holds")
        return n


def _text_lines(path: Path) -> list[list[str]]:
    return [
        ln.split()
        for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]


def read_cameras(path: Path) -> dict[int, tuple[str, int, int, list[float]]]:
    cams: dict[int, tuple[str, int, int, list[float]]] = {}
    if path.suffix == ".bin":
        r = _Reader(path)
        for _ in range(r.count(24, "cameras")):
            cid, mid, w, h = r.read("iiQQ")
            if mid not in MODELS:
                raise FormatError(path, f"camera {cid}: model id {mid} is not supported (use {sorted(MODEL_IDS)})")
            name, n = MODELS[mid]
            cams[cid] = (name, w, h, list(r.read(f"{n}d")))
        return cams
    for row in _text_lines(path):
        try:
            cid, model, w, h = int(row[0]), row[1], int(row[2]), int(row[3])
            params = [float(v) for v in row[4:]]
        except (IndexError, ValueError):
            raise FormatError(path, f"bad camera line {' '.join(row)!r}") from None
        if model not in MODEL_IDS:
            raise FormatError(path, f"camera {cid}: model {model} is not supported (use {sorted(MODEL_IDS)})")
        if len(params) != MODEL_IDS[model][1]:
            raise FormatError(path, f"camera {cid}: {model} takes {MODEL_IDS[model][1]} params, got {len(params)}")
        cams[cid] = (model, w, h, params)
    return cams


def read_images(path: Path) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
    """[(name, qvec (w, x, y, z), tvec, camera_id)]."""
    out = []
    if path.suffix == ".bin":
        r = _Reader(path)
        for _ in range(r.count(64, "images")):
            (_iid, qw, qx, qy, qz, tx, ty, tz, cid) = r.read("i7di")
            name = r.cstring()
            (n2d,) = r.read("Q")
            r.skip(n2d, 24, "points2D")
            out.append((name, np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), cid))
        return out
    # Two lines per image: the pose line, then its points2D line (blank when it has none).
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if not ln.startswith("#")]
    i = 0
    while i < len(lines):
        row = lines[i].split()
        if not row:
            i += 1
            continue
        try:
            q = np.array([float(v) for v in row[1:5]])
            t = np.array([float(v) for v in row[5:8]])
            cid, name = int(row[8]), " ".join(row[9:])
        except (IndexError, ValueError):
            raise FormatError(path, f"bad image line {lines[i]!r}") from None
        if len(q) != 4 or len(t) != 3 or not name:
            raise FormatError(path, f"bad image line {lines[i]!r}")
        out.append((name, q, t, cid))
        i += 2
    return out


def read_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(xyz [P, 3] float32, rgb [P, 3] float32 in [0, 1])."""
    xyz, rgb = [], []
    if path.suffix == ".bin":
        r = _Reader(path)
        n = r.count(43, "points")
        if n > MAX_POINTS:
            raise FormatError(path, f"{n} points exceed the limit of {MAX_POINTS}")
        for _ in range(n):
            vals = r.read("Q3d3Bd")
            xyz.append(vals[1:4])
            rgb.append(vals[4:7])
            (track,) = r.read("Q")
            r.skip(track, 8, "track")
    else:
        for row in _text_lines(path):
            try:
                xyz.append([float(v) for v in row[1:4]])
                rgb.append([int(v) for v in row[4:7]])
            except ValueError:
                raise FormatError(path, f"bad point line {' '.join(row[:8])!r}") from None
            if len(xyz) > MAX_POINTS:
                raise FormatError(path, f"more than {MAX_POINTS} points")
    a = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    c = np.asarray(rgb, dtype=np.float32).reshape(-1, 3) / 255.0
    keep = np.isfinite(a).all(1)
    return a[keep], c[keep]


def _model_file(sparse: Path, stem: str) -> Path | None:
    for ext in ("bin", "txt"):
        if (sparse / f"{stem}.{ext}").is_file():
            return sparse / f"{stem}.{ext}"
    return None


def read_colmap(root: Path, config: DatasetConfig = DatasetConfig()) -> PosedImageDataset:
    """A COLMAP folder: sparse/0 (or sparse) with cameras, images, points3D; photos in images/.

    Images are sorted by name; every config.test_every-th is held out.
    """
    config.validate()
    sparse = root / "sparse" / "0" if (root / "sparse" / "0").is_dir() else root / "sparse"
    cam_file, img_file = _model_file(sparse, "cameras"), _model_file(sparse, "images")
    if cam_file is None or img_file is None:
        raise FormatError(sparse, "needs cameras.bin|txt and images.bin|txt")
    cams = read_cameras(cam_file)
    entries = sorted(read_images(img_file), key=lambda e: e[0])
    if not entries:
        raise FormatError(img_file, "no registered images")
    if len(entries) > config.max_images:
        raise FormatError(img_file, f"{len(entries)} images exceed the limit of {config.max_images}")
    image_dir = root / "images"
    images: list[torch.Tensor] = []
    cameras: list[Camera] = []
    for name, q, t, cid in entries:
        what = f"image {name!r}"
        if cid not in cams:
            raise FormatError(img_file, f"{what} refers to camera {cid}, which cameras file lacks")
        model, W, H, params = cams[cid]
        if not (np.isfinite(params).all() and np.isfinite(q).all() and np.isfinite(t).all()):
            raise FormatError(img_file, f"{what}: non-finite pose or intrinsics")
        img = load_image(
            resolve_inside(image_dir, name, img_file, what), config.background, config.downscale, img_file, what
        )
        h, w = img.shape[:2]
        K, dist = intrinsics(model, params)
        K = scale_intrinsics(K, w / W, h / H)
        img = undistort_image(img, K, dist)
        view = np.eye(4)
        try:
            view[:3, :3] = qvec_to_R(q)
        except ValueError as e:
            raise FormatError(img_file, f"{what}: {e}") from None
        view[:3, 3] = t
        cameras.append(Camera(view, K, w, h, name=name))
        images.append(img)
    train, test = holdout_split(len(images), config.test_every)
    points = colors = None
    pts_file = _model_file(sparse, "points3D")
    if pts_file is not None:
        p, c = read_points(pts_file)
        points, colors = torch.from_numpy(p), torch.from_numpy(c)
    return PosedImageDataset(
        images, cameras, train, test, "colmap", config.background, points, colors, meta={"root": str(root)}
    )

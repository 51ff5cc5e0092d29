"""Posed photos for training splats and fields: the dataset type, image loading, layout detection.

Images are float32 [H, W, 3] in [0, 1] (RGBA composited onto ``DatasetConfig.background``).
Cameras are ``render.cameras.Camera``: world-to-camera ``viewmat`` in OpenCV axes plus pinhole ``K``
with pixel centers at half-integers; distorted photos are undistorted on load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError, FormatError, VqpressInputError
from ..render.cameras import MAX_IMAGE_SIZE, Camera
from .config import DatasetConfig


@dataclass
class PosedImageDataset:
    images: list[torch.Tensor]  # each [H, W, 3] float32 in [0, 1]
    cameras: list[Camera]  # one per image, same order; width/height match the image
    train_indices: list[int]  # indices into images/cameras used for training
    test_indices: list[int]  # held-out indices for evaluation
    layout: str  # "nerf_synthetic" | "instant_ngp" | "colmap"
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)  # what transparent pixels were composited on
    points: torch.Tensor | None = None  # [P, 3] float32 SfM points (world), for initializing Gaussians
    point_colors: torch.Tensor | None = None  # [P, 3] float32 in [0, 1]
    meta: dict[str, str] = field(default_factory=dict)
    # each [H, W, 1] float32 in [0, 1], when loaded with keep_alpha: the photo before compositing is
    # recovered as straight rgb = (image - background * (1 - alpha)) / alpha
    alphas: list[torch.Tensor] | None = None

    def __post_init__(self) -> None:
        assert len(self.images) == len(self.cameras), (len(self.images), len(self.cameras))
        assert self.alphas is None or len(self.alphas) == len(self.images)
        for img, cam in zip(self.images, self.cameras, strict=True):
            assert img.shape == (cam.height, cam.width, 3), (img.shape, cam.width, cam.height)
        if self.points is not None:
            P = self.points.shape[0]
            assert self.points.shape == (P, 3), self.points.shape
            assert self.point_colors is not None and self.point_colors.shape == (P, 3)

    def __len__(self) -> int:
        return len(self.images)

    def split(self, name: str) -> list[tuple[torch.Tensor, Camera]]:
        """(image, camera) pairs of the "train" or "test" split."""
        if name not in ("train", "test"):
            raise VqpressInputError(f"split must be 'train' or 'test', got {name!r}")
        idx = self.train_indices if name == "train" else self.test_indices
        return [(self.images[i], self.cameras[i]) for i in idx]


def holdout_split(n: int, test_every: int) -> tuple[list[int], list[int]]:
    """(train, test): every test_every-th index (i % test_every == 0) is held out; 0 holds none out."""
    if test_every == 0 or n < 2:
        return list(range(n)), []
    test = [i for i in range(n) if i % test_every == 0]
    return [i for i in range(n) if i % test_every != 0], test


def resolve_inside(root: Path, rel: str, source: Path, what: str) -> Path:
    """root/rel, refusing absolute paths and escapes out of root (rel comes from an untrusted file)."""
    if not isinstance(rel, str) or not rel:
        raise FormatError(source, f"{what}: expected a relative file path, got {rel!r}")
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise FormatError(source, f"{what}: path {rel!r} leaves the dataset folder; use a relative path inside it")
    return root / p


def load_image(
    path: Path,
    background: tuple[float, float, float],
    downscale: int,
    source: Path,
    what: str,
    alpha_out: list[torch.Tensor] | None = None,
) -> torch.Tensor:  # [H', W', 3] float32
    """Decode a photo to float32 RGB in [0, 1], alpha-composited onto background, reduced by downscale;
    its alpha [H', W', 1] is appended to ``alpha_out`` when given."""
    if not path.is_file():
        raise FormatError(source, f"{what}: image file {path.name!r} is missing (looked for {path})")
    try:
        with Image.open(path) as im:
            W, H = im.size
            if not (1 <= W <= MAX_IMAGE_SIZE and 1 <= H <= MAX_IMAGE_SIZE):
                raise FormatError(path, f"image is {W}x{H}; sizes up to {MAX_IMAGE_SIZE} pixels are supported")
            w, h = W // downscale, H // downscale
            if w < 1 or h < 1:
                raise ConfigError(f"downscale {downscale} leaves no pixels of the {W}x{H} image {path.name}")
            if downscale > 1 and im.format == "JPEG":
                im.draft("RGB", (w, h))  # decode at reduced scale directly
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                grey = np.asarray(im, dtype=np.float32)[..., None] / 65535.0  # 16-bit greyscale
                rgba = np.concatenate([grey, grey, grey, np.ones_like(grey)], axis=2)
            else:
                im = im.convert("RGBA")
                if im.size != (w, h):
                    im = im.resize((w, h), Image.Resampling.BOX)
                rgba = np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, SyntaxError, ValueError) as e:
        raise FormatError(path, f"cannot decode image ({e})") from None
    rgb, alpha = rgba[..., :3], rgba[..., 3:4]
    out = torch.from_numpy(np.ascontiguousarray(rgb * alpha + np.asarray(background, np.float32) * (1.0 - alpha)))
    if out.shape[:2] != (h, w):  # 16-bit path: reduce with an area filter
        out = torch.nn.functional.interpolate(out.permute(2, 0, 1)[None], size=(h, w), mode="area")[0]
        out = out.permute(1, 2, 0).contiguous()
    if alpha_out is not None:
        a = torch.from_numpy(np.ascontiguousarray(alpha))
        if a.shape[:2] != (h, w):
            a = torch.nn.functional.interpolate(a.permute(2, 0, 1)[None], size=(h, w), mode="area")[0].permute(1, 2, 0)
        alpha_out.append(a.contiguous())
    return out


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:  # [3, 3]
    """K for an image resized by (sx, sy) (pixel centers at half-integers, so cx scales like fx)."""
    out = K.copy()
    out[0] *= sx
    out[1] *= sy
    return out


def detect_layout(root: Path) -> tuple[str, Path]:
    """("nerf_synthetic" | "instant_ngp" | "colmap", dataset folder); descends one wrapping folder."""
    root = Path(root)
    if not root.is_dir():
        raise VqpressInputError(f"{root}: not a folder; give the folder (or archive) of a dataset")
    for cand in [root] + sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if any((cand / f"transforms_{s}.json").is_file() for s in ("train", "test", "val")):
            return "nerf_synthetic", cand
        if (cand / "transforms.json").is_file():
            return "instant_ngp", cand
        for sparse in (cand / "sparse" / "0", cand / "sparse"):
            if any((sparse / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
                return "colmap", cand
    raise VqpressInputError(
        f"{root}: no dataset layout found; expected transforms_train.json (NeRF-synthetic), "
        "transforms.json (instant-ngp) or sparse/0/cameras.bin|txt with images/ (COLMAP)"
    )


def load_dataset(path: str | Path, config: DatasetConfig = DatasetConfig()) -> PosedImageDataset:
    """Load a folder of posed photos, detecting its layout (NeRF-synthetic, instant-ngp or COLMAP)."""
    config.validate()
    layout, root = detect_layout(Path(path))
    if layout == "nerf_synthetic":
        from .blender import read_nerf_synthetic

        return read_nerf_synthetic(root, config)
    if layout == "instant_ngp":
        from .blender import read_instant_ngp

        return read_instant_ngp(root, config)
    from .colmap import read_colmap

    return read_colmap(root, config)

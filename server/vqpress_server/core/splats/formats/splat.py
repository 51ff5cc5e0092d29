"""The antimatter15 ``.splat`` format: 32 bytes per splat, little-endian, no header.

Per splat: float32 position[3], float32 *linear* scale[3], uint8 RGBA (colour and opacity, each
``round(v * 255)``), uint8 rotation[4] = ``round(q * 128 + 128)`` of the normalized quaternion in
(w, x, y, z) order.

What writing a ``.splat`` loses (the price of 32 B per splat):

- all SH coefficients beyond DC (``shN``): the file has no place for them;
- colour: ``rgb = 0.5 + SH_C0 * sh0`` clamped to [0, 1] and rounded to 1/255, so a DC colour outside
  [0, 1] is clipped and ``sh0`` comes back within ``0.5 / 255 / SH_C0`` (about 0.007) when in range;
- opacity: ``sigmoid(opacity)`` rounded to 1/255 (the logit error grows near 0 and 1);
- rotation: normalized, each component rounded to 1/128 (and clamped to 127/128);
- positions and scales stay float32 (scales stored as ``exp(log_scale)``), so they are exact up to
  one float32 rounding of ``exp``/``log``.

Reading decodes alpha 0 to an opacity logit of -inf and alpha 255 to +inf (the exact inverse);
``load_scene`` clamps those. Splat order is kept (no sorting by size or opacity).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import FormatError
from ..model import SH_C0, GaussianSplats

RECORD = np.dtype([("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
assert RECORD.itemsize == 32


def read_splat(path: str | os.PathLike[str]) -> GaussianSplats:
    """Read an antimatter15 ``.splat`` file (no repair)."""
    path = Path(path)
    size = path.stat().st_size  # zero bytes is a valid, empty scene: the format has no header
    if size % RECORD.itemsize:
        raise FormatError(path, f"size {size:,} B is not a multiple of 32 B: not a .splat file, or a truncated one")
    N = size // RECORD.itemsize
    rec = np.fromfile(path, dtype=RECORD, count=N)
    rgba = rec["rgba"].astype(np.float64) / 255.0
    with np.errstate(divide="ignore", invalid="ignore"):
        scales = np.log(rec["scale"])  # non-positive linear scales give -inf/NaN: left to repair
        opac = np.log(rgba[:, 3]) - np.log1p(-rgba[:, 3])  # alpha 0 -> -inf, 255 -> +inf
    return GaussianSplats.from_numpy(
        means=rec["pos"],
        quats=(rec["rot"].astype(np.float32) - 128.0) / 128.0,
        scales=scales,
        opacities=opac,
        sh0=((rgba[:, :3] - 0.5) / SH_C0).reshape(N, 1, 3),
        meta={"source_format": "splat", "source_file": path.name},
    )


def encode_splat(splats: GaussianSplats) -> bytes:
    """The bytes of a ``.splat`` file for ``splats`` (SH beyond DC dropped; see the module doc)."""
    a = splats.numpy()
    N = splats.num_gaussians
    rec = np.zeros(N, RECORD)
    rec["pos"] = a["means"]
    rec["scale"] = np.exp(a["scales"].astype(np.float64))
    rgb = 0.5 + SH_C0 * a["sh0"].reshape(N, 3).astype(np.float64)
    alpha = 1.0 / (1.0 + np.exp(-a["opacities"].astype(np.float64)))
    rgba = np.concatenate([rgb, alpha[:, None]], axis=1)
    rec["rgba"] = np.clip(np.rint(rgba * 255.0), 0, 255).astype(np.uint8)
    q = a["quats"].astype(np.float64)
    n = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(n > 0, q / np.where(n > 0, n, 1.0), np.array([1.0, 0, 0, 0]))
    rec["rot"] = np.clip(np.rint(q * 128.0 + 128.0), 0, 255).astype(np.uint8)
    return rec.tobytes()

"""Numpy-only decoding of neural-field .vqp files (kind "field"); no torch needed.

``decode_field`` returns the arrays and config; ``eval_image_field`` evaluates a 2D image field at
pixel coordinates and ``render_image_field`` reconstructs a whole image, computing the same
float32 math as the server's torch model (bilinear interpolation of each level's vertex features,
levels summed or concatenated, Linear-ReLU MLP, sigmoid).

    from vqpress.field import decode_field, render_image_field
    f = decode_field(open("photo.vqp", "rb").read())
    rgb = render_image_field(f, f.extra["height"], f.extra["width"])  # [H, W, 3] float32 in [0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .vqp import VqpFormatError, read_vqp

FIELD_FORMAT = "vqpress-field/1"
HASH_PRIMES = (1, 2654435761, 805459861)
MAX_EVAL_POINTS = 1 << 26


@dataclass(frozen=True)
class DecodedField:
    """A field's arrays: ``levels[l]`` is a dict of float32/int64 arrays by part name
    ("table"; "indices" + "codebook"; or "coeffs" + "basis" + "mean"), ``layers`` the decoder's
    (weight [out, in], bias [out]) pairs per MLP in order. A sparse VQ level also has "active"
    (bool [vertices]) and "rows" (int64 [vertices], the row of each vertex in "indices", -1 for
    vertices without one, whose feature is 0)."""

    config: dict[str, Any]  # the field config (dims, grid, decoder), as the server wrote it
    grid: dict[str, Any]  # geometry: dims, features, combine, resolutions, rows, hashed, storage (, bits)
    levels: list[dict[str, np.ndarray]]
    layers: dict[str, list[tuple[np.ndarray, np.ndarray]]]
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. height, width of an image field
    section_bytes: dict[str, int] = field(default_factory=dict)


_PARTS = {"vq": ("indices", "codebook"), "table": ("table",), "lowrank": ("coeffs", "basis", "mean")}


def decode_field(data: bytes, name: str = "<bytes>") -> DecodedField:
    """Parse a field .vqp. Raises ``VqpFormatError`` when it is not a consistent field file."""
    vqp = read_vqp(data, name)
    man = vqp.manifest
    if vqp.kind != "field" or man.get("format") != FIELD_FORMAT:
        raise VqpFormatError(f"{name}: not a vqpress field (kind {vqp.kind!r})")
    try:
        geo = dict(man["grid"])
        parts = _PARTS[geo["storage"]]
        res = [int(n) for n in geo["resolutions"]]
        dims, k = int(geo["dims"]), int(geo["features"])
        sparse = [bool(v) for v in geo.get("sparse", [False] * len(res))]
        if len(sparse) != len(res):
            raise ValueError("grid.sparse does not have one entry per level")
        levels = []
        for l, n in enumerate(res):
            lv = {p: np.asarray(vqp.sections[f"grid.{l}.{p}"]) for p in parts}
            rows = int(geo["rows"][l])
            if geo["storage"] == "vq":
                lv["indices"] = lv["indices"].astype(np.int64)
                lv["codebook"] = lv["codebook"].astype(np.float32)
                allocated = n**dims
                if sparse[l]:
                    active = np.asarray(vqp.sections[f"grid.{l}.active"]).reshape(-1).astype(bool)
                    if active.shape != (n**dims,):
                        raise ValueError(f"level {l} active mask has {active.size} entries for {n**dims} vertices")
                    lv["active"] = active
                    lv["rows"] = np.where(active, np.cumsum(active) - 1, -1).astype(np.int64)
                    allocated = int(active.sum())
                ok = lv["indices"].shape == (allocated,) and lv["codebook"].shape[1] == k
                ok = ok and int(lv["indices"].max(initial=0)) < lv["codebook"].shape[0]
            elif geo["storage"] == "table":
                lv["table"] = lv["table"].astype(np.float32)
                ok = lv["table"].shape == (rows, k)
            else:
                lv = {p: a.astype(np.float32) for p, a in lv.items()}
                ok = lv["coeffs"].shape[0] == n**dims and lv["basis"].shape == (lv["coeffs"].shape[1], k)
            if not ok:
                raise ValueError(f"level {l} arrays do not match the grid geometry")
            levels.append(lv)
        layers = {
            mlp: [
                (
                    np.asarray(vqp.sections[f"{ln}.weight"], np.float32),
                    np.asarray(vqp.sections[f"{ln}.bias"], np.float32),
                )
                for ln in names
            ]
            for mlp, names in man["layers"].items()
        }
    except (KeyError, TypeError, ValueError) as e:
        raise VqpFormatError(f"{name}: inconsistent field file: {e}") from None
    return DecodedField(
        config=man["config"],
        grid=geo,
        levels=levels,
        layers=layers,
        extra=dict(man.get("extra", {})),
        section_bytes=dict(vqp.section_bytes),
    )


def _level_features(f: DecodedField, l: int, ids: np.ndarray) -> np.ndarray:  # ids [B, 2^d] -> [B, 2^d, k]
    lv = f.levels[l]
    storage = f.grid["storage"]
    if storage == "vq":
        if "rows" in lv:
            rows = lv["rows"][ids]
            feats = lv["codebook"][lv["indices"][np.maximum(rows, 0)]]
            return np.where((rows >= 0)[..., None], feats, np.float32(0.0))
        return lv["codebook"][lv["indices"][ids]]
    if storage == "table":
        return lv["table"][ids]
    return lv["coeffs"][ids] @ lv["basis"] + lv["mean"]


def grid_features(f: DecodedField, x: np.ndarray) -> np.ndarray:  # x [B, d] in [0, 1] -> [B, out]
    """Interpolated, level-combined grid features, as the server's MultiResGrid.forward."""
    dims = int(f.grid["dims"])
    corners_bits = np.arange(1 << dims)
    offs = np.stack([(corners_bits >> j) & 1 for j in range(dims)], -1)  # [2^d, d]
    outs = []
    for l, n in enumerate(int(r) for r in f.grid["resolutions"]):
        p = np.clip(x, 0.0, 1.0).astype(np.float32) * np.float32(n - 1)
        i0 = np.clip(np.floor(p), 0, n - 2).astype(np.int64)
        frac = p - i0.astype(np.float32)
        corners = i0[:, None, :] + offs[None]  # [B, 2^d, d]
        w = np.where(offs[None].astype(bool), frac[:, None, :], np.float32(1.0) - frac[:, None, :]).prod(-1)
        if f.grid["hashed"][l]:
            h = np.zeros(corners.shape[:-1], np.int64)
            for j in range(dims):
                h ^= corners[..., j] * np.int64(HASH_PRIMES[j])
            ids = h & (int(f.grid["rows"][l]) - 1)
        else:
            ids = corners[..., 0].copy()
            stride = 1
            for j in range(1, dims):
                stride *= n
                ids += corners[..., j] * stride
        feats = _level_features(f, l, ids)
        outs.append((feats * w[..., None].astype(np.float32)).sum(1))
    if f.grid["combine"] == "concat":
        return np.concatenate(outs, -1)
    return np.sum(np.stack(outs, 0), 0)


def _mlp(layers: list[tuple[np.ndarray, np.ndarray]], h: np.ndarray) -> np.ndarray:
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


def eval_image_field(f: DecodedField, xy: np.ndarray) -> np.ndarray:  # xy [N, 2] in [0, 1] -> rgb [N, 3]
    """Colours of a 2D image field at points xy (x right, y down, [0, 1]^2; pixel (i, j) is at
    ((j + 0.5) / W, (i + 0.5) / H))."""
    if int(f.config["dims"]) != 2:
        raise ValueError("eval_image_field needs a 2D (image) field")
    xy = np.asarray(xy, dtype=np.float32)
    if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] > MAX_EVAL_POINTS:
        raise ValueError(f"xy must have shape [N, 2] with N <= {MAX_EVAL_POINTS}, got {xy.shape}")
    if not np.isfinite(xy).all():
        raise ValueError("xy contains NaN or inf")
    h = _mlp(f.layers["mlp"], grid_features(f, xy))
    return (1.0 / (1.0 + np.exp(-h))).astype(np.float32)


def render_image_field(f: DecodedField, height: int, width: int, chunk: int = 1 << 16) -> np.ndarray:  # [H, W, 3]
    """Evaluate a 2D image field at every pixel centre of an H x W image."""
    if not (1 <= height and 1 <= width and height * width <= MAX_EVAL_POINTS):
        raise ValueError(f"image size {height}x{width} is empty or too large")
    ys = (np.arange(height, dtype=np.float32) + np.float32(0.5)) / np.float32(height)
    xs = (np.arange(width, dtype=np.float32) + np.float32(0.5)) / np.float32(width)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    xy = np.stack([gx.reshape(-1), gy.reshape(-1)], -1)
    out = np.concatenate([eval_image_field(f, xy[s : s + chunk]) for s in range(0, xy.shape[0], chunk)])
    return out.reshape(height, width, 3)

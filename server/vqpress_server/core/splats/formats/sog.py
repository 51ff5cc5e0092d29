"""PlayCanvas SOG (version 2): read bundled ``.sog``, unbundled ``meta.json`` folders and streamed
LOD sets (``lod-meta.json``); write bundled and unbundled.

Layout: ``meta.json`` plus lossless WebP images, one texel per Gaussian in row-major order
(width ``ceil(sqrt(N) / 4) * 4``, height ``ceil(N / width / 4) * 4``). A bundled ``.sog`` is a zip
of the same files. Values are stored in the PLY's axes.

- ``means_l.webp`` / ``means_u.webp``: low / high byte of a 16-bit fraction per axis (RGB) of
  ``[mins, maxs]`` from meta, in the log space ``sign(x) * ln(|x| + 1)``;
- ``quats.webp``: smallest three of the unit quaternion (w, x, y, z), the largest made positive:
  RGB the other three in order as ``255 * (q * sqrt(2) / 2 + 0.5)``, A = 252 + index of the largest;
- ``scales.webp``: RGB index a 256-entry codebook of log-scales (``scales.codebook``);
- ``sh0.webp``: RGB index a 256-entry codebook of DC coefficients, A = ``sigmoid(opacity) * 255``;
- ``shN_centroids.webp`` / ``shN_labels.webp`` (degree >= 1): a palette of ``shN.count`` SH
  vectors, 64 per row, one texel per coefficient (RGB = codebook indices of the three channels),
  indexing a 256-entry codebook; the labels texture holds each Gaussian's 16-bit palette index
  (R low byte, G high byte).

A streamed set (``lod-meta.json``) names several such SOGs and, per tree node and LOD level, a
range of rows in one of them. Level 0 is the finest; reading a level gathers its ranges in tree
order.

What writing loses: positions keep 16 bits per axis in log space (a step of about 1/65535 of the
log-range near the origin, growing with distance); scales, DC colours and SH coefficients are
replaced by the nearest of 256 values (chosen by k-means), the SH vectors by the nearest of the
palette (k-means, at most 65,536); rotations keep 8 bits per component; opacity 8 bits. The
writer reorders the Gaussians along a Morton curve (``morton_order`` of the positions), as
splat-transform does, so that neighbouring texels hold similar values.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from vqpress.vqp import loads_json

from .... import __version__
from ...budgets import MAX_JSON_DEPTH
from ...errors import ConfigError, FormatError, VqpressInputError
from ...magic import zip_scene_kind
from ...vq.kmeans import assign, kmeans
from ..model import GaussianSplats, num_sh_rest
from ..morton import morton_order

SQRT2 = math.sqrt(2.0)
SH_COEFFS = (0, 3, 8, 15)  # coefficients per channel for 0..3 bands
PALETTE_ROW = 64  # palette entries per row of shN_centroids.webp
MAX_PALETTE = 1 << 16  # labels are 16-bit
MAX_MEMBER_BYTES = 1 << 30  # a bundled member larger than this is refused before reading it
MAX_META_BYTES = 64 << 20
CODEBOOK_FIT_SAMPLE = 1 << 16  # values the 256-entry codebooks are fitted on
OPACITY_EPS = 1e-6  # alpha is clamped to [eps, 1 - eps] before the logit, as splat-transform does


@dataclass(frozen=True)
class SogConfig:
    """How ``encode_sog`` builds SOG's codebooks and SH palette (vqpress's k-means for all)."""

    sh_palette: int = (
        0  # SH palette entries (<= 65536); 0 = splat-transform's size for N: min(64, 2^floor(log2(N / 1024))) * 1024
    )
    codebook_iters: int = 10  # Lloyd iterations for the 256-entry codebooks (scales, sh0, shN values)
    palette_iters: int = 10  # Lloyd iterations for the SH palette
    seed: int = 0  # k-means++ seed

    def __post_init__(self) -> None:
        if not 0 <= self.sh_palette <= MAX_PALETTE:
            raise ConfigError(f"sh_palette must be in 0..{MAX_PALETTE} (0 = automatic), got {self.sh_palette}")
        if self.codebook_iters < 0 or self.palette_iters < 0:
            raise ConfigError("k-means iterations must be >= 0")

    def palette_size(self, n: int) -> int:
        if self.sh_palette:
            return self.sh_palette
        if n < 1024:
            return max(1, n)
        return min(64, 2 ** int(math.floor(math.log2(n / 1024)))) * 1024


# -- reading ------------------------------------------------------------------------------------


class _Files:
    """The files of one SOG: a zip (bundled) or a folder (unbundled)."""

    def __init__(self, path: Path, base: Path | None = None, zf: zipfile.ZipFile | None = None) -> None:
        self.path, self.base, self.zf = path, base, zf

    def read(self, name: str, limit: int = MAX_MEMBER_BYTES) -> bytes:
        if not isinstance(name, str) or not name or "\\" in name or name.startswith("/") or ".." in name.split("/"):
            raise FormatError(self.path, f"meta.json names an unsafe file {name!r}")
        if self.zf is not None:
            try:
                info = self.zf.getinfo(name)
            except KeyError:
                raise FormatError(self.path, f"the bundle has no '{name}'") from None
            if info.file_size > limit:
                raise FormatError(
                    self.path, f"'{name}' claims {info.file_size:,} bytes, more than the {limit:,} allowed"
                )
            try:
                return self.zf.read(info)
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise FormatError(self.path, f"'{name}' in the bundle is corrupt: {e}") from None
        assert self.base is not None
        p = self.base / name
        try:
            if p.stat().st_size > limit:
                raise FormatError(p, f"{p.stat().st_size:,} bytes is more than the {limit:,} allowed")
            return p.read_bytes()
        except FileNotFoundError:
            raise FormatError(self.path, f"'{name}' named by meta.json is missing") from None
        except OSError as e:
            raise FormatError(p, f"cannot read the file: {e.strerror or e}") from None


def _webp(files: _Files, name: str, min_pixels: int, max_pixels: int) -> np.ndarray:  # [H, W, 4] uint8
    data = files.read(name)
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "WEBP":
                raise FormatError(files.path, f"'{name}' is {im.format}, not WebP")
            w, h = im.size
            if w * h < min_pixels:
                raise FormatError(files.path, f"'{name}' is {w}x{h}: too small for {min_pixels:,} texels")
            if w * h > max_pixels:
                raise FormatError(files.path, f"'{name}' is {w}x{h}: larger than {max_pixels:,} texels can need")
            return np.asarray(im.convert("RGBA"))
    except FormatError:
        raise
    except Exception as e:  # Pillow raises many types for a broken image
        raise FormatError(files.path, f"'{name}' is not a readable WebP image: {e}") from None


def _num(meta: Any, path: Path, where: str, length: int | None = None) -> np.ndarray:
    try:
        a = np.asarray(meta, dtype=np.float64)
    except (TypeError, ValueError):
        raise FormatError(path, f"meta.json '{where}' must be a list of numbers") from None
    if a.ndim != 1 or (length is not None and a.shape[0] != length) or not np.isfinite(a).all():
        want = f"{length} finite numbers" if length is not None else "a list of finite numbers"
        raise FormatError(path, f"meta.json '{where}' must be {want}")
    return a


def _field(meta: dict[str, Any], path: Path, key: str) -> dict[str, Any]:
    v = meta.get(key)
    if not isinstance(v, dict):
        raise FormatError(path, f"meta.json lacks the '{key}' object")
    files = v.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise FormatError(path, f"meta.json '{key}.files' must be a list of file names")
    return v


def _codebook(meta: dict[str, Any], path: Path, key: str) -> np.ndarray:
    cb = _num(meta.get("codebook"), path, f"{key}.codebook")
    if not 1 <= cb.shape[0] <= 256:
        raise FormatError(path, f"meta.json '{key}.codebook' has {cb.shape[0]} entries; 1..256 are allowed")
    return cb


def _lookup(cb: np.ndarray, idx: np.ndarray, path: Path, what: str) -> np.ndarray:
    if idx.size and int(idx.max()) >= cb.shape[0]:
        raise FormatError(path, f"{what} indexes entry {int(idx.max())} of a {cb.shape[0]}-entry codebook")
    return cb[idx]


def _parse_meta(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        meta = loads_json(raw, MAX_JSON_DEPTH)
    except (UnicodeDecodeError, ValueError) as e:  # invalid, or nested deeper than MAX_JSON_DEPTH
        raise FormatError(path, f"meta.json is not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise FormatError(path, "meta.json must hold a JSON object")
    return meta


def _decode(files: _Files, meta: dict[str, Any]) -> GaussianSplats:
    path = files.path
    version = meta.get("version")
    if version != 2:
        raise FormatError(
            path, f"SOG version {version!r} is not supported (version 2 is; re-save it with splat-transform)"
        )
    N = meta.get("count")
    if isinstance(N, bool) or not isinstance(N, int) or N < 0:
        raise FormatError(path, f"meta.json 'count' must be a non-negative integer, got {N!r}")
    lo_px, hi_px = N, 2 * N + (1 << 16)  # the writer's layout needs N <= w * h < 2 N + 64 K

    def tex(name: str) -> np.ndarray:  # [N, 4] uint8, the first N texels
        return _webp(files, name, lo_px, hi_px).reshape(-1, 4)[:N].astype(np.int64)

    m = _field(meta, path, "means")
    if len(m["files"]) != 2:
        raise FormatError(path, "meta.json 'means.files' must name two images (low and high bytes)")
    mins, maxs = _num(m.get("mins"), path, "means.mins", 3), _num(m.get("maxs"), path, "means.maxs", 3)
    frac = (tex(m["files"][0])[:, :3] | (tex(m["files"][1])[:, :3] << 8)) / 65535.0
    lt = mins + (maxs - mins) * frac
    means = np.sign(lt) * np.expm1(np.abs(lt))

    qt = tex(_field(meta, path, "quats")["files"][0])
    tag = qt[:, 3]
    largest = np.clip(tag - 252, 0, 3)
    abc = (qt[:, :3] / 255.0 * 2.0 - 1.0) / SQRT2
    quats = np.zeros((N, 4))
    slot = np.arange(4)[None, :]
    src = np.clip(slot - (slot > largest[:, None]), 0, 2)  # the three stored fill the other slots in order
    quats[:] = np.take_along_axis(abc, src, axis=1)
    quats[np.arange(N), largest] = np.sqrt(np.maximum(0.0, 1.0 - (abc**2).sum(axis=1)))
    quats[(tag < 252) | (tag > 255)] = (1.0, 0.0, 0.0, 0.0)  # as splat-transform: a bad tag is the identity

    s = _field(meta, path, "scales")
    scales = _lookup(_codebook(s, path, "scales"), tex(s["files"][0])[:, :3], path, "scales.webp")
    c = _field(meta, path, "sh0")
    c0 = tex(c["files"][0])
    sh0 = _lookup(_codebook(c, path, "sh0"), c0[:, :3], path, "sh0.webp")
    alpha = np.clip(c0[:, 3] / 255.0, OPACITY_EPS, 1.0 - OPACITY_EPS)
    opacities = np.log(alpha) - np.log1p(-alpha)

    shN = np.zeros((N, 0, 3))
    if "shN" in meta:
        sn = _field(meta, path, "shN")
        bands = sn.get("bands")
        if bands not in (1, 2, 3):
            raise FormatError(path, f"meta.json 'shN.bands' must be 1, 2 or 3, got {bands!r}")
        K = SH_COEFFS[bands]
        count = sn.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= MAX_PALETTE:
            raise FormatError(path, f"meta.json 'shN.count' must be an integer in 1..{MAX_PALETTE}, got {count!r}")
        if len(sn["files"]) != 2:
            raise FormatError(path, "meta.json 'shN.files' must name the centroids and the labels images")
        cb = _codebook(sn, path, "shN")
        rows = -(-count // PALETTE_ROW)
        cen = _webp(files, sn["files"][0], 1, PALETTE_ROW * K * (rows + 1))
        if cen.shape[1] != PALETTE_ROW * K:
            raise FormatError(
                path, f"shN centroids are {cen.shape[1]} texels wide; {bands} bands need {PALETTE_ROW * K}"
            )
        pal_idx = cen.reshape(-1, K, 4)[:, :, :3].astype(np.int64)  # [rows * 64, K, 3]
        palette = _lookup(cb, pal_idx, path, "shN_centroids.webp")
        lab = tex(sn["files"][1])
        labels = lab[:, 0] | (lab[:, 1] << 8)
        ok = labels < min(count, palette.shape[0])
        shN = np.zeros((N, K, 3))
        shN[ok] = palette[labels[ok]]

    return GaussianSplats.from_numpy(
        means=means, quats=quats, scales=scales, opacities=opacities, sh0=sh0.reshape(N, 1, 3), shN=shN,
        meta={"source_format": "sog", "source_file": path.name},
    )  # fmt: skip


def _open(path: Path) -> tuple[_Files, dict[str, Any]]:
    if path.is_dir():
        path = path / "meta.json"
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise FormatError(path, f"not a readable .sog bundle (zip): {e}") from None
        files = _Files(path, zf=zf)
        return files, _parse_meta(path, files.read("meta.json", MAX_META_BYTES))
    files = _Files(path, base=path.parent)
    return files, _parse_meta(path, files.read(path.name, MAX_META_BYTES))


def is_lod_meta(meta: dict[str, Any]) -> bool:
    return "lodLevels" in meta and "tree" in meta


def _lod_ranges(path: Path, meta: dict[str, Any], level: int) -> tuple[list[str], list[tuple[int, int, int]]]:
    names = meta.get("filenames")
    levels = meta.get("lodLevels")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise FormatError(path, "lod-meta.json 'filenames' must be a list of file names")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise FormatError(path, f"lod-meta.json 'lodLevels' must be a positive integer, got {levels!r}")
    if not 0 <= level < levels:
        raise VqpressInputError(
            f"{path}: LOD level {level} does not exist; this set has levels 0..{levels - 1} (0 is the finest)"
        )
    out: list[tuple[int, int, int]] = []
    stack, seen = [meta["tree"]], 0
    while stack:
        node = stack.pop()
        seen += 1
        if not isinstance(node, dict) or seen > 1 << 20:
            raise FormatError(path, "lod-meta.json 'tree' is malformed")
        kids = node.get("children")
        if isinstance(kids, list):
            stack.extend(reversed(kids))
        entry = (node.get("lods") or {}).get(str(level)) if isinstance(node.get("lods"), dict) else None
        if entry is None:
            continue
        try:
            f, off, cnt = int(entry["file"]), int(entry["offset"]), int(entry["count"])
        except (KeyError, TypeError, ValueError):
            raise FormatError(path, f"lod-meta.json has a malformed range for level {level}: {entry!r}") from None
        if not (0 <= f < len(names)) or off < 0 or cnt < 0:
            raise FormatError(path, f"lod-meta.json range {entry!r} names no file or a negative range")
        out.append((f, off, cnt))
    return names, out


def read_sog(path: str | os.PathLike[str], lod: int = 0) -> GaussianSplats:
    """Read a SOG: a bundled ``.sog``, an unbundled ``meta.json`` (or its folder), or a streamed
    ``lod-meta.json`` (or its folder) at LOD level ``lod`` (0, the finest, by default)."""
    path = Path(path)
    if path.is_dir() and (path / "lod-meta.json").is_file() and not (path / "meta.json").is_file():
        path = path / "lod-meta.json"
    files, meta = _open(path)
    try:
        if not is_lod_meta(meta):
            if lod:
                raise VqpressInputError(
                    f"{path}: a single SOG has no LOD level {lod}; only streamed sets (lod-meta.json) do"
                )
            return _decode(files, meta)
        names, ranges = _lod_ranges(files.path, meta, lod)
        base = files.path.parent
        decoded: dict[int, GaussianSplats] = {}
        parts = []
        for f, off, cnt in ranges:
            if f not in decoded:
                sub = base / names[f]
                if base.resolve() not in sub.resolve().parents:
                    raise FormatError(files.path, f"lod-meta.json names a file outside its folder: {names[f]!r}")
                decoded[f] = read_sog(sub)
            s = decoded[f]
            if off + cnt > s.num_gaussians:
                raise FormatError(
                    files.path, f"range {off}+{cnt} exceeds the {s.num_gaussians:,} Gaussians of {names[f]}"
                )
            parts.append(s.index(torch.arange(off, off + cnt)))
        if not parts:
            raise FormatError(files.path, f"LOD level {lod} has no Gaussians")
        keys = ("means", "quats", "scales", "opacities", "sh0", "shN")
        out = GaussianSplats(*(torch.cat([getattr(p, k) for p in parts]) for k in keys))
        out.meta.update(source_format="sog", source_file=files.path.name, sog_lod=str(lod))
        out.meta["sog_lod_levels"] = str(meta["lodLevels"])
        return out
    finally:
        if files.zf is not None:
            files.zf.close()


def sniff_sog_zip(path: Path) -> bool:
    """Whether a zip file is a bundled SOG (it holds meta.json), as opposed to an .npz."""
    return zip_scene_kind(path) == "sog"


# -- writing ------------------------------------------------------------------------------------


def _webp_lossless(rgba: np.ndarray) -> bytes:  # [H, W, 4] uint8 -> lossless WebP bytes
    bio = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(
        bio, format="WEBP", lossless=True, exact=True, quality=100, method=4
    )
    return bio.getvalue()


def _quantize_1d(values: np.ndarray, k: int, iters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A sorted codebook of at most ``k`` values and each value's index, by vqpress's k-means
    (fitted on at most ``CODEBOOK_FIT_SAMPLE`` of the values, drawn with ``seed``; all are assigned)."""
    flat = torch.from_numpy(values.reshape(-1, 1).astype(np.float32))  # [M, 1]
    fit = flat
    if flat.shape[0] > CODEBOOK_FIT_SAMPLE:
        gen = torch.Generator().manual_seed(seed)
        fit = flat[torch.randperm(flat.shape[0], generator=gen)[:CODEBOOK_FIT_SAMPLE]]
    cb = kmeans(fit, k, iters=iters, seed=seed).centroids[:, 0].sort().values  # [k'] ascending
    labels = assign(flat, cb[:, None])
    return cb.double().numpy(), labels.numpy().reshape(values.shape).astype(np.uint8)


def _layout(n: int) -> tuple[int, int]:
    w = max(4, math.ceil(math.sqrt(n) / 4) * 4)
    return w, max(4, math.ceil(n / w / 4) * 4)


def encode_sog_files(splats: GaussianSplats, config: SogConfig = SogConfig()) -> dict[str, bytes]:
    """The files of a SOG for ``splats``: ``meta.json`` and the WebP images (module doc)."""
    N = splats.num_gaussians
    if N == 0:
        raise VqpressInputError("cannot write an empty scene as SOG: it has no Gaussians")
    w, h = _layout(N)
    if w > 16383 or h > 16383:
        raise VqpressInputError(f"cannot write {N:,} Gaussians as one SOG: WebP images stop at 16383 x 16383")
    s = splats.index(morton_order(splats.means))
    a = {k: v.astype(np.float64) for k, v in s.numpy().items()}

    def image(rgba: np.ndarray) -> bytes:  # [N, 4] -> w x h texels, the rest zero
        buf = np.zeros((w * h, 4), np.uint8)
        buf[:N] = rgba
        return _webp_lossless(buf.reshape(h, w, 4))

    out: dict[str, bytes] = {}
    lt = np.sign(a["means"]) * np.log1p(np.abs(a["means"]))
    mins, maxs = lt.min(axis=0), lt.max(axis=0)
    span = np.where(maxs > mins, maxs - mins, 1.0)
    q16 = np.clip(np.rint((lt - mins) / span * 65535.0), 0, 65535).astype(np.int64)
    ones = np.full((N, 1), 255, np.int64)
    out["means_l.webp"] = image(np.concatenate([q16 & 0xFF, ones], axis=1))
    out["means_u.webp"] = image(np.concatenate([q16 >> 8, ones], axis=1))

    q = a["quats"]
    n = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(n > 0, q / np.where(n > 0, n, 1.0), np.array([1.0, 0, 0, 0]))
    largest = np.abs(q).argmax(axis=1)
    q = q * np.where(q[np.arange(N), largest] < 0, -1.0, 1.0)[:, None]
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    abc = np.take_along_axis(q, others, axis=1)
    qt = np.clip(np.rint(255.0 * (abc * SQRT2 * 0.5 + 0.5)), 0, 255).astype(np.int64)
    out["quats.webp"] = image(np.concatenate([qt, (252 + largest)[:, None]], axis=1))

    scb, sidx = _quantize_1d(a["scales"], 256, config.codebook_iters, config.seed)
    out["scales.webp"] = image(np.concatenate([sidx, ones], axis=1))
    ccb, cidx = _quantize_1d(a["sh0"].reshape(N, 3), 256, config.codebook_iters, config.seed)
    alpha = np.clip(np.rint(255.0 / (1.0 + np.exp(-a["opacities"]))), 0, 255).astype(np.int64)
    out["sh0.webp"] = image(np.concatenate([cidx, alpha[:, None]], axis=1))

    meta: dict[str, Any] = {
        "version": 2,
        "asset": {"generator": f"vqpress {__version__}"},
        "count": N,
        "means": {"mins": mins.tolist(), "maxs": maxs.tolist(), "files": ["means_l.webp", "means_u.webp"]},
        "scales": {"codebook": scb.tolist(), "files": ["scales.webp"]},
        "quats": {"files": ["quats.webp"]},
        "sh0": {"codebook": ccb.tolist(), "files": ["sh0.webp"]},
    }
    K = a["shN"].shape[1]
    if K:
        bands = s.sh_degree
        assert K == num_sh_rest(bands) == SH_COEFFS[bands], K
        # the palette k-means runs where the scene is: 65,536 entries of 45 values over a few hundred
        # thousand Gaussians take hours on a CPU and seconds on a GPU
        flat = torch.from_numpy(a["shN"].reshape(N, K * 3).astype(np.float32)).to(splats.device)  # [N, K * 3]
        res = kmeans(flat, min(config.palette_size(N), MAX_PALETTE), iters=config.palette_iters, seed=config.seed)
        P = res.centroids.shape[0]
        pcb, pidx = _quantize_1d(
            res.centroids.double().cpu().numpy().reshape(P, K, 3), 256, config.codebook_iters, config.seed
        )
        rows = -(-P // PALETTE_ROW)
        cen = np.zeros((rows * PALETTE_ROW, K, 4), np.uint8)
        cen[:P, :, :3] = pidx
        cen[:P, :, 3] = 255
        out["shN_centroids.webp"] = _webp_lossless(cen.reshape(rows, PALETTE_ROW * K, 4))
        lab = res.labels.cpu().numpy().astype(np.int64)
        out["shN_labels.webp"] = image(
            np.stack([lab & 0xFF, lab >> 8, np.zeros_like(lab), np.full_like(lab, 255)], axis=1)
        )
        files = ["shN_centroids.webp", "shN_labels.webp"]
        meta["shN"] = {"count": P, "bands": bands, "codebook": pcb.tolist(), "files": files}
    out["meta.json"] = json.dumps(meta).encode()
    return out


def encode_sog(splats: GaussianSplats, config: SogConfig = SogConfig()) -> bytes:
    """A bundled ``.sog``: the files of ``encode_sog_files`` in a zip (stored: WebP is compressed)."""
    files = encode_sog_files(splats, config)
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in ["meta.json", *sorted(k for k in files if k != "meta.json")]:
            zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(zi, files[name])
    return bio.getvalue()

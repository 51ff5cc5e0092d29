"""``.npz``: ``np.savez`` of the six arrays ``means quats scales opacities sh0 shN`` (float).

This is how inline tensors sent over gRPC are stored. Shapes follow ``GaussianSplats``:
means [N, 3], quats [N, 4] (w, x, y, z), scales [N, 3] (log), opacities [N] (logit), sh0 [N, 1, 3]
(``[N, 3]`` is accepted), shN [N, K, 3] with K = (d+1)^2 - 1 (may be absent for degree 0).
Read with ``allow_pickle=False``; every member's shape and size is checked against the archive
before it is decompressed.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from ...budgets import check_decoded
from ...errors import FormatError
from ..model import GaussianSplats, num_sh_rest

KEYS = ("means", "quats", "scales", "opacities", "sh0", "shN")
MAX_INFLATE_RATIO = 1100  # deflate cannot expand more than ~1032:1


def _member_shape(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
    name = info.filename[:-4]
    if info.file_size > MAX_INFLATE_RATIO * max(info.compress_size, 1) + 4096:
        raise FormatError(path, f"member '{name}' claims {info.file_size:,} bytes from {info.compress_size:,}")
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except ValueError as e:
            raise FormatError(path, f"member '{name}' is not a .npy array: {e}") from None
    if dtype.hasobject:
        raise FormatError(path, f"member '{name}' holds Python objects; only numeric arrays are accepted")
    if dtype.kind not in "fiu":
        raise FormatError(path, f"member '{name}' has dtype {dtype}; expected a float array")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if need > info.file_size:
        raise FormatError(path, f"member '{name}' claims shape {shape} ({need:,} B) but holds {info.file_size:,} B")
    return tuple(int(s) for s in shape), dtype


def read_npz(path: str | os.PathLike[str]) -> GaussianSplats:
    """Read the ``np.savez`` layout above into ``GaussianSplats`` (no repair)."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise FormatError(path, "the file is empty")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise FormatError(path, f"not an npz (zip) archive: {e}") from None
    with zf:
        infos = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
        missing = [k for k in KEYS[:5] if k not in infos]
        if missing:
            raise FormatError(path, f"npz lacks the arrays {missing}; it must hold {list(KEYS)}")
        shapes = {k: _member_shape(path, zf, infos[k])[0] for k in KEYS if k in infos}
        N = shapes["means"][0] if shapes["means"] else -1
        want = {"means": (N, 3), "quats": (N, 4), "scales": (N, 3), "opacities": (N,)}
        for k, s in want.items():
            if shapes[k] != s:
                raise FormatError(path, f"'{k}' has shape {shapes[k]}, expected {s}")
        if shapes["sh0"] not in ((N, 1, 3), (N, 3)):
            raise FormatError(path, f"'sh0' has shape {shapes['sh0']}, expected ({N}, 1, 3)")
        if "shN" in shapes:
            s = shapes["shN"]
            if len(s) != 3 or s[0] != N or s[2] != 3 or s[1] not in [num_sh_rest(d) for d in range(4)]:
                raise FormatError(path, f"'shN' has shape {s}, expected ({N}, K, 3) with K in 0, 3, 8, 15")

        # Each member is within deflate's ratio; all of them together must be within the decode budget.
        declared = sum(infos[k].file_size for k in shapes)
        check_decoded(path, f"the npz arrays ({N:,} Gaussians)", declared, path.stat().st_size)

        def load(k: str) -> np.ndarray:
            with zf.open(infos[k]) as f:
                return np.lib.format.read_array(f, allow_pickle=False)

        arrs = {k: load(k) for k in shapes}
    return GaussianSplats.from_numpy(
        means=arrs["means"],
        quats=arrs["quats"],
        scales=arrs["scales"],
        opacities=arrs["opacities"],
        sh0=arrs["sh0"].reshape(N, 1, 3),
        shN=arrs.get("shN"),
        meta={"source_format": "npz", "source_file": path.name},
    )


def encode_npz(splats: GaussianSplats) -> bytes:
    """The bytes of an uncompressed ``np.savez`` archive of the six float32 arrays."""
    buf = io.BytesIO()
    np.savez(buf, **splats.numpy())
    return buf.getvalue()

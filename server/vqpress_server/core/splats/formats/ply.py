"""The INRIA 3DGS PLY: one ``vertex`` element of float32 properties, binary little-endian.

Properties (any order; extra properties such as ``nx ny nz`` or per-vertex ids are ignored):

- ``x y z``                     position
- ``f_dc_0 f_dc_1 f_dc_2``      SH DC coefficient per channel
- ``f_rest_0 .. f_rest_{3K-1}`` the other SH coefficients, **channel-major**: all K of red, then green,
                                then blue, so ``f_rest_{c*K + j}`` is ``shN[:, j, c]``; K = (d+1)^2 - 1
- ``opacity``                   logit of the opacity
- ``scale_0 scale_1 scale_2``   log of the standard deviations
- ``rot_0 .. rot_3``            quaternion (w, x, y, z), not necessarily normalized

Any scalar property type is accepted on read and converted to float32. The writer emits float32
with ``nx ny nz`` = 0, as the reference implementation does, so writing what was read is lossless.
Values are passed through unchanged: non-finite values are not repaired here (see ``load_scene``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import FormatError
from ..model import GaussianSplats, num_sh_rest
from ._plyheader import parse_header, read_element

REQUIRED = (
    ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    + [f"scale_{i}" for i in range(3)]
    + [f"rot_{i}" for i in range(4)]
)
_VALID_REST = {3 * num_sh_rest(d): d for d in range(4)}  # f_rest count -> SH degree


def _rest_names(names: list[str], path: Path) -> list[str]:
    rest = [n for n in names if n.startswith("f_rest_")]
    if len(rest) not in _VALID_REST:
        raise FormatError(
            path,
            f"{len(rest)} f_rest properties is no SH layout (expected one of {sorted(_VALID_REST)} "
            "for SH degree 0..3: 3 channels x ((d+1)^2 - 1) coefficients)",
        )
    want = [f"f_rest_{i}" for i in range(len(rest))]
    if sorted(rest, key=lambda n: (len(n), n)) != want:
        raise FormatError(path, f"f_rest properties are not numbered 0..{len(rest) - 1}: {rest[:8]}...")
    return want


def read_ply(path: str | os.PathLike[str]) -> GaussianSplats:
    """Read an INRIA binary little-endian PLY into ``GaussianSplats`` (float32, no repair)."""
    path = Path(path)
    hdr = parse_header(path)
    vert = hdr.element("vertex")
    if vert is None:
        raise FormatError(path, "no 'vertex' element: this PLY holds no Gaussians")
    names = vert.names()
    if "packed_position" in names:
        raise FormatError(path, "this is a PlayCanvas compressed PLY; read it with fmt='compressed_ply'")
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise FormatError(
            path,
            f"vertex element lacks the 3DGS properties {missing}; found {names[:20]}"
            + (" ..." if len(names) > 20 else ""),
        )
    rest = _rest_names(names, path)
    N = vert.count
    if all(np.dtype(t) == np.dtype("<f4") for _, t in vert.properties):
        # The usual file: every property float32. Read the rows as one [N, P] matrix and take
        # column blocks (a 3M-Gaussian scene reads in a fraction of the per-column time).
        P = len(names)
        m = np.fromfile(path, dtype="<f4", count=N * P, offset=hdr.offset_of("vertex"))
        if m.size != N * P:  # the file changed under us
            raise FormatError(path, f"element 'vertex': expected {N} rows, read {m.size // max(P, 1)}")
        m = m.reshape(N, P)
        col = {n: i for i, n in enumerate(names)}

        def cols(ns: list[str]) -> np.ndarray:
            idx = [col[n] for n in ns]
            if idx == list(range(idx[0], idx[0] + len(idx))):
                return np.ascontiguousarray(m[:, idx[0] : idx[0] + len(idx)], dtype=np.float32)
            return np.ascontiguousarray(m[:, idx], dtype=np.float32)

    else:
        v = read_element(path, hdr, "vertex")

        def cols(ns: list[str]) -> np.ndarray:
            out = np.empty((N, len(ns)), np.float32)
            for i, n in enumerate(ns):
                out[:, i] = v[n]
            return out

    K = len(rest) // 3
    shN = cols(rest).reshape(N, 3, K).transpose(0, 2, 1) if K else np.zeros((N, 0, 3), np.float32)
    return GaussianSplats.from_numpy(
        means=cols(["x", "y", "z"]),
        quats=cols([f"rot_{i}" for i in range(4)]),
        scales=cols([f"scale_{i}" for i in range(3)]),
        opacities=cols(["opacity"])[:, 0],
        sh0=cols(["f_dc_0", "f_dc_1", "f_dc_2"]).reshape(N, 1, 3),
        shN=shN,
        meta={"source_format": "ply", "source_file": path.name},
    )


def ply_property_names(sh_degree: int) -> list[str]:
    """The property order the writer uses (the reference 3DGS order)."""
    k3 = 3 * num_sh_rest(sh_degree)
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(k3)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def encode_ply(splats: GaussianSplats) -> bytes:
    """The bytes of an INRIA binary little-endian PLY holding ``splats`` (float32)."""
    a = splats.numpy()
    N = splats.num_gaussians
    K = a["shN"].shape[1]
    names = ply_property_names(splats.sh_degree)
    body = np.empty((N, len(names)), "<f4")
    body[:, 0:3] = a["means"]
    body[:, 3:6] = 0.0
    body[:, 6:9] = a["sh0"].reshape(N, 3)
    body[:, 9 : 9 + 3 * K] = a["shN"].transpose(0, 2, 1).reshape(N, 3 * K)  # channel-major
    o = 9 + 3 * K
    body[:, o] = a["opacities"]
    body[:, o + 1 : o + 4] = a["scales"]
    body[:, o + 4 : o + 8] = a["quats"]
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {N}\n" + "".join(f"property float {n}\n" for n in names) + "end_header\n"
    )
    return header.encode("ascii") + body.tobytes()

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

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


def read_ply(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> GaussianSplats:
    """Read an INRIA binary little-endian PLY into ``GaussianSplats`` (float32, no repair) on ``device``.

    The usual file (every property float32) is read in chunks of rows straight into where its
    values go: on the CPU, each chunk into a reused buffer and from there into the six arrays (one
    copy, the SH rest put coefficient-major on the way); for CUDA, each chunk into pinned memory and
    from there asynchronously into one device matrix that is split on the device. Chunks are read
    by a few threads side by side (``READ_THREADS``). Other property types go through a structured
    array on the CPU.
    """
    path = Path(path)
    dev = torch.device(device)
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
    K = len(rest) // 3
    col = {n: i for i, n in enumerate(names)}
    blocks = {  # attribute -> the columns it takes, in order
        "means": [col[n] for n in ("x", "y", "z")],
        "quats": [col[f"rot_{i}"] for i in range(4)],
        "scales": [col[f"scale_{i}"] for i in range(3)],
        "opacities": [col["opacity"]],
        "sh0": [col[f"f_dc_{i}"] for i in range(3)],
        "shN": [col[n] for n in rest],
    }
    meta = {"source_format": "ply", "source_file": path.name}
    if all(np.dtype(t) == np.dtype("<f4") for _, t in vert.properties):
        offset = hdr.offset_of("vertex")
        if dev.type == "cuda":
            arrays = _read_f32_cuda(path, offset, N, len(names), blocks, K, dev)
        else:
            arrays = _read_f32_cpu(path, offset, N, len(names), blocks, K)
        return GaussianSplats(**arrays, meta=meta).to(dev)
    v = read_element(path, hdr, "vertex")

    def cols(ns: list[int]) -> np.ndarray:
        out = np.empty((N, len(ns)), np.float32)
        for i, c in enumerate(ns):
            out[:, i] = v[names[c]]
        return out

    shN = cols(blocks["shN"]).reshape(N, 3, K).transpose(0, 2, 1) if K else np.zeros((N, 0, 3), np.float32)
    return GaussianSplats.from_numpy(
        means=cols(blocks["means"]),
        quats=cols(blocks["quats"]),
        scales=cols(blocks["scales"]),
        opacities=cols(blocks["opacities"])[:, 0],
        sh0=cols(blocks["sh0"]).reshape(N, 1, 3),
        shN=shN,
        meta=meta,
    ).to(dev)


READ_CHUNK_BYTES = 8 << 20  # rows read per chunk (a whole number of rows, at least one)
READ_THREADS = 4  # chunks read side by side, by at most this many threads (and CPU cores)
_PARALLEL_READ_BYTES = 32 << 20  # smaller bodies are read by one thread


def _plan_chunks(N: int, row_bytes: int) -> tuple[int, list[list[tuple[int, int]]]]:
    """(rows per chunk, per thread the [row0, row1) ranges it reads): contiguous stretches."""
    rows = max(1, READ_CHUNK_BYTES // row_bytes)
    chunks = [(r, min(r + rows, N)) for r in range(0, N, rows)]
    nthreads = 1 if N * row_bytes < _PARALLEL_READ_BYTES else max(1, min(READ_THREADS, os.cpu_count() or 1))
    nthreads = min(nthreads, len(chunks)) or 1
    per = -(-len(chunks) // nthreads)
    return rows, [chunks[i * per : (i + 1) * per] for i in range(nthreads) if chunks[i * per : (i + 1) * per]]


def _pread_exact(fd: int, buf: np.ndarray, offset: int, path: Path, row0: int, rows: int) -> None:
    """Fill ``buf`` (bytes viewed as uint8) from ``offset``; a short read is a file that changed."""
    view = memoryview(buf).cast("B")
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n <= 0:
            raise FormatError(
                path, f"element 'vertex': the file ended in rows {row0:,}..{row0 + rows:,} (it changed while read)"
            )
        got += n


def _run_threads(fn: Callable[[list[tuple[int, int]], int], None], plan: list[list[tuple[int, int]]]) -> None:
    if len(plan) <= 1:
        for part in plan:  # none: an empty element
            fn(part, 0)
        return
    with ThreadPoolExecutor(max_workers=len(plan), thread_name_prefix="ply-read") as pool:
        for f in [pool.submit(fn, part, i) for i, part in enumerate(plan)]:
            f.result()


def _block_slices(blocks: dict[str, list[int]]) -> dict[str, slice | list[int]]:
    """A block of consecutive columns as a slice (a view), others as a list (a gather)."""
    out: dict[str, slice | list[int]] = {}
    for k, idx in blocks.items():
        contiguous = bool(idx) and idx == list(range(idx[0], idx[0] + len(idx)))
        out[k] = slice(idx[0], idx[0] + len(idx)) if contiguous else idx
    return out


def _read_f32_cpu(
    path: Path, offset: int, N: int, P: int, blocks: dict[str, list[int]], K: int
) -> dict[str, torch.Tensor]:
    out = {
        "means": torch.empty(N, 3),
        "quats": torch.empty(N, 4),
        "scales": torch.empty(N, 3),
        "opacities": torch.empty(N),
        "sh0": torch.empty(N, 1, 3),
        "shN": torch.empty(N, K, 3),
    }
    dst = {
        "means": out["means"].numpy(),
        "quats": out["quats"].numpy(),
        "scales": out["scales"].numpy(),
        "opacities": out["opacities"].numpy().reshape(N, 1),
        "sh0": out["sh0"].numpy().reshape(N, 3),
        "shN": out["shN"].numpy(),
    }
    cols = _block_slices(blocks)
    rows, plan = _plan_chunks(N, 4 * P)
    fd = os.open(path, os.O_RDONLY)
    try:

        def work(part: list[tuple[int, int]], _: int) -> None:
            buf = np.empty((rows, P), "<f4")
            for r0, r1 in part:
                b = buf[: r1 - r0]
                _pread_exact(fd, b, offset + 4 * P * r0, path, r0, r1 - r0)
                for k, c in cols.items():
                    if k == "shN":  # channel-major in the file, coefficient-major in memory
                        dst[k][r0:r1] = b[:, c].reshape(r1 - r0, 3, K).transpose(0, 2, 1)
                    else:
                        dst[k][r0:r1] = b[:, c]

        _run_threads(work, plan)
    finally:
        os.close(fd)
    return out


def _read_f32_cuda(
    path: Path, offset: int, N: int, P: int, blocks: dict[str, list[int]], K: int, dev: torch.device
) -> dict[str, torch.Tensor]:
    m = torch.empty(N, P, device=dev)  # the rows as in the file
    rows, plan = _plan_chunks(N, 4 * P)
    fd = os.open(path, os.O_RDONLY)
    try:

        def work(part: list[tuple[int, int]], _: int) -> None:
            stream = torch.cuda.Stream(dev)
            staging = [torch.empty(rows, P, pin_memory=True) for _ in range(min(2, len(part)))]
            done: list[torch.cuda.Event | None] = [None] * len(staging)
            for j, (r0, r1) in enumerate(part):
                s = j % len(staging)
                prev = done[s]
                if prev is not None:
                    prev.synchronize()  # its previous copy has left the buffer
                host = staging[s][: r1 - r0]
                _pread_exact(fd, host.numpy(), offset + 4 * P * r0, path, r0, r1 - r0)
                with torch.cuda.stream(stream):
                    m[r0:r1].copy_(host, non_blocking=True)
                    ev = torch.cuda.Event()
                    ev.record(stream)
                done[s] = ev
            stream.synchronize()

        _run_threads(work, plan)
    finally:
        os.close(fd)
    ix = {k: torch.tensor(v, dtype=torch.long, device=dev) for k, v in blocks.items()}

    def take(k: str) -> torch.Tensor:
        idx = blocks[k]
        if idx and idx == list(range(idx[0], idx[0] + len(idx))):
            return m[:, idx[0] : idx[0] + len(idx)].contiguous()
        return m.index_select(1, ix[k])

    shN = take("shN").reshape(N, 3, K).transpose(1, 2).contiguous() if K else torch.zeros(N, 0, 3, device=dev)
    return {
        "means": take("means"),
        "quats": take("quats"),
        "scales": take("scales"),
        "opacities": take("opacities").reshape(N),
        "sh0": take("sh0").reshape(N, 1, 3),
        "shN": shN,
    }


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

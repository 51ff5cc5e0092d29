"""The scene a request names, checked before a job is queued (numpy only, no torch).

An inline scene is validated and stored as an "npz" artifact. A stored artifact is checked
cheaply by its kind and the first bytes of its content, so a file that is not a scene fails the
call with INVALID_ARGUMENT instead of failing a job later. The worker reads the whole file.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from vqpress.vqp import MAGIC as VQP_MAGIC

from ..artifacts.store import ArtifactStore
from ..core.errors import FormatError
from . import convert
from .errors import ServiceError

SCENE_KINDS = ("ply", "compressed_ply", "splat", "spz", "npz", "vqp")
UNKNOWN_KIND = "bin"  # the store's kind for a name without a known extension: decided by content
_HEAD_BYTES = 1 << 16  # how much of a file the check reads: 64 KiB
_SPLAT_RECORD = 32  # bytes per Gaussian in a .splat file
_NPZ_REQUIRED = {f"{k}.npy" for k in convert.SPLAT_FIELDS[:5]}


def scene_source(request: Any, store: ArtifactStore, *, strict: bool, rpc: str) -> dict[str, str]:
    """The job-spec source ``{"artifact": id}`` of a request's ``oneof source``."""
    which = request.WhichOneof("source")
    if which == "artifact":
        check_scene_artifact(store, request.artifact.id)
        return {"artifact": request.artifact.id}
    if which == "splats":
        arrays = convert.splats_arrays(request.splats, strict=strict)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        info = store.put_bytes(buf.getvalue(), name="inline.npz", kind="npz")
        return {"artifact": info.id}
    if which == "field":
        raise ServiceError(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{rpc} of neural fields is not available in this server yet; send a Gaussian splat scene",
        )
    raise ServiceError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{rpc}Request.source is not set: send an artifact (ArtifactRef) or inline splats (GaussianSplats)",
    )


def check_scene_artifact(store: ArtifactStore, artifact_id: str) -> str:
    """The scene format of a stored artifact, from its kind and header; raises when it is not one.

    FAILED_PRECONDITION for an artifact whose kind is not a scene (a PNG, a report); FormatError
    (INVALID_ARGUMENT) for bytes that are not the format their kind claims.
    """
    info = store.stat(artifact_id)
    if info.kind not in SCENE_KINDS and info.kind != UNKNOWN_KIND:
        raise ServiceError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"artifact {artifact_id} ({info.name!r}) is a {info.kind!r} artifact, not a scene; "
            f"pass one of kind {', '.join(SCENE_KINDS)}",
        )
    path = store.path(artifact_id)
    label = f"artifact {artifact_id} ({info.name!r}, kind {info.kind!r})"
    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    found = sniff(head)
    if info.kind == UNKNOWN_KIND:
        if found is None:
            raise FormatError(
                label,
                "content is not a scene file of any supported format; upload a .ply, "
                ".compressed.ply, .spz, .npz or .vqp (a .splat needs kind 'splat')",
            )
        return found
    claimed = "ply" if info.kind == "compressed_ply" else info.kind
    if info.kind == "splat":
        if found is not None:
            raise FormatError(label, f"content is a {found!r} file, not a .splat; upload it with kind {found!r}")
        if info.size == 0 or info.size % _SPLAT_RECORD:
            raise FormatError(label, f"{info.size} bytes is not a positive multiple of 32: not a .splat file")
        return "splat"
    if found != claimed:
        what = f"content looks like {found!r}" if found else "content is not a scene file of any supported format"
        raise FormatError(
            label,
            f"{what}; its header does not match kind {info.kind!r}. "
            "Upload the scene file itself with the kind of its format",
        )
    if found == "npz":
        _check_npz(path, label)
    return info.kind


def sniff(head: bytes) -> str | None:
    """The scene format the first bytes show (ply covers compressed_ply), or None. .splat has no magic."""
    if head.startswith((b"ply\n", b"ply\r\n")):
        return "ply" if b"end_header" in head else None
    if head.startswith(VQP_MAGIC):
        return "vqp"
    if head.startswith(b"NGSP"):
        return "spz"
    if head.startswith(b"\x1f\x8b"):
        try:
            inner = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(head, 4)
        except zlib.error:
            return None
        return "spz" if inner == b"NGSP" else None
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    return None


def _check_npz(path: Path, label: str) -> None:
    """An npz must be a zip holding at least the five required arrays (read from its directory only)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError) as e:
        raise FormatError(label, f"is not a readable zip archive: {e}") from None
    missing = sorted(_NPZ_REQUIRED - names)
    if missing:
        raise FormatError(label, f"npz lacks {', '.join(missing)}; it needs means, quats, scales, opacities, sh0")

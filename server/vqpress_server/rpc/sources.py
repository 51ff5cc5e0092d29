"""The scene a request names, checked before a job is queued (numpy only, no torch).

An inline scene is validated and stored as an "npz" artifact; an inline neural field's tensors are
stored as an npz and built into a field .vqp by a BUILD_FIELD job that the call waits for (this
process imports no torch). A stored artifact is checked cheaply by its kind and the first bytes of
its content, so a file that is not a scene fails the call with INVALID_ARGUMENT instead of failing
a job later. Whether it is a splat scene or a neural field is decided here, once, from the
.vqp header (``SceneRef.field``); the servicer picks the job spec type by it. The worker reads the
whole file.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from vqpress.vqp import MAGIC as VQP_MAGIC
from vqpress.vqp import VqpFormatError, read_header

from ..artifacts.store import ArtifactStore
from ..core.errors import FormatError, VqpressInputError
from ..core.fields.manifest import FieldManifest
from ..core.magic import dataset_format, read_head, scene_format, zip_scene_kind
from ..jobs.specs import BuildFieldSpec
from . import convert
from .errors import ServiceError, invalid_argument

SCENE_KINDS = ("ply", "compressed_ply", "splat", "spz", "sog", "npz", "vqp")
UNKNOWN_KIND = "bin"  # the store's kind for a name without a known extension: decided by content
_SPLAT_RECORD = 32  # bytes per Gaussian in a .splat file
_NPZ_REQUIRED = {f"{k}.npy" for k in convert.SPLAT_FIELDS[:5]}


@dataclass(frozen=True)
class SceneRef:
    """The stored scene a request names: its artifact id, and its manifest when it is a neural field."""

    artifact: str
    field: FieldManifest | None  # None: a Gaussian splat scene


BuildField = Callable[[BuildFieldSpec], str]  # runs a BUILD_FIELD job to its end; returns its .vqp's id


def scene_source(request: Any, store: ArtifactStore, *, strict: bool, rpc: str, build_field: BuildField) -> SceneRef:
    """The stored scene of a request's ``oneof source`` (inline ones stored first)."""
    which = request.WhichOneof("source")
    if which == "artifact":
        check_scene_artifact(store, request.artifact.id)
        return SceneRef(request.artifact.id, field_manifest(store, request.artifact.id))
    if which == "splats":
        arrays = convert.splats_arrays(request.splats, strict=strict)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        info = store.put_bytes(buf.getvalue(), name="inline.npz", kind="npz")
        return SceneRef(info.id, None)
    if which == "field":
        data = request.field.WhichOneof("data")
        if data == "artifact":
            artifact_id = request.field.artifact.id
            return SceneRef(artifact_id, _field_artifact(store, artifact_id))
        if data == "tensors":
            artifact_id = build_field(inline_field_spec(request.field, store))
            return SceneRef(artifact_id, _field_artifact(store, artifact_id))
        raise invalid_argument(
            f"{rpc}Request.field has no data: set tensors (the field's state dict) or artifact (a stored field .vqp)"
        )
    raise invalid_argument(
        f"{rpc}Request.source is not set: send an artifact (ArtifactRef), inline splats (GaussianSplats) "
        "or a neural field (NeuralField)"
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
    found = sniff(read_head(path))
    if found == "npz":  # a zip: a bundled SOG (it holds meta.json) or arrays, as its directory says
        found = zip_scene_kind(path) or "npz"
    if info.kind == UNKNOWN_KIND:
        if found is None:
            raise FormatError(
                label,
                "content is not a scene file of any supported format; upload a .ply, "
                ".compressed.ply, .spz, .sog, .npz or .vqp (a .splat needs kind 'splat')",
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
    found = scene_format(head)
    if found == "ply" and b"end_header" not in head:
        return None  # a PLY header longer than what was read is no scene we can check
    return found


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


# -- neural fields ------------------------------------------------------------------------


def field_manifest(store: ArtifactStore, artifact_id: str) -> FieldManifest | None:
    """The manifest of a stored field .vqp (kind "field"), or None for any other artifact.

    Reads the fixed header and the manifest only (at most 16 MiB), checked against its CRC-32."""
    info = store.stat(artifact_id)
    if info.kind not in ("vqp", UNKNOWN_KIND):
        return None
    path = store.path(artifact_id)
    if scene_format(read_head(path, len(VQP_MAGIC))) != "vqp":
        return None
    label = f"artifact {artifact_id} ({info.name!r})"
    try:
        header = read_header(path, label)
    except VqpFormatError as e:
        raise FormatError(label, str(e).removeprefix(f"{label}: ")) from None
    if header.kind != "field":
        return None
    return FieldManifest.from_json(header.meta, label)


def _field_artifact(store: ArtifactStore, artifact_id: str) -> FieldManifest:
    manifest = field_manifest(store, artifact_id)
    if manifest is None:
        info = store.stat(artifact_id)
        raise ServiceError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"artifact {artifact_id} ({info.name!r}, kind {info.kind!r}) is not a neural-field .vqp; "
            "send a .vqp written by field training or field quantization",
        )
    return manifest


MAX_INLINE_FIELD_TENSORS = 1024  # named tensors one inline field may have


def inline_field_spec(msg: Any, store: ArtifactStore) -> BuildFieldSpec:
    """The BUILD_FIELD spec of a NeuralField message's config and inline tensors (stored as an npz).

    The worker builds the field with ``core.fields.inline.field_from_tensors`` (bad names, dtypes,
    shapes and values fail the job naming the tensor) and encodes it with an empty manifest extra:
    a 3D field renders in the default scene box, a 2D one at each camera's size."""
    config = convert.field_config(msg.config)
    named = msg.tensors.tensors
    if len(named) > MAX_INLINE_FIELD_TENSORS:
        raise VqpressInputError(
            f"NeuralField.tensors has {len(named)} tensors, more than the {MAX_INLINE_FIELD_TENSORS} a field has"
        )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # an npz; written member by member, so any tensor name is a name
        for name, t in named.items():
            a = convert.array_from_tensor(t, f"NeuralField.tensors[{name[:80]!r}]")
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, a, allow_pickle=False)
    info = store.put_bytes(buf.getvalue(), name="inline-field.npz", kind="npz")
    return BuildFieldSpec(tensors=info.id, config=config)


# -- training datasets --------------------------------------------------------------------


def check_dataset_artifact(store: ArtifactStore, artifact_id: str, *, allow_image: bool) -> str:
    """ "archive" or "image": what a stored dataset is, by content; raises when it is neither.

    FAILED_PRECONDITION for an artifact of a scene kind (a .ply is not photos); FormatError
    (INVALID_ARGUMENT) for content that is no zip/tar archive (nor, with ``allow_image``, a PNG/JPEG).
    """
    info = store.stat(artifact_id)
    label = f"artifact {artifact_id} ({info.name!r}, kind {info.kind!r})"
    want = "a .zip or .tar archive of posed images" + (", or a PNG/JPEG image" if allow_image else "")
    if info.kind in SCENE_KINDS:
        raise ServiceError(
            grpc.StatusCode.FAILED_PRECONDITION, f"{label} is a scene, not a training dataset; send {want}"
        )
    with open(store.path(artifact_id), "rb") as f:
        head = f.read(512)
    found = dataset_format(head)
    if found == "archive" and head.startswith(b"\x1f\x8b") and not _is_compressed_tar(store.path(artifact_id)):
        found = None
    if found is None or (found == "image" and not allow_image):
        what = "an image" if found == "image" else "neither a zip nor a tar archive"
        raise FormatError(label, f"content is {what}; send {want}")
    return found


def _is_compressed_tar(path: Path) -> bool:
    """A gzip file that holds a tar (an .spz is gzip too): its first member header reads as tar."""
    try:
        with tarfile.open(path, "r:*") as tf:
            return tf.next() is not None
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        return False

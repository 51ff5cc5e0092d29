"""What a file is, from its first bytes: the one place the magic numbers of our inputs are known.

Torch-free and cheap: the gRPC process checks uploads with it before queueing a job, the worker
names a source file by it, and the scene readers (``core.splats.formats.detect_format``) start
from it. ``.splat`` files have no magic (32-byte records): only their name or kind says so.
"""

from __future__ import annotations

import zipfile
import zlib

from vqpress.vqp import MAGIC as VQP_MAGIC

HEAD_BYTES = 1 << 16  # enough of a file for every check here (a gzip stream's first deflate block)
PLY_MAGICS = (b"ply\n", b"ply\r\n")
SPZ_MAGIC = b"NGSP"  # an uncompressed .spz, and the first bytes inside a gzip-compressed one
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip (.npz files are zips)
IMAGE_MAGICS = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg"}
COMPRESSED_MAGICS = (GZIP_MAGIC, b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz (a compressed tar)


def is_ply(head: bytes) -> bool:
    return head.startswith(PLY_MAGICS)


def is_gzip_spz(head: bytes) -> bool:
    """Whether gzip bytes inflate to an .spz's magic (needs the stream's first block, not the whole file)."""
    try:
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(head, len(SPZ_MAGIC)) == SPZ_MAGIC
    except zlib.error:
        return False


def scene_format(head: bytes) -> str | None:
    """The container a file's first bytes show: "ply" (plain or compressed PLY: the header says
    which), "vqp", "spz" or "npz"; None for anything else (a .splat included)."""
    if is_ply(head):
        return "ply"
    if head.startswith(VQP_MAGIC):
        return "vqp"
    if head.startswith(SPZ_MAGIC) or (head.startswith(GZIP_MAGIC) and is_gzip_spz(head)):
        return "spz"
    if head.startswith(ZIP_MAGICS):
        return "npz"
    return None


def zip_scene_kind(path: object) -> str | None:
    """What a zip file holds as a scene, from its directory: "sog" (a bundled SOG: it holds meta.json)
    or "npz" (arrays); None for a file that is no readable zip."""
    try:
        with zipfile.ZipFile(path) as zf:  # type: ignore[arg-type]
            return "sog" if "meta.json" in zf.namelist() else "npz"
    except (zipfile.BadZipFile, OSError):
        return None


def dataset_format(head: bytes) -> str | None:
    """What the first bytes (at least 262) of a training dataset show: "archive" (zip, tar, or a
    compressed stream that may hold a tar), "image" (PNG or JPEG), or None."""
    if head.startswith(ZIP_MAGICS) or (len(head) >= 262 and head[257:262] == b"ustar"):
        return "archive"
    if head.startswith(COMPRESSED_MAGICS):
        return "archive"
    if head.startswith(tuple(IMAGE_MAGICS)):
        return "image"
    return None


def read_head(path: object, n: int = HEAD_BYTES) -> bytes:
    with open(path, "rb") as f:  # type: ignore[call-overload]
        return f.read(n)


__all__ = [
    "GZIP_MAGIC",
    "HEAD_BYTES",
    "IMAGE_MAGICS",
    "VQP_MAGIC",
    "ZIP_MAGICS",
    "dataset_format",
    "is_gzip_spz",
    "is_ply",
    "read_head",
    "scene_format",
    "zip_scene_kind",
]

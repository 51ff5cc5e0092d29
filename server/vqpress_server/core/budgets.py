"""Budgets: what one request, file or archive may cost, checked before the work starts.

Every resource limit that bounds untrusted input lives here (torch-free, so that the gRPC process
checks a request with the same numbers the worker and the readers use). The limits of the .vqp
container are defined by the numpy reader in ``vqpress.vqp`` (the client decodes without the
server) and re-exported here, so this module lists them all.

Pixels (``Budgets.max_image_pixels``, ``max_request_pixels``): what rendering costs grows with
cameras x width x height, and an evaluation keeps a few float images of one view alive at once.
A request over a pixel budget is refused with ``LimitExceeded`` (RESOURCE_EXHAUSTED over gRPC)
naming the limit and the value.

Decoded bytes (``decode_limit``): a compressed file may decode to at most
``max(decode_floor_bytes, decode_ratio x its own size)``, and never more than
``max_decoded_bytes``. Real files stay far below the ratio (the .vqp of donut_small and
lego_sh3_small decode to 3.7x and 3.0x their size, biker.spz to 1.4x); a decompression bomb or a
lying count is refused before anything is allocated, as a format error naming the file.

Archives (``check_archive``): members, the total declared size, and that total against the
archive's own size are checked from the central directory (zip) or the headers (tar) before
anything is extracted; while extracting, the bytes actually written are counted against the same
budget, so a directory that lies cannot exceed it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vqpress.vqp import (
    DECODE_FLOOR_BYTES,
    DECODE_RATIO,
    DEFAULT_MAX_DECODED_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_MANIFEST_DEPTH,
    decode_limit,
)

from .errors import FormatError, LimitExceeded

MAX_CODEBOOK = 1 << 23  # entries of one codebook: k-means' limit (k-means++ samples from at most 2^24 points)
MAX_JSON_DEPTH = MAX_MANIFEST_DEPTH  # nesting of any JSON a reader parses (cameras.json, SOG meta.json)


@dataclass(frozen=True)
class Budgets:
    """The limits, with their defaults and units (one instance, ``BUDGETS``, is what the server uses)."""

    max_image_side: int = 8192  # width or height of one rendered or evaluated view (pixels)
    max_image_pixels: int = 1 << 26  # width x height of one view: 67 Mpx (8192 x 8192)
    max_request_pixels: int = 1 << 30  # cameras x width x height of one request: 1.07 Gpx (1024 of 1024^2)
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES  # what one file may decode to, hard cap: 8 GiB
    decode_ratio: int = DECODE_RATIO  # decoded bytes per stored byte of a compressed file: 256
    decode_floor_bytes: int = DECODE_FLOOR_BYTES  # any file may decode to this much: 64 MiB
    max_manifest_bytes: int = MAX_MANIFEST_BYTES  # a .vqp manifest: 16 MiB
    max_json_depth: int = MAX_JSON_DEPTH  # nesting of a manifest, cameras.json or meta.json: 32 levels
    max_archive_bytes: int = 8 << 30  # a dataset archive's members together, uncompressed: 8 GiB
    max_archive_files: int = 20_000  # members of a dataset archive
    archive_ratio: int = 64  # a dataset archive's declared total per byte of the archive (images: ~1)
    archive_floor_bytes: int = 64 << 20  # any archive may declare this much: 64 MiB
    max_codebook: int = MAX_CODEBOOK  # entries of one k-means codebook: 2^23

    def decode_limit(self, stored_bytes: int) -> int:
        """Bytes a file of ``stored_bytes`` may decode to (bytes)."""
        return decode_limit(stored_bytes, self.decode_ratio, self.decode_floor_bytes, self.max_decoded_bytes)

    def archive_limit(self, archive_bytes: int) -> int:
        """Bytes an archive of ``archive_bytes`` may extract to (bytes)."""
        return min(self.max_archive_bytes, max(self.archive_floor_bytes, self.archive_ratio * archive_bytes))


BUDGETS = Budgets()


def check_pixels(sizes: Iterable[tuple[int, int]], where: str, budgets: Budgets = BUDGETS) -> int:
    """Refuse (``LimitExceeded``) views whose total cameras x width x height, or one view's
    width x height, is over its budget; ``sizes`` are (width, height) pairs. Returns the total."""
    total, count = 0, 0
    for i, (w, h) in enumerate(sizes):
        px = int(w) * int(h)
        if px > budgets.max_image_pixels:
            raise LimitExceeded(
                "max_image_pixels",
                budgets.max_image_pixels,
                px,
                f"{where}: camera {i} is {w} x {h} = {px:,} pixels, over the limit max_image_pixels = "
                f"{budgets.max_image_pixels:,}; render it smaller",
            )
        total += px
        count += 1
    if total > budgets.max_request_pixels:
        raise LimitExceeded(
            "max_request_pixels",
            budgets.max_request_pixels,
            total,
            f"{where}: {count} cameras ask for {total:,} pixels (cameras x width x height), over the limit "
            f"max_request_pixels = {budgets.max_request_pixels:,}; send fewer or smaller cameras, or split the call",
        )
    return total


def check_decoded(path: Any, what: str, decoded_bytes: int, stored_bytes: int, budgets: Budgets = BUDGETS) -> None:
    """Refuse (``FormatError``) a file of ``stored_bytes`` that claims to decode to ``decoded_bytes``
    more than its budget allows: a lying count or a decompression bomb."""
    limit = budgets.decode_limit(stored_bytes)
    if decoded_bytes > limit:
        raise FormatError(
            path,
            f"{what} claims {decoded_bytes:,} decoded bytes from a {stored_bytes:,}-byte file, over its "
            f"decode budget of {limit:,} bytes (max(decode_floor_bytes = {budgets.decode_floor_bytes:,}, "
            f"decode_ratio = {budgets.decode_ratio} x the file), at most max_decoded_bytes = "
            f"{budgets.max_decoded_bytes:,}): the count is wrong or the file is a decompression bomb",
        )


def check_archive(
    path: Path,
    members: int,
    declared_bytes: int,
    archive_bytes: int,
    *,
    max_bytes: int,
    max_files: int,
    budgets: Budgets = BUDGETS,
) -> int:
    """Refuse (``FormatError``) an archive with more than ``max_files`` members or whose declared
    total is over ``max_bytes`` or its ratio budget; returns the bytes extraction may write."""
    if members > max_files:
        raise FormatError(
            path, f"more than {max_files} members ({members:,}; the limit max_archive_files); split the dataset"
        )
    ratio_limit = max(budgets.archive_floor_bytes, budgets.archive_ratio * archive_bytes)
    limit = min(max_bytes, ratio_limit)
    if declared_bytes > max_bytes:
        raise FormatError(
            path, f"declares {declared_bytes:,} bytes uncompressed, over the limit of {max_bytes:,} (max_archive_bytes)"
        )
    if declared_bytes > ratio_limit:
        ratio = declared_bytes / max(archive_bytes, 1)
        raise FormatError(
            path,
            f"declares {declared_bytes:,} bytes uncompressed from {archive_bytes:,} ({ratio:,.0f}:1), over the "
            f"limit of max(archive_floor_bytes = {budgets.archive_floor_bytes:,}, archive_ratio = "
            f"{budgets.archive_ratio} x the archive): a decompression bomb; photos barely compress",
        )
    return limit


__all__ = [
    "BUDGETS",
    "MAX_CODEBOOK",
    "MAX_JSON_DEPTH",
    "Budgets",
    "check_archive",
    "check_decoded",
    "check_pixels",
]

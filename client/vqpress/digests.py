"""The content digests that name artifacts: BLAKE3-256 (the default) and sha256 (older ids).

An artifact's id says which digest names it:

    blake3:<64 lowercase hex digits>   BLAKE3-256 of the bytes (what ``b3sum`` prints)
    <64 lowercase hex digits>          sha256 of the bytes (what ``sha256sum`` prints)

BLAKE3 is the default because a stream can be no faster than the hash that checks it, and one
core hashes BLAKE3 faster than sha256 (SHA extensions included): 3.7 against 1.1 GiB/s on one
CPU machine we measured, 1.9 against 1.4 GiB/s on another (AVX2 only; BENCHMARKS 5f). sha256 ids stay valid: a store
written before keeps them, and a server or client that offers only sha256 is still spoken to in
sha256.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Protocol

import blake3

BLAKE3 = "blake3"
SHA256 = "sha256"
FUNCTIONS = (BLAKE3, SHA256)  # every digest function this version knows, preferred first
DEFAULT = BLAKE3
_PREFIX = {BLAKE3: "blake3:", SHA256: ""}
_HEX = re.compile(r"[0-9a-f]{64}")
ID_PATTERN = re.compile(r"(?:blake3:)?[0-9a-f]{64}")  # an artifact id, either form
_READ_CHUNK = 1 << 20  # bytes per read when hashing a file


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...
    def hexdigest(self) -> str: ...


def check_function(function: str) -> str:
    """``function`` if this version knows it, else ValueError naming the ones it does."""
    if function not in FUNCTIONS:
        raise ValueError(f"unknown digest function {str(function)[:40]!r}; use one of {', '.join(FUNCTIONS)}")
    return function


def new(function: str = DEFAULT) -> Hasher:
    """A hasher of ``function``; ``update`` releases the GIL for large inputs in both."""
    if check_function(function) == BLAKE3:
        return blake3.blake3()
    return hashlib.sha256()


def make_id(function: str, hexdigest: str) -> str:
    """The artifact id of content whose ``function`` digest is ``hexdigest`` (64 hex digits)."""
    hexdigest = hexdigest.lower()
    if _HEX.fullmatch(hexdigest) is None:
        raise ValueError(f"a {function} digest is 64 hex digits, not {hexdigest[:80]!r}")
    return _PREFIX[check_function(function)] + hexdigest


def is_id(artifact_id: object) -> bool:
    return isinstance(artifact_id, str) and ID_PATTERN.fullmatch(artifact_id) is not None


def parse_id(artifact_id: str) -> tuple[str, str]:
    """(digest function, 64 hex digits) of an id; ValueError if it is neither form."""
    if not is_id(artifact_id):
        raise ValueError(
            f"artifact id {str(artifact_id)[:80]!r} is neither 'blake3:' and 64 lowercase hex digits "
            "nor 64 lowercase hex digits (sha256)"
        )
    if artifact_id.startswith("blake3:"):
        return BLAKE3, artifact_id[7:]
    return SHA256, artifact_id


def function_of(artifact_id: str) -> str:
    return parse_id(artifact_id)[0]


def id_of_bytes(data: bytes | memoryview, function: str = DEFAULT) -> str:
    h = new(function)
    h.update(data)
    return make_id(function, h.hexdigest())


def id_of_file(path: str | Path, function: str = DEFAULT) -> str:
    h = new(function)
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            h.update(chunk)
    return make_id(function, h.hexdigest())


def short(artifact_id: str, digits: int = 12) -> str:
    """An id for people to read: its function's prefix and the first ``digits`` hex digits."""
    function, hexdigest = parse_id(artifact_id)
    return _PREFIX[function] + hexdigest[:digits]


def file_name(artifact_id: str, digits: int = 64) -> str:
    """An id as a file name on every system (no ':'): 'blake3-<hex>' or '<hex>', ``digits`` long."""
    function, hexdigest = parse_id(artifact_id)
    return _PREFIX[function].replace(":", "-") + hexdigest[:digits]


def choose(offered: list[str] | tuple[str, ...]) -> str:
    """The function to use with a server that offers ``offered`` (its preference first): the first
    one this version knows; sha256 when it offers none (a server before digest functions)."""
    for f in offered:
        if f in FUNCTIONS:
            return f
    return SHA256


__all__ = [
    "BLAKE3",
    "DEFAULT",
    "FUNCTIONS",
    "ID_PATTERN",
    "SHA256",
    "check_function",
    "choose",
    "file_name",
    "function_of",
    "id_of_bytes",
    "id_of_file",
    "is_id",
    "make_id",
    "new",
    "parse_id",
    "short",
]

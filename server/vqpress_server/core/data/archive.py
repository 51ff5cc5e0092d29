"""Dataset archives (zip, tar, tar.gz/bz2/xz) from users: checked member by member, then extracted.

Refused before anything is written: absolute paths, '..' escapes, links, devices, more than
max_files members, a member or a total declared size over max_bytes, and a declared total out of
proportion to the archive's own size (``budgets.check_archive``: a decompression bomb). While
extracting, the bytes actually written are counted: members that inflate beyond their declared
size, or a total beyond the budget, stop the extraction (and nothing extracted is left behind).
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

from ..budgets import check_archive
from ..errors import FormatError, VqpressInputError
from .dataset import DatasetConfig, PosedImageDataset, load_dataset

_COPY_CHUNK = 1 << 20


def _safe_name(archive: Path, name: str) -> PurePosixPath:
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or p.is_absolute():
        raise FormatError(archive, f"member {name!r} has an absolute path; archives must hold relative paths")
    if ".." in p.parts:
        raise FormatError(archive, f"member {name!r} escapes the archive folder with '..'")
    return p


def _copy_limited(src: IO[bytes], dst: Path, limit: int, archive: Path, name: str) -> int:
    written = 0
    with open(dst, "wb") as out:
        while chunk := src.read(_COPY_CHUNK):
            written += len(chunk)
            if written > limit:
                raise FormatError(archive, f"member {name!r} inflates beyond its declared size or the size limit")
            out.write(chunk)
    return written


def _check_totals(archive: Path, count: int, total: int, max_files: int, max_bytes: int) -> int:
    """The bytes extraction may write (``budgets.check_archive``); FormatError when over a budget."""
    return check_archive(archive, count, total, archive.stat().st_size, max_bytes=max_bytes, max_files=max_files)


def _extract_zip(archive: Path, dest: Path, max_bytes: int, max_files: int) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        total = 0
        # The central directory: every member's name, kind and declared size, before any byte is written.
        _check_totals(archive, len(infos), sum(i.file_size for i in infos), max_files, max_bytes)
        for info in infos:
            _safe_name(archive, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise FormatError(archive, f"member {info.filename!r} is a symbolic link; links are not accepted")
            if info.file_size > max_bytes:
                raise FormatError(
                    archive, f"member {info.filename!r} declares {info.file_size} bytes, over {max_bytes}"
                )
            total += info.file_size
        budget = _check_totals(archive, len(infos), total, max_files, max_bytes)
        for info in infos:
            target = dest / _safe_name(archive, info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src:
                budget -= _copy_limited(src, target, min(info.file_size, budget), archive, info.filename)


def _extract_tar(archive: Path, dest: Path, max_bytes: int, max_files: int) -> None:
    with tarfile.open(archive, "r:*") as tf:
        members = []
        total = 0
        for m in tf:  # headers are checked as they stream in: a bomb stops at the first limit
            _safe_name(archive, m.name)
            if m.issym() or m.islnk():
                raise FormatError(archive, f"member {m.name!r} is a link; links are not accepted")
            if not (m.isfile() or m.isdir()):
                raise FormatError(archive, f"member {m.name!r} is not a regular file or folder")
            if m.size > max_bytes:
                raise FormatError(archive, f"member {m.name!r} declares {m.size} bytes, over {max_bytes}")
            total += m.size
            members.append(m)
            _check_totals(archive, len(members), total, max_files, max_bytes)
        budget = _check_totals(archive, len(members), total, max_files, max_bytes)
        for m in members:
            target = dest / _safe_name(archive, m.name)
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(m)
            assert src is not None
            with src:
                budget -= _copy_limited(src, target, min(m.size, budget), archive, m.name)


def extract_archive(path: str | Path, dest: str | Path, *, max_bytes: int, max_files: int) -> Path:
    """Check and extract a zip or tar archive into dest (created; must be empty). Returns dest."""
    archive, dest = Path(path), Path(dest)
    if max_bytes <= 0 or max_files <= 0:
        raise VqpressInputError("max_bytes and max_files must be positive")
    if not archive.is_file():
        raise VqpressInputError(f"{archive}: no such archive file")
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise VqpressInputError(f"{dest}: extraction folder must be empty")
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, dest, max_bytes, max_files)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, dest, max_bytes, max_files)
        else:
            raise FormatError(archive, "not a zip or tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        shutil.rmtree(dest, ignore_errors=True)
        raise FormatError(archive, f"corrupt archive ({e})") from None
    except FormatError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest


def open_dataset_archive(
    path: str | Path,
    dest: str | Path,
    *,
    max_bytes: int,
    max_files: int,
    config: DatasetConfig = DatasetConfig(),
) -> PosedImageDataset:
    """Extract a dataset archive safely into dest and load it (layout detected as in load_dataset).

    max_bytes: limit on the uncompressed size of one member and of all members together (bytes).
    max_files: limit on the number of members.
    """
    return load_dataset(extract_archive(path, dest, max_bytes=max_bytes, max_files=max_files), config)

"""Content-addressed artifact store: immutable files named by their digest, with a JSON sidecar.

An artifact's id is its content's digest (``vqpress.digests``): ``blake3:<hex>`` for BLAKE3-256, the
default for new content, or ``<hex>`` for sha256 (the ids of stores written before BLAKE3, which
keep working). Layout under ``root``::

    objects/ab/<hex>                sha256 ids: the bytes (read-only once committed)
    objects/ab/<hex>.json           metadata: name, kind, size, created_at, source_job
    objects/blake3/ab/<hex>[.json]  the same for blake3 ids
    tmp/<random>.part               uploads in progress (same filesystem, renamed into place)

Every write goes to a temp file first and is renamed into place, so a reader sees a whole
artifact or none. An upload that is aborted, short, long, or whose hash does not match leaves
nothing behind. Ids are validated (either form above) before they touch a path, so no id can
name a file outside the store. Storing content that is already present is idempotent: the
first metadata written for an id is kept.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from vqpress import digests

from ..core.atomic import fsync_dir
from ..core.errors import VqpressInputError

_HEX_RE = re.compile(r"[0-9a-f]{64}")
_KIND_RE = re.compile(r"[a-z0-9][a-z0-9_.+-]{0,31}")
_MAX_NAME_CHARS = 255
_COPY_CHUNK = 1 << 20  # bytes per read when storing a file: 1 MiB
_FREE_SPACE_MARGIN = 16 << 20  # bytes kept free on the store's filesystem: 16 MiB
_STALE_TMP_S = 24 * 3600.0  # temp files older than this (seconds) are from a crash and removed
_PIPELINE_DEPTH = 8  # chunks queued between an upload's receiver and its writing thread
_WRITEBACK_BYTES = 8 << 20  # start the disk write of each 8 MiB as it is written, so commit's fsync is short


def _sync_file_range() -> object | None:
    """Linux's sync_file_range (start writing a range to disk, without waiting), or None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_START_WRITEBACK = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


@dataclass(frozen=True)
class ArtifactInfo:
    id: str  # the content's digest: "blake3:<hex>" or "<hex>" (sha256)
    name: str  # file name the artifact was stored under (metadata only, never a path)
    kind: str  # ply, compressed_ply, splat, spz, npz, vqp, png, npy, json, ...
    size: int  # bytes
    created_at: float  # unix time, seconds
    source_job: str | None  # the job that produced it; None for uploads

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class ArtifactNotFound(LookupError):
    """No artifact with this id (or the id is not an artifact id)."""


class ArtifactIntegrityError(ValueError):
    """An upload's size or digest does not match what it declared."""


class ArtifactTooLarge(ValueError):
    """An artifact is larger than the store accepts."""


class ArtifactStoreFull(ArtifactTooLarge):
    """The store's disk has no room for this artifact; nothing was written."""


def validate_id(artifact_id: str) -> str:
    """Return ``artifact_id`` if it is an artifact id (either form), else raise ArtifactNotFound."""
    try:
        digests.parse_id(artifact_id)
    except ValueError as e:
        raise ArtifactNotFound(str(e)) from None
    return artifact_id


def _expected_digest(expected: str | None, function: str) -> str | None:
    """A declared digest (64 hex digits, any case) lowercased, or VqpressInputError."""
    if expected is None:
        return None
    if not isinstance(expected, str) or _HEX_RE.fullmatch(expected.lower()) is None:
        raise VqpressInputError(f"declared {function} digest {str(expected)[:80]!r} is not 64 hex digits")
    return expected.lower()


def _function(function: str | None, default: str) -> str:
    try:
        return digests.check_function(default if function is None else function)
    except ValueError as e:
        raise VqpressInputError(str(e)) from None


def kind_from_name(name: str) -> str:
    """Guess an artifact kind from a file name's extension (``scene.compressed.ply`` -> compressed_ply)."""
    lower = name.lower()
    if lower.endswith(".compressed.ply"):
        return "compressed_ply"
    suffix = lower.rsplit(".", 1)[-1] if "." in lower else ""
    return suffix if suffix and _KIND_RE.fullmatch(suffix) else "bin"


def _check_meta(name: str, kind: str) -> tuple[str, str]:
    if not isinstance(name, str) or len(name) > _MAX_NAME_CHARS or any(ord(c) < 32 for c in name):
        raise VqpressInputError(f"artifact name must be a string of at most {_MAX_NAME_CHARS} printable characters")
    kind = kind or kind_from_name(name)
    if _KIND_RE.fullmatch(kind) is None:
        raise VqpressInputError(
            f"artifact kind {kind[:40]!r} is not valid: use 1-32 of lowercase letters, digits, '_.+-'"
        )
    return name, kind


class Upload:
    """One artifact being written. Use as a context manager; it aborts on an exception.

    ``write`` checks the declared size as bytes arrive (it fails at the first byte past it) and
    hands the bytes to two threads, one hashing (in the upload's digest function) and one writing
    them (both release the GIL), so the caller receives the next chunk meanwhile (a chunk must not
    change after ``write``: bytes, or a view of them). The writer starts each 8 MiB on its way to
    the disk as it is written; ``commit`` waits for both, checks the size and the digest, fsyncs the
    file and renames it into place. A disk error is raised by the next ``write`` or by ``commit``.
    """

    def __init__(
        self,
        store: ArtifactStore,
        name: str,
        size: int,
        digest: str | None,
        kind: str,
        source_job: str | None,
        function: str,
    ) -> None:
        self._store = store
        self._name = name
        self._size = size
        self._digest = digest  # declared, 64 lowercase hex digits in ``function``; None: given to commit
        self._function = function
        self._kind = kind
        self._source_job = source_job
        self._hash = digests.new(function)
        self._written = 0
        fd, tmp = tempfile.mkstemp(dir=store._tmp_dir, suffix=".part")
        self._file = os.fdopen(fd, "wb")
        self._tmp: Path | None = Path(tmp)
        self._queues: list[queue.Queue[bytes | memoryview | None]] = []  # to the writer and the hasher
        self._sinks: list[threading.Thread] = []  # started by the first write
        self._failure: Exception | None = None  # what the sink thread hit, raised on the caller's thread

    @property
    def bytes_written(self) -> int:
        return self._written

    def write(self, chunk: bytes | memoryview) -> None:
        if self._tmp is None:
            raise RuntimeError("upload is already committed or aborted")
        if self._written + len(chunk) > self._size:
            self.abort()
            raise ArtifactIntegrityError(
                f"upload of {self._name!r} sent more than the {self._size} bytes its header declared"
            )
        if self._failure is not None:
            e = self._failure
            self.abort()
            raise _disk_error(e, self._name) from e
        if not self._sinks:
            for target in (self._write_all, self._hash_all):
                q: queue.Queue[bytes | memoryview | None] = queue.Queue(maxsize=_PIPELINE_DEPTH)
                t = threading.Thread(target=target, args=(q,), name="vqpress-upload", daemon=True)
                t.start()
                self._queues.append(q)
                self._sinks.append(t)
        for q in self._queues:
            q.put(chunk)
        self._written += len(chunk)

    def _write_all(self, q: queue.Queue[bytes | memoryview | None]) -> None:
        """The writing thread, until None: each 8 MiB written is started on its way to the disk."""
        fd, started, offset = self._file.fileno(), 0, 0
        while (chunk := q.get()) is not None:
            if self._failure is not None:
                continue  # keep taking chunks so the caller never blocks; it raises the failure
            try:
                self._file.write(chunk)
                offset += len(chunk)
                if _START_WRITEBACK is not None and offset - started >= _WRITEBACK_BYTES:
                    self._file.flush()
                    _START_WRITEBACK(fd, started, offset - started, _SYNC_FILE_RANGE_WRITE)  # type: ignore[operator]
                    started = offset
            except Exception as e:  # a full disk, mostly
                self._failure = e

    def _hash_all(self, q: queue.Queue[bytes | memoryview | None]) -> None:
        while (chunk := q.get()) is not None:
            self._hash.update(chunk)

    def _join_sink(self) -> None:
        for q in self._queues:
            q.put(None)
        for t in self._sinks:
            t.join()
        self._queues, self._sinks = [], []

    def commit(self, digest: str | None = None) -> ArtifactInfo:
        """Store the bytes; ``digest``: the hex digest (in the upload's function) they must have,
        when it was not known at ``begin_upload`` (an upload whose last message carries it)."""
        if self._tmp is None:
            raise RuntimeError("upload is already committed or aborted")
        declared_by = "header"
        if digest is not None:
            if self._digest is not None:
                self.abort()
                raise VqpressInputError(f"upload of {self._name!r} declared its digest twice")
            try:
                self._digest = _expected_digest(digest, self._function)
            except VqpressInputError:
                self.abort()
                raise
            declared_by = "last message"
        self._join_sink()
        if self._failure is not None:
            e = self._failure
            self.abort()
            raise _disk_error(e, self._name) from e
        if self._written != self._size:
            self.abort()
            raise ArtifactIntegrityError(
                f"upload of {self._name!r} ended after {self._written} bytes; its header declared {self._size}"
            )
        got = self._hash.hexdigest()
        if self._digest is not None and got != self._digest:
            self.abort()
            raise ArtifactIntegrityError(
                f"upload of {self._name!r} has {self._function} {got}, not the {self._digest} its "
                f"{declared_by} declared (the data was corrupted in transit, or the declaration is wrong)"
            )
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.chmod(self._tmp, 0o444)
            artifact_id = digests.make_id(self._function, got)
            info = self._store._install(self._tmp, artifact_id, self._name, self._kind, self._size, self._source_job)
        except OSError as e:
            self.abort()
            raise _disk_error(e, self._name) from e
        self._tmp = None
        return info

    def abort(self) -> None:
        """Drop the upload; idempotent. Nothing is left behind."""
        if self._tmp is None:
            return
        self._join_sink()
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()
        self._tmp = None

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        # On an exception, or on leaving the block without commit(): never a half-stored artifact.
        self.abort()


def _disk_error(e: Exception, name: str) -> Exception:
    if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return ArtifactStoreFull(f"no space left in the artifact store for {name!r}; free disk space")
    return e


class ArtifactStore:
    """Content-addressed files under ``root``; ``max_bytes`` caps a single artifact (bytes);
    ``digest_function`` names what it stores unless a caller names another ("blake3" or "sha256")."""

    def __init__(self, root: Path, max_bytes: int, digest_function: str = digests.DEFAULT) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.digest_function = digests.check_function(digest_function)
        self._objects = self.root / "objects"
        self._tmp_dir = self.root / "tmp"
        self._objects.mkdir(parents=True, exist_ok=True)
        self._tmp_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temp_files()

    # -- writing ---------------------------------------------------------------------
    def begin_upload(
        self,
        name: str,
        size: int,
        digest: str | None,
        kind: str,
        source_job: str | None = None,
        digest_function: str | None = None,
    ) -> Upload:
        """Start an upload of exactly ``size`` bytes whose hex digest in ``digest_function`` (None:
        the store's) is ``digest`` (None: given to ``Upload.commit`` once the bytes are in)."""
        name, kind = _check_meta(name, kind)
        function = _function(digest_function, self.digest_function)
        expected = _expected_digest(digest, function)
        self._check_size(name, size)
        return Upload(self, name, size, expected, kind, source_job, function)

    def put_file(
        self, src: Path, name: str, kind: str, source_job: str | None = None, digest_function: str | None = None
    ) -> ArtifactInfo:
        """Store a copy of the file ``src`` (hashed while copied)."""
        src = Path(src)
        size = src.stat().st_size
        name, kind = _check_meta(name, kind)
        self._check_size(name, size)
        function = _function(digest_function, self.digest_function)
        with open(src, "rb") as f, Upload(self, name, size, None, kind, source_job, function) as up:
            while chunk := f.read(_COPY_CHUNK):
                up.write(chunk)
            return up.commit()

    def put_bytes(
        self, data: bytes, name: str, kind: str, source_job: str | None = None, digest_function: str | None = None
    ) -> ArtifactInfo:
        name, kind = _check_meta(name, kind)
        self._check_size(name, len(data))
        function = _function(digest_function, self.digest_function)
        with Upload(self, name, len(data), None, kind, source_job, function) as up:
            up.write(bytes(data))  # a copy: the caller's buffer may change after we return
            return up.commit()

    def _check_size(self, name: str, size: int) -> None:
        if not isinstance(size, int) or size < 0:
            raise VqpressInputError(f"declared size of {name!r} must be a non-negative integer, got {size!r}")
        if size > self.max_bytes:
            raise ArtifactTooLarge(
                f"{name!r} is {size} bytes; this server accepts artifacts up to {self.max_bytes} bytes"
            )
        free = shutil.disk_usage(self.root).free
        if size + _FREE_SPACE_MARGIN > free:
            raise ArtifactStoreFull(
                f"{name!r} needs {size} bytes but the artifact store has {free} bytes free; free disk space"
            )

    def _install(
        self, tmp: Path, artifact_id: str, name: str, kind: str, size: int, source_job: str | None
    ) -> ArtifactInfo:
        obj = self._object_path(artifact_id)
        obj.parent.mkdir(parents=True, exist_ok=True)
        meta = ArtifactInfo(artifact_id, name, kind, size, time.time(), source_job)
        os.replace(tmp, obj)  # same content either way, so a concurrent writer of it is harmless
        sidecar = self._sidecar_path(artifact_id)
        if not sidecar.exists():
            fd, mtmp = tempfile.mkstemp(dir=self._tmp_dir, suffix=".json.part")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(meta.as_dict(), f)
                    f.flush()
                    os.fsync(f.fileno())
                try:
                    os.link(mtmp, sidecar)  # fails if present: the first metadata for an id wins
                except FileExistsError:
                    pass
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(mtmp)
        fsync_dir(obj.parent)
        return self.stat(artifact_id)

    # -- reading ---------------------------------------------------------------------
    def stat(self, artifact_id: str) -> ArtifactInfo:
        obj = self.path(artifact_id)
        try:
            meta = json.loads(self._sidecar_path(artifact_id).read_text())
            return ArtifactInfo(
                id=artifact_id,
                name=str(meta["name"]),
                kind=str(meta["kind"]),
                size=int(meta["size"]),
                created_at=float(meta["created_at"]),
                source_job=meta.get("source_job"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            # The object is there but its sidecar is missing or unreadable (a crash between the
            # two renames): the bytes are still good, so describe them from the file itself.
            st = obj.stat()
            return ArtifactInfo(artifact_id, artifact_id, "bin", st.st_size, st.st_mtime, None)

    def path(self, artifact_id: str) -> Path:
        """The file holding an artifact's bytes (read-only). Raises ArtifactNotFound."""
        obj = self._object_path(validate_id(artifact_id))
        if not obj.is_file():
            raise ArtifactNotFound(f"no artifact {artifact_id}")
        return obj

    def exists(self, artifact_id: str) -> bool:
        try:
            self.path(artifact_id)
        except ArtifactNotFound:
            return False
        return True

    def read_bytes(self, artifact_id: str) -> bytes:
        return self.path(artifact_id).read_bytes()

    def iter_chunks(self, artifact_id: str, chunk_size: int) -> Iterator[bytes]:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        obj = self.path(artifact_id)

        def _gen() -> Iterator[bytes]:
            with open(obj, "rb") as f:
                while chunk := f.read(chunk_size):
                    yield chunk

        return _gen()

    def list(self, kind: str | None = None, limit: int = 1000) -> list[ArtifactInfo]:
        """Artifacts, newest first, optionally only of one kind."""
        out: list[ArtifactInfo] = []
        blake3_dir = self._objects / digests.BLAKE3
        shards = [(s, "") for s in sorted(self._objects.iterdir()) if s.is_dir() and s != blake3_dir]
        if blake3_dir.is_dir():
            shards += [(s, "blake3:") for s in sorted(blake3_dir.iterdir()) if s.is_dir()]
        for shard, prefix in shards:
            for entry in shard.iterdir():
                if _HEX_RE.fullmatch(entry.name) is None:
                    continue
                try:
                    info = self.stat(prefix + entry.name)
                except (ArtifactNotFound, FileNotFoundError):
                    continue  # deleted while listing
                if kind is None or info.kind == kind:
                    out.append(info)
        out.sort(key=lambda i: (i.created_at, i.id), reverse=True)
        return out[: max(0, limit)]

    def delete(self, artifact_id: str) -> None:
        obj = self.path(artifact_id)
        with contextlib.suppress(FileNotFoundError):
            obj.unlink()
        with contextlib.suppress(FileNotFoundError):
            self._sidecar_path(artifact_id).unlink()

    # -- paths -----------------------------------------------------------------------
    def _object_path(self, artifact_id: str) -> Path:
        function, hexdigest = digests.parse_id(artifact_id)
        base = self._objects if function == digests.SHA256 else self._objects / function
        return base / hexdigest[:2] / hexdigest

    def _sidecar_path(self, artifact_id: str) -> Path:
        return self._object_path(artifact_id).with_suffix(".json")

    def _remove_stale_temp_files(self) -> None:
        cutoff = time.time() - _STALE_TMP_S
        for p in self._tmp_dir.iterdir():
            with contextlib.suppress(OSError):
                if p.stat().st_mtime < cutoff:
                    p.unlink()

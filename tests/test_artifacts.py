"""The artifact store: content addressing, verified uploads, nothing left behind on failure.

New content is named by BLAKE3 (``blake3:<hex>``), the store's default; sha256 ids (stores written
before BLAKE3) keep working beside them."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

import pytest
from blake3 import blake3
from vqpress_server.artifacts import (
    ArtifactIntegrityError,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactStoreFull,
    ArtifactTooLarge,
)
from vqpress_server.core.errors import VqpressInputError


def _b3(data: bytes) -> str:
    """The BLAKE3 hex digest of data (what b3sum prints)."""
    return blake3(data).hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _upload(store: ArtifactStore, data: bytes, name: str = "a.ply", chunk: int = 7):
    with store.begin_upload(name, len(data), _b3(data), "ply") as up:
        for i in range(0, len(data), chunk):
            up.write(data[i : i + chunk])
        return up.commit()


def test_round_trip(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_bytes=1 << 20)
    data = os.urandom(10_000)
    info = _upload(store, data, "scene.ply")
    assert info.id == "blake3:" + _b3(data)
    assert (info.name, info.kind, info.size, info.source_job) == ("scene.ply", "ply", 10_000, None)
    assert store.path(info.id).read_bytes() == data
    assert b"".join(store.iter_chunks(info.id, 4096)) == data
    assert [len(c) for c in store.iter_chunks(info.id, 4096)] == [4096, 4096, 1808]
    assert store.stat(info.id) == info
    # A second store on the same directory (another process) sees the same artifact.
    assert ArtifactStore(tmp_path, max_bytes=1 << 20).stat(info.id) == info
    # Object files are sharded by the first two hex digits, BLAKE3's apart from sha256's.
    assert store.path(info.id).parent == tmp_path / "objects" / "blake3" / _b3(data)[:2]


def test_put_bytes_file_list_delete(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store", max_bytes=1 << 20)
    a = store.put_bytes(b"png bytes", "v0.png", "png", source_job="job1")
    src = tmp_path / "x.vqp"
    src.write_bytes(b"vqp" * 100)
    b = store.put_file(src, "x.vqp", "vqp")
    assert a.source_job == "job1" and a.kind == "png" and a.size == 9
    assert store.read_bytes(b.id) == b"vqp" * 100
    assert {i.id for i in store.list()} == {a.id, b.id}
    assert [i.id for i in store.list(kind="vqp")] == [b.id]
    assert len(store.list(limit=1)) == 1
    # Empty content is a valid artifact.
    e = store.put_bytes(b"", "empty.bin", "")
    assert e.size == 0 and e.kind == "bin" and store.read_bytes(e.id) == b""
    store.delete(a.id)
    with pytest.raises(ArtifactNotFound):
        store.stat(a.id)
    with pytest.raises(ArtifactNotFound):
        store.delete(a.id)
    assert {i.id for i in store.list()} == {b.id, e.id}


def test_same_content_is_idempotent(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_bytes=1 << 20)
    first = store.put_bytes(b"same", "first.ply", "ply", source_job="j1")
    second = _upload(store, b"same", "second.ply")
    assert second == first  # the first metadata for a content id is kept
    objects = [p for p in _files(tmp_path / "objects")]
    assert len(objects) == 2  # one object, one sidecar
    assert _files(tmp_path / "tmp") == []


@pytest.mark.parametrize(
    "declared_size, sent, declared_data",
    [
        (100, b"x" * 101, b"x" * 100),  # longer than declared
        (100, b"x" * 99, b"x" * 100),  # shorter than declared
        (100, b"y" * 100, b"x" * 100),  # hash lies
    ],
    ids=["long", "short", "bad-hash"],
)
def test_lying_upload_leaves_nothing(tmp_path: Path, declared_size, sent, declared_data) -> None:
    store = ArtifactStore(tmp_path, max_bytes=1 << 20)
    up = store.begin_upload("a.ply", declared_size, _b3(declared_data), "ply")
    with pytest.raises(ArtifactIntegrityError):
        with up:
            for i in range(0, len(sent), 10):
                up.write(sent[i : i + 10])
            up.commit()
    assert _files(tmp_path) == []


def test_long_upload_stops_at_first_extra_byte(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_bytes=1 << 20)
    up = store.begin_upload("a.ply", 10, "0" * 64, "ply")
    up.write(b"0123456789")
    with pytest.raises(ArtifactIntegrityError, match="more than the 10 bytes"):
        up.write(b"!")
    assert up.bytes_written == 10
    assert _files(tmp_path) == []


def test_abort_and_exception_leave_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_bytes=1 << 20)
    up = store.begin_upload("a.ply", 4, _b3(b"abcd"), "ply")
    up.write(b"ab")
    up.abort()
    up.abort()  # idempotent
    with pytest.raises(RuntimeError):
        up.write(b"cd")
    with pytest.raises(ConnectionError):
        with store.begin_upload("b.ply", 4, _b3(b"abcd"), "ply") as up2:
            up2.write(b"ab")
            raise ConnectionError("client went away")
    # Leaving the block without commit() is an abort too.
    with store.begin_upload("c.ply", 4, _b3(b"abcd"), "ply") as up3:
        up3.write(b"abcd")
    assert _files(tmp_path) == []


def test_size_limits(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_bytes=1000)
    with pytest.raises(ArtifactTooLarge, match="up to 1000 bytes"):
        store.begin_upload("big.ply", 1001, "0" * 64, "ply")
    with pytest.raises(ArtifactTooLarge):
        store.put_bytes(b"x" * 1001, "big.ply", "ply")
    with pytest.raises(VqpressInputError, match="non-negative"):
        store.begin_upload("neg.ply", -1, "0" * 64, "ply")
    # Larger than the free disk space (but within max_bytes): refused before a byte is written.
    huge = ArtifactStore(tmp_path, max_bytes=1 << 62)
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(ArtifactStoreFull, match="free disk space"):
        huge.begin_upload("huge.ply", free + 1, "0" * 64, "ply")
    assert _files(tmp_path) == []


@pytest.mark.parametrize(
    "bad_id",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "A" * 64,  # uppercase
        "0" * 63,
        "0" * 65,
        "0" * 62 + "/x",
        "..",
        "",
        "0" * 64 + "\n",
        "blake3:" + "0" * 63,
        "blake3:../" + "0" * 61,
        "sha256:" + "0" * 64,  # the sha256 form is the bare digits
        "BLAKE3:" + "0" * 64,
    ],
)
def test_ids_cannot_escape_the_store(tmp_path: Path, bad_id: str) -> None:
    store = ArtifactStore(tmp_path / "store", max_bytes=1000)
    (tmp_path / "secret").write_text("secret")
    for op in (store.stat, store.path, store.delete, lambda i: store.iter_chunks(i, 10)):
        with pytest.raises(ArtifactNotFound):
            op(bad_id)
    assert (tmp_path / "secret").exists()


def test_bad_metadata_is_rejected(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_bytes=1000)
    with pytest.raises(VqpressInputError, match="kind"):
        store.put_bytes(b"x", "a", "../evil")
    with pytest.raises(VqpressInputError, match="name"):
        store.put_bytes(b"x", "a\x00b", "ply")
    with pytest.raises(VqpressInputError, match="blake3 digest 'not-a-hash' is not 64 hex digits"):
        store.begin_upload("a.ply", 1, "not-a-hash", "ply")
    with pytest.raises(VqpressInputError, match="unknown digest function 'md5'; use one of blake3, sha256"):
        store.begin_upload("a.ply", 1, "0" * 64, "ply", digest_function="md5")
    assert _files(tmp_path) == []


def test_concurrent_uploads_of_the_same_content(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_bytes=1 << 22)
    data = os.urandom(1 << 20)
    digest = _b3(data)
    barrier = threading.Barrier(4)
    results: list[object] = []

    def run(i: int) -> None:
        up = ArtifactStore(tmp_path, max_bytes=1 << 22).begin_upload(f"{i}.ply", len(data), digest, "ply")
        barrier.wait()
        for j in range(0, len(data), 65536):
            up.write(data[j : j + 65536])
        results.append(up.commit())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert len({r.id for r in results}) == 1 and len({r.name for r in results}) == 1  # type: ignore[attr-defined]
    assert store.read_bytes("blake3:" + digest) == data
    assert _files(tmp_path / "tmp") == []
    assert len(_files(tmp_path / "objects")) == 2


class _FullDisk:
    """A file whose writes fail after ``room`` bytes, as a full disk's do (ENOSPC)."""

    def __init__(self, real: object, room: int) -> None:
        self.real, self.room = real, room

    def write(self, b: bytes | memoryview) -> int:
        if len(b) > self.room:
            raise OSError(28, "No space left on device")
        self.room -= len(b)
        return self.real.write(b)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def test_disk_error_on_the_writing_thread_is_raised_and_leaves_nothing(tmp_path: Path) -> None:
    # Chunks are written on a thread of the upload's own; its failure comes back to the caller, at
    # commit or at a later write, as the store's "full" error, and nothing stays behind.
    store = ArtifactStore(tmp_path, max_bytes=1 << 30)
    data = os.urandom(64 << 10)
    sha = _b3(data)
    up = store.begin_upload("a.ply", len(data), sha, "ply")
    up._file = _FullDisk(up._file, room=16 << 10)  # type: ignore[assignment]
    with pytest.raises(ArtifactStoreFull, match="no space left"):
        with up:
            for i in range(0, len(data), 4096):
                up.write(data[i : i + 4096])
            up.commit()
    assert _files(tmp_path) == []
    # Many chunks after the failure: each write returns (the thread keeps taking them) or raises;
    # none blocks on the bounded queue.
    up = store.begin_upload("b.ply", 1 << 20, _b3(bytes(1 << 20)), "ply")
    up._file = _FullDisk(up._file, room=0)  # type: ignore[assignment]
    with pytest.raises(ArtifactStoreFull):
        with up:
            for _ in range(256):
                up.write(bytes(4096))
            up.commit()
    assert _files(tmp_path) == []


def test_upload_of_views_over_many_writeback_ranges(tmp_path: Path) -> None:
    # Views into received buffers (what the RPC layer passes), over more than one 8 MiB range that
    # the writing thread starts on its way to the disk: the stored bytes and the id are the content's.
    store = ArtifactStore(tmp_path, max_bytes=1 << 30)
    data = os.urandom(20 << 20)
    chunk = (1 << 20) + 5
    with store.begin_upload("big.npy", len(data), _b3(data), "npy") as up:
        buf = memoryview(data)
        for i in range(0, len(data), chunk):
            up.write(buf[i : i + chunk])
        info = up.commit()
    assert info.id == "blake3:" + _b3(data)
    assert store.path(info.id).read_bytes() == data
    assert [p.parent.name for p in _files(tmp_path)] == [_b3(data)[:2]] * 2  # object + sidecar


def test_sha256_ids_of_an_older_store_keep_working(tmp_path: Path) -> None:
    # A store written before BLAKE3 named everything by sha256 under objects/ab/<hex>: those ids still
    # resolve, list and delete beside the new ones, and content may still be stored under sha256.
    old = ArtifactStore(tmp_path, max_bytes=1 << 20, digest_function="sha256")
    legacy = old.put_bytes(b"old scene", "old.ply", "ply")
    assert legacy.id == hashlib.sha256(b"old scene").hexdigest()
    assert old.path(legacy.id) == tmp_path / "objects" / legacy.id[:2] / legacy.id
    store = ArtifactStore(tmp_path, max_bytes=1 << 20)  # today's default
    new = store.put_bytes(b"new scene", "new.ply", "ply")
    assert new.id == "blake3:" + _b3(b"new scene")
    assert store.read_bytes(legacy.id) == b"old scene" and store.stat(legacy.id) == legacy
    assert {i.id for i in store.list()} == {legacy.id, new.id}
    # The same bytes under the other function are another artifact (each id is checked on its own).
    both = store.put_bytes(b"old scene", "again.ply", "ply")
    assert both.id == "blake3:" + _b3(b"old scene") and both.id != legacy.id
    sha = hashlib.sha256(b"abc").hexdigest()
    with store.begin_upload("abc.bin", 3, sha, "bin", digest_function="sha256") as up:
        up.write(b"abc")
        assert up.commit().id == sha
    with pytest.raises(ArtifactIntegrityError, match="has sha256 .* not the 0+ its header declared"):
        with store.begin_upload("abc.bin", 3, "0" * 64, "bin", digest_function="sha256") as up:
            up.write(b"abc")
            up.commit()
    store.delete(legacy.id)
    assert {i.id for i in store.list()} == {new.id, both.id, sha}

"""vqpress._wire, the artifact streams' codec, held to protobuf byte for byte: what it writes is
what protobuf writes, and what it reads from any message is what protobuf reads."""

from __future__ import annotations

import os

import pytest
from google.protobuf.message import DecodeError
from vqpress import _wire
from vqpress.v1 import vqpress_pb2 as pb

# Lengths around every varint boundary the chunks cross (1, 2, 3 and 4 length bytes).
SIZES = [0, 1, 127, 128, 16_383, 16_384, (1 << 20) - 1, 1 << 20, (1 << 21) + 3]


@pytest.mark.parametrize("n", SIZES)
def test_encode_matches_protobuf(n: int) -> None:
    data = os.urandom(n)
    assert _wire.encode_upload_chunk(data) == pb.UploadArtifactRequest(chunk=data).SerializeToString()
    assert _wire.encode_artifact_chunk(data) == pb.ArtifactChunk(data=data).SerializeToString()
    view = memoryview(b"xx" + data)[2:]  # a view, as the client sends slices of a buffer
    assert _wire.encode_upload_chunk(view) == pb.UploadArtifactRequest(chunk=data).SerializeToString()


@pytest.mark.parametrize("n", SIZES)
def test_decode_matches_protobuf(n: int) -> None:
    data = os.urandom(n)
    up = _wire.decode_upload_request(pb.UploadArtifactRequest(chunk=data).SerializeToString())
    assert isinstance(up, memoryview) and bytes(up) == data  # the fast path: a view, no copy
    down = _wire.decode_artifact_chunk(pb.ArtifactChunk(data=data).SerializeToString())
    assert bytes(down) == data


def test_header_round_trips() -> None:
    header = pb.UploadHeader(name="scene.ply", size=12, digest="ab" * 32, kind="ply", digest_function="blake3")
    buf = _wire.encode_upload_header(header)
    assert buf == pb.UploadArtifactRequest(header=header).SerializeToString()
    msg = _wire.decode_upload_request(buf)
    assert isinstance(msg, pb.UploadArtifactRequest) and msg.WhichOneof("part") == "header"
    assert msg.header == header


def test_other_messages_are_read_as_protobuf_reads_them() -> None:
    data = b"payload bytes"
    unknown = b"\x98\x06\x01"  # field 99, varint 1: a field this version does not know
    # An unknown field after the chunk: still the chunk (protobuf skips what it does not know).
    msg = _wire.decode_upload_request(pb.UploadArtifactRequest(chunk=data).SerializeToString() + unknown)
    assert isinstance(msg, pb.UploadArtifactRequest) and msg.chunk == data
    assert _wire.decode_artifact_chunk(pb.ArtifactChunk(data=data).SerializeToString() + unknown) == data
    # The field twice: the last one wins, as in protobuf.
    twice = pb.ArtifactChunk(data=b"first").SerializeToString() + pb.ArtifactChunk(data=data).SerializeToString()
    assert _wire.decode_artifact_chunk(twice) == pb.ArtifactChunk.FromString(twice).data == data
    # A header, then a chunk in the same message: the oneof keeps the last one set.
    header = pb.UploadArtifactRequest(header=pb.UploadHeader(name="a")).SerializeToString()
    both = _wire.decode_upload_request(header + pb.UploadArtifactRequest(chunk=data).SerializeToString())
    assert isinstance(both, pb.UploadArtifactRequest) and both.WhichOneof("part") == "chunk" and both.chunk == data
    # Nothing set at all: an empty message, not an empty chunk.
    empty = _wire.decode_upload_request(b"")
    assert isinstance(empty, pb.UploadArtifactRequest) and empty.WhichOneof("part") is None
    assert _wire.decode_artifact_chunk(b"") == b""
    # An empty chunk that is set is a chunk of no bytes.
    zero = _wire.decode_upload_request(pb.UploadArtifactRequest(chunk=b"").SerializeToString())
    assert isinstance(zero, memoryview) and len(zero) == 0


@pytest.mark.parametrize(
    "buf",
    [
        b"\x12\x05abc",  # says 5 bytes, carries 3
        b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # a varint longer than ten bytes
        b"\x12",  # a tag and no length
    ],
)
def test_broken_messages_fail_as_in_protobuf(buf: bytes) -> None:
    with pytest.raises(DecodeError):
        pb.UploadArtifactRequest.FromString(buf)
    with pytest.raises(DecodeError):
        _wire.decode_upload_request(buf)


def test_method_paths_name_the_service() -> None:
    methods = pb.DESCRIPTOR.services_by_name["Vqpress"].methods_by_name
    assert _wire.UPLOAD_METHOD == "/vqpress.v1.Vqpress/UploadArtifact" and "UploadArtifact" in methods
    assert _wire.DOWNLOAD_METHOD == "/vqpress.v1.Vqpress/DownloadArtifact" and "DownloadArtifact" in methods

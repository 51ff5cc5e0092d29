"""The two messages that carry artifact bytes, encoded and decoded without a pass through protobuf.

``UploadArtifactRequest.chunk`` (field 2) and ``ArtifactChunk.data`` (field 1) are each one
length-delimited bytes field, so a chunk's message is a tag byte, the length as a varint, then the
bytes: encoding is one join (protobuf's constructor and serializer copy the bytes twice), and
decoding is a view into the received buffer (protobuf copies into its arena and again on access).
The bytes on the wire are exactly protobuf's; anything but a message holding that one field alone
(a header, unknown fields, a field repeated) is handed to protobuf, so the result is always what
protobuf would read. The client and the server both use this module; ``tests/test_wire.py`` holds
it to protobuf byte for byte.
"""

from __future__ import annotations

from .v1 import vqpress_pb2 as pb

Bytes = bytes | bytearray | memoryview

_UPLOAD_CHUNK_TAG = 0x12  # UploadArtifactRequest.chunk: field 2, wire type 2 (length-delimited)
_DATA_TAG = 0x0A  # ArtifactChunk.data: field 1, wire type 2
_MAX_VARINT_BYTES = 10


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _single_field(buf: bytes, tag: int) -> memoryview | None:
    """A view of the payload when ``buf`` is exactly one ``tag`` field (tag, varint length, bytes)."""
    if len(buf) < 2 or buf[0] != tag:
        return None
    n, shift, pos = 0, 0, 1
    while True:
        if pos >= len(buf) or pos > _MAX_VARINT_BYTES:
            return None
        b = buf[pos]
        n |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            break
        shift += 7
    if pos + n != len(buf):
        return None  # more fields follow (or the message is short): protobuf decides
    return memoryview(buf)[pos:]


def encode_upload_chunk(data: Bytes) -> bytes:
    """The serialized ``UploadArtifactRequest(chunk=data)``."""
    return b"".join((bytes((_UPLOAD_CHUNK_TAG,)), _varint(len(data)), data))


def encode_upload_header(header: pb.UploadHeader) -> bytes:
    """The serialized ``UploadArtifactRequest(header=header)`` (the first message of an upload)."""
    return pb.UploadArtifactRequest(header=header).SerializeToString()


def encode_upload_digest(hexdigest: str) -> bytes:
    """The serialized ``UploadArtifactRequest(digest=hexdigest)`` (the last message of an upload whose
    header left its digest empty)."""
    return pb.UploadArtifactRequest(digest=hexdigest).SerializeToString()


def decode_upload_request(buf: bytes) -> memoryview | pb.UploadArtifactRequest:
    """A chunk's bytes (a view into ``buf``), or the parsed message when it is anything else."""
    view = _single_field(buf, _UPLOAD_CHUNK_TAG)
    return view if view is not None else pb.UploadArtifactRequest.FromString(buf)


def encode_artifact_chunk(data: Bytes) -> bytes:
    """The serialized ``ArtifactChunk(data=data)`` (no bytes for no data: proto3 leaves out an empty field)."""
    if not len(data):
        return b""
    return b"".join((bytes((_DATA_TAG,)), _varint(len(data)), data))


def decode_artifact_chunk(buf: bytes) -> memoryview | bytes:
    """The bytes an ``ArtifactChunk`` carries (a view into ``buf`` when it holds nothing else)."""
    view = _single_field(buf, _DATA_TAG)
    return view if view is not None else pb.ArtifactChunk.FromString(buf).data


_SERVICE = pb.DESCRIPTOR.services_by_name["Vqpress"].full_name
UPLOAD_METHOD = f"/{_SERVICE}/UploadArtifact"  # the gRPC method paths these codecs are for
DOWNLOAD_METHOD = f"/{_SERVICE}/DownloadArtifact"

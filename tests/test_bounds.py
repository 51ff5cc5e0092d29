"""Bounded by construction: every budget of core/budgets.py refuses what is over it before the work
starts, with the status and a message naming the limit and the value; readers refuse bombs,
lying counts, trailing bytes, deep manifests and non-finite values as format errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import math
import os
import struct
import subprocess
import sys
import tarfile
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
import zstandard
from vqpress.v1 import vqpress_pb2 as pb
from vqpress.v1 import vqpress_pb2_grpc as pb_grpc
from vqpress.vqp import MAGIC, Section, VqpFormatError, decode_splats, parse_header, read_vqp, write_vqp
from vqpress_server.core import budgets
from vqpress_server.core.budgets import BUDGETS
from vqpress_server.core.data.archive import extract_archive
from vqpress_server.core.errors import FormatError, LimitExceeded, VqpressInputError
from vqpress_server.core.render.cameras import Camera, read_cameras_json
from vqpress_server.core.splats.formats import load_scene, read_splats, write_splats

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
DONUT = DATA / "donut_small.ply"
BIKER_SPZ = DATA / "biker_small.spz"
SMALL_ALLOC = 64 << 20  # what refusing a bomb may allocate (bytes): far below what the bomb claims
ENV = {**os.environ, "PYTHONPATH": f"{REPO / 'client'}:{REPO / 'server'}"}


def _peak(fn: object) -> tuple[BaseException, int]:
    """Call fn expecting an exception; return it and the peak traced allocation (bytes)."""
    tracemalloc.start()
    try:
        with pytest.raises(Exception) as ei:
            fn()  # type: ignore[operator]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return ei.value, peak


def _cam(w: int, h: int, name: str = "") -> dict[str, object]:
    f = 0.5 * w
    return {"viewmat": np.eye(4).ravel().tolist(), "K": [f, 0, w / 2, 0, f, h / 2, 0, 0, 1], "width": w,
            "height": h, "name": name}  # fmt: skip


# -- 1. pixel budgets -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[pb_grpc.VqpressStub, str]]:
    from vqpress_server.app import build_app
    from vqpress_server.settings import Settings

    app = build_app(Settings(data_dir=tmp_path_factory.mktemp("data"), port=0, workers=0, poll_s=0.05))
    app.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
    stub = pb_grpc.VqpressStub(channel)
    data = DONUT.read_bytes()
    header = pb.UploadHeader(name="donut.ply", kind="ply", size=len(data), digest=hashlib.sha256(data).hexdigest())
    ref = stub.UploadArtifact(iter([pb.UploadArtifactRequest(header=header), pb.UploadArtifactRequest(chunk=data)]))
    try:
        yield stub, ref.id
    finally:
        channel.close()
        app.stop(0)


def _pb_cams(n: int, w: int, h: int) -> list[pb.Camera]:
    return [pb.Camera(viewmat=np.eye(4).ravel().tolist(), K=[w / 2, 0, w / 2, 0, w / 2, h / 2, 0, 0, 1], width=w,
                      height=h) for _ in range(n)]  # fmt: skip


def test_quantize_and_render_over_the_pixel_budget_are_refused_at_the_rpc(service: tuple) -> None:
    stub, donut = service
    # 1024 evaluation cameras of 8192 x 8192: 68.7 Gpx, once 21.7 GB and the OOM killer.
    req = pb.QuantizeRequest(artifact=pb.ArtifactRef(id=donut), cameras=_pb_cams(1024, 8192, 8192))
    with pytest.raises(grpc.RpcError) as ei:
        stub.Quantize(req, timeout=60)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value.details()
    want = f"1024 cameras ask for {1024 * 8192 * 8192:,} pixels"
    assert want in ei.value.details() and f"max_request_pixels = {BUDGETS.max_request_pixels:,}" in ei.value.details()
    # 100 PNG views of 4096 x 4096: each fits a message, together 1.7 Gpx.
    render = pb.RenderRequest(artifact=pb.ArtifactRef(id=donut), cameras=_pb_cams(100, 4096, 4096))
    with pytest.raises(grpc.RpcError) as ei:
        list(stub.Render(render, timeout=60))
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value.details()
    assert "max_request_pixels" in ei.value.details()
    # Nothing was queued: the refusals came before the job table.
    assert not stub.ListJobs(pb.ListJobsRequest(), timeout=30).jobs


def test_pixel_budget_in_core_where_cameras_are_read(tmp_path: Path) -> None:
    doc = {"cameras": [_cam(8192, 8192, f"v{i}") for i in range(17)]}  # 17 x 67 Mpx > 1.07 Gpx
    (tmp_path / "cameras.json").write_text(json.dumps(doc))
    with pytest.raises(LimitExceeded, match="max_request_pixels") as ei:
        read_cameras_json(tmp_path / "cameras.json")
    assert ei.value.limit == "max_request_pixels" and ei.value.value == 17 * 8192 * 8192
    # One view over max_image_pixels names that limit (a server may set it below the side limits' 8192^2).
    small = budgets.Budgets(max_image_pixels=1 << 20)
    with pytest.raises(LimitExceeded, match="camera 1 is 2048 x 1024 = 2,097,152 pixels, over the limit max_image_pix"):
        budgets.check_pixels([(1024, 1024), (2048, 1024)], "cameras", small)
    # The job spec (what a worker runs) and the library entry point check it too, before any work.
    from vqpress_server.core.splats.compress import compress_file
    from vqpress_server.jobs.specs import CameraSpec, RenderSplatsSpec

    with pytest.raises(LimitExceeded, match="max_request_pixels"):
        RenderSplatsSpec("ab" * 32, tuple(CameraSpec.from_json(_cam(4096, 4096)) for _ in range(100)))
    cams = [Camera(np.eye(4), np.array([[2048.0, 0, 2048], [0, 2048, 2048], [0, 0, 1]]), 4096, 4096)] * 100
    with pytest.raises(LimitExceeded, match="importance_cameras"):
        compress_file(tmp_path / "never-read.ply", tmp_path / "out.vqp", importance_cameras=cams)
    assert not (tmp_path / "out.vqp").exists()


def test_limit_exceeded_is_resource_exhausted() -> None:
    from vqpress_server.rpc.errors import status_for

    code, msg = status_for(LimitExceeded("max_request_pixels", 1, 2, "too many pixels"), "Render")
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and msg == "too many pixels"


# -- 2. decompression bombs -------------------------------------------------------------------
def _zstd_zeros(n: int) -> bytes:
    """A zstd frame of n zero bytes that declares its size, made without holding n bytes."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=1).stream_writer(out, size=n, closefd=False) as w:
        block = bytes(1 << 20)
        for _ in range(n >> 20):
            w.write(block)
        w.write(bytes(n & ((1 << 20) - 1)))
    return out.getvalue()


def _vqp_with(sections: list[dict], payload: bytes, meta: dict | None = None) -> bytes:
    doc = json.dumps({"kind": "splats", "meta": meta or {}, "sections": sections}).encode()
    return struct.pack("<8sHHII", MAGIC, 1, 0, len(doc), zlib.crc32(doc)) + doc + payload


@pytest.fixture(scope="module")
def vqp_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .vqp of a few KB whose one section inflates to 1 GiB of zeros."""
    n = 1 << 30
    frame = _zstd_zeros(n)
    entry = {"name": "means", "dtype": "uint8", "shape": [n], "bits": None, "filters": [], "codec": "zstd",
             "offset": 0, "length": len(frame), "raw_length": n, "crc32": zlib.crc32(frame)}  # fmt: skip
    path = tmp_path_factory.mktemp("bomb") / "bomb.vqp"
    path.write_bytes(_vqp_with([entry], frame))
    return path


def test_vqp_zstd_bomb_is_refused_before_it_inflates(vqp_bomb: Path) -> None:
    data = vqp_bomb.read_bytes()
    assert len(data) < 100_000
    e, peak = _peak(lambda: read_vqp(data, name="bomb.vqp"))  # the numpy reader (vqpress.vqp)
    assert isinstance(e, VqpFormatError) and "bomb.vqp" in str(e) and "decompression bomb" in str(e)
    assert peak < SMALL_ALLOC
    from vqpress_server.core.splats.quantize import decode_vqp_splats  # the server's reader

    e, peak = _peak(lambda: decode_vqp_splats(data, name="bomb.vqp"))
    assert isinstance(e, FormatError) and e.path == "bomb.vqp" and "decode limit" in e.problem
    assert peak < SMALL_ALLOC


def test_vqpress_server_info_refuses_a_vqp_bomb(vqp_bomb: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "vqpress_server.cli", "info", str(vqp_bomb)], capture_output=True,
                       text=True, timeout=300, env=ENV)  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "decompression bomb" in r.stderr and "Traceback" not in r.stderr


def test_a_file_may_decode_to_its_ratio_or_the_floor() -> None:
    assert budgets.BUDGETS.decode_limit(1000) == BUDGETS.decode_floor_bytes
    assert budgets.BUDGETS.decode_limit(1 << 30) == BUDGETS.max_decoded_bytes
    assert budgets.BUDGETS.decode_limit(1 << 20) == BUDGETS.decode_ratio << 20
    # a real quantized scene is far inside: its arrays are a few times the file
    zeros = np.zeros(1 << 16, np.uint8)
    read_vqp(write_vqp("splats", {}, [Section("z", zeros)]))  # 64 KiB from a few hundred bytes: the floor


def test_spz_v4_lying_count_with_consistent_streams_is_refused(tmp_path: Path) -> None:
    """An spz v4 whose header and table of contents agree on 20M points, in streams of zeros."""
    n = 20_000_000
    sizes = [9 * n, n, 3 * n, 3 * n, 4 * n]
    frames = [_zstd_zeros(s) for s in sizes]
    toc = b"".join(struct.pack("<QQ", len(f), s) for f, s in zip(frames, sizes, strict=True))
    head = struct.pack("<IIIBBBB", 0x5053474E, 4, n, 0, 12, 0, 0) + struct.pack("<I", 32) + bytes(12)
    head = head[:15] + bytes([len(sizes)]) + head[16:]
    data = head + toc + b"".join(frames)
    (tmp_path / "lie.spz").write_bytes(data)
    assert len(data) < 200_000
    e, peak = _peak(lambda: read_splats(tmp_path / "lie.spz"))
    assert isinstance(e, FormatError) and "20,000,000 points" in e.problem and "decode budget" in e.problem
    assert peak < SMALL_ALLOC


def _zip_with(path: Path, members: dict[str, int]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, size in members.items():
            with zf.open(name, "w", force_zip64=True) as f:
                block = bytes(1 << 20)
                for _ in range(size >> 20):
                    f.write(block)


def test_zip_bomb_is_refused_from_its_central_directory(tmp_path: Path) -> None:
    _zip_with(tmp_path / "bomb.zip", {"images/a.png": 256 << 20, "transforms.json": 0})  # 256 MiB of zeros
    assert (tmp_path / "bomb.zip").stat().st_size < (2 << 20)
    dest = tmp_path / "out"
    with pytest.raises(FormatError, match="decompression bomb") as ei:
        extract_archive(tmp_path / "bomb.zip", dest, max_bytes=8 << 30, max_files=100)
    assert f"{256 << 20:,} bytes uncompressed" in ei.value.problem
    assert not dest.exists() or not any(dest.rglob("*"))  # not one byte was extracted


def test_zip_whose_directory_lies_cannot_write_more_than_it_declares(tmp_path: Path) -> None:
    """The directory says 1 KiB, the data inflates to 8 MiB: extraction stops at what was declared."""
    with zipfile.ZipFile(tmp_path / "lie.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.bin", bytes(8 << 20))
    raw = bytearray((tmp_path / "lie.zip").read_bytes())
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header and central directory
        at = raw.find(sig)
        struct.pack_into("<I", raw, at + off, 1024)  # uncompressed size
    (tmp_path / "lie.zip").write_bytes(bytes(raw))
    dest = tmp_path / "out"
    with pytest.raises(FormatError):
        extract_archive(tmp_path / "lie.zip", dest, max_bytes=8 << 30, max_files=100)
    assert not dest.exists() or sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) <= 1024


def test_tar_bomb_is_refused_from_its_headers(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("images/zeros.bin")
        info.size = 128 << 20
        tf.addfile(info, io.BytesIO(bytes(128 << 20)))
    (tmp_path / "bomb.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(FormatError, match="decompression bomb"):
        extract_archive(tmp_path / "bomb.tar.gz", tmp_path / "out", max_bytes=8 << 30, max_files=100)


# -- 6. deeply nested manifests ---------------------------------------------------------------
def _nested_vqp(depth: int) -> bytes:
    doc = '{"kind": "splats", "meta": {"x": ' + "[" * depth + "]" * depth + '}, "sections": []}'
    m = doc.encode()
    return struct.pack("<8sHHII", MAGIC, 1, 0, len(m), zlib.crc32(m)) + m


@pytest.mark.parametrize("depth", [33, 5000, 200_000])
def test_deeply_nested_manifest_is_a_format_error_in_every_reader(tmp_path: Path, depth: int) -> None:
    data = _nested_vqp(depth)
    for read in (lambda: parse_header(data, "deep.vqp"), lambda: read_vqp(data, "deep.vqp")):
        with pytest.raises(VqpFormatError, match="deep.vqp: manifest .*nested"):
            read()
    from vqpress.field import decode_field
    from vqpress_server.core.splats.quantize import decode_vqp_splats

    with pytest.raises(VqpFormatError, match="nested"):
        decode_field(data, "deep.vqp")
    with pytest.raises(FormatError, match="nested"):
        decode_vqp_splats(data, "deep.vqp")
    (tmp_path / "deep.vqp").write_bytes(data)
    r = subprocess.run([sys.executable, "-m", "vqpress_server.cli", "info", str(tmp_path / "deep.vqp")],
                       capture_output=True, text=True, timeout=300, env=ENV)  # fmt: skip
    assert r.returncode == 2 and "nested" in r.stderr and "RecursionError" not in r.stderr, r.stderr


def test_deeply_nested_cameras_and_sog_meta_are_format_errors(tmp_path: Path) -> None:
    deep = '{"cameras": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (tmp_path / "cameras.json").write_text(deep)
    with pytest.raises(VqpressInputError, match="nested"):
        read_cameras_json(tmp_path / "cameras.json")
    (tmp_path / "sog").mkdir()
    (tmp_path / "sog" / "meta.json").write_text('{"version": 2, "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(FormatError, match="nested"):
        read_splats(tmp_path / "sog" / "meta.json")


# -- 7. the numpy decoder checks finiteness ---------------------------------------------------
@pytest.fixture(scope="module")
def float_vqp(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from vqpress_server.core.splats.compress import compress_file
    from vqpress_server.core.splats.quantize import QuantizeConfig

    out = tmp_path_factory.mktemp("vqp") / "donut.vqp"
    cfg = QuantizeConfig(dc_codebook=16, sh_codebook=16, scale_codebook=16, rot_codebook=16, kmeans_iters=1,
                         position_precision="fp32", opacity_precision="fp16", importance="none", prune=0.0)  # fmt: skip
    compress_file(DONUT, out, cfg, evaluate=False, device="cpu")
    return out.read_bytes()


def _rewrite(data: bytes, edit: object) -> bytes:
    """The .vqp ``data`` with its sections decoded, changed by ``edit(meta, arrays)``, written again."""
    v = read_vqp(data)
    arrays = {k: a.copy() for k, a in v.sections.items()}
    meta = json.loads(json.dumps(v.manifest))
    edit(meta, arrays)  # type: ignore[operator]
    secs = [Section(k, a, bits=v.entries[k]["bits"]) for k, a in arrays.items()]
    return write_vqp("splats", meta, secs)


CORRUPTIONS = {
    "nan_position": (lambda m, a: a["means"].__setitem__((3, 0), np.nan), "'means' holds 1 non-finite"),
    "inf_position": (lambda m, a: a["means"].__setitem__((0, 2), np.inf), "'means' holds 1 non-finite"),
    "inf_opacity": (lambda m, a: a["opacities"].__setitem__(1, np.float16(np.inf)), "'opacities' holds 1 non-finite"),
    "nan_codebook": (lambda m, a: a["scale_codebook"].__setitem__((0, 0), np.nan), "'scale_codebook' holds 1"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_numpy_decoder_refuses_non_finite_values_naming_file_and_attribute(float_vqp: bytes, case: str) -> None:
    edit, message = CORRUPTIONS[case]
    data = _rewrite(float_vqp, edit)
    with pytest.raises(VqpFormatError) as ei:
        decode_splats(read_vqp(data, name="scene.vqp"))
    assert str(ei.value).startswith("scene.vqp: ") and message in str(ei.value)
    from vqpress_server.core.splats.quantize import decode_vqp_splats

    with pytest.raises(FormatError) as fe:  # the server's decoder: the same message, the same names
        decode_vqp_splats(data, name="scene.vqp")
    assert fe.value.path == "scene.vqp" and message in fe.value.problem


@pytest.mark.parametrize("box", [[-1e308, -1e308, -1e308, 1e308, 1e308, 1e308], [0, 0, 0, 1e39, 1, 1]])
def test_numpy_decoder_refuses_a_box_that_overflows(tmp_path: Path, box: list[float]) -> None:
    from vqpress_server.core.splats.compress import compress_file

    compress_file(DONUT, tmp_path / "d.vqp", evaluate=False, device="cpu")
    v = read_vqp((tmp_path / "d.vqp").read_bytes())
    meta = json.loads(json.dumps(v.manifest))
    meta["position"]["box_min"], meta["position"]["box_max"] = box[:3], box[3:]
    data = write_vqp("splats", meta, [Section(k, a, bits=v.entries[k]["bits"]) for k, a in v.sections.items()])
    with pytest.raises(VqpFormatError) as ei:
        decode_splats(read_vqp(data, name="d.vqp"))
    assert str(ei.value).startswith("d.vqp: position box")


# -- 9. smaller ones --------------------------------------------------------------------------
def test_ply_with_bytes_after_its_declared_count_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t.ply").write_bytes(DONUT.read_bytes() + b"\0" * 68)  # one row more than declared
    with pytest.raises(FormatError, match="68 bytes after the"):
        read_splats(tmp_path / "t.ply")


def test_spz_with_trailing_data_or_garbage_after_gzip_is_refused(tmp_path: Path) -> None:
    write_splats(read_splats(DONUT), tmp_path / "d.spz")
    raw = gzip.decompress((tmp_path / "d.spz").read_bytes())
    (tmp_path / "more.spz").write_bytes(gzip.compress(raw + bytes(40)))  # a count smaller than the data
    with pytest.raises(FormatError, match="more than the 3,000 points the header claims"):
        read_splats(tmp_path / "more.spz")
    (tmp_path / "garbage.spz").write_bytes((tmp_path / "d.spz").read_bytes() + b"garbage!")
    with pytest.raises(FormatError, match="8 bytes of garbage after the gzip stream"):
        read_splats(tmp_path / "garbage.spz")
    (tmp_path / "v4.spz").write_bytes(BIKER_SPZ.read_bytes() + b"\0\0\0")
    with pytest.raises(FormatError, match="3 bytes after the last spz v4 stream"):
        read_splats(tmp_path / "v4.spz")


def test_values_beyond_kmeans_range_name_the_file_and_the_attribute(tmp_path: Path) -> None:
    from vqpress_server.core.splats.compress import compress_file

    s = read_splats(DONUT)
    s.scales[5, 1] = 1e31
    write_splats(s, tmp_path / "huge.ply")
    with pytest.raises(FormatError) as ei:
        compress_file(tmp_path / "huge.ply", tmp_path / "out.vqp", evaluate=False, device="cpu")
    assert ei.value.path == str(tmp_path / "huge.ply") and "'scales' has 1 values beyond ±1e+30" in ei.value.problem


def test_rpc_and_client_codebook_limit_is_kmeans_limit() -> None:
    import vqpress.types
    from vqpress_server.core.errors import ConfigError
    from vqpress_server.core.vq.kmeans import kmeans
    from vqpress_server.rpc.convert import quantize_config

    assert vqpress.types.MAX_CODEBOOK == budgets.MAX_CODEBOOK == 1 << 23
    with pytest.raises(ConfigError, match="2\\^23"):
        quantize_config(pb.QuantizeConfig(dc_codebook=(1 << 23) + 1))
    quantize_config(pb.QuantizeConfig(dc_codebook=1 << 23))
    with pytest.raises(ConfigError, match="too large"):
        kmeans(torch.zeros(4, 3), (1 << 23) + 1)


def test_inf_log_scale_gaussians_are_dropped_and_counted() -> None:
    s = read_splats(DONUT)
    s.scales[[7, 9], 0] = math.inf
    s.scales[11, 2] = -math.inf  # -inf is an invisible splat: set to -20, kept (row 9 once 7 and 9 are gone)
    out, rep = s.repair_non_finite()
    assert rep.scales_dropped == 2 and rep.scales_clamped == 1 and len(out) == len(s) - 2
    keep = torch.ones(len(s), dtype=torch.bool)
    keep[[7, 9]] = False
    assert torch.equal(out.means, s.means[keep]) and float(out.scales[9, 2]) == -20.0
    from vqpress_server.core.errors import NonFiniteError

    with pytest.raises(NonFiniteError, match="scales: 3"):
        s.repair_non_finite(strict=True)


def test_an_interrupted_upload_logs_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from vqpress_server.app import build_app
    from vqpress_server.settings import Settings

    app = build_app(Settings(data_dir=tmp_path, port=0, workers=0))
    app.start()
    child = (
        "import grpc, os, sys\n"
        "from vqpress.v1 import vqpress_pb2 as pb, vqpress_pb2_grpc as pbg\n"
        f"stub = pbg.VqpressStub(grpc.insecure_channel('127.0.0.1:{app.port}'))\n"
        "def gen():\n"
        "    yield pb.UploadArtifactRequest(header=pb.UploadHeader(name='a.ply', size=10 << 20, digest='0' * 64))\n"
        "    for _ in range(3):\n"
        "        yield pb.UploadArtifactRequest(chunk=bytes(1 << 20))\n"
        "    sys.stdin.read()\n"  # until the test has seen the upload begin
        "    os._exit(0)\n"  # then the client dies mid-upload
        "stub.UploadArtifact(gen())\n"
    )
    part = tmp_path / "artifacts" / "tmp"
    try:
        with caplog.at_level(logging.INFO):
            with subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, env=ENV) as proc:
                for _ in range(1200):  # the server has begun writing the upload (bounded generously: 120 s)
                    if part.is_dir() and any(part.glob("*.part")):
                        break
                    time.sleep(0.1)
                assert proc.stdin is not None
                proc.stdin.close()
                assert proc.wait(timeout=120) == 0
            for _ in range(1200):  # the server notices the stream is gone and drops the partial upload
                if not any(part.glob("*.part")):
                    break
                time.sleep(0.1)
            time.sleep(0.5)  # what it logs as the call ends
    finally:
        app.stop(0)
    lines = [rec for rec in caplog.records if "UploadArtifact" in rec.getMessage() or rec.levelno >= logging.ERROR]
    # At most the one INFO line (the server may see the stream end as it ends), never an ERROR or a traceback.
    assert len(lines) <= 1 and all(r.levelno == logging.INFO for r in lines), [r.getMessage() for r in lines]
    assert not any(rec.exc_info for rec in caplog.records)
    assert not list((tmp_path / "artifacts").rglob("*.ply"))  # nothing half-written was kept


def test_serve_refuses_a_token_on_the_command_line(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "vqpress_server.cli", "serve", "--data-dir", str(tmp_path), "--port", "0",
         "--token", "hunter2"], capture_output=True, text=True, timeout=300, env=ENV,
    )  # fmt: skip
    assert r.returncode == 2 and "--token on the command line is visible" in r.stderr and "--token-file" in r.stderr
    assert "hunter2" not in r.stderr and not (tmp_path / "jobs.sqlite3").exists()


def test_serve_reads_its_token_from_a_file(tmp_path: Path) -> None:
    from vqpress_server import cli

    token = tmp_path / "token"
    token.write_text("s3cret\n")
    seen = {}

    def fake_serve(settings: object) -> None:
        seen["token"] = settings.token  # type: ignore[attr-defined]

    import vqpress_server.app

    orig = vqpress_server.app.serve
    vqpress_server.app.serve = fake_serve  # type: ignore[assignment]
    try:
        assert cli.main(["serve", "--data-dir", str(tmp_path / "d"), "--port", "0", "--token-file", str(token)]) == 0
    finally:
        vqpress_server.app.serve = orig  # type: ignore[assignment]
    assert seen["token"] == "s3cret"


def test_load_scene_repairs_a_real_scene_with_inf_scales_without_huge_splats(tmp_path: Path) -> None:
    s = read_splats(DONUT)
    s.scales[::100, 1] = math.inf
    cols = s.tensors()
    assert bool(torch.isposinf(cols["scales"]).any())
    from vqpress_server.core.splats.formats.npz import encode_npz

    (tmp_path / "inf.npz").write_bytes(encode_npz(s))
    out, rep = load_scene(tmp_path / "inf.npz")
    assert rep.scales_dropped == 30 and len(out) == 2970
    assert float(out.scales.max()) < 0  # the donut's splats are small; none was blown up to e^10


def test_npz_whose_arrays_together_inflate_past_the_budget_is_refused(tmp_path: Path) -> None:
    """Every member within deflate's ratio, all of them together a bomb: 2M Gaussians of zeros."""
    n = 2_000_000
    with zipfile.ZipFile(tmp_path / "zeros.npz", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, shape in (("means", (n, 3)), ("quats", (n, 4)), ("scales", (n, 3)), ("opacities", (n,)),
                           ("sh0", (n, 1, 3))):  # fmt: skip
            with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
                left = 4 * math.prod(shape)
                while left:
                    f.write(bytes(min(left, 1 << 20)))
                    left -= min(left, 1 << 20)
    size = (tmp_path / "zeros.npz").stat().st_size
    assert size < 2 << 20
    e, peak = _peak(lambda: read_splats(tmp_path / "zeros.npz"))
    assert isinstance(e, FormatError) and "2,000,000 Gaussians" in e.problem and "decode budget" in e.problem
    assert peak < SMALL_ALLOC

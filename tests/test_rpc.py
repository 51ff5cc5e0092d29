"""The gRPC API over a real loopback server (build_app on port 0, a temp data dir), through the
raw generated stubs: status codes, auth, health, reflection, uploads that leave nothing behind,
jobs, and one render through a real worker process."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from blake3 import blake3
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from vqpress.v1 import vqpress_pb2 as pb
from vqpress.v1 import vqpress_pb2_grpc as pb_grpc
from vqpress_server.app import App, build_app
from vqpress_server.core.errors import ConfigError
from vqpress_server.core.splats.quantize_config import QuantizeConfig
from vqpress_server.jobs.specs import QuantizeSplatsSpec, spec_from_json
from vqpress_server.rpc import convert
from vqpress_server.rpc.errors import status_for
from vqpress_server.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DONUT = REPO / "tests" / "data" / "donut_small.ply"
TOKEN = "correct horse battery staple"
C = grpc.StatusCode


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    a = build_app(Settings(data_dir=tmp_path_factory.mktemp("data"), port=0, workers=1, poll_s=0.05))
    a.start()
    yield a
    a.stop(grace=1.0)


@pytest.fixture(scope="module")
def channel(app: App) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.VqpressStub:
    return pb_grpc.VqpressStub(channel)


def stored_files(app: App) -> set[Path]:
    return {p for p in app.settings.artifacts_dir.rglob("*") if p.is_file()}


def still_serving(channel: grpc.Channel) -> None:
    """After an error the server still answers: health and a real call."""
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    pb_grpc.VqpressStub(channel).ListJobs(pb.ListJobsRequest(limit=1), timeout=5)


def expect_error(channel: grpc.Channel, code: grpc.StatusCode, call: Callable[[], Any], match: str = "") -> str:
    with pytest.raises(grpc.RpcError) as ei:
        result = call()
        if isinstance(result, Iterator):
            list(result)
    err = ei.value
    assert err.code() == code, f"{err.code()}: {err.details()}"
    assert match.lower() in (err.details() or "").lower(), err.details()
    still_serving(channel)
    return err.details()


def upload_messages(
    data: bytes, name: str, kind: str, *, sha256: str | None = None, size: int | None = None, chunk: int = 1 << 20
) -> Iterator[pb.UploadArtifactRequest]:
    """An upload as a client before digest functions sends it: the sha256 in the header's field 3
    and no digest_function (the server takes it as sha256; the artifact's id is the sha256)."""
    header = pb.UploadHeader(
        name=name,
        kind=kind,
        size=len(data) if size is None else size,
        digest=hashlib.sha256(data).hexdigest() if sha256 is None else sha256,
    )
    yield pb.UploadArtifactRequest(header=header)
    for i in range(0, len(data), chunk):
        yield pb.UploadArtifactRequest(chunk=data[i : i + chunk])


def upload(stub: pb_grpc.VqpressStub, data: bytes, name: str, kind: str) -> pb.ArtifactInfo:
    return stub.UploadArtifact(upload_messages(data, name, kind), timeout=30)


def f32(a: np.ndarray) -> pb.Tensor:
    a = np.ascontiguousarray(a, dtype="<f4")
    return pb.Tensor(data=a.tobytes(), shape=list(a.shape), dtype=pb.DTYPE_FLOAT32)


def small_scene(n: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """Gaussians 2..4 units in front of an identity camera, SH degree 1."""
    rng = np.random.default_rng(seed)
    return {
        "means": np.c_[rng.uniform(-1, 1, (n, 2)), rng.uniform(2, 4, n)].astype(np.float32),
        "quats": rng.normal(size=(n, 4)).astype(np.float32),
        "scales": np.full((n, 3), np.log(0.15), np.float32),
        "opacities": rng.uniform(-1, 3, n).astype(np.float32),
        "sh0": rng.normal(0, 1, (n, 1, 3)).astype(np.float32),
        "shN": rng.normal(0, 0.2, (n, 3, 3)).astype(np.float32),
    }


def splats_msg(arrays: dict[str, np.ndarray], sh_degree: int = 1) -> pb.GaussianSplats:
    return pb.GaussianSplats(**{k: f32(v) for k, v in arrays.items()}, sh_degree=sh_degree)


def camera(width: int = 32, height: int = 24, name: str = "front") -> pb.Camera:
    K = [30.0, 0, width / 2, 0, 30.0, height / 2, 0, 0, 1]
    return pb.Camera(viewmat=np.eye(4).ravel().tolist(), K=K, width=width, height=height, name=name)


@pytest.fixture(scope="module")
def donut_id(stub: pb_grpc.VqpressStub) -> str:
    return upload(stub, DONUT.read_bytes(), "donut.ply", "ply").id


# -- health, reflection, auth -------------------------------------------------------------
def test_health_serving_and_reflection_lists_the_service(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "vqpress.v1.Vqpress"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    (resp,) = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for s in resp.list_services_response.service}
    assert {"vqpress.v1.Vqpress", "grpc.health.v1.Health"} <= names


def test_token_required_except_for_health(tmp_path: Path) -> None:
    a = build_app(Settings(data_dir=tmp_path, port=0, workers=0, token=TOKEN))
    a.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{a.port}") as ch:
            stub = pb_grpc.VqpressStub(ch)
            good = (("authorization", f"Bearer {TOKEN}"),)
            for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)):
                with pytest.raises(grpc.RpcError) as ei:
                    stub.ListArtifacts(pb.ListArtifactsRequest(), metadata=metadata, timeout=5)
                assert ei.value.code() == C.UNAUTHENTICATED
                assert "authorization: Bearer" in ei.value.details()
                # streaming methods are refused the same way
                with pytest.raises(grpc.RpcError) as ei:
                    stub.UploadArtifact(upload_messages(b"abc", "a.bin", "bin"), metadata=metadata, timeout=5)
                assert ei.value.code() == C.UNAUTHENTICATED
                with pytest.raises(grpc.RpcError) as ei:
                    list(stub.WatchJob(pb.WatchJobRequest(id="x"), metadata=metadata, timeout=5))
                assert ei.value.code() == C.UNAUTHENTICATED
            health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            info = stub.UploadArtifact(upload_messages(b"abc", "a.bin", "bin"), metadata=good, timeout=5)
            assert info.id == hashlib.sha256(b"abc").hexdigest()
            listed = stub.ListArtifacts(pb.ListArtifactsRequest(), metadata=good, timeout=5)
            assert [x.id for x in listed.artifacts] == [info.id]
    finally:
        a.stop(grace=0.5)


def test_tls_serves_over_a_secure_channel_only(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    a = build_app(Settings(data_dir=tmp_path / "data", port=0, workers=0, tls_cert=cert, tls_key=key))
    a.start()
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{a.port}", creds) as ch:
            health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            assert pb_grpc.VqpressStub(ch).ListJobs(pb.ListJobsRequest(), timeout=10).jobs == []
        with grpc.insecure_channel(f"127.0.0.1:{a.port}") as ch, pytest.raises(grpc.RpcError) as ei:
            pb_grpc.VqpressStub(ch).ListJobs(pb.ListJobsRequest(), timeout=5)
        assert ei.value.code() == C.UNAVAILABLE
    finally:
        a.stop(grace=0.5)


# -- artifacts ----------------------------------------------------------------------------
def test_upload_stat_download_delete(app: App, stub: pb_grpc.VqpressStub, channel: grpc.Channel) -> None:
    data = np.random.default_rng(1).bytes(2_500_000)  # three chunks, the last partial
    info = upload(stub, data, "blob.bin", "bin")
    assert (info.id, info.size, info.name, info.kind, info.source_job) == (
        hashlib.sha256(data).hexdigest(),
        len(data),
        "blob.bin",
        "bin",
        "",
    )
    assert upload(stub, data, "blob.bin", "bin").id == info.id  # idempotent
    assert stub.StatArtifact(pb.StatArtifactRequest(id=info.id), timeout=5) == info
    assert info.id in {a.id for a in stub.ListArtifacts(pb.ListArtifactsRequest(kind="bin"), timeout=5).artifacts}
    chunks = [c.data for c in stub.DownloadArtifact(pb.DownloadArtifactRequest(id=info.id), timeout=30)]
    assert b"".join(chunks) == data and len(chunks) == 3
    stub.DeleteArtifact(pb.DeleteArtifactRequest(id=info.id), timeout=5)
    expect_error(channel, C.NOT_FOUND, lambda: stub.StatArtifact(pb.StatArtifactRequest(id=info.id), timeout=5))


def test_artifact_streams_read_any_protobuf_encoding(
    app: App, stub: pb_grpc.VqpressStub, channel: grpc.Channel
) -> None:
    # The server reads chunks through vqpress._wire: a chunk message that carries a field this
    # version does not know, or a second header after the first, is read as protobuf reads it.
    data = np.random.default_rng(7).bytes(300_000)
    sha = hashlib.sha256(data).hexdigest()
    header = pb.UploadHeader(name="odd.bin", kind="bin", size=len(data), digest=sha)
    unknown = b"\x98\x06\x01"  # field 99 = 1
    raw_upload = channel.stream_unary(
        "/vqpress.v1.Vqpress/UploadArtifact", response_deserializer=pb.ArtifactInfo.FromString
    )
    msgs = [pb.UploadArtifactRequest(header=header).SerializeToString()]
    msgs += [pb.UploadArtifactRequest(chunk=data[i : i + 65536]).SerializeToString() + unknown
             for i in range(0, len(data), 65536)]  # fmt: skip
    info = raw_upload(iter(msgs), timeout=30)
    assert info.id == sha and info.size == len(data)
    # What the server sends is protobuf's encoding: the generated stub reads it.
    chunks = [c.data for c in stub.DownloadArtifact(pb.DownloadArtifactRequest(id=sha), timeout=30)]
    assert b"".join(chunks) == data
    extra_header = [msgs[0], msgs[1], pb.UploadArtifactRequest(header=header).SerializeToString()]
    expect_error(channel, C.INVALID_ARGUMENT, lambda: raw_upload(iter(extra_header), timeout=5), "one header")
    stub.DeleteArtifact(pb.DeleteArtifactRequest(id=sha), timeout=5)


def test_upload_with_its_digest_last(app: App, stub: pb_grpc.VqpressStub, channel: grpc.Channel) -> None:
    """A header with an empty digest is followed by the bytes and then the digest: the sender hashes
    while it sends. A wrong, missing, misplaced or doubled digest stores nothing."""
    assert stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=5).upload_digest_last
    data = np.random.default_rng(11).bytes(200_000)
    sha = hashlib.sha256(data).hexdigest()
    chunks = [pb.UploadArtifactRequest(chunk=data[i : i + 65536]) for i in range(0, len(data), 65536)]

    def msgs(header_sha: str, *tail: pb.UploadArtifactRequest, body: list | None = None) -> Iterator:
        header = pb.UploadHeader(name="t.bin", kind="bin", size=len(data), digest=header_sha)
        head = pb.UploadArtifactRequest(header=header)
        return iter([head, *(chunks if body is None else body), *tail])

    before = stored_files(app)
    for case, code, match in (
        (msgs("", pb.UploadArtifactRequest(digest=hashlib.sha256(b"x").hexdigest())), C.DATA_LOSS, "last message"),
        (msgs(""), C.INVALID_ARGUMENT, "must carry the digest"),
        (msgs("", pb.UploadArtifactRequest(digest="zz")), C.INVALID_ARGUMENT, "64 hex digits"),
        (msgs(sha, pb.UploadArtifactRequest(digest=sha)), C.INVALID_ARGUMENT, "takes no digest message"),
        (msgs("", pb.UploadArtifactRequest(digest=sha), chunks[0]), C.INVALID_ARGUMENT, "nothing may follow"),
        (msgs("", pb.UploadArtifactRequest(digest=sha), body=chunks[:-1]), C.DATA_LOSS, "ended after"),
    ):
        expect_error(channel, code, lambda case=case: stub.UploadArtifact(case, timeout=10), match)
        assert stored_files(app) == before
    info = stub.UploadArtifact(msgs("", pb.UploadArtifactRequest(digest=sha.upper())), timeout=30)
    assert info.id == sha and info.size == len(data)
    again = stub.UploadArtifact(msgs("", pb.UploadArtifactRequest(digest=sha)), timeout=30)  # stored content
    assert again.id == sha
    assert b"".join(c.data for c in stub.DownloadArtifact(pb.DownloadArtifactRequest(id=sha), timeout=30)) == data
    stub.DeleteArtifact(pb.DeleteArtifactRequest(id=sha), timeout=5)


def test_upload_with_wrong_hash_or_size_is_data_loss_and_stores_nothing(
    app: App, stub: pb_grpc.VqpressStub, channel: grpc.Channel
) -> None:
    before = stored_files(app)
    data = b"some scene bytes" * 1000
    wrong = hashlib.sha256(b"other").hexdigest()
    for kw, match in (
        ({"sha256": wrong}, "sha256"),
        ({"size": len(data) + 1}, "ended after"),
        ({"size": len(data) - 1}, "more than"),
    ):
        expect_error(
            channel,
            C.DATA_LOSS,
            lambda kw=kw: stub.UploadArtifact(upload_messages(data, "x.ply", "ply", **kw, chunk=4096), timeout=10),
            match,
        )
        assert stored_files(app) == before
    expect_error(
        channel,
        C.INVALID_ARGUMENT,
        lambda: stub.UploadArtifact(iter([pb.UploadArtifactRequest(chunk=b"no header")]), timeout=5),
        "header",
    )
    expect_error(
        channel,
        C.INVALID_ARGUMENT,
        lambda: stub.UploadArtifact(upload_messages(data, "x.ply", "ply", sha256="not-hex"), timeout=5),
        "sha256",
    )
    expect_error(
        channel,
        C.RESOURCE_EXHAUSTED,
        lambda: stub.UploadArtifact(upload_messages(data, "x.ply", "ply", size=1 << 50), timeout=5),
        "accepts artifacts up to",
    )
    assert stored_files(app) == before


def test_interrupted_upload_leaves_nothing(app: App, stub: pb_grpc.VqpressStub, channel: grpc.Channel) -> None:
    before = stored_files(app)
    data = np.random.default_rng(2).bytes(3 << 20)
    release = threading.Event()

    def stalled() -> Iterator[pb.UploadArtifactRequest]:
        msgs = upload_messages(data, "big.ply", "ply")
        yield next(msgs)  # header
        yield next(msgs)  # the first MiB
        release.wait(10)  # the client dies here, midway

    fut = stub.UploadArtifact.future(stalled(), timeout=30)
    deadline = time.monotonic() + 60  # a bound that only stops a hang
    while not any(p.stat().st_size >= 1 << 20 for p in stored_files(app) - before):
        assert time.monotonic() < deadline, "the server never started writing the upload"
        time.sleep(0.01)
    fut.cancel()
    release.set()
    deadline = time.monotonic() + 60  # a bound that only stops a hang
    while stored_files(app) != before:
        assert time.monotonic() < deadline, f"left behind: {stored_files(app) - before}"
        time.sleep(0.01)
    still_serving(channel)


# -- validation at submit time ------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "match"),
    [
        (pb.QuantizeConfig(dc_codebook=0), "dc_codebook"),
        (pb.QuantizeConfig(sh_codebook=(1 << 24) + 1), "sh_codebook"),
        (pb.QuantizeConfig(rot_codebook=1 << 30), "rot_codebook"),
        (pb.QuantizeConfig(kmeans_iters=1001), "kmeans_iters"),
        (pb.QuantizeConfig(preset="tiny"), "preset"),
        (pb.QuantizeConfig(position_precision=pb.PRECISION_UINT8), "position_precision"),
        (pb.QuantizeConfig(opacity_precision=pb.PRECISION_FIXED16), "opacity_precision"),
        (pb.QuantizeConfig(sh_degree=4), "sh_degree"),
    ],
)
def test_absurd_quantize_config_is_invalid_argument(
    stub: pb_grpc.VqpressStub, channel: grpc.Channel, donut_id: str, config: pb.QuantizeConfig, match: str
) -> None:
    req = pb.QuantizeRequest(artifact=pb.ArtifactRef(id=donut_id), config=config)
    expect_error(channel, C.INVALID_ARGUMENT, lambda: stub.Quantize(req, timeout=5), match)
    exp = pb.ExportRequest(artifact=pb.ArtifactRef(id=donut_id), format=pb.EXPORT_FORMAT_VQP, config=config)
    expect_error(channel, C.INVALID_ARGUMENT, lambda: stub.Export(exp, timeout=5), match)


def test_files_that_are_not_scenes(stub: pb_grpc.VqpressStub, channel: grpc.Channel) -> None:
    garbage = upload(stub, np.random.default_rng(3).bytes(5000), "scene.ply", "ply")
    req = pb.QuantizeRequest(artifact=pb.ArtifactRef(id=garbage.id))
    expect_error(channel, C.INVALID_ARGUMENT, lambda: stub.Quantize(req, timeout=5), "header")
    short_splat = upload(stub, b"\0" * 33, "scene.splat", "splat")
    req = pb.RenderRequest(artifact=pb.ArtifactRef(id=short_splat.id), cameras=[camera()])
    expect_error(channel, C.INVALID_ARGUMENT, lambda: stub.Render(req, timeout=5), "multiple of 32")
    npz = io.BytesIO()
    np.savez(npz, means=np.zeros((1, 3)))
    partial = upload(stub, npz.getvalue(), "scene.npz", "npz")
    req = pb.QuantizeRequest(artifact=pb.ArtifactRef(id=partial.id))
    expect_error(channel, C.INVALID_ARGUMENT, lambda: stub.Quantize(req, timeout=5), "quats")
    report = upload(stub, b'{"ratio": 12}', "report.json", "json")
    exp = pb.ExportRequest(artifact=pb.ArtifactRef(id=report.id), format=pb.EXPORT_FORMAT_PLY)
    expect_error(channel, C.FAILED_PRECONDITION, lambda: stub.Export(exp, timeout=5), "not a scene")


def test_bad_inline_splats_are_invalid_argument(stub: pb_grpc.VqpressStub, channel: grpc.Channel) -> None:
    good = small_scene()

    def quantize(msg: pb.GaussianSplats, strict: bool = False) -> Callable[[], Any]:
        req = pb.QuantizeRequest(splats=msg, config=pb.QuantizeConfig(strict=strict))
        return lambda: stub.Quantize(req, timeout=5)

    as_f64 = splats_msg(good)
    as_f64.means.CopyFrom(pb.Tensor(data=good["means"].astype("<f8").tobytes(), shape=[40, 3], dtype=pb.DTYPE_FLOAT64))
    expect_error(channel, C.INVALID_ARGUMENT, quantize(as_f64), "DTYPE_FLOAT32")
    short = splats_msg(good)
    short.quats.data = short.quats.data[:-4]
    expect_error(channel, C.INVALID_ARGUMENT, quantize(short), "bytes of data")
    mismatched = splats_msg({**good, "scales": good["scales"][:39]})
    expect_error(channel, C.INVALID_ARGUMENT, quantize(mismatched), "splats.scales")
    wrong_degree = splats_msg(good, sh_degree=2)
    expect_error(channel, C.INVALID_ARGUMENT, quantize(wrong_degree), "splats.shN")
    empty = splats_msg({k: v[:0] for k, v in good.items()})
    expect_error(channel, C.INVALID_ARGUMENT, quantize(empty), "no Gaussians")
    nan = {**good, "opacities": good["opacities"].copy()}
    nan["opacities"][5] = np.nan
    expect_error(channel, C.INVALID_ARGUMENT, quantize(splats_msg(nan), strict=True), "non-finite")
    ref = quantize(splats_msg(nan), strict=False)()  # repaired by the worker instead
    stub.CancelJob(pb.CancelJobRequest(id=ref.id), timeout=5)
    bad_cam = camera()
    del bad_cam.K[:]
    req = pb.RenderRequest(splats=splats_msg(good), cameras=[bad_cam])
    expect_error(channel, C.INVALID_ARGUMENT, lambda: stub.Render(req, timeout=5), "K 9")
    req = pb.RenderRequest(splats=splats_msg(good))
    expect_error(channel, C.INVALID_ARGUMENT, lambda: stub.Render(req, timeout=5), "cameras")
    req = pb.QuantizeRequest()
    expect_error(channel, C.INVALID_ARGUMENT, lambda: stub.Quantize(req, timeout=5), "source")
    req = pb.QuantizeRequest(field=pb.NeuralField())
    expect_error(channel, C.INVALID_ARGUMENT, lambda: stub.Quantize(req, timeout=5), "field has no data")


def test_unknown_ids_are_not_found(stub: pb_grpc.VqpressStub, channel: grpc.Channel) -> None:
    missing = "0" * 64
    expect_error(channel, C.NOT_FOUND, lambda: stub.StatArtifact(pb.StatArtifactRequest(id=missing), timeout=5))
    expect_error(channel, C.NOT_FOUND, lambda: stub.StatArtifact(pb.StatArtifactRequest(id="../../etc"), timeout=5))
    expect_error(channel, C.NOT_FOUND, lambda: stub.DownloadArtifact(pb.DownloadArtifactRequest(id=missing), timeout=5))
    expect_error(channel, C.NOT_FOUND, lambda: stub.DeleteArtifact(pb.DeleteArtifactRequest(id=missing), timeout=5))
    req = pb.QuantizeRequest(artifact=pb.ArtifactRef(id=missing))
    expect_error(channel, C.NOT_FOUND, lambda: stub.Quantize(req, timeout=5))
    for call in (
        lambda: stub.GetJob(pb.GetJobRequest(id="nope"), timeout=5),
        lambda: stub.WatchJob(pb.WatchJobRequest(id="nope"), timeout=5),
        lambda: stub.CancelJob(pb.CancelJobRequest(id="nope"), timeout=5),
    ):
        expect_error(channel, C.NOT_FOUND, call, "no job")


def test_train_checks_its_dataset_at_submit(stub: pb_grpc.VqpressStub, channel: grpc.Channel, donut_id: str) -> None:
    def train(artifact_id: str, **config: Any) -> Callable[[], Any]:
        req = pb.TrainRequest(dataset=pb.DatasetSource(archive=pb.ArtifactRef(id=artifact_id)), **config)
        return lambda: stub.Train(req, timeout=5)

    splats = {"splats": pb.SplatTrainConfig(steps=10)}
    field = {"field": pb.FieldTrainConfig(steps=10)}
    expect_error(channel, C.INVALID_ARGUMENT, lambda: stub.Train(pb.TrainRequest(), timeout=5), "needs a config")
    expect_error(channel, C.INVALID_ARGUMENT, lambda: stub.Train(pb.TrainRequest(**splats), timeout=5), "dataset")
    expect_error(channel, C.NOT_FOUND, train("0" * 64, **splats))
    expect_error(channel, C.FAILED_PRECONDITION, train(donut_id, **splats), "is a scene, not a training dataset")
    text = stub.UploadArtifact(upload_messages(b"just some notes\n" * 40, "photos.zip", "dataset"), timeout=5)
    expect_error(channel, C.INVALID_ARGUMENT, train(text.id, **splats), "neither a zip nor a tar")
    png = stub.UploadArtifact(upload_messages(b"\x89PNG\r\n\x1a\n" + bytes(64), "a.png", "png"), timeout=5)
    expect_error(channel, C.INVALID_ARGUMENT, train(png.id, **splats), "content is an image")
    # A field accepts the image (its content is only read by the worker): the job is queued.
    ref = train(png.id, **field)()
    assert stub.GetJob(pb.GetJobRequest(id=ref.id), timeout=5).kind == pb.JOB_KIND_TRAIN_FIELD
    stub.CancelJob(pb.CancelJobRequest(id=ref.id), timeout=5)


def test_unexpected_exception_is_internal_with_a_logged_incident(caplog: pytest.LogCaptureFixture) -> None:
    code, message = status_for(RuntimeError("boom"), "VqpressServicer.GetJob")
    assert code == C.INTERNAL
    incident = message.split("incident ")[1].split(",")[0]
    assert any(incident in r.getMessage() and r.exc_info for r in caplog.records)


# -- jobs and work ------------------------------------------------------------------------
def test_quantize_job_lifecycle_is_visible(tmp_path: Path) -> None:
    a = build_app(Settings(data_dir=tmp_path, port=0, workers=0))  # no worker: the job stays queued
    a.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{a.port}") as ch:
            stub = pb_grpc.VqpressStub(ch)
            scene = upload(stub, DONUT.read_bytes(), "donut.ply", "ply")
            ref = stub.Quantize(
                pb.QuantizeRequest(
                    artifact=pb.ArtifactRef(id=scene.id), config=pb.QuantizeConfig(preset="high_ratio", dc_codebook=64)
                ),
                timeout=5,
            )
            status = stub.GetJob(pb.GetJobRequest(id=ref.id), timeout=5)
            assert (status.kind, status.state) == (pb.JOB_KIND_QUANTIZE, pb.JOB_STATE_QUEUED)
            stored = spec_from_json(a.jobs.get(ref.id).spec)  # the typed spec the worker will run
            assert isinstance(stored, QuantizeSplatsSpec) and stored.source == scene.id
            assert stored.config == QuantizeConfig.from_preset("high_ratio", dc_codebook=64)
            listed = stub.ListJobs(pb.ListJobsRequest(states=[pb.JOB_STATE_QUEUED]), timeout=5)
            assert ref.id in [j.id for j in listed.jobs]
            watch = stub.WatchJob(pb.WatchJobRequest(id=ref.id), timeout=10)
            assert next(watch).state == pb.JOB_STATE_QUEUED
            cancelled = stub.CancelJob(pb.CancelJobRequest(id=ref.id), timeout=5)
            assert cancelled.state == pb.JOB_STATE_CANCELLED and cancelled.finished_at > 0
            assert [s.state for s in watch] == [pb.JOB_STATE_CANCELLED]  # then the stream ends
            # A Render whose caller gives up (deadline) cancels its job instead of leaving it queued.
            req = pb.RenderRequest(artifact=pb.ArtifactRef(id=scene.id), cameras=[camera()])
            expect_error(ch, C.DEADLINE_EXCEEDED, lambda: stub.Render(req, timeout=0.5))
            deadline = time.monotonic() + 60  # a bound that only stops a hang
            while True:
                (render_job,) = [j for j in a.jobs.list() if j.kind.value == "render"]
                if render_job.state.value == "CANCELLED":
                    break
                assert time.monotonic() < deadline, render_job.state
                time.sleep(0.05)
    finally:
        a.stop(grace=0.5)


def test_render_streams_the_workers_images(app: App, stub: pb_grpc.VqpressStub) -> None:
    import torch
    from vqpress_server.core.render.cameras import Camera
    from vqpress_server.core.render.splats import render
    from vqpress_server.core.splats.model import GaussianSplats

    arrays = small_scene()
    cams = [camera(32, 24, "front"), camera(20, 16, "small")]
    req = pb.RenderRequest(
        splats=splats_msg(arrays),
        cameras=cams,
        encoding=pb.IMAGE_ENCODING_FLOAT32,
        background=pb.Color(r=0.0, g=0.5, b=1.0),
    )
    images = list(stub.Render(req, timeout=60))
    assert [(i.index, i.name, i.width, i.height) for i in images] == [(0, "front", 32, 24), (1, "small", 20, 16)]
    splats = GaussianSplats.from_numpy(**arrays)
    for img, cam in zip(images, cams, strict=True):
        got = convert.array_from_tensor(img.rgb, "rgb")
        ref_cam = Camera(viewmat=np.eye(4), K=np.array(cam.K).reshape(3, 3), width=cam.width, height=cam.height)
        want = render(splats, ref_cam, background=(0.0, 0.5, 1.0), backend="torch").numpy()
        assert got.shape == (cam.height, cam.width, 3) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert torch.from_numpy(got.copy()).std() > 0.01  # the scene is in view, not just background
    png = list(stub.Render(pb.RenderRequest(splats=splats_msg(arrays), cameras=cams[:1]), timeout=60))
    assert png[0].png.startswith(b"\x89PNG\r\n\x1a\n")
    # The images came from the worker through the outbox, not through the artifact store: the jobs
    # ran as streamed renders, have no results, stored no image, and left no outbox behind.
    renders = [j for j in app.jobs.list(limit=10) if j.kind.value == "render"][:2]
    assert [j.state.value for j in renders] == ["SUCCEEDED", "SUCCEEDED"]
    assert all(spec_from_json(j.spec).stream and j.results == [] for j in renders)  # type: ignore[attr-defined]
    assert not [i for i in app.store.list() if i.source_job in {j.id for j in renders}]
    assert not any(app.settings.outbox_dir.iterdir())
    # Each job says where its time went: the renders and the image files, within its own seconds.
    for j in renders:
        m = j.metrics
        assert m["render_s"] > 0 and m["encode_s"] > 0 and m["render_s"] + m["encode_s"] <= m["seconds"], m


def test_render_through_stored_results_when_workers_cannot_stream(tmp_path: Path) -> None:
    # An executor whose workers do not share the data directory (Ray actors) hands a Render's
    # images back as the job's stored results; the call reads them from the store, as before.
    from vqpress_server.artifacts import ArtifactStore
    from vqpress_server.jobs.table import JobTable
    from vqpress_server.jobs.worker import WorkerPool
    from vqpress_server.rpc.server import create_server
    from vqpress_server.rpc.servicer import VqpressServicer

    settings = Settings(data_dir=tmp_path / "data", port=0, workers=1)
    store = ArtifactStore(settings.artifacts_dir, settings.max_artifact_bytes)
    jobs = JobTable(settings.jobs_db)
    pool = WorkerPool(settings)
    servicer = VqpressServicer(settings, store, jobs, pool.notify, stream_renders=False)
    rpc = create_server(servicer, settings)
    pool.start()
    rpc.server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{rpc.port}") as ch:
            req = pb.RenderRequest(splats=splats_msg(small_scene()), cameras=[camera(16, 12, "a"), camera(8, 8, "b")])
            images = list(pb_grpc.VqpressStub(ch).Render(req, timeout=120))
        assert [(i.index, i.name, i.width, i.height) for i in images] == [(0, "a", 16, 12), (1, "b", 8, 8)]
        (job,) = [j for j in jobs.list() if j.kind.value == "render"]
        assert not spec_from_json(job.spec).stream  # type: ignore[attr-defined]
        assert [store.read_bytes(r) for r in job.results] == [i.png for i in images]
    finally:
        rpc.server.stop(0).wait()
        pool.stop()
        jobs.close()


def test_render_of_a_scene_the_worker_cannot_read_fails_as_invalid_argument_with_its_reason(
    stub: pb_grpc.VqpressStub, channel: grpc.Channel
) -> None:
    header = b"ply\nformat binary_little_endian 1.0\nelement vertex 1000\nproperty float x\nend_header\n"
    truncated = upload(stub, header + b"\0" * 40, "truncated.ply", "ply")  # the header passes, the body is short
    req = pb.RenderRequest(
        artifact=pb.ArtifactRef(id=truncated.id), cameras=[camera()], encoding=pb.IMAGE_ENCODING_FLOAT32
    )
    expect_error(channel, C.INVALID_ARGUMENT, lambda: stub.Render(req, timeout=60), "truncated")


def test_spec_config_builds_the_quantizers_config() -> None:
    """The RPC layer builds the QuantizeConfig the request asked for, and a spec's JSON keeps it."""
    from vqpress_server.core.splats import quantize

    def quantize_config(cfg: QuantizeConfig) -> QuantizeConfig:  # through the job table's JSON
        spec = spec_from_json(json.loads(json.dumps(QuantizeSplatsSpec("ab" * 32, cfg).to_json())))
        assert isinstance(spec, QuantizeSplatsSpec)
        return spec.config

    msg = pb.QuantizeConfig(
        preset="high_quality",
        sh_codebook=100,
        kmeans_iters=0,
        seed=7,
        position_precision=pb.PRECISION_FP16,
        opacity_precision=pb.PRECISION_FP16,
        entropy=pb.ENTROPY_NONE,
        sh_degree=1,
        strict=True,
    )
    cfg = quantize_config(convert.quantize_config(msg))
    assert cfg == quantize.QuantizeConfig(
        dc_codebook=16384,
        sh_codebook=100,
        scale_codebook=16384,
        rot_codebook=16384,
        kmeans_iters=0,
        seed=7,
        position_precision="fp16",
        opacity_precision="fp16",
        entropy="none",
        sh_degree=1,
        strict=True,
        position_bits=16,  # the preset's
        prune=0.0,
    )
    assert quantize_config(convert.quantize_config(pb.QuantizeConfig())) == quantize.QuantizeConfig()
    weighted = pb.QuantizeConfig(importance=pb.IMPORTANCE_NONE, position_bits=12, prune=0.25)
    cfg = quantize_config(convert.quantize_config(weighted))
    assert (cfg.importance, cfg.position_bits, cfg.prune) == ("none", 12, 0.25)
    for bad, field in (
        (pb.QuantizeConfig(position_bits=17), "position_bits"),
        (pb.QuantizeConfig(prune=0.95), "prune"),
    ):
        with pytest.raises(ConfigError, match=field):
            convert.quantize_config(bad)


def test_uploads_named_by_blake3(app: App, stub: pb_grpc.VqpressStub, channel: grpc.Channel) -> None:
    """A server names new content by BLAKE3 and says so; an upload in BLAKE3 is checked in BLAKE3,
    its id is "blake3:<hex>", and a digest function the server does not know stores nothing."""
    info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=30)
    assert list(info.digest_functions) == ["blake3", "sha256"]
    data = np.random.default_rng(5).bytes(150_000)
    b3 = blake3(data).hexdigest()
    chunks = [pb.UploadArtifactRequest(chunk=data[i : i + 65536]) for i in range(0, len(data), 65536)]

    def msgs(digest: str, function: str = "blake3", *tail: pb.UploadArtifactRequest) -> Iterator:
        header = pb.UploadHeader(name="b.bin", kind="bin", size=len(data), digest=digest, digest_function=function)
        return iter([pb.UploadArtifactRequest(header=header), *chunks, *tail])

    before = stored_files(app)
    for case, code, match in (
        (msgs(blake3(b"x").hexdigest()), C.DATA_LOSS, "has blake3 "),
        (msgs(hashlib.sha256(data).hexdigest()), C.DATA_LOSS, "has blake3 "),  # a sha256 declared as blake3
        (msgs(b3, "md5"), C.INVALID_ARGUMENT, "digest_function 'md5' is not one this server takes: blake3, sha256"),
        (msgs("", "blake3", pb.UploadArtifactRequest(digest="zz")), C.INVALID_ARGUMENT, "its blake3 as 64 hex"),
    ):
        expect_error(channel, code, lambda case=case: stub.UploadArtifact(case, timeout=30), match)
        assert stored_files(app) == before
    stored = stub.UploadArtifact(msgs(b3), timeout=30)
    assert stored.id == "blake3:" + b3 and stored.size == len(data)
    last = stub.UploadArtifact(msgs("", "blake3", pb.UploadArtifactRequest(digest=b3)), timeout=30)
    assert last.id == stored.id
    assert stub.StatArtifact(pb.StatArtifactRequest(id=stored.id), timeout=30) == stored
    got = b"".join(c.data for c in stub.DownloadArtifact(pb.DownloadArtifactRequest(id=stored.id), timeout=30))
    assert got == data
    # The same bytes sent the old way are stored under their sha256 too, and each id lists.
    old = upload(stub, data, "b.bin", "bin")
    assert old.id == hashlib.sha256(data).hexdigest()
    assert {stored.id, old.id} <= {a.id for a in stub.ListArtifacts(pb.ListArtifactsRequest(), timeout=30).artifacts}
    for bad in ("blake3:" + b3[:-1], "sha256:" + old.id, "blake3:../" + b3[3:]):
        stat = pb.StatArtifactRequest(id=bad)
        expect_error(channel, C.NOT_FOUND, lambda stat=stat: stub.StatArtifact(stat, timeout=30))
    for aid in (stored.id, old.id):
        stub.DeleteArtifact(pb.DeleteArtifactRequest(id=aid), timeout=30)

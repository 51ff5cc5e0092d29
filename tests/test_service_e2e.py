"""The service end to end through the SDK and the CLI: a real loopback server (build_app on port 0,
a temp data dir, one CPU worker process), started once for the module."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import vqpress
import vqpress.client
from blake3 import blake3
from vqpress import Camera, Client, JobState, QuantizeConfig, VqpressError
from vqpress.errors import translate_errors
from vqpress.png import decode_png
from vqpress.types import ServerInfo
from vqpress.v1 import vqpress_pb2 as pb
from vqpress.vqp import decode_splats, read_vqp

REPO = Path(__file__).resolve().parents[1]
DONUT = REPO / "tests" / "data" / "donut_small.ply"
# Small codebooks and few iterations: a quantize job takes well under a second of k-means.
FAST = QuantizeConfig(dc_codebook=256, sh_codebook=64, scale_codebook=256, rot_codebook=256, kmeans_iters=5, seed=7)
# Enough k-means work (thousands of Lloyd iterations) that a job is surely still running when we act on it.
SLOW = QuantizeConfig(dc_codebook=2048, sh_codebook=2048, scale_codebook=2048, rot_codebook=2048, kmeans_iters=1000)

pytestmark = pytest.mark.timeout(120)


@dataclass
class Service:
    app: object
    address: str
    client: Client
    data_dir: Path


def _settings(data_dir: Path, **over: object):  # type: ignore[no-untyped-def]
    from vqpress_server.settings import Settings

    vals = dict(data_dir=data_dir, host="127.0.0.1", port=0, workers=1, lease_s=3.0, heartbeat_s=0.5, poll_s=0.05)
    vals.update(over)
    return Settings(**vals)  # type: ignore[arg-type]


def _start(data_dir: Path, **over: object) -> tuple[object, str]:
    from vqpress_server.app import build_app

    app = build_app(_settings(data_dir, **over))
    app.start()
    return app, f"127.0.0.1:{app.port}"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data_dir = tmp_path_factory.mktemp("vqpress-data")
    app, address = _start(data_dir)
    client = Client(address, timeout=30)
    try:
        yield Service(app, address, client, data_dir)
    finally:
        client.close()
        app.stop(0)


def service_camera() -> Camera:
    """One 64x48 view of the donut, from the server's own orbit cameras (so it sees the scene)."""
    from vqpress_server.core.render.cameras import orbit_cameras
    from vqpress_server.core.splats.formats import read_splats

    cam = orbit_cameras(read_splats(DONUT), n=1, width=64, height=48)[0]
    return Camera(viewmat=cam.viewmat, K=cam.K, width=cam.width, height=cam.height, name="orbit0")


@pytest.fixture(scope="module")
def small_camera() -> Camera:
    return service_camera()


def _wait_for(job: vqpress.Job, states: set[JobState], timeout: float = 120.0) -> vqpress.JobStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = job.status()
        if st.state in states:
            return st
        time.sleep(0.02)
    raise AssertionError(f"job {job.id} did not reach {states} in {timeout} s (last {st})")


# -- artifacts ---------------------------------------------------------------------------


def test_upload_download_large_file_byte_identical(service: Service, tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(0, 256, (4 << 20) + 12345, dtype=np.uint8).tobytes()
    src = tmp_path / "blob.npy"
    src.write_bytes(data)
    info = service.client.upload(src)
    assert info.id == "blake3:" + blake3(data).hexdigest() and info.size == len(data) and info.name == "blob.npy"
    assert service.client.stat(info).size == len(data)
    assert info.id in {a.id for a in service.client.list_artifacts()}
    out = service.client.download(info, tmp_path / "back.npy")
    assert out.read_bytes() == data
    assert service.client.upload(src).id == info.id  # same content, same artifact
    service.client.delete(info)
    with pytest.raises(VqpressError) as e:
        service.client.stat(info)
    assert e.value.code == "NOT_FOUND"


def test_upload_reads_the_file_once_and_sends_its_digest_last(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``hash_first=False`` the client hashes while it sends (one read of the file); against a
    server that does not take the digest last it hashes first. Both store the same; the default
    hashes first, so that content the server holds is not sent again. A server before digest
    functions gets sha256 and names the content by it."""
    import vqpress.client as vc

    data = np.random.default_rng(5).bytes((3 << 20) + 777)
    src = tmp_path / "once.bin"
    src.write_bytes(data)
    server = service.client.server_info()
    assert server.upload_digest_last and server.upload_sha256_last  # the field's name before digest functions

    def no_second_read(path: Path, function: str) -> str:
        raise AssertionError(f"{path} was read a second time to hash it first")

    monkeypatch.setattr(vc.digests, "id_of_file", no_second_read)
    info = service.client.upload(src, kind="bin", hash_first=False)
    assert info.id == "blake3:" + blake3(data).hexdigest() and info.size == len(data)
    with pytest.raises(AssertionError, match="read a second time"):
        service.client.upload(src, kind="bin")  # the default reads it to hash it first
    service.client.delete(info)
    monkeypatch.undo()
    old_server = Client(service.address, timeout=30)
    old_server._digests = ("sha256", False, ("sha256",))  # what a server before digest functions answers
    try:
        old = old_server.upload(src, kind="bin", hash_first=False)
        assert old.id == hashlib.sha256(data).hexdigest()
        assert old_server.download(old, tmp_path / "back.bin").read_bytes() == data  # checked in sha256
    finally:
        old_server.close()
    service.client.delete(old)


def test_a_client_may_name_its_uploads_by_sha256(service: Service, tmp_path: Path) -> None:
    """``digest_function="sha256"`` names uploads by sha256 (ids a pipeline's own manifests may key
    on); a function this client does not know, or one the server does not take, is refused."""
    data = np.random.default_rng(9).bytes(200_000)
    src = tmp_path / "s.bin"
    src.write_bytes(data)
    with Client(service.address, timeout=30, digest_function="sha256") as c:
        info = c.upload(src, kind="bin")
        assert info.id == hashlib.sha256(data).hexdigest()
        assert c.upload_bytes(b"abc", "abc.bin").id == hashlib.sha256(b"abc").hexdigest()
        assert c.download_bytes(info) == data
        c.delete(info)
    with pytest.raises(VqpressError, match="unknown digest function 'md5'") as e:
        Client(service.address, digest_function="md5")
    assert e.value.code == "INVALID_ARGUMENT"
    old_server = Client(service.address, timeout=30, digest_function="blake3")
    try:
        old_server._digests = None
        old_server.server_info = lambda: ServerInfo("0.1", "local", 1, ("cpu",), False, False, {})  # type: ignore[method-assign]
        with pytest.raises(VqpressError, match="takes uploads in sha256, not blake3"):
            old_server.upload(src, kind="bin")
        # A BLAKE3 id given for the content is refused before anything is sent, not as DATA_LOSS
        # after: such a server would take its hex digits for a sha256.
        old_server.digest_function = None
        old_server._digests = None
        with pytest.raises(VqpressError, match="takes uploads in sha256, not blake3: name the content") as e:
            old_server.upload(src, kind="bin", digest="blake3:" + blake3(data).hexdigest())
        assert e.value.code == "INVALID_ARGUMENT"
        by_sha256 = old_server.upload(src, kind="bin", sha256=hashlib.sha256(data).hexdigest())
        assert by_sha256.id == hashlib.sha256(data).hexdigest()
        old_server.delete(by_sha256)
    finally:
        old_server.close()


def test_corrupt_upload_is_data_loss_and_stores_nothing(service: Service, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    src = tmp_path / "scene.ply"
    src.write_bytes(data)
    with pytest.raises(VqpressError) as e:
        service.client.upload(src, sha256="0" * 64)
    assert e.value.code == "DATA_LOSS"
    for aid in (hashlib.sha256(data).hexdigest(), "blake3:" + blake3(data).hexdigest()):
        with pytest.raises(VqpressError) as e2:
            service.client.stat(aid)
        assert e2.value.code == "NOT_FOUND"


def test_download_unknown_artifact_is_not_found(service: Service, tmp_path: Path) -> None:
    with pytest.raises(VqpressError) as e:
        service.client.download("ab" * 32, tmp_path / "x")
    assert e.value.code == "NOT_FOUND"
    assert list(tmp_path.iterdir()) == []  # nothing half-written


# -- quantize, export, render ------------------------------------------------------------


@pytest.fixture(scope="module")
def quantized(service: Service, small_camera: Camera, tmp_path_factory: pytest.TempPathFactory) -> vqpress.JobStatus:
    job = service.client.quantize(DONUT, FAST, cameras=[small_camera], background=(1, 1, 1))
    seen = list(job.watch(timeout=90))
    progress = [st.progress for st in seen]
    assert progress == sorted(progress) and seen[-1].progress == pytest.approx(1.0)
    assert seen[-1].state is JobState.SUCCEEDED and all(not st.terminal for st in seen[:-1])
    return job.wait(timeout=10)


def test_quantize_matches_a_local_compress(service: Service, quantized: vqpress.JobStatus, tmp_path: Path) -> None:
    from vqpress_server.core.splats.compress import compress_file
    from vqpress_server.core.splats.quantize import QuantizeConfig as CoreConfig

    assert quantized.state is JobState.SUCCEEDED
    assert [r.kind for r in quantized.results] == ["vqp", "json"]
    remote = service.client.download(quantized.results[0], tmp_path / "remote.vqp")
    report = json.loads(service.client.download_bytes(quantized.results[1]))
    assert report["ratio"] > 4 and report["output_bytes"] == remote.stat().st_size
    assert quantized.metrics["ratio"] == pytest.approx(report["ratio"])

    from vqpress_server.core.render.cameras import Camera as CoreCamera

    local = tmp_path / "local.vqp"
    cam = service_camera()  # the job's camera weighs k-means and picks what is pruned: give it here too
    cams = [CoreCamera(np.asarray(cam.viewmat, float), np.asarray(cam.K, float), cam.width, cam.height)]
    compress_file(DONUT, local, CoreConfig(**FAST.overrides()), cameras=cams, evaluate=False, device="cpu")
    got = decode_splats(read_vqp(remote.read_bytes()))
    want = decode_splats(read_vqp(local.read_bytes()))
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_export_vqp_to_ply(service: Service, quantized: vqpress.JobStatus, tmp_path: Path) -> None:
    from vqpress_server.core.splats.formats import read_splats

    job = service.client.export(quantized.results[0], "ply")
    st = job.wait(timeout=60)
    assert st.results[0].kind == "ply"
    [ply] = job.download_results(tmp_path / "results")
    assert ply.name == st.results[0].name and ply.stat().st_size == st.results[0].size
    vqp = decode_splats(read_vqp(service.client.download_bytes(quantized.results[0])))
    scene = read_splats(ply)
    assert scene.num_gaussians == vqp["means"].shape[0] > 0
    np.testing.assert_allclose(scene.means.numpy(), vqp["means"], rtol=0, atol=1e-6)


def test_render_matches_an_in_process_render(service: Service, small_camera: Camera) -> None:
    from vqpress_server.core.render.cameras import Camera as CoreCamera
    from vqpress_server.core.render.images import to_uint8
    from vqpress_server.core.render.splats import render
    from vqpress_server.core.splats.formats import read_splats

    half_K = small_camera.K.copy()
    half_K[:2] /= 2
    cams = [small_camera, Camera(small_camera.viewmat, half_K, 32, 24, name="half")]
    imgs = service.client.render(DONUT, cams, background=(1, 1, 1))
    assert [i.shape for i in imgs] == [(48, 64, 3), (24, 32, 3)] and imgs[0].dtype == np.uint8
    assert (imgs[0] < 250).any(axis=2).mean() > 0.05  # the donut covers part of the view
    raw = service.client.render(DONUT, cams[:1], background=(1, 1, 1), encoding="float32")[0]
    assert raw.dtype == np.float32 and raw.shape == (48, 64, 3)

    scene = read_splats(DONUT)
    c = cams[0]
    ref = render(scene, CoreCamera(c.viewmat, c.K, c.width, c.height, c.name), background=(1.0, 1.0, 1.0))
    np.testing.assert_allclose(raw, ref.numpy(), atol=1e-5)
    assert np.abs(imgs[0].astype(int) - to_uint8(ref).astype(int)).max() <= 1


def test_train_on_an_empty_archive_fails_its_job_with_the_reason(service: Service, tmp_path: Path) -> None:
    archive = tmp_path / "photos.zip"
    archive.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: an archive, checked by the worker
    with pytest.raises(VqpressError) as e:
        service.client.train(archive, vqpress.SplatTrainConfig(steps=10)).wait(timeout=60)
    assert e.value.code == "FAILED" and "dataset" in e.value.message.lower()
    notes = tmp_path / "notes.zip"
    notes.write_text("not photos\n" * 20)
    r = subprocess.run(
        [sys.executable, "-m", "vqpress.cli", "--server", service.address, "train", str(notes), "-o",
         str(tmp_path / "out.vqp"), "--steps", "10"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 3 and "INVALID_ARGUMENT" in r.stderr and "neither a zip nor a tar" in r.stderr


# -- bad input gets a status code --------------------------------------------------------


def test_garbage_ply_is_invalid_argument(service: Service, tmp_path: Path) -> None:
    bad = tmp_path / "garbage.ply"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(VqpressError) as e:
        service.client.quantize(bad, FAST)  # the content is checked against its kind at submit
    assert e.value.code == "INVALID_ARGUMENT" and "garbage.ply" in e.value.message


def test_ply_with_a_lying_header_fails_with_the_reason(service: Service, tmp_path: Path) -> None:
    bad = tmp_path / "lying.ply"
    header = b"ply\nformat binary_little_endian 1.0\nelement vertex 99999999999\nproperty float x\nend_header\n"
    bad.write_bytes(header + os.urandom(64))
    with pytest.raises(VqpressError) as e:
        service.client.quantize(bad, FAST).wait(timeout=30)
    assert e.value.code in ("INVALID_ARGUMENT", "FAILED")  # refused at submit, or the job fails
    assert "lying.ply" in e.value.message and "header" in e.value.message


def test_png_as_scene_is_refused(service: Service, tmp_path: Path) -> None:
    png = service.client.upload(REPO / "tests" / "data" / "astronaut_crop128.png")
    with pytest.raises(VqpressError) as e:
        service.client.quantize(png, FAST)
    assert e.value.code == "FAILED_PRECONDITION"


@pytest.mark.parametrize("k", [0, (1 << 24) + 1])
def test_absurd_codebook_size_is_invalid_argument(service: Service, k: int) -> None:
    # Through the SDK (checked before sending) ...
    with pytest.raises(VqpressError) as e:
        service.client.quantize(DONUT, QuantizeConfig(dc_codebook=k))
    assert e.value.code == "INVALID_ARGUMENT" and "dc_codebook" in e.value.message
    # ... and by the server for a client that does not check.
    ref = service.client.upload(DONUT)
    req = pb.QuantizeRequest(artifact=pb.ArtifactRef(id=ref.id), config=pb.QuantizeConfig(dc_codebook=k))
    with pytest.raises(VqpressError) as e2, translate_errors():
        service.client._stub.Quantize(req, timeout=30)
    assert e2.value.code == "INVALID_ARGUMENT" and "dc_codebook" in e2.value.message


def test_unknown_job_is_not_found(service: Service) -> None:
    with pytest.raises(VqpressError) as e:
        service.client.job("no-such-job")
    assert e.value.code == "NOT_FOUND"


@pytest.mark.parametrize("inline_limit", [vqpress.client.INLINE_SPLATS_MAX_BYTES, 0])
def test_splats_arrays_are_quantized(
    service: Service, small_camera: Camera, inline_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sent inline in the request, or (above the inline limit) uploaded as an .npz artifact first."""
    from vqpress_server.core.splats.formats import read_splats

    monkeypatch.setattr(vqpress.client, "INLINE_SPLATS_MAX_BYTES", inline_limit)
    arrays = {k: v.numpy() for k, v in read_splats(DONUT).tensors().items()}
    splats = vqpress.Splats.from_arrays(arrays)
    st = service.client.quantize(splats, FAST, cameras=[small_camera]).wait(timeout=60)
    assert st.state is JobState.SUCCEEDED and st.metrics["ratio"] > 1
    vqp = decode_splats(read_vqp(service.client.download_bytes(st.results[0])))
    n = splats.num_gaussians
    assert vqp["means"].shape == (n - int(0.15 * n), 3)  # weighed by the camera, the least important 15% dropped
    if inline_limit == 0:  # the client's .npz upload is stored under its content hash
        buf = io.BytesIO()
        np.savez(buf, **splats.arrays())
        assert service.client.stat("blake3:" + blake3(buf.getvalue()).hexdigest()).kind == "npz"


# -- job lifecycle -----------------------------------------------------------------------


def test_cancel_a_running_job(service: Service) -> None:
    job = service.client.quantize(DONUT, SLOW)
    _wait_for(job, {JobState.RUNNING})
    assert job.cancel().state in (JobState.CANCELLING, JobState.CANCELLED)
    with pytest.raises(vqpress.JobCancelled) as e:
        job.wait(timeout=30)
    assert e.value.code == "CANCELLED" and e.value.job_id == job.id
    assert job.status().state is JobState.CANCELLED
    assert job.id in {j.id for j in service.client.jobs([JobState.CANCELLED])}


def test_killed_worker_job_ends_cleanly_and_service_recovers(service: Service, small_camera: Camera) -> None:
    job = service.client.quantize(DONUT, SLOW)
    _wait_for(job, {JobState.RUNNING})
    time.sleep(0.3)  # let it get into k-means
    pids = service.app.workers.pids()  # type: ignore[attr-defined]
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    # It is re-queued to a restarted worker (and may then run to the end) or fails with a reason.
    st = _wait_for(job, {JobState.QUEUED, JobState.FAILED, JobState.RUNNING})
    job.cancel()  # no need to run the long job again
    try:
        st = job.wait(timeout=60)
        assert st.state is JobState.SUCCEEDED
    except vqpress.JobCancelled:
        pass
    except VqpressError as e:
        assert e.code == "FAILED" and len(e.message) > len(f"job {job.id} failed: ")
    # The restarted worker takes new work.
    after = service.client.quantize(DONUT, FAST, cameras=[small_camera]).wait(timeout=60)
    assert after.state is JobState.SUCCEEDED
    assert service.app.workers.pids() and service.app.workers.pids()[0] != pids[0]  # type: ignore[attr-defined]


def test_queued_job_survives_a_restart(tmp_path: Path, small_camera: Camera) -> None:
    app, address = _start(tmp_path, workers=0)  # no worker: what is submitted stays queued
    with Client(address) as c:
        queued = c.quantize(DONUT, FAST, cameras=[small_camera])
        assert queued.status().state is JobState.QUEUED
    app.stop(0)  # type: ignore[attr-defined]

    app2, address2 = _start(tmp_path)  # the same data dir, now with a worker
    try:
        with Client(address2) as c2:
            st = c2.job(queued.id).wait(timeout=90)
            assert st.state is JobState.SUCCEEDED and st.results[0].kind == "vqp"
    finally:
        app2.stop(0)  # type: ignore[attr-defined]


# -- authentication ----------------------------------------------------------------------


def test_token_is_required_when_set(tmp_path: Path) -> None:
    app, address = _start(tmp_path, token="s3cret", workers=0)
    try:
        for token in (None, "wrong"):
            with Client(address, token=token) as c, pytest.raises(VqpressError) as e:
                c.jobs()
            assert e.value.code == "UNAUTHENTICATED"
        with Client(address, token="s3cret") as c:
            assert c.jobs() == []
        with Client(address) as c:
            assert c.health() == "SERVING"  # health needs no token
    finally:
        app.stop(0)  # type: ignore[attr-defined]


# -- the CLI -----------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vqpress.cli", *args],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def test_cli_quantize_json_health_and_errors(service: Service, tmp_path: Path) -> None:
    out = tmp_path / "donut.vqp"
    cams = tmp_path / "cams.json"
    from vqpress_server.core.render.cameras import orbit_cameras
    from vqpress_server.core.splats.formats import read_splats

    c0 = orbit_cameras(read_splats(DONUT), n=1, width=64, height=48)[0]
    cam = Camera(c0.viewmat, c0.K, 64, 48, "orbit0")
    cams.write_text(json.dumps({"cameras": [cam.to_dict()], "background": [1, 1, 1]}))
    r = _cli("--server", service.address, "quantize", str(DONUT), "-o", str(out), "--json", "--cameras", str(cams),
             "--dc-codebook", "256", "--sh-codebook", "64", "--scale-codebook", "256", "--rot-codebook", "256",
             "--kmeans-iters", "5")  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["ratio"] > 4 and report["output_bytes"] == out.stat().st_size
    assert read_vqp(out.read_bytes()).kind == "splats"

    views = tmp_path / "views"
    rr = _cli("--server", service.address, "render", str(out), "--cameras", str(cams), "-o", str(views))
    assert rr.returncode == 0, rr.stderr
    pngs = sorted(views.glob("*.png"))
    assert [p.name for p in pngs] == ["orbit0.png"]
    img = decode_png(pngs[0].read_bytes())
    assert img.shape[:2] == (48, 64) and (img[..., :3] < 250).any()

    splat = tmp_path / "donut.splat"
    ex = _cli("--server", service.address, "export", str(out), "-o", str(splat))
    assert ex.returncode == 0, ex.stderr
    assert splat.stat().st_size == 32 * read_vqp(out.read_bytes()).manifest["num_gaussians"]

    h = _cli("--server", service.address, "health")
    assert h.returncode == 0 and "SERVING" in h.stdout

    bad = _cli("--server", service.address, "quantize", str(DONUT), "-o", str(out), "--dc-codebook", "0")
    assert bad.returncode == 3 and bad.stderr.startswith("error: INVALID_ARGUMENT: ") and "dc_codebook" in bad.stderr

    down = _cli("--server", "127.0.0.1:1", "health")
    assert down.returncode == 5 and "UNAVAILABLE" in down.stderr

"""The `vqpress` CLI and the SDK as a pipeline uses them, against a real loopback server: exit
statuses, detach and collect later, re-attaching across a server restart, messages that say what to
fix, progress in logs, file modes, and the server-info call."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
import vqpress
from vqpress import Camera, Client, JobState, QuantizeConfig
from vqpress.cli import main
from vqpress.progress import Progress
from vqpress.vqp import decode_splats, read_vqp

REPO = Path(__file__).resolve().parents[1]
DONUT = REPO / "tests" / "data" / "donut_small.ply"
FAST_FLAGS = ["--dc-codebook", "256", "--sh-codebook", "64", "--scale-codebook", "256", "--rot-codebook", "256",
              "--kmeans-iters", "5", "--seed", "7"]  # fmt: skip
FAST = QuantizeConfig(dc_codebook=256, sh_codebook=64, scale_codebook=256, rot_codebook=256, kmeans_iters=5, seed=7)

pytestmark = pytest.mark.timeout(240)


def _settings(data_dir: Path, **over: object):  # type: ignore[no-untyped-def]
    from vqpress_server.settings import Settings

    vals = dict(data_dir=data_dir, host="127.0.0.1", port=0, workers=1, lease_s=3.0, heartbeat_s=0.5, poll_s=0.05)
    vals.update(over)
    return Settings(**vals)  # type: ignore[arg-type]


def _start(data_dir: Path, **over: object):  # type: ignore[no-untyped-def]
    from vqpress_server.app import build_app

    app = build_app(_settings(data_dir, **over))
    app.start()
    return app


@dataclass
class Service:
    app: object
    address: str
    client: Client


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    app = _start(tmp_path_factory.mktemp("vqpress-data"))
    client = Client(f"127.0.0.1:{app.port}", timeout=30)
    try:
        yield Service(app, f"127.0.0.1:{app.port}", client)
    finally:
        client.close()
        app.stop(0)


@dataclass
class Run:
    rc: int
    out: str
    err: str


def run(*argv: str, err: io.StringIO | None = None) -> Run:
    """The CLI in this process (its stdout and stderr captured)."""
    out, err = io.StringIO(), err if err is not None else io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(list(argv))
    return Run(rc, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def cams(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cameras.json with 3 train views and 1 test view of the donut (64x48)."""
    from vqpress_server.core.render.cameras import orbit_cameras
    from vqpress_server.core.splats.formats import read_splats

    out = []
    for i, c in enumerate(orbit_cameras(read_splats(DONUT), n=4, width=64, height=48)):
        d = Camera(c.viewmat, c.K, 64, 48, f"view{i}").to_dict()
        d["split"] = "test" if i == 3 else "train"
        out.append(d)
    path = tmp_path_factory.mktemp("cams") / "cams.json"
    path.write_text(json.dumps({"cameras": out, "background": [1, 1, 1]}))
    return path


# -- the command line itself -------------------------------------------------------------


def test_quantize_refuses_an_output_that_is_not_vqp(tmp_path: Path) -> None:
    r = run("--server", "127.0.0.1:1", "quantize", str(DONUT), "-o", str(tmp_path / "wrong.spz"))
    assert r.rc == 3 and "*.vqp" in r.err and "vqpress export" in r.err
    assert not (tmp_path / "wrong.spz").exists()


def test_global_flags_after_the_subcommand_version_and_default_server_in_help() -> None:
    r = run("health", "--server", "127.0.0.1:1")  # refused by argparse before
    assert r.rc == 5 and "cannot reach a vqpress server at 127.0.0.1:1" in r.err and "--server" in r.err
    v = run("--version")
    assert v.rc == 0 and v.out.strip() == f"vqpress {vqpress.__version__}"
    h = run("--help")
    assert h.rc == 0
    helptext = h.out
    assert os.environ.get("VQPRESS_SERVER", "localhost:50051") in helptext
    assert "exit status" in helptext and "retry later" in helptext
    assert run("frobnicate").rc == 2


def test_bad_tls_ca_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    r = subprocess.run([sys.executable, "-m", "vqpress.cli", "--tls-ca", str(bad), "--server", "127.0.0.1:1", "health"],
                       capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert r.returncode == 3, r.stderr
    assert r.stderr.strip().splitlines() == [f"error: INVALID_ARGUMENT: TLS CA certificate {bad} is not a PEM file "
                                             "(no '-----BEGIN CERTIFICATE-----' line)"]  # fmt: skip


def test_wrong_or_missing_token_names_the_flag(tmp_path: Path) -> None:
    app = _start(tmp_path, token="s3cret", workers=0)
    try:
        address = f"127.0.0.1:{app.port}"
        empty, wrong_file, right = tmp_path / "empty", tmp_path / "wrong", tmp_path / "right"
        empty.write_text("")
        wrong_file.write_text("nope\n")
        right.write_text("s3cret\n")
        none = run("jobs", "--server", address, "--token-file", str(empty))
        assert none.rc == 9 and "pass --token-file or set VQPRESS_TOKEN" in none.err
        wrong = run("jobs", "--server", address, "--token-file", str(wrong_file))
        assert wrong.rc == 9 and "refused the token" in wrong.err and "--token-file" in wrong.err
        assert run("jobs", "--server", address, "--token-file", str(right)).rc == 0
        # On the command line a token would show in ps: refused before anything is sent.
        argv = run("jobs", "--server", address, "--token", "s3cret")
        assert argv.rc == 2 and "--token on the command line is visible" in argv.err and "s3cret" not in argv.err
    finally:
        app.stop(0)  # type: ignore[attr-defined]


# -- exit statuses -----------------------------------------------------------------------


def test_exit_status_of_each_outcome(service: Service, tmp_path: Path) -> None:
    a = service.address
    assert run("status", "0" * 32, "--server", a).rc == 4  # not found
    assert run("quantize", str(DONUT), "-o", str(tmp_path / "x.vqp"), "--server", a, "--dc-codebook", "0").rc == 3
    assert run("quantize", str(tmp_path / "missing.ply"), "-o", str(tmp_path / "x.vqp"), "--server", a).rc == 3
    empty = tmp_path / "photos.zip"
    empty.write_bytes(b"PK\x05\x06" + bytes(18))  # an archive with no photos: the job fails
    failed = run("train", str(empty), "-o", str(tmp_path / "t.vqp"), "--steps", "10", "--server", a, "-q")
    assert failed.rc == 6 and "FAILED" in failed.err
    slow = QuantizeConfig(dc_codebook=2048, sh_codebook=2048, scale_codebook=2048, rot_codebook=2048,
                          kmeans_iters=1000)  # fmt: skip
    job = service.client.quantize(DONUT, slow)
    timed = run("wait", job.id, "--timeout", "0.5", "--server", a, "-q")
    assert timed.rc == 8 and f"vqpress download {job.id}" in timed.err  # and says how to collect it
    assert job.status().state in (JobState.QUEUED, JobState.RUNNING)  # the job goes on
    job.cancel()
    cancelled = run("wait", job.id, "--server", a, "-q")
    assert cancelled.rc == 7 and "cancelled" in cancelled.err
    assert run("download", job.id, "-o", str(tmp_path / "c.vqp"), "--server", a).rc == 7


# -- detach, collect later ---------------------------------------------------------------


def test_detach_then_status_wait_download_and_logs(service: Service, tmp_path: Path, cams: Path) -> None:
    a = service.address
    d = run("quantize", str(DONUT), "-o", str(tmp_path / "unused.vqp"), "--cameras", str(cams), "--detach",
            "--server", a, *FAST_FLAGS)  # fmt: skip
    assert d.rc == 0, d.err
    job_id = d.out.strip()
    assert len(job_id) == 32 and not (tmp_path / "unused.vqp").exists()
    st = run("status", job_id, "--json", "--server", a)
    assert st.rc == 0 and json.loads(st.out)["id"] == job_id
    w = run("wait", job_id, "--server", a, "-q")
    assert w.rc == 0 and "SUCCEEDED" in w.out
    out = tmp_path / "later.vqp"
    dl = run("download", job_id, "-o", str(out), "--json", "--server", a)
    assert dl.rc == 0, dl.err
    report = json.loads(dl.out)
    assert read_vqp(out.read_bytes()).kind == "splats" and report["output_bytes"] == out.stat().st_size
    # the cameras file has a test split: only that one view is scored, as the local compress does
    assert report["num_cameras"] == 1
    # no server scratch paths in what a client gets
    assert report["input_path"] == DONUT.name and report["output_path"] == "donut_small.vqp"
    assert "scratch" not in json.dumps(report)
    logs = run("logs", job_id, "--server", a)
    assert logs.rc == 0 and "SUCCEEDED" in logs.out and "donut_small.vqp" in logs.out
    # a directory takes every result under its stored name
    alldir = tmp_path / "all"
    alldir.mkdir()
    assert run("download", job_id, "-o", str(alldir), "--server", a).rc == 0
    assert sorted(p.name for p in alldir.iterdir()) == ["donut_small.vqp", "report.json"]


def test_render_detach_then_download_gives_the_same_images(service: Service, tmp_path: Path, cams: Path) -> None:
    a = service.address
    d = run("render", str(DONUT), "--cameras", str(cams), "-o", str(tmp_path / "unused"), "--detach", "--server", a)
    assert d.rc == 0, d.err
    job_id = d.out.strip()
    assert len(job_id) == 32 and not (tmp_path / "unused").exists()
    assert run("wait", job_id, "--server", a, "-q").rc == 0
    later = tmp_path / "later"  # not made first: a render job's images always go into a folder
    dl = run("download", job_id, "-o", str(later), "--server", a)
    assert dl.rc == 0, dl.err
    now = tmp_path / "now"
    assert run("render", str(DONUT), "--cameras", str(cams), "-o", str(now), "--server", a, "-q").rc == 0
    got = sorted(later.iterdir())
    assert [p.name for p in got] == ["0000_view0.png", "0001_view1.png", "0002_view2.png", "0003_view3.png"]
    assert [p.read_bytes() for p in got] == [(now / f"view{i}.png").read_bytes() for i in range(4)]


def test_a_bundled_sog_is_a_job_input_and_a_zip_that_is_no_sog_is_refused(
    service: Service, tmp_path: Path, cams: Path
) -> None:
    from vqpress_server.core.splats.formats import read_splats, write_splats

    a = service.address
    sog = tmp_path / "donut.sog"
    write_splats(read_splats(DONUT), sog, "sog")  # what a viewer pipeline receives from splat-transform
    q = run("quantize", str(sog), "-o", str(tmp_path / "d.vqp"), "--no-eval", "--server", a, "-q", *FAST_FLAGS)
    assert q.rc == 0, q.err
    n = read_splats(sog).num_gaussians
    assert decode_splats(read_vqp((tmp_path / "d.vqp").read_bytes()))["means"].shape[0] == n
    assert run("render", str(sog), "--cameras", str(cams), "-o", str(tmp_path / "r"), "--server", a, "-q").rc == 0
    assert len(list((tmp_path / "r").glob("*.png"))) == 4
    e = run("export", str(sog), "-o", str(tmp_path / "d.splat"), "--server", a, "-q")
    assert e.rc == 0 and (tmp_path / "d.splat").stat().st_size == 32 * n
    fake = tmp_path / "arrays.sog"  # a zip without meta.json: named .sog, it is not one
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("means.npy", b"")
    r = run("quantize", str(fake), "-o", str(tmp_path / "f.vqp"), "--server", a, "-q")
    assert r.rc == 3 and "does not match kind 'sog'" in r.err, r.err


def test_a_failed_local_write_says_how_to_fetch_the_result(service: Service, tmp_path: Path) -> None:
    r = run("quantize", str(DONUT), "-o", str(tmp_path / "nodir" / "x.vqp"), "--no-eval", "--server",
            service.address, "-q", *FAST_FLAGS)  # fmt: skip
    assert r.rc == 3 and "the results stay on the server: `vqpress download " in r.err
    job_id = r.err.split("`vqpress download ")[1].split()[0]
    assert run("download", job_id, "-o", str(tmp_path / "x.vqp"), "--server", service.address).rc == 0


def test_download_of_an_unfinished_job_is_retryable(tmp_path: Path) -> None:
    app = _start(tmp_path, workers=0)  # nothing runs: the job stays queued
    try:
        a = f"127.0.0.1:{app.port}"
        job_id = run("export", str(DONUT), "-o", str(tmp_path / "d.splat"), "--detach", "--server", a).out.strip()
        r = run("download", job_id, "-o", str(tmp_path / "d.splat"), "--server", a)
        assert r.rc == 5 and "not finished yet" in r.err and f"vqpress wait {job_id}" in r.err
    finally:
        app.stop(0)  # type: ignore[attr-defined]


# -- re-attaching across a restart ---------------------------------------------------------


class _Heard(io.StringIO):
    """A captured stream that tells when a given text has been written to it."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text, self.heard = text, threading.Event()

    def write(self, s: str) -> int:
        n = super().write(s)
        if self.text in self.getvalue():
            self.heard.set()
        return n


def test_wait_survives_a_server_restart(tmp_path: Path) -> None:
    first = _start(tmp_path, workers=0)  # the job waits in the queue of a server without workers
    port = first.port
    a = f"127.0.0.1:{port}"
    job_id = run("export", str(DONUT), "-o", str(tmp_path / "d.splat"), "--detach", "--server", a).out.strip()
    result: list[Run] = []
    err = _Heard("queued")  # the waiter has seen the job from the first server once it prints its state
    waiter = threading.Thread(
        target=lambda: result.append(run("wait", job_id, "--server", a, "--reconnect", "120", err=err))
    )
    waiter.start()
    assert err.heard.wait(120), err.getvalue()
    first.stop(0)  # type: ignore[attr-defined]
    second = _start(tmp_path, port=port)  # the same data dir and port, now with a worker
    try:
        waiter.join(180)
        assert not waiter.is_alive()
        assert result[0].rc == 0, result[0].err
        assert "re-attaching" in result[0].err and "SUCCEEDED" in result[0].out
        assert run("download", job_id, "-o", str(tmp_path / "d.splat"), "--server", a).rc == 0
        assert (tmp_path / "d.splat").stat().st_size % 32 == 0
    finally:
        second.stop(0)  # type: ignore[attr-defined]


# -- results -------------------------------------------------------------------------------


def test_downloads_respect_the_umask(service: Service, tmp_path: Path) -> None:
    info = service.client.upload_bytes(b"mode test\n" * 100, "mode.json")
    old = os.umask(0o027)
    try:
        path = service.client.download(info, tmp_path / "a.json")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640
    old = os.umask(0o022)
    try:
        path = service.client.download(info, tmp_path / "b.json")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_upload_of_content_the_server_holds_sends_nothing(service: Service, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    src = tmp_path / "scene.npy"
    src.write_bytes(data)
    first = service.client.upload(src)
    # Same size, other bytes, but the known id: had the bytes been streamed, the server would
    # refuse them (DATA_LOSS). Asked first, the server answers from what it holds.
    src.write_bytes(os.urandom(len(data)))
    again = service.client.upload(src, digest=first.id)
    assert again.id == first.id and again.size == len(data)
    # A sha256 known from elsewhere names the content too (here: content the server does not hold
    # under it, so the new bytes are sent and checked against it).
    by_sha = service.client.upload(src, sha256=hashlib.sha256(src.read_bytes()).hexdigest())
    assert by_sha.id == hashlib.sha256(src.read_bytes()).hexdigest()
    with pytest.raises(vqpress.VqpressError, match="not an artifact id"):
        service.client.upload(src, digest="sha256:" + by_sha.id)


def test_no_eval_skips_the_renders(service: Service, tmp_path: Path) -> None:
    out = tmp_path / "n.vqp"
    r = run("quantize", str(DONUT), "-o", str(out), "--no-eval", "--json", "-q", "--server", service.address,
            *FAST_FLAGS)  # fmt: skip
    assert r.rc == 0, r.err
    report = json.loads(r.out)
    assert report["psnr"] is None and "evaluate" not in report["timings_s"] and out.stat().st_size > 0


def test_quantize_dataset_reaches_the_server_and_finetune_steps_need_it(service: Service, tmp_path: Path) -> None:
    out = tmp_path / "t.vqp"
    r = run("quantize", str(DONUT), "-o", str(out), "--finetune-steps", "10", "--server", "127.0.0.1:1")
    assert r.rc == 3 and "needs a dataset" in r.err, r
    # A scene is no photo archive: the server says so (the fine-tune itself runs in test_train_service.py).
    r = run("quantize", str(DONUT), "-o", str(out), "--dataset", str(DONUT), "-q", "--server", service.address)
    assert r.rc != 0 and "not a training dataset" in r.err and not out.exists(), r


def test_a_cancel_during_evaluation_keeps_the_vqp(service: Service) -> None:
    from vqpress_server.core.render.cameras import orbit_cameras
    from vqpress_server.core.splats.formats import read_splats

    many = [Camera(c.viewmat, c.K, c.width, c.height, f"v{i}")
            for i, c in enumerate(orbit_cameras(read_splats(DONUT), n=400, width=160, height=120))]  # fmt: skip
    job = service.client.quantize(DONUT, FAST, cameras=many)
    for st in job.watch(timeout=180):
        if st.stage == "evaluate":
            job.cancel()
            break
    st = job.wait(timeout=180)
    assert st.state is JobState.SUCCEEDED and [r.kind for r in st.results] == ["vqp", "json"]
    report = json.loads(service.client.download_bytes(st.results[1]))
    assert report["evaluation"] == "cancelled" and report["psnr"] is None
    vqp = read_vqp(service.client.download_bytes(st.results[0]))
    assert vqp.kind == "splats" and report["output_bytes"] == st.results[0].size


# -- server info ---------------------------------------------------------------------------


def test_server_info_and_health_verbose(service: Service) -> None:
    info = service.client.server_info()
    assert info.version == vqpress.__version__ and info.workers == 1 and len(info.devices) == 1
    assert info.limits["max_message_bytes"] == vqpress.MAX_MESSAGE_BYTES and info.limits["chunk_bytes"] > 0
    assert not info.auth_required and not info.tls
    r = run("health", "-v", "--server", service.address)
    assert r.rc == 0 and f"vqpress {vqpress.__version__}" in r.out and "max_queued_jobs" in r.out
    if not info.gpus:
        assert "no GPU" in r.out


def test_training_on_a_cpu_server_warns(service: Service, tmp_path: Path) -> None:
    if service.client.server_info().gpus:
        pytest.skip("the server has a GPU")
    job = run("train", str(REPO / "tests" / "data" / "astronaut_crop128.png"), "-o", str(tmp_path / "f.vqp"),
              "--steps", "5", "--server", service.address)  # fmt: skip
    assert job.rc == 0, job.err
    assert "warning: the server at" in job.err and "has no GPU" in job.err


# -- progress ------------------------------------------------------------------------------


def test_progress_without_a_terminal_prints_periodic_lines_with_elapsed_and_eta() -> None:
    stream = io.StringIO()
    lines_seen = threading.Event()

    class Watched(io.StringIO):
        def write(self, s: str) -> int:
            n = stream.write(s)
            if stream.getvalue().count("\n") >= 3:
                lines_seen.set()
            return n

    with Progress("job x", stream=Watched(), tty=False, interval=0.2) as p:
        p.update("running", "kmeans:sh", 0.25, {"step": 3})
        assert lines_seen.wait(30)  # no new status: lines keep coming
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[ 25%] job x running kmeans:sh  elapsed ")
    assert all("elapsed" in ln and "step 3" in ln for ln in lines[:3])
    assert "eta" in lines[-1]


def test_render_prints_progress(service: Service, tmp_path: Path, cams: Path) -> None:
    scene = tmp_path / "s.vqp"
    assert run("quantize", str(DONUT), "-o", str(scene), "--no-eval", "-q", "--server", service.address,
               *FAST_FLAGS).rc == 0  # fmt: skip
    r = run("render", str(scene), "--cameras", str(cams), "-o", str(tmp_path / "views"), "--server", service.address)
    assert r.rc == 0, r.err
    assert "render running 0/4 views" in r.err and "render succeeded 4/4 views" in r.err
    assert len(list((tmp_path / "views").glob("*.png"))) == 4


# -- the server side of the same promises ----------------------------------------------------


def test_server_refuses_a_public_interface_without_a_token(tmp_path: Path) -> None:
    from vqpress_server.cli import main as server_main
    from vqpress_server.rpc.server import OpenBindRefused, check_exposure

    err = io.StringIO()
    with redirect_stderr(err):
        rc = server_main(["serve", "--data-dir", str(tmp_path), "--host", "0.0.0.0", "--port", "0"])
    assert (
        rc == 2 and "refusing to serve on 0.0.0.0 without a token" in err.getvalue() and "--insecure" in err.getvalue()
    )
    with pytest.raises(OpenBindRefused):
        check_exposure(_settings(tmp_path, host="::"))
    for ok in (dict(host="0.0.0.0", token="t"), dict(host="0.0.0.0", insecure=True), dict(host="127.0.0.1"),
               dict(host="::1"), dict(host="localhost")):  # fmt: skip
        check_exposure(_settings(tmp_path, **ok))


def test_server_cli_without_the_server_extra_names_it(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "from vqpress_server.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")  # fmt: skip
    for argv in (["compress", str(DONUT), "-o", str(tmp_path / "x.vqp")], ["serve", "--data-dir", str(tmp_path)]):
        r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60, cwd=REPO)
        assert r.returncode == 4, r.stderr
        assert "pip install 'vqpress[server]'" in r.stderr and "Traceback" not in r.stderr
    v = subprocess.run([sys.executable, "-m", "vqpress_server.cli", "--version"], capture_output=True, text=True,
                       timeout=60, cwd=REPO)  # fmt: skip
    assert v.returncode == 0 and v.stdout.strip() == f"vqpress-server {vqpress.__version__}"


def test_packaging_files() -> None:
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()
    assert (REPO / "client" / "vqpress" / "py.typed").exists()

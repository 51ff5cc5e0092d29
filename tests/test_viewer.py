"""`vqpress view`: the page's HTTP server, and the page itself in headless Chromium checked against
vqpress's own renderer at the same camera.

The browser tests start the real CLI (`vqpress view SCENE --compare SCENE.vqp --camera ... --view 1`),
open the printed URL in Chromium (SwiftShader WebGL, no GPU), wait for the page's "drawn" promise,
screenshot both views and compare each with `vqpress_server`'s render of the same file at the same
camera, over the box of pixels the scene covers (the white background around it would only inflate
the number); then drag in the right view and check both views again at the camera the page reports.
Measured at 320 x 240, Chromium 150, Spark 2.2.0, orbit view 1: donut_small.ply 40.7 dB, its .vqp
42.1 dB; after the drag 39.2 / 41.2 dB; vqpress's .spz and .sog at view 2: 41.5 dB; the
45k-Gaussian donut.ply (not in the suite, for its render time) 46.2 dB. With the principal point
moved by one pixel the same screenshot scores 29.9 dB (donut_small) and 23.6 dB (donut), a blank
view 10 dB: the 35 dB floor checks the camera, the splat shapes and the colors, not only that
something drew.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from _chromium import Chromium, find_chromium
from conftest import REPO, TEST_DATA
from vqpress.types import Camera
from vqpress.viewer import LOOPBACK, Viewer, ViewerConfig, load_scene_file, ply_bytes
from vqpress.vqp import read_splats

PSNR_FLOOR_DB = 35.0  # screenshot vs vqpress's render at the same camera, over the scene's box (measured 40.7 dB)
WIDTH, HEIGHT = 320, 240
SERVE_HANG_S = 120.0  # only stops a hang: the CLI prints its URL within a second or two


def _quantize(src: Path, dst: Path) -> None:
    """A real .vqp of ``src`` with small codebooks (seconds on a CPU)."""
    from vqpress_server.core.splats.compress import compress_file
    from vqpress_server.core.splats.quantize_config import QuantizeConfig

    cfg = QuantizeConfig(dc_codebook=256, sh_codebook=256, scale_codebook=256, rot_codebook=256, kmeans_iters=3,
                         importance="none", prune=0.0)  # fmt: skip
    compress_file(src, dst, cfg, evaluate=False, device="cpu")


def _orbit_camera(scene: Path, index: int) -> Camera:
    from vqpress_server.core.render.cameras import orbit_cameras
    from vqpress_server.core.splats.formats import load_scene

    splats, _ = load_scene(scene)
    c = orbit_cameras(splats, 8, WIDTH, HEIGHT)[index]
    return Camera(c.viewmat, c.K, c.width, c.height, name=c.name)


def _vqpress_render(scene: Path, camera: Camera) -> np.ndarray:  # [H, W, 3] float32 in [0, 1]
    from vqpress_server.core.render.cameras import Camera as ServerCamera
    from vqpress_server.core.render.splats import render
    from vqpress_server.core.splats.formats import load_scene
    from vqpress_server.core.splats.quantize import decode_vqp_splats

    if scene.suffix == ".vqp":
        splats = decode_vqp_splats(scene.read_bytes(), name=str(scene))
    else:
        splats, _ = load_scene(scene)
    cam = ServerCamera(camera.viewmat, camera.K, camera.width, camera.height)
    return render(splats, cam, background=(1.0, 1.0, 1.0), backend="torch").numpy()


def _scene_psnr(img: np.ndarray, ref: np.ndarray, background: float = 1.0) -> float:
    """PSNR of ``img`` against ``ref`` over the bounding box of the pixels where ``ref`` is not the background."""
    from vqpress_server.core.metrics import psnr

    ys, xs = np.nonzero((np.abs(ref - background) > 2 / 255).any(axis=-1))
    assert ys.size > 0.05 * ref.shape[0] * ref.shape[1], "the scene must cover enough of the view to be a test"
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    return psnr(img[box], ref[box])


@pytest.fixture(scope="module")
def donut_vqp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("viewer") / "donut_small.vqp"
    _quantize(TEST_DATA / "donut_small.ply", out)
    return out


# -- the server, without a browser --------------------------------------------------------


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), ""


def test_viewer_serves_the_page_the_renderer_and_a_decoded_vqp(donut_vqp: Path) -> None:
    vqp = donut_vqp
    original = load_scene_file(TEST_DATA / "donut_small.ply")
    compressed = load_scene_file(vqp)
    cam = _orbit_camera(TEST_DATA / "donut_small.ply", 1)
    with Viewer(ViewerConfig([original, compressed], camera=cam)) as viewer:
        assert viewer._httpd.server_address[0] == LOOPBACK  # never on another interface
        assert viewer.url == f"http://127.0.0.1:{viewer.port}/"
        status, page, ctype = _get(viewer.url)
        assert status == 200 and b'src="/static/viewer.js"' in page and ctype.startswith("text/html")
        status, cfg_bytes, _ = _get(viewer.url + "api/config")
        cfg = json.loads(cfg_bytes)
        assert [s["bytes"] for s in cfg["scenes"]] == [
            (TEST_DATA / "donut_small.ply").stat().st_size,
            vqp.stat().st_size,
        ]
        assert cfg["scenes"][1]["decoded_from"] == "vqp" and cfg["scenes"][1]["url"].endswith("/donut_small.ply")
        assert cfg["camera"]["viewmat"] == cam.viewmat.reshape(-1).tolist()
        assert (cfg["width"], cfg["height"]) == (WIDTH, HEIGHT)
        # The original is served as it is on disk; the .vqp as a .ply of exactly what the numpy decoder gives.
        status, body, _ = _get(viewer.url + cfg["scenes"][0]["url"].lstrip("/"))
        assert status == 200 and body == (TEST_DATA / "donut_small.ply").read_bytes()
        status, body, _ = _get(viewer.url + cfg["scenes"][1]["url"].lstrip("/"))
        assert status == 200 and body == ply_bytes(read_splats(str(vqp)))
        for rel in ("static/vendor/spark/spark.module.min.js", "static/vendor/three/three.module.min.js"):
            status, body, ctype = _get(viewer.url + rel)
            assert status == 200 and len(body) > 100_000 and ctype == "text/javascript", rel
        for bad in ("static/../__init__.py", "static/%2e%2e/__init__.py", "scene/2/x.ply", "scene/0/other.ply"):
            assert _get(viewer.url + bad)[0] == 404, bad


def _serve_cli(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Start `vqpress view ARGS` and return it with the URL it printed (its first line)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'client'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "vqpress.cli", "view", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    url = proc.stdout.readline().strip() if proc.stdout else ""
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        _, err = proc.communicate(timeout=SERVE_HANG_S)
        raise AssertionError(f"`vqpress view` printed {url!r}, exit {proc.returncode}: {err}")
    return proc, url


def _stop_cli(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the CLI stops serving and exits 0
    _, err = proc.communicate(timeout=SERVE_HANG_S)
    assert proc.returncode == 0, err


def test_psnr_from_the_service_and_from_a_report(tmp_path: Path, donut_vqp: Path) -> None:
    from vqpress_server.app import build_app
    from vqpress_server.settings import Settings

    scene = TEST_DATA / "donut_small.ply"
    vqp = tmp_path / "donut_small.vqp"
    vqp.write_bytes(donut_vqp.read_bytes())  # a folder of its own: a report is written beside it
    cam = _orbit_camera(scene, 1)
    cameras = tmp_path / "cameras.json"
    cameras.write_text(json.dumps({"cameras": [cam.to_dict()], "background": [1, 1, 1]}))
    app = build_app(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, workers=1))
    app.start()
    try:
        proc, url = _serve_cli([str(scene), "--compare", str(vqp), "--camera", str(cameras), "--psnr",
                                "--server", f"127.0.0.1:{app.port}"])  # fmt: skip
        try:
            cfg = json.loads(_get(url + "api/config")[1])
        finally:
            _stop_cli(proc)
    finally:
        app.stop(0)
    from vqpress_server.core.metrics import psnr

    want = psnr(_vqpress_render(vqp, cam), _vqpress_render(scene, cam))
    assert cfg["psnr"]["db"] == pytest.approx(want, abs=0.01), (cfg["psnr"], want)
    assert "rendered by the vqpress service at 1 camera(s)" in cfg["psnr"]["source"]

    # Without --psnr: the value of a report beside the compressed file, said to come from there.
    (tmp_path / "donut_small.report.json").write_text(json.dumps({"psnr": 31.25, "ratio": 7.0}))
    proc, url = _serve_cli([str(scene), "--compare", str(vqp)])
    try:
        cfg = json.loads(_get(url + "api/config")[1])
    finally:
        _stop_cli(proc)
    assert cfg["psnr"]["db"] == 31.25 and cfg["psnr"]["source"].startswith("from donut_small.report.json")
    assert cfg["camera"] is None and (cfg["width"], cfg["height"]) == (960, 720)


def test_decoded_vqp_ply_reads_back_as_the_decoded_scene(tmp_path: Path) -> None:
    from vqpress_server.core.splats.formats.ply import read_ply

    vqp = tmp_path / "lego.vqp"
    _quantize(TEST_DATA / "lego_sh3_small.ply", vqp)
    decoded = read_splats(str(vqp))
    out = tmp_path / "lego.ply"
    out.write_bytes(load_scene_file(vqp).data)
    back = read_ply(out)
    for name in ("means", "quats", "scales", "opacities", "sh0", "shN"):
        np.testing.assert_array_equal(getattr(back, name).numpy(), decoded[name], err_msg=name)


def test_viewer_refuses_files_it_cannot_show(tmp_path: Path) -> None:
    from vqpress.errors import VqpressError

    fake = tmp_path / "fake.vqp"
    fake.write_bytes(b"ply\nformat binary_little_endian 1.0\n")
    empty = tmp_path / "empty.ply"
    empty.write_bytes(b"")
    cases = {
        tmp_path / "missing.ply": "cannot read",
        TEST_DATA / "astronaut_crop128.png": "the viewer reads",
        fake: "not a valid .vqp file",
        empty: "empty",
        tmp_path: "cannot show",
        TEST_DATA / "biker_small.spz": "version 4",  # Spark 2.2.0 reads gzip .spz (2, 3) only
    }
    for path, words in cases.items():
        with pytest.raises(VqpressError, match=words) as err:
            load_scene_file(path)
        assert err.value.code == "INVALID_ARGUMENT"


def test_cli_view_error_is_one_line_and_exit_3(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vqpress.cli", "view", str(tmp_path / "nope.vqp")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{REPO / 'client'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().startswith("error: INVALID_ARGUMENT:") and "cannot read" in proc.stderr


# -- the page in a browser ----------------------------------------------------------------


def _chromium_or_skip() -> str:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium (`make browser` installs Debian's package; or set VQPRESS_CHROMIUM)")
    return chromium


def _shoot(browser: Chromium, views: list[str]) -> list[np.ndarray]:  # each [H, W, 3] float32 in [0, 1]
    from PIL import Image

    shots = []
    for view in views:
        r = json.loads(browser.evaluate(f"JSON.stringify(document.getElementById('{view}').getBoundingClientRect())"))
        png = browser.screenshot(r["x"], r["y"], r["width"], r["height"])
        shots.append(np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32) / 255.0)
    return shots


def _drag(browser: Chromium, view: str, dx: float, dy: float) -> None:
    """A left-button drag from the middle of ``view``, as a person orbits the camera."""
    r = json.loads(browser.evaluate(f"JSON.stringify(document.getElementById('{view}').getBoundingClientRect())"))
    x, y = r["x"] + r["width"] / 2, r["y"] + r["height"] / 2
    mouse = {"button": "left", "clickCount": 1}
    browser.call("Input.dispatchMouseEvent", {"type": "mousePressed", "x": x, "y": y, **mouse})
    for k in range(1, 5):
        browser.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x + dx * k / 4, "y": y + dy * k / 4,
                                                  "buttons": 1})  # fmt: skip
    browser.call("Input.dispatchMouseEvent", {"type": "mouseReleased", "x": x + dx, "y": y + dy, **mouse})


def _check_against_vqpress(shots: list[np.ndarray], files: list[Path], camera: Camera) -> list[float]:
    blank = np.ones((camera.height, camera.width, 3), np.float32)
    values = []
    for shot, path in zip(shots, files, strict=True):
        assert shot.shape == (camera.height, camera.width, 3)
        ref = _vqpress_render(path, camera)
        value = _scene_psnr(shot, ref)
        print(f"{path.name}: screenshot vs vqpress render {value:.2f} dB (floor {PSNR_FLOOR_DB})")
        assert value >= PSNR_FLOOR_DB, f"{path.name}: screenshot vs vqpress render {value:.2f} dB < {PSNR_FLOOR_DB}"
        assert _scene_psnr(blank, ref) < PSNR_FLOOR_DB - 15  # the floor is far above an empty view
        values.append(value)
    return values


@pytest.mark.slow
def test_page_in_chromium_matches_vqpress_render(tmp_path: Path, donut_vqp: Path) -> None:
    """The original and its .vqp side by side at a given camera, then both after a drag in the right view."""
    chromium = _chromium_or_skip()
    scene = TEST_DATA / "donut_small.ply"
    cam = _orbit_camera(scene, 1)
    cameras = tmp_path / "cameras.json"
    cameras.write_text(json.dumps({"cameras": [_orbit_camera(scene, 0).to_dict(), cam.to_dict()]}))

    server, url = _serve_cli([str(scene), "--compare", str(donut_vqp), "--camera", str(cameras), "--view", "1"])
    try:
        with Chromium(chromium, 2 * WIDTH + 64, HEIGHT + 160) as browser:
            browser.open(url)
            try:
                drawn = browser.evaluate("window.vqpressDrawn", await_promise=True)
            except Exception as e:
                raise AssertionError(f"the page did not draw: {e}; console: {browser.console()}") from None
            assert drawn["views"] == ["view0", "view1"] and (drawn["width"], drawn["height"]) == (WIDTH, HEIGHT)
            text = browser.evaluate("document.body.innerText")
            assert "donut_small.ply" in text and "donut_small.vqp" in text and "smaller than" in text, text
            first = _shoot(browser, drawn["views"])
            start = browser.evaluate("window.vqpressCamera()")
            np.testing.assert_allclose(start["viewmat"], cam.viewmat.reshape(-1), atol=1e-6)

            _drag(browser, "view1", 40, 15)  # in the right view: the left one must follow
            moved = browser.evaluate("window.vqpressSettled()", await_promise=True)
            after = _shoot(browser, drawn["views"])
    finally:
        _stop_cli(server)

    _check_against_vqpress(first, [scene, donut_vqp], cam)
    new_cam = Camera(np.array(moved["viewmat"]).reshape(4, 4), np.array(moved["K"]).reshape(3, 3), WIDTH, HEIGHT)
    turned = np.degrees(np.arccos(np.clip((np.trace(new_cam.viewmat[:3, :3].T @ cam.viewmat[:3, :3]) - 1) / 2, -1, 1)))
    assert turned > 5, f"the drag turned the camera by {turned:.1f} degrees only"
    _check_against_vqpress(after, [scene, donut_vqp], new_cam)


@pytest.mark.slow
def test_page_reads_the_web_formats_vqpress_writes(tmp_path: Path) -> None:
    """.spz and .sog as vqpress writes them, read by the page's renderer, against vqpress's render."""
    from vqpress_server.core.splats.formats import load_scene, write_splats

    chromium = _chromium_or_skip()
    splats, _ = load_scene(TEST_DATA / "donut_small.ply")
    files = [tmp_path / "donut.spz", tmp_path / "donut.sog"]
    for f in files:
        write_splats(splats, f)
    cam = _orbit_camera(TEST_DATA / "donut_small.ply", 2)
    cameras = tmp_path / "cameras.json"
    cameras.write_text(json.dumps({"cameras": [cam.to_dict()]}))
    server, url = _serve_cli([str(files[0]), "--compare", str(files[1]), "--camera", str(cameras)])
    try:
        with Chromium(chromium, 2 * WIDTH + 64, HEIGHT + 160) as browser:
            browser.open(url)
            drawn = browser.evaluate("window.vqpressDrawn", await_promise=True)
            shots = _shoot(browser, drawn["views"])
    finally:
        _stop_cli(server)
    _check_against_vqpress(shots, files, cam)

"""The client SDK on its own (no vqpress server): validation before sending, camera files, error
translation over a real gRPC channel, PNG decoding, and the import rules (no torch, no server)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zlib
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from vqpress._transport import make_channel
from vqpress.errors import MissingDependencyError, VqpressError, require, translate_errors
from vqpress.png import decode_png, decode_png_numpy, to_rgb
from vqpress.types import Camera, JobState, QuantizeConfig, Splats, load_cameras_json

REPO = Path(__file__).resolve().parents[1]


def _splat_arrays(n: int = 5, degree: int = 1, dtype: type = np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    rest = (degree + 1) ** 2 - 1
    return {
        "means": rng.normal(size=(n, 3)).astype(dtype),
        "quats": rng.normal(size=(n, 4)).astype(dtype),
        "scales": rng.normal(size=(n, 3)).astype(dtype),
        "opacities": rng.normal(size=(n,)).astype(dtype),
        "sh0": rng.normal(size=(n, 1, 3)).astype(dtype),
        "shN": rng.normal(size=(n, rest, 3)).astype(dtype),
    }


# -- Splats ------------------------------------------------------------------------------


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_splats_sh_degree_follows_shN(degree: int) -> None:
    s = Splats(**_splat_arrays(degree=degree))
    assert s.sh_degree == degree
    assert s.num_gaussians == 5 and len(s) == 5


def test_splats_rejects_float64_and_names_the_array() -> None:
    arrays = _splat_arrays()
    arrays["scales"] = arrays["scales"].astype(np.float64)
    with pytest.raises(VqpressError) as e:
        Splats(**arrays)
    assert e.value.code == "INVALID_ARGUMENT"
    assert "scales" in e.value.message and "float32" in e.value.message


@pytest.mark.parametrize(
    "name,shape",
    [
        ("means", (5, 2)),
        ("quats", (5, 3)),
        ("opacities", (5, 1)),
        ("sh0", (5, 3)),
        ("shN", (5, 4, 3)),
        ("shN", (4, 3, 3)),
        ("scales", (6, 3)),
    ],
)
def test_splats_rejects_bad_shapes(name: str, shape: tuple[int, ...]) -> None:
    arrays = _splat_arrays()
    arrays[name] = np.zeros(shape, np.float32)
    with pytest.raises(VqpressError, match=name) as e:
        Splats(**arrays)
    assert e.value.code == "INVALID_ARGUMENT"


def test_splats_from_arrays_casts_and_defaults_shN() -> None:
    arrays = _splat_arrays(dtype=np.float64)
    del arrays["shN"]
    s = Splats.from_arrays(arrays)
    assert s.means.dtype == np.float32 and s.sh_degree == 0 and s.shN.shape == (5, 0, 3)
    np.testing.assert_allclose(s.means, arrays["means"], rtol=1e-6)
    with pytest.raises(VqpressError, match="missing"):
        Splats.from_arrays({"means": arrays["means"]})


def test_splats_rejects_non_arrays() -> None:
    arrays = _splat_arrays()
    arrays["means"] = arrays["means"].tolist()
    with pytest.raises(VqpressError, match="numpy array"):
        Splats(**arrays)


# -- cameras -----------------------------------------------------------------------------


def _cam_dict(**over: object) -> dict:
    d = {
        "file": "./train/r_0",
        "viewmat": np.eye(4).tolist(),
        "K": [[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]],
        "width": 64,
        "height": 48,
        "split": "test",
    }
    d.update(over)
    return d


def _write(tmp_path: Path, doc: object, name: str = "cams.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


def test_load_cameras_json_reads_split_background_and_names(tmp_path: Path) -> None:
    doc = {"background": [1, 1, 1], "cameras": [_cam_dict(), _cam_dict(split="train", file="./train/r_1")]}
    cams, bg = load_cameras_json(_write(tmp_path, doc))
    assert len(cams) == 2 and bg == (1.0, 1.0, 1.0)
    test_cams, _ = load_cameras_json(_write(tmp_path, doc), split="test")
    assert [c.name for c in test_cams] == ["./train/r_0"]
    c = test_cams[0]
    assert c.viewmat.shape == (4, 4) and c.K.shape == (3, 3) and (c.width, c.height) == (64, 48)
    # The service's dict form is row-major and round-trips.
    d = c.to_dict()
    assert len(d["viewmat"]) == 16 and len(d["K"]) == 9 and d["K"][2] == 32
    c2 = Camera.from_dict(d)
    np.testing.assert_array_equal(c2.K, c.K)
    np.testing.assert_array_equal(c2.viewmat, c.viewmat)


def test_load_cameras_json_real_lego(shared_scene: Callable[..., Path]) -> None:
    cams, bg = load_cameras_json(shared_scene("trained_lego_sh3") / "cameras.json", split="test")
    assert len(cams) == 13 and bg == (1.0, 1.0, 1.0)
    assert all(c.width == 400 and c.height == 400 for c in cams)
    assert cams[0].name == "./train/r_0"
    np.testing.assert_allclose(cams[0].K[0, 0], 555.5555419921875)


@pytest.mark.parametrize(
    "doc,match",
    [
        ({"cameras": [_cam_dict(K=[[1, 0], [0, 1]])]}, r"cameras\[0\]: K has shape"),
        ({"cameras": [_cam_dict(viewmat=[[float("nan")] * 4] * 4)]}, r"viewmat contains NaN"),
        ({"cameras": [_cam_dict(width=0)]}, r"width = 0 is out of range"),
        ({"cameras": [_cam_dict(height=10**9)]}, r"height = 1000000000 is out of range"),
        ({"cameras": [_cam_dict(width=64.5)]}, r"width must be an integer"),
        ({"cameras": [_cam_dict(K=[[-1, 0, 0], [0, 1, 0], [0, 0, 1]])]}, r"focal lengths must be positive"),
        ({"cameras": [_cam_dict(viewmat=np.ones((4, 4)).tolist())]}, r"last row"),
        ({"cameras": [{"K": np.eye(3).tolist()}]}, r"lacks \['viewmat', 'width', 'height'\]"),
        ({"cameras": ["oops"]}, r"must be an object"),
        ({"cameras": [_cam_dict(K="abc")]}, r"K must be a 3x3 matrix"),
        ({"cameras": []}, r"no cameras"),
        ({"cams": []}, r'expected \{"cameras"'),
        ({"cameras": [_cam_dict()], "background": [2, 0, 0]}, r"background must be 3 numbers"),
    ],
)
def test_load_cameras_json_rejects_bad_input(tmp_path: Path, doc: object, match: str) -> None:
    with pytest.raises(VqpressError, match=match) as e:
        load_cameras_json(_write(tmp_path, doc))
    assert e.value.code == "INVALID_ARGUMENT"
    assert "cams.json" in e.value.message  # names the file


def test_load_cameras_json_unknown_split_lists_present_ones(tmp_path: Path) -> None:
    with pytest.raises(VqpressError, match=r"no cameras with split 'val'.*\['test'\]"):
        load_cameras_json(_write(tmp_path, {"cameras": [_cam_dict()]}), split="val")


def test_load_cameras_json_not_json_or_missing(tmp_path: Path) -> None:
    p = tmp_path / "cams.json"
    p.write_bytes(b"\xff\x00garbage")
    with pytest.raises(VqpressError, match="not a JSON file"):
        load_cameras_json(p)
    with pytest.raises(VqpressError, match="cannot read"):
        load_cameras_json(tmp_path / "absent.json")


# -- config ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"dc_codebook": 0}, r"dc_codebook = 0 is out of range"),
        ({"sh_codebook": (1 << 24) + 1}, r"sh_codebook = 16777217 is out of range"),
        ({"rot_codebook": 2.5}, r"rot_codebook must be an integer"),
        ({"scale_codebook": True}, r"scale_codebook must be an integer"),
        ({"kmeans_iters": 1001}, r"kmeans_iters = 1001"),
        ({"opacity_precision": "fixed16"}, r"opacity_precision = 'fixed16'; choose one of \['uint8', 'fp16'\]"),
        ({"sh_degree": 4}, r"sh_degree = 4"),
        ({"position_precision": "fp8"}, r"position_precision = 'fp8'; choose one of"),
        ({"entropy": "brotli"}, r"entropy"),
        ({"preset": "tiny"}, r"preset = 'tiny'"),
        ({"strict": "yes"}, r"strict must be a bool"),
    ],
)
def test_quantize_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(VqpressError, match=match) as e:
        QuantizeConfig(**kwargs).validate()
    assert e.value.code == "INVALID_ARGUMENT"


def test_quantize_config_overrides_only_set_fields() -> None:
    cfg = QuantizeConfig(preset="high_ratio", dc_codebook=256, seed=3).validate()
    assert cfg.overrides() == {"dc_codebook": 256, "seed": 3}
    assert QuantizeConfig().validate().overrides() == {}


def test_job_state_terminal() -> None:
    assert {s for s in JobState if s.terminal} == {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}


# -- error translation and auth metadata over a real gRPC channel ------------------------


def _echo_server(code: grpc.StatusCode | None) -> tuple[grpc.Server, int]:
    """A generic gRPC server: /t.T/Echo aborts with ``code``, or returns the authorization header."""

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        if code is not None:
            context.abort(code, "k must be in [1, 16777216], got 0")
        md = dict(context.invocation_metadata())
        return md.get("authorization", "").encode()

    handler = grpc.method_handlers_generic_handler("t.T", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def test_rpc_errors_translate_to_vqpress_error_with_code_and_message() -> None:
    server, port = _echo_server(grpc.StatusCode.INVALID_ARGUMENT)
    try:
        with make_channel(f"127.0.0.1:{port}") as ch:
            call = ch.unary_unary("/t.T/Echo")
            with pytest.raises(VqpressError) as e, translate_errors():
                call(b"", timeout=10)
    finally:
        server.stop(None)
    assert e.value.code == "INVALID_ARGUMENT"
    assert e.value.message == "k must be in [1, 16777216], got 0"
    assert e.value.__suppress_context__  # raised `from None`: no gRPC traceback chained


def test_unreachable_server_is_unavailable() -> None:
    with make_channel("127.0.0.1:1") as ch:
        with pytest.raises(VqpressError) as e, translate_errors():
            ch.unary_unary("/t.T/Echo")(b"", timeout=5)
    assert e.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def test_token_is_sent_as_bearer_metadata() -> None:
    server, port = _echo_server(None)
    try:
        with make_channel(f"127.0.0.1:{port}", token="s3cret") as ch:
            assert ch.unary_unary("/t.T/Echo")(b"", timeout=10) == b"Bearer s3cret"
        with make_channel(f"127.0.0.1:{port}") as ch:
            assert ch.unary_unary("/t.T/Echo")(b"", timeout=10) == b""
    finally:
        server.stop(None)


def test_missing_optional_dependency_names_the_extra() -> None:
    with pytest.raises(MissingDependencyError, match=r"pip install 'vqpress\[server\]'"):
        require("vqpress_no_such_module", "local compression", extra="server")


# -- PNG ---------------------------------------------------------------------------------


def _encode_png(img: np.ndarray, filters: list[int]) -> bytes:
    """Reference PNG encoder (spec section 9) applying the given filter type to each row."""
    h, w, c = img.shape
    color = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = img.reshape(h, w * c).astype(np.int64)
    out = bytearray()
    prev = np.zeros(w * c, np.int64)
    for y in range(h):
        cur, f = rows[y], filters[y % len(filters)]
        left = np.concatenate([np.zeros(c, np.int64), cur[:-c]])
        upleft = np.concatenate([np.zeros(c, np.int64), prev[:-c]])
        if f == 0:
            r = cur
        elif f == 1:
            r = cur - left
        elif f == 2:
            r = cur - prev
        elif f == 3:
            r = cur - (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
            r = cur - pred
        out += bytes([f]) + (r % 256).astype(np.uint8).tobytes()
        prev = cur

    def chunk(t: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + t + body + zlib.crc32(t + body).to_bytes(4, "big")

    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, color, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(out))) + chunk(b"IEND", b"")


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_decodes_every_filter(channels: int) -> None:
    img = np.random.default_rng(channels).integers(0, 256, (17, 23, channels), dtype=np.uint8)
    data = _encode_png(img, filters=[0, 1, 2, 3, 4])
    np.testing.assert_array_equal(decode_png_numpy(data), img)
    np.testing.assert_array_equal(decode_png(data), img)  # the Pillow path where installed
    rgb = to_rgb(decode_png(data))
    assert rgb.shape == (17, 23, 3)


def test_png_agrees_with_pillow() -> None:
    PIL = pytest.importorskip("PIL.Image")
    y, x = np.mgrid[0:64, 0:80]
    img = np.stack([x * 3, y * 4, (x * y) % 251], -1).astype(np.uint8)
    buf = io.BytesIO()
    PIL.fromarray(img).save(buf, "PNG")
    np.testing.assert_array_equal(decode_png_numpy(buf.getvalue()), img)
    np.testing.assert_array_equal(decode_png(buf.getvalue()), img)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda d: b"GIF89a" + d[6:], "bad signature"),
        (lambda d: d[:40], "truncated"),
        (lambda d: d[:20] + bytes([d[20] ^ 1]) + d[21:], "bad CRC"),
    ],
)
def test_png_rejects_corrupt_data(mutate, match: str) -> None:  # type: ignore[no-untyped-def]
    data = _encode_png(np.zeros((4, 4, 3), np.uint8), filters=[0])
    for decode in (decode_png, decode_png_numpy):
        with pytest.raises(VqpressError, match=match):
            decode(mutate(data))


# -- import rules ------------------------------------------------------------------------


def test_client_imports_without_torch_or_server() -> None:
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'vqpress_server', 'PIL'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import vqpress, vqpress.client, vqpress.cli, vqpress.types, vqpress.png, vqpress.vqp
assert vqpress.Client and vqpress.Splats and vqpress.VqpressError
print('ok', sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'vqpress_server', 'PIL')))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok []"

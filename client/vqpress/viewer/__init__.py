"""`vqpress view`: a local web page that shows a scene, or an original and its compressed version side
by side with linked cameras, in a WebGL splat renderer (Spark, vendored under ``static/vendor``).

The page is served by the standard library's HTTP server on the loopback interface only. Files the
renderer reads itself (.ply, .compressed.ply, .splat, .spz, .sog) are served as they are on disk; a
.vqp is decoded here with the numpy decoder (``vqpress.vqp``) and served as an INRIA 3DGS .ply
generated in memory, so no torch is needed. PSNR between the two scenes is shown when it is known:
computed with ``--psnr`` from renders of both scenes by the vqpress service (the Render RPC, at the
cameras of ``--camera``), or read from a ``<stem>.report.json`` beside the compressed file; the page
says which, and says so when it is not known.

Routes: ``/`` the page, ``/static/...`` its scripts and the vendored renderer, ``/api/config`` the
scenes (name, bytes on disk, URL), the initial camera, the background and the PSNR, and
``/scene/<i>/<name>`` the bytes of scene i.
"""

from __future__ import annotations

import json
import math
import mimetypes
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import numpy as np

from ..errors import invalid
from ..types import Camera
from ..vqp import VqpFormatError, decode_splats, read_vqp

if TYPE_CHECKING:
    from ..client import Client

LOOPBACK = "127.0.0.1"  # the only address the viewer listens on
PSNR_MAX_DB = 100.0  # identical images (the service's metric caps PSNR there too)
# Formats the renderer reads from their own bytes; a .vqp is converted to .ply here.
NATIVE_SUFFIXES = (".compressed.ply", ".ply", ".splat", ".spz", ".sog")
VIEWABLE = (*NATIVE_SUFFIXES, ".vqp")
_ZIP_MAGIC = b"PK\x03\x04"
_GZIP_MAGIC = b"\x1f\x8b"
_SPZ_MAGIC = b"NGSP"  # the header of a version 4 .spz (zstd inside, not gzip)


@dataclass(frozen=True)
class SceneFile:
    """One scene as the page gets it: its bytes on disk, and the bytes and name the renderer reads."""

    path: Path
    disk_bytes: int  # size of the file on disk (bytes)
    served_name: str  # the file name the renderer sees (its suffix picks the parser)
    data: bytes  # what /scene/<i>/<served_name> returns
    decoded_from: str | None = None  # "vqp" when ``data`` is a .ply decoded from a .vqp


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".compressed.ply" if name.endswith(".compressed.ply") else path.suffix.lower()


def ply_bytes(splats: dict[str, np.ndarray]) -> bytes:
    """An INRIA 3DGS binary .ply of decoded arrays (``vqp.decode_splats``'s names and shapes):
    float32 ``x y z f_dc_* f_rest_* opacity scale_* rot_*``, f_rest channel-major as 3DGS writes it."""
    means, quats, scales = splats["means"], splats["quats"], splats["scales"]  # [N, 3], [N, 4], [N, 3]
    opacities, sh0, shN = splats["opacities"], splats["sh0"], splats["shN"]  # [N], [N, 1, 3], [N, K, 3]
    n, k = means.shape[0], shN.shape[1]
    assert means.shape == (n, 3) and quats.shape == (n, 4) and scales.shape == (n, 3), (means.shape, quats.shape)
    assert opacities.shape == (n,) and sh0.shape == (n, 1, 3) and shN.shape == (n, k, 3), (sh0.shape, shN.shape)
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(3 * k)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    cols = [
        means,
        sh0.reshape(n, 3),
        shN.transpose(0, 2, 1).reshape(n, 3 * k),  # f_rest_{c*K + j} = shN[:, j, c]
        opacities.reshape(n, 1),
        scales,
        quats,
    ]
    body = np.ascontiguousarray(np.concatenate(cols, axis=1), dtype="<f4")
    header = "ply\nformat binary_little_endian 1.0\n" + f"element vertex {n}\n"
    header += "".join(f"property float {p}\n" for p in names) + "end_header\n"
    return header.encode("ascii") + body.tobytes()


def load_scene_file(path: str | Path) -> SceneFile:
    """Read a scene for the page; a file that cannot be read or is not a scene raises VqpressError
    (INVALID_ARGUMENT) saying what is wrong with it."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in VIEWABLE:
        raise invalid(f"{path}: cannot show this file; the viewer reads {', '.join(VIEWABLE)}")
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise invalid(f"{path}: is a directory; pass a scene file ({', '.join(VIEWABLE)})") from None
    except OSError as e:
        raise invalid(f"{path}: cannot read: {e.strerror or e}") from None
    if not data:
        raise invalid(f"{path}: the file is empty")
    if suffix == ".vqp":
        try:
            vqp = read_vqp(data, name=str(path))
            if vqp.kind != "splats":
                raise invalid(f"{path}: a .vqp of kind {vqp.kind!r}; the viewer shows splat scenes")
            decoded = decode_splats(vqp)
        except VqpFormatError as e:
            raise invalid(f"not a valid .vqp file: {e}") from None
        return SceneFile(path, len(data), f"{path.stem}.ply", ply_bytes(decoded), decoded_from="vqp")
    if suffix == ".spz" and data.startswith(_SPZ_MAGIC):
        raise invalid(
            f"{path}: a .spz of version 4 (zstd); the page's renderer (Spark 2.2.0) reads versions 2 and 3: "
            f"convert it first (`vqpress export {path.name} -o {path.stem}.ply`, or -o .spz for version 2)"
        )
    bad = {
        ".ply": not data.startswith(b"ply"),
        ".compressed.ply": not data.startswith(b"ply"),
        ".spz": not data.startswith(_GZIP_MAGIC),
        ".sog": not data.startswith(_ZIP_MAGIC),
        ".splat": len(data) % 32 != 0,
    }[suffix]
    if bad:
        raise invalid(f"{path}: the content is not a {suffix} scene (its first bytes or its size do not match)")
    return SceneFile(path, len(data), path.name, data)


def report_psnr(path: Path) -> dict[str, Any] | None:
    """PSNR from a ``<stem>.report.json`` beside ``path`` (what `vqpress train` writes), else None."""
    report = path.with_name(f"{path.stem}.report.json")
    try:
        doc = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = doc.get("psnr") if isinstance(doc, dict) else None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return {
        "db": float(value),
        "source": f"from {report.name}: the compressed scene against the reference at the report's cameras",
    }


def service_psnr(
    client: Client, original: Path, compressed: Path, cameras: list[Camera], background: tuple[float, float, float]
) -> dict[str, Any]:
    """Mean PSNR of ``compressed`` against ``original``, both rendered by the vqpress service that
    ``client`` talks to at ``cameras`` (float32 images, so the number is the service's own metric)."""
    refs = client.render(original, cameras, background, encoding="float32")
    tests = client.render(compressed, cameras, background, encoding="float32")
    values = []
    for a, b in zip(tests, refs, strict=True):
        mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
        values.append(PSNR_MAX_DB if mse <= 10 ** (-PSNR_MAX_DB / 10) else -10.0 * math.log10(mse))
    return {
        "db": float(np.mean(values)),
        "source": f"rendered by the vqpress service at {len(cameras)} camera(s) of the cameras file, "
        "the compressed scene against the original",
    }


@dataclass(frozen=True)
class ViewerConfig:
    """What the page shows: one or two scenes, the first camera, the background, the PSNR."""

    scenes: list[SceneFile]
    camera: Camera | None = None  # None: the page frames the first scene itself
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)  # r, g, b in [0, 1]
    psnr: dict[str, Any] | None = None  # {"db": float, "source": str}
    size: tuple[int, int] = (960, 720)  # each view's pixels when no camera is given (width, height)

    def to_json(self) -> dict[str, Any]:
        w, h = (self.camera.width, self.camera.height) if self.camera else self.size
        return {
            "scenes": [
                {
                    "name": s.path.name,
                    "bytes": s.disk_bytes,
                    "url": f"/scene/{i}/{s.served_name}",
                    "decoded_from": s.decoded_from,
                }
                for i, s in enumerate(self.scenes)
            ],
            "camera": self.camera.to_dict() if self.camera else None,  # row-major viewmat and K, OpenCV axes
            "width": w,
            "height": h,
            "background": list(self.background),
            "psnr": self.psnr,
        }


def _static_root() -> Any:
    return resources.files(__package__).joinpath("static")


class _Handler(BaseHTTPRequestHandler):
    server: _ViewerHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _not_found(self) -> None:
        self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        path = unquote(urlsplit(self.path).path)
        cfg = self.server.config
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path == "/api/config":
            return self._send(HTTPStatus.OK, json.dumps(cfg.to_json()).encode(), "application/json")
        if path.startswith("/static/"):
            return self._static(path[len("/static/") :])
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "scene" and parts[2].isdigit():
            i = int(parts[2])
            if i < len(cfg.scenes) and parts[3] == cfg.scenes[i].served_name:
                return self._send(HTTPStatus.OK, cfg.scenes[i].data, "application/octet-stream")
        return self._not_found()

    def _static(self, rel: str) -> None:
        if not rel or any(p in ("", ".", "..") for p in rel.split("/")):
            return self._not_found()
        node = _static_root()
        for p in rel.split("/"):
            node = node.joinpath(p)
        if not node.is_file():
            return self._not_found()
        ctype = (
            "text/javascript" if rel.endswith(".js") else (mimetypes.guess_type(rel)[0] or "application/octet-stream")
        )
        self._send(HTTPStatus.OK, node.read_bytes(), ctype)


class _ViewerHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, config: ViewerConfig, verbose: bool) -> None:
        self.config = config
        self.verbose = verbose
        super().__init__((LOOPBACK, port), _Handler)


class Viewer:
    """The viewer's HTTP server on 127.0.0.1 (``port`` 0: a free one). ``start()`` serves on a
    thread, ``serve_forever()`` on the caller's; ``url`` is the page's address."""

    def __init__(self, config: ViewerConfig, port: int = 0, *, verbose: bool = False) -> None:
        if not 0 <= port <= 65535:
            raise invalid(f"--port must be in 0..65535, got {port}")
        try:
            self._httpd = _ViewerHTTPServer(port, config, verbose)
        except OSError as e:
            raise invalid(f"cannot listen on {LOOPBACK}:{port}: {e.strerror or e}") from None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/"

    def start(self) -> Viewer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="vqpress-viewer", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def __enter__(self) -> Viewer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["LOOPBACK", "VIEWABLE", "SceneFile", "Viewer", "ViewerConfig", "load_scene_file", "ply_bytes"]

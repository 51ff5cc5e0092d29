"""`vqpress-server`: local compression, inspection and rendering without a server, and `serve`.

    vqpress-server compress IN -o OUT.vqp [--cameras CAMS.json] [--preset P] [--json]
    vqpress-server decompress IN.vqp -o OUT.ply|.compressed.ply|.splat|.spz|.sog|meta.json [export options]
    vqpress-server convert IN -o OUT (a scene file to another format) [export options]
    vqpress-server info FILE [--json] [--spz-axes ply|rub]
    vqpress-server render IN --cameras CAMS.json -o DIR
    vqpress-server serve [--data-dir DIR] [--port P] [--workers N] [--token-file F] [--tls-cert C --tls-key K]
                         [--executor local|ray] [--ray-address ADDRESS]

Bad input ends with `error: <what is wrong>` on stderr and exit status 2; nothing half-written stays.
A server that cannot start (its port is taken, another server uses its data directory) says why the
same way, with exit status 3.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2
EXIT_CANNOT_SERVE = 3
EXIT_MISSING_EXTRA = 4  # a client-only install: the [server] extra is not installed
SERVER_MODULES = ("torch", "gsplat", "PIL", "packaging")  # what `pip install 'vqpress[server]'` brings


class ProgressPrinter:
    """Progress on stderr: one redrawn line on a terminal, one line per stage otherwise."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.stage = ""
        self.t0 = time.monotonic()
        self._last_draw = 0.0

    def __call__(self, stage: str, fraction: float, metrics: Mapping[str, float] | None = None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if stage == self.stage and now - self._last_draw < 0.1 and fraction < 1.0:
                return
            width = 30
            filled = int(round(width * min(max(fraction, 0.0), 1.0)))
            bar = "#" * filled + "-" * (width - filled)
            sys.stderr.write(f"\r[{bar}] {100 * fraction:5.1f}%  {stage:<24} {now - self.t0:6.1f}s")
            sys.stderr.flush()
        elif stage != self.stage:
            sys.stderr.write(f"[{100 * fraction:5.1f}%] {stage} ({now - self.t0:.1f}s)\n")
        self.stage = stage
        self._last_draw = now

    def done(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def _quantize_config(args: argparse.Namespace) -> Any:
    from .core.splats.quantize import QuantizeConfig

    cfg = QuantizeConfig.preset(args.preset)
    overrides = {
        "dc_codebook": args.dc_codebook,
        "sh_codebook": args.sh_codebook,
        "scale_codebook": args.scale_codebook,
        "rot_codebook": args.rot_codebook,
        "kmeans_iters": args.kmeans_iters,
        "seed": args.seed,
        "sh_degree": args.sh_degree,
    }
    if args.strict:
        overrides["strict"] = True
    names = {f.name for f in fields(cfg)}
    from dataclasses import replace

    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None and k in names})
    cfg.validate()
    return cfg


def _load_cameras(path: str | None, split: str | None) -> tuple[list[Any] | None, tuple[float, ...] | None]:
    if path is None:
        return None, None
    from .core.render.cameras import read_cameras_json

    cams = read_cameras_json(Path(path), split=split)
    return cams.cameras, cams.background


def cmd_compress(args: argparse.Namespace) -> int:
    from .core.splats.compress import compress_file

    cfg = _quantize_config(args)
    split = args.split
    if args.cameras and split is None:
        split = _default_split(Path(args.cameras))
    cameras, background = _load_cameras(args.cameras, split)
    if args.background is not None:
        background = tuple(args.background)
    progress = ProgressPrinter(enabled=not args.quiet)
    try:
        report = compress_file(
            Path(args.input),
            Path(args.output),
            cfg,
            cameras=cameras,
            background=background,
            evaluate=not args.no_eval,
            device=args.device,
            progress=progress,
        )
    finally:
        progress.done()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.format_text())
    return 0


def _default_split(cameras_json: Path) -> str | None:
    """Evaluate on the held-out cameras when the file marks a test split, else on all of them."""
    try:
        doc = json.loads(cameras_json.read_text())
    except (OSError, ValueError):
        return None  # read_cameras_json reports the problem with a proper message
    frames = doc.get("cameras", doc.get("frames", [])) if isinstance(doc, dict) else doc
    if isinstance(frames, list) and any(isinstance(f, dict) and f.get("split") == "test" for f in frames):
        return "test"
    return None


def _export_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """The ExportFilter and WriteOptions of the export flags (add_export_flags)."""
    from .core.splats.formats import ExportFilter, SogConfig, WriteOptions

    box = args.box
    filters = ExportFilter(
        sh_degree=args.sh_degree,
        min_opacity=args.min_opacity,
        box_min=tuple(box[:3]) if box else None,
        box_max=tuple(box[3:]) if box else None,
        drop_non_finite=args.drop_non_finite,
    )
    return filters, WriteOptions(spz_axes=args.spz_axes, sog=SogConfig(sh_palette=args.sog_palette))


def cmd_decompress(args: argparse.Namespace) -> int:
    from .core.splats.compress import decompress_file

    filters, options = _export_args(args)
    splats = decompress_file(Path(args.input), Path(args.output), filters=filters, options=options)
    print(f"wrote {args.output}: {splats.num_gaussians} Gaussians, SH degree {splats.sh_degree}", file=sys.stderr)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .core.splats.formats import ReadOptions, export_splats, read_splats

    filters, options = _export_args(args)
    src = read_splats(Path(args.input), options=ReadOptions(spz_axes=args.input_spz_axes, sog_lod=args.lod))
    if not filters.drop_non_finite:
        src, _ = src.repair_non_finite()  # the rule `compress` applies; --drop-non-finite drops instead
    n, rep = export_splats(src, Path(args.output), filters=filters, options=options)
    counts = {k: v for k, v in rep.as_dict().items() if k not in ("kept", "sh_degree") and v}
    dropped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items())
    print(f"wrote {args.output}: {rep.kept} Gaussians, SH degree {rep.sh_degree}, {n:,} bytes"
          + (f" (dropped: {dropped})" if dropped else ""), file=sys.stderr)  # fmt: skip
    return 0


def _scene_info(path: Path, spz_axes: str = "ply") -> dict[str, Any]:
    from .core.splats.formats import ReadOptions, detect_format, read_splats

    fmt = detect_format(path)
    splats = read_splats(path, fmt, options=ReadOptions(spz_axes=spz_axes))  # type: ignore[arg-type]
    import torch

    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    info: dict[str, Any] = {
        "file": str(path),
        "format": fmt,
        "bytes": size,
        "num_gaussians": splats.num_gaussians,
        "sh_degree": splats.sh_degree,
    }
    if fmt == "spz":
        info["spz_axes"] = (
            "ply (values as stored, as splat-transform, spz-js, gsply and Spark read them; "
            "--spz-axes rub converts from RUB)"
            if spz_axes == "ply"
            else "rub (converted from SPZ's RUB axes, as PlayCanvas' engine reads them)"
        )
    if "sog_lod" in splats.meta:
        info["sog_lod"] = f"{splats.meta['sog_lod']} of {splats.meta['sog_lod_levels']} levels (0 is the finest)"
    nonfinite = {k: int((~torch.isfinite(v)).sum()) for k, v in splats.tensors().items()}
    info["non_finite"] = {k: v for k, v in nonfinite.items() if v}
    if splats.num_gaussians:
        lo, hi = splats.bounds()
        info["bounds_p1_p99"] = [lo.tolist(), hi.tolist()]
    return info


def _vqp_info(path: Path) -> dict[str, Any]:
    from vqpress.vqp import read_vqp

    vqp = read_vqp(path.read_bytes(), name=str(path))
    return {
        "file": str(path),
        "format": "vqp",
        "kind": vqp.kind,
        "version": vqp.version,
        "bytes": path.stat().st_size,
        "manifest": vqp.manifest,
        "section_bytes": vqp.section_bytes,
    }


def cmd_info(args: argparse.Namespace) -> int:
    path = Path(args.input)
    if path.is_dir():
        info = _scene_info(path, args.spz_axes)  # an unbundled SOG
    else:
        if not path.is_file():
            raise _input_error(f"{path}: no such file")
        with path.open("rb") as f:
            head = f.read(8)
        from vqpress.vqp import MAGIC

        info = _vqp_info(path) if head.startswith(MAGIC) else _scene_info(path, args.spz_axes)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            if isinstance(v, dict) and k == "manifest":
                v = {kk: vv for kk, vv in v.items() if not isinstance(vv, (list, dict))}
            print(f"{k:>16}: {v}")
    return 0


def _load_any_scene(path: Path) -> Any:
    """A scene from any supported file: a .vqp is decoded, other formats are read and repaired."""
    from vqpress.vqp import MAGIC

    from .core.splats.formats import load_scene
    from .core.splats.quantize import decode_vqp_splats

    with path.open("rb") as f:
        head = f.read(len(MAGIC))
    if head == MAGIC:
        return decode_vqp_splats(path.read_bytes(), name=str(path))
    splats, _ = load_scene(path)
    return splats


def cmd_render(args: argparse.Namespace) -> int:
    from .core.render.images import save_png
    from .core.render.splats import render

    splats = _load_any_scene(Path(args.input))
    cameras, background = _load_cameras(args.cameras, args.split)
    assert cameras is not None
    if args.background is not None:
        background = tuple(args.background)
    background = background or (0.0, 0.0, 0.0)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    progress = ProgressPrinter(enabled=not args.quiet)
    for i, cam in enumerate(cameras):
        img = render(splats, cam, background=background, backend=args.backend)
        name = Path(cam.name).name if cam.name else f"view_{i:04d}"
        save_png(img, out / f"{i:04d}_{name.removesuffix('.png')}.png")
        progress("render", (i + 1) / len(cameras), {})
    progress.done()
    print(f"wrote {len(cameras)} images to {out}", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import serve
    from .rpc.server import OpenBindRefused, check_exposure
    from .settings import Settings

    if args.token_on_argv is not None:
        print(
            "error: --token on the command line is visible to every user (ps); put the token in a file "
            "(--token-file FILE, mode 600) or in VQPRESS_TOKEN",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if (args.tls_cert is None) != (args.tls_key is None):
        raise _input_error("--tls-cert and --tls-key go together")
    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise _input_error(f"--token-file: {e}") from None
        if not token:
            raise _input_error(f"--token-file {args.token_file} is empty")
    settings = Settings.from_env(
        data_dir=Path(args.data_dir) if args.data_dir else None,
        host=args.host,
        port=args.port,
        workers=args.workers,
        token=token,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        insecure=True if args.insecure else None,
        executor=args.executor,
        ray_address=args.ray_address,
    )
    if args.ray_address and settings.executor != "ray":
        raise _input_error("--ray-address needs --executor ray")
    _require_server_extra()  # the workers need torch: say so now, not in every worker's traceback
    try:
        check_exposure(settings)
    except OpenBindRefused as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        serve(settings)
    except OSError as e:  # the port is taken, the data directory is locked or not writable
        print(f"error: {e.strerror if e.strerror and not e.filename else e}", file=sys.stderr)
        return EXIT_CANNOT_SERVE
    return 0


def _require_server_extra() -> None:
    import importlib.util

    for name in ("torch",):
        try:
            found = importlib.util.find_spec(name) is not None
        except ValueError:  # in sys.modules as None: blocked
            found = False
        if not found:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def _input_error(msg: str) -> Exception:
    from .core.errors import VqpressInputError

    return VqpressInputError(msg)


def _floats3(text: str) -> list[float]:
    parts = [p for p in text.replace(" ", "").split(",") if p]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("expected three comma-separated numbers, e.g. 1,1,1")
    return [float(p) for p in parts]


def _box(text: str) -> list[float]:
    parts = [p for p in text.replace(" ", "").split(",") if p]
    if len(parts) != 6:
        raise argparse.ArgumentTypeError("expected six comma-separated numbers: minx,miny,minz,maxx,maxy,maxz")
    return [float(p) for p in parts]


def add_export_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("export options")
    g.add_argument("--sh-degree", type=int, choices=[0, 1, 2, 3], help="keep SH bands up to this degree")
    g.add_argument("--min-opacity", type=float, default=0.0, help="drop Gaussians whose opacity (0..1) is below this")
    g.add_argument(
        "--box",
        type=_box,
        help="keep Gaussians inside minx,miny,minz,maxx,maxy,maxz (write --box=-1,... when it starts with -)",
    )
    g.add_argument("--drop-non-finite", action="store_true", help="drop Gaussians with NaN/inf values")
    g.add_argument("--spz-axes", default="ply", choices=["ply", "rub"],
                   help="axes a .spz is written in: ply = the scene's own (default; what splat-transform, "
                   "Spark and spz-js expect), rub = converted to RUB (what PlayCanvas' engine expects)")  # fmt: skip
    g.add_argument(
        "--sog-palette", type=int, default=0, help="SH palette entries of a .sog (0 = by scene size, max 65536)"
    )


def build_parser() -> argparse.ArgumentParser:
    from vqpress._version import __version__

    p = argparse.ArgumentParser(prog="vqpress-server", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"vqpress-server {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compress", help="quantize a scene (.ply, .splat, .spz, compressed .ply) into a .vqp")
    c.add_argument("input")
    c.add_argument("-o", "--output", required=True, help="the .vqp to write")
    c.add_argument("--cameras", help="cameras JSON to measure PSNR/SSIM at (default: an orbit around the scene)")
    c.add_argument("--split", help="only the cameras of this split (default: 'test' when the file has one)")
    c.add_argument("--background", type=_floats3, help="r,g,b in [0,1] for the quality renders")
    c.add_argument("--preset", default="default", help="default | high_ratio | high_quality")
    for name in ("dc", "sh", "scale", "rot"):
        c.add_argument(f"--{name}-codebook", type=int, help=f"codebook size for {name} (overrides the preset)")
    c.add_argument("--kmeans-iters", type=int, help="Lloyd iterations per codebook")
    c.add_argument("--seed", type=int)
    c.add_argument("--sh-degree", type=int, help="truncate SH to this degree before quantizing")
    c.add_argument("--strict", action="store_true", help="reject non-finite values instead of repairing them")
    c.add_argument("--no-eval", action="store_true", help="skip the PSNR/SSIM renders")
    c.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    c.add_argument("--json", action="store_true", help="print the report alone, as JSON, on stdout")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    c.set_defaults(func=cmd_compress)

    d = sub.add_parser("decompress", help="decode a .vqp into .ply, .compressed.ply, .splat, .spz, .sog or meta.json")
    d.add_argument("input")
    d.add_argument("-o", "--output", required=True)
    add_export_flags(d)
    d.set_defaults(func=cmd_decompress)

    v = sub.add_parser("convert", help="convert a scene file to another format (e.g. .ply to .sog)")
    v.add_argument("input", help="a scene: .ply, .compressed.ply, .splat, .spz, .sog, meta.json, lod-meta.json, .npz")
    v.add_argument("-o", "--output", required=True)
    v.add_argument("--input-spz-axes", default="ply", choices=["ply", "rub"], help="axes of an input .spz")
    v.add_argument("--lod", type=int, default=0, help="LOD level of a streamed SOG input (0 = finest)")
    add_export_flags(v)
    v.set_defaults(func=cmd_convert)

    i = sub.add_parser("info", help="describe a scene file (or SOG folder) or a .vqp")
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
    i.add_argument("--spz-axes", default="ply", choices=["ply", "rub"], help="axes to read a .spz in")
    i.set_defaults(func=cmd_info)

    r = sub.add_parser("render", help="render a scene or .vqp at the cameras of a JSON file to PNGs")
    r.add_argument("input")
    r.add_argument("--cameras", required=True)
    r.add_argument("--split", help="only the cameras of this split")
    r.add_argument("-o", "--output", required=True, help="directory for the PNGs")
    r.add_argument("--background", type=_floats3)
    r.add_argument("--backend", default="auto", choices=["auto", "gsplat", "torch"])
    r.add_argument("-q", "--quiet", action="store_true")
    r.set_defaults(func=cmd_render)

    s = sub.add_parser("serve", help="run the gRPC server with its job table and workers (local, or on a Ray cluster)")
    s.add_argument("--data-dir", help="artifacts and the job table (default: ./vqpress-data or VQPRESS_DATA_DIR)")
    s.add_argument("--host", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default 50051; 0 picks a free one)")
    s.add_argument("--workers", type=int, help="worker processes (default: one per GPU, one on CPU)")
    # A token on the command line is visible to every user of the machine (ps): a file or the environment only.
    s.add_argument("--token", dest="token_on_argv", help=argparse.SUPPRESS)
    s.add_argument("--token-file", help="require the bearer token in this file (mode 600; or set VQPRESS_TOKEN)")
    s.add_argument("--tls-cert", help="PEM certificate chain (with --tls-key)")
    s.add_argument("--tls-key", help="PEM private key")
    s.add_argument(
        "--insecure",
        action="store_true",
        help="serve without a token on a non-loopback --host (refused otherwise; or VQPRESS_INSECURE=1)",
    )
    s.add_argument(
        "--executor",
        choices=["local", "ray"],
        help="where jobs run: local worker processes (default, or VQPRESS_EXECUTOR), or actors of a Ray cluster",
    )
    s.add_argument(
        "--ray-address",
        help="the Ray cluster to join: auto, HOST:6379 or ray://HOST:10001 (or VQPRESS_RAY_ADDRESS); "
        "default: start Ray on this machine",
    )
    s.set_defaults(func=cmd_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vqpress.vqp import VqpFormatError

    from .core.errors import VqpressInputError

    try:
        return int(args.func(args))
    except (VqpressInputError, VqpFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FileNotFoundError as e:
        print(f"error: {e.filename}: no such file", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModuleNotFoundError as e:
        if e.name not in SERVER_MODULES:
            raise
        print(
            f"error: vqpress-server {args.command} needs the server extra (the Python module {e.name!r} is missing); "
            "install it with: pip install 'vqpress[server]'",
            file=sys.stderr,
        )
        return EXIT_MISSING_EXTRA
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

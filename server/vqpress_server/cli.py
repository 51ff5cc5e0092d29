"""`vqpress-server`: local compression, inspection and rendering without a server, and `serve`.

    vqpress-server compress IN -o OUT.vqp [--cameras CAMS.json] [--preset P] [--json]
    vqpress-server decompress IN.vqp -o OUT.ply|.splat|.spz
    vqpress-server info FILE [--json]
    vqpress-server render IN --cameras CAMS.json -o DIR
    vqpress-server serve [--data-dir DIR] [--port P] [--workers N] [--token T] [--tls-cert C --tls-key K]

Bad input ends with `error: <what is wrong>` on stderr and exit status 2; nothing half-written stays.
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


def cmd_decompress(args: argparse.Namespace) -> int:
    from .core.splats.compress import decompress_file

    splats = decompress_file(Path(args.input), Path(args.output))
    print(f"wrote {args.output}: {splats.num_gaussians} Gaussians, SH degree {splats.sh_degree}", file=sys.stderr)
    return 0


def _scene_info(path: Path) -> dict[str, Any]:
    from .core.splats.formats import detect_format, read_splats

    fmt = detect_format(path)
    splats = read_splats(path, fmt)
    import torch

    info: dict[str, Any] = {
        "file": str(path),
        "format": fmt,
        "bytes": path.stat().st_size,
        "num_gaussians": splats.num_gaussians,
        "sh_degree": splats.sh_degree,
    }
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
    if not path.is_file():
        raise _input_error(f"{path}: no such file")
    with path.open("rb") as f:
        head = f.read(8)
    from vqpress.vqp import MAGIC

    info = _vqp_info(path) if head.startswith(MAGIC) else _scene_info(path)
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
    from .settings import Settings

    if (args.tls_cert is None) != (args.tls_key is None):
        raise _input_error("--tls-cert and --tls-key go together")
    settings = Settings.from_env(
        data_dir=Path(args.data_dir) if args.data_dir else None,
        host=args.host,
        port=args.port,
        workers=args.workers,
        token=args.token,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
    )
    serve(settings)
    return 0


def _input_error(msg: str) -> Exception:
    from .core.errors import VqpressInputError

    return VqpressInputError(msg)


def _floats3(text: str) -> list[float]:
    parts = [p for p in text.replace(" ", "").split(",") if p]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("expected three comma-separated numbers, e.g. 1,1,1")
    return [float(p) for p in parts]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vqpress-server", description=__doc__.split("\n")[0])
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

    d = sub.add_parser("decompress", help="decode a .vqp into .ply, .splat or .spz")
    d.add_argument("input")
    d.add_argument("-o", "--output", required=True)
    d.set_defaults(func=cmd_decompress)

    i = sub.add_parser("info", help="describe a scene file or a .vqp")
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
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

    s = sub.add_parser("serve", help="run the gRPC server with its job table and local workers")
    s.add_argument("--data-dir", help="artifacts and the job table (default: ./vqpress-data or VQPRESS_DATA_DIR)")
    s.add_argument("--host", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default 50051; 0 picks a free one)")
    s.add_argument("--workers", type=int, help="worker processes (default: one per GPU, one on CPU)")
    s.add_argument("--token", help="require this bearer token (or VQPRESS_TOKEN)")
    s.add_argument("--tls-cert", help="PEM certificate chain (with --tls-key)")
    s.add_argument("--tls-key", help="PEM private key")
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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

"""`vqpress`: the command-line client of the vqpress service.

    vqpress --server HOST:PORT quantize scene.ply -o scene.vqp [--preset high_ratio] [--json]
    vqpress --server HOST:PORT export scene.vqp -o scene.ply
    vqpress --server HOST:PORT quantize field.vqp -o small.vqp --field-method kmvq --bits 4
    vqpress --server HOST:PORT train photos.zip -o scene.vqp [--steps 7000] [--json]
    vqpress --server HOST:PORT train photo.png -o photo.vqp --field [--steps 500] [--bits 4]
    vqpress --server HOST:PORT render scene.vqp --cameras cameras.json -o views/ [--split test]
    vqpress --server HOST:PORT jobs | cancel ID | health

Errors print ``error: CODE: message`` on stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._transport import TOKEN_ENV, TlsConfig
from .client import Client, Job
from .errors import MissingDependencyError, VqpressError, invalid
from .types import (
    FIELD_QUANTIZE_METHODS,
    OPACITY_PRECISIONS,
    POSITION_PRECISIONS,
    PRESETS,
    DenseGridConfig,
    ExportOptions,
    FieldQuantizeConfig,
    FieldTrainConfig,
    HashGridConfig,
    JobState,
    JobStatus,
    QatConfig,
    QuantizeConfig,
    SplatTrainConfig,
    VqadGridConfig,
    load_cameras_json,
)

SERVER_ENV = "VQPRESS_SERVER"  # default for --server
DEFAULT_SERVER = "localhost:50051"
_EXPORT_FORMATS = ("ply", "compressed_ply", "splat", "spz", "sog", "vqp")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vqpress", description="Client of the vqpress compression service.")
    p.add_argument(
        "--server", default=os.environ.get(SERVER_ENV, DEFAULT_SERVER), help="HOST:PORT (env VQPRESS_SERVER)"
    )
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV), help="bearer token (env VQPRESS_TOKEN)")
    p.add_argument("--tls-ca", type=Path, help="PEM CA certificate: connect with TLS")
    p.add_argument("--timeout", type=float, default=None, help="give up waiting for a job after this many seconds")
    sub = p.add_subparsers(dest="command", required=True)

    def config_args(sp: argparse.ArgumentParser) -> None:
        g = sp.add_argument_group("quantization (unset = the preset's value)")
        g.add_argument("--preset", choices=PRESETS)
        g.add_argument("--dc-codebook", type=int, metavar="K", help="SH DC color codebook entries")
        g.add_argument("--sh-codebook", type=int, metavar="K", help="SH rest codebook entries")
        g.add_argument("--scale-codebook", type=int, metavar="K", help="log-scale codebook entries")
        g.add_argument("--rot-codebook", type=int, metavar="K", help="rotation codebook entries")
        g.add_argument("--kmeans-iters", type=int, metavar="N")
        g.add_argument("--seed", type=int)
        g.add_argument("--position-precision", choices=POSITION_PRECISIONS)
        g.add_argument("--opacity-precision", choices=OPACITY_PRECISIONS)
        g.add_argument("--entropy", choices=("zstd", "none"))
        g.add_argument("--sh-degree", type=int, choices=range(4))
        g.add_argument("--strict", action="store_true", default=None, help="reject non-finite input")

    q = sub.add_parser("quantize", help="compress a scene to .vqp and print the report")
    q.add_argument("input", type=Path)
    q.add_argument("-o", "--output", type=Path, required=True, help="the .vqp to write")
    q.add_argument("--cameras", type=Path, help="cameras.json to evaluate PSNR/SSIM on (default: orbit views)")
    q.add_argument("--split", help="only the cameras of this split (e.g. test)")
    q.add_argument("--json", action="store_true", help="print the report as JSON on stdout, nothing else")
    config_args(q)
    g = q.add_argument_group("neural fields (the input is a field .vqp; --kmeans-iters and --seed apply)")
    g.add_argument("--field-method", choices=FIELD_QUANTIZE_METHODS, help="post-hoc compression of a dense field")
    g.add_argument("--bits", type=int, help="kmvq: bits per vertex (2^bits centroids per level), 1..10")
    g.add_argument("--rank", type=int, help="lra: rank of the approximation")

    t = sub.add_parser("train", help="train a splat scene (or a neural field) and download the results")
    t.add_argument("dataset", type=Path, help=".zip/.tar of posed images, or for --field also a .png/.jpg image")
    t.add_argument("-o", "--output", type=Path, required=True, help="the .vqp to write; other results go beside it")
    t.add_argument("--field", action="store_true", help="train a neural field (default for a .png/.jpg dataset)")
    t.add_argument("--steps", type=int, help="optimizer steps (splats: scales the whole schedule)")
    t.add_argument("--seed", type=int)
    t.add_argument("--json", action="store_true", help="print the report as JSON on stdout, nothing else")
    g = t.add_argument_group("splats")
    g.add_argument("--sh-degree", type=int, choices=range(4))
    g.add_argument("--no-qat", action="store_true", help="plain 3DGS, quantized after training")
    g.add_argument("--init", type=Path, help="a scene to fine-tune instead of initializing from the dataset")
    g = t.add_argument_group("fields")
    g.add_argument("--grid", choices=("vqad", "dense", "hash"), default="vqad")
    g.add_argument("--bits", type=int, help="VQ-AD bits per vertex, 1..10 (default 4)")
    g.add_argument(
        "--no-sparse", action="store_true", help="3D VQ-AD: logits on every vertex, not only near occupied space"
    )
    g.add_argument("--levels", type=int)
    g.add_argument("--max-resolution", type=int)
    g.add_argument("--downscale", type=int, help="3D: reduce images by this integer factor")

    e = sub.add_parser(
        "export", help="convert a scene (or decode a .vqp) to .ply/.compressed.ply/.splat/.spz/.sog/.vqp"
    )
    e.add_argument("input", type=Path)
    e.add_argument("-o", "--output", type=Path, required=True, help="format follows the suffix")
    config_args(e)
    x = e.add_argument_group("scene formats (--sh-degree above applies too)")
    x.add_argument("--min-opacity", type=float, default=0.0, help="drop Gaussians whose opacity (0..1) is below this")
    x.add_argument("--box", help="keep Gaussians inside minx,miny,minz,maxx,maxy,maxz (--box=-1,... for negatives)")
    x.add_argument("--drop-non-finite", action="store_true", help="drop Gaussians with NaN/inf values")
    x.add_argument("--spz-axes", choices=("ply", "rub"), default="ply", help="ply: the scene's axes (default); rub")
    x.add_argument("--sog-palette", type=int, default=0, help="SH palette entries of a .sog (0 = by scene size)")

    r = sub.add_parser("render", help="render a scene from cameras to PNG files")
    r.add_argument("input", type=Path)
    r.add_argument("--cameras", type=Path, required=True)
    r.add_argument("-o", "--output", type=Path, required=True, help="directory for the PNGs")
    r.add_argument("--split", help="only the cameras of this split (e.g. test)")
    r.add_argument("--background", help="r,g,b in [0, 1] (default: the cameras file's, else 1,1,1)")

    j = sub.add_parser("jobs", help="list jobs")
    j.add_argument("--state", action="append", choices=[s.value for s in JobState])
    j.add_argument("--limit", type=int, default=100)

    c = sub.add_parser("cancel", help="cancel a job")
    c.add_argument("id")

    sub.add_parser("health", help="exit 0 when the server is SERVING")
    return p


def _config(args: argparse.Namespace) -> QuantizeConfig:
    names = ("preset", "dc_codebook", "sh_codebook", "scale_codebook", "rot_codebook", "kmeans_iters", "seed",
             "position_precision", "opacity_precision", "entropy", "sh_degree", "strict")  # fmt: skip
    return QuantizeConfig(**{n: getattr(args, n) for n in names}).validate()


_SHOWN_METRICS = (("step", "step {:.0f}"), ("loss", "loss {:.4f}"), ("psnr", "PSNR {:.2f} dB"),
                  ("num_gaussians", "{:.0f} Gaussians"))  # fmt: skip


class _Progress:
    """A one-line progress bar on stderr (a line per stage, or per 10% of training, when stderr is not
    a terminal), with the job's training metrics (step, loss, PSNR, Gaussian count) when it has them."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last: tuple[str, int] = ("", -1)

    def __call__(self, st: JobStatus) -> None:
        pct = int(round(100 * st.progress))
        training = "step" in st.metrics or "loss" in st.metrics
        key = (f"{st.state.value} {st.stage}", pct if self.tty else (pct // 10 if training else -1))
        if key == self.last:
            return
        self.last = key
        bar = "#" * (pct // 4) + "." * (25 - pct // 4)
        shown = [fmt.format(st.metrics[k]) for k, fmt in _SHOWN_METRICS if k in st.metrics and not st.terminal]
        line = f"[{bar}] {pct:3d}% {st.state.value.lower()} {st.stage}" + (f"  {', '.join(shown)}" if shown else "")
        if self.tty:
            sys.stderr.write("\r" + line[:100].ljust(100))
            if st.terminal:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _follow(job: Job, timeout: float | None) -> JobStatus:
    """Show progress until the job is terminal; returns SUCCEEDED status, raises otherwise."""
    show = _Progress()
    st = None
    try:
        for st in job.watch(timeout=timeout):
            show(st)
            if st.terminal:
                break
        if st is None or not st.terminal:
            st = job.wait(timeout)  # the stream ended early (server restart): re-attach
    except KeyboardInterrupt:
        job.cancel()
        raise
    except VqpressError as e:
        if e.code == "DEADLINE_EXCEEDED":
            raise TimeoutError(f"job {job.id} did not finish within {timeout} s") from None
        raise
    if st.state is JobState.FAILED:
        raise VqpressError("FAILED", f"job {job.id} failed: {st.error}")
    if st.state is JobState.CANCELLED:
        raise VqpressError("CANCELLED", f"job {job.id} was cancelled")
    return st


def _cmd_quantize(client: Client, args: argparse.Namespace) -> int:
    cfg: QuantizeConfig | FieldQuantizeConfig
    if args.field_method or args.bits is not None or args.rank is not None:
        cfg = FieldQuantizeConfig(
            method=args.field_method, bits=args.bits, rank=args.rank, iters=args.kmeans_iters, seed=args.seed
        ).validate()
    else:
        cfg = _config(args)
    cameras, background = load_cameras_json(args.cameras, args.split) if args.cameras else (None, None)
    job = client.quantize(args.input, cfg, cameras=cameras, background=background)
    st = _follow(job, args.timeout)
    by_kind = {r.kind: r for r in st.results}
    vqp = by_kind.get("vqp", st.results[0] if st.results else None)
    if vqp is None:
        raise VqpressError("INTERNAL", f"job {job.id} succeeded without a .vqp result")
    client.download(vqp, args.output)
    report: dict[str, Any] = dict(st.metrics)
    rep = by_kind.get("json")
    if rep is not None:
        report = json.loads(client.download_bytes(rep))
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(f"wrote {args.output}")
        for k, v in report.items():
            if not isinstance(v, (dict, list)):
                print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
    return 0


def _train_config(args: argparse.Namespace) -> SplatTrainConfig | FieldTrainConfig:
    is_image = args.dataset.suffix.lower() in (".png", ".jpg", ".jpeg")
    if args.field or is_image:
        if args.sh_degree is not None or args.no_qat or args.init is not None:
            raise invalid("--sh-degree, --no-qat and --init apply to splat training, not --field")
        common = {"levels": args.levels, "max_resolution": args.max_resolution}
        if args.grid == "vqad":
            sparse = False if args.no_sparse else None
            grid: DenseGridConfig | VqadGridConfig | HashGridConfig = VqadGridConfig(
                bits=args.bits, sparse=sparse, **common
            )
        elif args.bits is not None or args.no_sparse:
            raise invalid("--bits and --no-sparse apply to the VQ-AD grid (--grid vqad)")
        else:
            grid = DenseGridConfig(**common) if args.grid == "dense" else HashGridConfig(**common)
        return FieldTrainConfig(grid=grid, steps=args.steps, seed=args.seed, downscale=args.downscale).validate()
    if args.bits is not None or args.levels is not None or args.max_resolution is not None:
        raise invalid("--bits, --levels and --max-resolution apply to field training (--field)")
    qat = QatConfig(enabled=False) if args.no_qat else None
    return SplatTrainConfig(steps=args.steps, seed=args.seed, sh_degree=args.sh_degree, qat=qat).validate()


def _cmd_train(client: Client, args: argparse.Namespace) -> int:
    config = _train_config(args)
    job = client.train(args.dataset, config, init=args.init)
    if not args.json:
        print(f"job {job.id}", file=sys.stderr)
    st = _follow(job, args.timeout)
    out: Path = args.output
    written = []
    report: dict[str, Any] = dict(st.metrics)
    for r in st.results:
        if r.kind == "vqp":
            dst = out
        else:
            dst = out.with_name(f"{out.stem}.{Path(r.name).name}" if r.kind != "ply" else f"{out.stem}.ply")
        client.download(r, dst)
        written.append(dst)
        if r.kind == "json":
            report = json.loads(dst.read_text())
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print("wrote " + ", ".join(str(p) for p in written))
        for k, v in report.items():
            if not isinstance(v, (dict, list)):
                print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
    return 0


def _export_options(args: argparse.Namespace) -> ExportOptions:
    box = None
    if args.box:
        try:
            box = [float(v) for v in args.box.split(",")]
        except ValueError:
            box = []
        if len(box) != 6:
            raise invalid(f"--box must be six numbers minx,miny,minz,maxx,maxy,maxz, got {args.box!r}")
    return ExportOptions(
        sh_degree=args.sh_degree,
        min_opacity=args.min_opacity,
        box_min=(box[0], box[1], box[2]) if box else None,
        box_max=(box[3], box[4], box[5]) if box else None,
        drop_non_finite=args.drop_non_finite,
        spz_axes=args.spz_axes,
        sog_sh_palette=args.sog_palette,
    )


def _cmd_export(client: Client, args: argparse.Namespace) -> int:
    name = args.output.name.lower()
    fmt = "compressed_ply" if name.endswith(".compressed.ply") else args.output.suffix.lower().lstrip(".")
    if fmt not in _EXPORT_FORMATS:
        raise invalid(f"{args.output}: the output suffix must be one of .ply .compressed.ply .splat .spz .sog .vqp")
    if fmt == "vqp":
        job = client.export(args.input, "vqp", _config(args))
    else:
        job = client.export(args.input, fmt, options=_export_options(args))  # type: ignore[arg-type]
    st = _follow(job, args.timeout)
    if not st.results:
        raise VqpressError("INTERNAL", f"job {job.id} succeeded without a result")
    client.download(st.results[0], args.output)
    print(f"wrote {args.output} ({st.results[0].size} bytes)")
    return 0


def _cmd_render(client: Client, args: argparse.Namespace) -> int:
    cameras, file_bg = load_cameras_json(args.cameras, args.split)
    if args.background:
        try:
            background = tuple(float(x) for x in args.background.split(","))
        except ValueError:
            raise invalid(f"--background must be r,g,b numbers, got {args.background!r}") from None
    else:
        background = file_bg or (1.0, 1.0, 1.0)
    args.output.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for i, (cam, png) in enumerate(client.render_iter(args.input, cameras, background, "png")):
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(cam.name).name) or f"view_{i:04d}"
        if stem in used:
            stem = f"{stem}_{i:04d}"
        used.add(stem)
        assert isinstance(png, bytes)
        (args.output / f"{stem}.png").write_bytes(png)
    print(f"wrote {len(used)} images to {args.output}")
    return 0


def _cmd_jobs(client: Client, args: argparse.Namespace) -> int:
    for st in client.jobs(args.state, limit=args.limit):
        extra = f"  {st.error}" if st.error else ""
        print(f"{st.id}  {st.kind:<12} {st.state.value:<10} {100 * st.progress:5.1f}%  {st.stage}{extra}")
    return 0


def _cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    st = client.job(args.id).cancel()
    print(f"{st.id} {st.state.value}")
    return 0


def _cmd_health(client: Client, args: argparse.Namespace) -> int:
    status = client.health()
    if status != "SERVING":
        print(f"error: server at {args.server} is {status}", file=sys.stderr)
        return 1
    print("SERVING")
    return 0


_COMMANDS = {
    "quantize": _cmd_quantize,
    "train": _cmd_train,
    "export": _cmd_export,
    "render": _cmd_render,
    "jobs": _cmd_jobs,
    "cancel": _cmd_cancel,
    "health": _cmd_health,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        tls = TlsConfig(ca_cert=args.tls_ca) if args.tls_ca else None
        with Client(args.server, token=args.token, tls=tls) as client:
            return _COMMANDS[args.command](client, args)
    except VqpressError as e:
        print(f"error: {e}", file=sys.stderr)
    except (MissingDependencyError, TimeoutError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""`vqpress`: the command-line client of the vqpress service.

    vqpress quantize scene.ply -o scene.vqp [--preset high_ratio] [--json] [--detach]
    vqpress export scene.vqp -o scene.ply
    vqpress quantize field.vqp -o small.vqp --field-method kmvq --bits 4
    vqpress quantize scene.ply -o scene.vqp --dataset photos.zip [--finetune-steps 3000]
    vqpress train photos.zip -o scene.vqp [--fast] [--steps N] [--json]
    vqpress train photo.png -o photo.vqp --field [--steps 500] [--bits 4]
    vqpress render scene.vqp --cameras cameras.json -o views/ [--split test]
    vqpress view scene.ply [--compare scene.vqp] [--camera cameras.json --view N] [--psnr] [--port P]
    vqpress status JOB | wait JOB | download JOB -o OUT | logs JOB [-f]
    vqpress jobs | cancel JOB | health [-v]

The connection flags (--server, --token-file, --tls-ca, --timeout, --quiet) go before or after the
command. Errors print ``error: CODE: message`` on stderr; the exit status says what kind of failure
it was (see ``EXIT_STATUS_HELP``): a pipeline retries 5 and fixes its input on 3.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import digests
from ._transport import TOKEN_ENV, TlsConfig
from ._version import __version__
from .client import Client, Job
from .errors import (
    EXIT_AUTH,
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_JOB_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    JobTimeout,
    MissingDependencyError,
    VqpressError,
    exit_code,
    invalid,
)
from .progress import Progress
from .types import (
    FIELD_QUANTIZE_METHODS,
    OPACITY_PRECISIONS,
    POSITION_PRECISIONS,
    PRESETS,
    ArtifactInfo,
    Camera,
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
TLS_CA_ENV = "VQPRESS_TLS_CA"  # default for --tls-ca
TLS_NAME_ENV = "VQPRESS_TLS_SERVER_NAME"  # default for --tls-server-name
DEFAULT_SERVER = "localhost:50051"
DEFAULT_RECONNECT_S = 600.0  # how long a long command waits for a server that went away (seconds)
_EXPORT_FORMATS = ("ply", "compressed_ply", "splat", "spz", "sog", "vqp")
_QUANTIZE_SUFFIX = ".vqp"

EXIT_STATUS_HELP = f"""exit status:
  {EXIT_OK}    done
  {EXIT_ERROR}    an error of the server itself (INTERNAL, UNKNOWN)
  {EXIT_USAGE}    the command line is wrong
  {EXIT_INVALID}    the input is wrong (a bad file, option or output path): fix it, do not retry as is
  {EXIT_NOT_FOUND}    no such job or artifact
  {EXIT_UNAVAILABLE}    the server is unreachable, restarting or busy: retry later
  {EXIT_JOB_FAILED}    the job failed (the message has the server's reason)
  {EXIT_CANCELLED}    the job was cancelled
  {EXIT_TIMEOUT}    --timeout passed; the job goes on: collect it with `vqpress wait JOB` / `download JOB`
  {EXIT_AUTH}    the server refused the token (--token-file or {TOKEN_ENV})
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C cancels the job it was following)"""


def _global_flags(p: argparse.ArgumentParser, *, sub: bool) -> None:
    """The connection flags. On a subcommand they default to SUPPRESS so that a value given before
    the subcommand is kept unless it is given again after it."""

    def d(value: Any) -> Any:
        return argparse.SUPPRESS if sub else value

    server = os.environ.get(SERVER_ENV) or DEFAULT_SERVER
    p.add_argument("--server", default=d(server), metavar="HOST:PORT",
                   help=f"the server (env {SERVER_ENV}; now {server})")  # fmt: skip
    # A token on the command line is visible to every user of the machine (ps): a file or the environment only.
    p.add_argument("--token", dest="token_on_argv", default=d(None), help=argparse.SUPPRESS)
    p.add_argument("--token-file", type=Path, default=d(None), metavar="FILE",
                   help=f"read the bearer token from FILE (or set env {TOKEN_ENV})")  # fmt: skip
    ca = os.environ.get(TLS_CA_ENV) or None
    p.add_argument("--tls-ca", type=Path, default=d(Path(ca) if ca else None), metavar="PEM",
                   help=f"CA certificate: connect with TLS (env {TLS_CA_ENV})")  # fmt: skip
    p.add_argument("--tls-server-name", default=d(os.environ.get(TLS_NAME_ENV) or None), metavar="NAME",
                   help=f"the name to check the server's certificate against (env {TLS_NAME_ENV})")  # fmt: skip
    p.add_argument("--timeout", type=float, default=d(None), metavar="S",
                   help="give up waiting for a job after S seconds (exit 8; the job goes on running)")  # fmt: skip
    p.add_argument(
        "--reconnect",
        type=float,
        default=d(DEFAULT_RECONNECT_S),
        metavar="S",
        help=f"wait up to S seconds for a server that went away mid-job (default {DEFAULT_RECONNECT_S:g})",
    )
    p.add_argument("-q", "--quiet", action="store_true", default=d(False), help="no progress on stderr")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vqpress",
        description="Client of the vqpress compression service.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"vqpress {__version__}")
    _global_flags(p, sub=False)
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    _global_flags(common, sub=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common], epilog=EXIT_STATUS_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip

    def detach_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--detach",
            action="store_true",
            help="print the job id on stdout and return at once; collect with `vqpress download JOB`",
        )

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
        g.add_argument("--importance", choices=("views", "none"), help="weigh k-means by the scene's views")
        g.add_argument("--position-bits", type=int, metavar="B", help="bits per axis of fixed16 positions, 8..16")
        g.add_argument("--prune", type=float, metavar="F", help="drop this fraction of the least important Gaussians")

    q = add("quantize", "compress a scene to .vqp and print the report")
    q.add_argument("input", type=Path)
    q.add_argument("-o", "--output", type=Path, required=True, help="the .vqp to write")
    q.add_argument(
        "--cameras",
        type=Path,
        help="cameras.json to evaluate PSNR/SSIM on (default: orbit views); its test split when it has one",
    )
    q.add_argument("--split", help="only the cameras of this split (default: 'test' when the file has one)")
    q.add_argument("--no-eval", action="store_true", help="skip the PSNR/SSIM renders: sizes and timings only")
    q.add_argument(
        "--dataset",
        type=Path,
        help="posed photos (.zip/.tar, as train takes): fine-tune the quantized scene on them; PSNR/SSIM on "
        "their held-out views",
    )
    q.add_argument("--finetune-steps", type=int, metavar="N", help="with --dataset: fine-tune steps (default 3000)")
    q.add_argument("--json", action="store_true", help="print the report as JSON on stdout, nothing else")
    detach_arg(q)
    config_args(q)
    g = q.add_argument_group("neural fields (the input is a field .vqp; --kmeans-iters and --seed apply)")
    g.add_argument("--field-method", choices=FIELD_QUANTIZE_METHODS, help="post-hoc compression of a dense field")
    g.add_argument("--bits", type=int, help="kmvq: bits per vertex (2^bits centroids per level), 1..10")
    g.add_argument("--rank", type=int, help="lra: rank of the approximation")

    t = add("train", "train a splat scene (or a neural field) and download the results")
    t.add_argument("dataset", type=Path, help=".zip/.tar of posed images, or for --field also a .png/.jpg image")
    t.add_argument("-o", "--output", type=Path, required=True, help="the .vqp to write; other results go beside it")
    t.add_argument("--field", action="store_true", help="train a neural field (default for a .png/.jpg dataset)")
    t.add_argument("--steps", type=int, help="optimizer steps (splats: scales the whole schedule)")
    t.add_argument("--fast", action="store_true", help="splats: the 7k-step schedule instead of the full 30k")
    t.add_argument("--seed", type=int)
    t.add_argument("--json", action="store_true", help="print the report as JSON on stdout, nothing else")
    detach_arg(t)
    g = t.add_argument_group("splats")
    g.add_argument("--sh-degree", type=int, choices=range(4))
    g.add_argument("--no-qat", action="store_true", help="plain 3DGS, quantized after training")
    g.add_argument(
        "--qat-mode",
        choices=("compact3d", "finetune"),
        help="finetune: plain training, the post-hoc quantizer, then a fine-tune through the quantized scene "
        "(the default); compact3d: codebooks trained from mid-schedule on",
    )
    g.add_argument("--init", type=Path, help="a scene to fine-tune instead of initializing from the dataset")
    g.add_argument("--init-num-points", type=int, metavar="N", help="Gaussians of a random initialization")
    g = t.add_argument_group("fields")
    g.add_argument("--grid", choices=("vqad", "dense", "hash"), default="vqad")
    g.add_argument("--bits", type=int, help="VQ-AD bits per vertex, 1..10 (default 4)")
    g.add_argument(
        "--no-sparse", action="store_true", help="3D VQ-AD: logits on every vertex, not only near occupied space"
    )
    g.add_argument("--levels", type=int)
    g.add_argument("--max-resolution", type=int)
    t.add_argument("--downscale", type=int, help="reduce the photos by this integer factor (splats and 3D fields)")

    e = add("export", "convert a scene (or decode a .vqp) to .ply/.compressed.ply/.splat/.spz/.sog/.vqp")
    e.add_argument("input", type=Path)
    e.add_argument("-o", "--output", type=Path, required=True, help="format follows the suffix")
    detach_arg(e)
    config_args(e)
    x = e.add_argument_group("scene formats (--sh-degree above applies too)")
    x.add_argument("--min-opacity", type=float, default=0.0, help="drop Gaussians whose opacity (0..1) is below this")
    x.add_argument("--box", help="keep Gaussians inside minx,miny,minz,maxx,maxy,maxz (--box=-1,... for negatives)")
    x.add_argument("--drop-non-finite", action="store_true", help="drop Gaussians with NaN/inf values")
    x.add_argument("--spz-axes", choices=("ply", "rub"), default="ply", help="ply: the scene's axes (default); rub")
    x.add_argument("--sog-palette", type=int, default=0, help="SH palette entries of a .sog (0 = by scene size)")

    r = add("render", "render a scene from cameras to PNG files")
    r.add_argument("input", type=Path)
    r.add_argument("--cameras", type=Path, required=True)
    r.add_argument("-o", "--output", type=Path, required=True, help="directory for the PNGs")
    r.add_argument("--split", help="only the cameras of this split (e.g. test)")
    r.add_argument("--background", help="r,g,b in [0, 1] (default: the cameras file's, else 1,1,1)")
    r.add_argument(
        "--detach",
        action="store_true",
        help="print the job id on stdout and return at once; collect with `vqpress download JOB -o DIR`",
    )

    v = sub.add_parser(
        "view",
        parents=[common],
        help="show a scene (and a compressed version beside it) in the browser; needs no server",
        description="Serve a local web page (on 127.0.0.1 only) that renders SCENE with a WebGL splat renderer "
        "(Spark, shipped with vqpress) and, with --compare, OTHER beside it with one camera for both, their "
        "bytes on disk and the PSNR between them. A .vqp is decoded by vqpress on the fly. Open the printed URL; "
        "Ctrl-C stops the page.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("scene", type=Path, metavar="SCENE", help=".ply, .compressed.ply, .splat, .spz, .sog or .vqp")
    v.add_argument("--compare", type=Path, metavar="OTHER", help="a second scene (e.g. the .vqp of SCENE), shown right")
    v.add_argument("--camera", type=Path, metavar="CAMERAS_JSON", help="start at a camera of this cameras.json")
    v.add_argument("--view", type=int, default=0, metavar="N", help="which camera of --camera (default 0)")
    v.add_argument("--split", help="count --view among the cameras of this split only (e.g. test)")
    v.add_argument("--size", default="960x720", metavar="WxH", help="each view's pixels without --camera (960x720)")
    v.add_argument("--background", help="r,g,b in [0, 1] (default: the cameras file's, else 1,1,1)")
    v.add_argument(
        "--psnr",
        action="store_true",
        help="render both scenes with the vqpress service (--server) at the cameras of --camera and show the "
        "PSNR between them; without it the page shows the PSNR of a <stem>.report.json beside OTHER, if any",
    )
    v.add_argument("--port", type=int, default=0, help="the port on 127.0.0.1 (default: a free one)")

    s = add("status", "print a job's state, stage and progress (exit 0 whatever the state)")
    s.add_argument("id", metavar="JOB")
    s.add_argument("--json", action="store_true", help="the status as JSON")

    w = add("wait", "follow a job until it ends; the exit status says how it ended")
    w.add_argument("id", metavar="JOB")
    w.add_argument("--json", action="store_true", help="print the final status as JSON on stdout")

    dl = add("download", "write a finished job's results, as the command that started it would have")
    dl.add_argument("id", metavar="JOB")
    dl.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="the main result's file (other results go beside it), or a directory for all of them "
        "(a render job's images always go into a directory)",
    )
    dl.add_argument("--wait", action="store_true", help="wait for the job first if it is still running")
    dl.add_argument("--json", action="store_true", help="print the report as JSON on stdout, nothing else")

    lg = add("logs", "print a job's record (times, stage, metrics, error); -f follows it")
    lg.add_argument("id", metavar="JOB")
    lg.add_argument("-f", "--follow", action="store_true", help="then print a line at each change until it ends")

    j = add("jobs", "list jobs")
    j.add_argument("--state", action="append", choices=[s.value for s in JobState])
    j.add_argument("--limit", type=int, default=100)

    c = add("cancel", "cancel a job")
    c.add_argument("id", metavar="JOB")

    h = add("health", "exit 0 when the server is SERVING")
    h.add_argument("-v", "--verbose", action="store_true", help="also the server's version, devices and limits")
    return p


# -- configs -----------------------------------------------------------------------------


def _config(args: argparse.Namespace) -> QuantizeConfig:
    names = ("preset", "dc_codebook", "sh_codebook", "scale_codebook", "rot_codebook", "kmeans_iters", "seed",
             "position_precision", "opacity_precision", "entropy", "sh_degree", "strict", "importance",
             "position_bits", "prune")  # fmt: skip
    return QuantizeConfig(**{n: getattr(args, n) for n in names}).validate()


def _train_config(args: argparse.Namespace) -> SplatTrainConfig | FieldTrainConfig:
    is_image = args.dataset.suffix.lower() in (".png", ".jpg", ".jpeg")
    if args.field or is_image:
        splat_only = (args.sh_degree, args.init, args.init_num_points)
        if any(v is not None for v in splat_only) or args.no_qat or args.fast or args.qat_mode:
            raise invalid(
                "--sh-degree, --no-qat, --qat-mode, --init, --init-num-points and --fast apply to splat training, "
                "not --field"
            )
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
    if args.no_qat and args.qat_mode:
        raise invalid("--no-qat trains without quantization-aware training: drop --qat-mode")
    qat = QatConfig(enabled=False) if args.no_qat else (QatConfig(mode=args.qat_mode) if args.qat_mode else None)
    return SplatTrainConfig(
        schedule="fast" if args.fast else None,
        steps=args.steps,
        seed=args.seed,
        sh_degree=args.sh_degree,
        qat=qat,
        init_num_points=args.init_num_points,
        downscale=args.downscale,
    ).validate()


def _has_split(cameras: Path, split: str) -> bool:
    """Whether a cameras file marks any camera with ``split`` (errors are left to load_cameras_json)."""
    try:
        doc = json.loads(cameras.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    cams = doc.get("cameras") if isinstance(doc, dict) else doc
    return isinstance(cams, list) and any(isinstance(c, dict) and c.get("split") == split for c in cams)


def _load_cameras(path: Path, split: str | None, *, default_test: bool) -> tuple[list[Camera], Any]:
    if split is None and default_test and _has_split(path, "test"):
        split = "test"  # evaluate on held-out views, as `vqpress-server compress` does
    return load_cameras_json(path, split)


# -- following a job ---------------------------------------------------------------------


def _progress(args: argparse.Namespace, label: str) -> Progress:
    return Progress(label, enabled=not args.quiet)


def _follow(job: Job, args: argparse.Namespace) -> JobStatus:
    """Show progress until the job ends, re-attaching across server restarts; returns the SUCCEEDED
    status and raises JobFailed / JobCancelled / JobTimeout / VqpressError otherwise. Ctrl-C cancels."""
    with _progress(args, f"job {job.id}") as show:

        def retry(err: VqpressError) -> None:
            show.note(f"lost the server ({err.code}); re-attaching to job {job.id} ...")

        try:
            return job.wait(args.timeout, on_status=show.job, on_retry=retry, unavailable_timeout=args.reconnect)
        except KeyboardInterrupt:
            try:
                job.cancel()
            except VqpressError:
                pass
            raise


def _submitted(job: Job, args: argparse.Namespace) -> bool:
    """Print the id of a job just started: on stdout alone with --detach (then the command ends),
    else on stderr so that a log tells which job to collect if this process dies."""
    if args.detach:
        print(job.id, flush=True)
        return True
    if not args.quiet:
        print(f"job {job.id}", file=sys.stderr, flush=True)
    return False


def _beside(out: Path, r: ArtifactInfo) -> Path:
    """Where a secondary result goes next to ``out``: scene.vqp -> scene.ply, scene.report.json, ..."""
    if r.kind == "ply":
        return out.with_name(f"{out.stem}.ply")
    return out.with_name(f"{out.stem}.{Path(r.name).name or digests.file_name(r.id)}")


def _save(client: Client, st: JobStatus, out: Path, *, everything: bool) -> tuple[list[Path], dict[str, Any]]:
    """Write a finished job's results the way the command that started it does, and return
    (the files written, its report). The main result (a .vqp, or the export's file) goes to ``out``;
    with ``everything`` the other results go beside it; a directory ``out`` takes all of them under
    their stored names. A local write that fails says how to fetch the result later."""
    if not st.results:
        raise VqpressError("INTERNAL", f"job {st.id} succeeded without a result")
    by_kind = {r.kind: r for r in st.results}
    main = by_kind.get("vqp") if st.kind != "export" else None
    main = main or st.results[0]
    written: list[Path] = []
    report: dict[str, Any] = dict(st.metrics)
    try:
        if out.is_dir() or str(out).endswith(os.sep) or st.kind == "render":  # a render's images need a folder
            out.mkdir(parents=True, exist_ok=True)
            for r in st.results:
                written.append(client.download(r, out / (Path(r.name).name or digests.file_name(r.id))))
        else:
            written.append(client.download(main, out))
            if everything:
                for r in st.results:
                    if r.id != main.id:
                        written.append(client.download(r, _beside(out, r)))
    except OSError as e:
        raise invalid(
            f"cannot write {e.filename or out}: {e.strerror or e}; the results stay on the server: "
            f"`vqpress download {st.id} -o OTHER_PATH`"
        ) from None
    rep = by_kind.get("json")
    if rep is not None:
        report = json.loads(client.download_bytes(rep))
    return written, report


def _print_report(args: argparse.Namespace, written: list[Path], report: dict[str, Any]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2, sort_keys=True))
        return
    print("wrote " + ", ".join(str(p) for p in written))
    for k, v in report.items():
        if not isinstance(v, (dict, list)):
            print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")


def _everything(kind: str) -> bool:
    return kind.startswith("train")


# -- commands ----------------------------------------------------------------------------


def _cmd_quantize(client: Client, args: argparse.Namespace) -> int:
    if args.output.suffix.lower() != _QUANTIZE_SUFFIX:
        raise invalid(
            f"{args.output}: quantize writes a .vqp file; name it *.vqp (for .ply/.splat/.spz use `vqpress export`)"
        )
    cfg: QuantizeConfig | FieldQuantizeConfig
    if args.field_method or args.bits is not None or args.rank is not None:
        cfg = FieldQuantizeConfig(
            method=args.field_method, bits=args.bits, rank=args.rank, iters=args.kmeans_iters, seed=args.seed
        ).validate()
    else:
        cfg = _config(args)
    cameras, background = _load_cameras(args.cameras, args.split, default_test=True) if args.cameras else (None, None)
    job = client.quantize(
        args.input, cfg, cameras=cameras, background=background, evaluate=not args.no_eval, dataset=args.dataset,
        finetune_steps=args.finetune_steps,
    )  # fmt: skip
    if _submitted(job, args):
        return EXIT_OK
    if args.dataset is not None:
        _warn_if_cpu(client, args)
    st = _follow(job, args)
    _print_report(args, *_save(client, st, args.output, everything=False))
    return EXIT_OK


def _cmd_train(client: Client, args: argparse.Namespace) -> int:
    config = _train_config(args)
    job = client.train(args.dataset, config, init=args.init)
    if _submitted(job, args):
        return EXIT_OK
    _warn_if_cpu(client, args)
    st = _follow(job, args)
    _print_report(args, *_save(client, st, args.output, everything=True))
    return EXIT_OK


def _warn_if_cpu(client: Client, args: argparse.Namespace) -> None:
    """Training on a server without a GPU takes hours: say so before the progress bar sits at 0%."""
    if args.quiet:
        return
    try:
        info = client.server_info()
    except VqpressError:
        return  # an older server without ServerInfo: nothing to say
    if not info.gpus:
        print(
            f"warning: the server at {args.server} has no GPU ({info.executor}); training runs on its CPU "
            "and takes far longer than on a GPU (many minutes for a few hundred steps)",
            file=sys.stderr,
        )


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
    if _submitted(job, args):
        return EXIT_OK
    st = _follow(job, args)
    written, _ = _save(client, st, args.output, everything=False)
    print(f"wrote {written[0]} ({written[0].stat().st_size} bytes)")
    return EXIT_OK


def _cmd_render(client: Client, args: argparse.Namespace) -> int:
    cameras, file_bg = load_cameras_json(args.cameras, args.split)
    if args.background:
        try:
            background = tuple(float(x) for x in args.background.split(","))
        except ValueError:
            raise invalid(f"--background must be r,g,b numbers, got {args.background!r}") from None
    else:
        background = file_bg or (1.0, 1.0, 1.0)
    if args.detach:  # a render job the pipeline collects later with `download JOB -o DIR`
        _submitted(client.submit_render(args.input, cameras, background), args)
        return EXIT_OK
    args.output.mkdir(parents=True, exist_ok=True)
    names = _image_names(cameras)
    done: set[int] = set()
    n = len(cameras)
    with _progress(args, "render") as show:
        show.update("running", f"0/{n} views", 0.0)
        lost_since: float | None = None
        while len(done) < n:
            todo = [i for i in range(n) if i not in done]
            try:
                for k, (_, png) in enumerate(client.render_iter(args.input, [cameras[i] for i in todo], background)):
                    assert isinstance(png, bytes)
                    i = todo[k]
                    (args.output / f"{names[i]}.png").write_bytes(png)
                    done.add(i)
                    lost_since = None
                    show.update("running", f"{len(done)}/{n} views", len(done) / n)
            except VqpressError as e:
                if e.code != "UNAVAILABLE":
                    raise
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > args.reconnect:
                    raise
                show.note(f"lost the server ({e.code}); rendering the {n - len(done)} views left again ...")
                time.sleep(1.0)
        show.update("succeeded", f"{n}/{n} views", 1.0)
    print(f"wrote {n} images to {args.output}")
    return EXIT_OK


def _image_names(cameras: Sequence[Camera]) -> list[str]:
    used: set[str] = set()
    out = []
    for i, cam in enumerate(cameras):
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(cam.name).name) or f"view_{i:04d}"
        if stem in used:
            stem = f"{stem}_{i:04d}"
        used.add(stem)
        out.append(stem)
    return out


def _rgb(text: str, flag: str) -> tuple[float, float, float]:
    try:
        rgb = tuple(float(x) for x in text.split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
        raise invalid(f"{flag} must be three numbers r,g,b in [0, 1], got {text!r}")
    return rgb  # type: ignore[return-value]


def _cmd_view(args: argparse.Namespace) -> int:
    """Serve the viewer page until Ctrl-C. Everything is local; only --psnr asks the service for renders."""
    from .viewer import Viewer, ViewerConfig, load_scene_file, report_psnr, service_psnr

    scenes = [load_scene_file(args.scene)]
    if args.compare is not None:
        scenes.append(load_scene_file(args.compare))
    camera, cameras, background = None, None, None
    if args.camera is not None:
        cameras, background = load_cameras_json(args.camera, args.split)
        if not 0 <= args.view < len(cameras):
            raise invalid(f"--view {args.view}: {args.camera} has {len(cameras)} camera(s) (0..{len(cameras) - 1})")
        camera = cameras[args.view]
    elif args.split is not None:
        raise invalid("--split applies to --camera")
    if args.background:
        background = _rgb(args.background, "--background")
    m = re.fullmatch(r"(\d+)x(\d+)", args.size)
    if not m or not (16 <= int(m[1]) <= 4096 and 16 <= int(m[2]) <= 4096):
        raise invalid(f"--size must be WIDTHxHEIGHT, each 16..4096 pixels, got {args.size!r}")
    psnr = None
    if args.compare is not None:
        if args.psnr:
            if cameras is None:
                raise invalid("--psnr renders both scenes at the cameras of --camera: pass a cameras.json")
            if not args.quiet:
                print(f"rendering both scenes at {len(cameras)} camera(s) with the service at {args.server} ...",
                      file=sys.stderr, flush=True)  # fmt: skip
            tls = TlsConfig(ca_cert=args.tls_ca, server_name=args.tls_server_name) if args.tls_ca else None
            with Client(args.server, token=args.token, tls=tls) as client:
                psnr = service_psnr(client, args.scene, args.compare, cameras, background or (1.0, 1.0, 1.0))
        else:
            psnr = report_psnr(args.compare)
    elif args.psnr:
        raise invalid("--psnr compares two scenes: pass --compare OTHER")
    config = ViewerConfig(
        scenes, camera=camera, background=background or (1.0, 1.0, 1.0), psnr=psnr, size=(int(m[1]), int(m[2]))
    )
    viewer = Viewer(config, args.port)
    print(viewer.url, flush=True)
    if not args.quiet:
        for sc in scenes:
            how = " (decoded from .vqp)" if sc.decoded_from else ""
            print(f"  {sc.path}: {sc.disk_bytes} bytes on disk{how}", file=sys.stderr)
        if psnr is not None:
            print(f"  PSNR {psnr['db']:.2f} dB ({psnr['source']})", file=sys.stderr)
        print("serving on 127.0.0.1 only; Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        viewer.serve_forever()
    except KeyboardInterrupt:  # the way to stop the page
        pass
    finally:
        viewer.close()
    return EXIT_OK


def _status_dict(st: JobStatus) -> dict[str, Any]:
    return {
        "id": st.id,
        "kind": st.kind,
        "state": st.state.value,
        "stage": st.stage,
        "progress": st.progress,
        "metrics": st.metrics,
        "error": st.error,
        "results": [{"id": r.id, "name": r.name, "kind": r.kind, "size": r.size} for r in st.results],
        "created_at": st.created_at,
        "started_at": st.started_at,
        "finished_at": st.finished_at,
    }


def _status_line(st: JobStatus) -> str:
    extra = f"  {st.error}" if st.error else ""
    return f"{st.id}  {st.kind:<12} {st.state.value:<10} {100 * st.progress:5.1f}%  {st.stage}{extra}"


def _cmd_status(client: Client, args: argparse.Namespace) -> int:
    st = client.job(args.id).status()
    print(json.dumps(_status_dict(st), indent=2, sort_keys=True) if args.json else _status_line(st))
    return EXIT_OK


def _cmd_wait(client: Client, args: argparse.Namespace) -> int:
    st = _follow(Job(client, args.id), args)  # a server that is restarting is waited for too
    print(json.dumps(_status_dict(st), indent=2, sort_keys=True) if args.json else _status_line(st))
    return EXIT_OK


def _cmd_download(client: Client, args: argparse.Namespace) -> int:
    job = client.job(args.id)
    st = job.status()
    if not st.terminal and args.wait:
        st = _follow(job, args)
    if st.state is JobState.FAILED:
        raise VqpressError("FAILED", f"job {st.id} failed, it has no results: {st.error}")
    if st.state is JobState.CANCELLED:
        raise VqpressError("CANCELLED", f"job {st.id} was cancelled, it has no results")
    if st.state is not JobState.SUCCEEDED:
        raise VqpressError(
            "UNAVAILABLE",
            f"job {st.id} is {st.state.value} ({100 * st.progress:.0f}% {st.stage}): not finished yet; "
            f"`vqpress wait {st.id}` blocks until it is, or pass --wait",
        )
    _print_report(args, *_save(client, st, args.output, everything=_everything(st.kind)))
    return EXIT_OK


def _clock(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _cmd_logs(client: Client, args: argparse.Namespace) -> int:
    job = client.job(args.id)
    st = job.status()
    print(f"job {st.id} ({st.kind})")
    print(f"  created  {_clock(st.created_at)}")
    print(f"  started  {_clock(st.started_at)}")
    print(f"  finished {_clock(st.finished_at)}")
    print(f"  state    {st.state.value} at {100 * st.progress:.1f}% {st.stage}")
    for k, v in sorted(st.metrics.items()):
        print(f"  {k}: {v:.6g}")
    for r in st.results:
        print(f"  result {r.name} ({r.kind}, {r.size} bytes) {r.id}")
    if st.error:
        print(f"  error    {st.error}")
    if args.follow and not st.terminal:
        with Progress(f"job {st.id}", tty=False, stream=sys.stdout) as show:
            job.wait(on_status=show.job, unavailable_timeout=args.reconnect)
    return EXIT_OK


def _cmd_jobs(client: Client, args: argparse.Namespace) -> int:
    for st in client.jobs(args.state, limit=args.limit):
        print(_status_line(st))
    return EXIT_OK


def _cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    st = client.job(args.id).cancel()
    print(f"{st.id} {st.state.value}")
    return EXIT_OK


def _cmd_health(client: Client, args: argparse.Namespace) -> int:
    status = client.health()
    if status != "SERVING":
        print(f"error: server at {args.server} is {status}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print("SERVING")
    if args.verbose:
        info = client.server_info()
        print(f"  server   {args.server}, vqpress {info.version}")
        print(f"  executor {info.executor}, {info.workers} worker(s)")
        print(f"  devices  {', '.join(info.devices) or 'none'}" + ("" if info.gpus else "  (no GPU: training is slow)"))
        print(f"  auth     {'token required' if info.auth_required else 'none'}, {'TLS' if info.tls else 'no TLS'}")
        for k, v in sorted(info.limits.items()):
            print(f"  limit    {k} = {v}")
    return EXIT_OK


_COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "quantize": _cmd_quantize,
    "train": _cmd_train,
    "export": _cmd_export,
    "render": _cmd_render,
    "status": _cmd_status,
    "wait": _cmd_wait,
    "download": _cmd_download,
    "logs": _cmd_logs,
    "jobs": _cmd_jobs,
    "cancel": _cmd_cancel,
    "health": _cmd_health,
}


# -- errors as a person reads them -------------------------------------------------------


def explain(err: VqpressError, args: argparse.Namespace) -> str:
    """The error line for ``err``: connection and auth failures in words that say what to check."""
    msg = err.message
    if err.code == "UNAVAILABLE" and ("failed to connect" in msg or "Connection refused" in msg or "DNS" in msg):
        if "ssl" in msg.lower() or "handshake" in msg.lower() or "tls" in msg.lower():
            return (
                f"UNAVAILABLE: the TLS handshake with {args.server} failed: check that the server uses TLS and "
                f"that --tls-ca names the CA that signed its certificate ({msg})"
            )
        return (
            f"UNAVAILABLE: cannot reach a vqpress server at {args.server}: is it running, and is the address "
            f"right? (--server or {SERVER_ENV}; {msg})"
        )
    if err.code == "UNAVAILABLE" and args.tls_ca is None and ("Socket closed" in msg or "reset" in msg.lower()):
        return f"UNAVAILABLE: {args.server} closed the connection: if the server uses TLS, pass --tls-ca ({msg})"
    if err.code == "UNAUTHENTICATED":
        if args.token:
            return (
                f"UNAUTHENTICATED: the server refused the token given (--token-file or {TOKEN_ENV}): check it ({msg})"
            )
        return f"UNAUTHENTICATED: the server needs a token: pass --token-file or set {TOKEN_ENV} ({msg})"
    if isinstance(err, JobTimeout):
        return (
            f"DEADLINE_EXCEEDED: {msg}; it goes on running on the server: "
            f"`vqpress wait {err.job_id}`, then `vqpress download {err.job_id} -o OUT`"
        )
    return f"{err.code}: {msg}"


def read_token(path: Path | None) -> str | None:
    """The bearer token: the content of ``path`` (--token-file, stripped), else the environment's."""
    if path is None:
        return os.environ.get(TOKEN_ENV) or None
    return path.read_text(encoding="utf-8").strip() or None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help and --version exit 0, a bad command line 2
        return int(e.code or 0) if isinstance(e.code, int) else EXIT_USAGE
    if args.token_on_argv is not None:
        print(f"error: --token on the command line is visible to every user (ps); use --token-file FILE or "
              f"set {TOKEN_ENV}", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    try:
        args.token = read_token(args.token_file)
    except OSError as e:
        print(f"error: --token-file: {e}", file=sys.stderr)
        return EXIT_INVALID
    try:
        if args.command == "view":  # local only: no connection to a server
            return _cmd_view(args)
        tls = TlsConfig(ca_cert=args.tls_ca, server_name=args.tls_server_name) if args.tls_ca else None
        with Client(args.server, token=args.token, tls=tls) as client:
            return _COMMANDS[args.command](client, args)
    except VqpressError as e:
        print(f"error: {explain(e, args)}", file=sys.stderr)
        return exit_code(e)
    except MissingDependencyError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:  # a local file: unreadable input, an output path that cannot be written
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

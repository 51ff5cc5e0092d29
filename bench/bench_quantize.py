"""Quantization end to end: read .ply -> repair -> sort -> 4 codebooks x k-means -> encode -> write .vqp, per stage.

    python bench/bench_quantize.py [--data DIR] [--device cuda|cpu] [--iters N] [--tiled-n N] [--skip-tiled]
                                   [--quick] [--scene X.ply] [--repeats N] [--out-dir DIR] [--out FILE.json]

Scenes: trained_lego_sh3 (71,616 Gaussians, SH 3, quantized with its cameras.json: importance
weights and the default 15 % prune) and a scene made by tiling the lego scene on a grid and
jittering each copy to ``--tiled-n`` Gaussians (default 3,000,000: 744 MB; no cameras beside it,
so unweighted). The tiled scene is written as a .ply to a temporary directory first, so its read
time is that of a real file (from the page cache); building it is not counted. No evaluation:
this is the cost of compressing. Which code runs is the one on PYTHONPATH, so the same script
measures two checkouts back to back (the sha256 of every .vqp is in the JSON).

Stages are ``compress_file``'s timings: read, repair, importance, sort, quantize:<attr> (k-means;
on the CPU the four run side by side; "kmeans" is the wall time of all four), encode (the part
of the encoding after the last k-means: sections whose data is ready are encoded during k-means,
"encode_ahead" is the thread time all the encoding took), write; ``total`` is the wall time of the
whole call, ``other`` what no stage holds.

--quick: the lego scene only, 3 iterations. --iters: Lloyd iterations (default 10; fewer keeps a
CPU run of a large tiled scene short). --repeats: quantize every scene that many times (the first
run on CUDA includes kernel compilation; the table shows each). --no-importance: quantize lego
unweighted (no renders, so no rasterizer is needed). Exits nonzero when a run fails or a .vqp's
header does not hold the reported number of Gaussians.

--profile DIR: after a scene's timed runs, one more under torch.profiler (not in the table: the
profiler slows it), written to DIR as <scene>.ops.txt (the operators by self device time and by
self CPU time), <scene>.trace.json (a Chrome trace: chrome://tracing or ui.perfetto.dev) and, on
CUDA, <scene>.syncs.txt: every host synchronization the run made, counted by the line of Python
that made it (torch's sync debug mode), which is where a loop waits for the GPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
LEGO = Path("trained_lego_sh3") / "lego_7k.ply"
TILED_N = 3_000_000
STAGES = (
    "read",
    "repair",
    "importance",
    "sort",
    "quantize:dc",
    "quantize:sh",
    "quantize:scale",
    "quantize:rot",
    "encode",
    "write",
)


def data_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("VQPRESS_TEST_DATA") or REPO.parent / "shared" / "data")


def make_tiled(src: Path, dst: Path, n: int, seed: int = 0) -> None:
    """Tile the scene on a cubic grid (spacing = its extent) until n Gaussians, jitter every attribute."""
    from vqpress_server.core.splats.formats import load_scene, write_splats
    from vqpress_server.core.splats.model import GaussianSplats

    s, _ = load_scene(src)
    reps = -(-n // s.num_gaussians)
    side = int(np.ceil(reps ** (1 / 3)))
    g = torch.Generator().manual_seed(seed)
    lo, hi = s.means.min(0).values, s.means.max(0).values
    span = hi - lo
    cells = torch.stack(torch.meshgrid(*(torch.arange(side),) * 3, indexing="ij"), -1).reshape(-1, 3)[:reps].float()
    idx = torch.arange(reps * s.num_gaussians) % s.num_gaussians
    idx, cells = idx[:n], cells.repeat_interleave(s.num_gaussians, 0)[:n]

    def jit(t: torch.Tensor, sigma: float) -> torch.Tensor:
        return t + sigma * torch.randn(t.shape, generator=g)

    big = GaussianSplats(
        means=jit(s.means[idx] + cells * span, 1e-3 * float(span.norm())),
        quats=jit(s.quats[idx], 0.02),
        scales=jit(s.scales[idx], 0.05),
        opacities=jit(s.opacities[idx], 0.1),
        sh0=jit(s.sh0[idx], 0.02),
        shN=jit(s.shN[idx], 0.005),
    )
    write_splats(big, dst)


def _staged(t: dict[str, float]) -> float:
    """Seconds the stages hold: k-means as the wall time of all four when the code reports it."""
    km = [f"quantize:{a}" for a in ("dc", "sh", "scale", "rot")]
    rest = sum(t.get(s, 0.0) for s in STAGES if s not in km)
    return rest + (t["kmeans"] if "kmeans" in t else sum(t.get(s, 0.0) for s in km))


def run_one(src: Path, dst: Path, iters: int, device: str, label: str, no_importance: bool) -> dict:
    from vqpress.vqp import read_header
    from vqpress_server.core.splats.compress import compress_file
    from vqpress_server.core.splats.quantize import QuantizeConfig

    cfg = replace(QuantizeConfig(), kmeans_iters=iters)
    if no_importance:
        cfg = replace(cfg, importance="none")
    if device == "cuda":
        torch.cuda.synchronize()
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    rep = compress_file(src, dst, cfg, evaluate=False, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    d = rep.as_dict()
    data = dst.read_bytes()
    n_file = int(read_header(dst).meta["num_gaussians"])
    if n_file != d["num_gaussians"]:
        raise RuntimeError(f"{dst}: the file says {n_file} Gaussians, the report {d['num_gaussians']}")
    t = d["timings_s"]
    return {
        "scene": label,
        "file": src.name,
        "num_gaussians": d["num_gaussians"],
        "num_gaussians_input": d["num_gaussians_input"],
        "device": device,
        "iters": iters,
        "input_bytes": d["input_bytes"],
        "output_bytes": d["output_bytes"],
        "sha256": hashlib.sha256(data).hexdigest(),
        "ratio": d["ratio"],
        "bits_per_gaussian": d["bits_per_gaussian"]["total"],
        "section_bytes": d["section_bytes"],
        "timings_s": t,
        "total_s": total,
        "other_s": total - _staged(t),
        "process_cpu_s": cpu,
        "load_avg_1min": load,
        "threads": torch.get_num_threads(),
    }


def _all_threads() -> object | None:
    """The profiler's setting that records the operators of every thread (the four k-means run on
    threads of their own), or None where this torch lacks it (then only the calling thread's)."""
    try:
        return torch._C._profiler._ExperimentalConfig(profile_all_threads=True)
    except (AttributeError, TypeError):
        print("this torch's profiler records the calling thread only", file=sys.stderr)
        return None


def profile_one(
    src: Path, dst: Path, iters: int, device: str, label: str, no_importance: bool, out_dir: Path
) -> list[Path]:
    """One more run under torch.profiler; returns the files written (see --profile)."""
    import collections
    import warnings

    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    slug = "".join(c if c.isalnum() else "_" for c in label).strip("_")
    out_dir.mkdir(parents=True, exist_ok=True)
    syncs: collections.Counter[str] = collections.Counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        try:
            with profile(activities=activities, record_shapes=False, experimental_config=_all_threads()) as prof:
                run_one(src, dst, iters, device, label, no_importance)
        finally:
            if device == "cuda":
                torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        if "synchroniz" in str(w.message):
            syncs[f"{w.filename}:{w.lineno}"] += 1
    files = [out_dir / f"{slug}.ops.txt", out_dir / f"{slug}.trace.json"]
    sort_device = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    table = prof.key_averages()
    files[0].write_text(
        f"{label}: torch.profiler, {device}, {iters} iterations\n\nby {sort_device}:\n"
        + table.table(sort_by=sort_device, row_limit=40)
        + "\n\nby self_cpu_time_total:\n"
        + table.table(sort_by="self_cpu_time_total", row_limit=40)
    )
    prof.export_chrome_trace(str(files[1]))
    if device == "cuda":
        files.append(out_dir / f"{slug}.syncs.txt")
        files[2].write_text(
            f"{label}: {sum(syncs.values())} host synchronizations, by the line that made them\n\n"
            + "".join(f"{n:8d}  {where}\n" for where, n in syncs.most_common())
        )
    return files


def print_table(rows: list[dict], device: str) -> None:
    cols = ["read", "repair", "importance", "sort", "k-means dc / sh / scale / rot", "encode", "write", "other"]
    print(f"\nquantize end to end on {device} (torch {torch.__version__}), default preset, no evaluation\n")
    print("| scene | N | iters | load | " + " | ".join(cols) + " | total s | CPU s | .vqp bytes | sha256 |")
    print("|---|---:|---:|---:|" + "---:|" * len(cols) + "---:|---:|---:|---|")
    for r in rows:
        t = r["timings_s"]
        km = " / ".join(f"{t.get(f'quantize:{a}', 0.0):.2f}" for a in ("dc", "sh", "scale", "rot"))
        cells = [f"{t.get(s, 0.0):.2f}" for s in ("read", "repair", "importance", "sort")]
        cells += [km, f"{t.get('encode', 0.0):.2f}", f"{t.get('write', 0.0):.2f}", f"{r['other_s']:.2f}"]
        print(
            f"| {r['scene']} | {r['num_gaussians']:,} | {r['iters']} | {r['load_avg_1min']:.1f} | "
            + " | ".join(cells)
            + f" | **{r['total_s']:.2f}** | {r['process_cpu_s']:.1f} | {r['output_bytes']:,} | {r['sha256'][:12]} |"
        )
    ahead = [f"{r['scene']} {r['timings_s']['encode_ahead']:.2f} s" for r in rows if "encode_ahead" in r["timings_s"]]
    if ahead:
        print("\nencoded during k-means (thread seconds): " + ", ".join(ahead))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="shared data dir (default: VQPRESS_TEST_DATA, then ../shared/data)")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="lego only, 3 iterations")
    ap.add_argument("--iters", type=int, default=10, help="Lloyd iterations (default 10)")
    ap.add_argument("--tiled-n", type=int, default=TILED_N, help=f"Gaussians of the tiled scene (default {TILED_N:,})")
    ap.add_argument("--skip-tiled", action="store_true", help="lego only")
    ap.add_argument("--scene", action="append", default=[], help="also quantize this .ply (repeatable)")
    ap.add_argument("--repeats", type=int, default=1, help="quantize every scene this many times")
    ap.add_argument(
        "--no-importance", action="store_true", help="quantize unweighted (no renders: lego's cameras are not used)"
    )
    ap.add_argument("--profile", type=Path, help="profile one more run of each scene into this directory")
    ap.add_argument("--out-dir", help="write bench_quantize.json into this directory (created)")
    ap.add_argument("--out", help="write the rows as JSON to this file")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    src = data_dir(args.data) / LEGO
    if not src.is_file():
        print(f"no {LEGO} under {data_dir(args.data)}", file=sys.stderr)
        return 2
    iters = 3 if args.quick else args.iters
    rows: list[dict] = []
    failed = False
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        scenes = [(src, "trained_lego_sh3")] + [(Path(p), Path(p).stem) for p in args.scene]
        if not args.quick and not args.skip_tiled:
            big = Path(tmp) / "lego_tiled.ply"
            t0 = time.perf_counter()
            make_tiled(src, big, args.tiled_n)
            size = big.stat().st_size
            print(f"made {big.name} ({size:,} B) in {time.perf_counter() - t0:.1f} s (not counted)", file=sys.stderr)
            scenes.append((big, f"lego tiled {args.tiled_n / 1e6:g}M"))
        for path, label in scenes:
            for i in range(max(1, args.repeats)):
                try:
                    rows.append(
                        run_one(path, Path(tmp) / f"{path.stem}.vqp", iters, args.device, label, args.no_importance)
                    )
                except Exception:
                    traceback.print_exc()
                    failed = True
                    break
                r = rows[-1]
                print(f"{label} run {i + 1}: {r['total_s']:.2f} s, {r['output_bytes']:,} B", file=sys.stderr)
            if args.profile is not None and not failed:
                dst = Path(tmp) / f"{path.stem}.vqp"
                written = profile_one(path, dst, iters, args.device, label, args.no_importance, args.profile)
                print(f"{label}: profile in {', '.join(str(f) for f in written)}", file=sys.stderr)
    print_table(rows, args.device)
    print(f"\nwall time of the whole script: {time.perf_counter() - t_start:.1f} s")
    doc = {
        "device": args.device,
        "cuda_device": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "torch": torch.__version__,
        "iters": iters,
        "importance": not args.no_importance,
        "rows": rows,
        "failed": failed,
    }
    outs = [Path(args.out)] if args.out else []
    if args.out_dir:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
        outs.append(Path(args.out_dir) / "bench_quantize.json")
    for out in outs:
        out.write_text(json.dumps(doc, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Neural-field benchmark on the Instant-NGP-class trainer: VQ-AD against its baselines.

Every method trains with the same sampler and schedule (``instant_ngp_train``: occupancy-grid
marcher at 1024 steps per box diagonal, 2^18 samples a step, warm-up + step decay, weight decay,
Huber loss, random backgrounds behind the photos' alpha) under the same decoder
(``instant_ngp_field``), for the same wall-clock budget, and is measured on the decoded .vqp: PSNR
and SSIM on every held-out view, bytes by section, peak GPU memory, steps, training time. Methods:

- ``ngp``: Instant-NGP's hash grid, 16 levels x 2 features to 2048^3, 2^19 rows (uncompressed);
- ``dense``: the uncompressed grid of VQ-AD's resolution (16 levels x F features to --max-res),
  then kmVQ (b = 4) and LRA (rank 1) of it post hoc (rows ``kmvq-4``, ``lra-1``);
- ``vqad-<b>``: sparse VQ-AD at b bits (fine levels only near occupied space), same levels;
- ``hash-<log2 T>``: the hash grid of ``ngp`` with 2^T rows; 2^15 and 2^16 bracket VQ-AD b = 4's
  bytes, and the summary compares VQ-AD with the one nearest its bytes.

One command runs them all as concurrent processes sharing the GPU, each with the same
``--time-budget``; each process writes ``<scene>_<method>.json`` into ``--out-dir`` as soon as a
row is measured (a run cut short loses only what was not measured yet), the orchestrator prints
every process's progress lines prefixed with its method, stops what is still running at
``--deadline`` and prints the summary table:

    python bench/bench_fields.py --data DIR --time-budget 300 --deadline 500 --out-dir r
    python bench/bench_fields.py --summary r            # the table again, from the JSON files
    python bench/bench_fields.py --quick --data DIR     # a tiny CPU run of the whole pipeline

``--method M`` runs one method in this process (what the orchestrator starts).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "server"), str(REPO / "client")]

from vqpress_server.core.atomic import atomic_write_bytes  # noqa: E402
from vqpress_server.core.data.dataset import DatasetConfig, load_dataset  # noqa: E402
from vqpress_server.core.fields.config import (  # noqa: E402
    DenseGridConfig,
    FieldConfig,
    HashGridConfig,
    TrainConfig,
    VqadGridConfig,
    instant_ngp_field,
    instant_ngp_train,
)
from vqpress_server.core.fields.grid import VqadGrid  # noqa: E402
from vqpress_server.core.fields.model import NeuralField  # noqa: E402
from vqpress_server.core.fields.posthoc import kmvq_field, lra_field  # noqa: E402
from vqpress_server.core.fields.serialize import decode_field, encode_field, field_report  # noqa: E402
from vqpress_server.core.fields.train import SceneBox, field_occupancy, fit_radiance, render_field  # noqa: E402
from vqpress_server.core.metrics import psnr, ssim  # noqa: E402
from vqpress_server.core.render.volume import OccupancyGrid  # noqa: E402

DEFAULT_METHODS = ("ngp", "dense", "vqad-4", "vqad-8", "hash-15", "hash-16")
# TrainConfig's speed options by name (``--speed``; bench_field_speed.py times each against "default").
FAST = {"march_box_bound": True, "fused_grid": True, "fused_adam": True}
SPEED_VARIANTS: dict[str, dict[str, Any]] = {
    "preset": {},  # instant_ngp_train's own (every option on, compiled on a GPU)
    "default": {"march_box_bound": False, "fused_grid": False, "fused_adam": False, "torch_compile": "none"},
    "box": {"march_box_bound": True, "fused_grid": False, "fused_adam": False, "torch_compile": "none"},
    "fused-grid": {"march_box_bound": False, "fused_grid": True, "fused_adam": False, "torch_compile": "none"},
    "fused-adam": {"march_box_bound": False, "fused_grid": False, "fused_adam": True, "torch_compile": "none"},
    "fast": {**FAST, "torch_compile": "none"},
    "compile": {**FAST, "torch_compile": "inductor"},
}
SCENE_DIRS = {"lego": "nerf_synthetic_lego_400", "fox": "instant_ngp_fox"}


def load_scene(data: Path, name: str, downscale: int = 1) -> dict[str, Any]:
    """Photos with their alpha (composited only in training, on random backgrounds)."""
    if name == "lego":
        cfg = DatasetConfig(test_every=8, keep_alpha=True, downscale=downscale)
        ds = load_dataset(data / SCENE_DIRS["lego"], cfg)
        return {"name": "lego_400", "ds": ds, "box": SceneBox(), "background": (1.0, 1.0, 1.0)}
    ds = load_dataset(data / SCENE_DIRS["fox"], DatasetConfig(downscale=4 * downscale, test_every=8, keep_alpha=True))
    return {
        "name": "fox_4x",
        "ds": ds,
        "box": SceneBox.from_cameras(ds.cameras, unbounded=True),
        "background": (0.0, 0.0, 0.0),
    }


def _rgba(ds: Any, i: int) -> torch.Tensor:  # [H, W, 4] straight rgb + alpha, or [H, W, 3]
    if ds.alphas is None:
        return ds.images[i]
    a = ds.alphas[i]
    bg = torch.tensor(ds.background)
    premult = ds.images[i] - bg * (1.0 - a)
    rgb = torch.where(a > 0, premult / a.clamp(min=1e-6), torch.zeros_like(premult)).clamp(0.0, 1.0)
    return torch.cat([rgb, a], -1)


def evaluate(
    model: NeuralField, scene: dict[str, Any], train: TrainConfig, trained_grid: torch.Tensor | None = None
) -> dict[str, Any]:
    """PSNR / SSIM over every held-out view, on the photos' own background, rendered by the
    marcher on an occupancy grid estimated from the (decoded) field, or with ``trained_grid`` (the
    trainer's occupancy density, ``FitResult.occupancy``) on the grid the training marched."""
    t0 = time.perf_counter()
    if trained_grid is None:
        occ = field_occupancy(model, scene["box"], resolution=train.occupancy_resolution, march_steps=train.march_steps)
    else:
        dev = next(iter(model.state_dict().values())).device
        aabb = scene["box"].tensor(dev)
        occ = OccupancyGrid(aabb, train.occupancy_resolution, train.samples_per_ray, train.occupancy_threshold,
                            unbounded=scene["box"].unbounded,
                            step_size=float((aabb[1] - aabb[0]).norm()) / train.march_steps)  # fmt: skip
        occ.load(trained_grid.to(dev))
    ps, ss = [], []
    for img, cam in scene["ds"].split("test"):
        out = render_field(
            model,
            cam,
            box=scene["box"],
            background=scene["background"],
            march_steps=train.march_steps,
            occupancy=occ,
            chunk=1 << 15,
        )
        ref = img.to(out.device)
        ps.append(psnr(out, ref))
        ss.append(ssim(out, ref))
    return {
        "psnr": float(np.mean(ps)),
        "ssim": float(np.mean(ss)),
        "views": len(ps),
        "eval_s": time.perf_counter() - t0,
    }


def grid_for(method: str, args: argparse.Namespace) -> Any:
    """The grid of a method: the dense and VQ-AD grids share levels and resolution, the hash grids are ngp's."""
    levels, hash_res = (4, 64) if args.quick else (16, 2048)
    vq_levels = dict(
        levels=levels, base_resolution=16 if not args.quick else 4, max_resolution=args.max_res,
        features=args.features, combine="concat",
    )  # fmt: skip
    ngp = instant_ngp_field().grid
    assert isinstance(ngp, HashGridConfig)
    if args.quick:
        ngp = dataclasses.replace(ngp, levels=levels, base_resolution=4, max_resolution=hash_res, log2_table_size=12)
    if method == "ngp":
        return ngp
    if method == "dense":
        return DenseGridConfig(**vq_levels, init_std=1e-4)
    if method.startswith("vqad-"):
        return VqadGridConfig(**vq_levels, bits=int(method[5:]), sparse=True, sparse_min_resolution=args.sparse_from)
    if method.startswith("hash-"):
        return dataclasses.replace(ngp, log2_table_size=int(method[5:]))
    raise SystemExit(f"unknown method {method!r} (ngp | dense | vqad-<bits> | hash-<log2 rows>)")


def train_config(args: argparse.Namespace) -> TrainConfig:
    train = instant_ngp_train(steps=args.steps, time_budget_s=args.time_budget)
    train = dataclasses.replace(train, **SPEED_VARIANTS[getattr(args, "speed", "preset")])
    if args.quick:  # a CPU check of the whole pipeline, not a measurement
        train = dataclasses.replace(
            train, batch_size=128, target_samples=1 << 12, march_steps=128, occupancy_resolution=32,
            occupancy_warmup=4, occupancy_update_every=4, lr_warmup=5, log_every=10,
        )  # fmt: skip
    return train


def write_row(out_dir: Path, row: dict[str, Any]) -> Path:
    path = out_dir / f"{row['scene']}_{row['method']}.json"
    atomic_write_bytes(path, json.dumps(row, indent=1).encode())
    return path


def measure(
    name: str, model: NeuralField, scene: dict[str, Any], train: TrainConfig, out_dir: Path, **metrics: Any
) -> dict[str, Any]:
    """Encode, decode, evaluate on every held-out view, write the row's JSON at once, print it."""
    data = encode_field(model, {"box": [scene["box"].lo, scene["box"].hi]})
    decoded, _ = decode_field(data, device=next(iter(model.state_dict().values())).device)
    q = evaluate(decoded, scene, train)
    trained_grid = metrics.pop("trained_grid", None)
    if trained_grid is not None:  # the same file rendered on the training's own occupancy grid
        g = evaluate(decoded, scene, train, trained_grid)
        metrics.update(psnr_trained_grid=g["psnr"], ssim_trained_grid=g["ssim"])
    known = ("train_time_s", "peak_memory_bytes")
    rep = field_report(name, data, model, psnr=q["psnr"], ssim=q["ssim"], **{k: metrics.get(k) for k in known})
    row = {"scene": scene["name"], **rep.as_dict(), "views": q["views"], "eval_s": q["eval_s"]}
    row.update({k: v for k, v in metrics.items() if k not in known})
    write_row(out_dir, row)
    print(
        f"RESULT {scene['name']} {name}: {q['psnr']:.2f} dB SSIM {q['ssim']:.4f} ({q['views']} views)"
        f" {rep.total_bytes / 1024:.1f} KiB (grid {rep.grid_bytes / 1024:.1f})"
        f" train {metrics.get('train_time_s') or 0:.0f} s"
        f" steps {metrics.get('steps', '-')} peak {(metrics.get('peak_memory_bytes') or 0) / 2**30:.2f} GiB"
        f" eval {q['eval_s']:.0f} s"
        + (
            f"; on the training's occupancy grid {metrics['psnr_trained_grid']:.2f} dB"
            if "psnr_trained_grid" in metrics
            else ""
        ),
        flush=True,
    )
    return row


def run_method(args: argparse.Namespace) -> None:
    """One method on one scene in this process; rows go to ``args.out_dir`` as they are measured."""
    t_start = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = True
    device = "cuda" if torch.cuda.is_available() and not args.quick else "cpu"
    if device == "cpu":
        torch.set_num_threads(1 if args.quick else max(1, min(8, os.cpu_count() or 1)))
    scene = load_scene(args.data, args.scene, args.downscale)
    ds = scene["ds"]
    imgs = [_rgba(ds, i) for i in ds.train_indices]
    cams = [ds.cameras[i] for i in ds.train_indices]
    train = train_config(args)
    cfg = instant_ngp_field(grid_for(args.method, args))
    if args.quick:
        cfg = FieldConfig(dims=3, grid=cfg.grid, decoder=dataclasses.replace(cfg.decoder, hidden=16))
    print(
        f"loaded {len(imgs)} train / {len(ds.test_indices)} test views on {device} in"
        f" {time.perf_counter() - t_start:.0f} s; training for {args.time_budget or 'no limit of'} s"
        f" (at most {train.steps} steps)",
        flush=True,
    )
    t0 = time.perf_counter()

    def progress(stage: str, fraction: float, metrics: Any = None) -> None:
        m = metrics or {}
        print(
            f"train {time.perf_counter() - t0:6.0f} s  loss {m.get('loss', 0):.5f}  psnr {m.get('psnr', 0):.2f}",
            flush=True,
        )

    res = fit_radiance(
        imgs, cams, cfg, train, box=scene["box"], background=scene["background"], device=device, progress=progress
    )
    last = res.history[-1] if res.history else {}
    print(f"trained {res.step} steps in {res.train_time_s:.0f} s, last {json.dumps(last)}", flush=True)
    m = {"train_time_s": res.train_time_s, "peak_memory_bytes": res.peak_memory_bytes, "steps": res.step,
         "speed": args.speed, "speed_options": SPEED_VARIANTS[args.speed]}  # fmt: skip
    if isinstance(res.field.grid, VqadGrid):
        m["allocated_vertices"] = sum(res.field.grid.allocated_vertices())
        m["vqad_state_bytes"] = res.field.grid.state_bytes()
    measure(args.method, res.field, scene, train, args.out_dir, **m, history=res.history, trained_grid=res.occupancy)
    if args.method == "dense":
        for name, fn in (("kmvq-4", lambda: kmvq_field(res.field, bits=4)), ("lra-1", lambda: lra_field(res.field, 1))):
            t1 = time.perf_counter()
            post = fn()
            measure(name, post, scene, train, args.out_dir, train_time_s=time.perf_counter() - t1)


def _pump(proc: subprocess.Popen[str], tag: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        print(f"[{tag}] {line.rstrip()}", flush=True)


def orchestrate(args: argparse.Namespace) -> None:
    """Every (scene, method) as its own process, all at once; stop stragglers at the deadline."""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    deadline = args.deadline or args.time_budget + 200.0
    t0 = time.monotonic()
    procs: list[tuple[str, subprocess.Popen[str], threading.Thread]] = []
    # The cores shared out among the processes rather than each taking every core's worth of
    # intra-op threads (on the H200 four fox processes took 86 s to load photos that one process
    # loads in 1.5 s on a 2-core machine; oversubscription is the likely cause, not profiled there).
    n_procs = len(args.scenes) * len(args.methods)
    child_env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // max(1, n_procs)))}
    for scene in args.scenes:
        for method in args.methods:
            cmd = [sys.executable, "-u", str(Path(__file__).resolve()), "--method", method, "--scene", scene,
                   "--data", str(args.data), "--out-dir", str(args.out_dir), "--time-budget", str(args.time_budget),
                   "--steps", str(args.steps), "--max-res", str(args.max_res), "--features", str(args.features),
                   "--sparse-from", str(args.sparse_from), "--downscale", str(args.downscale),
                   "--speed", args.speed]  # fmt: skip
            if args.quick:
                cmd.append("--quick")
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                    env=child_env)  # fmt: skip
            th = threading.Thread(target=_pump, args=(proc, f"{scene} {method}"), daemon=True)
            th.start()
            procs.append((f"{scene} {method}", proc, th))
    print(
        f"started {len(procs)} processes, {args.time_budget:.0f} s of training each, deadline {deadline:.0f} s",
        flush=True,
    )

    def stop(signum: int, frame: Any) -> None:  # a SIGTERM to this process stops its children too
        for _, proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    failed = []
    for tag, proc, th in procs:
        left = max(1.0, deadline - (time.monotonic() - t0))
        try:
            rc = proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                rc = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            print(f"[{tag}] stopped at the deadline ({deadline:.0f} s)", flush=True)
        th.join(timeout=5)
        if rc != 0:
            failed.append(f"{tag} (exit {rc})")
    print(f"all done in {time.monotonic() - t0:.0f} s; not finished: {', '.join(failed) or 'none'}", flush=True)
    summary([args.out_dir])
    if failed and args.quick:
        raise SystemExit(1)


def _load_rows(paths: list[Path]) -> list[dict[str, Any]]:
    files = [f for p in paths for f in (sorted(p.glob("*.json")) if p.is_dir() else [p])]
    rows = []
    for f in files:
        d = json.loads(f.read_text())
        rows.extend(d["rows"] if "rows" in d else [d])
    return rows


def summary(paths: list[Path]) -> None:
    """The BENCHMARKS table and the goals, from the JSON rows."""
    rows = _load_rows(paths)
    for scene in sorted({r["scene"] for r in rows}):
        r = {row["method"]: row for row in rows if row["scene"] == scene}
        print(f"\n{scene}\n")
        print("| method | PSNR | SSIM | grid bytes | file | of which indices / active masks / codebooks |"
              " steps | train s | peak GPU memory | allocated vertices |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
        for name, row in sorted(r.items(), key=lambda kv: -kv[1]["total_bytes"]):
            sec = row.get("section_bytes", {})
            parts = [sum(b for k, b in sec.items() if k.startswith("grid.") and k.endswith(end)) / 1024
                     for end in (".indices", ".active", ".codebook")]  # fmt: skip
            of = " / ".join(f"{p:.1f}" for p in parts) + " KiB" if any(parts) else ""
            peak = f"{row['peak_memory_bytes'] / 2**30:.2f} GiB" if row.get("peak_memory_bytes") else "-"
            print(
                f"| {name} | {row['psnr']:.2f} | {row['ssim']:.3f} | {row['grid_bytes'] / 1024:.0f} KiB |"
                f" {row['total_bytes'] / 1024:.0f} KiB | {of} | {row.get('steps', '-')} |"
                f" {row.get('train_time_s') or 0:.0f} | {peak} | {row.get('allocated_vertices', '')} |"
            )
        b4, b8, dense = r.get("vqad-4"), r.get("vqad-8"), r.get("dense")
        ref = dense or r.get("ngp")
        if b4 and ref:
            print(f"- vqad-4 vs {ref['method']}: grid {ref['grid_bytes'] / b4['grid_bytes']:.1f}x smaller,"
                  f" {b4['psnr'] - ref['psnr']:+.2f} dB (goal: >= 20x, >= -1.5 dB)")  # fmt: skip
        hashes = [v for k, v in r.items() if k.startswith("hash-")]
        if b4 and hashes:
            h = min(hashes, key=lambda v: abs(v["grid_bytes"] / b4["grid_bytes"] - 1.0))
            print(f"- vqad-4 vs {h['method']} (nearest in bytes, ratio {h['grid_bytes'] / b4['grid_bytes']:.2f}):"
                  f" {b4['psnr'] - h['psnr']:+.2f} dB (goal: >= +1 dB at equal bytes)")  # fmt: skip
        if b4 and b8 and b4.get("peak_memory_bytes") and b8.get("peak_memory_bytes"):
            print(f"- peak memory b=8 / b=4 = {b8['peak_memory_bytes'] / b4['peak_memory_bytes']:.2f} (goal: <= 1.5)")
        if r.get("ngp"):
            print(f"- ngp: {r['ngp']['psnr']:.2f} dB (goal: uncompressed >= 32 dB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="folder of the scenes")
    ap.add_argument("--scenes", nargs="+", choices=tuple(SCENE_DIRS), default=["lego"], help="(default: lego)")
    ap.add_argument(
        "--methods", nargs="+", default=list(DEFAULT_METHODS), help=f"(default: {' '.join(DEFAULT_METHODS)})"
    )
    ap.add_argument("--time-budget", type=float, default=300.0, help="seconds of training per method, 0: --steps (300)")
    ap.add_argument(
        "--deadline", type=float, default=0.0, help="stop what still runs after this many s (default budget + 200)"
    )
    ap.add_argument("--out-dir", type=Path, default=Path("bench_fields_out"), help="one JSON per measured row")
    ap.add_argument("--steps", type=int, default=20_000, help="most training steps (default 20000)")
    ap.add_argument("--max-res", type=int, default=256, help="finest level of the dense and VQ-AD grids (default 256)")
    ap.add_argument("--features", type=int, default=2, help="features per level of dense and VQ-AD (default 2)")
    ap.add_argument("--sparse-from", type=int, default=32, help="VQ-AD levels this fine and finer are sparse (32)")
    ap.add_argument("--downscale", type=int, default=1, help="reduce the photos by this factor (default 1)")
    ap.add_argument(
        "--speed", choices=tuple(SPEED_VARIANTS), default="preset",
        help="TrainConfig's speed options by name, as bench_field_speed.py names them (default: the preset's own)",
    )  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="tiny grids, steps and photos on the CPU: checks the pipeline")
    ap.add_argument("--method", help="run this one method here (what the orchestrator starts)")
    ap.add_argument("--scene", choices=tuple(SCENE_DIRS), default="lego", help="with --method: the scene")
    ap.add_argument("--summary", type=Path, nargs="+", help="print the table of these JSON files or folders")
    args = ap.parse_args()
    if args.summary:
        summary(args.summary)
        return
    if args.quick:  # a check of the pipeline, not a measurement: a few steps, no budget
        args.max_res = min(args.max_res, 32)
        args.sparse_from = min(args.sparse_from, 16)
        args.time_budget, args.steps = 0.0, min(args.steps, 40)
    if args.method:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        run_method(args)
        return
    orchestrate(args)


if __name__ == "__main__":
    main()

"""One Lloyd iteration (assignment + centroid update) on CUDA: vqpress against plain chunked torch
GEMMs and against Compact3D's routine, with label agreement and the fp32 roofline.

    python bench/bench_kmeans.py [--n 6000000] [--quick] [--max-s 150] [--out-dir DIR | --out results.json]
    python bench/bench_kmeans.py --cpu-scene SCENE.ply [--cpu-scene ...] [--repeats 3]

--cpu-scene: the CPU rows instead, on the attributes that quantization clusters (default codebook
sizes): one Lloyd iteration of the previous CPU assignment (chunked fp32 GEMM + topk over all
centroids, the path d > 8 still takes) against the current one (pruned direct distances for
d <= 8), both exact, timed in the same run (wall and process CPU seconds, median of repeats).

Columns per (d, K) row:
- ours: vqpress_server.core.vq.kmeans, the body of one Lloyd iteration (exact assignment: the Triton
  direct-distance kernel for d <= 8, the Triton 3xTF32 tensor-core kernel for 8 < d <= 64, float64
  re-decision of flagged near ties; float64 distances to own centroid; deterministic float64 sorted
  segment sums for the update, with empty-cluster re-seeding);
- torch GEMM: chunked ``||c||^2 - 2 x c^T`` addmm in IEEE fp32 (TF32 off), argmin, fp32 index_add_;
- Compact3D: its routine re-implemented: chunks of 10,000 points, torch.cdist, argmin, one_hot,
  one_hot.T @ x for the update (empty clusters collapse to zero), default matmul precision.
Time: median of CUDA-event-timed repeats after one warm-up (the warm-up also autotunes the Triton
kernels). Agreement: fraction of labels equal to a float64 direct-distance argmin on a
200,000-point subset; "exact" says whether every label of ours that differs is an exact float64
tie (the script exits 1 if not). Rows not started within --max-s seconds are skipped (exit 1).
Roofline (rows with d <= 8): N*K*(2d+1) fp32 operations (d subtractions, d FMAs, one compare per
point-centroid pair) at the FMA instruction rate measured in the same run by a Triton kernel of
independent FMA chains.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROWS = [(3, 4096), (4, 4096), (45, 512), (45, 4096), (45, 65536)]
COMPACT3D_CHUNK = 10_000
AGREE_SUBSET = 200_000


def cuda_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median seconds of `repeats` CUDA-event-timed calls after one warm-up; returns the last output."""
    out = fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times), out


# -- the three implementations of one Lloyd iteration ------------------------------------------------
def ours_iteration(x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from vqpress_server.core.vq import kmeans as km

    labels = km._assign_exact(x, c)
    point_dist = km._point_distances(x, c, labels)
    return labels, km._update_reseed(x, labels, c, point_dist)


def torch_gemm_iteration(x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from vqpress_server.core.vq.kmeans import full_fp32_matmul

    N, d = x.shape
    K = c.shape[0]
    free, _ = torch.cuda.mem_get_info()
    rows = max(1, min(free // 4, 2 << 30) // (K * 4 * 2))
    labels = torch.empty(N, dtype=torch.int64, device=x.device)
    cn = c.square().sum(1)
    with full_fp32_matmul():
        for s in range(0, N, rows):
            labels[s : s + rows] = torch.addmm(cn, x[s : s + rows], c.T, alpha=-2.0).argmin(1)
    sums = torch.zeros_like(c).index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=K)
    return labels, torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], c)


def compact3d_iteration(x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    N, d = x.shape
    K = c.shape[0]
    labels = torch.empty(N, dtype=torch.int64, device=x.device)
    sums = torch.zeros(K, d, device=x.device)
    counts = torch.zeros(K, device=x.device)
    for s in range(0, N, COMPACT3D_CHUNK):
        xs = x[s : s + COMPACT3D_CHUNK]
        dist = torch.cdist(xs[None], c[None])[0]
        idx = torch.argmin(dist, dim=-1)
        labels[s : s + COMPACT3D_CHUNK] = idx
        one_hot = torch.nn.functional.one_hot(idx, K).float()
        sums += one_hot.T @ xs
        counts += one_hot.sum(0)
    return labels, sums / counts.clamp_min(1)[:, None]  # empty clusters collapse to the zero vector


# -- reference, roofline --------------------------------------------------------------------------
def reference_labels(xs: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    out = torch.empty(len(xs), dtype=torch.int64, device=xs.device)
    step = max(1, (1 << 30) // (c.shape[0] * 8 * max(1, c.shape[1] // 8)))
    c64 = c.double()
    for s in range(0, len(xs), step):
        dist = torch.cdist(xs[s : s + step].double(), c64, compute_mode="donot_use_mm_for_euclid_dist")
        out[s : s + step] = dist.argmin(1)
    return out


def measure_fma_rate() -> tuple[float, float]:
    """(FMA instructions/s from a Triton kernel of 8 independent FMA chains, SGEMM FLOP/s)."""
    import triton
    import triton.language as tl

    @triton.jit
    def fma_chains(out_ptr, a, b, ITERS: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        v0 = offs.to(tl.float32) * 1e-9
        v1 = v0 + 1.0
        v2 = v0 + 2.0
        v3 = v0 + 3.0
        v4 = v0 + 4.0
        v5 = v0 + 5.0
        v6 = v0 + 6.0
        v7 = v0 + 7.0
        for _ in range(ITERS):
            v0 = tl.fma(v0, a, b)
            v1 = tl.fma(v1, a, b)
            v2 = tl.fma(v2, a, b)
            v3 = tl.fma(v3, a, b)
            v4 = tl.fma(v4, a, b)
            v5 = tl.fma(v5, a, b)
            v6 = tl.fma(v6, a, b)
            v7 = tl.fma(v7, a, b)
        tl.store(out_ptr + offs, v0 + v1 + v2 + v3 + v4 + v5 + v6 + v7)

    block, iters = 1024, 4096
    n = 132 * 64 * block  # enough programs to fill every SM many times
    out = torch.empty(n, device="cuda")
    t, _ = cuda_time(lambda: fma_chains[(n // block,)](out, 0.999, 1e-3, ITERS=iters, BLOCK=block), 3)
    fma_rate = n * iters * 8 / t

    from vqpress_server.core.vq.kmeans import full_fp32_matmul

    a = torch.randn(8192, 8192, device="cuda")
    with full_fp32_matmul():
        tg, _ = cuda_time(lambda: a @ a, 3)
    return fma_rate, 2 * 8192**3 / tg


# -- CPU rows ----------------------------------------------------------------------------------------
def cpu_time(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """Median wall and process-CPU seconds of `repeats` calls (no warm-up: the CPU has no JIT)."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def cpu_rows(scenes: list[str], repeats: int) -> None:
    from vqpress_server.core.splats.formats import load_scene
    from vqpress_server.core.splats.quantize import QuantizeConfig, _flat_attributes
    from vqpress_server.core.vq import kmeans as km

    cfg = QuantizeConfig()
    sizes = {"dc": cfg.dc_codebook, "sh": cfg.sh_codebook, "scale": cfg.scale_codebook, "rot": cfg.rot_codebook}
    print(f"CPU: {torch.get_num_threads()} threads, torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(
        "\n| scene | attr | N | d | K | previous iter wall / CPU s | current iter wall / CPU s | speedup (wall) "
        "| speedup (CPU) | labels equal |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for path in scenes:
        splats, _ = load_scene(path)
        for attr, x in _flat_attributes(splats).items():
            x = x.contiguous()
            K = sizes[attr]
            c = km._init_kmeanspp(x, K, 0)

            def previous(x: torch.Tensor = x, c: torch.Tensor = c) -> torch.Tensor:
                labels = km._assign_gemm(x, c)
                km._update_reseed(x, labels, c, km._point_distances(x, c, labels))
                return labels

            def current(x: torch.Tensor = x, c: torch.Tensor = c) -> torch.Tensor:
                labels = km._assign_exact(x, c)
                km._update_reseed(x, labels, c, km._point_distances(x, c, labels))
                return labels

            pw, pc, pl = cpu_time(previous, repeats)
            cw, cc, cl = cpu_time(current, repeats)
            diff = (pl != cl).nonzero().squeeze(1)
            ties = bool(
                torch.equal(
                    (x[diff].double() - c[pl[diff]].double()).square().sum(1),
                    (x[diff].double() - c[cl[diff]].double()).square().sum(1),
                )
            )
            same = "yes" if len(diff) == 0 else (f"{len(diff)} exact ties" if ties else f"NO ({len(diff)})")
            print(
                f"| {Path(path).name} | {attr} | {len(x):,} | {x.shape[1]} | {K} | {pw:.2f} / {pc:.2f} "
                f"| {cw:.2f} / {cc:.2f} | {pw / cw:.1f}x | {pc / cc:.1f}x | {same} |",
                flush=True,
            )


# -- driver ----------------------------------------------------------------------------------------
def run_row(d: int, K: int, n: int, repeats: int, cap_s: float, fma_rate: float) -> dict:
    g = torch.Generator(device="cuda").manual_seed(d * 100_003 + K)
    x = torch.randn(n, d, device="cuda", generator=g)
    c = x[torch.randperm(n, device="cuda", generator=g)[:K]].clone()
    sub = torch.arange(0, n, max(1, n // AGREE_SUBSET), device="cuda")[:AGREE_SUBSET]
    ref = reference_labels(x[sub], c)
    row: dict = {"d": d, "K": K, "N": n}

    def measure(name: str, fn: Callable, reps: int) -> None:
        t, (labels, _) = cuda_time(lambda: fn(x, c), reps)
        row[f"{name}_s"] = t
        row[f"{name}_agree"] = float((labels[sub] == ref).float().mean())
        if name == "ours":
            xs, ls = x[sub], labels[sub]
            diff = (ls != ref).nonzero().squeeze(1)
            da = (xs[diff].double() - c[ls[diff]].double()).square().sum(1)
            db = (xs[diff].double() - c[ref[diff]].double()).square().sum(1)
            row["ours_exact"] = bool(torch.equal(da, db))

    measure("ours", ours_iteration, repeats)
    measure("torch_gemm", torch_gemm_iteration, repeats)
    # Compact3D: check memory for one chunk (cdist + int64 one_hot + float one_hot), then time one
    # chunk-sized slice to project the full iteration against the cap.
    need = COMPACT3D_CHUNK * K * (4 + 8 + 4) * 2
    free, _ = torch.cuda.mem_get_info()
    if need > free:
        row["compact3d_note"] = f"not measured: one chunk needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} free"
    else:
        try:
            probe_n = min(n, 20 * COMPACT3D_CHUNK)
            t_probe, _ = cuda_time(lambda: compact3d_iteration(x[:probe_n], c), 1)
            projected = t_probe * n / probe_n
            if projected * (repeats + 1) > cap_s:
                row["compact3d_note"] = (
                    f"not measured: projected {projected:.0f} s per iteration x {repeats + 1} runs > cap {cap_s:.0f} s"
                )
                row["compact3d_projected_s"] = projected
            else:
                measure("compact3d", compact3d_iteration, repeats)
        except torch.cuda.OutOfMemoryError as e:
            row["compact3d_note"] = f"not measured: out of memory ({str(e).splitlines()[0]})"
            torch.cuda.empty_cache()
    if d <= 8:
        row["roofline_s"] = n * K * (2 * d + 1) / fma_rate
        row["ours_vs_roofline"] = row["ours_s"] / row["roofline_s"]
    if "compact3d_s" in row:
        row["speedup_vs_compact3d"] = row["compact3d_s"] / row["ours_s"]
    row["speedup_vs_torch_gemm"] = row["torch_gemm_s"] / row["ours_s"]
    return row


def fmt(v: float | None, unit: str = "") -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}{unit}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=6_000_000, help="points (default 6,000,000)")
    ap.add_argument("--quick", action="store_true", help="200,000 points, 2 repeats")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up")
    ap.add_argument("--cap-s", type=float, default=240.0, help="time cap for the Compact3D column per row (s)")
    ap.add_argument("--rows", default="", help="subset of rows as d:K,d:K (default: all)")
    ap.add_argument("--max-s", type=float, default=150.0, help="start no new row after this many seconds")
    ap.add_argument("--out", default="", help="write the results as JSON here")
    ap.add_argument("--out-dir", default="", help="write the results as DIR/kmeans.json")
    ap.add_argument("--cpu-scene", action="append", default=[], help="CPU rows on this .ply (repeatable)")
    args = ap.parse_args()
    if args.cpu_scene:
        cpu_rows(args.cpu_scene, args.repeats if args.repeats != 5 else 3)
        return
    if not torch.cuda.is_available():
        raise SystemExit("bench_kmeans needs a CUDA device")
    n, repeats = (200_000, 2) if args.quick else (args.n, args.repeats)
    rows = [tuple(int(v) for v in r.split(":")) for r in args.rows.split(",")] if args.rows else ROWS

    t0 = time.time()
    fma_rate, sgemm = measure_fma_rate()
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    print(f"fp32 rate: {fma_rate / 1e12:.2f} T FMA instr/s (Triton FMA chains), SGEMM {sgemm / 1e12:.1f} TFLOP/s")
    results, skipped = [], []
    for d, K in rows:
        if time.time() - t0 > args.max_s:
            skipped.append((d, K))
            print(f"row d={d} K={K} skipped: {time.time() - t0:.0f} s > --max-s {args.max_s:.0f}", flush=True)
            continue
        results.append(run_row(d, K, n, repeats, args.cap_s, fma_rate))
        r = results[-1]
        print(f"row d={d} K={K}: ours {r['ours_s']:.4g} s, {time.time() - t0:.0f} s so far", flush=True)

    print(f"\nOne Lloyd iteration, N = {n:,}; time = median of {repeats} CUDA-event repeats; agree = vs float64\n")
    print(
        "| d | K | ours (s) | torch GEMM (s) | Compact3D (s) | ours/C3D speedup | roofline (s) | ours/roofline "
        "| agree ours | exact ours | agree GEMM | agree C3D |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        c3d = fmt(r.get("compact3d_s")) if "compact3d_s" in r else r.get("compact3d_note", "—")
        print(
            f"| {r['d']} | {r['K']} | {fmt(r['ours_s'])} | {fmt(r['torch_gemm_s'])} | {c3d} "
            f"| {fmt(r.get('speedup_vs_compact3d'), 'x')} | {fmt(r.get('roofline_s'))} "
            f"| {fmt(r.get('ours_vs_roofline'), 'x')} | {fmt(r['ours_agree'])} "
            f"| {'yes' if r['ours_exact'] else 'NO'} | {fmt(r['torch_gemm_agree'])} "
            f"| {fmt(r.get('compact3d_agree'))} |"
        )
    goal_speed = all(r.get("speedup_vs_compact3d", math.inf) >= 10 for r in results if r["d"] > 8)
    goal_roof = all(r.get("ours_vs_roofline", 0) <= 3 for r in results)
    exact = all(r["ours_exact"] for r in results)
    print(f"\ngoal d > 8 rows: ours >= 10x Compact3D (measured rows): {'met' if goal_speed else 'NOT met'}")
    print(f"goal small-d rows within 3x of the fp32 roofline: {'met' if goal_roof else 'NOT met'}")
    print(f"ours exact (labels = float64 up to exact ties) on every row: {'yes' if exact else 'NO'}")
    if skipped:
        print(f"rows skipped for time: {skipped}")
    from vqpress_server.core.vq import triton_assign

    tuned = {
        name: {str(k): str(v) for k, v in fn.cache.items()}
        for name, fn in [("small_d", triton_assign._assign_tuned), ("dot", triton_assign._assign_dot_tuned)]
        if fn is not None
    }
    for name, cache in tuned.items():
        for k, v in cache.items():
            print(f"autotuned {name} {k}: {v}")
    print(f"total bench time {time.time() - t0:.0f} s")
    out = args.out or (str(Path(args.out_dir) / "kmeans.json") if args.out_dir else "")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w") as f:
            json.dump(
                {
                    "device": torch.cuda.get_device_name(),
                    "n": n,
                    "repeats": repeats,
                    "fma_rate": fma_rate,
                    "sgemm_flops": sgemm,
                    "rows": results,
                    "skipped_rows": skipped,
                    "autotuned": tuned,
                    "goal_speed_met": goal_speed,
                    "goal_roofline_met": goal_roof,
                    "exact": exact,
                },
                f,
                indent=2,
            )
    if not exact or skipped:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

"""Training speed of the radiance-field trainer: steps/s of the default path against each speed option.

Each method (the grids of ``bench_fields.py``: dense, vqad-4, hash-16, ... under its Instant-NGP-class
decoder and schedule) trains on lego's photos with each variant of ``TrainConfig``'s speed options:

- ``default``: the options off (the trainer's path before the preset turned them on);
- ``box``: ``march_box_bound`` (no read-back of the longest ray each step);
- ``fused-grid``: ``fused_grid`` (all levels in one lookup);
- ``fused-adam``: ``fused_adam``;
- ``fast``: the three together;
- ``compile``: ``fast`` + ``torch_compile="inductor"`` (its compile time is reported apart).

A run trains ``--warmup`` steps, then ``--steps`` timed ones, under the schedule of a full
``--schedule-steps`` run (so no re-fit of a sparse grid or learning-rate drop of a short run falls in
the window), and stops. Reported per run: steps/s, samples/s and ms/step over the timed steps, the
seconds the first log interval took beyond the steady pace (the compile time of ``compile``; setup
and first-step costs elsewhere), the training loss at the first log step and averaged over the last
four (agreement with ``default``: the same to float tolerance at first, then as far as the device's
own non-determinism lets two runs of one variant drift), and the peak device memory.

``--budget-s`` bounds the whole run: the eager variants get up to ``--run-cap-s`` each, the compiled
ones share what is left; a run cut by its share reports what it timed (``partial``). The table is
printed after each run and the JSON (``--out``) rewritten, so a run stopped from outside (SIGTERM,
SIGINT) leaves every finished row; exit status 1 when a run failed.

    python bench/bench_field_speed.py --device cuda --data DIR --out speed.json      # DIR: lego_400
    python bench/bench_field_speed.py --device cpu --tiny --data DIR --steps 6 --warmup 6  # a CPU check
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "server"), str(REPO / "client"), str(REPO / "bench")]

from bench_fields import SPEED_VARIANTS as ALL_VARIANTS  # noqa: E402
from bench_fields import _rgba, grid_for, load_scene, train_config  # noqa: E402
from vqpress_server.core.atomic import atomic_write_bytes  # noqa: E402
from vqpress_server.core.errors import Cancelled  # noqa: E402
from vqpress_server.core.fields.config import FieldConfig, instant_ngp_field  # noqa: E402
from vqpress_server.core.fields.train import FitResult, fit_radiance  # noqa: E402

VARIANTS = {k: v for k, v in ALL_VARIANTS.items() if k != "preset"}  # "preset" is "compile"
DEFAULT_METHODS = ("dense", "vqad-4", "hash-16")
LOG_EVERY = 25  # steps between loss reads (each one waits for the device; the trainer's default is 500)
ALARM_GRACE_S = 15.0  # a run still inside one step this long after its share is interrupted


class _Stop(Cancelled):
    """The run's time share is spent (or its timed steps are done)."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_one(
    method: str, variant: str, scene: dict[str, Any], args: argparse.Namespace, deadline: float
) -> dict[str, Any]:
    """One training run of a method under a variant, cut at ``deadline`` (time.monotonic)."""
    device = torch.device(args.device)
    ds = scene["ds"]
    imgs = [_rgba(ds, i) for i in ds.train_indices]
    cams = [ds.cameras[i] for i in ds.train_indices]
    base = train_config(args)
    log_every = math.gcd(args.warmup, args.steps, LOG_EVERY if not args.tiny else 0)  # logs at warmup and the end
    total = args.warmup + args.steps
    train = dataclasses.replace(base, steps=max(args.schedule_steps, total + 1), time_budget_s=0.0,
                                log_every=log_every, **VARIANTS[variant])  # fmt: skip
    train.validate()
    cfg = instant_ngp_field(grid_for(method, args))
    if args.tiny:
        cfg = FieldConfig(dims=3, grid=cfg.grid, decoder=dataclasses.replace(cfg.decoder, hidden=16))
    marks: list[tuple[int, float, float]] = []  # (steps done, monotonic s, loss) at each log step
    final: list[FitResult] = []
    t_start = time.monotonic()

    def progress(stage: str, fraction: float, metrics: Any = None) -> None:
        marks.append((round(fraction * train.steps), time.monotonic(), float((metrics or {}).get("loss", math.nan))))
        if time.monotonic() > deadline:
            raise _Stop("time share spent")

    def alarm(signum: int, frame: Any) -> None:  # a first step (a compile) that outlasts the share
        raise _Stop("time share spent, in a step")

    def on_checkpoint(res: FitResult) -> None:  # at step warmup + steps: the history and peak, then stop
        final.append(res)
        raise _Stop("timed steps done")

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    row: dict[str, Any] = {"method": method, "variant": variant, "options": VARIANTS[variant], "device": str(device)}
    signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, deadline - time.monotonic() + ALARM_GRACE_S))
    try:
        fit_radiance(imgs, cams, cfg, train, box=scene["box"], background=scene["background"], device=device,
                     progress=progress, on_checkpoint=on_checkpoint, checkpoint_every=total)  # fmt: skip
    except _Stop:
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
    _sync(device)
    row["wall_s"] = time.monotonic() - t_start
    row["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    done = [m for m in marks if m[0] <= total]
    row["steps_done"] = done[-1][0] if done else 0
    timed = [m for m in done if m[0] >= args.warmup]
    row["partial"] = not final
    if len(timed) >= 2:
        (s0, t0, _), (s1, t1, _) = timed[0], timed[-1]
        ms = 1000.0 * (t1 - t0) / (s1 - s0)
        row.update(timed_steps=s1 - s0, ms_per_step=ms, steps_per_s=1000.0 / ms)
        first_s = done[0][1] - t_start
        row["first_interval_excess_s"] = first_s - done[0][0] * ms / 1000.0
    if done:
        row["loss_first"] = done[0][2]
        row["loss_last"] = sum(m[2] for m in done[-4:]) / len(done[-4:])
        row["loss_at"] = [done[0][0], done[-1][0]]
    if final:
        hist = [h for h in final[0].history if h["step"] >= args.warmup]
        if hist and "ms_per_step" in row:
            samples = sum(h["samples"] for h in hist) / len(hist)
            row["samples_per_step"] = samples
            row["samples_per_s"] = samples * row["steps_per_s"]
    return row


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of the rows so far, with each variant's speed-up and loss ratio to default."""
    lines = [
        "| method | variant | steps/s | x default | samples/s | ms/step | first-interval excess s (compile) |"
        " loss @first | ratio | loss @last | ratio | peak GPU memory | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    ref = {r["method"]: r for r in rows if r["variant"] == "default"}
    for r in rows:
        d = ref.get(r["method"], {})
        speed = r.get("steps_per_s") / d["steps_per_s"] if r.get("steps_per_s") and d.get("steps_per_s") else None
        lf = r.get("loss_first") / d["loss_first"] if r.get("loss_first") and d.get("loss_first") else None
        ll = r.get("loss_last") / d["loss_last"] if r.get("loss_last") and d.get("loss_last") else None
        peak = r.get("peak_memory_bytes")
        note = r.get("error", "") or ("partial" if r.get("partial") else "")
        lines.append(
            f"| {r['method']} | {r['variant']} | {_fmt(r.get('steps_per_s'), '.1f')} | {_fmt(speed, '.2f')} |"
            f" {_fmt(r.get('samples_per_s'), '.3g')} | {_fmt(r.get('ms_per_step'), '.1f')} |"
            f" {_fmt(r.get('first_interval_excess_s'), '.1f')} | {_fmt(r.get('loss_first'), '.5f')} |"
            f" {_fmt(lf, '.4f')} | {_fmt(r.get('loss_last'), '.5f')} | {_fmt(ll, '.4f')} |"
            f" {_fmt(peak / 2**30 if peak else None, '.2f')} | {note[:60]} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="(cuda if present)")
    ap.add_argument("--data", type=Path, required=True, help="lego_400's folder (or the folder that holds it)")
    ap.add_argument("--out", type=Path, default=Path("bench_field_speed.json"), help="JSON results")
    ap.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), help=f"({' '.join(DEFAULT_METHODS)})")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=tuple(VARIANTS), help="(all)")
    ap.add_argument("--warmup", type=int, default=100, help="steps before the timed ones (100; past occupancy warm-up)")
    ap.add_argument("--steps", type=int, default=100, help="timed steps per run (100)")
    ap.add_argument("--schedule-steps", type=int, default=20_000, help="the schedule's run length (20000)")
    ap.add_argument("--budget-s", type=float, default=150.0, help="seconds for everything after loading (150)")
    ap.add_argument("--run-cap-s", type=float, default=12.0, help="most seconds per eager run (12)")
    ap.add_argument("--downscale", type=int, default=1, help="reduce the photos by this factor (1)")
    ap.add_argument("--max-res", type=int, default=256, help="finest level of dense and VQ-AD (256, as bench_fields)")
    ap.add_argument("--features", type=int, default=2, help="features per level of dense and VQ-AD (2)")
    ap.add_argument("--sparse-from", type=int, default=32, help="VQ-AD levels this fine are sparse (32)")
    ap.add_argument("--tiny", action="store_true", help="bench_fields' --quick grids and batches: a CPU check")
    args = ap.parse_args()
    args.quick, args.time_budget = args.tiny, 0.0  # what bench_fields' grid_for / train_config read
    if args.tiny:
        args.max_res, args.sparse_from = min(args.max_res, 32), min(args.sparse_from, 16)
    if args.warmup < 1 or args.steps < 1:
        raise SystemExit("--warmup and --steps must be >= 1")
    data = args.data.parent if (args.data / "transforms_train.json").exists() else args.data
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # as bench_fields
    elif args.tiny:
        torch.set_num_threads(1)  # as bench_fields --quick: a check, not a measurement
    t_load = time.monotonic()
    scene = load_scene(data, "lego", args.downscale)
    print(f"loaded {len(scene['ds'].train_indices)} train views in {time.monotonic() - t_load:.1f} s on {device}"
          f" ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}); budget {args.budget_s:.0f} s",
          flush=True)  # fmt: skip
    t0 = time.monotonic()
    end = t0 + args.budget_s
    plan = [(m, v) for v in args.variants if v != "compile" for m in args.methods]
    plan += [(m, "compile") for m in args.methods if "compile" in args.variants]
    rows: list[dict[str, Any]] = []
    meta = {"device": str(device), "torch": torch.__version__, "warmup": args.warmup, "steps": args.steps,
            "schedule_steps": args.schedule_steps, "budget_s": args.budget_s, "tiny": args.tiny}  # fmt: skip
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)

    def write() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.out, json.dumps({**meta, "rows": rows}, indent=1).encode())

    def stop(signum: int, frame: Any) -> None:
        print(f"\nstopped by signal {signum}; rows so far:\n{table(rows)}", flush=True)
        write()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = 0
    for i, (method, variant) in enumerate(plan):
        now = time.monotonic()
        if now >= end:
            rows.append({"method": method, "variant": variant, "error": "not run: budget spent"})
            continue
        left_compiled = sum(1 for _, v in plan[i:] if v == "compile")
        if variant == "compile":
            share = (end - now) / max(1, left_compiled)
        else:
            left_eager = sum(1 for _, v in plan[i:] if v != "compile")
            share = min(args.run_cap_s, (end - now) / max(1, left_eager + 3 * left_compiled))
        print(f"[{time.monotonic() - t0:5.0f} s] {method} {variant}: up to {share:.0f} s", flush=True)
        try:
            row = run_one(method, variant, scene, args, now + share)
        except Exception as e:  # one failed run must not lose the others' rows
            traceback.print_exc()
            row = {"method": method, "variant": variant, "error": f"{type(e).__name__}: {e}"[:300]}
            failed += 1
        rows.append(row)
        if variant == "compile":
            torch._dynamo.reset()
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        write()
        print(table(rows), flush=True)
    print(f"done in {time.monotonic() - t0:.0f} s (+ {t0 - t_load:.0f} s loading); JSON: {args.out}", flush=True)
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

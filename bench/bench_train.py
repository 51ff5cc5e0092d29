"""Training benchmark: plain 3DGS vs Compact3D QAT vs post-hoc quantization (+ fine-tuning) of the plain result.

    python bench/bench_train.py [--runs lego:plain:full,lego:qat:full,...] [--parallel N] [--out DIR]
    python bench/bench_train.py --quick          # a CPU/GPU smoke run: 300 steps on 8x smaller photos

A run is SCENE:METHOD:SCHEDULE[:VARIANT]: scene lego (nerf_synthetic_lego_400, 400x400, white
background) or fox (instant_ngp_fox, 2x downscaled to 540x960); method ``plain`` (3DGS, no
quantization; its scene is then quantized post hoc with every --posthoc preset and fine-tuned on
the training photos) or ``qat`` (Compact3D QAT); schedule ``full`` (30k) or ``fast`` (7k); variants
``noreset`` (no extra opacity reset on white), ``qatbig`` (QAT codebooks sh 2048 / scale 16384) and
``finetune`` (QAT mode "finetune": plain training, the post-hoc default quantizer, 3,000 steps through it).
Every 8th photo is held out; PSNR/SSIM are on every held-out photo. Runs are independent processes
(``--parallel`` at a time on one GPU; on an H200 eight at once starved each other, so that none of
them finished 7k steps in 9 minutes: keep it at 2-3); each prints a line every 1000 steps and writes
``<out>/<run>.json`` after each of its rows, and the table is printed from whatever finished. Bytes
are files as written (.ply, .vqp); the ratio is the plain .ply's bytes (the same scene and schedule)
over the row's bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENES = {  # name -> (folder, downscale)
    "lego": ("nerf_synthetic_lego_400", 1),
    "fox": ("instant_ngp_fox", 2),
}
DEFAULT_RUNS = ",".join(
    ["lego:plain:full", "lego:qat:full", "lego:qat:full:qatbig", "lego:plain:fast", "lego:plain:fast:noreset"]
    + ["lego:qat:fast", "fox:plain:fast", "fox:qat:fast"]
)
POSTHOC = {  # label -> (preset, QuantizeConfig overrides); the first is also fine-tuned
    "default": ("default", {}),
    "high_ratio": ("high_ratio", {}),
    "high_quality": ("high_quality", {}),
    "views": ("default", {"importance": "views"}),
    "v14p10s2k": ("default", {"importance": "views", "position_bits": 14, "prune": 0.1, "sh_codebook": 2048,
                              "scale_codebook": 16384}),
    "v14p10s4k": ("default", {"importance": "views", "position_bits": 14, "prune": 0.1, "sh_codebook": 4096,
                              "scale_codebook": 16384}),
    "v13p20s4k": ("default", {"importance": "views", "position_bits": 13, "prune": 0.2, "sh_codebook": 4096,
                              "scale_codebook": 16384}),
    "v14p20s4kr2k": ("default", {"importance": "views", "position_bits": 14, "prune": 0.2, "sh_codebook": 4096,
                                 "scale_codebook": 16384, "rot_codebook": 2048}),
    "v14p10hr": ("high_ratio", {"importance": "views", "position_bits": 14, "prune": 0.1}),
    "v14p10hq": ("high_quality", {"importance": "views", "position_bits": 14, "prune": 0.1}),
}  # fmt: skip


def data_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("VQPRESS_TEST_DATA") or REPO.parent / "shared" / "data")


def run_one(spec: str, data: Path, out: Path, quick: bool, posthoc: list[str], finetune_steps: int) -> None:
    """Train one run, quantize (plain runs), fine-tune, and write <out>/<spec>.json."""
    import torch
    from vqpress_server.core.data import DatasetConfig, load_dataset
    from vqpress_server.core.splats.compress import CompressReport  # noqa: F401  (imports the quantizer)
    from vqpress_server.core.splats.finetune import FinetuneConfig, finetune_vqp
    from vqpress_server.core.splats.formats.ply import encode_ply
    from vqpress_server.core.splats.importance import view_importance
    from vqpress_server.core.splats.quantize import QuantizeConfig, decode_vqp_splats, quantize_splats
    from vqpress_server.core.splats.train import SplatTrainConfig, evaluate_on_photos, train_splats

    parts = spec.split(":")
    scene, method, schedule = parts[:3]
    variant = parts[3] if len(parts) > 3 else ""
    folder, downscale = SCENES[scene]
    ds = load_dataset(data / folder, DatasetConfig(downscale=downscale * (8 if quick else 1), test_every=8))
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = SplatTrainConfig.preset(schedule)
    if quick:
        cfg = replace(SplatTrainConfig().scale_schedule(300), schedule=schedule, init_num_points=2000)
    if method == "plain":
        cfg = replace(cfg, qat=replace(cfg.qat, enabled=False))
    if variant == "noreset":
        cfg = replace(cfg, reset_on_white=False)
    if variant == "finetune":
        cfg = replace(cfg, qat=replace(cfg.qat, mode="finetune"))
    if variant == "qatbig":
        cfg = replace(cfg, qat=replace(cfg.qat, sh_codebook=2048, scale_codebook=16384))
    t0 = time.time()

    def progress(stage: str, fraction: float, metrics: dict | None = None) -> None:  # a line every 1000 steps
        step = int((metrics or {}).get("step", 0))
        if stage != "train" or step % 1000 == 0:
            print(f"{time.time() - t0:7.1f}s {stage} {fraction:.3f} {metrics or ''}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        res = train_splats(ds, cfg, checkpoint_dir=Path(tmp), resume=False, device=dev, progress=progress)
    rep = res.report
    H, W = ds.images[0].shape[:2]
    common = {"run": spec, "scene": scene, "size": f"{W}x{H}", "schedule": schedule, "steps": cfg.steps}
    common |= {"train_views": len(ds.train_indices), "test_views": len(ds.test_indices), "device": dev}
    ply_bytes = len(encode_ply(res.splats))
    rows: list[dict] = []
    dest = out / f"{spec.replace(':', '_')}.json"

    def save() -> None:  # after every row: a later failure or a time limit keeps what was measured
        dest.write_text(json.dumps({"rows": rows, "wall_s": time.time() - t0}, indent=1))

    if method == "plain":
        rows.append(
            {**common, "method": "3DGS" + (f" ({variant})" if variant else ""), "psnr": rep["psnr_trained"],
             "ssim": rep["ssim_trained"], "gaussians": rep["num_gaussians"], "bytes": ply_bytes, "ply_bytes": ply_bytes,
             "seconds": rep["train_seconds"], "framing": rep["framing"]}
        )  # fmt: skip
        save()
        trained = res.splats.to(dev)
        train_cams = [ds.cameras[i] for i in ds.train_indices]
        weights = view_importance(trained, train_cams)
        for label in posthoc:
            try:
                preset, over = POSTHOC[label]
                qc = replace(QuantizeConfig.preset(preset), **over)
                t1 = time.time()
                q = quantize_splats(trained, qc, weights=weights if qc.importance == "views" else None)
                vqp = q.to_vqp_bytes()
                secs = time.time() - t1
                dec = decode_vqp_splats(vqp, device=dev)
                qual = evaluate_on_photos(ds, {"": dec})
                vs_orig = _psnr_vs(trained, dec, [ds.cameras[i] for i in ds.test_indices], ds.background)
                rows.append(
                    {**common, "method": f"3DGS + post-hoc {label}", "psnr": qual["psnr"], "ssim": qual["ssim"],
                     "psnr_vs_original": vs_orig, "gaussians": q.num_gaussians, "bytes": len(vqp),
                     "ply_bytes": ply_bytes, "seconds": secs}
                )  # fmt: skip
                save()
                if label == posthoc[0] and finetune_steps:
                    ft, ft_rep = finetune_vqp(vqp, ds, FinetuneConfig(steps=finetune_steps), device=dev)
                    dec2 = decode_vqp_splats(ft, device=dev)
                    vs_orig2 = _psnr_vs(trained, dec2, [ds.cameras[i] for i in ds.test_indices], ds.background)
                    rows.append(
                        {**common, "method": f"3DGS + post-hoc {label} + fine-tune {finetune_steps}",
                         "psnr": ft_rep["psnr"], "ssim": ft_rep["ssim"], "psnr_vs_original": vs_orig2,
                         "gaussians": q.num_gaussians, "bytes": len(ft), "ply_bytes": ply_bytes,
                         "seconds": secs + ft_rep["finetune_seconds"]}
                    )  # fmt: skip
                    save()
            except Exception:  # one failing variant must not lose the others
                traceback.print_exc()
    else:
        rows.append(
            {**common, "method": "QAT" + (f" ({variant})" if variant else ""), "psnr": rep["psnr"], "ssim": rep["ssim"],
             "psnr_trained": rep["psnr_trained"], "gaussians": rep["num_gaussians"],
             "gaussians_before_prune": rep["num_gaussians_before_prune"], "bytes": rep["vqp_bytes"],
             "ply_bytes": ply_bytes, "seconds": rep["train_seconds"] + rep["encode_seconds"],
             "kmeans_share": rep["kmeans_share"]}
        )  # fmt: skip
    save()


def _psnr_vs(ref_scene, scene, cams, background) -> float:  # noqa: ANN001
    from vqpress_server.core.metrics import psnr
    from vqpress_server.core.render.splats import render_views

    a = render_views(ref_scene, cams, background=background)
    b = render_views(scene, cams, background=background)
    return sum(psnr(x, y) for x, y in zip(b, a, strict=True)) / len(cams)


def table(out: Path) -> str:
    rows = []
    for p in sorted(out.glob("*.json")):
        rows += json.loads(p.read_text()).get("rows", [])
    plain = {(r["scene"], r["schedule"]): r["bytes"] for r in rows if r["method"] == "3DGS"}
    lines = [
        "| scene | size | schedule | method | PSNR (photos) | SSIM | PSNR vs plain's renders | Gaussians | bytes "
        "| ratio | s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ref = plain.get((r["scene"], r["schedule"]), r["ply_bytes"])
        vs = f"{r['psnr_vs_original']:.2f}" if "psnr_vs_original" in r else ""
        lines.append(
            f"| {r['scene']} | {r['size']} | {r['schedule']} ({r['steps']}) | {r['method']} | {r['psnr']:.2f} "
            f"| {r['ssim']:.4f} | {vs} | {r['gaussians']:,} | {r['bytes']:,} | {ref / r['bytes']:.1f}x "
            f"| {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=DEFAULT_RUNS)
    ap.add_argument("--parallel", type=int, default=2, help="runs at a time (processes sharing the GPU)")
    ap.add_argument("--posthoc", default=",".join(POSTHOC), help="presets to quantize plain runs with")
    ap.add_argument("--finetune-steps", type=int, default=3000)
    ap.add_argument("--quick", action="store_true", help="300 steps, 2000 Gaussians, 8x smaller photos: a smoke run")
    ap.add_argument("--out", default="bench-out/train")
    ap.add_argument("--data", help="shared data dir (default: VQPRESS_TEST_DATA, then ../shared/data)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run this one spec in this process
    args = ap.parse_args()
    data, out = data_dir(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    posthoc = [p for p in args.posthoc.split(",") if p]
    if args.one:
        run_one(args.one, data, out, args.quick, posthoc, 100 if args.quick else args.finetune_steps)
        return
    if not data.is_dir():
        raise SystemExit(f"{data}: no shared data; pass --data DIR or set VQPRESS_TEST_DATA")
    pending = [r for r in args.runs.split(",") if r]
    running: list[tuple[str, subprocess.Popen]] = []
    base = [sys.executable, __file__, "--out", str(out), "--data", str(data), "--posthoc", ",".join(posthoc)]
    base += ["--finetune-steps", str(args.finetune_steps)] + (["--quick"] if args.quick else [])
    while pending or running:
        while pending and len(running) < args.parallel:
            spec = pending.pop(0)
            log = open(out / f"{spec.replace(':', '_')}.log", "w")  # noqa: SIM115
            running.append((spec, subprocess.Popen([*base, "--one", spec], stdout=log, stderr=subprocess.STDOUT)))
            print(f"started {spec}", flush=True)
        for spec, proc in list(running):
            if proc.poll() is not None:
                running.remove((spec, proc))
                print(f"finished {spec}: exit {proc.returncode}", flush=True)
        time.sleep(1.0)
    print(table(out))


if __name__ == "__main__":
    main()

"""Time per frame of the splat renderers on the trained lego (71,616 Gaussians, SH degree 3).

    python bench/bench_render.py [--data DIR] [--quick] [--out results.json]

Rows: gsplat 1.5.3 on CUDA, the PyTorch twin on CUDA, the PyTorch twin on the CPU (its thread
count shown), at 400x400 (the cameras of cameras.json) and 800x800 (the same cameras, K doubled).
Time: median seconds per frame over the held-out cameras after one warm-up render (CUDA timed with
synchronisation). "PSNR vs photo" is the mean over the rendered frames against the ground-truth
photos composited on white (400x400 only). "PSNR vs gsplat" compares the twin's frames with
gsplat's on the same cameras (when CUDA is present).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from vqpress_server.core.metrics import psnr
from vqpress_server.core.render.cameras import Camera, read_cameras_json
from vqpress_server.core.render.splats import render
from vqpress_server.core.splats.formats import read_splats
from vqpress_server.core.splats.model import GaussianSplats

REPO = Path(__file__).resolve().parents[1]


def data_dir(arg: str | None) -> Path:
    for cand in [arg, os.environ.get("VQPRESS_TEST_DATA"), REPO / ".data", REPO.parent / "shared" / "data"]:
        if cand and Path(cand, "trained_lego_sh3").is_dir():
            return Path(cand)
    raise SystemExit("trained_lego_sh3 not found: pass --data DIR or set VQPRESS_TEST_DATA")


def scaled(cam: Camera, factor: int) -> Camera:
    K = cam.K.copy()
    K[:2] *= factor
    return Camera(cam.viewmat, K, cam.width * factor, cam.height * factor, cam.name)


def photo(root: Path, cam: Camera) -> np.ndarray:  # [H, W, 3] composited on white
    rgba = np.asarray(Image.open(root / "nerf_synthetic_lego_400" / f"{cam.name.removeprefix('./')}.png"))
    rgba = rgba.astype(np.float32) / 255.0
    return rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])


def time_frames(
    splats: GaussianSplats, cams: list[Camera], backend: str, bg: tuple[float, float, float]
) -> tuple[float, list[torch.Tensor]]:
    """Median seconds per frame after one warm-up, and the frames (on the CPU)."""
    sync = torch.cuda.synchronize if splats.device.type == "cuda" else (lambda: None)
    render(splats, cams[0], background=bg, backend=backend)  # warm-up (gsplat loads its kernels here)
    sync()
    times, frames = [], []
    for cam in cams:
        t0 = time.perf_counter()
        img = render(splats, cam, background=bg, backend=backend)
        sync()
        times.append(time.perf_counter() - t0)
        frames.append(img.cpu())
    return statistics.median(times), frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="folder holding trained_lego_sh3/ and nerf_synthetic_lego_400/")
    ap.add_argument("--quick", action="store_true", help="2 cameras per row (CPU: 1): a smoke run")
    ap.add_argument("--cpu-frames", type=int, default=3, help="cameras rendered by the CPU twin per size")
    ap.add_argument("--out", default="", help="write the results as JSON here")
    args = ap.parse_args()

    root = data_dir(args.data)
    splats_cpu = read_splats(root / "trained_lego_sh3" / "lego_7k.ply")
    cs = read_cameras_json(root / "trained_lego_sh3" / "cameras.json", split="test")
    bg = cs.background or (1.0, 1.0, 1.0)
    n_gpu = 2 if args.quick else len(cs.cameras)
    n_cpu = 1 if args.quick else args.cpu_frames

    rows = []
    gsplat_frames: dict[int, list[torch.Tensor]] = {}
    configs: list[tuple[str, str, int]] = []
    if torch.cuda.is_available():
        configs += [("gsplat", "cuda", n_gpu), ("torch", "cuda", n_gpu)]
    configs += [("torch", "cpu", n_cpu)]
    for backend, device, n in configs:
        splats = splats_cpu.to(device)
        dev_name = torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()} threads"
        for factor in (1, 2):
            cams = [scaled(c, factor) for c in cs.cameras[:n]]
            sec, frames = time_frames(splats, cams, backend, bg)
            row = {
                "backend": "gsplat" if backend == "gsplat" else "torch twin",
                "device": dev_name,
                "size": f"{cams[0].width}x{cams[0].height}",
                "frames": len(cams),
                "s_per_frame": sec,
                "psnr_vs_photo": float(np.mean([psnr(f, photo(root, c)) for f, c in zip(frames, cams, strict=True)]))
                if factor == 1
                else None,
                "psnr_vs_gsplat": None,
            }
            if backend == "gsplat":
                gsplat_frames[factor] = frames
            elif factor in gsplat_frames:
                ref = gsplat_frames[factor][: len(frames)]  # the CPU twin renders the first few cameras only
                row["psnr_vs_gsplat"] = float(np.mean([psnr(f, r) for f, r in zip(frames, ref, strict=True)]))
            rows.append(row)
            print(f"  {row['backend']} {device} {row['size']}: {sec * 1e3:.1f} ms/frame", flush=True)

    n, d = splats_cpu.num_gaussians, splats_cpu.sh_degree
    print(f"\nlego_7k.ply: {n:,} Gaussians, SH degree {d}, torch {torch.__version__}\n")
    print("| backend | device | size | frames | ms/frame | PSNR vs photo (dB) | PSNR vs gsplat (dB) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        vp = "" if r["psnr_vs_photo"] is None else f"{r['psnr_vs_photo']:.2f}"
        vg = "" if r["psnr_vs_gsplat"] is None else f"{r['psnr_vs_gsplat']:.1f}"
        ms = r["s_per_frame"] * 1e3
        print(f"| {r['backend']} | {r['device']} | {r['size']} | {r['frames']} | {ms:.1f} | {vp} | {vg} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"scene": "trained_lego_sh3", "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

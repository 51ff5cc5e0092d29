"""View importance on CUDA (gsplat's gradient) against its PyTorch twin, and what pruning by each costs.

    python bench/bench_importance.py SCENE.ply --cameras cameras.json [--photos DIR] [--prune 0.15]
        [--views N] [--importance-views N] [--out results.json]

Both measures are computed on the same device from the ``train`` cameras of cameras.json: gsplat's
(the gradient of a white scene's rendered sum with respect to each Gaussian's color, the CUDA path of
``view_importance``) and the twin's (``blend_weights_torch``, the CPU path, run here on the same
tensors). The table compares their totals, their rank agreement, the overlap of the sets each would
prune, the share of the other measure's mass that each pruned set holds, and the PSNR at the ``test``
cameras of the scene with each set removed against the unpruned scene's renders, with gsplat and with
the twin renderer, view by view (a mean of PSNRs hides one view that loses 10 dB among views that lose
none). With --photos (the folder the cameras' ``file`` entries are relative to, photos composited on
the background), each view is also scored against its photo: a Gaussian that no train view sees was
never fitted to anything, and removing it can bring a held-out view closer to its photo while it moves
it away from the original's render. Without CUDA both columns are the twin (a smoke run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "client"), str(REPO / "server")]


def _ranks(w: torch.Tensor) -> torch.Tensor:  # [N] -> [N] float64 ranks (ties broken by index)
    r = torch.empty_like(w, dtype=torch.float64)
    r[torch.argsort(w, stable=True)] = torch.arange(w.numel(), dtype=torch.float64, device=w.device)
    return r


def _photos(folder: Path, cams: list, bg: tuple[float, float, float], dev: torch.device) -> list[torch.Tensor]:
    """Each camera's photo (its ``name`` is the cameras.json ``file``), composited on the background."""
    from PIL import Image

    out = []
    b = torch.tensor(bg, dtype=torch.float32)
    for cam in cams:
        path = folder / (cam.name.removeprefix("./") + ("" if cam.name.endswith(".png") else ".png"))
        rgba = torch.from_numpy(np.asarray(Image.open(path).convert("RGBA")).astype(np.float32) / 255.0)
        out.append((rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:]) * b).to(dev))
    return out


def main() -> None:
    from vqpress_server.core.metrics import psnr
    from vqpress_server.core.render.cameras import read_cameras_json
    from vqpress_server.core.render.splats import EPS2D, NEAR_PLANE, render_views
    from vqpress_server.core.render.torch_raster import blend_weights_torch
    from vqpress_server.core.splats.formats import load_scene
    from vqpress_server.core.splats.importance import _gradient_weights

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scene")
    ap.add_argument("--cameras", required=True)
    ap.add_argument("--photos", default=None, help="folder of the cameras' photos (their 'file' entries)")
    ap.add_argument("--prune", type=float, default=0.15)
    ap.add_argument("--views", type=int, default=0, help="test views to score (0: all)")
    ap.add_argument("--importance-views", type=int, default=0, help="train views to weigh by (0: all)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    scene, _ = load_scene(args.scene)
    scene = scene.to(dev)
    N = scene.num_gaussians
    train = read_cameras_json(args.cameras, split="train").cameras
    if args.importance_views:
        train = train[: args.importance_views]
    test = read_cameras_json(args.cameras, split="test")
    cams = test.cameras[: args.views] if args.views else test.cameras
    bg = test.background or (1.0, 1.0, 1.0)
    means, quats = scene.means.float(), scene.quats.float()
    scales, opac = scene.scales.float(), scene.opacities.float()

    t0 = time.perf_counter()
    w_twin = torch.zeros(N, dtype=torch.float64, device=dev)
    w_gs = torch.zeros(N, dtype=torch.float64, device=dev)
    for cam in train:
        vm = torch.tensor(cam.viewmat, dtype=torch.float32, device=dev)
        K = torch.tensor(cam.K, dtype=torch.float32, device=dev)
        w_twin += blend_weights_torch(
            means, quats, torch.exp(scales), torch.sigmoid(opac), vm, K, cam.width, cam.height,
            near_plane=NEAR_PLANE, eps2d=EPS2D,
        )  # fmt: skip
        if dev.type == "cuda":
            w_gs += _gradient_weights(means, quats, scales, opac, vm, K, cam.width, cam.height)
    if dev.type != "cuda":
        w_gs = w_twin.clone()
    secs = time.perf_counter() - t0
    w_gs = w_gs.clamp_min(0.0)

    drop = int(args.prune * N)
    pruned = {name: torch.argsort(w, stable=True)[:drop] for name, w in (("gsplat", w_gs), ("twin", w_twin))}
    rg, rt = _ranks(w_gs), _ranks(w_twin)
    spearman = float(torch.corrcoef(torch.stack([rg, rt]))[0, 1])
    overlap = np.intersect1d(pruned["gsplat"].cpu().numpy(), pruned["twin"].cpu().numpy()).size / max(drop, 1)
    rel = (w_gs - w_twin).abs() / w_twin.abs().clamp_min(1e-12)
    big = w_twin > 1e-3 * float(w_twin.max())
    report: dict = {
        "scene": args.scene,
        "gaussians": N,
        "device": str(dev),
        "importance_views": len(train),
        "test_views": len(cams),
        "seconds_both": secs,
        "total_gsplat": float(w_gs.sum()),
        "total_twin": float(w_twin.sum()),
        "zero_gsplat": int((w_gs == 0).sum()),
        "zero_twin": int((w_twin == 0).sum()),
        "zero_gsplat_positive_twin": int(((w_gs == 0) & (w_twin > 0)).sum()),
        "zero_twin_positive_gsplat": int(((w_twin == 0) & (w_gs > 0)).sum()),
        "median_rel_diff_where_twin_large": float(rel[big].median()) if bool(big.any()) else None,
        "spearman": spearman,
        "prune_fraction": args.prune,
        "pruned_overlap": overlap,
    }
    for name, idx in pruned.items():
        report[f"pruned_by_{name}_mass_gsplat"] = float(w_gs[idx].sum() / w_gs.sum())
        report[f"pruned_by_{name}_mass_twin"] = float(w_twin[idx].sum() / w_twin.sum())
        report[f"pruned_by_{name}_max_twin"] = float(w_twin[idx].max())
        report[f"pruned_by_{name}_max_gsplat"] = float(w_gs[idx].max())
    # Where the two disagree most: Gaussians one measure prunes and the other ranks high.
    only_gs = torch.from_numpy(np.setdiff1d(pruned["gsplat"].cpu().numpy(), pruned["twin"].cpu().numpy())).to(dev)
    if only_gs.numel():
        s = torch.exp(scales[only_gs]).max(1).values
        report["pruned_only_by_gsplat"] = {
            "count": int(only_gs.numel()),
            "twin_mass_share": float(w_twin[only_gs].sum() / w_twin.sum()),
            "median_max_scale": float(s.median()),
            "median_opacity": float(torch.sigmoid(opac[only_gs]).median()),
            "median_scene_max_scale": float(torch.exp(scales).max(1).values.median()),
        }

    photos = _photos(Path(args.photos), cams, bg, dev) if args.photos else None
    renderers = ["gsplat", "torch"] if dev.type == "cuda" else ["torch"]
    per_view: dict[str, list[float]] = {}
    for r in renderers:
        refs = render_views(scene, cams, background=bg, backend=r)
        if photos is not None:
            per_view[f"{r}: original vs photo"] = [psnr(i, p) for i, p in zip(refs, photos, strict=True)]
        for name, idx in pruned.items():
            keep = torch.ones(N, dtype=torch.bool, device=dev)
            keep[idx] = False
            imgs = render_views(scene.index(keep.nonzero()[:, 0]), cams, background=bg, backend=r)
            per_view[f"{r}: pruned by {name} vs original"] = [psnr(i, ref) for i, ref in zip(imgs, refs, strict=True)]
            if photos is not None:
                per_view[f"{r}: pruned by {name} vs photo"] = [psnr(i, p) for i, p in zip(imgs, photos, strict=True)]
    for key, vals in per_view.items():
        report[f"psnr {key}: mean"] = float(np.mean(vals))
        report[f"psnr {key}: min"] = float(np.min(vals))
    report["per_view"] = {"views": [c.name for c in cams], **per_view}
    for k, v in report.items():
        if k != "per_view":
            print(f"{k}: {v}", flush=True)
    print("\n| view | " + " | ".join(per_view) + " |")
    print("|---|" + "---:|" * len(per_view))
    for i, cam in enumerate(cams):
        print(f"| {cam.name or i} | " + " | ".join(f"{v[i]:.2f}" for v in per_view.values()) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

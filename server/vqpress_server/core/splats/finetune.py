"""Fine-tuning a quantized scene on its photos: the codebooks learn what k-means could not see.

Post-hoc k-means places codebook entries by distances between attribute vectors; the photos say
what those entries should be. Keeping every Gaussian's indices fixed, a short run of the 3DGS
loss (L1 + D-SSIM, one training photo per step) trains the codebook entries themselves (color, SH
rest, log-scale, rotation: every Gaussian that points at an entry moves it) together with the
unquantized positions and opacities, as c3dgs's fine-tuning stage does. The result is written
through the same packer as any quantized scene, so it has the same size and layout.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from vqpress.vqp import read_vqp

from ..errors import ConfigError, VqpressInputError
from ..progress import Progress
from ..render.splats import rasterize
from .framing import scene_scale
from .model import GaussianSplats, num_sh_rest
from .quantize import QuantizeConfig, QuantizedSplats, decode_vqp_splats, pack_geometry
from .train import _gauss_window, evaluate_on_photos, train_ssim

MAX_FINETUNE_STEPS = 100_000


@dataclass(frozen=True)
class FinetuneConfig:
    """How long and how fast the codebooks are fine-tuned (learning rates: 3DGS's at the end of training)."""

    steps: int = 3000  # optimizer steps, one training photo each, 1..100000
    seed: int = 0  # seeds the photo order
    ssim_lambda: float = 0.2  # weight of the D-SSIM term (0..1)
    means_lr: float = 1.6e-6  # position learning rate, times the scene scale (3DGS's final rate)
    opacities_lr: float = 0.025  # opacity-logit learning rate
    dc_lr: float = 2.5e-3  # SH DC codebook learning rate
    sh_lr: float = 2.5e-3 / 20  # SH rest codebook learning rate
    scale_lr: float = 5e-3  # log-scale codebook learning rate
    rot_lr: float = 1e-3  # rotation codebook learning rate

    def validate(self) -> FinetuneConfig:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_FINETUNE_STEPS:
            raise ConfigError(f"finetune steps must be an integer in 1..{MAX_FINETUNE_STEPS}, got {self.steps!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ConfigError(f"finetune seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.ssim_lambda, (int, float)) or not 0.0 <= self.ssim_lambda <= 1.0:
            raise ConfigError(f"finetune ssim_lambda must be in [0, 1], got {self.ssim_lambda!r}")
        for name in ("means_lr", "opacities_lr", "dc_lr", "sh_lr", "scale_lr", "rot_lr"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (math.isfinite(v) and 0.0 < v < 1.0):
                raise ConfigError(f"finetune {name} must be a number in (0, 1), got {v!r}")
        return self

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def finetune_vqp(
    vqp: bytes,
    dataset: Any,
    config: FinetuneConfig = FinetuneConfig(),
    *,
    progress: Progress | None = None,
    device: str | torch.device | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """Fine-tune a splats .vqp on ``dataset`` (a ``core.data.PosedImageDataset``); (new .vqp, report).

    The report has PSNR/SSIM on the held-out photos before and after, the steps and the time."""
    config.validate()
    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    train_idx = list(getattr(dataset, "train_indices", []))
    if not train_idx:
        raise VqpressInputError("the dataset has no training images to fine-tune on")
    file = read_vqp(vqp, name="scene.vqp")
    before = decode_vqp_splats(vqp, name="scene.vqp", device=dev)
    manifest = file.manifest
    qconfig = QuantizeConfig.from_dict(manifest.get("config", {}))
    N, degree = before.num_gaussians, before.sh_degree
    n_rest = num_sh_rest(degree)
    attrs = [a for a in ("dc", "sh", "scale", "rot") if f"{a}_codebook" in file.sections]
    idx = {a: torch.from_numpy(file.sections[f"{a}_idx"].astype(np.int64)).to(dev) for a in attrs}  # [N] each
    books = {
        a: torch.nn.Parameter(torch.from_numpy(file.sections[f"{a}_codebook"].astype(np.float32)).to(dev).reshape(
            file.sections[f"{a}_codebook"].shape[0], -1))
        for a in attrs
    }  # fmt: skip
    means = torch.nn.Parameter(before.means.clone())  # [N, 3]
    opacities = torch.nn.Parameter(before.opacities.clone())  # [N]
    cams = [dataset.cameras[i] for i in train_idx]
    images = [dataset.images[i].to(dev, torch.float32) for i in train_idx]
    scale = scene_scale(cams)
    lrs = {"dc": config.dc_lr, "sh": config.sh_lr, "scale": config.scale_lr, "rot": config.rot_lr}
    groups = [{"params": [means], "lr": config.means_lr * scale}, {"params": [opacities], "lr": config.opacities_lr}]
    groups += [{"params": [books[a]], "lr": lrs[a]} for a in attrs]
    opt = torch.optim.Adam(groups, eps=1e-15)
    bg = torch.tensor(dataset.background, dtype=torch.float32, device=dev)
    window = _gauss_window(dev)
    viewmats = [torch.tensor(c.viewmat, dtype=torch.float32, device=dev) for c in cams]
    Ks = [torch.tensor(c.K, dtype=torch.float32, device=dev) for c in cams]
    gen = torch.Generator().manual_seed(config.seed)
    perm, pos = torch.randperm(len(images), generator=gen), 0

    def scene() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # quats, scales, sh0, shN
        rot = books["rot"][idx["rot"]]
        sh0 = books["dc"][idx["dc"]].reshape(N, 1, 3)
        shN = books["sh"][idx["sh"]].reshape(N, n_rest, 3) if "sh" in books else torch.zeros(N, 0, 3, device=dev)
        return rot, books["scale"][idx["scale"]], sh0, shN

    t0 = time.perf_counter()
    losses: list[float] = []
    for step in range(config.steps):
        if pos >= len(perm):
            perm, pos = torch.randperm(len(images), generator=gen), 0
        v = int(perm[pos])
        pos += 1
        quats, scales, sh0, shN = scene()
        rgb, _ = rasterize(
            means, quats, scales, opacities, sh0, shN, viewmats[v], Ks[v], cams[v].width, cams[v].height, bg
        )
        gt = images[v]
        loss = (1 - config.ssim_lambda) * (rgb - gt).abs().mean() + config.ssim_lambda * (
            1 - train_ssim(rgb, gt, window)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_v = float(loss.detach())
        if not math.isfinite(loss_v):
            raise VqpressInputError(f"fine-tuning diverged at step {step} (loss {loss_v}); lower the learning rates")
        losses.append(loss_v)
        if progress is not None:
            progress("finetune", (step + 1) / config.steps, {"step": float(step + 1), "loss": loss_v})
    seconds = time.perf_counter() - t0

    with torch.no_grad():
        quats, scales, sh0, shN = scene()
        tuned = GaussianSplats(means.detach(), quats, scales, opacities.detach(), sh0, shN)
        geo = pack_geometry(tuned, qconfig)  # positions moved: a new Morton order
        order = geo.order
        codebooks: dict[str, np.ndarray] = {}
        for a in attrs:
            cb = books[a].detach().float().clamp(-65504.0, 65504.0).cpu().numpy().astype(np.float16)
            codebooks[a] = cb.reshape(cb.shape[0], n_rest, 3) if a == "sh" else cb
        q = QuantizedSplats(
            config=qconfig,
            num_gaussians=N,
            sh_degree=degree,
            box_min=geo.box_min,
            box_max=geo.box_max,
            means=geo.means,
            opacities=geo.opacities,
            codebooks=codebooks,
            indices={a: idx[a][order].cpu().numpy().astype(np.uint32) for a in attrs},
            order=order.cpu().numpy(),
        )
        out = q.to_vqp_bytes()
    after = decode_vqp_splats(out, name="finetuned.vqp", device=dev)
    quality = evaluate_on_photos(dataset, {"_before": before, "": after})
    report = {
        "finetune": config.as_dict(),
        "finetune_seconds": seconds,
        "finetune_loss_first": float(np.mean(losses[:10])),
        "finetune_loss_last": float(np.mean(losses[-10:])),
        "vqp_bytes": len(out),
        **quality,
    }
    return out, report


__all__ = ["FinetuneConfig", "finetune_vqp"]

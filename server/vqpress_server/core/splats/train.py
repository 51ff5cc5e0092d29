"""Training Gaussian splats from posed photos, with Compact3D quantization-aware training (QAT).

The loop is 3DGS's: one training photo per step (a fresh random order every epoch), loss
``(1 - ssim_lambda) * L1 + ssim_lambda * (1 - SSIM)``, Adam with the 3DGS learning rates (the
position rate decays exponentially to 1% and is scaled by the scene extent), SH degree raised by
one every ``sh_degree_interval`` steps. On CUDA it renders with gsplat's ``rasterization`` and
densifies with gsplat's ``DefaultStrategy`` (or ``MCMCStrategy``); on the CPU it renders with the
PyTorch twin and does not densify (the Gaussian count only falls, through QAT pruning).
QAT (``qat.py``) runs on top from ``qat.start_step``.

What was chosen (``SplatTrainConfig``) stays apart from what is happening (the run's state):
every ``checkpoint_every`` steps ``{config, state, step}`` is written atomically to
``checkpoint_dir/last.pt``, and a later call with the same config and dataset resumes there.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, VqpressInputError
from ..progress import Progress
from ..render.cameras import Camera
from .model import SH_C0, GaussianSplats, num_sh_rest
from .qat import QatState, attribute_vectors, encode_vqp, quantized_scene
from .train_config import (  # noqa: F401  (re-exported: the trainer's configuration)
    _QAT_STEP_FIELDS,
    _STEP_FIELDS,
    MAX_GAUSSIANS,
    MAX_STEPS,
    PERIOD_FLOORS,
    REFINE_START_FLOOR,
    QatConfig,
    SplatTrainConfig,
)

PARAM_NAMES = ("means", "quats", "scales", "opacities", "sh0", "shN")
CHECKPOINT_NAME = "last.pt"
CHECKPOINT_FORMAT = 1
MCMC_OPACITY_REG = 0.01  # gsplat's MCMC regularizers: weight of the mean opacity ...
MCMC_SCALE_REG = 0.01  # ... and of the mean scale in the loss (used with strategy="mcmc" on CUDA)


@dataclass
class TrainResult:
    splats: GaussianSplats  # the trained scene on the CPU, as rendered in training (QAT: codebook values)
    vqp: bytes  # the .vqp: QAT codebooks and indices, or post-hoc quantization when QAT was off
    report: dict[str, Any]  # sizes, quality on held-out views, Gaussian counts, timings (JSON-able)


# -- geometry of the capture --------------------------------------------------------------------
def scene_frame(cameras: list[Camera]) -> tuple[np.ndarray, float]:
    """(center [3], scale): the point nearest to all optical axes (least squares; the camera mean when
    the axes are near parallel) and 1.1 x the largest camera distance from the cameras' mean."""
    pos = np.stack([c.position for c in cameras])  # [C, 3]
    mean = pos.mean(0)
    scale = 1.1 * float(np.linalg.norm(pos - mean, axis=1).max()) if len(cameras) > 1 else 1.0
    scale = scale if scale > 1e-9 else 1.0
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c, p in zip(cameras, pos, strict=True):
        d = c.viewmat[2, :3]  # the camera's forward axis (+z) in world coordinates
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ p
    if np.linalg.cond(A) < 1e6:
        center = np.linalg.solve(A, b)
        if np.linalg.norm(center - mean) <= 10 * scale:
            return center, scale
    return mean, scale


def _knn_log_scale(points: torch.Tensor, factor: float) -> torch.Tensor:  # [P, 3] -> [P, 3]
    """log of (factor x the RMS distance to the 3 nearest neighbours), per point, repeated on 3 axes."""
    P = points.shape[0]
    k = min(4, P)
    out = torch.empty(P, device=points.device)
    step = max(1, (64 << 20) // max(4 * P, 1))
    for s0 in range(0, P, step):
        d2 = torch.cdist(points[s0 : s0 + step], points).square()
        nn = d2.topk(k, dim=1, largest=False).values[:, 1:]  # without the point itself
        out[s0 : s0 + step] = nn.mean(1).sqrt() if k > 1 else torch.ones(nn.shape[0], device=points.device)
    return torch.log(out.clamp_min(1e-7) * factor)[:, None].repeat(1, 3)


def initial_splats(
    dataset: Any,
    config: SplatTrainConfig,
    center: np.ndarray,
    scale: float,
    gen: torch.Generator,
) -> tuple[GaussianSplats, str]:
    """Gaussians from the dataset's SfM points or a random box around ``center``; (scene, how)."""
    points = getattr(dataset, "points", None)
    use_points = config.init == "points" or (config.init == "auto" and points is not None and len(points) > 0)
    if use_points:
        if points is None or len(points) == 0:
            raise VqpressInputError("init='points' but the dataset has no SfM points; use init='random'")
        if len(points) > MAX_GAUSSIANS:
            raise VqpressInputError(f"the dataset has {len(points)} SfM points; at most {MAX_GAUSSIANS} are accepted")
        means = points.float()
        rgb = dataset.point_colors.float()
        how = "points"
    else:
        n = config.init_num_points
        half = config.init_extent * scale
        means = torch.tensor(center, dtype=torch.float32) + half * (2 * torch.rand(n, 3, generator=gen) - 1)
        rgb = torch.rand(n, 3, generator=gen)
        how = "random"
    if not bool(torch.isfinite(means).all()):
        raise VqpressInputError("the initial points have non-finite coordinates; repair the dataset's points")
    N = means.shape[0]
    quats = torch.rand(N, 4, generator=gen)  # gsplat's random rotations (normalized in the renderer)
    opac = torch.full((N,), math.log(config.init_opacity / (1 - config.init_opacity)))
    sh0 = ((rgb - 0.5) / SH_C0).reshape(N, 1, 3)
    shN = torch.zeros(N, num_sh_rest(config.sh_degree), 3)
    return GaussianSplats(means, quats, _knn_log_scale(means, config.init_scale), opac, sh0, shN), how


# -- loss ----------------------------------------------------------------------------------------
def _gauss_window(device: torch.device) -> torch.Tensor:  # [3, 1, 11, 11]
    x = torch.arange(11, dtype=torch.float32, device=device) - 5
    g = torch.exp(-(x * x) / (2 * 1.5**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, 11, 11).contiguous()


def train_ssim(img: torch.Tensor, ref: torch.Tensor, window: torch.Tensor) -> torch.Tensor:  # scalar
    """Differentiable SSIM of [H, W, 3] images (11x11 Gaussian window, sigma 1.5, zero padding as 3DGS)."""
    x, y = img.permute(2, 0, 1)[None], ref.permute(2, 0, 1)[None]
    conv = torch.nn.functional.conv2d
    mx, my = conv(x, window, padding=5, groups=3), conv(y, window, padding=5, groups=3)
    sxx = conv(x * x, window, padding=5, groups=3) - mx * mx
    syy = conv(y * y, window, padding=5, groups=3) - my * my
    sxy = conv(x * y, window, padding=5, groups=3) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()


# -- the run --------------------------------------------------------------------------------------
def _dataset_fingerprint(images: list[torch.Tensor], cameras: list[Camera]) -> str:
    h = hashlib.sha256()
    for img, cam in zip(images, cameras, strict=True):
        h.update(cam.viewmat.tobytes())
        h.update(cam.K.tobytes())
        h.update(np.asarray(img.shape).tobytes())
        h.update(np.float64(img.double().sum()).tobytes())
    return h.hexdigest()


def _make_optimizers(
    params: dict[str, torch.nn.Parameter], config: SplatTrainConfig, scale: float
) -> dict[str, torch.optim.Optimizer]:
    lrs = {
        "means": config.means_lr * scale,
        "quats": config.quats_lr,
        "scales": config.scales_lr,
        "opacities": config.opacities_lr,
        "sh0": config.sh0_lr,
        "shN": config.shN_lr,
    }
    return {k: torch.optim.Adam([params[k]], lr=lrs[k], eps=1e-15) for k in PARAM_NAMES}


def _select(
    params: dict[str, torch.nn.Parameter],
    optimizers: dict[str, torch.optim.Optimizer],
    strategy_state: dict[str, Any],
    keep: torch.Tensor,  # [N] bool
) -> None:
    """Keep the selected Gaussians in the parameters, their Adam moments and the strategy's statistics."""
    N = keep.shape[0]
    for name in PARAM_NAMES:
        old = params[name]
        new = torch.nn.Parameter(old.detach()[keep].clone())
        opt = optimizers[name]
        st = opt.state.pop(old, None)
        if st is not None:
            for k, v in st.items():
                if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == N:
                    st[k] = v[keep]
            opt.state[new] = st
        opt.param_groups[0]["params"] = [new]
        params[name] = new
    for k, v in strategy_state.items():
        if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == N:
            strategy_state[k] = v[keep]


def _make_strategy(config: SplatTrainConfig, device: torch.device, scale: float) -> tuple[Any, dict[str, Any], str]:
    """(gsplat strategy or None, its state, the strategy in effect); gsplat is imported only on CUDA."""
    if device.type != "cuda" or config.strategy == "none":
        return None, {}, "none" if config.strategy == "none" else "none (cpu)"
    from gsplat.strategy import DefaultStrategy, MCMCStrategy

    if config.strategy == "default":
        s = DefaultStrategy(
            grow_grad2d=config.grow_grad2d,
            refine_start_iter=config.refine_start,
            refine_stop_iter=config.refine_stop,
            refine_every=config.refine_every,
            reset_every=config.reset_every,
        )
        return s, s.initialize_state(scene_scale=scale), "default"
    m = MCMCStrategy(
        cap_max=config.cap_max,
        refine_start_iter=config.refine_start,
        refine_stop_iter=config.refine_stop,
        refine_every=config.refine_every,
    )
    return m, m.initialize_state(), "mcmc"


def _rasterize_train(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4]
    scales: torch.Tensor,  # [N, 3] log
    opacities: torch.Tensor,  # [N] logit
    sh0: torch.Tensor,  # [N, 1, 3]
    shN: torch.Tensor,  # [N, R, 3]
    degree: int,
    viewmat: torch.Tensor,  # [4, 4]
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
    background: torch.Tensor,  # [3]
    use_gsplat: bool,
    absgrad: bool,
) -> tuple[torch.Tensor, dict[str, Any]]:  # rgb [H, W, 3], gsplat info (empty on the twin)
    from ..render.splats import rasterize, rasterize_gsplat

    shN_d = shN[:, : num_sh_rest(degree)]
    if not use_gsplat:
        rgb, _ = rasterize(means, quats, scales, opacities, sh0, shN_d, viewmat, K, width, height, background, "torch")
        return rgb, {}
    rgb, _, info = rasterize_gsplat(
        means,
        quats,
        torch.exp(scales),
        torch.sigmoid(opacities),
        sh0,
        shN_d,
        viewmat,
        K,
        width,
        height,
        background,
        absgrad=absgrad,
    )
    return rgb, info


def _refines_at(strategy: Any, step: int) -> bool:
    return (
        strategy is not None
        and strategy.refine_start_iter < step < strategy.refine_stop_iter
        and (step % strategy.refine_every == 0)
    )


def _resets_opacity_at(strategy: Any, step: int) -> bool:
    """The default strategy's opacity reset: every ``reset_every`` steps inside the refine window.

    gsplat 1.5.3 tests ``step % reset_every == 0 & step > 0``, which Python reads as
    ``step % reset_every == (0 & step) > 0`` and which is never true; the reset is done here at
    the cadence gsplat intends (and 3DGS does)."""
    return 0 < step < strategy.refine_stop_iter and step % strategy.reset_every == 0


def _reset_opacities(
    params: dict[str, torch.nn.Parameter],
    optimizers: dict[str, torch.optim.Optimizer],
    state: dict[str, Any],
    strategy: Any,
) -> None:
    """Clamp every opacity to 2 x the prune threshold (gsplat's reset value) and clear its Adam moments."""
    from gsplat.strategy.ops import reset_opa

    reset_opa(params=params, optimizers=optimizers, state=state, value=2.0 * strategy.prune_opa)


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over the last one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load_checkpoint(path: Path, config: SplatTrainConfig, fingerprint: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a checkpoint is our own file: an unreadable one is reported, not trusted
        raise VqpressInputError(f"{path}: cannot read the training checkpoint ({e}); delete it to start over") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise VqpressInputError(f"{path}: not a training checkpoint of this version; delete it to start over")
    if ck["config"] != config.as_dict():
        raise ConfigError(f"{path} was written with another training config; use a new checkpoint_dir or resume=False")
    if ck["dataset"] != fingerprint:
        raise VqpressInputError(f"{path} was written for another dataset; use a new checkpoint_dir or resume=False")
    return ck


def train_splats(
    dataset: Any,
    config: SplatTrainConfig = SplatTrainConfig(),
    *,
    checkpoint_dir: str | os.PathLike[str],
    resume: bool = True,
    progress: Progress | None = None,
    init: GaussianSplats | None = None,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Train splats on ``dataset`` (a ``core.data.PosedImageDataset``) and quantize them with QAT.

    checkpoint_dir: where ``last.pt`` is written every ``config.checkpoint_every`` steps; with
        ``resume`` (default) a checkpoint there of the same config and dataset is continued.
    progress: called as ("train", fraction, {step, loss, psnr, num_gaussians}) every step, then
        ("evaluate" | "encode", ...); it may raise ``Cancelled``, which propagates.
    init: an existing scene to fine-tune instead of initializing from points (SH from the start).
    device: "cuda" or "cpu"; default CUDA when available.

    Returns the trained scene, its .vqp bytes and a report (PSNR/SSIM of the decoded .vqp and of the
    trained scene against the held-out photos, or the training photos when none are held out).
    """
    from ..metrics import psnr as psnr_metric
    from ..metrics import ssim as ssim_metric
    from ..render.splats import render_views
    from .formats.ply import encode_ply
    from .quantize import QuantizeConfig, decode_vqp_splats, quantize_splats

    config.validate()
    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    train_idx = list(getattr(dataset, "train_indices", []))
    if not train_idx:
        raise VqpressInputError("the dataset has no training images")
    images = [dataset.images[i].to(dev, torch.float32) for i in train_idx]  # each [H, W, 3]
    cams = [dataset.cameras[i] for i in train_idx]
    bg_t = torch.tensor(dataset.background, dtype=torch.float32, device=dev)
    center, scale = scene_frame(cams)
    fingerprint = _dataset_fingerprint(images, cams)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME
    report_progress = progress or (lambda stage, fraction, metrics=None: None)
    report_progress("init", 0.0, {})

    ck = _load_checkpoint(ckpt_path, config, fingerprint) if resume else None
    gen = torch.Generator().manual_seed(config.seed)
    if ck is None:
        if init is not None:
            init.check_shapes()
            if init.num_gaussians == 0:
                raise VqpressInputError("the initial scene has no Gaussians; give a scene or train from the dataset")
            for k, v in init.tensors().items():
                if not bool(torch.isfinite(v).all()):
                    raise VqpressInputError(f"the initial scene has non-finite '{k}'; repair it first (load_scene)")
            start_scene, init_how = init.detach().with_sh_degree(config.sh_degree), "scene"
        else:
            start_scene, init_how = initial_splats(dataset, config, center, scale, gen)
        # Fresh storage: Adam updates in place, and the dataset's points or the caller's scene stay as given.
        params = {k: torch.nn.Parameter(v.to(dev, torch.float32).clone()) for k, v in start_scene.tensors().items()}
        step0, losses, n_init, n_before_prune, seconds = 0, [], start_scene.num_gaussians, None, 0.0
        perm, pos = torch.randperm(len(images), generator=gen), 0
        qstate = QatState()
        resumed_from = None
    else:
        st = ck["state"]
        params = {k: torch.nn.Parameter(st["params"][k].to(dev)) for k in PARAM_NAMES}
        step0, losses = int(ck["step"]), list(st["losses"])
        n_init, n_before_prune, seconds = int(st["n_init"]), st["n_before_prune"], float(st["seconds"])
        init_how = st["init"]
        gen.set_state(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        if dev.type == "cuda" and st.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(st["cuda_rng"], dev)
        perm, pos = st["perm"], int(st["pos"])
        qstate = QatState.from_state_dict(st["qat"], dev)
        resumed_from = step0
    optimizers = _make_optimizers(params, config, scale)
    strategy, strategy_state, strategy_name = _make_strategy(config, dev, scale)
    if ck is not None:
        for k in PARAM_NAMES:
            optimizers[k].load_state_dict(ck["state"]["optimizers"][k])
        strategy_state.update(
            {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in ck["state"]["strategy"].items()}
        )
    if strategy is not None:
        strategy.check_sanity(params, optimizers)
    window = _gauss_window(dev)
    qat = config.qat
    lr0, lr1 = config.means_lr * scale, config.means_lr_final * scale
    absgrad = bool(getattr(strategy, "absgrad", False))
    psnr_ema = 0.0
    t_start = time.perf_counter()

    def vectors() -> dict[str, torch.Tensor]:
        return attribute_vectors(params["sh0"], params["shN"], params["scales"], params["quats"])

    for step in range(step0, config.steps):
        degree = config.sh_degree if init_how == "scene" else min(step // config.sh_degree_interval, config.sh_degree)

        # Codebooks: first k-means at start_step, periodic warm re-assignment until freeze_step,
        # otherwise centroids follow the mean of their members.
        if qat.enabled and step >= qat.start_step:
            with torch.no_grad():
                if not qstate.active:
                    qstate.start(vectors(), qat, config.seed)
                elif step < qat.freeze_step and (step - qat.start_step) % qat.reassign_every == 0:
                    qstate.reassign(vectors(), qat)
                else:
                    qstate.follow(vectors())

        # One training photo, a fresh permutation every epoch.
        if pos >= len(perm):
            perm, pos = torch.randperm(len(images), generator=gen), 0
        view = int(perm[pos])
        pos += 1
        cam, gt = cams[view], images[view]

        quats, scales, sh0, shN = params["quats"], params["scales"], params["sh0"], params["shN"]
        if qstate.active:
            quats, scales, sh0, shN = quantized_scene(quats, scales, sh0, shN, qstate)
        rgb, info = _rasterize_train(
            params["means"],
            quats,
            scales,
            params["opacities"],
            sh0,
            shN,
            degree,
            torch.tensor(cam.viewmat, dtype=torch.float32, device=dev),
            torch.tensor(cam.K, dtype=torch.float32, device=dev),
            cam.width,
            cam.height,
            bg_t,
            strategy is not None,
            absgrad,
        )
        l1 = (rgb - gt).abs().mean()
        loss = (1.0 - config.ssim_lambda) * l1 + config.ssim_lambda * (1.0 - train_ssim(rgb, gt, window))
        if qat.in_prune_window(step) and qat.opacity_reg > 0:
            loss = loss + qat.opacity_reg * torch.sigmoid(params["opacities"]).sum()
        if strategy_name == "mcmc":
            loss = loss + MCMC_OPACITY_REG * torch.sigmoid(params["opacities"]).mean()
            loss = loss + MCMC_SCALE_REG * torch.exp(params["scales"]).mean()
        if strategy is not None and strategy_name == "default":
            strategy.step_pre_backward(params, optimizers, strategy_state, step, info)
        loss.backward()

        # Adam, with the position rate decayed exponentially from lr0 to lr1.
        lr = lr0 * (lr1 / lr0) ** (step / max(config.steps - 1, 1))
        optimizers["means"].param_groups[0]["lr"] = lr
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)

        # Densification (CUDA) changes N or moves Gaussians: re-assign them to the current codebooks.
        if strategy is not None:
            n_before = params["means"].shape[0]
            if strategy_name == "default":
                strategy.step_post_backward(params, optimizers, strategy_state, step, info, packed=False)
                if _resets_opacity_at(strategy, step):
                    _reset_opacities(params, optimizers, strategy_state, strategy)
            else:
                strategy.step_post_backward(params, optimizers, strategy_state, step, info, lr=lr)
            if qstate.active and (params["means"].shape[0] != n_before or _refines_at(strategy, step)):
                with torch.no_grad():
                    qstate.assign_only(vectors())

        # Compact3D pruning of transparent Gaussians inside the window.
        if qat.prunes_at(step):
            with torch.no_grad():
                keep = torch.sigmoid(params["opacities"]) >= qat.prune_opacity
                if n_before_prune is None:
                    n_before_prune = int(keep.shape[0])
                if not bool(keep.all()) and bool(keep.any()):
                    _select(params, optimizers, strategy_state, keep)
                    if qstate.active:
                        qstate.select(keep)

        with torch.no_grad():
            loss_v = float(loss)
            mse = float((rgb.detach().clamp(0, 1) - gt).square().mean())
        if not math.isfinite(loss_v):
            raise VqpressInputError(f"training diverged at step {step} (loss {loss_v}); lower the learning rates")
        losses.append(loss_v)
        step_psnr = -10.0 * math.log10(max(mse, 1e-10))
        psnr_ema = step_psnr if step == step0 else 0.9 * psnr_ema + 0.1 * step_psnr
        done = step + 1
        if done % config.checkpoint_every == 0 and done < config.steps:
            elapsed = seconds + time.perf_counter() - t_start
            _save_checkpoint(
                ckpt_path,
                {
                    "format": CHECKPOINT_FORMAT,
                    "config": config.as_dict(),
                    "dataset": fingerprint,
                    "step": done,
                    "state": {
                        "params": {k: v.detach().cpu() for k, v in params.items()},
                        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                        "strategy": {
                            k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v)
                            for k, v in strategy_state.items()
                        },
                        "qat": qstate.state_dict(),
                        "rng": gen.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                        "perm": perm,
                        "pos": pos,
                        "losses": losses,
                        "n_init": n_init,
                        "n_before_prune": n_before_prune,
                        "seconds": elapsed,
                        "init": init_how,
                    },
                },
            )
        report_progress(
            "train",
            0.9 * done / config.steps,
            {"step": float(done), "loss": loss_v, "psnr": psnr_ema, "num_gaussians": float(params["means"].shape[0])},
        )

    # The delivered scene is what training rendered: with QAT, the codebook values (after a last
    # centroid update to the final raw values).
    with torch.no_grad():
        if qstate.active:
            qstate.follow(vectors())
            q, s_, d0, dN = quantized_scene(params["quats"], params["scales"], params["sh0"], params["shN"], qstate)
        else:
            q, s_, d0, dN = params["quats"], params["scales"], params["sh0"], params["shN"]
        trained = GaussianSplats(
            params["means"].detach().float().cpu().clone(),
            q.detach().float().cpu().clone(),
            s_.detach().float().cpu().clone(),
            params["opacities"].detach().float().cpu().clone(),
            d0.detach().float().cpu().clone(),
            dN.detach().float().cpu().clone(),
            meta={"source_format": "train"},
        )
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    train_seconds = seconds + time.perf_counter() - t_start

    report_progress("encode", 0.9, {})
    t0 = time.perf_counter()
    if qstate.active:
        vqp = encode_vqp(trained, qstate, qat, config.seed)
        vqp_source = "qat"
    else:
        qconf = QuantizeConfig(
            dc_codebook=qat.dc_codebook,
            sh_codebook=qat.sh_codebook,
            scale_codebook=qat.scale_codebook,
            rot_codebook=qat.rot_codebook,
            kmeans_iters=qat.kmeans_iters,
            seed=config.seed,
        )
        vqp = quantize_splats(trained.to(dev), qconf).to_vqp_bytes()
        vqp_source = "post_hoc"
    encode_seconds = time.perf_counter() - t0
    ply_bytes = len(encode_ply(trained))

    report_progress("evaluate", 0.95, {})
    test_idx = list(getattr(dataset, "test_indices", []))
    eval_split = "test" if test_idx else "train"
    eval_idx = test_idx or train_idx
    eval_cams = [dataset.cameras[i] for i in eval_idx]
    decoded = decode_vqp_splats(vqp, name="trained.vqp", device=dev)
    quality: dict[str, float] = {}
    for label, scene in (("", decoded), ("_trained", trained.to(dev))):
        renders = render_views(scene, eval_cams, background=dataset.background)
        p = [psnr_metric(r.cpu(), dataset.images[i]) for r, i in zip(renders, eval_idx, strict=True)]
        s = [ssim_metric(r.cpu(), dataset.images[i]) for r, i in zip(renders, eval_idx, strict=True)]
        quality[f"psnr{label}"] = float(np.mean(p))
        quality[f"ssim{label}"] = float(np.mean(s))
    report_progress("evaluate", 1.0, quality)

    report: dict[str, Any] = {
        "steps": config.steps,
        "device": dev.type,
        "strategy": strategy_name,
        "init": init_how,
        "resumed_from_step": resumed_from,
        "num_gaussians_init": n_init,
        "num_gaussians_before_prune": n_before_prune,
        "num_gaussians": trained.num_gaussians,
        "sh_degree": trained.sh_degree,
        "vqp_source": vqp_source,
        "vqp_bytes": len(vqp),
        "ply_bytes": ply_bytes,
        "ratio": ply_bytes / max(len(vqp), 1),
        **quality,
        "eval_split": eval_split,
        "num_eval_views": len(eval_idx),
        "train_seconds": train_seconds,
        "kmeans_seconds": qstate.kmeans_seconds,
        "kmeans_share": qstate.kmeans_seconds / max(train_seconds, 1e-9),
        "encode_seconds": encode_seconds,
        "loss_first": float(np.mean(losses[: max(1, min(10, len(losses)))])) if losses else None,
        "loss_last": float(np.mean(losses[-max(1, min(10, len(losses))) :])) if losses else None,
        "losses": losses,
        "scene_scale": scale,
        "config": config.as_dict(),
    }
    return TrainResult(trained, vqp, report)


__all__ = ["SplatTrainConfig", "TrainResult", "initial_splats", "scene_frame", "train_ssim", "train_splats"]

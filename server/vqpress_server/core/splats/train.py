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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import load_checkpoint, save_checkpoint
from ..errors import ConfigError, VqpressInputError
from ..metrics import psnr as psnr_metric
from ..metrics import ssim as ssim_metric
from ..progress import Progress
from ..render.cameras import Camera
from ..render.splats import rasterize, rasterize_gsplat, render_views
from .formats.ply import encode_ply
from .framing import OBJECT_FILL, Framing, frame_capture, scene_frame  # noqa: F401  (scene_frame: used by field training)
from .importance import view_importance
from .model import SH_C0, GaussianSplats, num_sh_rest
from .qat import QatState, attribute_vectors, encode_vqp, quantized_scene
from .quantize import QuantizeConfig, decode_vqp_splats, quantize_splats
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
CHECKPOINT_FORMAT = (
    2  # 2: configs with schedule and reset_on_white; older checkpoints are ignored (the run starts over)
)
MCMC_OPACITY_REG = 0.01  # gsplat's MCMC regularizers: weight of the mean opacity ...
MCMC_SCALE_REG = 0.01  # ... and of the mean scale in the loss (used with strategy="mcmc" on CUDA)


@dataclass
class TrainResult:
    splats: GaussianSplats  # the trained scene on the CPU, as rendered in training (QAT: codebook values)
    vqp: bytes  # the .vqp: QAT codebooks and indices, or post-hoc quantization when QAT was off
    report: dict[str, Any]  # sizes, quality on held-out views, Gaussian counts, timings (JSON-able)


# -- where training starts --------------------------------------------------------------------
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


def frame_dataset(dataset: Any, config: SplatTrainConfig, cameras: list[Camera]) -> Framing:
    """The framing of the training cameras (and SfM points), with ``config.init`` forcing a rule."""
    points = getattr(dataset, "points", None)
    use_points = config.init == "points" or (config.init == "auto" and points is not None and len(points) > 0)
    if config.init == "points" and (points is None or len(points) == 0):
        raise VqpressInputError("init='points' but the dataset has no SfM points; use init='auto' or 'random'")
    frame = frame_capture(cameras, points.numpy() if use_points else None, config.init_extent)
    if config.init == "object" and frame.rule != "object":
        frame = replace(frame, rule="object", box_half=_object_half(cameras, frame))
    elif config.init == "camera_spread" and frame.rule != "camera_spread":
        frame = replace(frame, rule="camera_spread", box_half=config.init_extent * frame.scale)
    return frame


def _object_half(cameras: list[Camera], frame: Framing) -> float:
    """The object box of ``framing.frame_capture`` for cameras that did not pass its tests (init='object')."""
    c = np.asarray(frame.center)
    d_min = min(float(np.linalg.norm(cam.position - c)) for cam in cameras)
    fov = min(2.0 * math.atan(0.5 * min(cam.width / cam.K[0, 0], cam.height / cam.K[1, 1])) for cam in cameras)
    return OBJECT_FILL * d_min * math.tan(0.5 * fov)


def initial_splats(
    dataset: Any,
    config: SplatTrainConfig,
    frame: Framing,
    gen: torch.Generator,
) -> GaussianSplats:
    """Gaussians from the dataset's SfM points (``frame.rule == "points"``) or uniform in the frame's box."""
    if frame.rule == "points":
        points = dataset.points
        if len(points) > MAX_GAUSSIANS:
            raise VqpressInputError(f"the dataset has {len(points)} SfM points; at most {MAX_GAUSSIANS} are accepted")
        means = points.float()
        rgb = dataset.point_colors.float()
    else:
        n = config.init_num_points
        center = torch.tensor(frame.center, dtype=torch.float32)
        means = center + frame.box_half * (2 * torch.rand(n, 3, generator=gen) - 1)
        rgb = torch.rand(n, 3, generator=gen)
    if not bool(torch.isfinite(means).all()):
        raise VqpressInputError("the initial points have non-finite coordinates; repair the dataset's points")
    N = means.shape[0]
    quats = torch.rand(N, 4, generator=gen)  # gsplat's random rotations (normalized in the renderer)
    opac = torch.full((N,), math.log(config.init_opacity / (1 - config.init_opacity)))
    sh0 = ((rgb - 0.5) / SH_C0).reshape(N, 1, 3)
    shN = torch.zeros(N, num_sh_rest(config.sh_degree), 3)
    return GaussianSplats(means, quats, _knn_log_scale(means, config.init_scale), opac, sh0, shN)


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
    from gsplat.strategy import DefaultStrategy, MCMCStrategy  # here: gsplat's kernels are for CUDA only

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


def _refines_at(strategy: Any, step: int) -> bool:
    return (
        strategy is not None
        and strategy.refine_start_iter < step < strategy.refine_stop_iter
        and (step % strategy.refine_every == 0)
    )


def _resets_opacity_at(strategy: Any, step: int, on_white: bool) -> bool:
    """The default strategy's opacity reset: every ``reset_every`` steps inside the refine window, and
    (``on_white``) once more when densification starts, as 3DGS does for photos on a white background.

    gsplat 1.5.3 tests ``step % reset_every == 0 & step > 0``, which Python reads as
    ``step % reset_every == (0 & step) > 0`` and which is never true; the reset is done here at
    the cadence gsplat intends (and 3DGS does)."""
    periodic = 0 < step < strategy.refine_stop_iter and step % strategy.reset_every == 0
    return periodic or (on_white and step == strategy.refine_start_iter)


def _reset_opacities(
    params: dict[str, torch.nn.Parameter],
    optimizers: dict[str, torch.optim.Optimizer],
    state: dict[str, Any],
    strategy: Any,
) -> None:
    """Clamp every opacity to 2 x the prune threshold (gsplat's reset value) and clear its Adam moments."""
    from gsplat.strategy.ops import reset_opa  # here: gsplat's kernels are for CUDA only

    reset_opa(params=params, optimizers=optimizers, state=state, value=2.0 * strategy.prune_opa)


def _load_checkpoint(path: Path, config: SplatTrainConfig, fingerprint: str) -> dict[str, Any] | None:
    """The run's checkpoint at ``path`` (read by ``core.checkpoint``; None when there is none). One
    that cannot be read, or of another version, config or dataset, is refused, naming what differs:
    ``checkpoint_dir`` is the caller's folder, so a file there is not silently replaced."""
    if not path.is_file():
        return None
    ck = load_checkpoint(path)
    if ck is None:
        raise VqpressInputError(f"{path}: cannot read the training checkpoint; delete it to start over")
    if isinstance(ck.get("format"), int) and ck["format"] < CHECKPOINT_FORMAT:
        return None  # written by an earlier version for an earlier config: start over
    if ck.get("format") != CHECKPOINT_FORMAT:
        raise VqpressInputError(f"{path}: not a training checkpoint of this version; delete it to start over")
    if ck["config"] != config.as_dict():
        raise ConfigError(f"{path} was written with another training config; use a new checkpoint_dir or resume=False")
    if ck.get("dataset") != fingerprint:
        raise VqpressInputError(f"{path} was written for another dataset; use a new checkpoint_dir or resume=False")
    return ck


@dataclass
class TrainState:
    """What a run is doing (the ``state`` of a checkpoint ``{config, state, step}``): the Gaussians and
    their Adam moments, the densification statistics, the codebooks, the photo order and the tallies."""

    params: dict[str, torch.nn.Parameter]  # PARAM_NAMES -> [N, ...]
    optimizers: dict[str, torch.optim.Optimizer]  # one Adam per parameter
    strategy_state: dict[str, Any]  # gsplat's densification statistics
    qat: QatState  # codebooks and indices (inactive before qat.start_step)
    gen: torch.Generator  # photo order (CPU)
    perm: torch.Tensor  # [V] the current epoch's photo order
    pos: int  # next position in perm
    init: str  # how it started: a framing rule ("points" | "object" | "camera_spread"), or "scene" (given)
    n_init: int  # Gaussians at step 0
    n_before_prune: int | None = None  # Gaussians at the first QAT prune
    losses: list[float] = field(default_factory=list)  # loss of every step
    seconds: float = 0.0  # training time of earlier sessions of this run (resumed runs)

    @property
    def num_gaussians(self) -> int:
        return int(self.params["means"].shape[0])

    def next_view(self, num_views: int) -> int:
        """One training photo per step, a fresh permutation every epoch."""
        if self.pos >= len(self.perm):
            self.perm, self.pos = torch.randperm(num_views, generator=self.gen), 0
        view = int(self.perm[self.pos])
        self.pos += 1
        return view

    def state_dict(self, device: torch.device, seconds: float) -> dict[str, Any]:
        return {
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "strategy": {
                k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in self.strategy_state.items()
            },
            "qat": self.qat.state_dict(),
            "rng": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "perm": self.perm,
            "pos": self.pos,
            "losses": self.losses,
            "n_init": self.n_init,
            "n_before_prune": self.n_before_prune,
            "seconds": seconds,
            "init": self.init,
        }

    def load_state_dict(self, st: dict[str, Any], device: torch.device) -> None:
        """Continue from a checkpoint's state (parameters were built from it by ``from_checkpoint``)."""
        for k in PARAM_NAMES:
            self.optimizers[k].load_state_dict(st["optimizers"][k])
        self.strategy_state.update(
            {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in st["strategy"].items()}
        )
        self.gen.set_state(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        if device.type == "cuda" and st.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(st["cuda_rng"], device)
        self.perm, self.pos = st["perm"], int(st["pos"])
        self.losses = list(st["losses"])
        self.n_init, self.n_before_prune = int(st["n_init"]), st["n_before_prune"]
        self.seconds, self.init = float(st["seconds"]), st["init"]


class _Trainer:
    """One run's fixed parts (photos, cameras, framing, strategy) and the steps of its loop."""

    def __init__(self, dataset: Any, config: SplatTrainConfig, dev: torch.device, train_idx: list[int]) -> None:
        self.config, self.dev = config, dev
        self.images = [dataset.images[i].to(dev, torch.float32) for i in train_idx]  # each [H, W, 3]
        self.cams = [dataset.cameras[i] for i in train_idx]
        self.viewmats = [torch.tensor(c.viewmat, dtype=torch.float32, device=dev) for c in self.cams]  # [4, 4] each
        self.Ks = [torch.tensor(c.K, dtype=torch.float32, device=dev) for c in self.cams]  # [3, 3] each
        self.bg = torch.tensor(dataset.background, dtype=torch.float32, device=dev)  # [3]
        # 3DGS's extra reset is for synthetic objects on white (its --white_background, set for Blender data)
        white = all(float(v) == 1.0 for v in dataset.background)
        self.on_white = config.reset_on_white and white and getattr(dataset, "layout", "") == "nerf_synthetic"
        self.frame = frame_dataset(dataset, config, self.cams)
        self.scale = self.frame.scale
        self.window = _gauss_window(dev)
        self.strategy, self.strategy_state0, self.strategy_name = _make_strategy(config, dev, self.scale)
        self.absgrad = bool(getattr(self.strategy, "absgrad", False))
        self.lr0, self.lr1 = config.means_lr * self.scale, config.means_lr_final * self.scale

    # -- state ---------------------------------------------------------------------------------
    def fresh_state(self, dataset: Any, init: GaussianSplats | None) -> TrainState:
        config = self.config
        gen = torch.Generator().manual_seed(config.seed)
        if init is not None:
            init.check_shapes()
            if init.num_gaussians == 0:
                raise VqpressInputError("the initial scene has no Gaussians; give a scene or train from the dataset")
            for k, v in init.tensors().items():
                if not bool(torch.isfinite(v).all()):
                    raise VqpressInputError(f"the initial scene has non-finite '{k}'; repair it first (load_scene)")
            start, how = init.detach().with_sh_degree(config.sh_degree), "scene"
        else:
            start, how = initial_splats(dataset, config, self.frame, gen), self.frame.rule
        # Fresh storage: Adam updates in place, and the dataset's points or the caller's scene stay as given.
        params = {k: torch.nn.Parameter(v.to(self.dev, torch.float32).clone()) for k, v in start.tensors().items()}
        return self._state(params, gen, how, start.num_gaussians)

    def resumed_state(self, ck: dict[str, Any]) -> TrainState:
        st = ck["state"]
        params = {k: torch.nn.Parameter(st["params"][k].to(self.dev)) for k in PARAM_NAMES}
        state = self._state(params, torch.Generator(), st["init"], int(st["n_init"]))
        state.qat = QatState.from_state_dict(st["qat"], self.dev)
        state.load_state_dict(st, self.dev)
        return state

    def _state(self, params: dict[str, torch.nn.Parameter], gen: torch.Generator, how: str, n: int) -> TrainState:
        perm = torch.randperm(len(self.images), generator=gen)
        strategy_state = dict(self.strategy_state0)
        state = TrainState(
            params, _make_optimizers(params, self.config, self.scale), strategy_state, QatState(), gen, perm, 0, how, n
        )
        if self.strategy is not None:
            self.strategy.check_sanity(params, state.optimizers)
        return state

    # -- one step ------------------------------------------------------------------------------
    def step(self, s: TrainState, step: int) -> tuple[float, float]:  # (loss, mse of the rendered photo)
        """Codebooks, one photo rendered and compared, Adam, densification, pruning."""
        config, qat = self.config, self.config.qat
        degree = config.sh_degree if s.init == "scene" else min(step // config.sh_degree_interval, config.sh_degree)
        self._update_codebooks(s, step)
        view = s.next_view(len(self.images))
        rgb, info = self._render(s, view, degree)
        gt = self.images[view]
        loss = self._loss(s, rgb, gt, step)
        if self.strategy_name == "default":
            self.strategy.step_pre_backward(s.params, s.optimizers, s.strategy_state, step, info)
        loss.backward()
        lr = self._adam(s, step)
        self._densify(s, step, info, lr)
        if qat.prunes_at(step):
            self._prune(s)
        with torch.no_grad():
            return float(loss), float((rgb.detach().clamp(0, 1) - gt).square().mean())

    def _vectors(self, s: TrainState) -> dict[str, torch.Tensor]:
        p = s.params
        return attribute_vectors(p["sh0"], p["shN"], p["scales"], p["quats"])

    def _update_codebooks(self, s: TrainState, step: int) -> None:
        """First k-means at start_step, periodic warm re-assignment until freeze_step, otherwise
        centroids follow the mean of their members."""
        qat = self.config.qat
        if not (qat.in_loop and step >= qat.start_step):
            return
        with torch.no_grad():
            if not s.qat.active:
                s.qat.start(self._vectors(s), qat, self.config.seed)
            elif step < qat.freeze_step and (step - qat.start_step) % qat.reassign_every == 0:
                s.qat.reassign(self._vectors(s), qat)
            else:
                s.qat.follow(self._vectors(s))

    def _render(self, s: TrainState, view: int, degree: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """rgb [H, W, 3] of a training view (codebook values when QAT is on) and gsplat's info."""
        p = s.params
        quats, scales, sh0, shN = p["quats"], p["scales"], p["sh0"], p["shN"]
        if s.qat.active:
            quats, scales, sh0, shN = quantized_scene(quats, scales, sh0, shN, s.qat)
        shN = shN[:, : num_sh_rest(degree)]
        cam = self.cams[view]
        vm, K, w, h = self.viewmats[view], self.Ks[view], cam.width, cam.height
        if self.strategy is None:  # no densification statistics to keep: gsplat on CUDA, else the twin
            rgb, _ = rasterize(p["means"], quats, scales, p["opacities"], sh0, shN, vm, K, w, h, self.bg)
            return rgb, {}
        opacities = torch.sigmoid(p["opacities"])
        rgb, _, info = rasterize_gsplat(
            p["means"], quats, torch.exp(scales), opacities, sh0, shN, vm, K, w, h, self.bg, absgrad=self.absgrad
        )
        return rgb, info

    def _loss(self, s: TrainState, rgb: torch.Tensor, gt: torch.Tensor, step: int) -> torch.Tensor:
        config, qat, p = self.config, self.config.qat, s.params
        l1 = (rgb - gt).abs().mean()
        loss = (1.0 - config.ssim_lambda) * l1 + config.ssim_lambda * (1.0 - train_ssim(rgb, gt, self.window))
        if qat.in_prune_window(step) and qat.opacity_reg > 0:
            loss = loss + qat.opacity_reg * torch.sigmoid(p["opacities"]).sum()
        if self.strategy_name == "mcmc":
            loss = loss + MCMC_OPACITY_REG * torch.sigmoid(p["opacities"]).mean()
            loss = loss + MCMC_SCALE_REG * torch.exp(p["scales"]).mean()
        return loss

    def _adam(self, s: TrainState, step: int) -> float:
        """Adam, with the position rate decayed exponentially from lr0 to lr1; returns that rate."""
        lr = self.lr0 * (self.lr1 / self.lr0) ** (step / max(self.config.steps - 1, 1))
        s.optimizers["means"].param_groups[0]["lr"] = lr
        for opt in s.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        return lr

    def _densify(self, s: TrainState, step: int, info: dict[str, Any], lr: float) -> None:
        """gsplat's densification (CUDA), opacity resets, and re-assignment of moved or new Gaussians."""
        if self.strategy is None:
            return
        n_before = s.num_gaussians
        if self.strategy_name == "default":
            self.strategy.step_post_backward(s.params, s.optimizers, s.strategy_state, step, info, packed=False)
            if _resets_opacity_at(self.strategy, step, self.on_white):
                _reset_opacities(s.params, s.optimizers, s.strategy_state, self.strategy)
        else:
            self.strategy.step_post_backward(s.params, s.optimizers, s.strategy_state, step, info, lr=lr)
        if s.qat.active and (s.num_gaussians != n_before or _refines_at(self.strategy, step)):
            with torch.no_grad():
                s.qat.assign_only(self._vectors(s))

    def _prune(self, s: TrainState) -> None:
        """Compact3D pruning of transparent Gaussians inside the QAT window."""
        with torch.no_grad():
            keep = torch.sigmoid(s.params["opacities"]) >= self.config.qat.prune_opacity
            if s.n_before_prune is None:
                s.n_before_prune = int(keep.shape[0])
            if not bool(keep.all()) and bool(keep.any()):
                _select(s.params, s.optimizers, s.strategy_state, keep)
                if s.qat.active:
                    s.qat.select(keep)

    # -- the end -------------------------------------------------------------------------------
    def delivered(self, s: TrainState) -> GaussianSplats:
        """What training rendered: with QAT the codebook values (after a last centroid update)."""
        p = s.params
        with torch.no_grad():
            if s.qat.active:
                s.qat.follow(self._vectors(s))
                q, s_, d0, dN = quantized_scene(p["quats"], p["scales"], p["sh0"], p["shN"], s.qat)
            else:
                q, s_, d0, dN = p["quats"], p["scales"], p["sh0"], p["shN"]
            return GaussianSplats(
                p["means"].detach().float().cpu().clone(),
                q.detach().float().cpu().clone(),
                s_.detach().float().cpu().clone(),
                p["opacities"].detach().float().cpu().clone(),
                d0.detach().float().cpu().clone(),
                dN.detach().float().cpu().clone(),
                meta={"source_format": "train"},
            )


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
        ("encode" | "evaluate", ...); it may raise ``Cancelled``, which propagates.
    init: an existing scene to fine-tune instead of initializing from points (SH from the start).
    device: "cuda" or "cpu"; default CUDA when available.

    Returns the trained scene, its .vqp bytes and a report: PSNR/SSIM of the decoded .vqp and of the
    trained scene on every held-out photo (the training photos when none are held out), Gaussian
    counts, file sizes, the framing and schedule, and timings.
    """
    config.validate()
    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    train_idx = list(getattr(dataset, "train_indices", []))
    if not train_idx:
        raise VqpressInputError("the dataset has no training images")
    run = _Trainer(dataset, config, dev, train_idx)
    fingerprint = _dataset_fingerprint(run.images, run.cams)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME
    report_progress = progress or (lambda stage, fraction, metrics=None: None)
    report_progress("init", 0.0, {})

    ck = _load_checkpoint(ckpt_path, config, fingerprint) if resume else None
    s = run.fresh_state(dataset, init) if ck is None else run.resumed_state(ck)
    step0 = 0 if ck is None else int(ck["step"])
    psnr_ema = 0.0
    t_start = time.perf_counter()
    for step in range(step0, config.steps):
        loss_v, mse = run.step(s, step)
        if not math.isfinite(loss_v):
            raise VqpressInputError(f"training diverged at step {step} (loss {loss_v}); lower the learning rates")
        s.losses.append(loss_v)
        step_psnr = -10.0 * math.log10(max(mse, 1e-10))
        psnr_ema = step_psnr if step == step0 else 0.9 * psnr_ema + 0.1 * step_psnr
        done = step + 1
        if done % config.checkpoint_every == 0 and done < config.steps:
            elapsed = s.seconds + time.perf_counter() - t_start
            save_checkpoint(
                ckpt_path,
                {
                    "format": CHECKPOINT_FORMAT,
                    "config": config.as_dict(),
                    "dataset": fingerprint,
                    "step": done,
                    "state": s.state_dict(dev, elapsed),
                },
            )
        report_progress(
            "train",
            0.9 * done / config.steps,
            {"step": float(done), "loss": loss_v, "psnr": psnr_ema, "num_gaussians": float(s.num_gaussians)},
        )
    trained = run.delivered(s)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    train_seconds = s.seconds + time.perf_counter() - t_start

    report_progress("encode", 0.9, {})
    t0 = time.perf_counter()
    qat = config.qat
    finetuned: dict[str, Any] | None = None
    if s.qat.active:
        vqp, vqp_source = encode_vqp(trained, s.qat, qat, config.seed), "qat"
    elif qat.enabled and qat.mode == "finetune":
        vqp, finetuned = _quantize_and_finetune(dataset, trained.to(dev), run.cams, config, dev, report_progress)
        vqp_source = "finetune"
    else:
        qconf = QuantizeConfig(
            dc_codebook=qat.dc_codebook,
            sh_codebook=qat.sh_codebook,
            scale_codebook=qat.scale_codebook,
            rot_codebook=qat.rot_codebook,
            kmeans_iters=qat.kmeans_iters,
            seed=config.seed,
        )
        vqp, vqp_source = quantize_splats(trained.to(dev), qconf).to_vqp_bytes(), "post_hoc"
    encode_seconds = time.perf_counter() - t0
    ply_bytes = len(encode_ply(trained))

    report_progress("evaluate", 0.98 if finetuned else 0.95, {})
    if finetuned:  # the fine-tune scored its decoded .vqp on these photos already
        quality = evaluate_on_photos(dataset, {"_trained": trained.to(dev)})
        quality |= {"psnr": finetuned.pop("psnr"), "ssim": finetuned.pop("ssim")}
    else:
        quality = evaluate_on_photos(
            dataset, {"": decode_vqp_splats(vqp, name="trained.vqp", device=dev), "_trained": trained.to(dev)}
        )
    report_progress("evaluate", 1.0, {k: v for k, v in quality.items() if isinstance(v, float)})

    losses = s.losses
    report: dict[str, Any] = {
        "schedule": config.schedule,
        "steps": config.steps,
        "device": dev.type,
        "strategy": run.strategy_name,
        "init": s.init,
        "framing": run.frame.as_dict(),
        "resumed_from_step": None if ck is None else step0,
        "num_gaussians_init": s.n_init,
        "num_gaussians_before_prune": trained.num_gaussians if finetuned else s.n_before_prune,
        "num_gaussians": finetuned["num_gaussians"] if finetuned else trained.num_gaussians,
        "sh_degree": trained.sh_degree,
        "vqp_source": vqp_source,
        "vqp_bytes": len(vqp),
        "ply_bytes": ply_bytes,
        "ratio": ply_bytes / max(len(vqp), 1),
        **quality,
        "train_seconds": train_seconds,
        "kmeans_seconds": s.qat.kmeans_seconds,
        "kmeans_share": s.qat.kmeans_seconds / max(train_seconds, 1e-9),
        "encode_seconds": encode_seconds,
        "finetune": finetuned,
        "loss_first": float(np.mean(losses[: max(1, min(10, len(losses)))])) if losses else None,
        "loss_last": float(np.mean(losses[-max(1, min(10, len(losses))) :])) if losses else None,
        "losses": losses,
        "scene_scale": run.scale,
        "config": config.as_dict(),
    }
    return TrainResult(trained, vqp, report)


def _quantize_and_finetune(
    dataset: Any,
    trained: GaussianSplats,
    cams: list[Any],
    config: SplatTrainConfig,
    dev: torch.device,
    report_progress: Progress,
) -> tuple[bytes, dict[str, Any]]:
    """QAT mode "finetune": the post-hoc default quantizer on the trained scene (view-importance
    weights and pruning from the training cameras), then ``qat.finetune_steps`` of training through
    the quantized scene with its indices fixed. Returns (.vqp, what the report says of it)."""
    # finetune.py imports this module (the SSIM loss, evaluate_on_photos): imported here, not at the top
    from .finetune import FinetuneConfig, finetune_vqp

    t0 = time.perf_counter()
    qconf = replace(QuantizeConfig.preset("default"), seed=config.seed)
    weights = view_importance(trained, cams)
    q = quantize_splats(trained, qconf, weights=weights)
    quantize_seconds = time.perf_counter() - t0
    steps = config.qat.finetune_steps_for(config.steps)

    def ft_progress(stage: str, fraction: float, metrics: dict[str, float] | None = None) -> None:
        report_progress("finetune", 0.9 + 0.08 * fraction, metrics or {})

    vqp, rep = finetune_vqp(
        q.to_vqp_bytes(), dataset, FinetuneConfig(steps=steps, seed=config.seed), progress=ft_progress, device=dev
    )
    return vqp, {
        "quantize_preset": "default",
        "num_gaussians": q.num_gaussians,
        "steps": steps,
        "quantize_seconds": quantize_seconds,
        "finetune_seconds": rep["finetune_seconds"],
        "psnr": rep["psnr"],  # the decoded fine-tuned .vqp on the held-out photos (moved into the report's top)
        "ssim": rep["ssim"],
        "psnr_before": rep["psnr_before"],
        "ssim_before": rep["ssim_before"],
    }


def evaluate_on_photos(dataset: Any, scenes: dict[str, GaussianSplats]) -> dict[str, Any]:
    """PSNR/SSIM of each scene on every held-out photo (the training photos when none are held out).

    Keys: ``psnr<label>``, ``ssim<label>`` (means over the views) per scene, ``eval_split`` and
    ``num_eval_views``."""

    test_idx = list(getattr(dataset, "test_indices", []))
    eval_idx = test_idx or list(dataset.train_indices)
    cams = [dataset.cameras[i] for i in eval_idx]
    out: dict[str, Any] = {"eval_split": "test" if test_idx else "train", "num_eval_views": len(eval_idx)}
    for label, scene in scenes.items():
        renders = render_views(scene, cams, background=dataset.background)
        p = [psnr_metric(r.cpu(), dataset.images[i]) for r, i in zip(renders, eval_idx, strict=True)]
        q = [ssim_metric(r.cpu(), dataset.images[i]) for r, i in zip(renders, eval_idx, strict=True)]
        out[f"psnr{label}"] = float(np.mean(p))
        out[f"ssim{label}"] = float(np.mean(q))
    return out


__all__ = [
    "SplatTrainConfig",
    "TrainResult",
    "TrainState",
    "evaluate_on_photos",
    "frame_dataset",
    "initial_splats",
    "train_splats",
    "train_ssim",
]

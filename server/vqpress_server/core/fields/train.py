"""Training of neural fields: fit one image (2D) or a radiance field from posed photos (3D).

Both loops use Adam on an MSE loss, report ``(stage, fraction, {"loss", "psnr"})`` through the
progress callback every ``log_every`` steps (the callback may raise ``Cancelled``), and return a
``FitResult`` whose ``checkpoint()`` is ``{config, state, step}``; passing it back as ``resume``
continues the same run. With ``on_checkpoint`` and ``checkpoint_every``, the loops hand a
``FitResult`` of the run so far to the callback every ``checkpoint_every`` steps, so a caller can
save it and resume a run that was cut short with exactly the schedule of an uninterrupted one. That
result shares tensors with the running fit: save (or copy) it inside the callback.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, NonFiniteError, VqpressInputError
from ..progress import Progress
from ..render.volume import (
    OccupancyGrid,
    camera_rays,
    march_steps_bound,
    render_image,
    render_image_marched,
    render_rays,
    render_rays_marched,
    unit_coords,
)
from ..splats.train import scene_frame
from .config import FieldConfig, TrainConfig, VqadGridConfig, field_config_to_dict
from .grid import VqadGrid
from .model import NeuralField, pixel_coords

CheckpointHook = Callable[["FitResult"], None]

if TYPE_CHECKING:
    from ..render.cameras import Camera

MAX_IMAGE_PIXELS = 1 << 26  # 64 Mpixel: larger images are refused rather than allocated


@dataclass
class FitResult:
    """A trained field plus what happened while training it."""

    field: NeuralField
    step: int  # optimizer steps done
    history: list[dict[str, float]] = field(default_factory=list)  # step, loss, psnr every log_every
    train_time_s: float = 0.0  # wall-clock seconds of the training loop
    peak_memory_bytes: int | None = None  # CUDA peak allocated during training; None on CPU
    optimizer_state: dict[str, Any] | None = None
    occupancy: Tensor | None = None  # 3D: the occupancy grid's density estimate

    def checkpoint(self) -> dict[str, Any]:
        """``{config, state, step}``: enough to resume training with ``resume=``."""
        return {
            "config": field_config_to_dict(self.field.config),
            "state": {
                "model": self.field.state_dict(),
                "optimizer": self.optimizer_state,
                "occupancy": self.occupancy,
            },
            "step": self.step,
        }


def as_image(image: Tensor | np.ndarray, name: str = "image") -> Tensor:  # -> [H, W, 3] float32 in [0, 1]
    """Validate an untrusted image: [H, W], [H, W, 1|3|4] floats in [0, 1] or uint8."""
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8:
            image = image.astype(np.float32) / 255.0
        elif not np.issubdtype(image.dtype, np.floating):
            raise VqpressInputError(f"{name}: expected a float or uint8 array, got dtype {image.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    elif isinstance(image, Tensor):
        t = image.float() if image.dtype != torch.uint8 else image.float() / 255.0
    else:
        raise VqpressInputError(f"{name}: expected a numpy array or a torch tensor, got {type(image).__name__}")
    if t.ndim == 2:
        t = t[..., None]
    if t.ndim != 3 or t.shape[-1] not in (1, 3, 4):
        raise VqpressInputError(
            f"{name}: expected shape [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got {tuple(t.shape)}"
        )
    if t.shape[0] < 2 or t.shape[1] < 2:
        raise VqpressInputError(f"{name}: image is empty or degenerate ({t.shape[0]}x{t.shape[1]}); need >= 2x2 pixels")
    if t.shape[0] * t.shape[1] > MAX_IMAGE_PIXELS:
        raise VqpressInputError(f"{name}: {t.shape[0]}x{t.shape[1]} exceeds {MAX_IMAGE_PIXELS} pixels; downscale it")
    if not torch.isfinite(t).all():
        raise NonFiniteError(f"{name}: contains NaN or inf values; repair or drop the image")
    if t.min() < 0.0 or t.max() > 1.0:
        raise VqpressInputError(
            f"{name}: values must lie in [0, 1] (floats) or be uint8, got [{t.min():.3g}, {t.max():.3g}]"
        )
    if t.shape[-1] == 1:
        t = t.expand(-1, -1, 3)
    return t[..., :3].contiguous()


def mse_to_psnr(mse: float) -> float:
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


# VQ-AD's logits learn at this multiple of the grid's learning rate, and without weight decay.
# Adam moves a parameter by about its learning rate per step whatever its gradient's size, and a
# logit's useful range (softmax units: a few) is not a feature's (the dense grid's start at 1e-4):
# at the grid's 1e-2 the softmax was still flat (mean largest probability 0.07 of 16 codes) after
# 300 steps of a 2D fit, so the hard forward's argmax stayed where the random start put it. Weight
# decay only flattens a softmax (which a shift of all logits leaves unchanged), and a logit's
# gradient (softmax Jacobian x codebook distance x a vertex's share of the batch) is small enough
# that 1e-6 x logit is of its size: on the sparse 3D grid it pulled every logit to 0. BENCHMARKS 7c.
VQAD_LOGITS_LR_SCALE = 10.0


def _optimizer(model: NeuralField, train: TrainConfig) -> torch.optim.Adam:
    """Adam over the grid (lr), the decoder (mlp_lr) and, for VQ-AD, the logits in a third group
    (lr x VQAD_LOGITS_LR_SCALE, no weight decay); the schedule scales every group alike."""
    grid = model.grid
    logits = list(grid.logits) if isinstance(grid, VqadGrid) else []
    logit_ids = {id(p) for p in logits}
    grid_params = [p for p in grid.parameters() if id(p) not in logit_ids]
    grid_ids = {id(p) for p in grid.parameters()}
    mlp_params = [p for p in model.parameters() if id(p) not in grid_ids]
    groups: list[dict[str, Any]] = [
        {"params": grid_params, "lr": train.lr},
        {"params": mlp_params, "lr": train.mlp_lr},
    ]
    if logits:
        groups.append({"params": logits, "lr": train.lr * VQAD_LOGITS_LR_SCALE, "weight_decay": 0.0})
    fused = True if train.fused_adam else None  # None: torch's default (foreach on a GPU)
    return torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15, weight_decay=train.weight_decay, fused=fused)


def _set_hard_forward(model: NeuralField, step: int, steps: int) -> None:
    """VQ-AD: soft forward first, then the hard forward for the configured last fraction."""
    cfg = model.config.grid
    if isinstance(model.grid, VqadGrid) and isinstance(cfg, VqadGridConfig):
        model.grid.hard = cfg.forward == "hard" or step >= steps * (1.0 - cfg.anneal_hard_fraction)


def _resume(model: NeuralField, train: TrainConfig, resume: dict[str, Any] | None) -> tuple[torch.optim.Adam, int]:
    """The optimizer and the first step: fresh, or the checkpoint's (model first: a sparse grid's
    size is part of its state, and the optimizer must hold the resized parameters)."""
    if resume is None:
        return _optimizer(model, train), 0
    if resume.get("config") != field_config_to_dict(model.config):
        raise ConfigError("resume checkpoint was made with a different field config")
    try:
        model.load_state_dict(resume["state"]["model"])
        opt = _optimizer(model, train)
        if resume["state"].get("optimizer") is not None:
            opt.load_state_dict(resume["state"]["optimizer"])
        return opt, int(resume["step"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"resume checkpoint does not fit this field: {str(e)[:300]}") from None


# Fractions of the run at which a sparse VQ-AD grid is re-fitted to the occupancy grid after its
# first allocation: the geometry sharpens over the first half, and the late re-fits drop the vertices
# of space found empty since (early occupancy is wide: 8% of lego's cells after 64 steps, a few % at
# the end), which is most of the file and, at high b, of the logits' memory.
SPARSE_REFIT_FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


def _first_allocation(train: TrainConfig) -> int:
    return max(train.occupancy_warmup, train.occupancy_update_every)


def sparse_allocation_due(step: int, frac_before: float, frac: float, train: TrainConfig) -> bool:
    """Whether a sparse VQ-AD grid is fitted to the occupancy grid before ``step``: first once empty
    space is known (``max(occupancy_warmup, occupancy_update_every)``), then each time the run's
    progress passes one of ``SPARSE_REFIT_FRACTIONS`` (from ``frac_before`` to ``frac``)."""
    first = _first_allocation(train)
    if step == first:
        return True
    return step > first and any(frac_before < f <= frac for f in SPARSE_REFIT_FRACTIONS)


def sparse_allocation_steps(train: TrainConfig) -> list[int]:
    """The steps ``sparse_allocation_due`` picks in a run of ``train.steps`` steps (no time budget)."""
    first = _first_allocation(train)
    if first >= train.steps:
        return []
    n = train.steps
    near = {s for f in SPARSE_REFIT_FRACTIONS for s in (math.floor(f * n), math.floor(f * n) + 1)}
    return sorted(s for s in near | {first} if 0 < s < n and sparse_allocation_due(s, (s - 1) / n, s / n, train))


def _carry_adam_state(
    opt: torch.optim.Optimizer, old: torch.nn.Parameter, new: torch.nn.Parameter, old_rows: Tensor, new_rows: Tensor
) -> None:
    """Swap a re-allocated parameter in the optimizer; kept rows keep their moments, new rows start at 0."""
    for group in opt.param_groups:
        group["params"] = [new if p is old else p for p in group["params"]]
    state = opt.state.pop(old, None)
    if not state:
        return
    moved: dict[str, Any] = {}
    for key, v in state.items():
        if isinstance(v, Tensor) and v.shape == old.shape:
            z = torch.zeros_like(new)
            z[new_rows] = v[old_rows]
            moved[key] = z
        else:
            moved[key] = v
    opt.state[new] = moved


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> int | None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device))
    return None


def _log_step(
    step: int,  # steps done (1-based)
    loss: torch.Tensor,
    train: TrainConfig,
    history: list[dict[str, float]],
    progress: Progress | None,
    force: bool = False,  # log this step whatever log_every says (the last step of a timed run)
    fraction: float | None = None,  # how far the run is (default step / steps; a timed run's by time)
    **extra: Callable[[], float],  # more history entries, evaluated only on logged steps
) -> None:
    """Every ``log_every`` steps and at the end: check the loss, record it, report progress."""
    if step % train.log_every and step != train.steps and not force:
        return
    lv = loss.item()
    if not math.isfinite(lv):
        raise NonFiniteError(f"training diverged at step {step} (loss {lv}); lower the learning rate")
    history.append({"step": step, "loss": lv, "psnr": mse_to_psnr(lv), **{k: f() for k, f in extra.items()}})
    if progress is not None:
        done = 1.0 if force else min(1.0, fraction if fraction is not None else step / train.steps)
        progress("train_field", done, {"loss": lv, "psnr": mse_to_psnr(lv)})


def fit_image(
    image: Tensor | np.ndarray,  # [H, W, 3] in [0, 1] (or uint8, or grey [H, W])
    config: FieldConfig,
    train: TrainConfig = TrainConfig(),
    *,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    resume: dict[str, Any] | None = None,
    on_checkpoint: CheckpointHook | None = None,
    checkpoint_every: int = 0,
) -> FitResult:
    """Fit a 2D field to one image. Defaults: TrainConfig() (2000 steps, batch 16384 pixels).

    ``on_checkpoint`` gets the run so far every ``checkpoint_every`` steps (0: never), not at the end."""
    config.validate()
    train.validate()
    if config.dims != 2:
        raise ConfigError("fit_image needs a FieldConfig with dims=2")
    img = as_image(image)
    dev = torch.device(device) if device is not None else img.device
    H, W, _ = img.shape
    target = img.reshape(-1, 3).to(dev)
    coords = pixel_coords(H, W, dev)
    model = NeuralField(config, seed=train.seed).to(dev)
    model.grid.fused_lookup = train.fused_grid
    opt, start = _resume(model, train, resume)
    gen = torch.Generator(device=dev).manual_seed(train.seed + start)
    n = target.shape[0]
    history: list[dict[str, float]] = []
    _peak_reset(dev)
    t0 = time.perf_counter()
    for step in range(start, train.steps):
        _set_hard_forward(model, step, train.steps)
        _refresh_candidates(model, opt, step, train)
        if train.batch_size >= n:
            xy, ref = coords, target
        else:
            sel = torch.randint(0, n, (train.batch_size,), device=dev, generator=gen)
            xy, ref = coords[sel], target[sel]
        loss = torch.mean((model.image(xy) - ref) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _tables_changed(model)
        _log_step(step + 1, loss, train, history, progress)
        if _checkpoint_due(step + 1, train, on_checkpoint, checkpoint_every):
            on_checkpoint(_result(model, step + 1, history, t0, dev, opt))  # type: ignore[misc]
    return _result(model, train.steps, history, t0, dev, opt)


def _refresh_candidates(model: NeuralField, opt: torch.optim.Optimizer, step: int, train: TrainConfig) -> None:
    """VQ-AD with fewer candidates than codes: re-choose them every candidate_refresh_every steps."""
    grid = model.grid
    if isinstance(grid, VqadGrid) and grid.uses_candidates and step > 0 and step % train.candidate_refresh_every == 0:
        grid.refresh_candidates(opt)


def _tables_changed(model: NeuralField) -> None:
    if isinstance(model.grid, VqadGrid):
        model.grid.tables_changed()


def _checkpoint_due(done: int, train: TrainConfig, hook: CheckpointHook | None, every: int) -> bool:
    return hook is not None and every > 0 and done % every == 0 and done < train.steps


def _result(
    model: NeuralField,
    step: int,
    history: list[dict[str, float]],
    t0: float,
    dev: torch.device,
    opt: torch.optim.Optimizer,
    occupancy: Tensor | None = None,
) -> FitResult:
    """The run up to ``step`` (history copied: the loop goes on appending)."""
    return FitResult(
        field=model,
        step=step,
        history=list(history),
        train_time_s=time.perf_counter() - t0,
        peak_memory_bytes=_peak(dev),
        optimizer_state=opt.state_dict(),
        occupancy=occupancy,
    )


@dataclass(frozen=True)
class SceneBox:
    """Axis-aligned scene bounds in world units; the field sees it as the unit cube.

    ``unbounded``: the box holds the object and all space outside it is contracted into a shell
    around it (``render.volume`` module doc), so backgrounds at any distance, as in photos that see
    a whole room, are part of the field; the box then fills the central half of the field's cube.
    """

    lo: tuple[float, float, float] = (-1.5, -1.5, -1.5)  # min corner (world units)
    hi: tuple[float, float, float] = (1.5, 1.5, 1.5)  # max corner (world units)
    unbounded: bool = False  # contract the space outside the box into the field

    @classmethod
    def from_cameras(cls, cameras: Sequence[Camera], unbounded: bool = False) -> SceneBox:
        """A cube centred on the point nearest to all optical axes, half the median camera distance
        wide: the box of photos taken around an object."""
        center, _ = scene_frame(list(cameras))
        dist = np.linalg.norm(np.stack([c.position for c in cameras]) - center, axis=1)
        half = 0.5 * float(np.median(dist)) if len(cameras) else math.nan
        if not math.isfinite(half) or half <= 1e-6:
            raise VqpressInputError("the cameras coincide; cannot derive a scene box from them")
        lo, hi = (tuple(float(v) for v in center + sign * half) for sign in (-1.0, 1.0))
        return cls(lo, hi, unbounded)  # type: ignore[arg-type]

    def tensor(self, device: torch.device | str) -> Tensor:  # [2, 3]
        t = torch.tensor([self.lo, self.hi], dtype=torch.float32, device=device)
        if not torch.isfinite(t).all() or not (t[1] > t[0]).all():
            raise ConfigError(f"scene box must be finite with hi > lo on every axis, got {self}")
        return t


def radiance_fn(model: NeuralField, aabb: Tensor, unbounded: bool = False):  # noqa: ANN201 - for render_rays
    """Adapter: world points -> the field's unit cube (``render.volume.unit_coords``)."""

    def fn(x: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        return model.radiance(unit_coords(x, aabb, unbounded), d)

    return fn


def _density_fn(model: NeuralField, aabb: Tensor, unbounded: bool):  # noqa: ANN202
    return lambda x: model.density(unit_coords(x, aabb, unbounded))


def compiled_field_fns(
    model: NeuralField, aabb: Tensor, unbounded: bool, backend: str
) -> tuple[Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], Callable[[Tensor], Tensor]]:
    """``radiance_fn`` and the density function with the grid lookup and the MLP ``torch.compile``d
    (``backend``, dynamic shapes: the sample count changes every step). The grid's
    ``lookup_inputs()`` are computed outside the compiled graph on every call (for VQ-AD, the table
    decode with its own autograd and chunk loop; the all-levels lookup's constants) and passed in
    as inputs; the graph only gathers."""
    grid = model.grid

    def radiance(x: Tensor, d: Tensor, tables: list[Tensor | None]) -> tuple[Tensor, Tensor]:
        return model.radiance(unit_coords(x, aabb, unbounded), d, tables)

    def density(x: Tensor, tables: list[Tensor | None]) -> Tensor:
        return model.density(unit_coords(x, aabb, unbounded), tables)

    # A fresh compile cache per run: dynamo keys its cache on the code object, so every fit's
    # closures add guarded entries to the same one, and past its recompile limit (8) a worker's
    # later fits would quietly run eager.
    torch._dynamo.reset()
    c_radiance = torch.compile(radiance, backend=backend, dynamic=True)
    c_density = torch.compile(density, backend=backend, dynamic=True)
    return (lambda x, d: c_radiance(x, d, grid.lookup_inputs())), (lambda x: c_density(x, grid.lookup_inputs()))


def fit_radiance(
    images: Sequence[Tensor | np.ndarray],  # each [H, W, 3] (or [H, W, 4]: alpha composited on background)
    cameras: Sequence[Camera],
    config: FieldConfig,
    train: TrainConfig = TrainConfig(),
    *,
    box: SceneBox = SceneBox(),
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    resume: dict[str, Any] | None = None,
    on_checkpoint: CheckpointHook | None = None,
    checkpoint_every: int = 0,
) -> FitResult:
    """Fit a 3D radiance field to posed photos (background colour in [0, 1], default white).

    A sparse VQ-AD grid is fitted to the occupancy grid when ``sparse_allocation_due``.
    ``on_checkpoint`` gets the run so far every ``checkpoint_every`` steps (0: never), not at the end."""
    config.validate()
    train.validate()
    if config.dims != 3:
        raise ConfigError("fit_radiance needs a FieldConfig with dims=3")
    if len(images) == 0 or len(images) != len(cameras):
        raise VqpressInputError(
            f"need one camera per image and at least one image, got {len(images)} images, {len(cameras)} cameras"
        )
    dev = torch.device(device) if device is not None else torch.device("cpu")
    bg = torch.tensor(background, dtype=torch.float32, device=dev)
    if bg.shape != (3,) or not torch.isfinite(bg).all():
        raise VqpressInputError(f"background must be 3 finite floats, got {background}")
    aabb = box.tensor(dev)
    origins, dirs, colors = [], [], []
    for i, (im, cam) in enumerate(zip(images, cameras, strict=True)):
        rgba = _as_rgba(im, f"image {i}")
        if rgba.shape[:2] != (cam.height, cam.width):
            raise VqpressInputError(
                f"image {i} is {rgba.shape[1]}x{rgba.shape[0]} but its camera is {cam.width}x{cam.height}"
            )
        o, d = camera_rays(cam, dev)
        rgba = rgba.to(dev).reshape(-1, 4)
        origins.append(o)
        dirs.append(d)
        colors.append(torch.cat([rgba[:, :3] * rgba[:, 3:], rgba[:, 3:]], -1))  # premultiplied rgb, alpha
    ray_o, ray_d, ray_rgba = torch.cat(origins), torch.cat(dirs), torch.cat(colors)
    del origins, dirs, colors
    # Random backgrounds only teach something where the photos are transparent somewhere.
    random_bg = train.random_background and bool((ray_rgba[:, 3] < 1.0).any())
    march = train.sampler == "march"
    march_step = float((aabb[1] - aabb[0]).norm()) / train.march_steps

    model = NeuralField(config, seed=train.seed).to(dev)
    model.grid.fused_lookup = train.fused_grid
    opt, start = _resume(model, train, resume)
    occ = OccupancyGrid(
        aabb,
        train.occupancy_resolution,
        train.samples_per_ray,
        train.occupancy_threshold,
        unbounded=box.unbounded,
        step_size=march_step if march else None,
    )
    if resume is not None and resume["state"].get("occupancy") is not None:
        occ.load(resume["state"]["occupancy"].to(dev))
    gen = torch.Generator(device=dev).manual_seed(train.seed + start)
    n = ray_o.shape[0]
    history: list[dict[str, float]] = []
    backend = train.torch_compile
    if backend == "auto":
        backend = "inductor" if dev.type == "cuda" else "none"
    if backend == "none":
        fn, density = radiance_fn(model, aabb, box.unbounded), _density_fn(model, aabb, box.unbounded)
    else:
        fn, density = compiled_field_fns(model, aabb, box.unbounded, backend)
    # Bounded: march every ray over the box diagonal's steps, known here, rather than wait each step
    # for the device to report the batch's longest ray (the same samples either way).
    max_steps = march_steps_bound(aabb, march_step) if march and train.march_box_bound and not box.unbounded else None
    grid = model.grid
    sparse = grid if isinstance(grid, VqadGrid) and any(grid.sparse) else None
    rays = min(train.batch_size, n)  # march: adapted to the sample budget every step
    samples = [0]  # march: samples evaluated in the last step
    extra: dict[str, Callable[[], float]] = {"occupied": occ.fraction}
    if march:
        extra["rays"] = lambda: float(rays)
        extra["samples"] = lambda: float(samples[0])
    if sparse is not None:
        extra["allocated_vertices"] = lambda: float(sum(sparse.allocated_vertices()))
    base_lrs = [g["lr"] for g in opt.param_groups]
    _peak_reset(dev)
    t0 = time.perf_counter()
    step = start
    frac_before = (start - 1) / train.steps  # the progress before the first step of this call
    while step < train.steps:
        frac = _progress_fraction(step, train, time.perf_counter() - t0)
        if frac >= 1.0:
            break
        for g, lr in zip(opt.param_groups, base_lrs, strict=True):
            g["lr"] = lr * lr_factor(step, frac, train)
        _set_hard_forward(model, int(frac * train.steps), train.steps)
        _refresh_candidates(model, opt, step, train)
        if step >= train.occupancy_warmup and (step - train.occupancy_warmup) % train.occupancy_update_every == 0:
            occ.update(density, generator=gen)
        if sparse is not None and sparse_allocation_due(step, frac_before, frac, train):
            for level, (old, old_rows, new_rows) in sparse.allocate(occ.mask, generator=gen).items():
                _carry_adam_state(opt, old, sparse.logits[level], old_rows, new_rows)
        frac_before = frac
        sel = torch.randint(0, n, (rays,), device=dev, generator=gen)
        ray_bg = torch.rand(rays, 3, device=dev, generator=gen) if random_bg else bg
        target = ray_rgba[sel, :3] + (1.0 - ray_rgba[sel, 3:]) * ray_bg
        if march:
            rgb, _, _, samples[0] = render_rays_marched(
                fn,
                density,
                ray_o[sel],
                ray_d[sel],
                aabb,
                march_step,
                occupancy=occ if step >= train.occupancy_warmup else None,
                early_stop_eps=train.early_stop_eps,
                background=ray_bg,
                generator=gen,
                unbounded=box.unbounded,
                max_steps=max_steps,
            )
        else:
            rgb, _, _ = render_rays(
                fn,
                ray_o[sel],
                ray_d[sel],
                aabb,
                train.samples_per_ray,
                occupancy=occ if step >= train.occupancy_warmup else None,
                background=ray_bg,
                generator=gen,
                unbounded=box.unbounded,
            )
        mse = torch.mean((rgb - target) ** 2)
        loss = mse if train.loss == "mse" else torch.nn.functional.huber_loss(rgb, target, delta=train.huber_delta)
        opt.zero_grad(set_to_none=True)
        if loss.requires_grad:  # no sample in occupied space: nothing to learn from this batch
            loss.backward()
            opt.step()
            _tables_changed(model)
        if march:
            scale = train.target_samples / samples[0] if samples[0] else 2.0
            rays = int(min(max(rays * min(max(scale, 0.5), 2.0), 64), min(n, 1 << 20)))
        step += 1
        done = _progress_fraction(step, train, time.perf_counter() - t0)
        _log_step(step, mse.detach(), train, history, progress, force=step == train.steps or done >= 1.0, fraction=done,
                  **extra)  # fmt: skip
        if _checkpoint_due(step, train, on_checkpoint, checkpoint_every):
            model.occupancy_mask = occ.mask.cpu()
            on_checkpoint(_result(model, step, history, t0, dev, opt, occ.density.detach().cpu()))  # type: ignore[misc]
    model.occupancy_mask = occ.mask.cpu()  # where the field was trained: what it is rendered through
    return _result(model, step, history, t0, dev, opt, occ.density.detach().cpu())


def _progress_fraction(step: int, train: TrainConfig, elapsed_s: float) -> float:
    """How far the run is: by steps, or by time when a time budget is set and runs out first."""
    frac = step / train.steps
    if train.time_budget_s > 0:
        frac = max(frac, elapsed_s / train.time_budget_s)
    return frac


def lr_factor(step: int, frac: float, train: TrainConfig) -> float:
    """Learning-rate multiplier: linear warm-up from 1% over lr_warmup steps, then (lr_decay
    "step") x 0.33 at each of 1/2, 3/4 and 9/10 of the run (``frac``, the fraction done)."""
    f = 1.0
    if train.lr_warmup > 0 and step < train.lr_warmup:
        f = 0.01 + 0.99 * step / train.lr_warmup
    if train.lr_decay == "step":
        f *= 0.33 ** sum(frac >= m for m in (0.5, 0.75, 0.9))
    return f


def _as_rgba(image: Tensor | np.ndarray, name: str) -> Tensor:  # -> [H, W, 4]
    """RGB images get alpha 1; RGBA keep theirs (composited on the background in training)."""
    if isinstance(image, np.ndarray | Tensor) and image.ndim == 3 and image.shape[-1] == 4:
        alpha = as_image(image[..., 3], name)[..., :1]
        return torch.cat([as_image(image[..., :3], name), alpha], -1)
    rgb = as_image(image, name)
    return torch.cat([rgb, torch.ones_like(rgb[..., :1])], -1)


@torch.no_grad()
def field_occupancy(
    model: NeuralField, box: SceneBox = SceneBox(), resolution: int = 128, march_steps: int = 1024, seed: int = 0
) -> OccupancyGrid:
    """The occupancy grid the marcher renders a field with: the one it was trained with when it
    carries it (``NeuralField.occupancy_mask``, at its own resolution), else one estimated from its
    density (``OccupancyGrid.fill``), for a field stored without one."""
    dev = next(iter(model.state_dict().values())).device
    aabb = box.tensor(dev)
    stored = model.occupancy_mask
    if stored is not None:
        occ = OccupancyGrid(aabb, int(stored.shape[0]), march_steps, unbounded=box.unbounded)
        occ.load_mask(stored)
        return occ
    occ = OccupancyGrid(aabb, resolution, march_steps, unbounded=box.unbounded)
    occ.fill(_density_fn(model, aabb, box.unbounded), generator=torch.Generator(device=dev).manual_seed(seed))
    return occ


@torch.no_grad()
def render_field(
    model: NeuralField,
    camera: Camera,
    *,
    box: SceneBox = SceneBox(),
    samples_per_ray: int = 64,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    march_steps: int | None = None,
    occupancy: OccupancyGrid | None = None,
    early_stop_eps: float = 1e-4,
    chunk: int = 1 << 13,
) -> Tensor:  # [H, W, 3]
    """Render a 3D field from one camera: stratum-centre samples without occupancy skipping, or,
    with ``march_steps`` (steps per box diagonal), the occupancy-grid marcher (``occupancy``, else
    ``field_occupancy``'s; pass one in to render many views), ``chunk`` rays at a time."""
    dev = next(iter(model.state_dict().values())).device
    aabb = box.tensor(dev)
    fn = radiance_fn(model, aabb, box.unbounded)
    if march_steps is None:
        return render_image(fn, camera, aabb, samples_per_ray, background=background, unbounded=box.unbounded)
    occ = occupancy if occupancy is not None else field_occupancy(model, box, march_steps=march_steps)
    march_step = float((aabb[1] - aabb[0]).norm()) / march_steps
    density = _density_fn(model, aabb, box.unbounded)
    return render_image_marched(
        fn,
        density,
        camera,
        aabb,
        march_step,
        occupancy=occ,
        early_stop_eps=early_stop_eps,
        background=background,
        chunk=chunk,
        unbounded=box.unbounded,
    )

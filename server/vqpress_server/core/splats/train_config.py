"""Training configuration for splats: what the user chose, kept apart from what training does.

Torch-free on purpose: the gRPC process validates a Train request with the very dataclasses the
worker trains with (``SplatTrainConfig.from_dict``) without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from ..errors import ConfigError

MAX_TRAIN_CODEBOOK = 1 << 16  # largest codebook QAT accepts (re-assignment cost grows with it)
MAX_KMEANS_ITERS = 100
MAX_STEPS = 1_000_000
MAX_FINETUNE_STEPS = 100_000
QAT_MODES = ("compact3d", "finetune")
MAX_GAUSSIANS = 20_000_000  # initial Gaussians accepted (random box or SfM points)
SCHEDULES = ("full", "fast")  # full: the 30k-step 3DGS/Compact3D schedule; fast: the same scaled to 7k steps
FAST_STEPS = 7000
INITS = ("auto", "points", "random", "object", "camera_spread")
_STEP_FIELDS = ("sh_degree_interval", "refine_start", "refine_stop", "refine_every", "reset_every")
_QAT_STEP_FIELDS = ("start_step", "freeze_step", "reassign_every", "prune_every", "prune_start", "prune_stop")
# Periods scale_schedule never shortens below these (steps): a densification step needs the image-plane
# gradients of ~100 views, an opacity reset ~3000 steps to recover from, a k-means re-assignment ~100
# steps of training to pay for itself, and a prune a few hundred steps of opacity regularization.
PERIOD_FLOORS = {
    "refine_every": 100,
    "reset_every": 3000,
    "reassign_every": 100,
    "prune_every": 500,
}
REFINE_START_FLOOR = 500  # densification starts at min(this, steps // 10) at the earliest (steps)


@dataclass(frozen=True)
class QatConfig:
    """Quantization-aware training. Defaults: the Compact3D release for a 30k-step schedule."""

    enabled: bool = True  # False trains plain 3DGS (no codebooks, no opacity regularization or pruning)
    # finetune (the default): plain training to the end of the schedule, then the post-hoc quantizer
    # (QuantizeConfig.preset("default"), weighted by view importance on the training cameras) and
    # finetune_steps of training through the quantized scene with its indices fixed
    # (core/splats/finetune.py); the codebook sizes and step fields below do not apply to it.
    # Measured on lego at 30k: 0.45 dB under the plain scene at 25.8x (BENCHMARKS.md 6b).
    # compact3d: codebooks through the straight-through forward from start_step on (Compact3D, the
    # fields below); measured at 7k: 0.87 dB under plain at 25.9x.
    mode: Literal["compact3d", "finetune"] = "finetune"
    finetune_steps: int | None = None  # mode "finetune": steps after the schedule, 1..100000; None: steps // 10
    start_step: int = 15_000  # step of the first k-means; the STE forward starts here (steps)
    freeze_step: int = 25_000  # no re-assignment from this step on, only centroid updates (steps)
    reassign_every: int = 100  # full re-assignment period while not frozen (steps)
    kmeans_iters: int = 10  # Lloyd iterations per (re-)assignment, 0..100
    dc_codebook: int = 4096  # entries of the SH DC (color) codebook, 1..65536
    sh_codebook: int = 512  # entries of the SH rest codebook, 1..65536 (unused at SH degree 0)
    scale_codebook: int = 4096  # entries of the log-scale codebook, 1..65536
    rot_codebook: int = 4096  # entries of the rotation codebook, 1..65536
    opacity_reg: float = 1e-7  # weight of the summed opacity (sigmoid) in the loss, inside the prune window
    prune_opacity: float = 0.005  # Gaussians with sigmoid(opacity) below this are pruned (0..1)
    prune_every: int = 1000  # pruning period inside the window (steps)
    prune_start: int = 15_000  # opacity regularization and pruning start here (steps)
    prune_stop: int = 20_000  # ... and stop here (steps; the last prune is at or before it)

    def codebook_sizes(self) -> dict[str, int]:
        return {
            "dc": self.dc_codebook,
            "sh": self.sh_codebook,
            "scale": self.scale_codebook,
            "rot": self.rot_codebook,
        }

    def validate(self, steps: int) -> None:
        """Raise ``ConfigError`` naming the first bad field (``steps``: the training length)."""

        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not isinstance(self.enabled, bool):
            raise ConfigError(f"qat.enabled must be a boolean, got {self.enabled!r}")
        if self.mode not in QAT_MODES:
            raise ConfigError(f"qat.mode must be one of {', '.join(QAT_MODES)}, got {self.mode!r}")
        if self.finetune_steps is not None and (
            not is_int(self.finetune_steps) or not 1 <= self.finetune_steps <= MAX_FINETUNE_STEPS
        ):
            raise ConfigError(
                f"qat.finetune_steps must be an integer in 1..{MAX_FINETUNE_STEPS}, got {self.finetune_steps!r}"
            )
        for name, size in self.codebook_sizes().items():
            if not is_int(size) or not 1 <= size <= MAX_TRAIN_CODEBOOK:
                raise ConfigError(f"qat.{name}_codebook must be an integer in 1..{MAX_TRAIN_CODEBOOK}, got {size!r}")
        if not is_int(self.kmeans_iters) or not 0 <= self.kmeans_iters <= MAX_KMEANS_ITERS:
            raise ConfigError(f"qat.kmeans_iters must be an integer in 0..{MAX_KMEANS_ITERS}, got {self.kmeans_iters}")
        for name in ("reassign_every", "prune_every"):
            v = getattr(self, name)
            if not is_int(v) or v < 1:
                raise ConfigError(f"qat.{name} must be a positive integer (steps), got {v!r}")
        for name in ("start_step", "freeze_step", "prune_start", "prune_stop"):
            v = getattr(self, name)
            if not is_int(v) or v < 0:
                raise ConfigError(f"qat.{name} must be a non-negative integer (steps), got {v!r}")
        if self.enabled and self.mode == "compact3d" and self.start_step >= steps:
            raise ConfigError(
                f"qat.start_step ({self.start_step}) must be below steps ({steps}); "
                "lower it, or use scale_schedule(steps) to scale the whole schedule"
            )
        if self.freeze_step < self.start_step:
            raise ConfigError(f"qat.freeze_step ({self.freeze_step}) must not be before start_step ({self.start_step})")
        if self.prune_stop < self.prune_start:
            raise ConfigError(f"qat.prune_stop ({self.prune_stop}) must not be before prune_start ({self.prune_start})")
        if not isinstance(self.opacity_reg, (int, float)) or not 0.0 <= self.opacity_reg < 1.0:
            raise ConfigError(f"qat.opacity_reg must be a number in [0, 1), got {self.opacity_reg!r}")
        if not isinstance(self.prune_opacity, (int, float)) or not 0.0 <= self.prune_opacity < 1.0:
            raise ConfigError(f"qat.prune_opacity must be a number in [0, 1), got {self.prune_opacity!r}")

    def finetune_steps_for(self, steps: int) -> int:
        """Steps of the "finetune" mode's fine-tune after a schedule of ``steps``: as set, else a tenth."""
        return self.finetune_steps if self.finetune_steps is not None else max(1, steps // 10)

    @property
    def in_loop(self) -> bool:
        """Whether codebooks, opacity regularization and pruning act during the schedule (compact3d)."""
        return self.enabled and self.mode == "compact3d"

    def in_prune_window(self, step: int) -> bool:
        return self.in_loop and self.prune_start <= step < self.prune_stop

    def prunes_at(self, step: int) -> bool:
        """Prune after this step's update (steps prune_start + k * prune_every, up to prune_stop)."""
        return (
            self.in_loop
            and self.prune_start < step <= self.prune_stop
            and (step - self.prune_start) % self.prune_every == 0
        )


@dataclass(frozen=True)
class SplatTrainConfig:
    """How to train. Defaults: 3DGS / Compact3D for 30k steps (``preset("full")``); ``preset("fast")``
    is the same schedule scaled to 7k steps, and ``scale_schedule(steps)`` scales it to any length."""

    schedule: Literal["full", "fast"] = "full"  # the preset this config was built from (recorded in reports)
    steps: int = 30_000  # optimizer steps, one photo each, 1..1e6
    seed: int = 0  # seeds initialization, photo order and k-means
    sh_degree: int = 3  # final SH degree, 0..3
    sh_degree_interval: int = 1000  # the SH degree rises by one every this many steps
    ssim_lambda: float = 0.2  # weight of the D-SSIM term in the loss (0..1)
    # auto: the dataset's SfM points if any, else a random box chosen from the cameras (framing.py): fitted to
    # the object when the cameras surround one ("object"), else init_extent scene scales ("camera_spread");
    # random: that box even when points exist; object / camera_spread: force that box rule
    init: Literal["auto", "points", "random", "object", "camera_spread"] = "auto"
    init_num_points: int = 100_000  # Gaussians of the random initialization
    init_extent: float = 3.0  # half-size of the "camera_spread" rule's random box, in scene scales (gsplat's)
    init_opacity: float = 0.1  # initial opacity (0..1)
    init_scale: float = 1.0  # initial scale, times the mean distance to the 3 nearest neighbours
    means_lr: float = 1.6e-4  # position learning rate at step 0 (times the scene scale)
    means_lr_final: float = 1.6e-6  # ... decayed exponentially to this at the last step
    scales_lr: float = 5e-3  # log-scale learning rate
    quats_lr: float = 1e-3  # quaternion learning rate
    opacities_lr: float = 5e-2  # opacity-logit learning rate
    sh0_lr: float = 2.5e-3  # SH DC learning rate
    shN_lr: float = 2.5e-3 / 20  # SH rest learning rate
    strategy: Literal["default", "mcmc", "none"] = "default"  # densification on CUDA; the CPU never densifies
    refine_start: int = 500  # densification starts after this step
    refine_stop: int = 15_000  # ... and stops at this step
    refine_every: int = 100  # densification period (steps)
    reset_every: int = 3000  # opacity reset period of the default strategy, inside the refine window (steps)
    reset_on_white: bool = True  # 3DGS: one more opacity reset when densification starts, for NeRF-synthetic
    # objects on a white background
    grow_grad2d: float = 2e-4  # image-plane gradient above which the default strategy grows a Gaussian
    cap_max: int = 1_000_000  # most Gaussians the MCMC strategy grows to
    checkpoint_every: int = 1000  # steps between checkpoints (not part of the schedule)
    qat: QatConfig = field(default_factory=QatConfig)

    @classmethod
    def preset(cls, name: str) -> SplatTrainConfig:
        """``full``: 3DGS / Compact3D, 30k steps (the default); ``fast``: the same schedule in 7k steps."""
        if name == "full":
            return cls()
        if name == "fast":
            return replace(cls().scale_schedule(FAST_STEPS), schedule="fast")
        raise ConfigError(f"unknown schedule {name!r} (expected one of {', '.join(SCHEDULES)})")

    def scale_schedule(self, steps: int) -> SplatTrainConfig:
        """The same schedule for ``steps`` steps: every step count scaled by ``steps / self.steps``.

        Event times (refine_start/stop, sh_degree_interval, qat start/freeze/prune window) scale;
        periods do not drop below ``PERIOD_FLOORS`` (densify every >= 100 steps, opacity reset every
        >= 3000, k-means re-assignment every >= 100, QAT prune every >= 500): shorter periods starve
        the statistics they act on (densifying every few steps made lego collapse to 10 dB).
        Densification starts at ``min(500, steps // 10)`` at the earliest, and the SH degree rises at
        most every ``steps // 6`` steps so a short run still reaches its degree before QAT starts.
        checkpoint_every is kept."""
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
            raise ConfigError(f"steps must be an integer in 1..{MAX_STEPS}, got {steps!r}")
        f = steps / self.steps

        def sc(name: str, v: int) -> int:
            scaled = round(v * f)
            if name == "prune_every":  # at least one prune inside the (scaled) window
                window = round(self.qat.prune_stop * f) - round(self.qat.prune_start * f)
                return max(scaled, min(v, PERIOD_FLOORS[name], window), 1)
            if name in PERIOD_FLOORS:
                return max(scaled, min(v, PERIOD_FLOORS[name]), 1)
            if name == "sh_degree_interval":
                return max(scaled, min(v, steps // 6), 1)
            if name == "refine_start":
                return max(scaled, min(v, REFINE_START_FLOOR, steps // 10))
            return scaled

        qat = replace(self.qat, **{n: sc(n, getattr(self.qat, n)) for n in _QAT_STEP_FIELDS})
        return replace(self, steps=steps, qat=qat, **{n: sc(n, getattr(self, n)) for n in _STEP_FIELDS})

    def validate(self) -> SplatTrainConfig:
        """Raise ``ConfigError`` naming the first out-of-range field; returns self."""

        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: object) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        if not is_int(self.steps) or not 1 <= self.steps <= MAX_STEPS:
            raise ConfigError(f"steps must be an integer in 1..{MAX_STEPS}, got {self.steps!r}")
        if not is_int(self.seed) or not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not is_int(self.sh_degree) or not 0 <= self.sh_degree <= 3:
            raise ConfigError(f"sh_degree must be an integer in 0..3, got {self.sh_degree!r}")
        for name in ("sh_degree_interval", "refine_every", "reset_every", "checkpoint_every"):
            v = getattr(self, name)
            if not is_int(v) or v < 1:
                raise ConfigError(f"{name} must be a positive integer (steps), got {v!r}")
        for name in ("refine_start", "refine_stop"):
            v = getattr(self, name)
            if not is_int(v) or v < 0:
                raise ConfigError(f"{name} must be a non-negative integer (steps), got {v!r}")
        if not is_num(self.ssim_lambda) or not 0.0 <= self.ssim_lambda <= 1.0:
            raise ConfigError(f"ssim_lambda must be a number in [0, 1], got {self.ssim_lambda!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if not isinstance(self.reset_on_white, bool):
            raise ConfigError(f"reset_on_white must be a boolean, got {self.reset_on_white!r}")
        if not is_int(self.init_num_points) or not 1 <= self.init_num_points <= MAX_GAUSSIANS:
            raise ConfigError(f"init_num_points must be an integer in 1..{MAX_GAUSSIANS}, got {self.init_num_points!r}")
        if not is_num(self.init_opacity) or not 0.0 < self.init_opacity < 1.0:
            raise ConfigError(f"init_opacity must be a number in (0, 1), got {self.init_opacity!r}")
        for name in ("init_extent", "init_scale", "grow_grad2d") + tuple(n for n in _lr_names()):
            v = getattr(self, name)
            if not is_num(v) or not 0.0 < v < 1e6:
                raise ConfigError(f"{name} must be a positive finite number, got {v!r}")
        if self.strategy not in ("default", "mcmc", "none"):
            raise ConfigError(f"strategy must be one of default, mcmc, none, got {self.strategy!r}")
        if not is_int(self.cap_max) or not 1 <= self.cap_max <= MAX_GAUSSIANS:
            raise ConfigError(f"cap_max must be an integer in 1..{MAX_GAUSSIANS}, got {self.cap_max!r}")
        if not isinstance(self.qat, QatConfig):
            raise ConfigError(f"qat must be a QatConfig, got {type(self.qat).__name__}")
        self.qat.validate(self.steps)
        return self

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> SplatTrainConfig:
        """From a JSON dict of fields (``qat`` a nested dict); unknown fields -> ConfigError. Validated.

        ``schedule`` picks the preset the other fields change ("full" when absent); a ``steps`` given
        without the step fields scales that preset's schedule to it."""
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise ConfigError(f"config must be an object of SplatTrainConfig fields, got {type(d).__name__}")
        values = dict(d)
        qat_values = values.pop("qat", None) or {}
        if not isinstance(qat_values, dict):
            raise ConfigError(f"qat must be an object of QatConfig fields, got {type(qat_values).__name__}")
        _check_known(values, cls, "")
        _check_known(qat_values, QatConfig, "qat.")
        schedule = values.get("schedule", "full")
        if schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        base = cls.preset(schedule)
        explicit = (set(values) & set(_STEP_FIELDS)) | (set(qat_values) & set(_QAT_STEP_FIELDS))
        if "steps" in values and not explicit:
            # any length is the full schedule scaled to it (a fast run of 7000 steps equals preset("fast"))
            if _is_step_count(values["steps"]):
                base = replace(cls().scale_schedule(values["steps"]), schedule=schedule)
        try:
            return replace(base, **values, qat=replace(base.qat, **qat_values)).validate()
        except TypeError as e:
            raise ConfigError(f"bad config: {e}") from None


def _lr_names() -> tuple[str, ...]:
    return ("means_lr", "means_lr_final", "scales_lr", "quats_lr", "opacities_lr", "sh0_lr", "shN_lr")


def _is_step_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_STEPS


def _check_known(values: dict[str, Any], cls: type, prefix: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config field(s) {[prefix + u for u in unknown]}; known: {sorted(known)}")

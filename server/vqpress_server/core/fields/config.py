"""Configuration of neural fields: what was chosen, kept apart from training state.

A field is a multi-resolution feature grid followed by a small MLP decoder. The grid kind is one
of three alternatives (a ``Union`` dispatched with ``isinstance`` + ``assert_never``):

- ``DenseGridConfig``: every vertex of every level stores ``features`` floats (the uncompressed
  baseline).
- ``VqadGridConfig``: VQ-AD (Takikawa et al. 2022). Every vertex stores trainable logits
  ``C [m, 2^bits]`` into a per-level codebook ``D [2^bits, features]``; after training only
  ``argmax C`` (``bits`` bits per vertex) and ``D`` are kept.
- ``HashGridConfig``: an Instant-NGP style spatial hash per level with ``2^log2_table_size`` rows.

Levels grow geometrically from ``base_resolution`` to ``max_resolution`` vertices per axis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, assert_never

from ..errors import ConfigError

Combine = Literal["sum", "concat"]


def _check_grid_common(levels: int, base: int, top: int, features: int) -> None:
    if not 1 <= levels <= 16:
        raise ConfigError(f"grid levels must be in [1, 16], got {levels}")
    if not 2 <= base <= 4096 or not base <= top <= 4096:
        raise ConfigError(
            f"grid resolutions must satisfy 2 <= base_resolution <= max_resolution <= 4096, "
            f"got base_resolution={base}, max_resolution={top}"
        )
    if not 1 <= features <= 64:
        raise ConfigError(f"grid features per level must be in [1, 64], got {features}")


@dataclass(frozen=True)
class DenseGridConfig:
    """Uncompressed multi-resolution grid (the reference the compressed grids are measured against)."""

    levels: int = 4  # number of resolution levels
    base_resolution: int = 16  # vertices per axis at the coarsest level
    max_resolution: int = 128  # vertices per axis at the finest level
    features: int = 8  # k: feature channels per vertex and level
    combine: Combine = "sum"  # "sum": levels add up (k outputs); "concat": L*k outputs
    init_std: float = 0.1  # std of the normal initialisation of the features

    def validate(self) -> None:
        _check_grid_common(self.levels, self.base_resolution, self.max_resolution, self.features)
        if self.combine not in ("sum", "concat"):
            raise ConfigError(f"combine must be 'sum' or 'concat', got {self.combine!r}")


@dataclass(frozen=True)
class VqadGridConfig:
    """VQ-AD grid: per level a codebook D [2^bits, features] and per-vertex logits C [m, 2^bits].

    ``forward`` selects the training forward: "soft" uses softmax(C) @ D; "hard" uses
    D[argmax C] with softmax gradients (straight-through). The default is "hard", measured on the
    baked field: fitting the 128x128 astronaut crop (3 levels 8..64, k = 8, 150 Adam steps) it
    reached 28.2 dB against 25.9 dB for "soft" at b = 4; on the lego radiance field (sparse, 1,500
    steps, H100) 23.06 against 22.72 dB at b = 4 and 23.44 against 23.02 dB at b = 8. It also
    trains with the field that is baked, so bake() loses nothing. With "soft",
    ``anneal_hard_fraction`` switches to the hard forward for the last part of training so that
    the baked field matches.

    ``sparse`` (radiance fields, the default; image fields ignore it) is the paper's sparse grid:
    levels with at least ``sparse_min_resolution`` vertices per axis hold logits only for the
    vertices of cells near occupied space, so the 2^b-wide logits and their optimizer state scale
    with the surface, not the volume. Those levels start empty, are allocated from the occupancy
    grid once empty space is known (after ``TrainConfig.occupancy_warmup`` steps) and re-fitted to
    it a few times after; outside them the field is empty (density 0). The file stores one bit per
    vertex for the allocation plus b bits per allocated vertex. On lego (4 levels to 64^3, b = 4,
    1,500 steps, H100) it scored 23.12 dB in a 59 KiB file against 21.79 dB in 163 KiB for the
    dense grid, with 12% less peak memory; where occupancy finds no empty space (photos that see
    the whole room) it allocates every vertex and trains like the dense grid.

    ``candidates`` bounds the logits: a vertex scores only the M = min(candidates, 2^b) codes
    nearest (in feature space) to its current choice, re-chosen every
    ``TrainConfig.candidate_refresh_every`` steps, so logits and their optimizer state are
    [m, M] whatever b is (b = 8 with all 256 codes scored held 12x the memory of b = 4). With
    M = 2^b (b <= 4 at the default) this is exactly the paper's softmax over all codes.
    """

    levels: int = 4  # number of resolution levels
    base_resolution: int = 16  # vertices per axis at the coarsest level
    max_resolution: int = 128  # vertices per axis at the finest level
    features: int = 8  # k: codebook vector length
    bits: int = 4  # b: codebook size 2^b per level, 1..10
    combine: Combine = "sum"  # "sum" or "concat" across levels
    forward: Literal["soft", "hard"] = "hard"  # training forward, see the class docstring
    anneal_hard_fraction: float = 0.2  # "soft" only: last fraction of steps trained with the hard forward
    init_std: float = 0.1  # std of the normal initialisation of D (logits C start at std 0.01)
    sparse: bool = True  # 3D only: fine levels keep logits only near occupied space (see below)
    sparse_min_resolution: int = 32  # levels with at least this many vertices per axis are the sparse ones
    candidates: int = 16  # M: codes each vertex's logits score (0: all 2^b), see below

    def validate(self) -> None:
        _check_grid_common(self.levels, self.base_resolution, self.max_resolution, self.features)
        if not isinstance(self.sparse, bool):
            raise ConfigError(f"VQ-AD sparse must be true or false, got {self.sparse!r}")
        if not 2 <= self.sparse_min_resolution <= 4096:
            raise ConfigError(f"sparse_min_resolution must be in [2, 4096], got {self.sparse_min_resolution}")
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 10:
            raise ConfigError(f"VQ-AD bits must be an integer in [1, 10], got {self.bits!r}")
        if self.combine not in ("sum", "concat"):
            raise ConfigError(f"combine must be 'sum' or 'concat', got {self.combine!r}")
        if self.forward not in ("soft", "hard"):
            raise ConfigError(f"VQ-AD forward must be 'soft' or 'hard', got {self.forward!r}")
        if not 0.0 <= self.anneal_hard_fraction <= 1.0:
            raise ConfigError(f"anneal_hard_fraction must be in [0, 1], got {self.anneal_hard_fraction}")
        if (
            isinstance(self.candidates, bool)
            or not isinstance(self.candidates, int)
            or not (self.candidates == 0 or 2 <= self.candidates <= 1024)
        ):
            raise ConfigError(
                f"VQ-AD candidates must be 0 (all codes) or an integer in [2, 1024], got {self.candidates!r}"
            )


@dataclass(frozen=True)
class HashGridConfig:
    """Instant-NGP hash grid: levels whose vertex count exceeds 2^log2_table_size are hashed."""

    levels: int = 4  # number of resolution levels
    base_resolution: int = 16  # vertices per axis at the coarsest level
    max_resolution: int = 128  # vertices per axis at the finest level
    features: int = 8  # k: feature channels per table row
    log2_table_size: int = 14  # T = 2^log2_table_size rows per level, 4..24
    combine: Combine = "sum"  # "sum" or "concat" across levels
    init_std: float = 0.1  # std of the normal initialisation of the tables

    def validate(self) -> None:
        _check_grid_common(self.levels, self.base_resolution, self.max_resolution, self.features)
        if not 4 <= self.log2_table_size <= 24:
            raise ConfigError(f"log2_table_size must be in [4, 24], got {self.log2_table_size}")
        if self.combine not in ("sum", "concat"):
            raise ConfigError(f"combine must be 'sum' or 'concat', got {self.combine!r}")


GridConfig = DenseGridConfig | VqadGridConfig | HashGridConfig


@dataclass(frozen=True)
class DecoderConfig:
    """The MLP after the grid. 2D: features -> rgb. 3D: features -> density + geometry features,
    then (geometry features, spherical-harmonics direction encoding) -> rgb."""

    hidden: int = 64  # hidden width
    layers: int = 2  # hidden layers of the (density) MLP, >= 1
    color_layers: int = 1  # hidden layers of the 3D color MLP, >= 1
    geo_features: int = 15  # 3D: features passed from the density MLP to the color MLP
    dir_degree: int = 2  # 3D: spherical-harmonics degree of the direction encoding, 0..3 (3: Instant-NGP's 16 terms)

    def validate(self) -> None:
        if not 1 <= self.hidden <= 1024:
            raise ConfigError(f"decoder hidden width must be in [1, 1024], got {self.hidden}")
        if not 1 <= self.layers <= 8 or not 1 <= self.color_layers <= 8:
            raise ConfigError("decoder layers and color_layers must be in [1, 8]")
        if not 1 <= self.geo_features <= 256:
            raise ConfigError(f"geo_features must be in [1, 256], got {self.geo_features}")
        if not 0 <= self.dir_degree <= 3:
            raise ConfigError(f"dir_degree must be in [0, 3], got {self.dir_degree}")


@dataclass(frozen=True)
class FieldConfig:
    """A whole field: dimensionality (2 = image, 3 = radiance field), grid and decoder."""

    dims: Literal[2, 3] = 2  # 2: rgb(x, y); 3: density and rgb(x, y, z, direction)
    grid: GridConfig = field(default_factory=VqadGridConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def validate(self) -> None:
        if self.dims not in (2, 3):
            raise ConfigError(f"field dims must be 2 or 3, got {self.dims!r}")
        if not isinstance(self.grid, DenseGridConfig | VqadGridConfig | HashGridConfig):
            raise ConfigError(f"unknown grid config {type(self.grid).__name__}")
        self.grid.validate()
        self.decoder.validate()


TORCH_COMPILE_BACKENDS = ("none", "auto", "inductor", "aot_eager")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by the 2D and 3D fits."""

    steps: int = 2000  # optimizer steps
    lr: float = 1e-2  # Adam learning rate of the grid (codebooks, logits, tables)
    mlp_lr: float = 1e-2  # Adam learning rate of the decoder
    batch_size: int = 16384  # pixels (2D) or rays (3D) per step
    samples_per_ray: int = 64  # 3D: stratified samples per ray inside the scene box
    occupancy_resolution: int = 64  # 3D: occupancy grid cells per axis
    occupancy_update_every: int = 16  # 3D: steps between occupancy-grid updates
    occupancy_warmup: int = 256  # 3D: steps before empty space is skipped
    occupancy_threshold: float = 0.01  # 3D: a cell is occupied if alpha over one sample step exceeds this
    log_every: int = 50  # steps between progress reports
    seed: int = 0  # RNG seed of initialisation and batch sampling
    # 3D sampler. "stratified": samples_per_ray stratified samples over the box per ray, batch_size
    # rays. "march": Instant-NGP's marcher (render.volume.march_rays): steps of the box diagonal /
    # march_steps through occupied cells only, samples behind transmittance early_stop_eps dropped, and
    # the rays per step adapted so that about target_samples samples are evaluated.
    sampler: str = "stratified"  # "stratified" | "march"
    march_steps: int = 1024  # march: steps along the box diagonal (lego's ±1.5 box: 5 mm steps)
    target_samples: int = 1 << 18  # march: samples per step the ray count is adapted to
    early_stop_eps: float = 1e-4  # march: samples where the transmittance fell below this are dropped
    # Schedule: learning rates ramp linearly from 1% over lr_warmup steps, then ("step") drop by
    # 0.33 at 1/2, 3/4 and 9/10 of the run; Adam's L2 weight_decay on every parameter.
    lr_warmup: int = 0  # steps of linear warm-up
    lr_decay: str = "none"  # "none" | "step"
    weight_decay: float = 0.0  # Adam L2 penalty
    loss: str = "mse"  # "mse" | "huber" (smooth L1 with huber_delta; Instant-NGP's choice)
    huber_delta: float = 0.1  # huber: error where the loss turns from quadratic to linear
    random_background: bool = False  # 3D, photos with alpha: a fresh random background per ray and step
    time_budget_s: float = 0.0  # > 0: stop after this many seconds; the schedule follows elapsed time
    candidate_refresh_every: int = 16  # VQ-AD with candidates < 2^b: steps between re-choosing each vertex's codes
    # Speed: each computes what the default does (same samples; same losses to float tolerance), at a
    # cost or gain that only a GPU shows. march_box_bound: march every ray over the steps of the box
    # diagonal (``render.volume.march_steps_bound``) rather than the batch's longest ray, so the step
    # never waits for the device to report that length (bounded boxes; more candidate tests).
    # fused_grid: the grid lookup of all levels at once (``MultiResGrid.features_and_support_fused``:
    # one gather, gradients by index_add_) instead of a loop of small kernels per level.
    # fused_adam: torch's fused Adam kernel (one launch for all parameters). torch_compile: the
    # backend that ``torch.compile``s the grid lookup + MLP with dynamic shapes ("inductor" fuses the
    # per-level kernels; "aot_eager" traces without code generation, for checks; "auto": inductor on
    # a CUDA device, none elsewhere), VQ-AD's table decode staying outside the compiled graph; its
    # compile time is spent in the first steps. The radiance preset (``instant_ngp_train``) turns all
    # of them on: 3.5-5.6x the steps per second of the options off on the H200 (BENCHMARKS 7f).
    march_box_bound: bool = False  # march: marched steps bounded by the box diagonal, no read-back
    fused_grid: bool = False  # all grid levels in one lookup
    fused_adam: bool = False  # Adam(fused=True)
    torch_compile: str = "none"  # "none" | "auto" | "inductor" | "aot_eager"

    def validate(self) -> None:
        if not 1 <= self.steps <= 10_000_000:
            raise ConfigError(f"steps must be in [1, 1e7], got {self.steps}")
        if not (0 < self.lr < 10 and 0 < self.mlp_lr < 10):
            raise ConfigError(f"learning rates must be in (0, 10), got {self.lr}, {self.mlp_lr}")
        if not 1 <= self.batch_size <= 1 << 24:
            raise ConfigError(f"batch_size must be in [1, 2^24], got {self.batch_size}")
        if not 1 <= self.samples_per_ray <= 4096:
            raise ConfigError(f"samples_per_ray must be in [1, 4096], got {self.samples_per_ray}")
        if not 1 <= self.occupancy_resolution <= 512:
            raise ConfigError(f"occupancy_resolution must be in [1, 512], got {self.occupancy_resolution}")
        if self.occupancy_update_every < 1 or self.occupancy_warmup < 0 or self.log_every < 1:
            raise ConfigError("occupancy_update_every and log_every must be >= 1, occupancy_warmup >= 0")
        if self.sampler not in ("stratified", "march"):
            raise ConfigError(f"sampler must be 'stratified' or 'march', got {self.sampler!r}")
        if not 1 <= self.march_steps <= 1 << 16:
            raise ConfigError(f"march_steps must be in [1, 65536], got {self.march_steps}")
        if not 1 << 8 <= self.target_samples <= 1 << 26:
            raise ConfigError(f"target_samples must be in [2^8, 2^26], got {self.target_samples}")
        if not 0.0 <= self.early_stop_eps < 1.0:
            raise ConfigError(f"early_stop_eps must be in [0, 1), got {self.early_stop_eps}")
        if self.lr_warmup < 0 or self.lr_decay not in ("none", "step"):
            raise ConfigError(
                f"lr_warmup must be >= 0 and lr_decay 'none' or 'step', got {self.lr_warmup}, {self.lr_decay!r}"
            )
        if not 0.0 <= self.weight_decay < 1.0:
            raise ConfigError(f"weight_decay must be in [0, 1), got {self.weight_decay}")
        if self.loss not in ("mse", "huber") or not 0.0 < self.huber_delta <= 10.0:
            raise ConfigError(
                f"loss must be 'mse' or 'huber' with huber_delta in (0, 10], got {self.loss!r}, {self.huber_delta}"
            )
        if not 1 <= self.candidate_refresh_every <= 1_000_000:
            raise ConfigError(f"candidate_refresh_every must be in [1, 1e6], got {self.candidate_refresh_every}")
        if self.torch_compile not in TORCH_COMPILE_BACKENDS:
            raise ConfigError(f"torch_compile must be one of {TORCH_COMPILE_BACKENDS}, got {self.torch_compile!r}")
        if not all(isinstance(v, bool) for v in (self.march_box_bound, self.fused_grid, self.fused_adam)):
            raise ConfigError("march_box_bound, fused_grid and fused_adam must be booleans")
        if not 0.0 <= self.time_budget_s <= 1e6:
            raise ConfigError(f"time_budget_s must be in [0, 1e6], got {self.time_budget_s}")


def instant_ngp_train(steps: int = 20_000, time_budget_s: float = 0.0) -> TrainConfig:
    """Instant-NGP's (and nerfacc's) radiance-field schedule: the occupancy-grid marcher at 1024
    steps per box diagonal, 2^18 samples a step, a 128^3 occupancy grid updated every 16 steps,
    Adam at 1e-2 with 100 warm-up steps, step decay and weight decay 1e-6, Huber loss, random
    backgrounds behind transparent photos; every speed option on (the lookup compiled on a GPU)."""
    return TrainConfig(
        steps=steps,
        lr=1e-2,
        mlp_lr=1e-2,
        batch_size=1024,
        sampler="march",
        march_steps=1024,
        target_samples=1 << 18,
        occupancy_resolution=128,
        occupancy_update_every=16,
        occupancy_warmup=64,
        occupancy_threshold=0.01,
        lr_warmup=100,
        lr_decay="step",
        weight_decay=1e-6,
        loss="huber",
        huber_delta=0.1,
        random_background=True,
        time_budget_s=time_budget_s,
        log_every=500,
        march_box_bound=True,
        fused_grid=True,
        fused_adam=True,
        torch_compile="auto",
    )


def instant_ngp_field(grid: GridConfig | None = None) -> FieldConfig:
    """Instant-NGP's radiance field: 16 levels of 2 features, concatenated, from 16^3 to 2048^3,
    levels above 2^19 vertices hashed into 2^19 rows, features initialised at 1e-4; a one-hidden-
    layer density MLP (64 wide, 15 geometry features) and a two-hidden-layer color MLP on the
    16-term spherical-harmonics encoding of the view direction. ``grid`` replaces the hash grid
    (a VQ-AD or dense grid under the same decoder)."""
    g = grid or HashGridConfig(
        levels=16,
        base_resolution=16,
        max_resolution=2048,
        features=2,
        log2_table_size=19,
        combine="concat",
        init_std=1e-4,
    )
    return FieldConfig(
        dims=3, grid=g, decoder=DecoderConfig(hidden=64, layers=1, color_layers=2, geo_features=15, dir_degree=3)
    )


# A 3D field job's default training: the Instant-NGP-class schedule for this many seconds of the
# GPU (the schedule follows elapsed time), so that loading the photos, training, evaluating on the
# held-out views and writing the .vqp fit in a 10-minute call on an H200.
RADIANCE_TIME_BUDGET_S = 360.0


def radiance_train(time_budget_s: float = RADIANCE_TIME_BUDGET_S) -> TrainConfig:
    """The default training of a radiance field: ``instant_ngp_train`` with a wall-clock budget."""
    return instant_ngp_train(steps=20_000, time_budget_s=time_budget_s)


def radiance_grid(kind: str) -> GridConfig:
    """The default grid of a radiance field of each kind, under ``instant_ngp_field``'s decoder:
    "hash" is Instant-NGP's (16 x 2 to 2048^3, 2^19 rows); "vqad" (sparse from 32^3, b = 4) and
    "dense" (its uncompressed twin) have 16 levels x 2 features to 256^3, concatenated."""
    levels = dict(levels=16, base_resolution=16, max_resolution=256, features=2, combine="concat")
    if kind == "hash":
        return instant_ngp_field().grid
    if kind == "dense":
        return DenseGridConfig(**levels, init_std=1e-4)  # type: ignore[arg-type]
    if kind == "vqad":
        return VqadGridConfig(**levels, bits=4, sparse=True, sparse_min_resolution=32)  # type: ignore[arg-type]
    raise ConfigError(f"field.grid.kind must be one of ['dense', 'hash', 'vqad'], got {str(kind)[:40]!r}")


def train_config_from_spec(value: Any, dims: int) -> TrainConfig:
    """A TrainConfig from an untrusted spec's "train" (the fields the user set; None = defaults),
    validated. The defaults: ``TrainConfig()`` for 2D image fields, ``radiance_train()`` for 3D
    (its warm-up cut to a tenth of the run when ``steps`` is set lower)."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"train must be an object of TrainConfig fields, got {type(value).__name__}")
    check_spec_fields(value, asdict(TrainConfig()), "train")
    base = radiance_train() if dims == 3 else TrainConfig()
    merged = {**asdict(base), **value}
    if "lr_warmup" not in value:  # the preset's warm-up is at most a tenth of a shorter run
        merged["lr_warmup"] = min(merged["lr_warmup"], merged["steps"] // 10)
    cfg = TrainConfig(**merged)
    cfg.validate()
    return cfg


MAX_POSTHOC_BITS = 10  # kmVQ: at most 2^10 centroids per level
MAX_POSTHOC_ITERS = 1000  # kmVQ: most Lloyd iterations
MAX_POSTHOC_RANK = 64  # LRA: the most features a grid level has


@dataclass(frozen=True)
class FieldQuantizeConfig:
    """Post-hoc compression of a field trained with a dense grid (``core/fields/posthoc.py``)."""

    method: Literal["kmvq", "lra"] = "kmvq"  # k-means VQ per level, or low-rank (truncated SVD) per level
    bits: int = 4  # kmvq: 2^bits centroids per level, 1..10
    rank: int = 4  # lra: rank, 1..the grid's features
    iters: int = 10  # kmvq: Lloyd iterations, 1..1000
    seed: int = 0  # kmvq: k-means seed, 0..2^63-1

    def validate(self, features: int | None = None) -> FieldQuantizeConfig:
        """Raise ConfigError naming the first out-of-range field; ``features`` (the grid's features
        per level, when known) bounds ``rank``. Returns self."""
        max_rank = features if features is not None else MAX_POSTHOC_RANK
        checks = (
            ("method", self.method in ("kmvq", "lra"), "'kmvq' or 'lra'"),
            ("bits", _int_in(self.bits, 1, MAX_POSTHOC_BITS), f"an integer in 1..{MAX_POSTHOC_BITS}"),
            ("rank", _int_in(self.rank, 1, max_rank), f"an integer in 1..{max_rank} (the grid's features)"),
            ("iters", _int_in(self.iters, 1, MAX_POSTHOC_ITERS), f"an integer in 1..{MAX_POSTHOC_ITERS}"),
            ("seed", _int_in(self.seed, 0, 2**63 - 1), "an integer in 0..2^63-1"),
        )
        for name, ok, what in checks:
            if not ok:
                raise ConfigError(f"{name} must be {what}, got {str(getattr(self, name))[:40]!r}")
        return self

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, where: str = "field") -> FieldQuantizeConfig:
        """From an untrusted JSON object of the fields to change (None = defaults): unknown keys and
        values of the wrong type raise ConfigError naming ``where``; validated."""
        values = {} if values is None else values
        if not isinstance(values, Mapping):
            raise ConfigError(f'{where} must be {{"method": "kmvq" | "lra", ...}}, got {str(values)[:80]}')
        check_spec_fields(values, asdict(cls()), where)
        try:
            return cls(**values).validate()
        except ConfigError as e:
            raise ConfigError(f"{where}.{e}") from None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _int_in(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def grid_kind(cfg: GridConfig) -> str:
    """The manifest name of a grid kind: "dense", "vqad" or "hash"."""
    if isinstance(cfg, DenseGridConfig):
        return "dense"
    if isinstance(cfg, VqadGridConfig):
        return "vqad"
    if isinstance(cfg, HashGridConfig):
        return "hash"
    assert_never(cfg)


def field_config_to_dict(cfg: FieldConfig) -> dict[str, Any]:
    """JSON-able form of a FieldConfig (the grid carries its kind)."""
    return {
        "dims": cfg.dims,
        "grid": {"kind": grid_kind(cfg.grid), **asdict(cfg.grid)},
        "decoder": asdict(cfg.decoder),
    }


def field_config_from_dict(d: dict[str, Any]) -> FieldConfig:
    """Inverse of field_config_to_dict; raises ConfigError on unknown kinds or fields."""
    try:
        grid = dict(d["grid"])
        kind = grid.pop("kind")
        cls: type[DenseGridConfig] | type[VqadGridConfig] | type[HashGridConfig]
        cls = {"dense": DenseGridConfig, "vqad": VqadGridConfig, "hash": HashGridConfig}[kind]
        cfg = FieldConfig(dims=d["dims"], grid=cls(**grid), decoder=DecoderConfig(**d["decoder"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"invalid field config {d!r}: {e}") from None
    cfg.validate()
    return cfg


def check_spec_fields(values: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> None:
    """Refuse unknown keys of an untrusted spec object, and values whose type is not their default's
    (bool, int, finite float, str); ``where`` names the object in the message."""
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown {where} field(s) {unknown}; known fields: {sorted(defaults)}")
    for k, v in values.items():
        default = defaults[k]
        if isinstance(default, bool):
            ok = isinstance(v, bool)
        elif isinstance(default, int):
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif isinstance(default, float):
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        elif isinstance(default, str):
            ok = isinstance(v, str)
        else:
            ok = True
        if not ok:
            raise ConfigError(f"{where}.{k} must be {type(default).__name__}, got {str(v)[:40]!r}")


def field_config_from_spec(
    value: Any, dims: int, dims_source: str = "", radiance_defaults: bool = False
) -> FieldConfig:
    """A FieldConfig from an untrusted spec ({"grid": {"kind", ...}, "decoder": {...}}, the
    field_config_to_dict format; None or missing keys = defaults), validated.

    The grid's defaults are those of its "kind" ("vqad" when not given); with
    ``radiance_defaults`` (a 3D field to train) ``radiance_grid(kind)`` and ``instant_ngp_field``'s
    decoder. ``dims`` is the caller's
    (from the dataset or the tensors, named by ``dims_source`` in the message); a "dims" key that
    says otherwise is refused.
    """
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"field must be an object (dims, grid, decoder), got {type(value).__name__}")
    unknown = sorted(set(value) - {"dims", "grid", "decoder"})
    if unknown:
        raise ConfigError(f"unknown field config key(s) {unknown}; known keys: ['decoder', 'dims', 'grid']")
    if value.get("dims", dims) != dims:
        raise ConfigError(
            f"field.dims is {value['dims']!r} but {dims_source or f'this is a {dims}D field'}; leave dims out"
        )
    grid = value.get("grid") or {}
    decoder = value.get("decoder") or {}
    if not isinstance(grid, Mapping) or not isinstance(decoder, Mapping):
        raise ConfigError("field.grid and field.decoder must be objects")
    kinds: dict[str, type[DenseGridConfig] | type[VqadGridConfig] | type[HashGridConfig]] = {
        "dense": DenseGridConfig,
        "vqad": VqadGridConfig,
        "hash": HashGridConfig,
    }
    kind = grid.get("kind", "vqad")
    if kind not in kinds:
        raise ConfigError(f"field.grid.kind must be one of {sorted(kinds)}, got {str(kind)[:40]!r}")
    grid_values = {k: v for k, v in grid.items() if k != "kind"}
    check_spec_fields(grid_values, asdict(kinds[kind]()), f"field.grid ({kind})")
    check_spec_fields(decoder, asdict(DecoderConfig()), "field.decoder")
    radiance = radiance_defaults and dims == 3
    base_grid = radiance_grid(kind) if radiance else kinds[kind]()
    base_decoder = instant_ngp_field().decoder if radiance else DecoderConfig()
    full = {
        "dims": dims,
        "grid": {"kind": kind, **asdict(base_grid), **grid_values},
        "decoder": {**asdict(base_decoder), **decoder},
    }
    return field_config_from_dict(full)

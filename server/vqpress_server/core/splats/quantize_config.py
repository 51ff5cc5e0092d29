"""What a post-hoc splat quantization is asked to do: ``QuantizeConfig``, its presets and bounds.

Torch-free on purpose: the gRPC process validates a Quantize request with the very dataclass the
worker quantizes with, and the SDK-facing conversion builds it, so there is one definition and one
validation (``core/splats/quantize.py`` re-exports it next to the quantizer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from ..budgets import MAX_CODEBOOK  # largest codebook (entries) of any attribute: k-means' limit, 2^23
from ..errors import ConfigError

MAX_ITERS = 1000  # most Lloyd iterations per codebook
PRESETS = ("default", "high_ratio", "high_quality")
IMPORTANCE = ("none", "views")


@dataclass(frozen=True)
class QuantizeConfig:
    """What to quantize and how. Defaults are the "default" preset: Compact3D's codebooks re-balanced
    where a well-trained scene loses its dB (SH rest 4096, log-scale 16384), k-means weighted by
    each Gaussian's blending weight at the scene's cameras, the least important 15% dropped and
    14-bit positions (on trained_lego30k_sh3: 41.0 dB against its renders at 25.2x, where
    Compact3D's 4K codebooks give 37.8 dB at 24.7x; BENCHMARKS.md)."""

    dc_codebook: int = 4096  # entries of the SH DC (color) codebook, 1..2^23
    sh_codebook: int = 4096  # entries of the SH rest codebook (unused at SH degree 0), 1..2^23
    scale_codebook: int = 16384  # entries of the log-scale codebook, 1..2^23
    rot_codebook: int = 4096  # entries of the rotation (unit quaternion) codebook, 1..2^23
    kmeans_iters: int = 10  # Lloyd iterations per codebook, 0..1000
    seed: int = 0  # k-means initialization seed
    position_precision: Literal["fixed16", "fp16", "fp32"] = "fixed16"  # fixed16: fixed point in the box
    position_bits: int = 14  # bits per axis of fixed16 positions, 8..16 (a step of span / (2^bits - 1))
    opacity_precision: Literal["uint8", "fp16"] = "uint8"  # uint8: round(255 * sigmoid); fp16: the logit
    entropy: Literal["zstd", "none"] = "zstd"  # zstd per section where it pays, or raw sections
    sh_degree: int | None = None  # keep SH up to this degree (0..3); None keeps the scene's degree
    strict: bool = False  # refuse (instead of repair) non-finite input values
    # what k-means weighs each Gaussian by (importance.py): "views" its summed blending weight at the
    # scene's cameras (a scene with none is quantized unweighted), "none" every Gaussian alike
    importance: Literal["none", "views"] = "views"
    # drop this fraction of the Gaussians, the least important first (needs importance "views" and
    # cameras; without them nothing is dropped), 0..0.9
    prune: float = 0.15

    def validate(self) -> QuantizeConfig:
        """Raise ``ConfigError`` naming the first out-of-range field; returns self."""
        for name in ("dc_codebook", "sh_codebook", "scale_codebook", "rot_codebook"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_CODEBOOK:
                raise ConfigError(f"{name} must be an integer in 1..{MAX_CODEBOOK}, got {v!r}")
        checks: list[tuple[str, bool, str]] = [
            (
                "kmeans_iters",
                isinstance(self.kmeans_iters, int) and 0 <= self.kmeans_iters <= MAX_ITERS,
                f"an integer in 0..{MAX_ITERS}",
            ),
            ("seed", isinstance(self.seed, int) and 0 <= self.seed < 2**63, "a non-negative integer"),
            (
                "position_precision",
                self.position_precision in ("fixed16", "fp16", "fp32"),
                "one of fixed16, fp16, fp32",
            ),
            ("opacity_precision", self.opacity_precision in ("uint8", "fp16"), "one of uint8, fp16"),
            ("entropy", self.entropy in ("zstd", "none"), "one of zstd, none"),
            (
                "sh_degree",
                self.sh_degree is None or (isinstance(self.sh_degree, int) and 0 <= self.sh_degree <= 3),
                "None or an integer in 0..3",
            ),
            ("strict", isinstance(self.strict, bool), "a boolean"),
            ("importance", self.importance in IMPORTANCE, "one of " + ", ".join(IMPORTANCE)),
            (
                "position_bits",
                isinstance(self.position_bits, int) and 8 <= self.position_bits <= 16,
                "an integer in 8..16",
            ),
            (
                "prune",
                isinstance(self.prune, (int, float)) and 0.0 <= self.prune <= 0.9,
                "a number in 0..0.9",
            ),
        ]
        for name, ok, what in checks:
            if not ok or isinstance(getattr(self, name), bool) and name != "strict":
                raise ConfigError(f"{name} must be {what}, got {getattr(self, name)!r}")
        return self

    @classmethod
    def preset(cls, name: str) -> QuantizeConfig:
        """``default``, ``high_ratio`` (smaller codebooks, 10% pruned) or ``high_quality`` (larger
        codebooks, full 16-bit positions, nothing pruned)."""
        if name == "default":
            return cls()
        if name == "high_ratio":  # trained_lego30k_sh3: 35.5 dB at 34.0x
            return cls(dc_codebook=1024, sh_codebook=256, scale_codebook=1024, rot_codebook=1024, prune=0.1)
        if name == "high_quality":  # trained_lego30k_sh3: 41.1 dB at 20.2x
            return cls(
                dc_codebook=16384,
                sh_codebook=2048,
                scale_codebook=16384,
                rot_codebook=16384,
                kmeans_iters=20,
                position_bits=16,
                prune=0.0,
            )
        raise ConfigError(f"unknown preset {name!r} (expected one of {PRESETS})")

    @classmethod
    def from_preset(cls, preset: str | None = None, **values: Any) -> QuantizeConfig:
        """The preset's config (None: ``default``) with ``values`` replacing its fields; validated.
        An unknown field name -> ConfigError naming the known ones."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; known fields: {sorted(names)}")
        base = cls.preset(str(preset)) if preset is not None else cls()
        return dataclasses.replace(base, **values).validate()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantizeConfig:
        """Build from a JSON dict of every field that differs from the defaults (unknown keys ->
        ConfigError); validated."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown quantize config fields {unknown} (known: {sorted(known)})")
        return cls(**d).validate()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["IMPORTANCE", "MAX_CODEBOOK", "MAX_ITERS", "PRESETS", "QuantizeConfig"]

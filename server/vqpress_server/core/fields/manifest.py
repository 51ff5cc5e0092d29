"""What a field .vqp's manifest says besides its arrays, typed, with one strict parser (torch-free).

``FieldExtra`` is the manifest's "extra": how to view the field (a 2D image's size; a 3D field's
scene box, background, samples per ray and marcher) and what it scored. ``FieldManifest`` is the
whole manifest as the RPC layer reads it from the header (``vqpress.vqp.read_header``) to decide
what a request may do with a stored field. Both refuse unknown keys and values of the wrong type
with a ``FormatError`` naming the file, so nothing downstream re-checks them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError, FormatError
from .config import FieldConfig, field_config_from_dict

FIELD_FORMAT = "vqpress-field/1"  # the manifest's "format" of the field .vqp this code writes
DEFAULT_SAMPLES_PER_RAY = 64  # 3D: stratified samples per ray of a field that stores none
MAX_SAMPLES_PER_RAY = 4096
MAX_MARCH_STEPS = 1 << 16
RGB = tuple[float, float, float]
Box = tuple[RGB, RGB]

# The manifest's key order (the .vqp bytes keep the order the keys were written in).
_KEYS = (
    "height", "width", "box", "unbounded", "background", "samples_per_ray", "march_steps", "psnr", "ssim",
    "posthoc", "source_psnr",
)  # fmt: skip


@dataclass(frozen=True)
class FieldExtra:
    """How a stored field is viewed and what it scored; None = not stored (the viewer's default)."""

    height: int | None = None  # 2D: pixels of the image the field was trained on
    width: int | None = None  # 2D
    box: Box | None = None  # 3D: the scene box (lo, hi) the field lives in; None = SceneBox()'s default
    unbounded: bool | None = None  # 3D: space beyond the box is contracted into it
    background: RGB | None = None  # 3D: the background it was trained on; None = black
    samples_per_ray: int | None = None  # 3D: stratified samples per ray; None = DEFAULT_SAMPLES_PER_RAY
    march_steps: int | None = None  # 3D: trained with the occupancy-grid marcher at this many steps
    scored: bool = False  # psnr/ssim were measured when it was written (each None when not finite)
    psnr: float | None = None  # dB, against the training (or held-out) photos
    ssim: float | None = None
    posthoc: str | None = None  # the post-hoc compression applied ("kmvq b=4", "lra r=8")
    source_psnr: float | None = None  # posthoc: the psnr of the field it was compressed from

    def to_json(self) -> dict[str, Any]:
        """The manifest's "extra" object: the keys that are stored, in the order they are written."""
        values: dict[str, Any] = {
            "height": self.height,
            "width": self.width,
            "box": None if self.box is None else [list(self.box[0]), list(self.box[1])],
            "unbounded": self.unbounded,
            "background": None if self.background is None else list(self.background),
            "samples_per_ray": self.samples_per_ray,
            "march_steps": self.march_steps,
        }
        out = {k: v for k, v in values.items() if v is not None}
        if self.scored:
            out.update(psnr=self.psnr, ssim=self.ssim)
        if self.posthoc is not None:
            out.update(posthoc=self.posthoc, source_psnr=self.source_psnr)
        return out

    @classmethod
    def from_json(cls, d: Any, name: str = "<field>") -> FieldExtra:
        """The extra of a manifest; FormatError naming ``name`` and the key when it is not one."""

        def bad(key: str, what: str) -> FormatError:
            return FormatError(name, f"field manifest extra.{key} must be {what}, got {str(d.get(key))[:60]!r}")

        if not isinstance(d, Mapping):
            raise FormatError(name, f"field manifest extra must be an object, got {type(d).__name__}")
        unknown = sorted(set(d) - set(_KEYS))
        if unknown:
            raise FormatError(name, f"field manifest extra has unknown key(s) {unknown}; known: {list(_KEYS)}")

        def count(key: str, hi: int) -> int | None:
            v = d.get(key)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise bad(key, f"an integer in 1..{hi}")
            return v

        def number(key: str) -> float | None:
            v = d.get(key)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise bad(key, "a finite number or null")
            return float(v)

        def triple(v: Any, key: str, lo: float = -math.inf, hi: float = math.inf) -> RGB:
            if not isinstance(v, list) or len(v) != 3:
                raise bad(key, "3 numbers")
            if not all(not isinstance(c, bool) and isinstance(c, int | float) and lo <= c <= hi for c in v):
                raise bad(key, "3 finite numbers" + (f" in [{lo:g}, {hi:g}]" if math.isfinite(lo) else ""))
            return (float(v[0]), float(v[1]), float(v[2]))

        box = None
        if d.get("box") is not None:
            b = d["box"]
            if not isinstance(b, list) or len(b) != 2:
                raise bad("box", "[lo, hi], each 3 numbers")
            lo, hi = triple(b[0], "box", -1e9, 1e9), triple(b[1], "box", -1e9, 1e9)
            if any(a > c for a, c in zip(lo, hi, strict=True)):
                raise bad("box", "[lo, hi] with lo <= hi on every axis")
            box = (lo, hi)
        unbounded = d.get("unbounded")
        if unbounded is not None and not isinstance(unbounded, bool):
            raise bad("unbounded", "true or false")
        posthoc = d.get("posthoc")
        if posthoc is not None and not isinstance(posthoc, str):
            raise bad("posthoc", "a string")
        return cls(
            height=count("height", 1 << 16),
            width=count("width", 1 << 16),
            box=box,
            unbounded=unbounded,
            background=None if d.get("background") is None else triple(d["background"], "background", 0.0, 1.0),
            samples_per_ray=count("samples_per_ray", MAX_SAMPLES_PER_RAY),
            march_steps=count("march_steps", MAX_MARCH_STEPS),
            scored="psnr" in d or "ssim" in d,
            psnr=number("psnr"),
            ssim=number("ssim"),
            posthoc=posthoc,
            source_psnr=number("source_psnr"),
        )

    def compressed(self, method: str) -> FieldExtra:
        """The extra of this field compressed post hoc by ``method``: its scores become source_psnr."""
        return replace(self, scored=False, psnr=None, ssim=None, posthoc=method, source_psnr=self.psnr)

    @property
    def samples(self) -> int:
        """3D: the stratified samples per ray to render with."""
        return self.samples_per_ray or DEFAULT_SAMPLES_PER_RAY


@dataclass(frozen=True)
class FieldManifest:
    """A field .vqp's manifest, as far as what may be done with the field depends on it."""

    config: FieldConfig
    storage: str  # how the grid is stored: "table" (uncompressed or hashed), "vq", "lowrank"
    features: int  # features per grid vertex
    hashed: tuple[bool, ...]  # per level: a hash table rather than a dense one
    extra: FieldExtra

    @property
    def dense(self) -> bool:
        """The grid is uncompressed and unhashed: what post-hoc quantization takes."""
        return self.storage == "table" and not any(self.hashed)

    @classmethod
    def from_json(cls, meta: Any, name: str = "<field>") -> FieldManifest:
        """The manifest of a .vqp of kind "field"; FormatError naming ``name`` when it is not one."""
        if not isinstance(meta, Mapping):
            raise FormatError(name, "field .vqp manifest is not an object")
        if meta.get("format") != FIELD_FORMAT:
            raise FormatError(name, f"not a vqpress field (format {str(meta.get('format'))[:40]!r})")
        grid = meta.get("grid")
        if not isinstance(grid, Mapping):
            raise FormatError(name, "field .vqp manifest lacks its grid description")
        storage, features, hashed = grid.get("storage"), grid.get("features"), grid.get("hashed", [])
        if storage not in ("table", "vq", "lowrank"):
            raise FormatError(name, f"field grid storage {str(storage)[:40]!r} is not table, vq or lowrank")
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise FormatError(name, f"field grid features must be a positive integer, got {str(features)[:40]!r}")
        if not isinstance(hashed, list) or not all(isinstance(h, bool) for h in hashed):
            raise FormatError(name, "field grid hashed must be a list of booleans")
        config = meta.get("config")
        if not isinstance(config, Mapping):
            raise FormatError(name, "field .vqp manifest lacks its config")
        try:
            cfg = field_config_from_dict(dict(config))
        except ConfigError as e:
            raise FormatError(name, str(e)) from None
        return cls(cfg, storage, features, tuple(hashed), FieldExtra.from_json(meta.get("extra", {}), name))


__all__ = ["DEFAULT_SAMPLES_PER_RAY", "FIELD_FORMAT", "FieldExtra", "FieldManifest"]

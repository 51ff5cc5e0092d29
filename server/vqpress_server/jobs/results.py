"""What a handler returns: its result files (the worker stores each as an artifact) and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core.render.images import save_png
from .context import JobContext, safe_name
from .specs import CameraSpec


@dataclass(frozen=True)
class Output:
    """A result file a handler produced; the worker stores it as an artifact."""

    path: Path
    name: str
    kind: str


@dataclass
class HandlerResult:
    outputs: list[Output]
    metrics: dict[str, float] = field(default_factory=dict)


def save_view(ctx: JobContext, index: int, cam: CameraSpec, img: torch.Tensor, encoding: str) -> Output:
    """Write one rendered view (``img`` [H, W, 3]) into scratch as ``<index>_<camera name>.png`` or
    ``.npy`` (float32)."""
    stem = f"{index:04d}" + (f"_{safe_name(cam.name)}" if safe_name(cam.name) else "")
    if encoding == "png":
        path = ctx.scratch / f"{stem}.png"
        save_png(img, path)
        return Output(path, path.name, "png")
    path = ctx.scratch / f"{stem}.npy"
    np.save(path, img.detach().to("cpu", torch.float32).numpy())
    return Output(path, path.name, "npy")


__all__ = ["HandlerResult", "Output", "save_view"]

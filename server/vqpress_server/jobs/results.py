"""What a handler returns: its result files (the worker stores each as an artifact) and metrics."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core.render.images import save_png
from .context import JobContext, safe_name
from .specs import CameraSpec, outbox_name


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
    """Write one rendered view (``img`` [H, W, 3]) as ``<index>_<camera name>.png`` or ``.npy``
    (float32): into scratch, or, for a Render call waiting on it (``ctx.outbox``), into its outbox
    as ``outbox_name(index, encoding)``, whole when it appears there (written, then renamed)."""
    stem = f"{index:04d}" + (f"_{safe_name(cam.name)}" if safe_name(cam.name) else "")
    kind = "png" if encoding == "png" else "npy"
    path = ctx.scratch / f"{stem}.{kind}"
    if kind == "png":
        save_png(img, path)
    else:
        np.save(path, img.detach().to("cpu", torch.float32).numpy())
    if ctx.outbox is not None:
        ctx.outbox.mkdir(parents=True, exist_ok=True)
        delivered = ctx.outbox / outbox_name(index, encoding)
        os.replace(path, delivered)  # scratch and outbox share the data directory's filesystem
        return Output(delivered, path.name, kind)
    return Output(path, path.name, kind)


__all__ = ["HandlerResult", "Output", "save_view"]

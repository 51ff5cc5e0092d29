"""Training checkpoints: one file format for every trainer, ``{config, state, step}`` plus what the
caller adds (what identifies the run, its history), written atomically with fsync.

``config`` is what was chosen (a JSON-able dict), ``state`` what is happening (tensors, optimizer
state), ``step`` how far it got. A file that cannot be read, or that another format version or
another run wrote, is no checkpoint: training starts over instead of failing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write

log = logging.getLogger(__name__)
REQUIRED = ("config", "state", "step")


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Mapping[str, Any]) -> None:
    """Write ``checkpoint`` (it must hold config, state and step) to ``path`` atomically."""
    missing = [k for k in REQUIRED if k not in checkpoint]
    if missing:
        raise ValueError(f"a checkpoint holds {', '.join(REQUIRED)}; {', '.join(missing)} missing")
    atomic_write(path, lambda f: torch.save(dict(checkpoint), f))


def load_checkpoint(path: str | os.PathLike[str], **expect: Any) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (tensors on the CPU), or None when there is none, it cannot be read,
    or one of ``expect``'s keys has another value in it (another format version, another run)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # written atomically by us: unreadable means start over, not fail the job
        log.warning("ignoring unreadable checkpoint %s: %s", path, e)
        return None
    if not isinstance(ck, dict) or any(k not in ck for k in REQUIRED):
        return None
    if any(ck.get(k) != v for k, v in expect.items()):
        return None
    return ck


__all__ = ["load_checkpoint", "save_checkpoint"]

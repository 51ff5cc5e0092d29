"""Posed-image datasets (NeRF-synthetic, instant-ngp, COLMAP) for training splats and fields.

``config`` (DatasetConfig) is torch-free; the readers import torch, so they are loaded on first
use: the gRPC process imports ``core.data.config`` through this package without them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .config import DatasetConfig

if TYPE_CHECKING:
    from .archive import extract_archive, open_dataset_archive
    from .dataset import PosedImageDataset, detect_layout, load_dataset

_LAZY = {
    "extract_archive": "archive",
    "open_dataset_archive": "archive",
    "PosedImageDataset": "dataset",
    "detect_layout": "dataset",
    "load_dataset": "dataset",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:  # here: the readers import torch, which the gRPC process never loads
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DatasetConfig",
    "PosedImageDataset",
    "detect_layout",
    "extract_archive",
    "load_dataset",
    "open_dataset_archive",
]

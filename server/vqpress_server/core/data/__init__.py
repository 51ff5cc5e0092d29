"""Posed-image datasets (NeRF-synthetic, instant-ngp, COLMAP) for training splats and fields."""

from .archive import extract_archive, open_dataset_archive
from .dataset import DatasetConfig, PosedImageDataset, detect_layout, load_dataset

__all__ = [
    "DatasetConfig",
    "PosedImageDataset",
    "detect_layout",
    "extract_archive",
    "load_dataset",
    "open_dataset_archive",
]

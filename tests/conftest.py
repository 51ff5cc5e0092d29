"""Shared fixtures: the device under test, and the optional real data in ../shared/data."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"


def shared_data_dir() -> Path | None:
    """Real scenes for benchmarks and GPU runs. VQPRESS_TEST_DATA overrides ../shared/data."""
    env = os.environ.get("VQPRESS_TEST_DATA")
    for cand in ([Path(env)] if env else []) + [REPO / ".data", REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("real data not present (set VQPRESS_TEST_DATA or provide ../shared/data)")
    return d


@pytest.fixture(scope="session")
def shared_scene(shared_data: Path) -> Callable[..., Path]:
    """``shared_scene("trained_lego_sh3", "cameras.json")``: that path of the real data, or a skip that
    names it when this copy of the data lacks it (a GPU machine gets only what a run carries)."""

    def get(*parts: str) -> Path:
        path = shared_data.joinpath(*parts)
        if not path.exists():
            pytest.skip(f"{path} not present in this copy of the real data")
        return path

    return get


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def device() -> str:
    """The torch device tests run on: CUDA when present, else CPU."""
    return "cuda" if _cuda_available() else "cpu"

"""Choosing where jobs run: settings, the CLI flags, and the composition root's executor."""

from __future__ import annotations

from pathlib import Path

import pytest
from vqpress_server.cli import main
from vqpress_server.jobs.executor import build_executor
from vqpress_server.jobs.worker import WorkerPool
from vqpress_server.settings import RayConfig, Settings


def test_the_local_executor_stays_the_default(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, workers=0)
    assert s.executor == "local" and s.ray == RayConfig()
    assert isinstance(build_executor(s), WorkerPool)


def test_an_unknown_executor_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"executor must be one of \['local', 'ray'\]"):
        Settings(executor="kubernetes")


def test_executor_and_ray_address_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VQPRESS_EXECUTOR", "ray")
    monkeypatch.setenv("VQPRESS_RAY_ADDRESS", "head:6379")
    monkeypatch.setenv("VQPRESS_RAY_NODE_DIR", "/var/tmp/vq")
    s = Settings.from_env()
    assert s.executor == "ray" and s.ray.address == "head:6379" and s.ray.node_dir == Path("/var/tmp/vq")
    # A flag wins over the environment.
    assert Settings.from_env(ray_address="ray://other:10001").ray.address == "ray://other:10001"


def test_ray_address_without_the_ray_executor_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--ray-address", "auto", "--port", "0"]) == 2
    assert "--ray-address needs --executor ray" in capsys.readouterr().err

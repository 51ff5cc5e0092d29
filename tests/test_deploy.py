"""Deployment files: the compose service and the Dockerfile have what running on a GPU host needs,
and the container's health check command really tells a serving server from a gone one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PORT = 50051


def _compose() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, line continuations joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for ln in joined.splitlines():
        if ln.strip():
            instr, _, args = ln.strip().partition(" ")
            out.append((instr.upper(), " ".join(args.split())))
    return out


def _service() -> dict:
    services = _compose()["services"]
    assert list(services) == ["vqpress"]
    return services["vqpress"]


def test_compose_service() -> None:
    compose = _compose()
    svc = _service()
    # GPU reservation through the NVIDIA runtime.
    devices = svc["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), devices
    # The data dir on a named volume, declared at the top level.
    env = svc["environment"]
    data_dir = env["VQPRESS_DATA_DIR"]
    volume, _, mount = next(v for v in svc["volumes"] if v.endswith(f":{data_dir}")).partition(":")
    assert mount == data_dir and volume in compose["volumes"]
    # The port, bound on all interfaces inside the container.
    assert f"{PORT}:{PORT}" in svc["ports"] and env["VQPRESS_PORT"] == str(PORT)
    assert env["VQPRESS_HOST"] == "0.0.0.0"
    # The token comes from the environment of `docker compose`, never from the file.
    assert re.fullmatch(r"\$\{VQPRESS_TOKEN[^}]*\}", env["VQPRESS_TOKEN"]), env["VQPRESS_TOKEN"]
    # The health check runs the client CLI against the container's own port.
    hc = svc["healthcheck"]
    assert hc["test"][0] == "CMD" and hc["test"][1] == "vqpress" and hc["test"][-1] == "health"
    assert f"127.0.0.1:{PORT}" in hc["test"]
    # Long enough for a graceful stop: RPC grace plus handing running jobs back.
    assert int(svc["stop_grace_period"].rstrip("s")) >= 20


def test_dockerfile() -> None:
    steps = _dockerfile()
    instrs = [i for i, _ in steps]
    assert instrs[0] in ("ARG", "FROM")
    base = next(a for i, a in steps if i == "FROM")
    arg = dict(a.split("=", 1) for i, a in steps if i == "ARG" and "=" in a)
    image = arg.get(base.strip("${}"), base)
    assert image.startswith("pytorch/pytorch:") and "cuda" in image and "devel" in image, image
    env = " ".join(a for i, a in steps if i == "ENV")
    arch = re.search(r'TORCH_CUDA_ARCH_LIST="([^"]+)"', env)
    assert arch is not None and {"8.0", "8.6", "8.9", "9.0"} <= set(arch.group(1).split(";"))
    assert "TORCH_EXTENSIONS_DIR=" in env
    runs = [a for i, a in steps if i == "RUN"]
    assert any('pip install ".[server]"' in r for r in runs)
    # gsplat's CUDA kernels are compiled into the image, before the switch to the runtime user.
    compile_at = next(n for n, (i, a) in enumerate(steps) if i == "RUN" and "gsplat.cuda._backend" in a)
    users = [(n, a) for n, (i, a) in enumerate(steps) if i == "USER"]
    assert users and users[-1][1] not in ("root", "0") and users[-1][0] > compile_at
    assert not any(i == "RUN" for i, _ in steps[users[-1][0] :])  # nothing runs as root after
    assert ("VOLUME", '["/data"]') in steps and ("EXPOSE", str(PORT)) in steps
    assert "VQPRESS_DATA_DIR=/data" in env
    hc = next(a for i, a in steps if i == "HEALTHCHECK")
    assert re.search(rf"CMD vqpress --server 127\.0\.0\.1:{PORT} health", hc), hc
    assert next(a for i, a in steps if i == "ENTRYPOINT") == '["vqpress-server"]'


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = {ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "tests"} <= ignored


def test_healthcheck_command_against_a_real_server(tmp_path: Path) -> None:
    """Run the compose file's health check command against a server built like the container's."""
    if not (REPO / "server" / "vqpress_server" / "app.py").exists():
        pytest.skip("the server composition root (app.py) is not there yet")
    if not (REPO / "client" / "vqpress" / "cli.py").exists():
        pytest.skip("the client CLI is not there yet")
    from vqpress_server.app import build_app
    from vqpress_server.settings import Settings

    exe = Path(sys.executable).parent / "vqpress"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vqpress.cli"]
    test = _service()["healthcheck"]["test"][2:]  # after "CMD", "vqpress"

    def health(port: int) -> subprocess.CompletedProcess[str]:
        args = [a.replace(f":{PORT}", f":{port}") for a in test]
        return subprocess.run(cmd + args, capture_output=True, text=True, timeout=60)

    app = build_app(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, workers=0, token="s3cret"))
    app.start()
    try:
        port = app.port
        ok = health(port)
        assert ok.returncode == 0, ok.stdout + ok.stderr
    finally:
        app.stop(grace=0)
    down = health(port)
    assert down.returncode != 0  # a server that is gone is not healthy

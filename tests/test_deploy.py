"""Deployment files: the compose service and the Dockerfile have what running on a GPU host needs,
and the container's health check command really tells a serving server from a gone one."""

from __future__ import annotations

import os
import re
import shutil
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
    # The health check runs the client CLI against the container's own port, with TLS when it is on.
    hc = svc["healthcheck"]
    assert hc["test"][0] == "CMD-SHELL" and hc["test"][1].startswith(f"vqpress --server 127.0.0.1:{PORT} ")
    assert hc["test"][1].endswith(" health") and "$${VQPRESS_TLS_CERT:+--tls-ca" in hc["test"][1]
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
    assert arch is not None and {"8.0", "8.6", "8.9"} <= set(arch.group(1).split(";"))
    assert arch.group(1).split(";")[-1] == "9.0+PTX"  # PTX of the newest: later GPUs JIT it
    torch_pin = dict(a.split("=", 1) for i, a in steps if i == "ARG" and "=" in a).get("TORCH_VERSION")
    assert torch_pin == "2.13.0"  # the version the test suite runs with, installed over the base image's
    assert "TORCH_EXTENSIONS_DIR=" in env
    runs = [a for i, a in steps if i == "RUN"]
    assert any('pip install ".[server,cluster]" "torch==${TORCH_VERSION}"' in r for r in runs)
    # gsplat's CUDA kernels are compiled into the image, before the switch to the runtime user.
    compile_at = next(n for n, (i, a) in enumerate(steps) if i == "RUN" and "gsplat.cuda._backend" in a)
    users = [(n, a) for n, (i, a) in enumerate(steps) if i == "USER"]
    assert users and users[-1][1] not in ("root", "0") and users[-1][0] > compile_at
    assert not any(i == "RUN" for i, _ in steps[users[-1][0] :])  # nothing runs as root after
    assert ("VOLUME", '["/data"]') in steps and ("EXPOSE", str(PORT)) in steps
    assert "VQPRESS_DATA_DIR=/data" in env
    hc = next(a for i, a in steps if i == "HEALTHCHECK")
    assert re.search(rf"CMD vqpress --server 127\.0\.0\.1:{PORT} \$\{{VQPRESS_TLS_CERT:\+--tls-ca .*\}} health", hc), hc
    assert next(a for i, a in steps if i == "ENTRYPOINT") == '["vqpress-server"]'


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = {ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "tests"} <= ignored


def _healthcheck(port: int, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The compose file's health check, run by a shell as the container runs it, against ``port``."""
    exe = Path(sys.executable).parent / "vqpress"
    cmd = str(exe) if exe.exists() else f"{sys.executable} -m vqpress.cli"
    test = _service()["healthcheck"]["test"][1].replace("$$", "$")  # compose's escape for a literal $
    script = test.replace(f":{PORT}", f":{port}").replace("vqpress ", f"{cmd} ", 1)
    base = {k: v for k, v in os.environ.items() if not k.startswith("VQPRESS_TLS")}
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60, env={**base, **env})


def test_healthcheck_command_against_a_real_server(tmp_path: Path) -> None:
    """Run the compose file's health check command against a server built like the container's."""
    from vqpress_server.app import build_app
    from vqpress_server.settings import Settings

    app = build_app(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, workers=0, token="s3cret"))
    app.start()
    try:
        port = app.port
        ok = _healthcheck(port, {})
        assert ok.returncode == 0, ok.stdout + ok.stderr
    finally:
        app.stop(grace=0)
    down = _healthcheck(port, {})
    assert down.returncode != 0  # a server that is gone is not healthy


def test_healthcheck_speaks_tls_when_the_server_does(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    from vqpress_server.app import build_app
    from vqpress_server.settings import Settings

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=vqpress.internal", "-addext", "subjectAltName=DNS:vqpress.internal",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    settings = Settings(data_dir=tmp_path / "data", port=0, workers=0, token="s3cret", tls_cert=cert, tls_key=key)
    app = build_app(settings)
    app.start()
    try:
        env = {"VQPRESS_TLS_CERT": str(cert), "VQPRESS_TLS_SERVER_NAME": "vqpress.internal"}
        ok = _healthcheck(app.port, env)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert _healthcheck(app.port, {}).returncode != 0  # plaintext to a TLS server: not healthy
    finally:
        app.stop(grace=0)


def test_cluster_compose_has_a_head_gpu_workers_and_the_front_end() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((REPO / "docker-compose.cluster.yml").read_text())
    head, worker, front = (compose["services"][k] for k in ("ray-head", "ray-worker", "vqpress"))
    assert "--head" in head["command"] and "--num-cpus=0" in head["command"]  # no workers on the head
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), devices
    assert "ray start --address=" in worker["command"][0]
    serve = " ".join(front["command"])
    assert "--executor ray" in serve and "--ray-address auto" in serve and "--num-gpus=0" in serve
    env = front["environment"]
    assert re.fullmatch(r"\$\{VQPRESS_TOKEN[^}]*\}", env["VQPRESS_TOKEN"]) and env["VQPRESS_HOST"] == "0.0.0.0"
    assert any(v.endswith(":/data") for v in front["volumes"]) and f"{PORT}:{PORT}" in front["ports"]

"""The README's service section, run as a script: the `serve` line starts a real server process, and
every line of the shell block runs as written (in a folder holding scene.ply and cameras.json). The
server is stopped and started again while `vqpress wait` follows the detached job; the wait must
re-attach and the later `download` must fetch the result."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from vqpress.vqp import read_vqp

REPO = Path(__file__).resolve().parents[1]
DONUT = REPO / "tests" / "data" / "donut_small.ply"

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def _service_section() -> tuple[str, list[str]]:
    """(the serve command, the lines of the shell block) of README.md's "The service"."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## The service\n") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    serve = next(b for b in blocks if "vqpress-server serve" in b).strip()
    shell = next(b for b in blocks if b.startswith("export VQPRESS_SERVER="))
    lines = [ln.split("  #")[0].strip() for ln in shell.splitlines()]
    return serve.split("  #")[0].strip(), [ln for ln in lines if ln]


def _exe(name: str, module: str) -> list[str]:
    exe = Path(sys.executable).parent / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", module]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cameras(path: Path) -> None:
    from vqpress import Camera
    from vqpress_server.core.render.cameras import orbit_cameras
    from vqpress_server.core.splats.formats import read_splats

    cams = []
    for i, c in enumerate(orbit_cameras(read_splats(DONUT), n=3, width=64, height=48)):
        d = Camera(c.viewmat, c.K, 64, 48, f"view{i}").to_dict()
        d["split"] = "test" if i == 2 else "train"
        cams.append(d)
    path.write_text(json.dumps({"cameras": cams, "background": [1, 1, 1]}))


class Server:
    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.argv, self.cwd, self.env = argv, cwd, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, health: list[str]) -> None:
        with (self.cwd / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 300  # a loaded CI machine: the worker imports torch
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.cwd / "server.log").read_text()[-3000:]
            if subprocess.run(health, env=self.env, capture_output=True, timeout=60).returncode == 0:
                return
            time.sleep(0.5)
        raise AssertionError("the server did not become healthy")

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)

    def kill(self) -> None:
        """After a failed step: leave no server behind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=60)


def test_readme_service_section_as_a_script(tmp_path: Path) -> None:
    serve, lines = _service_section()
    port = _free_port()
    argv = shlex.split(serve)
    assert argv[:2] == ["vqpress-server", "serve"] and "--port" in argv
    argv[argv.index("--port") + 1] = str(port)
    (tmp_path / "scene.ply").write_bytes(DONUT.read_bytes())
    _cameras(tmp_path / "cameras.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VQPRESS_")}
    # This checkout's packages, whatever the folder the commands run in.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "client"), str(REPO / "server"), env.get("PYTHONPATH", "")])
    env["VQPRESS_PROGRESS_INTERVAL"] = "1"
    cli = _exe("vqpress", "vqpress.cli")
    server = Server(_exe("vqpress-server", "vqpress_server.cli") + argv[1:], tmp_path, env)

    def command(line: str) -> list[str]:
        words = [env.get(w[1:], w) if w.startswith("$") else w for w in shlex.split(line)]
        assert words[0] == "vqpress", line
        return cli + words[1:]

    def sh(line: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(command(line), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{line}\n{r.stdout}\n{r.stderr}"
        return r

    try:
        started = False
        restarted = False
        for line in lines:
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                env[name] = value.replace("50051", str(port))
                continue
            if not started:
                server.start(cli + ["--server", env["VQPRESS_SERVER"], "health"])
                started = True
            if m := re.fullmatch(r"(\w+)=\$\((.*)\)", line):
                env[m.group(1)] = sh(m.group(2)).stdout.strip()
                continue
            if line.startswith("vqpress wait"):
                # The server goes away and comes back while `wait` follows the job it was given.
                waiter = subprocess.Popen(command(line), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)  # fmt: skip
                server.stop()
                server.start(cli + ["--server", env["VQPRESS_SERVER"], "health"])
                out, err = waiter.communicate(timeout=600)
                assert waiter.returncode == 0, err
                assert "re-attaching" in err and "SUCCEEDED" in out
                restarted = True
                continue
            r = sh(line)
            if line.startswith("vqpress health -v"):
                assert "SERVING" in r.stdout and "devices" in r.stdout
    except BaseException:
        server.kill()
        raise
    server.stop()
    assert restarted, "the README's shell block has no `vqpress wait` line"
    assert read_vqp((tmp_path / "scene.vqp").read_bytes()).kind == "splats"
    assert read_vqp((tmp_path / "later.vqp").read_bytes()).kind == "splats"
    assert (tmp_path / "scene.spz").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "renders").iterdir()) == ["view2.png"]
    # the detached render's image, fetched later, is the one the streamed render wrote
    assert (tmp_path / "later" / "0000_view2.png").read_bytes() == (tmp_path / "renders" / "view2.png").read_bytes()
    log = (tmp_path / "server.log").read_text()
    assert log.count("vqpress serving on") == 2

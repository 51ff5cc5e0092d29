"""Imports run one way: rpc -> jobs -> core, jobs -> artifacts. core never imports grpc, protobuf,
sqlite3 or the artifact store; the client never imports torch or the server; the gRPC process
imports no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "server"
CLIENT = REPO / "client"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path, tree: ast.AST | None = None) -> set[str]:
    """Absolute names of every module ``path`` imports, anywhere in the file (relative ones resolved);
    ``tree``: the file's parsed (and maybe pruned) source instead of the file's own."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree if tree is not None else ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
    return out


def violations(package_dir: Path, root: Path, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        for mod in sorted(imported_modules(path, root)):
            if any(mod == f or mod.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(root)} imports {mod}")
    return found


@pytest.mark.parametrize(
    ("package", "root", "forbidden"),
    [
        (
            SERVER / "vqpress_server" / "core",
            SERVER,
            (
                "grpc",
                "google.protobuf",
                "sqlite3",
                "vqpress_server.artifacts",
                "vqpress_server.jobs",
                "vqpress_server.rpc",
                "vqpress_server.app",
                "vqpress.v1",
            ),
        ),
        (SERVER / "vqpress_server" / "jobs", SERVER, ("grpc", "vqpress_server.rpc", "vqpress_server.app")),
        (
            SERVER / "vqpress_server" / "artifacts",
            SERVER,
            ("grpc", "torch", "vqpress_server.jobs", "vqpress_server.rpc", "vqpress_server.app"),
        ),
        (SERVER / "vqpress_server" / "rpc", SERVER, ("torch", "gsplat", "vqpress_server.app")),
        (CLIENT / "vqpress", CLIENT, ("torch", "gsplat", "vqpress_server")),
    ],
    ids=["core", "jobs", "artifacts", "rpc", "client"],
)
def test_imports_run_one_way(package: Path, root: Path, forbidden: tuple[str, ...]) -> None:
    assert package.is_dir()
    assert violations(package, root, forbidden) == []


def test_the_scan_sees_relative_and_from_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "vqpress_server" / "core" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "mod.py").write_text("from ...artifacts import store\nfrom google.protobuf import message\n")
    forbidden = ("vqpress_server.artifacts", "google.protobuf")
    found = violations(tmp_path / "vqpress_server" / "core", tmp_path, forbidden)
    assert {f.split(" imports ")[1] for f in found} >= {"vqpress_server.artifacts", "google.protobuf"}
    assert violations(tmp_path / "vqpress_server" / "core", tmp_path, ("grpc", "vqpress_server.jobs")) == []


def _runtime_imports(path: Path, root: Path) -> set[str]:
    """Like ``imported_modules``, but without the imports under ``if TYPE_CHECKING:`` (they never run)."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = [ast.Pass()]
    return imported_modules(path, root, tree)


def import_cycles(package_dir: Path, root: Path) -> list[list[str]]:
    """Every cycle among the modules of one package, following every import that runs (at module top
    or inside a function), as lists of module names."""
    modules = {module_name(p, root): p for p in sorted(package_dir.glob("*.py"))}
    graph = {
        name: sorted(m for m in _runtime_imports(path, root) if m in modules and m != name)
        for name, path in modules.items()
    }
    cycles, done = [], set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycle = stack[stack.index(node) :]
            if frozenset(cycle) not in done:
                done.add(frozenset(cycle))
                cycles.append([*cycle, node])
            return
        for nxt in graph[node]:
            visit(nxt, [*stack, node])

    for name in graph:
        visit(name, [])
    return cycles


def test_the_jobs_modules_import_no_cycle() -> None:
    """handlers -> splat/field/train handlers -> results, context, specs: one way, no module imports
    one that imports it back (not even lazily inside a function)."""
    jobs = SERVER / "vqpress_server" / "jobs"
    assert len(list(jobs.glob("*.py"))) >= 10
    assert import_cycles(jobs, SERVER) == []


def test_the_cycle_scan_finds_a_lazy_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "vqpress_server" / "jobs"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x  # a lazy import closes the circle\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import y\n")
    (pkg / "d.py").write_text("from .c import z\n")
    cycles = import_cycles(pkg, tmp_path)
    assert [sorted(set(c)) for c in cycles] == [["vqpress_server.jobs.a", "vqpress_server.jobs.b"]], cycles


# A meta path finder that makes the named top-level packages unimportable in a fresh interpreter.
_BLOCKER = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    BLOCKED = set(sys.argv[1].split(","))

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    for root in sys.argv[2:]:
        pkg = importlib.import_module(root)
        for info in pkgutil.walk_packages(getattr(pkg, "__path__", []), root + "."):
            importlib.import_module(info.name)
    print("ok", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
    """
)


def run_blocked(blocked: str, *packages: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BLOCKER, blocked, *packages],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_client_imports_without_torch_or_the_server() -> None:
    r = run_blocked("torch,gsplat,vqpress_server", "vqpress")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok []"


def test_the_grpc_process_imports_no_torch() -> None:
    """The composition root and the RPC layer load without torch (workers import it in their own process)."""
    r = run_blocked("torch,gsplat", "vqpress_server.rpc", "vqpress_server.app")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok []"


def test_the_numpy_decoder_and_the_core_import_without_grpc() -> None:
    """`import vqpress.vqp`, the quantizer and the field codec load where grpc and protobuf are missing
    (or too old for the generated code); `vqpress.Client` loads the gRPC client on first use."""
    core = (
        "vqpress_server.core.splats.quantize",
        "vqpress_server.core.splats.compress",
        "vqpress_server.core.fields.serialize",
    )
    r = run_blocked("grpc,google", "vqpress.vqp", "vqpress.types", *core)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok []"
    r = subprocess.run(
        [sys.executable, "-c", "import vqpress; print(vqpress.Client.__module__, vqpress.CHUNK_BYTES)"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert r.returncode == 0 and r.stdout.split() == ["vqpress.client", str(1 << 20)], r.stderr

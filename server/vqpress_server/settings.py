"""Server settings: what the operator chose. One frozen dataclass, read once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vqpress import digests

# Transport limits live here and nowhere else on the server side.
CHUNK_BYTES = 1 << 20  # artifact stream chunk size: 1 MiB
MAX_MESSAGE_BYTES = 64 << 20  # largest single gRPC message accepted or sent: 64 MiB
EXECUTORS = ("local", "ray")  # where jobs run: worker processes of this server, or actors of a Ray cluster


@dataclass(frozen=True)
class RayConfig:
    """How the ``ray`` executor uses a Ray cluster (ignored by the ``local`` executor).

    One actor per GPU of every node (``num_gpus=1``); a node without GPUs runs ``cpu_slots`` actors
    that share its CPUs. The front-end alone reads and writes the job table and the artifact store:
    inputs, results and training checkpoints travel through Ray's object store.
    """

    address: str | None = None  # "auto", "HOST:6379" or "ray://HOST:10001"; None = start Ray on this machine
    namespace: str = "vqpress"  # Ray namespace of the actors
    cpu_slots: int = 1  # actors on a node that has no GPU (each gets CPUs/cpu_slots); 0 = GPU nodes only
    node_dir: Path = Path("/tmp/vqpress-ray")  # on each node: its artifact cache and job scratch
    node_cache_bytes: int = 4 << 30  # a node's artifact cache is trimmed to this after each job: 4 GiB
    object_cache_bytes: int = 1 << 30  # inputs the front-end keeps in Ray's object store for re-use: 1 GiB
    local_cpus: int | None = None  # CPUs of the Ray instance started when address is None; None = all
    local_object_store_bytes: int | None = None  # its object store; None = Ray's default


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("vqpress-data")  # artifacts/, jobs.sqlite3, worker scratch/ and Render outbox/ live here
    host: str = "127.0.0.1"  # bind address; "0.0.0.0" in containers
    port: int = 50051  # 0 picks a free port (tests)
    workers: int | None = None  # worker processes; None = one per visible GPU, one on CPU
    token: str | None = None  # bearer token; None = no auth. Health stays open either way.
    insecure: bool = False  # allow serving without a token on an interface other than loopback
    tls_cert: Path | None = None  # PEM certificate chain; with tls_key enables TLS
    tls_key: Path | None = None  # PEM private key
    max_artifact_bytes: int = 8 << 30  # largest upload accepted: 8 GiB
    # Digest function new content is named by ("blake3" or "sha256"); uploads may use either, and
    # stored ids of both stay valid. "sha256" names job results so that clients that know only
    # sha256 can verify them.
    digest_function: str = digests.DEFAULT
    max_queued_jobs: int = 1000  # Quantize/Export/Train/Render beyond this -> RESOURCE_EXHAUSTED
    min_free_bytes: int = 64 << 20  # submits refused (RESOURCE_EXHAUSTED) below this free disk space: 64 MiB
    max_streams: int = 48  # streaming calls open at once (WatchJob, Render, up/downloads); more -> RESOURCE_EXHAUSTED
    lease_s: float = 60.0  # a RUNNING job whose lease is older than this is re-queued (seconds)
    heartbeat_s: float = 5.0  # how often a worker renews its lease (seconds)
    max_attempts: int = 3  # a job that lost its worker this many times fails with a reason
    poll_s: float = 0.2  # how often idle workers and WatchJob look at the job table (seconds)
    executor: str = "local"  # "local": worker processes of this server; "ray": actors of a Ray cluster
    ray: RayConfig = RayConfig()  # used by the ray executor

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from VQPRESS_* environment variables, then explicit overrides (CLI flags)."""
        env = os.environ
        vals: dict[str, object] = {}
        if "VQPRESS_DATA_DIR" in env:
            vals["data_dir"] = Path(env["VQPRESS_DATA_DIR"])
        if "VQPRESS_HOST" in env:
            vals["host"] = env["VQPRESS_HOST"]
        if "VQPRESS_PORT" in env:
            vals["port"] = int(env["VQPRESS_PORT"])
        if "VQPRESS_WORKERS" in env:
            vals["workers"] = int(env["VQPRESS_WORKERS"])
        if env.get("VQPRESS_TOKEN"):
            vals["token"] = env["VQPRESS_TOKEN"]
        if env.get("VQPRESS_INSECURE", "").lower() in ("1", "true", "yes"):
            vals["insecure"] = True
        if env.get("VQPRESS_TLS_CERT"):
            vals["tls_cert"] = Path(env["VQPRESS_TLS_CERT"])
        if env.get("VQPRESS_TLS_KEY"):
            vals["tls_key"] = Path(env["VQPRESS_TLS_KEY"])
        if env.get("VQPRESS_DIGEST"):
            vals["digest_function"] = env["VQPRESS_DIGEST"]
        if env.get("VQPRESS_EXECUTOR"):
            vals["executor"] = env["VQPRESS_EXECUTOR"]
        ray_address = overrides.pop("ray_address", None) or env.get("VQPRESS_RAY_ADDRESS") or None
        ray: dict[str, object] = {"address": str(ray_address)} if ray_address else {}
        if env.get("VQPRESS_RAY_NODE_DIR"):
            ray["node_dir"] = Path(env["VQPRESS_RAY_NODE_DIR"])
        if ray:
            vals["ray"] = RayConfig(**ray)  # type: ignore[arg-type]
        vals.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**vals)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {self.executor!r}")
        if self.ray.cpu_slots < 0:
            raise ValueError(f"ray.cpu_slots must be >= 0, got {self.ray.cpu_slots}")
        if self.digest_function not in digests.FUNCTIONS:
            raise ValueError(f"digest_function must be one of {list(digests.FUNCTIONS)}, got {self.digest_function!r}")

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def jobs_db(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @property
    def scratch_dir(self) -> Path:
        return self.data_dir / "scratch"

    @property
    def outbox_dir(self) -> Path:
        """Rendered images on their way from a worker to the Render call that asked for them."""
        return self.data_dir / "outbox"

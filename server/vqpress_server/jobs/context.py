"""What a handler sees while it runs: the job, its sources, progress/cancellation, warm state."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vqpress import digests

from ..artifacts import ArtifactInfo, ArtifactStore
from ..core.errors import Cancelled, FormatError, VqpressInputError
from ..core.magic import read_head, scene_format
from .model import JobRecord, JobState, LeaseLost
from .table import JobTable

if TYPE_CHECKING:
    from ..core.fields.model import NeuralField
    from ..core.splats.model import GaussianSplats

log = logging.getLogger(__name__)

# Source artifact kinds a job accepts, and the file extension each is read under.
SOURCE_SUFFIX = {
    "ply": ".ply",
    "compressed_ply": ".compressed.ply",
    "splat": ".splat",
    "spz": ".spz",
    "sog": ".sog",  # a bundled SOG (zip); an unbundled one is a folder and cannot be one artifact
    "npz": ".npz",
    "vqp": ".vqp",
}
_PROGRESS_WRITE_S = 0.05  # progress is written to the table at most this often (seconds) per stage
CHECKPOINTS_SUFFIX = "-checkpoints"  # <job id><this>: a job's checkpoint folder in the scratch root


def checkpoint_dir_for(scratch_root: Path, job_id: str) -> Path:
    """A job's checkpoint folder: beside its per-attempt scratch folders, keyed by the job id only, so
    that a re-run of the job after its worker died finds the checkpoints of the attempt before."""
    return scratch_root / f"{job_id}{CHECKPOINTS_SUFFIX}"


class WorkerShutdown(Exception):
    """The worker is stopping: the job goes back to the queue undone."""


@dataclass(frozen=True)
class Source:
    """A job's input artifact, linked into the job's scratch directory under its kind's extension."""

    info: ArtifactInfo
    path: Path  # read-only

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def stem(self) -> str:
        """The artifact's name without directories or scene extensions ("scene.compressed.ply" -> "scene")."""
        name = Path(self.info.name.replace("\\", "/")).name
        for suffix in sorted(SOURCE_SUFFIX.values(), key=len, reverse=True):
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        return safe_name(name) or "scene"

    @contextmanager
    def named_errors(self) -> Iterator[None]:
        """Report a read error by the artifact's name, not by the server's scratch path."""
        try:
            yield
        except FormatError as e:
            if Path(e.path).name != self.path.name:
                raise
            raise FormatError(f"{self.info.name} (artifact {digests.short(self.id)})", e.problem) from None


class WarmState:
    """Created once per worker process: torch, the device, loaded kernels, recently used scenes and fields.

    device: "cuda" (the one GPU this worker sees) or "cpu".
    cache_size: how many scenes (and, separately, fields) the LRU keeps on the device, keyed by
    artifact id (default 4).
    """

    def __init__(self, device: str, cache_size: int = 4) -> None:
        self.device = device
        self.cache_size = cache_size
        self._scenes: OrderedDict[str, GaussianSplats] = OrderedDict()
        self._fields: OrderedDict[str, tuple[NeuralField, dict[str, Any]]] = OrderedDict()

    @classmethod
    def create(cls, device: str, *, threads: int | None = None, cache_size: int = 4) -> WarmState:
        # here: torch loads in the worker only; the server imports this module through worker.py
        import torch

        if threads:
            torch.set_num_threads(threads)
        # Subnormal floats (e.g. VQ-AD logits and Adam moments late in training) make CPU math up to
        # 10x slower; flushing them to zero changes values below 1.2e-38 only.
        torch.set_flush_denormal(True)
        if device == "cuda":
            torch.cuda.set_device(0)
        warm = cls(device, cache_size)
        if device == "cuda":
            warm._warm_up_kernels()
        return warm

    def _warm_up_kernels(self) -> None:
        """Render one tiny scene so gsplat's CUDA kernels are loaded before the first real job."""
        # here: torch loads in the worker only; the server imports this module through worker.py
        import numpy as np
        import torch

        try:
            from ..core.render.cameras import Camera
            from ..core.render.splats import render
            from ..core.splats.model import GaussianSplats
        except ImportError as e:
            log.warning("renderer not available; skipping the kernel warm-up (%s)", e)
            return
        t0 = time.perf_counter()
        splats = GaussianSplats(
            means=torch.tensor([[0.0, 0.0, 2.0]]),
            quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
            scales=torch.full((1, 3), -2.0),
            opacities=torch.zeros(1),
            sh0=torch.zeros(1, 1, 3),
            shN=torch.zeros(1, 0, 3),
        ).to(self.device)
        K = np.array([[8.0, 0, 8], [0, 8.0, 8], [0, 0, 1]])
        try:
            render(splats, Camera(viewmat=np.eye(4), K=K, width=16, height=16), backend="gsplat")
            torch.cuda.synchronize()
        except ImportError as e:  # a deployment without gsplat: say so once, without a traceback
            log.error("gsplat is not importable (%s): splat render and training jobs on this GPU will fail", e)
            return
        except Exception:
            log.exception("gsplat warm-up render failed; render jobs will report the error")
            return
        log.info("gsplat kernels ready in %.1f s", time.perf_counter() - t0)

    def scene(self, key: str, load: Callable[[], GaussianSplats]) -> GaussianSplats:
        """The scene for ``key`` (an artifact id: content never changes) from the LRU, else ``load()``."""
        if key in self._scenes:
            self._scenes.move_to_end(key)
            return self._scenes[key]
        splats = load().to(self.device)
        self._scenes[key] = splats
        while len(self._scenes) > self.cache_size:
            self._scenes.popitem(last=False)
        return splats

    def field(
        self, key: str, load: Callable[[], tuple[NeuralField, dict[str, Any]]]
    ) -> tuple[NeuralField, dict[str, Any]]:
        """The decoded field (and its manifest extra) for ``key`` from the LRU, else ``load()`` (on the device)."""
        if key in self._fields:
            self._fields.move_to_end(key)
            return self._fields[key]
        model, extra = load()
        entry = (model.to(self.device), extra)
        self._fields[key] = entry
        while len(self._fields) > self.cache_size:
            self._fields.popitem(last=False)
        return entry


class JobContext:
    """Passed to a handler: the job's spec, sources, scratch space, progress and cancellation."""

    def __init__(
        self,
        *,
        job: JobRecord,
        worker_id: str,
        table: JobTable,
        store: ArtifactStore,
        warm: WarmState,
        scratch: Path,
        stopping: threading.Event | None = None,
    ) -> None:
        self.job = job
        self.worker_id = worker_id
        self.table = table
        self.store = store
        self.warm = warm
        self.scratch = scratch
        self.metrics: dict[str, float] = {}
        self.cancel_requested = threading.Event()  # set by the heartbeat thread on CANCELLING
        self.lease_lost = threading.Event()  # set by the heartbeat thread
        self._stopping = stopping
        self.outbox: Path | None = None  # set for a render streamed to its Render call (save_view)
        self._last_write = 0.0
        self._last_stage = ""

    @property
    def device(self) -> str:
        return self.warm.device

    @property
    def stage(self) -> str:
        """The stage last reported through ``progress`` ("" before the first)."""
        return self._last_stage

    @property
    def checkpoint_dir(self) -> Path:
        """This job's checkpoint folder (not created here); the worker keeps it until the job ends."""
        return checkpoint_dir_for(self.scratch.parent, self.job.id)

    # -- progress and cancellation ---------------------------------------------------
    def progress(self, stage: str, fraction: float, metrics: Mapping[str, float] | None = None) -> None:
        """Report progress (the core's Progress callback). Raises Cancelled when the job was cancelled.

        Writes to the job table when the stage changes, at the end, or every 50 ms; in between it
        only checks the flags the heartbeat thread sets.
        """
        if metrics:
            self.metrics.update({k: float(v) for k, v in metrics.items() if isinstance(v, int | float)})
        now = time.monotonic()
        if stage != self._last_stage or fraction >= 1.0 or now - self._last_write >= _PROGRESS_WRITE_S:
            self._last_write, self._last_stage = now, stage
            state = self.table.set_progress(self.job.id, self.worker_id, stage, fraction, metrics)
            if state is JobState.CANCELLING:
                self.cancel_requested.set()
        self._raise_if_stopped()

    def check_cancelled(self) -> None:
        """Raise Cancelled if the job was cancelled (reads the table); for use between stages."""
        if self.table.get(self.job.id).state is JobState.CANCELLING:
            self.cancel_requested.set()
        self._raise_if_stopped()

    def _raise_if_stopped(self) -> None:
        if self.lease_lost.is_set():
            raise LeaseLost(f"job {self.job.id} is no longer held by {self.worker_id}")
        if self.cancel_requested.is_set():
            raise Cancelled(f"job {self.job.id} was cancelled")
        if self._stopping is not None and self._stopping.is_set():
            raise WorkerShutdown(f"worker {self.worker_id} is stopping")

    # -- inputs ----------------------------------------------------------------------
    def source(self, artifact_id: str, what: str = "source") -> Source:
        """The artifact a spec names, linked into scratch under its scene kind's extension."""
        info = self.store.stat(artifact_id)
        kind = info.kind if info.kind in SOURCE_SUFFIX else _sniff_kind(self.store.path(info.id))
        if kind is None:
            raise VqpressInputError(
                f"{what} artifact {info.id} ({info.name!r}, kind {info.kind!r}) is not a scene: "
                f"upload one of {', '.join(SOURCE_SUFFIX)}"
            )
        self.scratch.mkdir(parents=True, exist_ok=True)
        link = self.scratch / f"{what}-{digests.file_name(info.id, 16)}{SOURCE_SUFFIX[kind]}"
        if not link.exists():
            _link_or_copy(self.store.path(info.id), link)
        return Source(ArtifactInfo(info.id, info.name, kind, info.size, info.created_at, info.source_job), link)

    def load_splats(self, src: Source, repair: bool = True) -> GaussianSplats:
        """Read any accepted source kind into a scene (non-finite values repaired unless
        ``repair=False``), on the CPU."""
        if src.kind == "vqp":
            # here: torch loads in the worker only; the server imports this module through worker.py
            from ..core.splats.quantize import decode_vqp_splats

            return decode_vqp_splats(src.path.read_bytes(), name=src.info.name)
        # here: torch loads in the worker only; the server imports this module through worker.py
        from ..core.splats.formats import load_scene, read_splats

        with src.named_errors():
            if not repair:
                return read_splats(src.path)
            splats, report = load_scene(src.path)
        if report.total:
            self.metrics["repaired"] = float(report.total)
        return splats

    def scene_file(self, src: Source) -> Path:
        """A file the scene readers accept: the source itself, or a .vqp decoded to .ply."""
        if src.kind != "vqp":
            return src.path
        # here: torch loads in the worker only; the server imports this module through worker.py
        from ..core.splats.formats import write_splats

        out = self.scratch / f"{src.stem}-decoded.ply"
        write_splats(self.load_splats(src), out, "ply")
        return out


@contextmanager
def artifact_errors(path: Path, name: str) -> Iterator[None]:
    """Report a read error of an artifact's file by the artifact's name, not by the server's path."""
    try:
        yield
    except FormatError as e:
        if e.path != str(path):
            raise
        raise FormatError(name, e.problem) from None


def _sniff_kind(path: Path) -> str | None:
    """The scene kind of a file whose artifact kind says nothing (e.g. "bin"), from its content."""
    if scene_format(read_head(path)) == "vqp":
        return "vqp"
    # here: torch loads in the worker only; the server imports this module through worker.py
    from ..core.splats.formats import detect_format

    try:
        fmt = detect_format(path)
    except VqpressInputError:
        return None
    return fmt if fmt in SOURCE_SUFFIX else None


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def safe_name(name: str) -> str:
    """A file name made only of letters, digits and ``-_.`` (for result names)."""
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return out[:100]

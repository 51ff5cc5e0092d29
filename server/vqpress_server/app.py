"""The composition root: settings -> artifact store -> job table -> worker pool -> servicer -> gRPC server.

Tests build the same graph with ``Settings(data_dir=tmp_path, port=0)``. The gRPC process only
validates, stores, enqueues and streams; all torch work runs in the worker processes.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass

from .artifacts.store import ArtifactStore
from .jobs.table import JobTable
from .jobs.worker import WorkerPool
from .rpc.server import RpcServer, create_server, set_serving
from .rpc.servicer import VqpressServicer
from .rpc.sources import close_field_helper
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: Settings
    store: ArtifactStore
    jobs: JobTable
    workers: WorkerPool
    rpc: RpcServer

    @property
    def port(self) -> int:
        return self.rpc.port

    def start(self) -> None:
        """Start the workers, then accept calls; health turns SERVING."""
        self.workers.start()
        self.rpc.server.start()
        set_serving(self.rpc, True)
        log.info("vqpress serving on %s:%d (%d workers)", self.settings.host, self.port, len(self.workers.pids()))

    def stop(self, grace: float = 5.0) -> None:
        """Health turns NOT_SERVING, calls in flight get ``grace`` seconds, then the workers stop
        (a job they were running goes back to the queue)."""
        set_serving(self.rpc, False)
        self.rpc.server.stop(grace).wait()
        close_field_helper()
        self.workers.stop()
        self.jobs.close()

    def wait(self) -> None:
        """Block until the server has stopped."""
        self.rpc.server.wait_for_termination()


def build_app(settings: Settings) -> App:
    store = ArtifactStore(settings.artifacts_dir, settings.max_artifact_bytes)
    jobs = JobTable(settings.jobs_db, max_attempts=settings.max_attempts, poll_s=settings.poll_s)
    workers = WorkerPool(settings)
    servicer = VqpressServicer(settings, store, jobs, workers.notify)
    rpc = create_server(servicer, settings)
    return App(settings, store, jobs, workers, rpc)


def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then stop gracefully."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = build_app(settings)
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    app.start()
    stopping.wait()
    log.info("stopping")
    app.stop()
